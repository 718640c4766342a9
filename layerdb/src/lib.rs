//! layerdb: the content-addressed store of container image layers.
//!
//! - File content is cut into content-defined chunks ([`chunk`]), each named
//!   by its sha256 and kept once per store as a file; files up to
//!   [`chunk::INLINE_MAX`] bytes live inside their entry instead.
//! - A layer is an immutable change set: per path an [`Entry`] (type, mode,
//!   owner, mtime in ns, xattrs, link target, device numbers, size, chunk
//!   list; whiteouts and opaque directories). Its diff id is the sha256 of
//!   its canonical OCI tar ([`oci_tar`]), so export and re-import keep it.
//! - An image is an OCI config (its sha256 is the image id) naming its
//!   layers bottom to top, plus the local parent it was committed from.
//! - Containers are records naming their image, one file in each
//!   container's directory beside its upper ([`container_records`]).
//! - Everything else but chunk files lives in one RocksDB index ([`keys`] has the
//!   schema). Every change is one atomic, synced write batch; chunks are
//!   synced before the batch that first references them, so after a crash
//!   at any instant the store is whole, and `gc` removes what a crash
//!   orphaned. Every change to the store's own files goes through one
//!   seam ([`storage`]), whose recording backend lets tests cut the power
//!   at every step (`tests/power_cut.rs`).
//! - Writers take a file lock and wait for each other; long-lived readers
//!   (mount servers) open a secondary instance and never wait (the `db` module).

// Every system call goes through nix or rustix.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blob;
pub mod bounded_tar;
pub mod chunk;
pub mod container;
pub mod container_records;
mod db;
pub mod df;
pub mod digest;
pub mod entry;
pub mod error;
pub mod escape;
pub mod gc;
mod host_dir;
pub mod image;
pub mod import;
pub mod ingest;
pub mod keys;
pub mod layer;
mod lock;
pub mod oci;
pub mod oci_tar;
pub mod pins;
pub mod placement;
pub mod reference;
mod reserve;
mod sparse;
pub mod storage;
pub mod store;
pub mod tar_split;
pub mod unpack_dest;
pub mod verify;

pub use chunk::{ChunkDir, ChunkEnds};
pub use container::{
    BadTransition, BindMount, ContainerDir, ContainerRecord, DeviceMapping, LogDriver, LogOptions,
    NetworkConfig, PortBinding, Resources, RestartPolicy, SecurityOptions, State, TmpfsMount,
    Ulimit,
};
pub use digest::Digest;
pub use entry::{join_path, split_path, ChunkRef, Data, Entry, Kind};
pub use error::StoreError;
pub use image::{ExactImage, History, ImageConfig, ImageRecord, RunConfig};
pub use ingest::Ingest;
pub use layer::{LayerBuilder, LayerMeta, PendingLayer, PATH_MAX};
pub use pins::Pin;
pub use reference::Reference;
pub use store::{default_root, NewImage, Removal, Store};
