//! A little disk space kept back for the commands that free space.
//!
//! Opening the index for writing writes (a new MANIFEST, OPTIONS and log
//! file), so on a full disk every writer failed, `rm`, `rmi` and `gc`
//! included, and nothing strata could do freed space. Every writer keeps
//! `<root>/reserve` (a few preallocated MiB) in place when there is room;
//! a command that only deletes removes it before it opens the index and
//! puts it back when done, if the space is there again.

use std::path::{Path, PathBuf};

/// Enough for an index open and a batch of deletes, many times over.
const RESERVE_BYTES: i64 = 4 << 20;

fn path(root: &Path) -> PathBuf {
    root.join("reserve")
}

/// Makes the reserve if it is missing and the space is there; a disk too
/// full for it is not an error (the reserve is for that case).
pub(crate) fn keep(root: &Path) {
    let path = path(root);
    if path.exists() {
        return;
    }
    // Made meanwhile by another process, no room for an inode, or no room
    // for the bytes (then nothing is left behind).
    if let Err(e) = crate::storage::of(root).preallocate(&path, RESERVE_BYTES) {
        log::debug!("no disk space reserve at {}: {e}", path.display());
    }
}

/// Frees the reserve for a command that is about to delete.
pub(crate) fn release(root: &Path) {
    let _ = crate::storage::of(root).remove_file(&path(root));
}
