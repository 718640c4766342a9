//! Which chunk files hold their name's content.
//!
//! A chunk is checked (read whole and hashed) before any of its bytes
//! reach a reader, and the reader is served from the bytes that were
//! hashed: the check costs the hash, not a second read. The verdict is
//! kept per file as it was when checked (device, inode, size, mtime and
//! ctime): an unchanged file needs no second check, so a read of a
//! chunk checked before costs one `fstat`. A write to the file, a
//! truncation, a `touch`, a new file under the name all change the
//! fingerprint (ctime cannot be set back through the filesystem), and
//! the next read checks again.
//!
//! On a miss the verdict kept in the store is asked (`verdicts`): a chunk
//! file unchanged since strata wrote it or `strata verify` hashed it is
//! trusted without a hash.

use super::verdicts::StoredVerdicts;
use crate::digest::Digest;
use crate::entry::ChunkRef;
use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Verdicts kept: past this many the map starts over (each is ~80 bytes;
/// 64k chunks are 4 GiB of content at the average size).
const KEPT: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Bytes of a fingerprint as the index keeps it.
const ENCODED: usize = 56;

impl Fingerprint {
    /// Waits until every write to `f` whose times a fingerprint taken
    /// before could carry has its bytes in the file; call it between the
    /// `fstat` and the read. A `write(2)` sets the file's times before it
    /// copies its bytes in, so a fingerprint can hold the times of a write
    /// whose bytes the read then misses, and the chunk would be trusted
    /// with bytes it was never checked with (an import racing a writer
    /// served 2 of 105 flipped chunks as good, in 2 runs of 40). The write
    /// holds the inode's lock from before it sets the times until its
    /// bytes are in, and ext4's (XFS's, btrfs's) `lseek(SEEK_DATA)` takes
    /// that lock; a write that starts later moves the times again. Moves
    /// `f`'s offset: the reads after it say where they read.
    pub(crate) fn settle(f: &File) {
        let _ = nix::unistd::lseek(f, 0, nix::unistd::Whence::SeekData);
    }

    pub(crate) fn of(m: &Metadata) -> Fingerprint {
        Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// The fixed-size form the index keeps (big-endian fields in order).
    pub(crate) fn to_bytes(self) -> [u8; ENCODED] {
        let mut out = [0u8; ENCODED];
        let fields = [
            self.dev,
            self.ino,
            self.size,
            self.mtime.0 as u64,
            self.mtime.1 as u64,
            self.ctime.0 as u64,
            self.ctime.1 as u64,
        ];
        for (slot, v) in out.chunks_exact_mut(8).zip(fields) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// The fingerprint `to_bytes` made; None for bytes of another form
    /// (read as no verdict, so the chunk is hashed).
    pub(crate) fn from_bytes(b: &[u8]) -> Option<Fingerprint> {
        if b.len() != ENCODED {
            return None;
        }
        let f = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(Fingerprint {
            dev: f(0),
            ino: f(1),
            size: f(2),
            mtime: (f(3) as i64, f(4) as i64),
            ctime: (f(5) as i64, f(6) as i64),
        })
    }

    /// When the file last changed (its ctime: seconds, nanoseconds).
    pub(crate) fn changed(&self) -> (i64, i64) {
        self.ctime
    }
}

#[derive(Debug, Default)]
pub(crate) struct Checked {
    good: Mutex<HashMap<Digest, Fingerprint>>,
    /// Damaged chunks already logged.
    reported: Mutex<HashSet<Digest>>,
    /// Chunks read whole and hashed so far (tests and measurements: a
    /// cold read of chunks with stored verdicts hashes none).
    hashed: AtomicU64,
}

impl Checked {
    /// Whether `f` must be checked before it is read: its fingerprint if
    /// so, None if it was found good, unchanged, before (here, or by the
    /// writer or `verify` whose verdict `stored` keeps); the reason if it
    /// cannot hold `chunk` (its size).
    pub fn needs_check(
        &self,
        f: &File,
        chunk: &ChunkRef,
        stored: &StoredVerdicts,
    ) -> Result<Option<Fingerprint>, String> {
        let meta = f.metadata().map_err(|e| e.to_string())?;
        let print = Fingerprint::of(&meta);
        if self.lock().get(&chunk.digest) == Some(&print) {
            return Ok(None);
        }
        if meta.len() != chunk.len as u64 {
            return Err(format!("{} bytes, expected {}", meta.len(), chunk.len));
        }
        // A miss: one index lookup, against a hash of the whole chunk.
        if stored.get(&chunk.digest) == Some(print) {
            self.keep(chunk.digest, print);
            return Ok(None);
        }
        Ok(Some(print))
    }

    /// Reads `f` whole into `into` (the chunk's length) and checks it
    /// against `chunk`'s name; the reason if it does not match. `print` is
    /// the file's fingerprint from before the read (`needs_check`): a
    /// change during the read makes the next read check again.
    pub fn check_into(
        &self,
        f: &File,
        chunk: &ChunkRef,
        print: Fingerprint,
        into: &mut [u8],
    ) -> Result<(), String> {
        Fingerprint::settle(f);
        f.read_exact_at(into, 0).map_err(|e| e.to_string())?;
        self.hashed.fetch_add(1, Ordering::Relaxed);
        super::content_matches(chunk, into)?;
        self.keep(chunk.digest, print);
        Ok(())
    }

    /// Takes the stored verdicts of `digests`, where there are some,
    /// ahead of their first reads (each reader still compares its file's
    /// fingerprint with the verdict), in one lookup for those not known.
    pub fn prefetch(&self, digests: &[Digest], stored: &StoredVerdicts) {
        let unknown: Vec<Digest> = {
            let good = self.lock();
            digests
                .iter()
                .filter(|d| !good.contains_key(*d))
                .copied()
                .collect()
        };
        if unknown.is_empty() {
            return;
        }
        for (digest, print) in unknown.iter().zip(stored.get_many(&unknown)) {
            if let Some(print) = print {
                self.keep(*digest, print);
            }
        }
    }

    /// Whether a verdict for `digest` is held in memory (tests).
    #[cfg(test)]
    pub fn knows(&self, digest: &Digest) -> bool {
        self.lock().contains_key(digest)
    }

    fn keep(&self, digest: Digest, print: Fingerprint) {
        let mut good = self.lock();
        if good.len() >= KEPT {
            good.clear();
        }
        good.insert(digest, print);
    }

    /// Chunks read whole and hashed so far.
    pub fn hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Fingerprint>> {
        self.good.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True the first time a damaged chunk is reported.
    pub fn first_report(&self, digest: &Digest) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_changed_since_its_check_is_checked_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, b"good").unwrap();
        let chunk = ChunkRef {
            digest: Digest::of(b"good"),
            len: 4,
        };
        let checked = Checked::default();
        let check = |f: &File| {
            let mut data = [0u8; 4];
            match checked.needs_check(f, &chunk, &StoredVerdicts::default())? {
                Some(print) => checked.check_into(f, &chunk, print, &mut data),
                None => Ok(()),
            }
        };
        check(&File::open(&path).unwrap()).unwrap();
        assert_eq!(
            checked.needs_check(&File::open(&path).unwrap(), &chunk, &Default::default()),
            Ok(None),
            "unchanged: no second check"
        );
        // Same length, new bytes: mtime and ctime move.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"evil").unwrap();
        let err = check(&File::open(&path).unwrap()).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(checked.first_report(&chunk.digest));
        assert!(!checked.first_report(&chunk.digest), "reported once");
    }

    #[test]
    fn a_fingerprint_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, b"x").unwrap();
        let print = Fingerprint::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(Fingerprint::from_bytes(&print.to_bytes()), Some(print));
        assert_eq!(Fingerprint::from_bytes(&print.to_bytes()[1..]), None);
    }
}
