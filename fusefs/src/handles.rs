//! Open files, keyed by FUSE file handle.

use crate::ids::FileHandle;
use crate::lower::Node;
use crate::partial::PartialFile;
use std::collections::HashMap;
use std::fs::File;
use std::num::NonZeroU64;
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
    /// An upper file copied up block by block: read through its record,
    /// merged with the layer it came from (see `crate::partial`).
    Partial {
        file: File,
        writable: bool,
        /// Opened `O_APPEND`: a write lands at the end, whatever its offset.
        appends: bool,
        partial: Arc<PartialFile>,
    },
    /// A file of a store (or in-memory) layer, read through [`crate::Lower`].
    /// The node is boxed: it is the largest variant by far (its entry).
    Layer {
        layer: usize,
        path: Vec<u8>,
        node: Box<Node>,
    },
}

impl OpenFile {
    /// The host file behind an upper or host layer's file (none for a
    /// store layer's).
    pub fn host_file(&self) -> Option<&File> {
        match self {
            OpenFile::Host { file, .. } | OpenFile::Partial { file, .. } => Some(file),
            OpenFile::Layer { .. } => None,
        }
    }

    pub fn is_writable(&self) -> bool {
        matches!(
            self,
            OpenFile::Host { writable: true, .. } | OpenFile::Partial { writable: true, .. }
        )
    }
}

#[derive(Debug, Default)]
pub struct Handles {
    next: AtomicU64,
    files: Mutex<HashMap<FileHandle, Arc<OpenFile>>>,
}

impl Handles {
    fn next_fh(&self) -> FileHandle {
        // Start at 1: FUSE's 0 is "no handle". 2^64 opens do not happen.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        FileHandle::nth(NonZeroU64::MIN.saturating_add(n))
    }

    pub fn add_file(&self, f: OpenFile) -> FileHandle {
        let fh = self.next_fh();
        lock(&self.files).insert(fh, Arc::new(f));
        fh
    }

    pub fn file(&self, fh: FileHandle) -> Option<Arc<OpenFile>> {
        lock(&self.files).get(&fh).cloned()
    }

    pub fn close_file(&self, fh: FileHandle) {
        lock(&self.files).remove(&fh);
    }
}
