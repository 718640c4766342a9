//! The FUSE inode table: which paths a node id stands for, and how many
//! kernel references it has.
//!
//! Node ids are the stable inode numbers themselves (fuser sends `st_ino` as
//! the node id), except the root, which FUSE fixes at 1. Hardlinks share
//! one node id, so a node keeps every path the kernel has looked it up by;
//! any of them reaches the same file. A node whose last name went while the
//! kernel still holds it keeps its file as an [`Orphan`].
//!
//! An upper node's number is its host inode's, which the host gives to a
//! new file once the old one is freed (a removed directory's at once). If
//! the kernel still holds the old node when the new file shows up, the
//! reply carries a new generation: the kernel then retires its old inode
//! instead of taking it for the new file (a `mkdir` answered with the
//! number of a directory just removed failed with ESTALE).

use crate::ids::NodeId;
use crate::orphan::Orphan;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Slot {
    paths: Vec<Vec<u8>>,
    lookups: u64,
    orphan: Option<Arc<Orphan>>,
    generation: u64,
}

impl Slot {
    /// True when a file found by name under this number now cannot be
    /// the one the kernel holds: the node has no name left and its host
    /// inode may have been freed.
    fn is_retired(&self) -> bool {
        self.lookups > 0
            && self.paths.is_empty()
            && self.orphan.as_ref().is_none_or(|o| o.lost_its_inode())
    }
}

/// Invariant: `by_path` holds exactly the (path, id) pairs of `slots`, so
/// that removing or renaming a subtree touches only the nodes in it (a scan
/// of every node made each unlink cost the whole table after a `find`).
#[derive(Debug, Default)]
pub struct InodeTable {
    slots: HashMap<NodeId, Slot>,
    by_path: BTreeMap<Vec<u8>, Vec<NodeId>>,
    /// The last generation handed out for a reused number.
    last_generation: u64,
}

/// The keys of `map` at `path` or under it: `path` itself, then the range
/// [path + "/", path + "0") ('0' is the byte after '/').
fn subtree<V>(map: &BTreeMap<Vec<u8>, V>, path: &[u8]) -> Vec<Vec<u8>> {
    subtree_keys(map, path).cloned().collect()
}

/// The keys of [`subtree`], borrowed.
fn subtree_keys<'m, V>(
    map: &'m BTreeMap<Vec<u8>, V>,
    path: &[u8],
) -> impl Iterator<Item = &'m Vec<u8>> {
    let lo = [path, b"/"].concat();
    let hi = [path, b"0"].concat();
    let own = map.get_key_value(path).map(|(k, _)| k);
    own.into_iter().chain(map.range(lo..hi).map(|(k, _)| k))
}

impl InodeTable {
    /// The node id for a node with stable number `ino` at `path`.
    pub fn node_id(path: &[u8], ino: u64) -> NodeId {
        if path.is_empty() {
            NodeId::ROOT
        } else {
            NodeId::of_ino(ino)
        }
    }

    /// The generation a reply naming `id` by a name carries now (see the
    /// module documentation).
    pub fn generation(&self, id: NodeId) -> u64 {
        match self.slots.get(&id) {
            Some(s) if s.is_retired() => self.last_generation + 1,
            Some(s) => s.generation,
            None => 0,
        }
    }

    /// Records one kernel reference to `id` reached by `path` (`None`: by
    /// a name that is no longer its own, so only the count changes);
    /// returns the node's generation.
    pub fn add_lookup(&mut self, id: NodeId, path: Option<&[u8]>) -> u64 {
        if id == NodeId::ROOT {
            return 0;
        }
        let last_generation = &mut self.last_generation;
        let slot = self.slots.entry(id).or_default();
        if path.is_some() && slot.is_retired() {
            *last_generation += 1;
            slot.generation = *last_generation;
        }
        slot.lookups += 1;
        let Some(path) = path else {
            return slot.generation;
        };
        // Found by a name again (another hardlink): the name is the way in.
        slot.orphan = None;
        let generation = slot.generation;
        // Known by this name already? Asked of `by_path` (the invariant),
        // not of the node's own list: a file of 60,000 hardlinks made each
        // lookup of a name walk all the others (an `ls -l` of them took
        // 26 s).
        let ids = self.by_path.entry(path.to_vec()).or_default();
        if !ids.contains(&id) {
            ids.push(id);
            slot.paths.push(path.to_vec());
        }
        generation
    }

    /// A path of `id`, or `None` when the kernel holds no reference to it.
    pub fn path(&self, id: NodeId) -> Option<Vec<u8>> {
        if id == NodeId::ROOT {
            return Some(Vec::new());
        }
        self.slots.get(&id).and_then(|s| s.paths.first().cloned())
    }

    /// The node the kernel knows by `path` and by no other name: the one
    /// that becomes an orphan when `path` goes.
    pub fn sole_node(&self, path: &[u8]) -> Option<NodeId> {
        self.by_path.get(path)?.iter().copied().find(|id| {
            self.slots
                .get(id)
                .is_some_and(|s| s.paths.len() == 1 && s.paths[0] == path)
        })
    }

