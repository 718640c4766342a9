//! fusefs: a stack of image layers shown as one directory tree over FUSE,
//! with a writable upper directory.
//!
//! - [`lower`]: the [`Lower`] seam, one read-only layer: [`StoreLower`]
//!   (a layerdb layer), [`DirLower`] (a host directory in overlay format),
//!   [`MemLower`] (in memory, for tests).
//! - [`union`]: resolution top-down, whiteouts, opaque directories, merged
//!   listings. Pure, tested without a kernel.
//! - `upper`, `copy_up`: the writable host directory and how lower files
//!   move into it; container metadata lives in xattrs
//!   ([`override_stat`], [`whiteout`]) so an unprivileged server works.
//! - `union_fs`: every filesystem operation, returning `Result` and no FUSE
//!   types; `adapter` implements `fuser::Filesystem` by calling it and
//!   replying; [`mod@mount`] starts and stops servers; `passthrough` lets the
//!   kernel do the I/O of host-backed files itself where it can;
//!   [`client_thread`] is where a process walks a tree it serves itself.
//! - [`NodeId`], [`FileHandle`]: the numbers the kernel and the server
//!   share, converted from fuser's only in the adapter.
//! - `inode`, `orphan`: which paths a node id stands for, and the file a
//!   node keeps when its last name goes while the kernel still holds it;
//!   `listings`: directory snapshots that READDIR offsets name;
//!   `node_files`: files the kernel reads and writes by node, not handle.
//! - [`view`]: owners and options as the kernel is shown them
//!   (fuse-overlayfs's `uidmapping`, `squash_to_*`, `static_nlink`...).
//! - [`mod@changes`]: the upper as a change set, for commit and diff.
//!
//! Inode numbers are stable for a file's life (across copy-up and remount)
//! and shared by hardlinks; see [`lower::ino_tag`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acl;
mod adapter;
mod big_reads;
mod cached_lower;
pub mod changes;
mod client;
mod copy_up;
pub mod dir_lower;
pub mod error;
mod handles;
mod ids;
mod inode;
mod kernel_read_ahead;
mod last_lower;
mod layers;
mod listings;
pub mod lower;
pub mod mem_lower;
pub mod mount;
mod moved_names;
mod node_files;
mod orphan;
pub mod override_stat;
mod partial;
mod passthrough;
mod plain_writes;
#[cfg(test)]
mod probe_lower;
mod resolution_cache;
mod shared_whiteout;
pub mod store_lower;
pub mod union;
pub mod union_fs;
mod upper;
pub mod upper_format;
pub mod view;
mod walk_ahead;
pub mod whiteout;
mod xattr;

pub use changes::{changes, Change, ChangeKind, Source};
pub use client::client_thread;
pub use dir_lower::DirLower;
pub use error::FsError;
pub use ids::{FileHandle, NodeId};
pub use layers::Layers;
pub use lower::{Lower, Node};
pub use mem_lower::MemLower;
pub use mount::{
    mount, serve, unmount, unmount_if_at, Device, MountError, MountFlags, MountHandle,
    MountOptions, PASSTHROUGH_MIN_SIZE,
};
pub use store_lower::StoreLower;
pub use union_fs::UnionFs;
pub use upper::TimeSet;
pub use upper_format::UpperFormat;
pub use view::{IdMap, IdRange, View};
