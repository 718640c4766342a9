//! Chunks: pieces of file content cut by content-defined chunking and kept
//! once per store as `chunks/<64 hex>`, named by their sha256.
//!
//! A chunk file is written unnamed (O_TMPFILE) and linked under its name
//! when complete, so a reader never sees half a chunk. Durability comes from one
//! `syncfs` before the database commit that first references the chunk (see
//! `ChunkDir::sync`), not from an fsync per chunk: chunks that a crash leaves
//! unreferenced are harmless and `gc` removes them.

use crate::digest::Digest;
use crate::entry::ChunkRef;
use crate::error::{IoContext, Result, StoreError};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// FastCDC's average chunk size, chosen by `scripts/bench-store` (see
/// docs/design.md): 64 KiB keeps the per-chunk overhead (one file, one
/// 36-byte reference) small while a one-byte edit still costs about one
/// chunk. Minimum and maximum are a quarter and four times the average.
pub const AVG_CHUNK: u32 = 64 * 1024;

/// The (min, avg, max) FastCDC sizes. `STRATA_CHUNK_AVG` (bytes) overrides
/// the average, so the benchmark can compare sizes on real trees; chunk
/// boundaries never change a layer's diff id, only how it is stored.
fn chunk_sizes() -> (u32, u32, u32) {
    let avg = std::env::var("STRATA_CHUNK_AVG")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| (1024..=16 << 20).contains(v))
        .unwrap_or(AVG_CHUNK);
    (avg / 4, avg, avg * 4)
}

/// Files up to this size are kept inside their entry: a chunk file would
/// waste most of a disk block on them.
pub const INLINE_MAX: u64 = 512;

#[derive(Clone, Debug)]
pub struct ChunkDir {
    dir: PathBuf,
}

impl ChunkDir {
    pub fn new(dir: PathBuf) -> ChunkDir {
        ChunkDir { dir }
    }

    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir.join(hex)
    }

    /// Stores `data` under its digest unless it is there already. Returns the
    /// reference and whether new bytes were written.
    pub fn put(&self, data: &[u8]) -> Result<(ChunkRef, bool)> {
        let digest = Digest::of(data);
        let chunk = ChunkRef {
            digest,
            len: data.len() as u32,
        };
        let path = self.path_of(&digest);
        if path.exists() {
            return Ok((chunk, false));
        }
        write_whole(&self.dir, &path, data)?;
        Ok((chunk, true))
    }

    /// Splits a stream into chunks and stores each. Returns the chunk list
    /// and the number of bytes read.
    pub fn put_stream(&self, reader: &mut dyn Read) -> Result<(Vec<ChunkRef>, u64, u64)> {
        let mut chunks = Vec::new();
        let mut total = 0u64;
        let mut written = 0u64;
        let (min, avg, max) = chunk_sizes();
        let cdc = fastcdc::v2020::StreamCDC::new(reader, min, avg, max);
        for piece in cdc {
            let piece = piece.map_err(|e| StoreError::Io {
                path: PathBuf::from("<input>"),
                source: match e {
                    fastcdc::v2020::Error::IoError(io) => io,
                    other => io::Error::other(other.to_string()),
                },
            })?;
            let (chunk, new) = self.put(&piece.data)?;
            total += piece.length as u64;
            if new {
                written += piece.length as u64;
            }
            chunks.push(chunk);
        }
        Ok((chunks, total, written))
    }

    /// Reads `buf.len()` bytes (fewer at the end) of a chunk from `offset`.
    pub fn read_at(&self, chunk: &ChunkRef, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let path = self.path_of(&chunk.digest);
        let f = File::open(&path).map_err(|e| StoreError::BadChunk {
            digest: chunk.digest,
            reason: e.to_string(),
        })?;
        let mut done = 0;
        while done < buf.len() {
            let n = f
                .read_at(&mut buf[done..], offset + done as u64)
                .at(&path)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    /// Reads a whole chunk, checking its length (`verify` checks digests).
    pub fn read(&self, chunk: &ChunkRef) -> Result<Vec<u8>> {
        let bad = |reason: String| StoreError::BadChunk {
            digest: chunk.digest,
            reason,
        };
        let data = fs::read(self.path_of(&chunk.digest)).map_err(|e| bad(e.to_string()))?;
        if data.len() != chunk.len as usize {
            return Err(bad(format!("{} bytes, expected {}", data.len(), chunk.len)));
        }
        Ok(data)
    }

    /// Reads a whole chunk and checks its digest.
    pub fn read_verified(&self, chunk: &ChunkRef) -> Result<Vec<u8>> {
        let data = self.read(chunk)?;
        if Digest::of(&data) != chunk.digest {
            return Err(StoreError::BadChunk {
                digest: chunk.digest,
                reason: "content does not match its name".to_string(),
            });
        }
        Ok(data)
    }

    /// Flushes every chunk written so far to disk, so that a database commit
    /// that references them can be trusted after a power loss.
    pub fn sync(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let f = File::open(&self.dir).at(&self.dir)?;
        nix_syncfs(&f).at(&self.dir)
    }

    /// Every chunk file and leftover temporary file, for gc and verify.
    pub fn list(&self) -> Result<Vec<(PathBuf, Option<Digest>)>> {
        let mut out = Vec::new();
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for f in dir {
            let f = f.at(&self.dir)?;
            let name = f.file_name().to_string_lossy().into_owned();
            out.push((f.path(), name.parse().ok()));
        }
        Ok(out)
    }
}

/// Creates `path` holding `data`, so that no reader ever sees it partly
/// written: the bytes go to an unnamed file (O_TMPFILE) that is linked
/// under its name only when complete, one directory update per chunk; where
/// the filesystem has no O_TMPFILE, through a temporary name and a rename.
fn write_whole(dir: &Path, path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let open_unnamed = || {
        fs::OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
    };
    let unnamed = match open_unnamed() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).at(dir)?;
            open_unnamed()
        }
        other => other,
    };
    match unnamed {
        Ok(mut f) => {
            f.write_all(data).at(path)?;
            link_unnamed(&f, path)
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR)
            ) =>
        {
            let name = path
                .file_name()
                .expect("chunk paths end in a name")
                .to_string_lossy();
            let tmp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
            fs::write(&tmp, data).at(&tmp)?;
            fs::rename(&tmp, path).at(path)
        }
        Err(e) => Err(e).at(dir),
    }
}

