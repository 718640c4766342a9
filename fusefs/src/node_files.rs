//! Host files of nodes the kernel does I/O on without a file handle.
//!
//! Without passthrough, OPEN is answered ENOSYS (see `adapter`): the kernel
//! then sends no OPEN or RELEASE for existing files, keeps their pages, and
//! names only the node in READ, WRITE, FSYNC and the like. A node's file is
//! opened on its first such request and kept here while the tree stays as
//! it was (a change may put another file behind the node: a copy-up, a
//! truncate), checked by the union's generation number. At most
//! [`CAPACITY`] files, and a quarter of the open-file limit, stay open; a
//! full table starts over.
//!
//! A file CREATE made keeps the node CREATE answered with: while the tree
//! is as it was, that file is the node entire (no link elsewhere, no part
//! in a lower), so its fstat tells what changed since (see
//! `UnionFs::set_new_file_times` and `UnionFs::setattr`).

use crate::handles::{lock, OpenFile};
use crate::ids::NodeId;
use crate::lower::Node;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const CAPACITY: usize = 1024;

#[derive(Debug)]
pub struct NodeFiles {
    files: Mutex<HashMap<NodeId, Kept>>,
    capacity: usize,
}

#[derive(Debug)]
struct Kept {
    /// The tree's generation when the file was opened.
    generation: u64,
    file: Arc<OpenFile>,
    /// The node as CREATE made it, for a file CREATE made.
    made: Option<Arc<Node>>,
}

impl Default for NodeFiles {
    /// Sized by the process's open-file limit as it is now (see
    /// `crate::mount`, which raises it first).
    fn default() -> NodeFiles {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        NodeFiles::with_capacity(usize::try_from(soft / 4).unwrap_or(CAPACITY))
    }
}

impl NodeFiles {
    pub fn with_capacity(capacity: usize) -> NodeFiles {
        NodeFiles {
            files: Mutex::default(),
            capacity: capacity.clamp(1, CAPACITY),
        }
    }

    /// Node `id`'s file if it was opened at `generation` and can be
    /// written when `write` asks for it.
    pub fn get(&self, id: NodeId, generation: u64, write: bool) -> Option<Arc<OpenFile>> {
        let (file, _) = self.current(id, generation)?;
        (!write || file.is_writable()).then_some(file)
    }

    /// Node `id`'s file and the node it was made as, if CREATE made it and
    /// the tree is still at `generation`.
    pub fn made(&self, id: NodeId, generation: u64) -> Option<(Arc<OpenFile>, Node)> {
        let (file, made) = self.current(id, generation)?;
        Some((file, Node::clone(made?.as_ref())))
    }

    /// Node `id`'s file and what it was made as, if it was opened at
    /// `generation`.
    fn current(&self, id: NodeId, generation: u64) -> Option<(Arc<OpenFile>, Option<Arc<Node>>)> {
        let mut files = lock(&self.files);
        match files.get(&id) {
            Some(k) if k.generation == generation => Some((k.file.clone(), k.made.clone())),
            // Stale: drop it now, so it holds no unlinked file open.
            Some(_) => {
                files.remove(&id);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, id: NodeId, generation: u64, file: OpenFile) -> Arc<OpenFile> {
        self.keep(id, generation, file, None)
    }

    /// Keeps the file CREATE made for node `id`, and the node as made.
    pub fn insert_made(&self, id: NodeId, generation: u64, file: OpenFile, made: Node) {
        self.keep(id, generation, file, Some(Arc::new(made)));
    }

    fn keep(
        &self,
        id: NodeId,
        generation: u64,
        file: OpenFile,
        made: Option<Arc<Node>>,
    ) -> Arc<OpenFile> {
        let mut files = lock(&self.files);
        if files.len() >= self.capacity {
            files.clear();
        }
        let file = Arc::new(file);
        let kept = Kept {
            generation,
            file: file.clone(),
            made,
        };
        files.insert(id, kept);
        file
    }

    /// Node `id`'s file, kept at `from` and made by CREATE, stays its file
    /// at `to`, now showing `made`: the change between went through it.
    pub fn renew(&self, id: NodeId, (from, to): (u64, u64), made: Node) {
        let mut files = lock(&self.files);
        if let Some(k) = files.get_mut(&id).filter(|k| k.generation == from) {
            k.generation = to;
            k.made = Some(Arc::new(made));
        }
    }

    /// The kernel forgot the node.
    pub fn forget(&self, id: NodeId) {
        lock(&self.files).remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(writable: bool) -> OpenFile {
        OpenFile::Host {
            file: tempfile::tempfile().expect("tempfile"),
            writable,
            backs_node: true,
        }
    }

    #[test]
    fn a_file_is_kept_for_its_generation_and_for_writes_only_if_writable() {
        let t = NodeFiles::default();
        t.insert(NodeId::of_ino(7), 1, host(false));
        assert!(t.get(NodeId::of_ino(7), 1, false).is_some());
        assert!(
            t.get(NodeId::of_ino(7), 1, true).is_none(),
            "a read-only file serves no write"
        );
        t.insert(NodeId::of_ino(7), 1, host(true));
        assert!(t.get(NodeId::of_ino(7), 1, true).is_some());
        assert!(
            t.get(NodeId::of_ino(7), 2, false).is_none(),
            "the tree changed"
        );
        assert!(
            t.get(NodeId::of_ino(7), 1, false).is_none(),
            "a stale file is dropped"
        );
        t.insert(NodeId::of_ino(8), 2, host(false));
        t.forget(NodeId::of_ino(8));
        assert!(t.get(NodeId::of_ino(8), 2, false).is_none());
    }

    #[test]
    fn the_table_stays_bounded() {
        for cap in [CAPACITY, 10] {
            let t = NodeFiles::with_capacity(cap);
            for id in 0..(cap as u64 + 10) {
                t.insert(NodeId::of_ino(id), 0, host(false));
            }
            assert!(lock(&t.files).len() <= cap);
            assert!(t.get(NodeId::of_ino(cap as u64 + 9), 0, false).is_some());
        }
        assert_eq!(NodeFiles::with_capacity(1 << 20).capacity, CAPACITY);
    }
}
