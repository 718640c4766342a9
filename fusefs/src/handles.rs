//! Open files and directory listings, keyed by FUSE file handle.

use crate::lower::Node;
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Locks a mutex even if a panicking thread poisoned it: the tables stay
/// consistent between statements, and one panic must not stop the mount.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What an open file reads from.
#[derive(Debug)]
pub enum OpenFile {
    /// An upper file, or a file of a host directory layer.
    Host {
        file: File,
        writable: bool,
        /// `file` stays the node's file while it is open: an upper file, or
        /// any file of a read-only mount. A lower file of a writable mount
        /// is not (a copy-up replaces it), so it cannot back FUSE
        /// passthrough, which fixes one backing file per inode.
        backs_node: bool,
    },
    /// A file of a store (or in-memory) layer, read through [`crate::Lower`].
    Layer {
        layer: usize,
        path: Vec<u8>,
        node: Node,
    },
}

/// One row of a directory listing snapshot.
#[derive(Clone, Debug)]
pub struct DirItem {
    pub name: Vec<u8>,
    /// Node id to report.
    pub id: u64,
    /// Full path (for readdirplus lookups).
    pub path: Vec<u8>,
    pub node: Node,
    /// `.` and `..`, which readdirplus must not count as lookups.
    pub is_dot: bool,
}

/// A directory listing snapshot.
#[derive(Debug)]
pub struct Listing {
    /// The tree's generation when it was taken (see `UnionFs::note_lookup`).
    pub generation: u64,
    pub items: Vec<DirItem>,
}

/// An open directory: its node and, once read, its listing.
#[derive(Debug)]
pub struct DirHandle {
    pub id: u64,
    pub listing: Mutex<Option<Arc<Listing>>>,
}

#[derive(Debug, Default)]
pub struct Handles {
    next: AtomicU64,
    /// fh -> (node id the file was opened as, the file).
    files: Mutex<HashMap<u64, (u64, Arc<OpenFile>)>>,
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
}

impl Handles {
    fn next_fh(&self) -> u64 {
        // Start at 1: some tools treat a 0 handle as "none".
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add_file(&self, node_id: u64, f: OpenFile) -> u64 {
        let fh = self.next_fh();
        lock(&self.files).insert(fh, (node_id, Arc::new(f)));
        fh
    }

    pub fn file(&self, fh: u64) -> Option<Arc<OpenFile>> {
        lock(&self.files).get(&fh).map(|(_, f)| f.clone())
    }

    pub fn close_file(&self, fh: u64) {
        lock(&self.files).remove(&fh);
    }

    pub fn add_dir(&self, id: u64) -> u64 {
        let fh = self.next_fh();
        let dir = DirHandle {
            id,
            listing: Mutex::new(None),
        };
        lock(&self.dirs).insert(fh, Arc::new(dir));
        fh
    }

    pub fn dir(&self, fh: u64) -> Option<Arc<DirHandle>> {
        lock(&self.dirs).get(&fh).cloned()
    }

    pub fn close_dir(&self, fh: u64) {
        lock(&self.dirs).remove(&fh);
    }
}
