//! Which chunk files hold their name's content.
//!
//! A chunk is checked (read whole and hashed) before any of its bytes
//! reach a reader. The verdict is kept per file as it was when checked
//! (device, inode, size, mtime and ctime): an unchanged file needs no
//! second check, so a warm read costs one `fstat` when it opens a chunk
//! file, and nothing while the file stays open. A write to the file, a
//! truncation or a new file under the name changes the fingerprint, and
//! the next open checks again. (A file changed while a reader keeps it
//! open is not checked again until it is reopened.)

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
    /// Whether `f` holds `chunk`'s content; the reason if not.
    pub fn check(&self, f: &File, chunk: &ChunkRef) -> Result<(), String> {
        let meta = f.metadata().map_err(|e| e.to_string())?;
        let print = Fingerprint::of(&meta);
        let lock = || self.good.lock().unwrap_or_else(|p| p.into_inner());
        if lock().get(&chunk.digest) == Some(&print) {
            return Ok(());
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
        Ok(())
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
