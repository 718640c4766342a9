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
use crate::oci::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use tar::{EntryType, Header};

/// A Write that only hashes and counts.
#[derive(Default)]
pub struct HashingWriter {
    hasher: Sha256,
    /// Bytes written so far.
    pub bytes: u64,
}

impl HashingWriter {
    /// The sha256 of everything written.
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

/// A Write that hashes on a thread of its own: an ingest hashes its layer's
/// tar there while it cuts, names and stores chunks on another core. File
/// content is handed over as the shared chunks it was cut into, not copied;
/// headers are gathered into blocks, and pieces are handed over 1 MiB at a
/// time: a hand-over per chunk woke the hasher 5,000 times per 200 MB.
pub struct BackgroundHasher {
    to_hasher: SyncSender<Vec<Bytes>>,
    /// Header bytes not yet a piece.
    gathered: Vec<u8>,
    /// Pieces not yet handed over, and their bytes.
    batch: Vec<Bytes>,
    batch_bytes: usize,
    hasher: JoinHandle<Digest>,
}

#[cfg(test)]
thread_local! {
    /// Canonical tars this thread hashed or started hashing: what a test
    /// ingest cost.
    pub(crate) static CANONICAL_HASHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Header bytes gathered into one piece.
const GATHER: usize = 64 * 1024;
/// Bytes handed over at a time.
const BATCH: usize = 1 << 20;

impl BackgroundHasher {
    /// Starts the hashing thread, its hash already fed `before`.
    pub fn spawn_from(before: Sha256) -> BackgroundHasher {
        #[cfg(test)]
        CANONICAL_HASHES.with(|n| n.set(n.get() + 1));
        // Bounded, so a slow hasher holds the ingest back instead of
        // letting the queued content grow (16 MiB at most).
        let (to_hasher, queued) = sync_channel::<Vec<Bytes>>(16);
        let hash = move || {
            let mut h = before;
            for batch in queued {
                for data in batch {
                    h.update(&data[..]);
                }
            }
            Digest::from_hasher(h)
        };
        let hasher = std::thread::Builder::new()
            .name("tar-hasher".into())
            .spawn(hash)
            .expect("a thread can be started");
        BackgroundHasher {
            to_hasher,
            gathered: Vec::with_capacity(GATHER),
            batch: Vec::new(),
            batch_bytes: 0,
            hasher,
        }
    }

    /// Hashes `data` next, without copying it.
    pub fn write_shared(&mut self, data: Bytes) -> io::Result<()> {
        self.end_gathered();
        self.batch_bytes += data.len();
        self.batch.push(data);
        if self.batch_bytes >= BATCH {
            self.hand_over()?;
        }
        Ok(())
    }

    /// The digest of everything written.
    pub fn digest(mut self) -> io::Result<Digest> {
        self.end_gathered();
        self.hand_over()?;
        drop(self.to_hasher);
        self.hasher
            .join()
            .map_err(|_| io::Error::other("the tar hashing thread panicked"))
    }

    /// Makes the gathered header bytes the batch's next piece.
    fn end_gathered(&mut self) {
        if !self.gathered.is_empty() {
            let block = std::mem::replace(&mut self.gathered, Vec::with_capacity(GATHER));
            self.batch_bytes += block.len();
            self.batch.push(Bytes::from(block));
        }
    }

    fn hand_over(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        self.to_hasher
            .send(std::mem::take(&mut self.batch))
            .map_err(|_| io::Error::other("the tar hashing thread is gone"))
    }
}

impl Write for BackgroundHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.gathered.extend_from_slice(buf);
        if self.gathered.len() >= GATHER {
            self.end_gathered();
            if self.batch_bytes >= BATCH {
                self.hand_over()?;
            }
        }
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
    /// A reader of `entry`'s content (inline or chunked) from `chunks`; chunks
    /// are read checked, so a damaged one is an error, never wrong bytes.
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
    #[cfg(test)]
    CANONICAL_HASHES.with(|n| n.set(n.get() + 1));
    let mut tar = TarWriter::new(out);
    for (path, entry) in entries {
        tar.entry(path, entry).at("<layer tar>")?;
        if entry.kind == Kind::Regular && entry.size > 0 {
            let n =
                io::copy(&mut ContentReader::new(chunks, entry), tar.out()).at("<layer tar>")?;
            tar.end_content(n).at("<layer tar>")?;
        }
    }
    tar.finish().at("<layer tar>")?;
    Ok(())
}

/// The canonical tar written one entry at a time, so that an ingest can
/// hash it as its entries arrive: `entry` writes the headers, the caller
/// writes a regular file's `entry.size` bytes of content to `out` and then
/// calls `end_content`.
pub struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarWriter<W> {
    /// A tar writer into `out`, nothing written yet.
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter {
            builder: tar::Builder::new(out),
        }
    }

    /// Writes the headers of one entry, and an opaque directory's marker
    /// after it.
    pub fn entry(&mut self, path: &[u8], entry: &Entry) -> io::Result<()> {
        append(&mut self.builder, path, entry)?;
        if entry.kind == Kind::Dir && entry.opaque {
            self.opaque_marker(path, entry.mtime_ns)?;
        }
        Ok(())
    }

    /// Marks directory `dir` (just written, with `mtime_ns`) opaque.
    pub fn opaque_marker(&mut self, dir: &[u8], mtime_ns: i64) -> io::Result<()> {
        let marker = Entry {
            mtime_ns,
            ..Entry::new(Kind::Regular, 0)
        };
        append(&mut self.builder, &join_path(dir, OPAQUE_MARKER), &marker)
    }

    /// Where a file's content goes, between `entry` and `end_content`.
    pub fn out(&mut self) -> &mut W {
        self.builder.get_mut()
    }

    /// Pads `len` bytes of content to the end of their tar block.
    pub fn end_content(&mut self, len: u64) -> io::Result<()> {
        let pad = (512 - len % 512) % 512;
        self.out().write_all(&[0u8; 512][..pad as usize])
    }

    /// Ends the archive and gives back where it went.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// Writes the headers (PAX and ustar) of one entry; its content, if any,
/// follows them.
fn append<W: Write>(builder: &mut tar::Builder<W>, path: &[u8], entry: &Entry) -> io::Result<()> {
    let (name, kind, link): (Vec<u8>, EntryType, &[u8]) = match entry.kind {
        Kind::Whiteout => {
            let (parent, base) = split_path(path);
            (
                join_path(parent, &[WHITEOUT_PREFIX, base].concat()),
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
    builder.append(&h, io::empty())
}
