//! A layer's tar as another tool wrote it, kept beside the layer so that
//! `save` and `push` give back the very bytes its image config's diff id
//! names (containers-storage keeps a "tar-split" for the same reason): an
//! image pulled or loaded from podman or a registry keeps its id when it
//! leaves the store again.
//!
//! The store keeps each file's content once, in chunks, and names a layer
//! by its canonical tar. What the canonical tar does not reproduce of
//! another tool's (header fields, PAX records, entry order, padding, the
//! end blocks, trailing zeros) is kept here as the raw bytes between file
//! contents, zstd-compressed; each content is a reference to the layer's
//! file at that path. A tar whose contents the layer does not keep as read
//! (sparse files, a path given content twice) gets no split: it leaves the
//! store in canonical form.

use crate::chunk::ChunkDir;
use crate::digest::Digest;
use crate::entry::{Entry, Kind};
use crate::error::{IoContext, Result, StoreError};
use crate::image::ImageRecord;
use crate::keys;
use crate::oci_tar::{ContentReader, HashingWriter};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

/// How to rebuild one tar: raw bytes and file contents, in stream order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarSplit {
    /// Every byte of the tar that is not file content, zstd-compressed.
    raw: Vec<u8>,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Segment {
    /// The next this many bytes of `raw`.
    Raw(u64),
    /// The content of the layer's regular file at this path, this long.
    Content { path: Vec<u8>, len: u64 },
}

/// A layer read from another tool's tar: the sha256 of that tar (the
/// diff id its image config names) and how to write it again.
#[derive(Clone, Debug)]
pub struct OriginalTar {
    /// sha256 of the tar as read.
    pub diff_id: Digest,
    /// Its bytes outside file contents.
    pub split: TarSplit,
}

/// Records a tar as the reader takes it in: bytes go to the raw stream
/// unless a file's content is being read ([`Recorder::start_content`]).
pub(crate) struct Recorder {
    raw: zstd::stream::write::Encoder<'static, Vec<u8>>,
    segments: Vec<Segment>,
    /// Raw bytes since the last content.
    pending_raw: u64,
    /// The file whose content is being read, and how much of it so far.
    content: Option<(Vec<u8>, u64)>,
    /// Why the tar cannot be rebuilt from the layer, once known.
    spoiled: bool,
}

impl Recorder {
    pub(crate) fn new() -> io::Result<Recorder> {
        Ok(Recorder {
            raw: zstd::stream::write::Encoder::new(Vec::new(), 3)?,
            segments: Vec::new(),
            pending_raw: 0,
            content: None,
            spoiled: false,
        })
    }

    /// Bytes the tar reader took in.
    pub(crate) fn took(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.spoiled {
            return Ok(());
        }
        match &mut self.content {
            Some((_, len)) => *len += bytes.len() as u64,
            None => {
                self.raw.write_all(bytes)?;
                self.pending_raw += bytes.len() as u64;
            }
        }
        Ok(())
    }

    /// What is read from here on is the content of the file stored at
    /// `path` (the layer's clean path).
    pub(crate) fn start_content(&mut self, path: Vec<u8>) {
        self.end_raw();
        self.content = Some((path, 0));
    }

    /// The content is read; bytes are raw again.
    pub(crate) fn end_content(&mut self) {
        if let Some((path, len)) = self.content.take() {
            self.segments.push(Segment::Content { path, len });
        }
    }

    /// The layer will not keep this tar's content as read (a sparse file).
    pub(crate) fn spoil(&mut self) {
        self.spoiled = true;
    }

    fn end_raw(&mut self) {
        if self.pending_raw > 0 {
            self.segments.push(Segment::Raw(self.pending_raw));
            self.pending_raw = 0;
        }
    }

