//! Remembered resolutions of directories, so a request resolves only the
//! last component of its path instead of walking every layer from the root.
//!
//! Relied on for a cached directory: its *shape* (which layers merge into
//! it, that it is a directory) and, for one the upper serves, what its
//! xattrs say (owner and mode overrides, opaque, redirect, stable inode
//! number, the container's xattrs) and, as the directory of a new node,
//! its owner and mode (see `Layers::copy_up_parent`); its host attributes
//! are always read fresh for the node a request is about (see
//! `Layers::resolve`).
//! Invariant: every change of the upper that can alter the shape of a
//! directory or its xattrs invalidates that path and everything under it
//! (children inherit their merge set from their parent); the upper only
//! changes under the tree write lock, through [`crate::upper::Upper`],
//! which calls [`ResolutionCache::invalidate`], or after
//! `Layers::invalidate`.

use crate::handles::lock;
use crate::union::Resolved;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Bound on remembered directories; past it the cache starts over (a
/// rootfs has a few thousand directories).
const MAX_DIRS: usize = 1 << 16;

#[derive(Debug, Default)]
pub struct ResolutionCache {
    dirs: Mutex<BTreeMap<Vec<u8>, Resolved>>,
}

impl ResolutionCache {
    /// The nearest remembered strict ancestor of `path` (the root's path
    /// is empty): its path length and resolution.
    pub fn nearest_ancestor(&self, path: &[u8]) -> Option<(usize, Resolved)> {
        above(&lock(&self.dirs), path)
    }

    /// Like [`ResolutionCache::nearest_ancestor`], `path` itself first
    /// (then its length is `path.len()`): one lookup for a request.
    pub fn nearest(&self, path: &[u8]) -> Option<(usize, Resolved)> {
        let dirs = lock(&self.dirs);
        match dirs.get(path) {
            Some(r) => Some((path.len(), r.clone())),
            None => above(&dirs, path),
        }
    }

    pub fn insert(&self, path: &[u8], r: &Resolved) {
        let mut dirs = lock(&self.dirs);
        if dirs.len() >= MAX_DIRS {
            dirs.clear();
        }
        dirs.insert(path.to_vec(), r.clone());
    }

    /// `path` and everything under it may have changed shape.
    pub fn invalidate(&self, path: &[u8]) {
        let mut dirs = lock(&self.dirs);
        if path.is_empty() {
            dirs.clear();
            return;
        }
        dirs.remove(path);
        // Keys under `path` are exactly those in [path + "/", path + "0"):
        // '0' is the byte after '/'.
        let lo = [path, b"/"].concat();
        let hi = [path, b"0"].concat();
        let under: Vec<Vec<u8>> = dirs.range(lo..hi).map(|(k, _)| k.clone()).collect();
        for k in under {
            dirs.remove(&k);
        }
    }
}

/// The nearest of `dirs` strictly above `path`, the root last.
fn above(dirs: &BTreeMap<Vec<u8>, Resolved>, path: &[u8]) -> Option<(usize, Resolved)> {
    let mut end = path.len();
    while let Some(cut) = path[..end].iter().rposition(|&b| b == b'/') {
        if let Some(r) = dirs.get(&path[..cut]) {
            return Some((cut, r.clone()));
        }
        end = cut;
    }
    if path.is_empty() {
        return None;
    }
    dirs.get(&b""[..]).map(|r| (0, r.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::Node;
    use layerdb::{Entry, Kind};

    fn dir() -> Resolved {
        Resolved {
            layer: 0,
            path: Vec::new(),
            node: Node::from_entry(Entry::new(Kind::Dir, 0o755), 7),
            dir_layers: vec![crate::union::LayerDir {
                layer: 0,
                path: Vec::new(),
            }],
        }
    }

    #[test]
    fn invalidating_a_directory_forgets_its_subtree_but_not_its_siblings() {
        let c = ResolutionCache::default();
        for p in ["a", "a/b", "a/b/c", "ab", "a0"] {
            c.insert(p.as_bytes(), &dir());
        }
        c.invalidate(b"a");
        assert!(c.nearest_ancestor(b"a/b/c/d").is_none());
        assert_eq!(c.nearest_ancestor(b"ab/x").map(|(n, _)| n), Some(2));
        assert_eq!(c.nearest_ancestor(b"a0/x").map(|(n, _)| n), Some(2));
    }

    #[test]
    fn a_path_starts_from_its_nearest_remembered_ancestor_never_itself() {
        let c = ResolutionCache::default();
        c.insert(b"", &dir());
        c.insert(b"x/y", &dir());
        assert_eq!(c.nearest_ancestor(b"x/y/z/w").map(|(n, _)| n), Some(3));
        assert_eq!(c.nearest_ancestor(b"q/r").map(|(n, _)| n), Some(0));
        assert_eq!(c.nearest_ancestor(b"x/y").map(|(n, _)| n), Some(0));
        assert!(c.nearest_ancestor(b"").is_none());
    }
}
