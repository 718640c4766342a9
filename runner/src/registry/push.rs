//! Pushing one image: each layer's tar compressed once (gzip or
//! zstd) into a private temporary file while hashed, skipped when the
//! registry has the blob already (HEAD), mounted from the repository the
//! store last pushed it to on the same registry, else uploaded (see
//! `upload`: chunked, resumed where an interrupted one stopped); then the config, then an OCI
//! manifest under the tag. What each layer was pushed as is remembered
//! (`layerdb::blob`), so a layer the registry has costs a HEAD, not a
//! compression. Each layer goes out as the tar the config names
//! (`layerdb::tar_split::OutgoingImage`): another tool's byte for byte, so
//! the image keeps its id, or the canonical one under a rewritten config.

use super::client::{Client, Payload};
use super::upload::{forget_stale_sessions, upload, Blob, Destination};
use crate::cli::PushCompression;
use anyhow::{bail, Context, Result};
use layerdb::blob::CompressedBlob;
use layerdb::reference::RemoteReference;
use layerdb::tar_split::OutgoingImage;
use layerdb::{Digest, Store};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::Path;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

impl PushCompression {
    fn media_type(self) -> &'static str {
        match self {
            PushCompression::Gzip => OCI_LAYER_GZIP,
            PushCompression::Zstd => OCI_LAYER_ZSTD,
        }
    }

    /// The name the store remembers blobs by.
    pub fn name(self) -> &'static str {
        let compression = match self {
            PushCompression::Gzip => super::manifest::Compression::Gzip,
            PushCompression::Zstd => super::manifest::Compression::Zstd,
        };
        compression.blob_name().expect("a push always compresses")
    }
}

/// A layer's progress, for the caller's output.
pub enum PushEvent {
    Preparing,
    AlreadyExists,
    /// Mounted from another repository of the registry (its path).
    Mounted(String),
    Pushed,
}

/// What the registry now holds under the tag, and the blobs the layers
/// were pushed as, for the store to remember.
pub struct Pushed {
    pub digest: Digest,
    pub size: usize,
    pub blobs: Vec<(Digest, CompressedBlob)>,
}

/// Hashes and counts what is written through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the push goes and how.
pub struct Target<'a> {
    pub client: &'a Client,
    pub reference: &'a RemoteReference,
    pub compression: PushCompression,
    pub tmp_dir: &'a Path,
}

impl Target<'_> {
    fn destination<'s>(&'s self, scope: &'s str) -> Destination<'s> {
        Destination {
            client: self.client,
            reference: self.reference,
            scope,
            sessions: self.sessions(),
        }
    }

    /// Where chunked uploads keep their session URLs.
    fn sessions(&self) -> std::path::PathBuf {
        self.tmp_dir.join("uploads")
    }
}

pub fn push_image(
    target: &Target,
    store: &Store,
    image: &OutgoingImage,
    event: &dyn Fn(usize, PushEvent),
) -> Result<Pushed> {
    let config_json: &[u8] = &image.config_json;
    let (client, reference) = (target.client, target.reference);
    let Some(tag) = reference
        .tag
        .as_deref()
        .filter(|_| reference.digest.is_none())
    else {
        bail!("cannot push to a digest reference: name a tag");
    };
    // Sessions are made by pushes, so a push clears out the stale ones:
    // no other command reads them, and nothing else would.
    forget_stale_sessions(&target.sessions());
    let scope = format!("repository:{}:pull,push", reference.path);
    let here = format!("{}/{}", reference.domain, reference.path);
    let mut layers = Vec::new();
    let mut blobs = Vec::new();
    for (i, (stored, diff_id)) in image.layers.iter().enumerate() {
        event(i, PushEvent::Preparing);
        let known = store.compressed_blob(diff_id, target.compression.name())?;
        let placed = match &known {
            Some(blob) => place_known_blob(client, reference, &scope, blob)?
                .map(|outcome| (blob.digest, blob.size, outcome)),
            None => None,
        };
        let (digest, size, outcome) = match placed {
            Some(placed) => placed,
            None => push_layer(target, &scope, store, stored, diff_id)
                .with_context(|| format!("layer {diff_id:#}"))?,
        };
        event(i, outcome);
        blobs.push((
            *diff_id,
            CompressedBlob {
                digest,
                size,
                repository: here.clone(),
            },
        ));
        layers.push(serde_json::json!({
            "mediaType": target.compression.media_type(),
            "digest": format!("{digest:#}"),
            "size": size,
        }));
    }
    let config_digest = Digest::of(config_json);
    if !has_blob(client, reference, &scope, &config_digest)? {
        upload(
            &target.destination(&scope),
            &config_digest,
            Blob::Bytes(config_json),
        )
        .context("the image config")?;
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::manifest::OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": format!("{config_digest:#}"),
            "size": config_json.len(),
        },
        "layers": layers,
    }))
    .expect("a manifest always serializes");
    let path = format!("/v2/{}/manifests/{tag}", reference.path);
    let response = client.send(
        "PUT",
        &path,
        &scope,
        super::manifest::OCI_MANIFEST,
        &mut || Ok(Payload::Bytes(manifest.clone())),
    )?;
    Client::expect_ok(response).context("the manifest")?;
    Ok(Pushed {
        digest: Digest::of(&manifest),
        size: manifest.len(),
        blobs,
    })
}

