//! Checking OCI content from outside the store (an archive given to
//! `load`, a registry): digests in their strict form, every blob hashed
//! and counted as it is read, an image config's layer list, and the
//! manifest of an index that fits this machine.

use crate::digest::Digest;
use crate::escape::escape;
use crate::image::{host_architecture, ImageConfig};
use oci_spec::image::{Descriptor, ImageIndex, Platform};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};

/// The name prefix of an OCI layer's whiteout: `.wh.NAME` deletes `NAME`
/// of the layers below (the image-spec's layer changeset rules).
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of the OCI marker file that makes its directory opaque: the
/// layers below add nothing to it.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// The most layers an image may have: docker's (overlay2 stacks at most
/// 128 lowers). `load` reads and holds each until the image is committed,
/// and a pull gives a registry each one's time to hold it.
pub const MAX_LAYERS: usize = 128;

/// An OCI document or digest from outside the store that is not what the spec
/// allows; `what` names where it came from (a file in the archive, a blob).
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A digest not of the form `sha256:<64 lowercase hex>`.
    #[error("{what}: invalid digest {digest:?}: expected sha256:<64 lowercase hex>")]
    BadDigest {
        /// Where the digest came from.
        what: String,
        /// The digest as found, escaped for printing.
        digest: String,
    },
    /// A document that does not parse as the kind it should be.
    #[error("{what}: not a valid {kind}: {reason}")]
    BadDocument {
        /// Where the document came from.
        what: String,
        /// What it should have been (`image index`, `manifest`, `image
        /// config`...).
        kind: &'static str,
        /// Why it is not.
        reason: String,
    },
    /// More layers than an image may have.
    #[error(
        "{what} names {layers} layers: max depth exceeded (an image has at most {MAX_LAYERS})"
    )]
    TooDeep {
        /// What listed them (a manifest, an image config).
        what: String,
        /// How many it names.
        layers: usize,
    },
}

/// Refuses more than [`MAX_LAYERS`] layers; `what` names what listed them.
pub fn check_depth(what: &str, layers: usize) -> Result<(), OciError> {
    if layers > MAX_LAYERS {
        return Err(OciError::TooDeep {
            what: what.to_string(),
            layers,
        });
    }
    Ok(())
}

/// A digest as OCI documents write it: `sha256:` and 64 lowercase hex
/// digits, nothing else (the one algorithm the store names things by).
pub fn parse_sha256(what: &str, s: &str) -> Result<Digest, OciError> {
    let bad = || OciError::BadDigest {
        what: what.to_string(),
        digest: escape(s),
    };
    let hex = s.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    hex.parse().map_err(|_| bad())
}

/// The store digest a descriptor names.
pub fn descriptor_digest(what: &str, d: &Descriptor) -> Result<Digest, OciError> {
    parse_sha256(what, d.digest().as_ref())
}

/// Parses an OCI (or docker schema 2) JSON document, with what went wrong
/// escaped: serde quotes the input in its messages.
pub fn parse_document<T: serde::de::DeserializeOwned>(
    what: &str,
    kind: &'static str,
    bytes: &[u8],
) -> Result<T, OciError> {
    serde_json::from_slice(bytes).map_err(|e| OciError::BadDocument {
        what: what.to_string(),
        kind,
        reason: escape(&e.to_string()),
    })
}

/// An image config checked the way `load` and a pull need it: it parses as
/// an image config (docker's optional fields may be missing) and its
/// `rootfs.diff_ids` are strict digests. Gives the diff ids, bottom first.
pub fn config_diff_ids(what: &str, bytes: &[u8]) -> Result<Vec<Digest>, OciError> {
    let config: ImageConfig = parse_document(what, "image config", bytes)?;
    if config.rootfs.kind != "layers" {
        return Err(OciError::BadDocument {
            what: what.to_string(),
            kind: "image config",
            reason: format!(
                "rootfs type {:?}, expected \"layers\"",
                escape(&config.rootfs.kind)
            ),
        });
    }
    config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| parse_sha256(&format!("{what}: rootfs.diff_ids"), d))
        .collect()
}

/// Whether a platform is this machine's (linux and its architecture).
pub fn is_host_platform(p: &Platform) -> bool {
    p.os().to_string() == "linux" && p.architecture().to_string() == host_architecture()
}

