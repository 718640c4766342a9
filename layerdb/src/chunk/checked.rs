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

use crate::digest::Digest;
use crate::entry::ChunkRef;
use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Mutex;

/// Verdicts kept: past this many the map starts over (each is ~80 bytes;
/// 64k chunks are 4 GiB of content at the average size).
const KEPT: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(m: &Metadata) -> Fingerprint {
        Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Checked {
    good: Mutex<HashMap<Digest, Fingerprint>>,
    /// Damaged chunks already logged.
    reported: Mutex<HashSet<Digest>>,
}

impl Checked {
    /// Whether `f` holds `chunk`'s content; the reason if not. The bytes
    /// read and hashed, if it took a read (not when the file was found
    /// good, unchanged, before).
    pub fn check(&self, f: &File, chunk: &ChunkRef) -> Result<Option<Vec<u8>>, String> {
        let meta = f.metadata().map_err(|e| e.to_string())?;
        let print = Fingerprint::of(&meta);
        let lock = || self.good.lock().unwrap_or_else(|p| p.into_inner());
        if lock().get(&chunk.digest) == Some(&print) {
            return Ok(None);
        }
        if meta.len() != chunk.len as u64 {
            return Err(format!("{} bytes, expected {}", meta.len(), chunk.len));
        }
        let mut data = vec![0u8; chunk.len as usize];
        f.read_exact_at(&mut data, 0).map_err(|e| e.to_string())?;
        super::content_matches(chunk, &data)?;
        // The fingerprint from before the read: a change during it makes
        // the next open check again.
        let mut good = lock();
        if good.len() >= KEPT {
            good.clear();
        }
        good.insert(chunk.digest, print);
        Ok(Some(data))
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
        checked.check(&File::open(&path).unwrap(), &chunk).unwrap();
        // Same length, new bytes: mtime and ctime move.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"evil").unwrap();
        let err = checked
            .check(&File::open(&path).unwrap(), &chunk)
            .unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(checked.first_report(&chunk.digest));
        assert!(!checked.first_report(&chunk.digest), "reported once");
    }
}
