//! A read-only lower remembered in memory: its nodes and listings never
//! change while mounted (as with overlayfs, changing a lower under a mount
//! is undefined), so each is read from the host or the store once.
//!
//! The upper is never wrapped: it changes through the mount.

use crate::dir_lower::HostPath;
use crate::error::Result;
use crate::handles::lock;
use crate::lower::{Lower, Node};
use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

/// Bound on remembered nodes (listed children count); past it a map starts
/// over. A Debian rootfs (~7k entries) fits whole; for larger trees the
/// kernel's own caches (long TTLs, kept listings) carry the warm case, and
/// the bound keeps the server under its 100 MB budget: a walk of 100k files
/// peaked at 99 MB with 32k (`server_process`'s memory test, at the edge),
/// 87 MB with 16k. (Keeping the most recent entries in two generations
/// instead of clearing cost that test 30 MB more, and was reverted.)
const MAX_NODES: usize = 1 << 14;

/// A directory's listing: its children's names and nodes.
type Children = Vec<(Vec<u8>, Node)>;

pub struct CachedLower {
    inner: Box<dyn Lower>,
    nodes: Mutex<HashMap<Vec<u8>, Option<Node>>>,
    listings: Mutex<Listings>,
    /// Signalled when a listing leaves `Listings::pending`.
    listed: Condvar,
    /// Every name of each file the layer holds under several, by inode
    /// number (`Lower::hardlinks`): found by one walk of the layer at the
    /// first copy-up of a file with nlink > 1, and kept. Each such copy-up used to walk the whole layer again (40
    /// ms for a Debian root in the page cache; a Debian root has four).
    hardlinks: Mutex<Option<HashMap<u64, Vec<Vec<u8>>>>>,
}

#[derive(Default)]
struct Listings {
    by_dir: HashMap<Vec<u8>, Children>,
    /// Children held in `by_dir`, for the bound.
    count: usize,
    /// Directories being read from the layer now (by a request or by
    /// `crate::walk_ahead`): a second reader waits for the first rather
    /// than reading the host directory again.
    pending: HashSet<Vec<u8>>,
}

/// A directory marked in `Listings::pending` by the thread reading it.
/// Dropped, on every path out of the read (a panic in the layer
/// included), it takes the mark away and wakes the waiters, which then
/// find the listing remembered or read it themselves: a mark left behind
/// would hold every later reader of the directory for good.
struct Reading<'a> {
    cached: &'a CachedLower,
    dir: &'a [u8],
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        lock(&self.cached.listings).pending.remove(self.dir);
        self.cached.listed.notify_all();
    }
}

/// What [`CachedLower::listing`] does when another thread is reading the
/// same directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IfPending {
    /// Wait for its result (a request needs the listing).
    Wait,
    /// Leave it (reading ahead: someone is already at it).
    Skip,
}

impl CachedLower {
    pub fn new(inner: Box<dyn Lower>) -> CachedLower {
        CachedLower {
            inner,
            nodes: Mutex::new(HashMap::new()),
            listings: Mutex::new(Listings::default()),
            listed: Condvar::new(),
            hardlinks: Mutex::new(None),
        }
    }

    /// Reads and remembers the listing of `dir` unless it is remembered or
    /// being read already (see `crate::walk_ahead`).
    pub fn read_ahead(&self, dir: &[u8]) -> Result<()> {
        self.listing(dir, IfPending::Skip).map(drop)
    }

    /// The listing of `dir`, remembered or read now; `None` when skipped
    /// because another thread is reading it.
    fn listing(&self, dir: &[u8], if_pending: IfPending) -> Result<Option<Children>> {
        let mut l = lock(&self.listings);
        loop {
            if let Some(kids) = l.by_dir.get(dir) {
                return Ok((if_pending == IfPending::Wait).then(|| kids.clone()));
            }
            if !l.pending.contains(dir) {
                break;
            }
            if if_pending == IfPending::Skip {
                return Ok(None);
            }
            // Its reader remembers it (or fails, and this thread reads it).
            l = self
                .listed
                .wait(l)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        l.pending.insert(dir.to_vec());
        drop(l);
        let reading = Reading { cached: self, dir };
        let kids = self.inner.children(dir)?;
        if kids.len() > MAX_NODES {
            // Past the bound on its own: remembered, it would push every
            // other listing and node out and keep a second copy of itself
            // beside the kernel's (a directory of 100,000 files took the
            // server from 18 to 181 MB); read again if asked again.
            drop(reading);
            return Ok(Some(kids));
        }
        // A listing answers the lookups that usually follow it (stat
        // of each entry): a child's node is what `node` would return.
        for (name, node) in &kids {
            self.remember_node(&layerdb::join_path(dir, name), Some(node.clone()));
        }
        let mut l = lock(&self.listings);
        if l.count + kids.len() > MAX_NODES {
            l.by_dir.clear();
            l.count = 0;
        }
        l.count += kids.len();
        l.by_dir.insert(dir.to_vec(), kids.clone());
        drop(l);
        drop(reading);
        Ok(Some(kids))
    }

    fn remember_node(&self, path: &[u8], node: Option<Node>) {
        let mut nodes = lock(&self.nodes);
        if nodes.len() >= MAX_NODES {
            nodes.clear();
        }
        nodes.insert(path.to_vec(), node);
    }
}

impl Lower for CachedLower {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn layer_id(&self) -> Option<String> {
        self.inner.layer_id()
    }