/// Gives an O_TMPFILE file its name. Another process may have stored the
/// same chunk meanwhile: that is as good.
fn link_unnamed(f: &File, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .expect("no NUL in a number");
    let to = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(io::Error::other)
        .at(path)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; linkat
    // only reads them.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        e if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        e => Err(e).at(path),
    }
}

fn nix_syncfs(f: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `f` keeps open.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads `buf.len()` bytes from `offset` of a file made of `chunks`,
/// touching only the chunks that cover the range.
pub fn read_chunked(
    dir: &ChunkDir,
    chunks: &[ChunkRef],
    offset: u64,
    buf: &mut [u8],
) -> Result<usize> {
    let mut start = 0u64;
    let mut done = 0usize;
    // Chunk lists are short enough (16 per MiB) that a linear skip costs
    // less than keeping prefix sums around.
    for chunk in chunks {
        let end = start + chunk.len as u64;
        let want = offset + done as u64;
        if done == buf.len() {
            break;
        }
        if want < end {
            let n = dir.read_at(chunk, want - start, &mut buf[done..])?;
            done += n;
            if n == 0 {
                break;
            }
        }
        start = end;
    }
    Ok(done)
}

/// The path a chunk lives at, for tests and tools.
pub fn chunk_path(root: &Path, digest: &Digest) -> PathBuf {
    ChunkDir::new(root.join("chunks")).path_of(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_read_touches_only_the_chunks_that_cover_it() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkDir::new(dir.path().to_path_buf());
        let refs: Vec<ChunkRef> = [[1u8; 100], [2u8; 100], [3u8; 100]]
            .iter()
            .map(|data| chunks.put(data).unwrap().0)
            .collect();
        // Without the first and last chunk, a read inside the middle one works.
        std::fs::remove_file(chunks.path_of(&refs[0].digest)).unwrap();
        std::fs::remove_file(chunks.path_of(&refs[2].digest)).unwrap();
        let mut buf = [0u8; 50];
        assert_eq!(read_chunked(&chunks, &refs, 120, &mut buf).unwrap(), 50);
        assert_eq!(buf, [2u8; 50]);
        // A read that crosses into a missing chunk fails, naming it.
        let mut buf = [0u8; 50];
        let err = read_chunked(&chunks, &refs, 180, &mut buf).unwrap_err();
        assert!(err.to_string().contains(&refs[2].digest.hex()));
    }

    #[test]
    fn the_same_bytes_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkDir::new(dir.path().to_path_buf());
        let (a, new_a) = chunks.put(b"same").unwrap();
        let (b, new_b) = chunks.put(b"same").unwrap();
        assert_eq!(a, b);
        assert!(new_a && !new_b);
        assert_eq!(chunks.list().unwrap().len(), 1);
    }
}
