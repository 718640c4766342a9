//! FUSE passthrough: for files backed by a host file (the upper, host
//! directory lowers) the kernel reads and writes the host file itself, with
//! no round trip through the server. Store layers stay served by the server.
//!
//! Chosen per open by the file's size (`MountOptions::passthrough_min_size`):
//! a file at least that big is passed through (a new file too, at CREATE,
//! as it may be written big), a smaller one is served
//! through the server and the kernel's page cache, with no host file opened
//! for the OPEN (handle 0: I/O goes through the node's file, see
//! `crate::node_files`). Needs Linux >= 6.9 (`FUSE_PASSTHROUGH`) and
//! CAP_SYS_ADMIN for the backing-file ioctl, tried at the first OPEN;
//! without either OPEN is answered ENOSYS from then on and files open
//! without the server.
//!
//! Kernel rules this table keeps (fs/fuse/iomode.c), since breaking one fails
//! the container's open(2):
//! - every open of an inode with a backing file is a passthrough open with
//!   that same backing file;
//! - an inode is never open passthrough and cached (through the server and
//!   the page cache) at once: while one mode has opens, new opens take it,
//!   whatever the size (a file that grew past the threshold while open
//!   stays cached until its last close).
//!
//! Coherence between the modes, one after the other: cached writes go
//! through the page cache to the host file at once (no writeback cache),
//! so a later passthrough open reads them; a passthrough open is answered
//! without FOPEN_KEEP_CACHE, so the kernel drops the inode's page cache
//! then, and what passthrough writes is never behind stale pages (tested
//! in `tests/passthrough.rs`). A lower file of a writable mount may back read-only
//! opens, but a copy-up would put another file behind the node, which open
//! descriptors could not follow: while such a backing is open, opens for
//! writing and truncations of the node fail with ETXTBSY (as writing to a
//! running program does), and an open that raced a copy-up is served cached.
//! Counts drop at RELEASE, which the kernel sends after it dropped the mode
//! itself, so the table never believes a mode is free before the kernel does.

use crate::handles::lock;
use crate::ids::{FileHandle, NodeId};
use fuser::BackingId;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How the kernel does the I/O of one open file.
#[derive(Debug)]
pub enum Route {
    /// Through the server, with the page cache (kept between opens).
    Cached,
    /// Another backing file holds the inode: the open must fail (ETXTBSY).
    Conflict,
    /// On the backing host file, in the kernel.
    Passthrough(Arc<BackingId>),
}

#[derive(Debug)]
struct Backing {
    id: Arc<BackingId>,
    /// (st_dev, st_ino) of the host file behind `id`.
    file: (u64, u64),
    /// A lower file of a writable mount, which a copy-up would replace.
    replaceable: bool,
    opens: u32,
}

/// The I/O mode of one node, as the kernel holds it.
#[derive(Debug, Default)]
struct NodeIo {
    cached: u32,
    backing: Option<Backing>,
}

/// The host file an open would pass through.
pub struct Host<'a> {
    pub file: &'a File,
    /// A lower file of a writable mount (see [`Backing::replaceable`]).
    pub replaceable: bool,
    /// The tree did not change while the file was opened: no copy-up put
    /// another file behind the node meanwhile.
    pub current: bool,
}

#[derive(Debug, Default)]
pub struct Passthrough {
    enabled: AtomicBool,
    /// Backing files were tried once (see [`Passthrough::probe`]).
    probed: AtomicBool,
    /// Files at least this big are passed through.
    min_size: u64,
    nodes: Mutex<HashMap<NodeId, NodeIo>>,
    /// fh -> node id, for the passthrough handles counted in `nodes`;
    /// cached opens are counted by node (they have no handle).
    handles: Mutex<HashMap<FileHandle, NodeId>>,
}

