//! One layer of the stack, whatever it is stored in.
//!
//! The union core sees every layer (the upper included, read through the same
//! interface) as a [`Lower`]: a tree of [`Node`]s keyed by layer paths (bytes,
//! relative, no leading `/`, the root is `b""`).

use crate::error::Result;
use layerdb::{ChunkEnds, Entry, Kind};
use std::collections::HashMap;
use std::sync::Arc;

/// Tag bits of stable inode numbers. Every stable number has one of them set,
/// so none collides with FUSE's root (1) or with another source.
pub mod ino_tag {
    /// Files of store layers: `STORE | seq << 32 | entry.ino`.
    pub const STORE: u64 = 1 << 63;
    /// Files of host directory layers: `HOST_DIR | dev-hash << 40 | st_ino`.
    pub const HOST_DIR: u64 = 3 << 62;
    /// Files born in the upper: `UPPER | st_ino`.
    pub const UPPER: u64 = 1 << 62;
    /// Mask keeping a host st_ino under the tag bits.
    pub const HOST_INO_MASK: u64 = (1 << 40) - 1;
}

/// One file of one layer, as the container sees it.
///
/// Invariants: `entry.kind` is never [`Kind::Hardlink`] (layers resolve a
/// hardlink to its target's metadata and keep the shared `ino`); a whiteout
/// is `Kind::Whiteout`; `entry.opaque` marks an opaque directory; xattrs are
/// the container's own, never strata's or overlay's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The path's record as the layer has it.
    pub entry: Entry,
    /// Stable inode number (see [`ino_tag`]), shared by hardlinks.
    pub ino: u64,
    /// Last access, in ns since the Unix epoch.
    pub atime_ns: i64,
    /// Last status change, in ns since the Unix epoch.
    pub ctime_ns: i64,
    /// 512-byte blocks used; estimated from the size for store files.
    pub blocks: u64,
    /// For a directory renamed in this layer (kernel overlayfs's
    /// `redirect_dir`): where the layers below keep its content, as the
    /// redirect xattr says: `/`-prefixed from the layer root, or a bare
    /// name in the same parent directory. See [`crate::union`]. Shared:
    /// rare, and a node is cloned often and cached by the thousand, so
    /// it costs one pointer.
    pub redirect: Option<Arc<Vec<u8>>>,
    /// Where each chunk of a file of several chunks ends, computed once
    /// when the node is made: a read finds its first chunk by a binary
    /// search instead of walking the chunk list (16,384 chunks for 1 GiB)
    /// from the start on every 128 KiB read. Shared, like `redirect`.
    pub chunk_ends: Option<ChunkEnds>,
    /// The owner, group and mode come from an override xattr (the
    /// rootless format, see [`crate::override_stat`]), not from the host
    /// inode's own, which may differ.
    pub overridden: bool,
}

impl Node {
    /// What a listing keeps of this node: its attributes, without its
    /// content's record, link target, xattrs or redirect, which a listing
    /// never answers (a LOOKUP or GETXATTR resolves the node afresh). A
    /// snapshot holds up to 65,536 entries: with 4,000-byte link targets,
    /// one `ls` of a container's directory held 768 MB of server.
    pub fn attributes_only(mut self) -> Node {
        let e = &mut self.entry;
        (e.xattrs, e.link, e.data) = (Vec::new(), Vec::new(), Default::default());
        self.redirect = None;
        self.chunk_ends = None;
        self
    }

    /// A node whose times all equal the entry's mtime (store and test layers
    /// keep no atime/ctime). Xattrs named like strata's or overlay's
    /// bookkeeping are left out: an image's tar may carry any name, and one
    /// kept would be shown, copied up, and read back from the upper as the
    /// union's own record (an owner and mode, an opaque mark, an inode).
    pub fn from_entry(mut entry: Entry, ino: u64) -> Node {
        entry
            .xattrs
            .retain(|(name, _)| !crate::override_stat::is_private_xattr(name));
        let t = entry.mtime_ns;
        let blocks = entry.size.div_ceil(512);
        let chunk_ends = (entry.chunks().len() > 1).then(|| ChunkEnds::of(entry.chunks()));
        Node {
            entry,
            ino,
            atime_ns: t,
            ctime_ns: t,
            blocks,
            redirect: None,
            chunk_ends,
            overridden: false,
        }
    }

