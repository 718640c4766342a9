//! Directory listings without directory handles.
//!
//! The server answers OPENDIR with ENOSYS, so the kernel sends no OPENDIR or
//! RELEASEDIR at all and keeps listings itself (FUSE's default for a
//! filesystem without opendir is FOPEN_CACHE_DIR): a warm walk costs the
//! server nothing. READDIR then names only the directory's node and an
//! offset, so each offset names the snapshot it belongs to: `seq << 32 |
//! index of the next entry`. A stream that started at offset 0 keeps
//! reading the snapshot it started with while the directory changes, as
//! POSIX wants of an open directory.

use crate::error::Result;
use crate::handles::lock;
use crate::ids::NodeId;
use crate::lower::Node;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Snapshots are dropped oldest first once they hold more entries than this
/// in all (a stream whose snapshot went is listed afresh from its index).
const MAX_ITEMS: usize = 1 << 16;

/// One row of a listing: what READDIRPLUS answers, no more (its path is
/// the listing's directory and its name, its node the attributes only).
#[derive(Clone, Debug)]
pub struct DirItem {
    pub name: Vec<u8>,
    /// Node id to report.
    pub id: NodeId,
    pub node: Node,
    /// `.` and `..`, which readdirplus must not count as lookups.
    pub is_dot: bool,
}

/// A directory's listing at one moment.
#[derive(Debug)]
pub struct Listing {
    seq: u32,
    /// The tree's generation when it was taken (see `UnionFs::note_lookup`).
    pub generation: u64,
    /// The listed directory's path.
    dir: Vec<u8>,
    pub items: Vec<DirItem>,
}

impl Listing {
    pub fn new(seq: u32, generation: u64, dir: Vec<u8>, items: Vec<DirItem>) -> Listing {
        Listing {
            seq,
            generation,
            dir,
            items,
        }
    }

    /// The path of `item`, one of the entries (not `.` or `..`).
    pub fn path_of(&self, item: &DirItem) -> Vec<u8> {
        layerdb::entry::join_path(&self.dir, &item.name)
    }

    /// The READDIR offset of the entry after `items[i]`.
    pub fn offset_after(&self, i: usize) -> u64 {
        u64::from(self.seq) << 32 | (i as u64 + 1)
    }
}

#[derive(Debug, Default)]
pub struct Listings {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    last_seq: u32,
    /// seq -> (node, snapshot), oldest first.
    by_seq: BTreeMap<u32, (NodeId, Arc<Listing>)>,
    /// node -> its newest snapshot.
    newest: HashMap<NodeId, u32>,
    items: usize,
}

impl Listings {
    /// The snapshot a READDIR of `node` at `offset` reads, and the index to
    /// start at. At offset 0 a snapshot taken in this `generation` of the
    /// tree serves again; otherwise `list` takes a new one under the
    /// sequence number it is given.
    pub fn get(
        &self,
        node: NodeId,
        offset: u64,
        generation: u64,
        list: impl FnOnce(u32) -> Result<Listing>,
    ) -> Result<(Arc<Listing>, usize)> {
        let (seq, index) = ((offset >> 32) as u32, (offset & 0xffff_ffff) as usize);
        let mut g = lock(&self.inner);
        let found = if offset == 0 {
            g.newest
                .get(&node)
                .and_then(|s| g.by_seq.get(s))
                .filter(|(_, l)| l.generation == generation)
        } else {
            g.by_seq.get(&seq).filter(|(n, _)| *n == node)
        };
        if let Some((_, l)) = found {
            return Ok((l.clone(), index));
        }
        g.last_seq = g.last_seq.wrapping_add(1).max(1);
        let seq = g.last_seq;
        drop(g);
        let listing = Arc::new(list(seq)?);
        let mut g = lock(&self.inner);
        g.items += listing.items.len();
        g.by_seq.insert(seq, (node, listing.clone()));
        g.newest.insert(node, seq);
        while g.items > MAX_ITEMS && g.by_seq.len() > 1 {
            let Some((old, (n, l))) = g.by_seq.pop_first() else {
                break;
            };
            g.items -= l.items.len();
            if g.newest.get(&n) == Some(&old) {
                g.newest.remove(&n);
            }
        }
        Ok((listing, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layerdb::{Entry, Kind};

    fn listing(seq: u32, generation: u64, names: &[&str]) -> Result<Listing> {
        let items = names
            .iter()
            .map(|n| DirItem {
                name: n.as_bytes().to_vec(),
                id: NodeId::of_ino(10),
                node: Node::from_entry(Entry::new(Kind::Regular, 0o644), 10),
                is_dot: false,
            })
            .collect();
        Ok(Listing::new(seq, generation, Vec::new(), items))
    }

    #[test]
    fn a_stream_keeps_its_snapshot_while_a_new_one_starts() {
        let l = Listings::default();
        let (first, i) = l
            .get(NodeId::of_ino(5), 0, 1, |s| listing(s, 1, &["a", "b", "c"]))
            .unwrap();
        assert_eq!(i, 0);
        let next = first.offset_after(0);
        // The directory changed (generation 2): a new stream lists again...
        let (second, _) = l
            .get(NodeId::of_ino(5), 0, 2, |s| {
                listing(s, 2, &["0", "a", "b", "c"])
            })
            .unwrap();
        assert_eq!(second.items.len(), 4);
        // ...while the first goes on in its own snapshot, at "b".
        let (cont, i) = l
            .get(NodeId::of_ino(5), next, 2, |_| panic!("listed again"))
            .unwrap();
        assert!(Arc::ptr_eq(&cont, &first));
        assert_eq!(cont.items[i].name, b"b");
        // Same generation: a new stream reuses the newest snapshot.
        let (again, _) = l
            .get(NodeId::of_ino(5), 0, 2, |_| panic!("listed again"))
            .unwrap();
        assert!(Arc::ptr_eq(&again, &second));
    }

    #[test]
    fn an_offset_of_another_node_or_a_dropped_snapshot_lists_afresh() {
        let l = Listings::default();
        let (first, _) = l
            .get(NodeId::of_ino(5), 0, 1, |s| listing(s, 1, &["a", "b"]))
            .unwrap();
        let (other, i) = l
            .get(NodeId::of_ino(6), first.offset_after(0), 1, |s| {
                listing(s, 1, &["x", "y"])
            })
            .unwrap();
        assert_eq!((other.items[i].name.as_slice(), i), (&b"y"[..], 1));
    }
}
