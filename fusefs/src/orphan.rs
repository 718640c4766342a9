//! Nodes that lost their last name while the kernel still holds them.
//!
//! POSIX lets a file outlive its last name: a process that looked it up an
//! instant before (`cat f` racing `mv tmp f`) or holds it open (fstat,
//! ftruncate, fchmod, reopening `/proc/self/fd/N`) keeps using the same
//! file. FUSE asks for such a file by node id, and the union has no path
//! for it any more, so at removal the node keeps its file: an upper file
//! stays open (the host inode lives on, unlinked), a lower file keeps its
//! place in its immutable layer. A directory (or a device, fifo or socket
//! node of the upper) keeps only its last attributes, with no links, as
//! fstat of a removed directory shows it. The kernel's FORGET drops it.

use crate::dir_lower::node_of_open_file;
use crate::error::{FsError, Result};
use crate::handles::OpenFile;
use crate::layers::Layers;
use crate::lower::Node;
use crate::union::Resolved;
use crate::union_fs::SetAttr;
use crate::upper::{host_open_options, override_of};
use crate::xattr;
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const WHAT: &[u8] = b"<unlinked file>";

/// Upper orphans' descriptors open now (see [`HeldFile`]).
static HELD: AtomicUsize = AtomicUsize::new(0);

/// How many descriptors upper orphans may hold: half the server's
/// open-file limit (raised to its hard limit when the mount starts, before
/// any orphan), leaving the rest for the requests of everyone else.
fn held_max() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE);
        limit.map_or(512, |(soft, _)| {
            usize::try_from(soft / 2).unwrap_or(usize::MAX)
        })
    })
}

/// An upper orphan's descriptor, counted against [`held_max`]. Each file a
/// process keeps open after unlinking it holds one of the server's
/// descriptors, and a container that kept thousands (found by a review as
/// an attacker) used up the server's limit: every create, every read of
/// a store chunk in the mount failed with EMFILE for every process. Past
/// the bound an unlinked file is not kept, as when its open fails: its
/// holder's later calls on it fail, and nobody else's do. (Kernel
/// overlayfs holds such files in the kernel, fuse-overlayfs by moving them
/// to its work directory.)
#[derive(Debug)]
pub struct HeldFile(File);

impl HeldFile {
    /// `open`'s file, if a descriptor is left for orphans.
    fn open(open: impl FnOnce() -> Result<File>) -> Result<HeldFile> {
        if HELD.fetch_add(1, Ordering::SeqCst) >= held_max() {
            HELD.fetch_sub(1, Ordering::SeqCst);
            return Err(FsError::posix(Errno::EMFILE, WHAT));
        }
        open().map(HeldFile).inspect_err(|_| {
            HELD.fetch_sub(1, Ordering::SeqCst);
        })
    }
}

impl std::ops::Deref for HeldFile {
    type Target = File;
    fn deref(&self) -> &File {
        &self.0
    }
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub enum Orphan {
    /// An upper file, held open since its last name went.
    Upper(HeldFile),
    /// A file of a lower layer, hidden now by a whiteout.
    Lower { path: Vec<u8>, r: Box<Resolved> },
    /// A node with no file to keep: its attributes when it went.
    Gone(Box<Node>),
}

impl Orphan {
    /// Keeps the file that `path` (resolved as `r`) names, before the name
    /// goes.
    pub fn keep(layers: &Layers, path: &[u8], r: &Resolved) -> Result<Orphan> {
        if layers.in_upper(r) && r.node.entry.kind == layerdb::Kind::Regular {
            // Read-write: a later ftruncate goes through this descriptor.
            // (Only a regular file: in the kernel format a fifo or device
            // node of the upper is real, and opening it would act on it.)
            let file = HeldFile::open(|| layers.upper(path)?.open_file(path, libc::O_RDWR))?;
            return Ok(Orphan::Upper(file));
        }
        if r.is_dir() || layers.in_upper(r) {
            let mut node = r.node.clone();
            node.entry.nlink = 0;
            return Ok(Orphan::Gone(Box::new(node)));
        }
        Ok(Orphan::Lower {
            path: path.to_vec(),
            r: Box::new(r.clone()),
        })
    }

    pub fn node(&self, ino: u64) -> Result<Node> {
        match self {
            Orphan::Upper(file) => node_of_open_file(file, ino),
            Orphan::Lower { r, .. } => Ok(r.node.clone()),
            Orphan::Gone(node) => Ok((**node).clone()),
        }
    }

