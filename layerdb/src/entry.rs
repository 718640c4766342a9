//! One path of a layer: the change-set record that import, the union
//! filesystem and commit all share.
//!
//! Paths are bytes (Linux names need not be UTF-8), relative to the layer
//! root, without a leading `/`; the root directory itself is the empty path.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

/// What an entry is: a file type as a tar header or `st_mode` says it, plus the
/// layer-format kinds (hardlink, whiteout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A regular file; its content is `data`.
    Regular,
    /// A directory; see `opaque`.
    Dir,
    /// A symbolic link; its target is `link`.
    Symlink,
    /// Another name for a regular file earlier in the same layer; `link`
    /// holds that file's path. Attributes and data are the target's.
    Hardlink,
    /// A character device; its numbers are `rdev`.
    CharDev,
    /// A block device; its numbers are `rdev`.
    BlockDev,
    /// A named pipe.
    Fifo,
    /// A Unix socket: a name only, left out of the layer's tar (tar cannot
    /// carry one).
    Socket,
    /// Hides the same path in every lower layer (OCI `.wh.<name>`).
    Whiteout,
}

/// A piece of file content, stored once per store under its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The sha256 of the chunk's bytes, which names its file in the chunk
    /// directory.
    pub digest: Digest,
    /// The chunk's length in bytes.
    pub len: u32,
}

/// Where a regular file's content is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Data {
    /// Not a regular file, or an empty one.
    #[default]
    None,
    /// Small files live in the entry itself: a chunk file would waste a block.
    Inline(Vec<u8>),
    /// Content-defined chunks in file order.
    Chunks(Vec<ChunkRef>),
}

/// The record of one path in a layer: type, metadata and content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The file type.
    pub kind: Kind,
    /// Permission bits with suid, sgid and sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner uid, as in the layer (not mapped to the host).
    pub uid: u32,
    /// Owner gid, as in the layer (not mapped to the host).
    pub gid: u32,
    /// Modification time in ns since the Unix epoch.
    pub mtime_ns: i64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Symlink target, or the path a hardlink names.
    pub link: Vec<u8>,
    /// Device major and minor numbers for char and block devices.
    pub rdev: (u32, u32),
    /// Content length in bytes (0 for everything but regular files).
    pub size: u64,
    /// The content, for regular files; its total length is `size`.
    pub data: Data,
    /// For directories: hides every lower child (OCI `.wh..wh..opq`).
    pub opaque: bool,
    /// Names this file has inside the layer (1 + hardlinks to it).
    pub nlink: u32,
    /// Stable number of the file within its layer (its position in path
    /// order); a Hardlink entry carries its target's. With the layer's
    /// store-wide sequence number it makes a stable inode number.
    pub ino: u32,
}

impl Entry {
    /// A fresh entry of `kind` with root ownership and zero times.
    pub fn new(kind: Kind, mode: u32) -> Entry {
        Entry {
            kind,
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            xattrs: Vec::new(),
            link: Vec::new(),
            rdev: (0, 0),
            size: 0,
            data: Data::None,
            opaque: false,
            nlink: 1,
            ino: 0,
        }
    }

    /// `st_mode` file type bits for this kind (`S_IFREG`...); whiteouts
    /// read as the 0/0 character device overlayfs uses.
    pub fn file_type_bits(&self) -> u32 {
        match self.kind {
            Kind::Regular | Kind::Hardlink => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::CharDev | Kind::Whiteout => libc::S_IFCHR,
            Kind::BlockDev => libc::S_IFBLK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
        }
    }

    /// The kind a host file's type maps to (never Hardlink or Whiteout:
    /// those are decided by the layer format, not by the file).
    pub fn kind_of(ft: std::fs::FileType) -> Kind {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::CharDev
        } else if ft.is_block_device() {
            Kind::BlockDev
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            Kind::Regular
        }
    }

    /// The content's chunks in file order; empty for inline or no content.
    pub fn chunks(&self) -> &[ChunkRef] {
        match &self.data {
            Data::Chunks(c) => c,
            _ => &[],
        }
    }
}

/// The parent of a layer path and the last name in it (`b"a/b"` gives
/// `(b"a", b"b")`; a top-level name has the empty parent).
pub fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// `parent/name`, or just `name` under the root.
pub fn join_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_are_inverse() {
        assert_eq!(split_path(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_path(b"top"), (&b""[..], &b"top"[..]));
        assert_eq!(join_path(b"a/b", b"c"), b"a/b/c");
        assert_eq!(join_path(b"", b"c"), b"c");
    }
}