    /// `id` has no name left but keeps `orphan` until the kernel forgets it.
    pub fn set_orphan(&mut self, id: NodeId, orphan: Orphan) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.orphan = Some(Arc::new(orphan));
        }
    }

    pub fn orphan(&self, id: NodeId) -> Option<Arc<Orphan>> {
        self.slots.get(&id).and_then(|s| s.orphan.clone())
    }

    pub fn forget(&mut self, id: NodeId, n: u64) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.lookups = slot.lookups.saturating_sub(n);
            if slot.lookups == 0 {
                if let Some(slot) = self.slots.remove(&id) {
                    for p in slot.paths {
                        self.unindex(&p, id);
                    }
                }
            }
        }
    }

    fn unindex(&mut self, path: &[u8], id: NodeId) {
        if let Some(ids) = self.by_path.get_mut(path) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_path.remove(path);
            }
        }
    }

    /// `path` no longer names anything (unlink, rmdir, replaced by rename):
    /// it and everything under it leave every node.
    pub fn remove_path(&mut self, path: &[u8]) {
        for p in subtree(&self.by_path, path) {
            for id in self.by_path.remove(&p).unwrap_or_default() {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.paths.retain(|q| *q != p);
                }
            }
        }
    }

    /// What was at `from` (and under it) is now at `to`.
    /// How much longer than `from` the longest known path at or below it
    /// is: a rename of `from` makes each of them that much longer than
    /// its new name.
    pub fn longest_below(&self, from: &[u8]) -> usize {
        subtree_keys(&self.by_path, from)
            .map(|p| p.len() - from.len())
            .max()
            .unwrap_or(0)
    }

    pub fn rename(&mut self, from: &[u8], to: &[u8]) {
        for p in subtree(&self.by_path, from) {
            let mut np = to.to_vec();
            np.extend_from_slice(&p[from.len()..]);
            for id in self.by_path.remove(&p).unwrap_or_default() {
                if let Some(slot) = self.slots.get_mut(&id) {
                    for q in &mut slot.paths {
                        if *q == p {
                            q.clone_from(&np);
                        }
                    }
                    // Two names of one node may meet (a hardlink renamed
                    // over another): keep one.
                    let mut seen = Vec::new();
                    slot.paths.retain(|q| {
                        let dup = seen.contains(q);
                        if !dup {
                            seen.push(q.clone());
                        }
                        !dup
                    });
                }
                let ids = self.by_path.entry(np.clone()).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }

    /// `a` and `b` swapped places (RENAME_EXCHANGE).
    pub fn exchange(&mut self, a: &[u8], b: &[u8]) {
        const MARK: &[u8] = b"\0exchange";
        self.rename(a, MARK);
        self.rename(b, a);
        self.rename(MARK, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(ino: u64) -> NodeId {
        NodeId::of_ino(ino)
    }

    #[test]
    fn renaming_a_directory_moves_the_paths_of_everything_under_it() {
        let mut t = InodeTable::default();
        t.add_lookup(n(10), Some(b"a"));
        t.add_lookup(n(11), Some(b"a/b"));
        t.add_lookup(n(12), Some(b"ab"));
        t.rename(b"a", b"z");
        assert_eq!(t.path(n(10)).as_deref(), Some(&b"z"[..]));
        assert_eq!(t.path(n(11)).as_deref(), Some(&b"z/b"[..]));
        assert_eq!(t.path(n(12)).as_deref(), Some(&b"ab"[..]));
    }

    #[test]
    fn a_hardlinked_node_survives_unlinking_one_of_its_names() {
        let mut t = InodeTable::default();
        t.add_lookup(n(10), Some(b"x"));
        t.add_lookup(n(10), Some(b"y"));
        t.remove_path(b"x");
        assert_eq!(t.path(n(10)).as_deref(), Some(&b"y"[..]));
        t.forget(n(10), 2);
        assert!(t.path(n(10)).is_none());
    }

    #[test]
    fn a_number_found_again_after_its_directory_went_gets_a_new_generation() {
        let mut t = InodeTable::default();
        assert_eq!(t.add_lookup(n(10), Some(b"d")), 0);
        t.remove_path(b"d");
        let mut node =
            crate::lower::Node::from_entry(layerdb::Entry::new(layerdb::Kind::Dir, 0o755), 10);
        node.entry.nlink = 0;
        t.set_orphan(n(10), Orphan::Gone(Box::new(node)));
        let g = t.generation(n(10));
        assert_eq!(t.add_lookup(n(10), Some(b"e")), g);
        assert_ne!(g, 0);
        assert_eq!(t.add_lookup(n(10), Some(b"e")), g, "the same node keeps it");
    }

    #[test]
    fn exchange_swaps_two_subtrees() {
        let mut t = InodeTable::default();
        t.add_lookup(n(10), Some(b"a/x"));
        t.add_lookup(n(11), Some(b"b/y"));
        t.exchange(b"a", b"b");
        assert_eq!(t.path(n(10)).as_deref(), Some(&b"b/x"[..]));
        assert_eq!(t.path(n(11)).as_deref(), Some(&b"a/y"[..]));
    }
}
