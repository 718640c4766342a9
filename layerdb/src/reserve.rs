//! A little disk space kept back for the commands that free space.
//!
//! Opening the index for writing writes (a new MANIFEST, OPTIONS and log
//! file), so on a full disk every writer failed, `rm`, `rmi` and `gc`
//! included, and nothing strata could do freed space. Every writer keeps
//! `<root>/reserve` (a few preallocated MiB) in place when there is room;
//! a command that only deletes removes it before it opens the index and
//! puts it back when done, if the space is there again.

use std::fs;
use std::path::{Path, PathBuf};

/// Enough for an index open and a batch of deletes, many times over.
const RESERVE_BYTES: i64 = 4 << 20;

fn path(root: &Path) -> PathBuf {
    root.join("reserve")
}

/// Makes the reserve if it is missing and the space is there; a disk too
/// full for it is not an error (the reserve is for that case).
pub(crate) fn keep(root: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let path = path(root);
    if path.exists() {
        return;
    }
    let Ok(f) = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    else {
        return; // made meanwhile by another process, or no room for an inode
    };
    let mode = nix::fcntl::FallocateFlags::empty();
    if let Err(e) = nix::fcntl::fallocate(&f, mode, 0, RESERVE_BYTES) {
        log::debug!("no disk space reserve at {}: {e}", path.display());
        let _ = fs::remove_file(&path);
    }
}

/// Frees the reserve for a command that is about to delete.
pub(crate) fn release(root: &Path) {
    let _ = fs::remove_file(path(root));
}
