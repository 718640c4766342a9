//! Nodes whose last write found nothing for a write to clear.
//!
//! A write by a caller without CAP_FSETID must clear the file's set-id
//! bits, and any write drops its capabilities (see `UnionFs::write`). In
//! the rootless format that costs two xattr calls per WRITE, reading the
//! mode and removing the capability, while most files have neither: an
//! untar's 15,518 WRITEs made 31,036 such calls for 4,864 files. So once a
//! write has found a node's file without set-id bits and without
//! capabilities, the node is remembered with the union's generation at
//! that check, and later writes skip both while the generation is the
//! same. Only a change of the tree (`UnionFs::change_tree`: a chmod, an
//! xattr, a copy-up...) can give a file set-id bits or capabilities, or
//! put another file behind the node's id (its stable inode number), and
//! every change moves the generation first. The check reads the mode
//! under the tree's read lock, so no change is half made while it looks.

use crate::handles::lock;
use crate::ids::NodeId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bound on remembered nodes; past it the table starts over.
const CAPACITY: usize = 1 << 14;

#[derive(Debug, Default)]
pub struct PlainWrites {
    /// node id -> the generation its file was seen plain at
    nodes: Mutex<HashMap<NodeId, u64>>,
}

impl PlainWrites {
    /// Whether node `id`'s file was seen plain at `generation`.
    pub fn holds(&self, id: NodeId, generation: u64) -> bool {
        lock(&self.nodes).get(&id) == Some(&generation)
    }

    /// Node `id`'s file was seen plain by a check made at `generation`.
    pub fn record(&self, id: NodeId, generation: u64) {
        let mut nodes = lock(&self.nodes);
        if nodes.len() >= CAPACITY {
            nodes.clear();
        }
        nodes.insert(id, generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_plain_only_at_the_generation_it_was_seen_at() {
        let p = PlainWrites::default();
        let id = NodeId::of_ino(7);
        assert!(!p.holds(id, 3));
        p.record(id, 3);
        assert!(p.holds(id, 3));
        assert!(!p.holds(id, 4), "a change since");
        assert!(!p.holds(NodeId::of_ino(8), 3));
    }
}
