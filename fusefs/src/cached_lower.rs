//! A read-only lower remembered in memory: its nodes and listings never
//! change while mounted (as with overlayfs, changing a lower under a mount
//! is undefined), so each is read from the host or the store once.
//!
//! The upper is never wrapped: it changes through the mount.

use crate::dir_lower::HostPath;
use crate::error::Result;
use crate::handles::lock;
use crate::lower::{Lower, Node};
use std::collections::HashMap;
use std::sync::Mutex;

/// Bound on remembered nodes (listed children count); past it a map starts
/// over. A Debian rootfs (~7k entries) fits whole; for larger trees the
/// kernel's own caches (long TTLs, kept listings) carry the warm case, and
/// the bound keeps the server far under its 100 MB budget (a node holds an
/// entry with its chunk list: 32k of them in two maps is ~20 MB).
const MAX_NODES: usize = 1 << 15;

pub struct CachedLower {
    inner: Box<dyn Lower>,
    nodes: Mutex<HashMap<Vec<u8>, Option<Node>>>,
    listings: Mutex<Listings>,
}

#[derive(Default)]
struct Listings {
    by_dir: HashMap<Vec<u8>, Vec<(Vec<u8>, Node)>>,
    /// Children held in `by_dir`, for the bound.
    count: usize,
}

impl CachedLower {
    pub fn new(inner: Box<dyn Lower>) -> CachedLower {
        CachedLower {
            inner,
            nodes: Mutex::new(HashMap::new()),
            listings: Mutex::new(Listings::default()),
        }
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

    fn node(&self, path: &[u8]) -> Result<Option<Node>> {
        if let Some(n) = lock(&self.nodes).get(path) {
            return Ok(n.clone());
        }
        let n = self.inner.node(path)?;
        self.remember_node(path, n.clone());
        Ok(n)
    }

    fn children(&self, dir: &[u8]) -> Result<Vec<(Vec<u8>, Node)>> {
        if let Some(kids) = lock(&self.listings).by_dir.get(dir) {
            return Ok(kids.clone());
        }
        let kids = self.inner.children(dir)?;
        // A listing answers the lookups that usually follow it (stat of
        // each entry): a child's node is what `node` would return.
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
        Ok(kids)
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
        self.inner.names_of(ino)
    }
}