    /// The split, if `entries` (the finished layer) hold every content as
    /// it was read: each path once, a regular file of the length read.
    pub(crate) fn finish(mut self, entries: &[(Vec<u8>, Entry)]) -> io::Result<Option<TarSplit>> {
        self.end_content();
        self.end_raw();
        if self.spoiled {
            return Ok(None);
        }
        let by_path: HashMap<&[u8], &Entry> =
            entries.iter().map(|(p, e)| (p.as_slice(), e)).collect();
        let mut seen = HashSet::new();
        for s in &self.segments {
            if let Segment::Content { path, len } = s {
                let kept = by_path
                    .get(path.as_slice())
                    .is_some_and(|e| e.kind == Kind::Regular && e.size == *len);
                if !kept || !seen.insert(path.as_slice()) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(TarSplit {
            raw: self.raw.finish()?,
            segments: self.segments,
        }))
    }
}

impl TarSplit {
    /// Writes the tar again from the layer's `entries` (with their
    /// content in `chunks`) and checks it hashes to `diff_id`: a split that
    /// does not rebuild its tar is an error, never other bytes under the
    /// name.
    pub(crate) fn write(
        &self,
        diff_id: &Digest,
        entries: &[(Vec<u8>, Entry)],
        chunks: &ChunkDir,
        out: &mut dyn Write,
    ) -> Result<()> {
        let what = format!("<tar {diff_id:#}>");
        let by_path: HashMap<&[u8], &Entry> =
            entries.iter().map(|(p, e)| (p.as_slice(), e)).collect();
        let mut raw = zstd::stream::read::Decoder::new(self.raw.as_slice()).at(&what)?;
        let mut hashed = Tee {
            out,
            hasher: HashingWriter::default(),
        };
        for s in &self.segments {
            let (copied, want) = match s {
                Segment::Raw(len) => (io::copy(&mut (&mut raw).take(*len), &mut hashed), *len),
                Segment::Content { path, len } => {
                    let entry =
                        by_path
                            .get(path.as_slice())
                            .ok_or_else(|| StoreError::Corrupt {
                                key: what.clone(),
                                reason: format!(
                                    "the layer has no file {:?}",
                                    String::from_utf8_lossy(path)
                                ),
                            })?;
                    let mut content = ContentReader::new(chunks, entry).take(*len);
                    (io::copy(&mut content, &mut hashed), *len)
                }
            };
            let copied = copied.at(&what)?;
            if copied != want {
                return Err(StoreError::Corrupt {
                    key: what,
                    reason: format!("a segment gave {copied} bytes of {want}"),
                });
            }
        }
        let got = hashed.hasher.digest();
        if got != *diff_id {
            return Err(StoreError::Corrupt {
                key: what,
                reason: format!("rebuilt, it hashes to {got:#}"),
            });
        }
        Ok(())
    }
}

/// Writes to `out` and hashes what it wrote.
struct Tee<'a> {
    out: &'a mut dyn Write,
    hasher: HashingWriter,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.write_all(&buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// An image as it leaves the store (`save`, `push`): its config and the
/// tar each layer goes out as.
#[derive(Debug)]
pub struct OutgoingImage<'a> {
    /// The config to send: the image's own bytes when every layer goes out
    /// as the tar its config names, so the image keeps its id.
    pub config_json: Cow<'a, [u8]>,
    /// Bottom first: the store's layer, and the diff id of the tar it is
    /// written as ([`Store::write_layer_tar_as`]).
    pub layers: Vec<(Digest, Digest)>,
}

impl OutgoingImage<'_> {
    /// Whether the config had to be rewritten (a layer goes out in
    /// canonical form where the config names another tool's tar), so the
    /// image leaves with another id.
    pub fn rewritten(&self) -> bool {
        matches!(self.config_json, Cow::Owned(_))
    }
}

impl Store {
    /// Whether layer `diff_id` can be written as the tar `named` hashes:
    /// its canonical tar, or another tool's it was read from.
    pub fn can_write_layer_as(&self, diff_id: &Digest, named: &Digest) -> Result<bool> {
        Ok(diff_id == named || self.db().get(&keys::tar_split(diff_id, named))?.is_some())
    }

    /// Writes layer `diff_id` as the tar whose sha256 is `named`: its
    /// canonical tar, or the tar another tool wrote and it was read from,
    /// byte for byte (checked as it is written).
    pub fn write_layer_tar_as(
        &self,
        diff_id: &Digest,
        named: &Digest,
        out: &mut dyn Write,
    ) -> Result<()> {
        if diff_id == named {
            return self.write_layer_tar(diff_id, out);
        }
        let key = keys::tar_split(diff_id, named);
        let split: TarSplit = match self.db().get(&key)? {
            Some(v) => Store::decode(&key, &v)?,
            None => return Err(StoreError::NoSuchLayer(*named)),
        };
        let entries = self.layer_entries(&self.layer(diff_id)?)?;
        split.write(named, &entries, self.chunks(), out)
    }

    /// How `image` leaves the store: with its own config when every layer
    /// can be written as the tar the config names; otherwise in canonical
    /// form, with a config naming the canonical tars (another id).
    pub fn outgoing<'a>(&self, image: &'a ImageRecord) -> Result<OutgoingImage<'a>> {
        let named = image.config().diff_ids().unwrap_or_default();
        let mut exact = named.len() == image.layers.len();
        if exact {
            for (stored, named) in image.layers.iter().zip(&named) {
                exact &= self.can_write_layer_as(stored, named)?;
            }
        }
        if exact {
            return Ok(OutgoingImage {
                config_json: Cow::Borrowed(&image.config_json),
                layers: image.layers.iter().copied().zip(named).collect(),
            });
        }
        let mut config: serde_json::Value =
            serde_json::from_slice(&image.config_json).map_err(|e| StoreError::Corrupt {
                key: format!("image {:#}", image.id),
                reason: e.to_string(),
            })?;
        config["rootfs"]["diff_ids"] = serde_json::json!(image
            .layers
            .iter()
            .map(|d| format!("{d:#}"))
            .collect::<Vec<_>>());
        Ok(OutgoingImage {
            config_json: Cow::Owned(serde_json::to_vec(&config).map_err(|e| {
                StoreError::Corrupt {
                    key: format!("image {:#}", image.id),
                    reason: e.to_string(),
                }
            })?),
            layers: image.layers.iter().map(|d| (*d, *d)).collect(),
        })
    }
}