    /// Whether the node is a directory.
    pub fn is_dir(&self) -> bool {
        self.entry.kind == Kind::Dir
    }

    /// Whether the node hides the path in the layers below.
    pub fn is_whiteout(&self) -> bool {
        self.entry.kind == Kind::Whiteout
    }
}

/// A read-only layer: a store layer, a host directory in overlay format, the
/// upper read back, or an in-memory tree in tests.
pub trait Lower: Send + Sync {
    /// Human name for messages ("layer sha256:…", "/path/to/dir").
    fn describe(&self) -> String;

    /// A name that finds this layer again in a later mount (a store
    /// layer's diff id); `None` for layers that have none. A big file of a
    /// layer with an id is copied up block by block (see `partial`).
    fn layer_id(&self) -> Option<String> {
        None
    }

    /// The node at `path`, whiteouts included; `None` when this layer has
    /// nothing there (also when a parent is missing or not a directory).
    fn node(&self, path: &[u8]) -> Result<Option<Node>>;

    /// Like [`Lower::node`], for a directory no layer below merges with:
    /// a whiteout there hides nothing, so one the layer can only find by
    /// a second look (a host directory's `.wh.` file) may be missed.
    fn node_over_nothing(&self, path: &[u8]) -> Result<Option<Node>> {
        self.node(path)
    }

    /// Direct children of `dir` sorted by name, whiteouts included (with the
    /// name they hide, not the `.wh.` form).
    fn children(&self, dir: &[u8]) -> Result<Vec<(Vec<u8>, Node)>>;

    /// Regular-file (or symlink-target) content at `offset`.
    fn read_at(&self, path: &[u8], node: &Node, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Symlink target.
    fn read_link(&self, path: &[u8], node: &Node) -> Result<Vec<u8>> {
        let _ = path;
        Ok(node.entry.link.clone())
    }

    /// The host file holding `path`, for layers that are host directories:
    /// lets open files keep a host descriptor instead of reopening per read.
    fn host_path(&self, path: &[u8]) -> Option<crate::dir_lower::HostPath> {
        let _ = path;
        None
    }

    /// The names of every file this layer holds under more than one, by
    /// its stable inode number, each list sorted: one walk of the layer,
    /// which a mount's lowers make once, at the first copy-up of a file
    /// with `nlink > 1` (`CachedLower`).
    fn hardlinks(&self) -> Result<HashMap<u64, Vec<Vec<u8>>>> {
        hardlinks_by_stat(self)
    }

    /// Every path of this layer naming inode `ino` when it has several
    /// (hardlinks), found by walking the layer.
    fn names_of(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        Ok(self.hardlinks()?.remove(&ino).unwrap_or_default())
    }
}

/// [`Lower::hardlinks`] from every file's node.
pub fn hardlinks_by_stat<L: Lower + ?Sized>(layer: &L) -> Result<HashMap<u64, Vec<Vec<u8>>>> {
    let mut by_ino: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    walk_files(layer, |path, node| {
        if node.entry.nlink > 1 {
            by_ino.entry(node.ino).or_default().push(path);
        }
    })?;
    Ok(several_names(by_ino))
}

/// The inodes of `by_ino` with more than one name, their names sorted.
pub fn several_names(mut by_ino: HashMap<u64, Vec<Vec<u8>>>) -> HashMap<u64, Vec<Vec<u8>>> {
    by_ino.retain(|_, names| names.len() > 1);
    by_ino.values_mut().for_each(|names| names.sort());
    by_ino
}

/// Calls `f` with the path and node of every file of `layer` that is not
/// a directory or a whiteout, in no particular order.
pub fn walk_files<L: Lower + ?Sized>(layer: &L, mut f: impl FnMut(Vec<u8>, &Node)) -> Result<()> {
    let mut dirs = vec![Vec::new()];
    while let Some(dir) = dirs.pop() {
        for (name, child) in layer.children(&dir)? {
            let path = layerdb::join_path(&dir, &name);
            if child.is_dir() {
                dirs.push(path);
            } else if !child.is_whiteout() {
                f(path, &child);
            }
        }
    }
    Ok(())
}