    fn node(&self, path: &[u8]) -> Result<Option<Node>> {
        if let Some(n) = lock(&self.nodes).get(path) {
            return Ok(n.clone());
        }
        let n = self.inner.node(path)?;
        self.remember_node(path, n.clone());
        Ok(n)
    }

    fn children(&self, dir: &[u8]) -> Result<Vec<(Vec<u8>, Node)>> {
        // `Wait` never skips: the listing is always there.
        let kids = self.listing(dir, IfPending::Wait)?;
        Ok(kids.unwrap_or_default())
    }

    fn read_at(&self, path: &[u8], node: &Node, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.inner.read_at(path, node, offset, buf)
    }

    fn read_link(&self, path: &[u8], node: &Node) -> Result<Vec<u8>> {
        self.inner.read_link(path, node)
    }

    fn host_path(&self, path: &[u8]) -> Option<HostPath> {
        self.inner.host_path(path)
    }

    fn names_of(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        // Held through the walk: a second copy-up of a hardlinked file
        // waits for the first one's walk instead of making its own.
        let mut memo = lock(&self.hardlinks);
        if memo.is_none() {
            *memo = Some(self.inner.hardlinks()?);
        }
        Ok(memo
            .as_ref()
            .and_then(|by_ino| by_ino.get(&ino))
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_lower::MemLower;
    use crate::probe_lower::{Probe, Probed};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_listing_that_panicked_leaves_the_directory_to_the_next_reader() {
        let mut tree = MemLower::new("low", 1);
        tree.dir("a", 0o755).file("a/f", b"f");
        let probe = Probe::new(tree, true);
        probe.panic_next(1);
        let cached = Arc::new(CachedLower::new(Box::new(Probed(probe.clone()))));
        let first =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cached.children(b"a")));
        assert!(first.is_err(), "the layer's listing panicked");
        // The next reader must read it (not wait for the reader that
        // panicked): on a thread, so that a hang fails the test.
        let (tx, rx) = std::sync::mpsc::channel();
        let c = cached.clone();
        std::thread::spawn(move || tx.send(c.children(b"a").map(|k| k.len())));
        let second = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the second reader of a directory whose first reader panicked hung");
        assert_eq!(second.expect("listed"), 1);
        assert_eq!(probe.times_listed("a"), 2);
    }

    #[test]
    fn a_listing_past_the_bound_on_its_own_is_not_remembered() {
        let mut tree = MemLower::new("low", 1);
        tree.dir("big", 0o755)
            .dir("small", 0o755)
            .file("small/f", b"f");
        for i in 0..=MAX_NODES {
            tree.file(&format!("big/f{i}"), b"");
        }
        let probe = Probe::new(tree, true);
        let cached = CachedLower::new(Box::new(Probed(probe.clone())));
        assert_eq!(cached.children(b"small").expect("listed").len(), 1);
        for _ in 0..2 {
            assert_eq!(
                cached.children(b"big").expect("listed").len(),
                MAX_NODES + 1
            );
        }
        assert_eq!(probe.times_listed("big"), 2, "the big listing was kept");
        assert_eq!(
            lock(&cached.listings).count,
            1,
            "only the small listing is kept"
        );
        cached.children(b"small").expect("listed");
        assert_eq!(
            probe.times_listed("small"),
            1,
            "the big listing pushed the small one out"
        );
    }

    #[test]
    fn the_layer_is_walked_once_for_the_names_of_all_its_hardlinked_files() {
        let mut tree = MemLower::new("low", 1);
        tree.dir("a", 0o755)
            .dir("b", 0o755)
            .file("a/one", b"1")
            .hardlink("b/one", "a/one")
            .file("a/two", b"2")
            .hardlink("b/two", "a/two")
            .hardlink("two", "a/two")
            .file("a/single", b"s");
        let probe = Probe::new(tree, true);
        let cached = CachedLower::new(Box::new(Probed(probe.clone())));
        let ino = |path: &[u8]| cached.node(path).expect("node").expect("present").ino;
        let (one, two) = (ino(b"a/one"), ino(b"a/two"));
        assert_eq!(
            cached.names_of(one).expect("names"),
            [&b"a/one"[..], b"b/one"]
        );
        assert_eq!(
            cached.names_of(two).expect("names"),
            [&b"a/two"[..], b"b/two", b"two"]
        );
        assert_eq!(cached.names_of(one).expect("names").len(), 2);
        assert_eq!(
            probe.times_listed(""),
            1,
            "each copy-up of a hardlinked file walked the layer again"
        );
    }
}
