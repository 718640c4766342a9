//! The two numbers the kernel and the server share: node ids and file
//! handles. The core speaks only these types; the FUSE adapter, the one
//! place that sees fuser's raw `u64`s, converts at the boundary (the
//! `From` impls below), so a handle cannot be passed where a node id
//! belongs, nor "no handle" be confused with a handle.

use std::fmt;
use std::num::NonZeroU64;

/// The id the kernel knows a node by, from a LOOKUP (or CREATE...) reply
/// until it sends FORGET. It is the node's stable inode number (see
/// `crate::inode`), except the root's, which FUSE fixes at
/// [`NodeId::ROOT`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u64);

impl NodeId {
    /// The root directory's id, fixed by the FUSE protocol.
    pub const ROOT: NodeId = NodeId(1);

    /// The id of a node (not the root) whose stable inode number is `ino`.
    pub(crate) fn of_ino(ino: u64) -> NodeId {
        NodeId(ino)
    }

    /// The inode number a node other than the root is known by (an
    /// unlinked file answers fstat with it).
    pub(crate) fn ino(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:#x})", self.0)
    }
}

/// Hexadecimal, as inode numbers are tagged by layer in their high bits
/// (see `crate::lower::ino_tag`).
impl fmt::LowerHex for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl From<fuser::INodeNo> for NodeId {
    fn from(n: fuser::INodeNo) -> NodeId {
        NodeId(n.0)
    }
}

impl From<NodeId> for fuser::INodeNo {
    fn from(id: NodeId) -> fuser::INodeNo {
        fuser::INodeNo(id.0)
    }
}

/// An open file of the server, from OPEN or CREATE until RELEASE. Never
/// 0: FUSE's handle 0 means "no handle" (I/O by node, see
/// `crate::node_files`), which the core spells `Option::<FileHandle>::None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileHandle(NonZeroU64);

impl FileHandle {
    /// The `n`th handle the server hands out (numbering starts at 1).
    pub(crate) fn nth(n: NonZeroU64) -> FileHandle {
        FileHandle(n)
    }

    /// The handle a request names; `None` for FUSE's 0, no handle.
    pub(crate) fn from_fuser(fh: fuser::FileHandle) -> Option<FileHandle> {
        NonZeroU64::new(fh.0).map(FileHandle)
    }

    /// The handle a reply gives the kernel; 0 for none.
    pub(crate) fn to_fuser(fh: Option<FileHandle>) -> fuser::FileHandle {
        fuser::FileHandle(fh.map_or(0, |h| h.0.get()))
    }
}

impl fmt::Display for FileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_handle_zero_is_no_handle_both_ways() {
        assert_eq!(FileHandle::from_fuser(fuser::FileHandle(0)), None);
        let fh = FileHandle::from_fuser(fuser::FileHandle(7));
        assert_eq!(FileHandle::to_fuser(fh).0, 7);
        assert_eq!(FileHandle::to_fuser(None).0, 0);
    }

    #[test]
    fn the_root_is_fuses_node_one() {
        assert_eq!(fuser::INodeNo::from(NodeId::ROOT), fuser::INodeNo::ROOT);
        assert_eq!(NodeId::from(fuser::INodeNo(1)), NodeId::ROOT);
    }
}