/// The entry of an index to use on this machine: the first whose platform
/// is the host's; when no entry names a platform at all, the first.
/// Attestations (docker's `unknown/unknown` manifests) never match.
pub fn pick_for_host(index: &ImageIndex) -> Option<&Descriptor> {
    let manifests = index.manifests();
    if manifests.iter().all(|m| m.platform().is_none()) {
        return manifests.first();
    }
    manifests
        .iter()
        .find(|m| m.platform().as_ref().is_some_and(is_host_platform))
}

/// Reads a blob while hashing and counting it; when the blob ends, its
/// size and digest must be the ones expected, or the read that saw the end
/// fails (`InvalidData`). More bytes than expected fail at once, so a
/// lying descriptor cannot make the reader take in more.
pub struct VerifiedReader<R> {
    inner: R,
    what: String,
    digest: Option<Digest>,
    size: Option<u64>,
    hasher: Sha256,
    read: u64,
    checked: bool,
}

impl<R: Read> VerifiedReader<R> {
    /// `digest` and `size`: what the blob must be; `None` when nothing
    /// says (a docker `manifest.json` path names no size, most no digest).
    pub fn new(
        inner: R,
        what: &str,
        digest: Option<Digest>,
        size: Option<u64>,
    ) -> VerifiedReader<R> {
        VerifiedReader {
            inner,
            what: what.to_string(),
            digest,
            size,
            hasher: Sha256::new(),
            read: 0,
            checked: false,
        }
    }

    /// Reads what is left, checks the whole blob and gives its digest.
    pub fn finish(mut self) -> io::Result<Digest> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(Digest::from_hasher(self.hasher))
    }

    /// Reads the whole blob, at most `limit` bytes, and checks it.
    pub fn read_all(mut self, limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut self).take(limit + 1).read_to_end(&mut out)?;
        if out.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: larger than {limit} bytes", self.what),
            ));
        }
        self.finish()?;
        Ok(out)
    }

    fn check_end(&mut self) -> io::Result<()> {
        self.checked = true;
        if let Some(size) = self.size.filter(|s| *s != self.read) {
            return Err(invalid(format!(
                "{}: {} bytes, its descriptor says {size}",
                self.what, self.read
            )));
        }
        let Some(digest) = self.digest else {
            return Ok(());
        };
        let actual = Digest::from_hasher(self.hasher.clone());
        if actual != digest {
            return Err(invalid(format!(
                "{}: content hashes to {actual:#}, expected {digest:#}",
                self.what
            )));
        }
        Ok(())
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if let Some(size) = self.size {
            if self.read > size {
                return Err(invalid(format!(
                    "{}: longer than the {size} bytes its descriptor says",
                    self.what
                )));
            }
        }
        if n == 0 && !buf.is_empty() && !self.checked {
            self.check_end()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strict_sha256_digests_parse() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(parse_sha256("x", &good).is_ok());
        for bad in [
            "sha256:../../..".to_string(),
            "a".repeat(64),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}/", "a".repeat(64)),
        ] {
            assert!(parse_sha256("x", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_blob_must_match_its_digest_and_size() {
        let data = b"some blob".to_vec();
        let d = Digest::of(&data);
        let ok = VerifiedReader::new(&data[..], "b", Some(d), Some(data.len() as u64));
        assert_eq!(ok.read_all(100).unwrap(), data);
        let mut changed = data.clone();
        changed[2] ^= 1;
        let e = VerifiedReader::new(&changed[..], "b", Some(d), Some(data.len() as u64))
            .read_all(100)
            .unwrap_err();
        assert!(e.to_string().contains("hashes to"), "{e}");
        let e = VerifiedReader::new(&data[..], "b", Some(d), Some(4))
            .finish()
            .unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
        let e = VerifiedReader::new(&data[..], "b", Some(d), Some(40))
            .finish()
            .unwrap_err();
        assert!(e.to_string().contains("says 40"), "{e}");
    }

    #[test]
    fn the_index_entry_for_this_machine_is_picked() {
        let index: ImageIndex = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{a}","size":1,
                "platform":{{"architecture":"unknown","os":"unknown"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{b}","size":1,
                "platform":{{"architecture":"s390x","os":"linux"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{c}","size":1,
                "platform":{{"architecture":"{host}","os":"linux"}}}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
            c = "c".repeat(64),
            host = host_architecture()
        ))
        .unwrap();
        let picked = pick_for_host(&index).unwrap();
        assert_eq!(
            picked.digest().as_ref(),
            format!("sha256:{}", "c".repeat(64))
        );
    }
}
