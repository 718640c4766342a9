//! An in-memory layer: the test double of the [`Lower`] seam, so union
//! rules are tested without a kernel, a store or a host directory.

use crate::error::{FsError, Result};
use crate::lower::{Lower, Node};
use layerdb::{split_path, Data, Entry, Kind};
use std::collections::BTreeMap;

/// A layer built from paths; parents must be added explicitly (as in a tar).
#[derive(Debug, Default)]
pub struct MemLower {
    name: String,
    seq: u32,
    nodes: BTreeMap<Vec<u8>, Node>,
}

impl MemLower {
    /// An empty layer; `seq` makes its inode numbers distinct from other
    /// layers' the way a store layer's sequence number does.
    pub fn new(name: &str, seq: u32) -> MemLower {
        let mut l = MemLower {
            name: name.into(),
            seq,
            nodes: BTreeMap::new(),
        };
        l.dir("", 0o755);
        l
    }

    fn put(&mut self, path: &str, mut entry: Entry) -> &mut Self {
        entry.ino = self.nodes.len() as u32 + 1;
        let ino = crate::lower::ino_tag::STORE | (self.seq as u64) << 32 | entry.ino as u64;
        self.nodes
            .insert(path.as_bytes().to_vec(), Node::from_entry(entry, ino));
        self
    }

    /// Adds directory `path` (relative, no leading `/`) with permission bits
    /// `mode`.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.put(path, Entry::new(Kind::Dir, mode))
    }

    /// Adds an opaque directory `path`, mode 0755: it hides every lower child.
    pub fn opaque_dir(&mut self, path: &str) -> &mut Self {
        let mut e = Entry::new(Kind::Dir, 0o755);
        e.opaque = true;
        self.put(path, e)
    }

    /// Adds regular file `path`, mode 0644, holding `content`.
    pub fn file(&mut self, path: &str, content: &[u8]) -> &mut Self {
        let mut e = Entry::new(Kind::Regular, 0o644);
        e.size = content.len() as u64;
        e.data = Data::Inline(content.to_vec());
        self.put(path, e)
    }

    /// Adds symlink `path` pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut e = Entry::new(Kind::Symlink, 0o777);
        e.link = target.as_bytes().to_vec();
        e.size = e.link.len() as u64;
        self.put(path, e)
    }

    /// Adds a whiteout at `path`, hiding it in the layers below.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        self.put(path, Entry::new(Kind::Whiteout, 0))
    }

    /// Another name for the file at `target`: same node, both nlinks raised.
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let key = target.as_bytes().to_vec();
        let Some(node) = self.nodes.get_mut(&key) else {
            return self;
        };
        node.entry.nlink += 1;
        let node = node.clone();
        let nlink = node.entry.nlink;
        for n in self.nodes.values_mut() {
            if n.ino == node.ino {
                n.entry.nlink = nlink;
            }
        }
        self.nodes.insert(path.as_bytes().to_vec(), node);
        self
    }

    /// Gives directory `path` a redirect (see [`crate::whiteout`]), as a
    /// renamed directory of a former upper has.
    pub fn redirect(&mut self, path: &str, target: &str) -> &mut Self {
        if let Some(n) = self.nodes.get_mut(path.as_bytes()) {
            n.redirect = Some(std::sync::Arc::new(target.as_bytes().to_vec()));
        }
        self
    }

    /// Gives the entry at `path` the xattr `name` as an image's tar may
    /// carry it (what a node shows of it is [`Node::from_entry`]'s to say).
    pub fn set_xattr(&mut self, path: &str, name: &[u8], value: &[u8]) -> &mut Self {
        if let Some(n) = self.nodes.get_mut(path.as_bytes()) {
            let mut entry = n.entry.clone();
            entry.xattrs.push((name.to_vec(), value.to_vec()));
            *n = Node::from_entry(entry, n.ino);
        }
        self
    }

    /// Sets the owner and permission bits of the node at `path`, if any.
    pub fn set_owner(&mut self, path: &str, uid: u32, gid: u32, mode: u32) -> &mut Self {
        if let Some(n) = self.nodes.get_mut(path.as_bytes()) {
            n.entry.uid = uid;
            n.entry.gid = gid;
            n.entry.mode = mode;
        }
        self
    }
}

impl Lower for MemLower {
    fn describe(&self) -> String {
        self.name.clone()
    }

    /// A test layer stands in for a store layer, named by its name.
    fn layer_id(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn node(&self, path: &[u8]) -> Result<Option<Node>> {
        Ok(self.nodes.get(path).cloned())
    }

    fn children(&self, dir: &[u8]) -> Result<Vec<(Vec<u8>, Node)>> {
        Ok(self
            .nodes
            .iter()
            .filter(|(p, _)| !p.is_empty() && split_path(p).0 == dir)
            .map(|(p, n)| (split_path(p).1.to_vec(), n.clone()))
            .collect())
    }

    fn read_at(&self, path: &[u8], node: &Node, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let Data::Inline(bytes) = &node.entry.data else {
            return match node.entry.kind {
                Kind::Regular => Ok(0),
                _ => Err(FsError::posix(nix::errno::Errno::EINVAL, path)),
            };
        };
        let start = (offset as usize).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }
}