/// A blob the store pushed before: already in this repository (HEAD), or
/// mounted from the repository it went to on the same registry. `None`
/// when neither: the layer must be compressed and uploaded.
fn place_known_blob(
    client: &Client,
    reference: &RemoteReference,
    scope: &str,
    blob: &CompressedBlob,
) -> Result<Option<PushEvent>> {
    if has_blob(client, reference, scope, &blob.digest)? {
        return Ok(Some(PushEvent::AlreadyExists));
    }
    let Some(from) = blob
        .repository
        .strip_prefix(&format!("{}/", reference.domain))
        .filter(|path| *path != reference.path)
    else {
        return Ok(None);
    };
    let mount = format!(
        "/v2/{}/blobs/uploads/?mount={:#}&from={from}",
        reference.path, blob.digest
    );
    // A registry mounts only for a token that may pull the source too.
    let mount_scope = format!("{scope} repository:{from}:pull");
    let response = client.send(
        "POST",
        &mount,
        &mount_scope,
        "application/octet-stream",
        &mut || Ok(Payload::Bytes(Vec::new())),
    )?;
    // 201: mounted. 202 opens an upload instead (the source lacks it, or
    // the registry does not mount); it is left to expire.
    Ok((response.status() == 201).then(|| PushEvent::Mounted(from.to_string())))
}

/// Compresses the layer and uploads it unless the registry has it; its
/// digest, size and what happened.
fn push_layer(
    target: &Target,
    scope: &str,
    store: &Store,
    stored: &Digest,
    diff_id: &Digest,
) -> Result<(Digest, u64, PushEvent)> {
    let (client, reference) = (target.client, target.reference);
    let (file, digest, size) = compress_layer(store, stored, diff_id, target)?;
    if has_blob(client, reference, scope, &digest)? {
        return Ok((digest, size, PushEvent::AlreadyExists));
    }
    upload(
        &target.destination(scope),
        &digest,
        Blob::File { file: &file, size },
    )?;
    Ok((digest, size, PushEvent::Pushed))
}

/// Layer `stored` as the tar `diff_id` names, compressed into an unnamed
/// temporary file; its digest and size.
fn compress_layer(
    store: &Store,
    stored: &Digest,
    diff_id: &Digest,
    target: &Target,
) -> Result<(File, Digest, u64)> {
    let tmp_dir = target.tmp_dir;
    let file = tempfile::tempfile_in(tmp_dir)
        .with_context(|| format!("a temporary file in {}", tmp_dir.display()))?;
    let hashing = Hashing {
        inner: std::io::BufWriter::with_capacity(1 << 20, file.try_clone()?),
        hasher: Sha256::new(),
        written: 0,
    };
    let mut hashing = match target.compression {
        PushCompression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(hashing, flate2::Compression::fast());
            store.write_layer_tar_as(stored, diff_id, &mut gz)?;
            gz.finish().context("compressing a layer")?
        }
        PushCompression::Zstd => {
            let mut zst =
                zstd::stream::write::Encoder::new(hashing, 3).context("compressing a layer")?;
            store.write_layer_tar_as(stored, diff_id, &mut zst)?;
            zst.finish().context("compressing a layer")?
        }
    };
    hashing.flush()?;
    let digest = Digest::from_hasher(hashing.hasher);
    Ok((file, digest, hashing.written))
}

pub(super) fn has_blob(
    client: &Client,
    reference: &RemoteReference,
    scope: &str,
    digest: &Digest,
) -> Result<bool> {
    let path = format!("/v2/{}/blobs/{digest:#}", reference.path);
    let response = client.head(&path, scope)?;
    match response.status().as_u16() {
        200..=299 => Ok(true),
        404 => Ok(false),
        _ => Err(Client::expect_ok(response)
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("HEAD {path}: unexpected answer"))),
    }
}
