//! The canonical OCI layer tar of a layer: the bytes whose sha256 is the
//! diff id, and what `save`/`export` write.
//!
//! Canonical means the same entries always give the same bytes: entries in
//! path order, ustar headers with empty user and group names, PAX records
//! (sorted) only where ustar cannot hold a value (long names, large ids,
//! sub-second mtimes, xattrs), whiteouts as empty `.wh.` files and opaque
//! directories followed by their `.wh..wh..opq` marker.

use crate::chunk::ChunkDir;
use crate::digest::Digest;
use crate::entry::{join_path, split_path, Data, Entry, Kind};
use crate::error::{IoContext, Result};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use tar::{EntryType, Header};

/// A Write that only hashes and counts.
#[derive(Default)]
pub struct HashingWriter {
    hasher: Sha256,
    pub bytes: u64,
}

impl HashingWriter {
    pub fn digest(self) -> Digest {
        Digest::from_hasher(self.hasher)
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Streams a file's content, one whole chunk read at a time (a chunk file
/// is opened once, however small the caller's buffer).
pub struct ContentReader<'a> {
    chunks: &'a ChunkDir,
    data: &'a Data,
    /// Index of the next chunk to load.
    next: usize,
    current: Vec<u8>,
    /// Read position in `current` (or in the inline data).
    offset: usize,
}

impl<'a> ContentReader<'a> {
    pub fn new(chunks: &'a ChunkDir, entry: &'a Entry) -> ContentReader<'a> {
        ContentReader {
            chunks,
            data: &entry.data,
            next: 0,
            current: Vec::new(),
            offset: 0,
        }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let source: &[u8] = match self.data {
            Data::None => &[],
            Data::Inline(bytes) => bytes,
            Data::Chunks(list) => {
                if self.offset == self.current.len() {
                    let Some(chunk) = list.get(self.next) else {
                        return Ok(0);
                    };
                    self.current = self.chunks.read(chunk).map_err(io::Error::other)?;
                    self.next += 1;
                    self.offset = 0;
                }
                &self.current
            }
        };
        let n = buf.len().min(source.len() - self.offset);
        buf[..n].copy_from_slice(&source[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

const USTAR_ID_MAX: u32 = 0o7777777;

/// Writes the canonical tar of `entries` (in path order) to `out`.
pub fn write<'a>(
    entries: impl Iterator<Item = (&'a [u8], &'a Entry)>,
    chunks: &ChunkDir,
    out: &mut dyn Write,
) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    for (path, entry) in entries {
        append(&mut builder, path, entry, chunks).at("<layer tar>")?;
        if entry.kind == Kind::Dir && entry.opaque {
            let marker = Entry {
                mtime_ns: entry.mtime_ns,
                ..Entry::new(Kind::Regular, 0)
            };
            append(
                &mut builder,
                &join_path(path, b".wh..wh..opq"),
                &marker,
                chunks,
            )
            .at("<layer tar>")?;
        }
    }
    builder.into_inner().at("<layer tar>")?;
    Ok(())
}

fn append(
    builder: &mut tar::Builder<&mut dyn Write>,
    path: &[u8],
    entry: &Entry,
    chunks: &ChunkDir,
) -> io::Result<()> {
    let (name, kind, link): (Vec<u8>, EntryType, &[u8]) = match entry.kind {
        Kind::Whiteout => {
            let (parent, base) = split_path(path);
            (
                join_path(parent, &[b".wh.", base].concat()),
                EntryType::Regular,
                b"",
            )
        }
        Kind::Dir if path.is_empty() => (b"./".to_vec(), EntryType::Directory, b""),
        Kind::Dir => ([path, b"/"].concat(), EntryType::Directory, b""),
        Kind::Regular => (path.to_vec(), EntryType::Regular, b""),
        Kind::Hardlink => (path.to_vec(), EntryType::Link, &entry.link),
        Kind::Symlink => (path.to_vec(), EntryType::Symlink, &entry.link),
        Kind::CharDev => (path.to_vec(), EntryType::Char, b""),
        Kind::BlockDev => (path.to_vec(), EntryType::Block, b""),
        Kind::Fifo => (path.to_vec(), EntryType::Fifo, b""),
        // Tar has no sockets; docker leaves them out of layers too.
        Kind::Socket => return Ok(()),
    };
    let size = if entry.kind == Kind::Regular {
        entry.size
    } else {
        0
    };
    let secs = entry.mtime_ns.div_euclid(1_000_000_000).max(0) as u64;
    let nanos = entry.mtime_ns.rem_euclid(1_000_000_000);

    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if name.len() > 100 {
        pax.push(("path".into(), name.clone()));
    }
    if link.len() > 100 {
        pax.push(("linkpath".into(), link.to_vec()));
    }
    if entry.uid > USTAR_ID_MAX {
        pax.push(("uid".into(), entry.uid.to_string().into_bytes()));
    }
    if entry.gid > USTAR_ID_MAX {
        pax.push(("gid".into(), entry.gid.to_string().into_bytes()));
    }
    if size > 0o77777777777 {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    if nanos != 0 {
        pax.push(("mtime".into(), format!("{secs}.{nanos:09}").into_bytes()));
    }
    for (k, v) in &entry.xattrs {
        pax.push((
            format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
            v.clone(),
        ));
    }
    pax.sort();
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }

    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    let old = h.as_old_mut();
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    old.linkname[..l].copy_from_slice(&link[..l]);
    h.set_mode(entry.mode & 0o7777);
    h.set_uid(entry.uid.min(USTAR_ID_MAX) as u64);
    h.set_gid(entry.gid.min(USTAR_ID_MAX) as u64);
    h.set_mtime(secs);
    h.set_size(size.min(0o77777777777));
    if matches!(entry.kind, Kind::CharDev | Kind::BlockDev) {
        h.set_device_major(entry.rdev.0)?;
        h.set_device_minor(entry.rdev.1)?;
    }
    h.set_cksum();
    if size > 0 {
        builder.append(&h, ContentReader::new(chunks, entry))
    } else {
        builder.append(&h, io::empty())
    }
}
