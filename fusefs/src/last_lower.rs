//! The last resolution of a node to a lower layer, kept for the next
//! request about it.
//!
//! Before the first write to a lower file the kernel asks it for
//! `security.capability` (a GETXATTR), then sends the WRITE: two requests
//! that each resolved the file's path, probing the upper for the file and
//! for its whiteout, two failing host stats each. A path that resolves to
//! a lower layer keeps resolving there until the tree changes: only a
//! change puts a file or a whiteout in the upper (a copy-up, a create, an
//! unlink, a rename), and every change moves the union's generation first
//! (`UnionFs::change_tree`). So the last such resolution is kept with the
//! generation it was found at, and answers the next request about the same
//! node and path while the generation is the same. Found and used under
//! the tree's read lock only: under the write lock the generation has
//! already moved for a change not made yet. A resolution in the upper is
//! never kept, as a write changes its file without changing the tree.

use crate::handles::lock;
use crate::ids::NodeId;
use crate::union::Resolved;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct LastLower {
    slot: Mutex<Option<Kept>>,
}

#[derive(Debug)]
struct Kept {
    id: NodeId,
    generation: u64,
    path: Vec<u8>,
    r: Resolved,
}

impl LastLower {
    /// Node `id`'s resolution at `path`, if it was the last one kept and
    /// was found at `generation`.
    pub fn get(&self, id: NodeId, generation: u64, path: &[u8]) -> Option<Resolved> {
        let slot = lock(&self.slot);
        let k = slot.as_ref()?;
        (k.id == id && k.generation == generation && k.path == path).then(|| k.r.clone())
    }

    /// Keeps `r`, node `id`'s resolution in a lower layer at `path`, found
    /// at `generation`.
    pub fn keep(&self, id: NodeId, generation: u64, path: &[u8], r: &Resolved) {
        *lock(&self.slot) = Some(Kept {
            id,
            generation,
            path: path.to_vec(),
            r: r.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::Node;
    use layerdb::{Entry, Kind};

    #[test]
    fn a_resolution_answers_only_for_its_node_path_and_generation() {
        let last = LastLower::default();
        let (id, other) = (NodeId::of_ino(7), NodeId::of_ino(8));
        let node = Node::from_entry(Entry::new(Kind::Regular, 0o644), 7);
        let r = Resolved::single(1, b"d/f".to_vec(), node);
        assert!(last.get(id, 3, b"d/f").is_none());
        last.keep(id, 3, b"d/f", &r);
        assert_eq!(last.get(id, 3, b"d/f").map(|r| r.layer), Some(1));
        assert!(last.get(id, 4, b"d/f").is_none(), "a change since");
        assert!(last.get(other, 3, b"d/f").is_none());
        assert!(last.get(id, 3, b"d/g").is_none(), "renamed since");
    }
}