    /// True when the node's host inode may have been freed (and its
    /// number given to a new file): see `crate::inode`.
    pub fn lost_its_inode(&self) -> bool {
        matches!(self, Orphan::Gone(_))
    }

    /// Opens the file with `open(2)` flags. A lower file opened for writing
    /// must first become an upper one: see [`Orphan::copied_up`].
    pub fn open(&self, layers: &Layers, flags: i32) -> Result<OpenFile> {
        match self {
            Orphan::Upper(file) => {
                // The descriptor's /proc link reopens the unlinked inode with
                // new flags; O_NOFOLLOW would refuse the link itself.
                let file = host_open_options(flags, 0)
                    .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
                    .map_err(|e| FsError::io("reopen", WHAT, e))?;
                layers.upper_open_file(file, flags, WHAT)
            }
            Orphan::Lower { path, r } => layers.open_read(path, r, false),
            Orphan::Gone(_) => Err(FsError::posix(Errno::ENOENT, WHAT)),
        }
    }

    /// An upper orphan with the same content and metadata as this one: a
    /// lower file is copied to a nameless upper file before it is changed,
    /// unless the union still shows it by another name (a hardlink): then
    /// that name is copied up and the orphan is its file, so a write shows
    /// there, as on a local filesystem.
    pub fn copied_up(&self, layers: &Layers) -> Result<Option<Orphan>> {
        let Orphan::Lower { path, r } = self else {
            return Ok(None);
        };
        if let Some(other) = other_name(layers, path, r)? {
            layers.copy_up(&other, true)?;
            let file = HeldFile::open(|| layers.upper(&other)?.open_file(&other, libc::O_RDWR))?;
            return Ok(Some(Orphan::Upper(file)));
        }
        let file = HeldFile::open(|| layers.copy_out(path, r))?;
        Ok(Some(Orphan::Upper(file)))
    }

    /// Applies a setattr to an upper orphan through its descriptor, in the
    /// upper's `format`.
    pub fn setattr(&self, ino: u64, sa: &SetAttr, layers: &Layers) -> Result<()> {
        let upper = layers.upper(WHAT)?;
        let file = match self {
            Orphan::Upper(file) => file,
            Orphan::Gone(_) => return Err(FsError::posix(Errno::ENOENT, WHAT)),
            Orphan::Lower { .. } => return Err(FsError::posix(Errno::EROFS, WHAT)),
        };
        if sa.changes_owner_or_mode() {
            // The node carries the access ACL, for chmod to rewrite.
            let e = node_of_open_file(file, ino)?.entry;
            let access = upper.format().host_xattr(crate::acl::ACCESS);
            let (e, acl) = sa.owner_and_mode(&e);
            // Only for a chown: any chown drops file capabilities.
            upper.set_file_owner_mode(file, e.kind, &override_of(&e), sa.changes_owner())?;
            if let Some(v) = acl {
                xattr::set_fd(file, &access, &v)
                    .map_err(|e| FsError::io("fsetxattr ACL", WHAT, e))?;
            }
        }
        if let Some(size) = sa.size {
            layers.truncate(file, size, WHAT)?;
        }
        if let Some((atime, mtime)) = sa.times() {
            upper.set_file_times((WHAT, file), atime, mtime)?;
        }
        Ok(())
    }
}

/// A name the union still shows for the lower file `r` that `path` named:
/// one of its names in its layer or in the upper (a copy-up keeps the
/// stable inode number) that resolves to that number. Each layer is
/// walked, so only files with several names look (see
/// [`crate::lower::Lower::names_of`]).
fn other_name(layers: &Layers, path: &[u8], r: &Resolved) -> Result<Option<Vec<u8>>> {
    if r.node.entry.nlink < 2 || r.node.entry.kind != layerdb::Kind::Regular {
        return Ok(None);
    }
    let ino = r.node.ino;
    let upper = layers.has_upper().then_some(0);
    for layer in upper.into_iter().chain([r.layer]) {
        let Some(l) = layers.layer(layer) else {
            continue;
        };
        let same = |o: &Resolved| o.node.ino == ino && !o.is_dir();
        for layer_name in l.names_of(ino)? {
            let names = layers.union_names(layer, &layer_name, same)?;
            if let Some(name) = names.into_iter().find(|n| n != path) {
                return Ok(Some(name));
            }
        }
    }
    Ok(None)
}