fn file_id(f: &File) -> Option<(u64, u64)> {
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

impl Passthrough {
    /// Passes files of at least `min_size` bytes through, once enabled.
    pub fn new(min_size: u64) -> Passthrough {
        Passthrough {
            min_size,
            ..Passthrough::default()
        }
    }

    /// Called once the kernel agreed to passthrough at FUSE_INIT.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Whether opens may get backing files: the kernel agreed at FUSE_INIT
    /// and backing files can be registered (not without privilege).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Tries a backing file once, at the first OPEN, before any small file
    /// is answered without one: without the privilege for them (a rootless
    /// server) passthrough is disabled, and every OPEN from then on is
    /// answered ENOSYS. Returns whether passthrough stays enabled.
    pub fn probe(
        &self,
        open_backing: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> bool {
        if !self.probed.swap(true, Ordering::Relaxed) {
            // Any regular file on a filesystem that is not stacked will do.
            match File::open("/proc/self/exe") {
                Ok(f) => {
                    if let Err(e) = open_backing(f.as_fd()) {
                        self.note_failure(&e);
                    }
                }
                Err(e) => log::debug!("no file to try passthrough with: {e}"),
            }
        }
        self.is_enabled()
    }

    /// Whether an open of `node`, `size` bytes now, is to be passed
    /// through: the node's mode while it has opens, else by size (`None`:
    /// never by size, for a file the server must see every write of).
    pub fn wants(&self, node: NodeId, size: Option<u64>) -> bool {
        match lock(&self.nodes).get(&node) {
            Some(io) if io.backing.is_some() => true,
            Some(io) if io.cached > 0 => false,
            _ => size.is_some_and(|s| s >= self.min_size),
        }
    }

    /// Whether a write or truncation of `node` must be refused: a lower
    /// file that a copy-up would replace backs open passthrough files.
    pub fn refuses_write(&self, node: NodeId) -> bool {
        lock(&self.nodes)
            .get(&node)
            .and_then(|io| io.backing.as_ref())
            .is_some_and(|b| b.replaceable)
    }

    /// Counts a cached open of `node` (no handle) unless a backing file
    /// holds it now (`None`: the open must be passed through).
    pub fn open_cached(&self, node: NodeId) -> Option<Route> {
        let mut nodes = lock(&self.nodes);
        let io = nodes.entry(node).or_default();
        if io.backing.is_some() {
            return None;
        }
        io.cached += 1;
        Some(Route::Cached)
    }

    /// Decides how the kernel does the I/O of handle `fh` of `node`, opened
    /// `read_only` or not; `host` is the host file behind it, if any. `open_backing` registers
    /// a backing file with the kernel. A cached route is counted for the
    /// node (the caller answers it without a handle).
    pub fn route(
        &self,
        node: NodeId,
        fh: FileHandle,
        read_only: bool,
        host: Option<Host<'_>>,
        open_backing: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> Route {
        let host = host.filter(|h| self.is_enabled() && (h.current || !h.replaceable));
        let mut nodes = lock(&self.nodes);
        let io = nodes.entry(node).or_default();
        let id = match (host, &mut io.backing) {
            (Some(h), Some(b)) if file_id(h.file) == Some(b.file) => {
                b.opens += 1;
                b.id.clone()
            }
            // A copy-up that was no write (chmod, a rename, an xattr) put
            // the upper file behind the node while passthrough readers
            // hold the lower one. Writes are refused until they close
            // ([`Passthrough::refuses_write`]), so the two hold the same
            // bytes, and a reader may share the lower backing file.
            (_, Some(b)) if b.replaceable && read_only => {
                b.opens += 1;
                b.id.clone()
            }
            (_, Some(b)) => {
                log::debug!(
                    "node {node:#x} is open with passthrough to another file \
                     (dev, ino) {:?}: refusing a second backing file",
                    b.file
                );
                return Route::Conflict;
            }
            (Some(h), None) if io.cached == 0 => {
                match (file_id(h.file), open_backing(h.file.as_fd())) {
                    (Some(file), Ok(id)) => {
                        let id = Arc::new(id);
                        io.backing = Some(Backing {
                            id: id.clone(),
                            file,
                            replaceable: h.replaceable,
                            opens: 1,
                        });
                        id
                    }
                    (_, Err(e)) => {
                        self.note_failure(&e);
                        io.cached += 1;
                        return Route::Cached;
                    }
                    (None, Ok(_)) => {
                        io.cached += 1;
                        return Route::Cached;
                    }
                }
            }
            (_, None) => {
                io.cached += 1;
                return Route::Cached;
            }
        };
        drop(nodes);
        lock(&self.handles).insert(fh, node);
        Route::Passthrough(id)
    }

    /// Without the privilege for backing files no open will get one: stop
    /// asking. Other failures (a backing file on a stacked filesystem, say)
    /// concern one file.
    fn note_failure(&self, e: &std::io::Error) {
        if e.raw_os_error() == Some(libc::EPERM) {
            if self.enabled.swap(false, Ordering::Relaxed) {
                log::info!("FUSE passthrough unavailable ({e}): file I/O goes through the server");
            }
        } else {
            log::debug!("no passthrough for one file: {e}");
        }
    }

    /// The kernel closed handle `fh` of `node` (none for a cached open).
    pub fn release(&self, node: NodeId, fh: Option<FileHandle>) {
        let passthrough = fh.is_some_and(|fh| lock(&self.handles).remove(&fh).is_some());
        let mut nodes = lock(&self.nodes);
        let Some(io) = nodes.get_mut(&node) else {
            return;
        };
        if !passthrough {
            io.cached = io.cached.saturating_sub(1);
        } else if let Some(b) = &mut io.backing {
            b.opens = b.opens.saturating_sub(1);
            if b.opens == 0 {
                // Dropping the id closes it in the kernel; files
                // opened with it keep their own reference.
                io.backing = None;
            }
        }
        if io.cached == 0 && io.backing.is_none() {
            nodes.remove(&node);
        }
    }
}
