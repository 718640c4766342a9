//! FUSE passthrough: for files backed by a host file (the upper, host
//! directory lowers) the kernel reads and writes the host file itself, with
//! no round trip through the server. Store layers stay served by the server.
//!
//! Asked for per mount (`MountOptions::passthrough`, off by default). Needs
//! Linux >= 6.9 (`FUSE_PASSTHROUGH`) and CAP_SYS_ADMIN for the backing-file
//! ioctl; without either the mount works as one that did not ask: OPEN is
//! answered ENOSYS from then on and files open without the server (see
//! `crate::node_files`).
//!
//! Kernel rules this table keeps (fs/fuse/iomode.c), since breaking one fails
//! the container's open(2) with EIO:
//! - every open of an inode with a backing file is a passthrough open with
//!   that same backing file;
//! - an inode is never open passthrough and cached (through the server and
//!   the page cache) at once: when cached opens exist, new ones stay cached.
//!
//! The first rule is why only files that stay their node's file while open
//! get passthrough (see `OpenFile::Host::backs_node`): a copy-up would
//! otherwise need a second backing file for the same inode. Counts drop at
//! RELEASE, which the kernel sends after it dropped the mode itself, so the
//! table never believes a mode is free before the kernel does.

use crate::handles::lock;
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
    /// Through the server, with the page cache.
    Cached,
    /// Another backing file holds the inode: the open must fail (EBUSY).
    /// Not expected, given which files may back a node.
    Conflict,
    /// On the backing host file, in the kernel.
    Passthrough(Arc<BackingId>),
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Cached,
    Passthrough,
}

#[derive(Debug)]
struct Backing {
    id: Arc<BackingId>,
    /// (st_dev, st_ino) of the host file behind `id`.
    file: (u64, u64),
    opens: u32,
}

/// The I/O mode of one node, as the kernel holds it.
#[derive(Debug, Default)]
struct NodeIo {
    cached: u32,
    backing: Option<Backing>,
}

#[derive(Debug, Default)]
pub struct Passthrough {
    enabled: AtomicBool,
    nodes: Mutex<HashMap<u64, NodeIo>>,
    /// fh -> (node id, mode), for the handles counted in `nodes`.
    handles: Mutex<HashMap<u64, (u64, Mode)>>,
}

fn file_id(f: &File) -> Option<(u64, u64)> {
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

impl Passthrough {
    /// Called once the kernel agreed to passthrough at FUSE_INIT.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Whether opens get backing files: the kernel agreed at FUSE_INIT
    /// and backing files can be registered (not without privilege).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Decides how the kernel does the I/O of handle `fh` of `node`;
    /// `host` is the host file behind it, if any. `open_backing` registers
    /// a backing file with the kernel.
    pub fn route(
        &self,
        node: u64,
        fh: u64,
        host: Option<&File>,
        open_backing: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> Route {
        let host = host.filter(|_| self.enabled.load(Ordering::Relaxed));
        let mut nodes = lock(&self.nodes);
        let io = nodes.entry(node).or_default();
        let (route, mode) = match (host, &mut io.backing) {
            (Some(f), Some(b)) if file_id(f) == Some(b.file) => {
                b.opens += 1;
                (Route::Passthrough(b.id.clone()), Mode::Passthrough)
            }
            (_, Some(b)) => {
                log::warn!(
                    "node {node:#x} is open with passthrough to another file \
                     (dev, ino) {:?}: refusing a second backing file",
                    b.file
                );
                return Route::Conflict;
            }
            (Some(f), None) if io.cached == 0 => match (file_id(f), open_backing(f.as_fd())) {
                (Some(file), Ok(id)) => {
                    let id = Arc::new(id);
                    io.backing = Some(Backing {
                        id: id.clone(),
                        file,
                        opens: 1,
                    });
                    (Route::Passthrough(id), Mode::Passthrough)
                }
                (_, Err(e)) => {
                    self.note_failure(&e);
                    io.cached += 1;
                    (Route::Cached, Mode::Cached)
                }
                (None, Ok(_)) => {
                    io.cached += 1;
                    (Route::Cached, Mode::Cached)
                }
            },
            (_, None) => {
                io.cached += 1;
                (Route::Cached, Mode::Cached)
            }
        };
        drop(nodes);
        lock(&self.handles).insert(fh, (node, mode));
        route
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

    /// The kernel closed handle `fh`.
    pub fn release(&self, fh: u64) {
        let Some((node, mode)) = lock(&self.handles).remove(&fh) else {
            return;
        };
        let mut nodes = lock(&self.nodes);
        let Some(io) = nodes.get_mut(&node) else {
            return;
        };
        match mode {
            Mode::Cached => io.cached = io.cached.saturating_sub(1),
            Mode::Passthrough => {
                if let Some(b) = &mut io.backing {
                    b.opens = b.opens.saturating_sub(1);
                    if b.opens == 0 {
                        // Dropping the id closes it in the kernel; files
                        // opened with it keep their own reference.
                        io.backing = None;
                    }
                }
            }
        }
        if io.cached == 0 && io.backing.is_none() {
            nodes.remove(&node);
        }
    }
}
