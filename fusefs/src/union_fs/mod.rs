//! Every filesystem operation of a mount, on node ids and file handles,
//! returning `Result` and no FUSE types (the adapter only calls and
//! replies): the namespace here, file I/O in `file_io`, extended
//! attributes in `xattrs`.
//!
//! Locking: `tree` serialises changes of the namespace and copy-ups
//! (writers) against resolutions (readers), and a node id is turned into a
//! path under it too (else a rename in between leads to another file);
//! reads and writes through a file already open take no tree lock. A node
//! whose last name goes while the kernel holds it lives on as an `Orphan`.

use crate::acl::{self, Acl};
use crate::error::{FsError, Result};
use crate::handles::{lock, Handles, OpenFile};
use crate::ids::{FileHandle, NodeId};
use crate::inode::InodeTable;
use crate::last_lower::LastLower;
use crate::layers::Layers;
use crate::listings::{DirItem, Listing, Listings};
use crate::lower::Node;
use crate::node_files::NodeFiles;
use crate::orphan::Orphan;
use crate::plain_writes::PlainWrites;
use crate::union::{Child, Resolved};
use crate::upper::{override_of, TimeSet, Upper};
use crate::whiteout::is_reserved;
use layerdb::{join_path, split_path, Entry, Kind};
use nix::errno::Errno;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

mod file_io;
mod orphan_xattrs;
mod redirect;
mod xattrs;

pub use file_io::Writer;

/// Attributes to report for a node id.
#[derive(Clone, Debug)]
pub struct Attr {
    /// The node id the kernel knows the node by.
    pub id: NodeId,
    /// The node as the union resolves it.
    pub node: Node,
    /// The node's generation, for replies that hand out a reference
    /// (see `crate::inode`).
    pub generation: u64,
}

/// Who creates a node: its owner, and the umask that limits its mode
/// where the directory has no default ACL.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// The owner uid the new node gets.
    pub uid: u32,
    /// The owner gid the new node gets (unless the directory is setgid).
    pub gid: u32,
    /// The caller's umask.
    pub umask: u32,
}

/// A `setattr` request; `None` leaves a field as is.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    /// New permission bits (`0o7777`).
    pub mode: Option<u32>,
    /// New owner uid.
    pub uid: Option<u32>,
    /// New owner gid.
    pub gid: Option<u32>,
    /// New size in bytes (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
    /// Who asks, for the set-id bits a chown or truncation clears (see
    /// [`SetAttr::clearing_set_id`]); `None`: a caller with CAP_FSETID.
    pub by: Option<Writer>,
}

impl SetAttr {
    /// The access and modification times the request sets, if it sets
    /// either (the other as Omit).
    pub fn times(&self) -> Option<(TimeSet, TimeSet)> {
        let or_omit = |t: Option<TimeSet>| t.unwrap_or(TimeSet::Omit);
        (self.atime.is_some() || self.mtime.is_some())
            .then(|| (or_omit(self.atime), or_omit(self.mtime)))
    }

    /// [`SetAttr::times`] of a request that sets nothing else.
    pub fn times_alone(&self) -> Option<(TimeSet, TimeSet)> {
        let alone = !self.changes_owner_or_mode() && self.size.is_none();
        self.times().filter(|_| alone)
    }

    /// Whether the request changes the owner or the mode (what needs ownership
    /// of the file).
    pub fn changes_owner_or_mode(&self) -> bool {
        self.mode.is_some() || self.changes_owner()
    }

    /// Whether the request is a chown (which also drops a file's
    /// capabilities, `security.capability`, as any chown does).
    pub fn changes_owner(&self) -> bool {
        self.uid.is_some() || self.gid.is_some()
    }

    /// Whether the request is a chown(2) of a file `owner` owns, including
    /// `chown(f, -1, -1)`: the kernel sends that as a request setting
    /// nothing, its set-id bits left to the server
    /// (FUSE_HANDLE_KILLPRIV_V2), and a local filesystem clears them for
    /// it as for any chown, when the caller may change the mode (others
    /// get EPERM there). The kernel sends the same empty request before a
    /// write or fallocate by a caller without CAP_FSETID
    /// (`file_remove_privs`), who need not own the file: for such a
    /// caller nothing is cleared here, and the WRITE or FALLOCATE that
    /// follows clears what it must.
    fn is_chown(&self, owner: u32) -> bool {
        let may_chmod = || self.by.as_ref().is_none_or(|w| w.owns_or_has_fowner(owner));
        self.changes_owner() || (self.sets_nothing() && may_chmod())
    }

    fn sets_nothing(&self) -> bool {
        let Self {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            by: _,
        } = self;
        mode.is_none()
            && uid.is_none()
            && gid.is_none()
            && size.is_none()
            && atime.is_none()
            && mtime.is_none()
    }

    /// This request with the set-id bits of `e` it clears added as a mode
    /// change, as the kernel clears them on a local filesystem (the mount
    /// leaves it to the server: FUSE_HANDLE_KILLPRIV_V2, see
    /// `Adapter::init`). A chown of a non-directory clears S_ISUID, and
    /// S_ISGID with group execute or when the caller is outside the file's
    /// group and lacks CAP_FSETID; a truncation by a caller without
    /// CAP_FSETID clears S_ISUID and S_ISGID under the same rule. A request
    /// that sets the mode itself says what it wants.
    pub fn clearing_set_id(&self, e: &Entry) -> SetAttr {
        let mut sa = self.clone();
        let set_id = libc::S_ISUID | libc::S_ISGID;
        if self.mode.is_some() || e.kind == Kind::Dir || e.mode & set_id == 0 {
            return sa;
        }
        // Asked only now: for an empty request it may read /proc.
        let chown = self.is_chown(e.uid);
        if !chown && self.size.is_none() {
            return sa;
        }
        // What the caller's change clears (it may read its /proc status).
        let mut clear = self
            .by
            .as_ref()
            .map_or(0, |w| w.set_id_bits_cleared(e.mode, e.gid));
        if chown {
            // Any caller's chown: S_ISUID, and group-executable S_ISGID.
            clear |= libc::S_ISUID;
            if e.mode & libc::S_IXGRP != 0 {
                clear |= libc::S_ISGID;
            }
        }
        if e.mode & clear != 0 {
            sa.mode = Some(e.mode & 0o7777 & !clear);
        }
        sa
    }

    /// `e` with this request's owner and mode, and the access ACL that
    /// chmod makes of `e`'s (its owner, mask and other entries follow the
    /// new mode), if `e` has one.
    pub fn owner_and_mode(&self, e: &Entry) -> (Entry, Option<Vec<u8>>) {
        let mut e = e.clone();
        e.mode = self.mode.map_or(e.mode, |m| m & 0o7777);
        e.uid = self.uid.unwrap_or(e.uid);
        e.gid = self.gid.unwrap_or(e.gid);
        let access = Acl::of(&e, acl::ACCESS);
        let acl = self.mode.zip(access).map(|(m, a)| a.chmod(m).to_bytes());
        (e, acl)
    }
}

enum Place {
    Path(Vec<u8>),
    Orphan(Arc<Orphan>),
}

/// What a new node is.
enum NewNode<'a> {
    Dir,
    File,
    Special(Kind, (u32, u32)),
    Symlink(&'a [u8]),
}

/// The union filesystem core: every operation the FUSE adapter serves, on node
/// ids the kernel holds, returning `Result` and no FUSE types, so tests drive
/// it without a kernel. Operations on one tree take its lock, changes
/// exclusively.
pub struct UnionFs {
    layers: Layers,
    read_only: bool,
    tree: RwLock<()>,
    /// Bumped by every change of the tree, under its write lock.
    generation: AtomicU64,
    inodes: Mutex<InodeTable>,
    handles: Handles,
    node_files: NodeFiles,
    plain_writes: PlainWrites,
    last_lower: LastLower,
    listings: Listings,
    /// Told of each node whose set-id bits a write cleared, which the
    /// kernel's cached mode does not know (see [`UnionFs::on_set_id_cleared`]).
    set_id_listener: OnceLock<SetIdListener>,
}

type SetIdListener = Box<dyn Fn(NodeId) + Send + Sync>;

fn read_guard(l: &RwLock<()>) -> std::sync::RwLockReadGuard<'_, ()> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_guard(l: &RwLock<()>) -> std::sync::RwLockWriteGuard<'_, ()> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A node id the kernel no longer holds.
fn gone(id: NodeId) -> FsError {
    FsError::posix(Errno::ENOENT, format!("<inode {id:#x}>").as_bytes())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl UnionFs {
    /// A stack without an upper is always read-only.
    pub fn new(layers: Layers, read_only: bool) -> UnionFs {
        let read_only = read_only || !layers.has_upper();
        UnionFs {
            layers,
            read_only,
            tree: RwLock::new(()),
            generation: AtomicU64::new(0),
            inodes: Mutex::new(InodeTable::default()),
            handles: Handles::default(),
            node_files: NodeFiles::default(),
            plain_writes: PlainWrites::default(),
            last_lower: LastLower::default(),
            listings: Listings::default(),
            set_id_listener: OnceLock::new(),
        }
    }

    /// Calls `f` with each node whose set-id bits a WRITE, FALLOCATE or
    /// COPY_FILE_RANGE cleared, before that request is answered: those
    /// replies carry no attributes, so the kernel would go on showing (and
    /// `exec` honouring) the bits it cached until told to ask again. A
    /// SETATTR's reply carries the new mode itself. Set once, by the mount.
    pub fn on_set_id_cleared(&self, f: impl Fn(NodeId) + Send + Sync + 'static) {
        if self.set_id_listener.set(Box::new(f)).is_err() {
            log::warn!("a second set-id listener ignored");
        }
    }

    fn set_id_cleared(&self, id: NodeId) {
        if let Some(f) = self.set_id_listener.get() {
            f(id);
        }
    }

    /// The tree write lock, for a change of the tree.
    fn change_tree(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        let g = write_guard(&self.tree);
        self.generation.fetch_add(1, Ordering::Relaxed);
        g
    }

    /// Whether every change answers EROFS (asked for, or no upper).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// A path of node `id`. Callers hold the tree lock: a rename between
    /// reading the path and resolving it would reach another file.
    fn path_of(&self, id: NodeId) -> Result<Vec<u8>> {
        lock(&self.inodes).path(id).ok_or_else(|| gone(id))
    }

    /// Node `id`'s resolution at `path`: the one the last request about it
    /// found in a lower layer, if the tree is unchanged since (see
    /// [`LastLower`]). Callers hold the tree's read lock.
    fn resolve_node(&self, id: NodeId, path: &[u8]) -> Result<Resolved> {
        let generation = self.generation.load(Ordering::Relaxed);
        if let Some(r) = self.last_lower.get(id, generation, path) {
            return Ok(r);
        }
        let r = self.layers.get(path)?;
        if !self.layers.in_upper(&r) {
            self.last_lower.keep(id, generation, path, &r);
        }
        Ok(r)
    }

    /// Where node `id` is: a path of the union or, with no name left, its
    /// orphan. Callers hold the tree lock.
    fn place(&self, id: NodeId) -> Result<Place> {
        let t = lock(&self.inodes);
        if let Some(p) = t.path(id) {
            return Ok(Place::Path(p));
        }
        t.orphan(id).map(Place::Orphan).ok_or_else(|| gone(id))
    }

    fn child_path(&self, parent: NodeId, name: &[u8]) -> Result<Vec<u8>> {
        let dir = self.path_of(parent)?;
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return Err(FsError::posix(Errno::EINVAL, &join_path(&dir, name)));
        }
        let path = join_path(&dir, name);
        // A path of PATH_MAX bytes or more, made one relative name at a
        // time, is one no layer may hold (commit refuses it) and the
        // server would keep whole for every level below: ENAMETOOLONG,
        // as fuse-overlayfs answers (1,500 levels of 255-byte names grew
        // the server past 2 GB).
        if path.len() >= layerdb::PATH_MAX {
            return Err(FsError::posix(Errno::ENAMETOOLONG, &path));
        }
        Ok(path)
    }

    /// The upper, unless the mount is read-only.
    fn writable(&self, path: &[u8]) -> Result<&Upper> {
        if self.read_only {
            return Err(FsError::posix(Errno::EROFS, path));
        }
        self.layers.upper(path)
    }

    /// Names the overlay format reserves cannot be created in the container.
    fn check_new_name(path: &[u8]) -> Result<()> {
        if is_reserved(split_path(path).1) {
            return Err(FsError::posix(Errno::EINVAL, path));
        }
        Ok(())
    }

    fn attr(path: &[u8], r: Resolved) -> Attr {
        Attr {
            id: InodeTable::node_id(path, r.node.ino),
            node: r.node,
            generation: 0,
        }
    }

    /// An attr handed to the kernel as a new reference (lookup, create...).
    fn entry(&self, path: &[u8], r: Resolved) -> Attr {
        let mut a = Self::attr(path, r);
        a.generation = lock(&self.inodes).add_lookup(a.id, Some(path));
        a
    }

    /// The child `name` of directory `parent`, as a new kernel reference (the
    /// kernel later forgets it); ENOENT if the union has no such name.
    pub fn lookup(&self, parent: NodeId, name: &[u8]) -> Result<Attr> {
        let _g = read_guard(&self.tree);
        let path = self.child_path(parent, name)?;
        if is_reserved(name) {
            return Err(FsError::posix(Errno::ENOENT, &path));
        }
        let r = self.layers.get(&path)?;
        Ok(self.entry(&path, r))
    }

    /// The kernel dropped `n` references to node `id`; once it holds
    /// none, the node's id and its node file are let go.
    pub fn forget(&self, id: NodeId, n: u64) {
        lock(&self.inodes).forget(id, n);
        self.node_files.forget(id);
    }

    /// Records a reference the kernel took through readdirplus. The
    /// listing is a snapshot: after a change of the tree its name may have
    /// moved, so it is checked before it becomes a way to the node.
    pub fn note_lookup(&self, listing: &Listing, item: &DirItem) {
        let (id, path) = (item.id, listing.path_of(item));
        let _g = read_guard(&self.tree);
        let current = listing.generation == self.generation.load(Ordering::Relaxed)
            || self
                .layers
                .get(&path)
                .is_ok_and(|r| InodeTable::node_id(&path, r.node.ino) == id);
        lock(&self.inodes).add_lookup(id, current.then_some(&path));
    }

    /// The generation a readdirplus entry for node `id` carries.
    pub fn generation(&self, id: NodeId) -> u64 {
        lock(&self.inodes).generation(id)
    }

    /// A node with no name left answers from its orphan.
    pub fn getattr(&self, id: NodeId) -> Result<Attr> {
        let _g = read_guard(&self.tree);
        match self.place(id)? {
            Place::Path(path) => Ok(Self::attr(&path, self.layers.get(&path)?)),
            Place::Orphan(o) => Ok(Attr {
                id,
                node: o.node(id.ino())?,
                generation: 0,
            }),
        }
    }

    /// chmod, chown, truncate and utimes in one: copies the file up (without
    /// its content for a truncation to 0) and changes what `sa` sets. A node
    /// with no name left changes its orphan; a file CREATE made, the tree
    /// unchanged since, changes through the file the node keeps.
    pub fn setattr(&self, id: NodeId, sa: &SetAttr) -> Result<Attr> {
        if let Some(times) = sa.times_alone() {
            let _g = read_guard(&self.tree);
            if let Some(a) = self.set_new_file_times(id, times)? {
                return Ok(a);
            }
        }
        let _g = self.change_tree();
        let path = match self.place(id)? {
            Place::Path(p) => p,
            Place::Orphan(o) => return self.orphan_setattr(id, &o, sa),
        };
        let upper = self.writable(&path)?;
        // A file CREATE made, the tree unchanged since (tar's chown and
        // chmod of each file it makes as root): changed through the file
        // the node keeps, with no call by path (see `set_new_file_times`).
        let now = self.generation.load(Ordering::Relaxed);
        let made = self.made_file(id, now - 1)?;
        let file = made.as_ref().and_then(|(h, _)| h.host_file());
        let r = match &made {
            Some((_, node)) => Resolved::single(0, path.clone(), node.clone()),
            None => self.layers.copy_up(&path, sa.size != Some(0))?,
        };
        let sa = &sa.clearing_set_id(&r.node.entry);
        // An access ACL rewritten by a chmod: the node's xattrs changed.
        let mut acl_set = false;
        if sa.changes_owner_or_mode() {
            let (e, acl) = sa.owner_and_mode(&r.node.entry);
            // tar chowns every file it makes to the owner it already has.
            // The chmod that follows any owner change still marks ctime
            // and sets the mode (set-id bits included); the kernel drops
            // the file's capabilities itself (REMOVEXATTR), for any chown.
            let was = &r.node.entry;
            let chown = sa.changes_owner() && (e.uid, e.gid) != (was.uid, was.gid);
            let ovr = &override_of(&e);
            upper.set_owner_mode((&path, file), e.kind, ovr, chown, r.node.overridden)?;
            if let Some(v) = acl {
                self.set_container_xattr(upper, &path, acl::ACCESS, &v)?;
                acl_set = true;
            }
        }
        if let Some(size) = sa.size {
            match (r.node.entry.kind, file) {
                (Kind::Regular, Some(f)) => self.layers.truncate(f, size, &path)?,
                (Kind::Regular, None) => {
                    let f = upper.open_file(&path, libc::O_WRONLY)?;
                    self.layers.truncate(&f, size, &path)?;
                }
                (Kind::Dir, _) => return Err(FsError::posix(Errno::EISDIR, &path)),
                _ => return Err(FsError::posix(Errno::EINVAL, &path)),
            }
        }
        if let Some((atime, mtime)) = sa.times() {
            match file {
                Some(f) => upper.set_file_times((&path, f), atime, mtime)?,
                None => upper.set_times(&path, atime, mtime)?,
            }
        }
        if let (Some((_, before)), Some(f), false) = (&made, file, acl_set) {
            let node = self.made_node(f, before)?.ok_or_else(|| gone(id))?;
            // Still the node's file: its next requests keep using it.
            self.node_files.renew(id, (now - 1, now), node.clone());
            return Ok(Self::attr(&path, Resolved::single(0, path.clone(), node)));
        }
        // Times alone (tar's utimensat of every file it makes) leave what
        // the xattrs say as it was: one stat tells the rest.
        let times_only = !sa.changes_owner_or_mode() && sa.size.is_none();
        let reread = if times_only {
            self.layers.reread_upper(r)?
        } else {
            None
        };
        let r = match reread {
            Some(r) => r,
            None => self.layers.get(&path)?,
        };
        Ok(Self::attr(&path, r))
    }

    /// A symlink's target; EINVAL for anything else.
    pub fn readlink(&self, id: NodeId) -> Result<Vec<u8>> {
        let _g = read_guard(&self.tree);
        let path = self.path_of(id)?;
        let r = self.layers.get(&path)?;
        if r.node.entry.kind != Kind::Symlink {
            return Err(FsError::posix(Errno::EINVAL, &path));
        }
        Ok(r.node.entry.link)
    }

    /// Creates a node in the upper; the caller holds the tree write lock.
    /// A new regular file comes with its host file, open for reading and
    /// writing.
    fn create_node(
        &self,
        parent: NodeId,
        name: &[u8],
        caller: Caller,
        mode: u32,
        what: NewNode<'_>,
    ) -> Result<(Vec<u8>, Resolved, Option<std::fs::File>)> {
        let path = self.child_path(parent, name)?;
        Self::check_new_name(&path)?;
        let upper = self.writable(&path)?;
        let (dir_path, _) = split_path(&path);
        let dir = self.layers.copy_up_parent(&path)?;
        if !dir.is_dir() {
            return Err(FsError::posix(Errno::ENOTDIR, dir_path));
        }
        // The parent is in the upper now, so the upper is its layer 0. A
        // directory only the upper holds (each one an untar makes) hides
        // nothing below it: the host's own EEXIST (O_EXCL, mkdir, symlink,
        // mknod) says whether the name is taken, without a probe first.
        let upper_only = dir.dir_layers.len() <= 1;
        let had_whiteout = match upper_only {
            true => false,
            false => match self.layers.child(&dir, &path)? {
                Child::Found(_) => return Err(FsError::posix(Errno::EEXIST, &path)),
                Child::WhitedOut(layer) => layer == 0,
                Child::Absent => false,
            },
        };
        let kind = match what {
            NewNode::Dir => Kind::Dir,
            NewNode::File => Kind::Regular,
            NewNode::Special(k, _) => k,
            NewNode::Symlink(_) => Kind::Symlink,
        };
        let pe = &dir.node.entry;
        let mut e = acl::new_entry(pe, kind, mode, caller.umask);
        e.uid = caller.uid;
        e.gid = caller.gid;
        // BSD group semantics of a setgid directory, as the kernel applies them.
        if pe.mode & libc::S_ISGID != 0 {
            e.gid = pe.gid;
            if kind == Kind::Dir {
                e.mode |= libc::S_ISGID;
            }
        }
        if let NewNode::Special(_, rdev) = what {
            e.rdev = rdev;
        }
        e.mtime_ns = now_ns();
        if had_whiteout && upper.format().is_kernel() {
            // The whiteout device holds the name itself.
            upper.remove_whiteout(dir_path, name)?;
        }
        let mut file = None;
        match what {
            NewNode::Dir => upper.mkdir(&path, &e, None, had_whiteout)?,
            NewNode::File => {
                let new = upper.create_file(&path)?;
                upper.write_new_file_meta(&new, &path, &e, None)?;
                file = Some(new);
            }
            NewNode::Symlink(target) => {
                upper.create_symlink(&path, target)?;
                upper.write_meta(&path, &e, None)?;
            }
            NewNode::Special(..) => {
                upper.create_special(&path, &e)?;
                upper.write_meta(&path, &e, None)?;
            }
        }
        // After the new node exists: in one layer the real entry wins over
        // its `.wh.` file, so no instant shows the deleted lower file again.
        if had_whiteout {
            upper.remove_whiteout(dir_path, name)?;
        }
        let r = match &file {
            Some(new) => self.layers.new_file(&path, new)?,
            None => self.layers.get(&path)?,
        };
        Ok((path, r, file))
    }

    /// Makes a regular file, device, fifo or socket `name` in `parent`; `mode`
    /// holds the type and permission bits, `rdev` the device number.
    pub fn mknod(
        &self,
        parent: NodeId,
        name: &[u8],
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> Result<Attr> {
        let kind = Upper::kind_of_mode(mode).ok_or_else(|| FsError::posix(Errno::EINVAL, name))?;
        let what = match kind {
            Kind::Regular => NewNode::File,
            k => NewNode::Special(k, (libc::major(rdev as u64), libc::minor(rdev as u64))),
        };
        let _g = self.change_tree();
        let (path, r, _) = self.create_node(parent, name, caller, mode, what)?;
        Ok(self.entry(&path, r))
    }

    /// Makes directory `name` in `parent` with `mode` (less the umask, or as
    /// the default ACL says).
    pub fn mkdir(&self, parent: NodeId, name: &[u8], mode: u32, caller: Caller) -> Result<Attr> {
        let _g = self.change_tree();
        let (path, r, _) = self.create_node(parent, name, caller, mode, NewNode::Dir)?;
        Ok(self.entry(&path, r))
    }

    /// Makes symlink `name` in `parent` pointing at `target`.
    pub fn symlink(
        &self,
        parent: NodeId,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> Result<Attr> {
        let _g = self.change_tree();
        let (path, r, _) =
            self.create_node(parent, name, caller, 0o777, NewNode::Symlink(target))?;
        Ok(self.entry(&path, r))
    }

    /// Creates and opens a regular file. With `handle: false` no file
    /// is opened and there is no handle: I/O then goes through the node's
    /// file (see `crate::node_files`). A mount that answers OPEN with
    /// ENOSYS must create so: the kernel then sends no RELEASE for any
    /// file, created ones included, and a handle would stay open for good.
    pub fn create(
        &self,
        parent: NodeId,
        name: &[u8],
        mode: u32,
        (flags, handle): (i32, bool),
        caller: Caller,
    ) -> Result<(Attr, Option<FileHandle>)> {
        let _g = self.change_tree();
        let (path, r, created) = self.create_node(parent, name, caller, mode, NewNode::File)?;
        let upper = self.writable(&path)?;
        if !handle {
            let attr = self.entry(&path, r);
            // The file just made becomes the node's file (see `NodeFiles`),
            // so the WRITEs that follow a CREATE (tar's) neither reopen it
            // nor resolve its path again.
            if let Some(file) = created {
                let generation = self.generation.load(Ordering::Relaxed);
                let file = OpenFile::Host {
                    file,
                    writable: true,
                    backs_node: true,
                };
                // New and plain: its writes have nothing to clear.
                if file_io::is_plain(&attr.node.entry) {
                    self.plain_writes.record(attr.id, generation);
                }
                let made = attr.node.clone();
                self.node_files.insert_made(attr.id, generation, file, made);
            }
            return Ok((attr, None));
        }
        let file = upper.open_file(&path, flags & !libc::O_TRUNC)?;
        let attr = self.entry(&path, r);
        let fh = self.handles.add_file(OpenFile::Host {
            file,
            writable: true,
            backs_node: true,
        });
        Ok((attr, Some(fh)))
    }

    /// Removes the non-directory `name` from `parent`: a whiteout hides a lower
    /// one. A file the kernel still holds lives on as an orphan.
    pub fn unlink(&self, parent: NodeId, name: &[u8]) -> Result<()> {
        let _g = self.change_tree();
        let path = self.child_path(parent, name)?;
        let upper = self.writable(&path)?;
        let r = self.layers.get(&path)?;
        if r.is_dir() {
            return Err(FsError::posix(Errno::EISDIR, &path));
        }
        self.remove(upper, &path, &r)
    }

    /// Removes directory `name` from `parent`; ENOTEMPTY if the union shows
    /// anything in it (lower entries count).
    pub fn rmdir(&self, parent: NodeId, name: &[u8]) -> Result<()> {
        let _g = self.change_tree();
        let path = self.child_path(parent, name)?;
        let upper = self.writable(&path)?;
        let r = self.layers.get(&path)?;
        if !r.is_dir() {
            return Err(FsError::posix(Errno::ENOTDIR, &path));
        }
        // Lower entries count: the directory must look empty in the union.
        if !self.layers.list(&r, &path)?.is_empty() {
            return Err(FsError::posix(Errno::ENOTEMPTY, &path));
        }
        self.remove(upper, &path, &r)
    }

    /// Removes `path` from the union: the whiteout first (the real upper
    /// entry wins until it is gone), then the upper entry.
    fn remove(&self, upper: &Upper, path: &[u8], r: &Resolved) -> Result<()> {
        let (dir, name) = split_path(path);
        let orphan = self.orphan_of(path, r);
        let whiteout = self.layers.lower_has(path)?;
        if whiteout {
            self.layers.copy_up_parent(path)?;
        }
        // A `.wh.` file goes first (the real upper entry wins until it is
        // gone); a whiteout device takes the name, so it goes after.
        let device = upper.format().is_kernel();
        if whiteout && !device {
            upper.whiteout(dir, name)?;
        }
        if self.layers.in_upper(r) {
            if r.is_dir() {
                upper.remove_dir(path)?;
            } else {
                upper.remove_file(path)?;
            }
        }
        if whiteout && device {
            upper.whiteout(dir, name)?;
        }
        self.forget_path(path, orphan);
        Ok(())
    }

    /// Before `path` (resolved as `r`) leaves the union: the node the kernel
    /// knows by that name alone, with what keeps its file reachable. Best
    /// effort: the removal itself must not fail for it (EMFILE, say).
    fn orphan_of(&self, path: &[u8], r: &Resolved) -> Option<(NodeId, Orphan)> {
        let id = lock(&self.inodes).sole_node(path)?;
        match Orphan::keep(&self.layers, path, r) {
            Ok(o) => Some((id, o)),
            Err(e) => {
                log::warn!("{e}: once removed, node {id:#x} cannot be opened again");
                None
            }
        }
    }

    /// `path` names nothing any more; `orphan` is from [`Self::orphan_of`].
    fn forget_path(&self, path: &[u8], orphan: Option<(NodeId, Orphan)>) {
        let mut t = lock(&self.inodes);
        t.remove_path(path);
        if let Some((id, o)) = orphan {
            t.set_orphan(id, o);
        }
    }

    /// A lower orphan about to change becomes an upper one; the caller
    /// holds the tree write lock.
    fn writable_orphan(&self, id: NodeId, o: &Arc<Orphan>) -> Result<Arc<Orphan>> {
        self.writable(b"<unlinked file>")?;
        match o.copied_up(&self.layers)? {
            Some(up) => {
                let mut t = lock(&self.inodes);
                t.set_orphan(id, up);
                t.orphan(id)
                    .ok_or_else(|| FsError::posix(Errno::ENOENT, b"<unlinked file>"))
            }
            None => Ok(o.clone()),
        }
    }

    fn orphan_setattr(&self, id: NodeId, o: &Arc<Orphan>, sa: &SetAttr) -> Result<Attr> {
        let o = self.writable_orphan(id, o)?;
        let sa = &sa.clearing_set_id(&o.node(id.ino())?.entry);
        o.setattr(id.ino(), sa, &self.layers)?;
        Ok(Attr {
            id,
            node: o.node(id.ino())?,
            generation: 0,
        })
    }

    /// Copies up `path` and, for a directory, everything the union shows
    /// under it, so the upper alone holds the whole subtree.
    fn deep_copy_up(&self, path: &[u8]) -> Result<Resolved> {
        let top = self.layers.copy_up(path, true)?;
        // Directories still to go through, not a recursion: a lower tree
        // thousands of levels deep must not overflow the thread's stack.
        let mut dirs = vec![(path.to_vec(), top.clone())];
        while let Some((dir, r)) = dirs.pop() {
            if r.is_dir() && r.merges_lower() {
                for (name, _) in self.layers.list(&r, &dir)? {
                    let child = join_path(&dir, &name);
                    let copied = self.layers.copy_up(&child, true)?;
                    dirs.push((child, copied));
                }
            }
        }
        Ok(top)
    }

    /// rename(2) with its `RENAME_NOREPLACE` and `RENAME_EXCHANGE` flags. A
    /// directory with lower content moves alone with a redirect to that
    /// content (see `redirect`), in an exchange too.
    pub fn rename(
        &self,
        parent: NodeId,
        name: &[u8],
        new_parent: NodeId,
        new_name: &[u8],
        flags: u32,
    ) -> Result<()> {
        let _g = self.change_tree();
        let from = self.child_path(parent, name)?;
        let to = self.child_path(new_parent, new_name)?;
        let upper = self.writable(&from)?;
        Self::check_new_name(&to)?;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange)
        {
            return Err(FsError::posix(Errno::EINVAL, &from));
        }
        if to.starts_with(&from) && to.get(from.len()) == Some(&b'/') {
            return Err(FsError::posix(Errno::EINVAL, &to));
        }
        // The paths the server holds below a moved directory stay under
        // PATH_MAX, as new names do (`child_path`): renames in turn made
        // a path of any length one level at a time.
        {
            let inodes = lock(&self.inodes);
            let past = |a: &[u8], b: &[u8]| b.len() + inodes.longest_below(a) >= layerdb::PATH_MAX;
            if past(&from, &to) || (exchange && past(&to, &from)) {
                return Err(FsError::posix(Errno::ENAMETOOLONG, &to));
            }
        }
        let src = self.layers.get(&from)?;
        let dst = self.layers.resolve(&to)?;
        if from == to {
            return Ok(());
        }
        let (from_dir, _) = split_path(&from);
        let (to_dir, _) = split_path(&to);
        if exchange {
            let dst = dst.ok_or_else(|| FsError::posix(Errno::ENOENT, &to))?;
            let same_dir = from_dir == to_dir;
            let sides = [(&src, &from), (&dst, &to)];
            let mut redirects = Vec::with_capacity(2);
            for (r, p) in sides {
                let redirect = self.redirect_for(p, r, same_dir)?;
                if redirect.is_some() {
                    self.layers.copy_up(p, true)?;
                } else {
                    self.deep_copy_up(p)?;
                }
                redirects.push(redirect);
            }
            // A side with lower content keeps finding it through its
            // redirect; one whole in the upper hides what lower layers
            // have at its new place.
            for ((r, p), redirect) in sides.into_iter().zip(redirects) {
                match redirect {
                    Some(target) => upper.set_redirect(p, &target)?,
                    None if r.is_dir() => upper.set_opaque(p)?,
                    None => {}
                }
            }
            upper.rename(&from, &to, nix::fcntl::RenameFlags::RENAME_EXCHANGE)?;
            lock(&self.inodes).exchange(&from, &to);
            return Ok(());
        }
        let mut replaced = None;
        if let Some(d) = &dst {
            if noreplace {
                return Err(FsError::posix(Errno::EEXIST, &to));
            }
            replaced = self.orphan_of(&to, d);
            match (src.is_dir(), d.is_dir()) {
                (true, false) => return Err(FsError::posix(Errno::ENOTDIR, &to)),
                (false, true) => return Err(FsError::posix(Errno::EISDIR, &to)),
                (true, true) => {
                    if !self.layers.list(d, &to)?.is_empty() {
                        return Err(FsError::posix(Errno::ENOTEMPTY, &to));
                    }
                    if self.layers.in_upper(d) {
                        upper.clear_markers(&to)?;
                    }
                }
                (false, false) => {}
            }
        }
        // A directory with lower content moves alone, recording where
        // that content is; failing that (a redirect too long) it moves
        // whole.
        let redirect = self.redirect_for(&from, &src, from_dir == to_dir)?;
        if redirect.is_some() {
            self.layers.copy_up(&from, true)?;
        } else {
            self.deep_copy_up(&from)?;
        }
        let to_parent = self.layers.copy_up(to_dir, true)?;
        if !to_parent.is_dir() {
            return Err(FsError::posix(Errno::ENOTDIR, to_dir));
        }
        match &redirect {
            Some(target) => upper.set_redirect(&from, target)?,
            // The moved tree is complete in the upper; lower directories at
            // the destination must not merge into it.
            None if src.is_dir() => upper.set_opaque(&from)?,
            None => {}
        }
        let whiteout = self.layers.lower_has(&from)?;
        if upper.format().is_kernel() {
            // Whiteout devices hold their names: the one at `to` goes
            // before (a directory cannot replace it), the one at `from`
            // comes once the name is free.
            upper.remove_whiteout(to_dir, new_name)?;
            upper.rename(&from, &to, nix::fcntl::RenameFlags::empty())?;
            if whiteout {
                upper.whiteout(from_dir, name)?;
            }
        } else {
            if whiteout {
                upper.whiteout(from_dir, name)?;
            }
            upper.rename(&from, &to, nix::fcntl::RenameFlags::empty())?;
            upper.remove_whiteout(to_dir, new_name)?;
        }
        self.forget_path(&to, replaced);
        lock(&self.inodes).rename(&from, &to);
        Ok(())
    }

    /// A new name `new_name` in `new_parent` for the non-directory `id` (copied
    /// up first); EPERM for a directory, EEXIST for a name in use.
    pub fn link(&self, id: NodeId, new_parent: NodeId, new_name: &[u8]) -> Result<Attr> {
        let _g = self.change_tree();
        let path = self.path_of(id)?;
        let to = self.child_path(new_parent, new_name)?;
        Self::check_new_name(&to)?;
        let upper = self.writable(&to)?;
        let r = self.layers.get(&path)?;
        if r.is_dir() {
            return Err(FsError::posix(Errno::EPERM, &path));
        }
        if self.layers.resolve(&to)?.is_some() {
            return Err(FsError::posix(Errno::EEXIST, &to));
        }
        let (to_dir, _) = split_path(&to);
        if !self.layers.get(to_dir)?.is_dir() {
            return Err(FsError::posix(Errno::ENOTDIR, to_dir));
        }
        self.layers.copy_up(&path, true)?;
        self.layers.copy_up(to_dir, true)?;
        if upper.format().is_kernel() {
            // A whiteout device holds the name.
            upper.remove_whiteout(to_dir, new_name)?;
        }
        upper.link(&path, &to)?;
        upper.remove_whiteout(to_dir, new_name)?;
        let r = self.layers.get(&to)?;
        Ok(self.entry(&to, r))
    }

    /// The listing a READDIR of directory `id` at `offset` reads, and the
    /// index to start at (see the `listings` module).
    pub fn dir_items(&self, id: NodeId, offset: u64) -> Result<(Arc<Listing>, usize)> {
        let generation = self.generation.load(Ordering::Relaxed);
        self.listings
            .get(id, offset, generation, |seq| self.list(id, seq))
    }

    fn list(&self, id: NodeId, seq: u32) -> Result<Listing> {
        let _g = read_guard(&self.tree);
        let generation = self.generation.load(Ordering::Relaxed);
        let Ok(path) = self.path_of(id) else {
            // Removed while a process still has it open: nothing to list.
            return Ok(Listing::new(seq, generation, Vec::new(), Vec::new()));
        };
        let r = self.layers.get_dir(&path)?;
        let mut items = Vec::new();
        let parent_path = split_path(&path).0.to_vec();
        let parent_id = if path.is_empty() {
            NodeId::ROOT
        } else {
            self.layers
                .get(&parent_path)
                .map(|p| InodeTable::node_id(&parent_path, p.node.ino))
                .unwrap_or(NodeId::ROOT)
        };
        let dot = r.node.clone().attributes_only();
        items.push(DirItem {
            name: b".".to_vec(),
            id,
            node: dot.clone(),
            is_dot: true,
        });
        items.push(DirItem {
            name: b"..".to_vec(),
            id: parent_id,
            node: dot,
            is_dot: true,
        });
        let children = self.layers.list(&r, &path)?;
        self.layers.read_ahead(&children);
        for (name, child) in children {
            let cpath = join_path(&path, &name);
            // A name whose path reaches PATH_MAX is one no LOOKUP gives
            // (`child_path`), and READDIRPLUS must not give it either: a
            // container that moved a tree under a deep one while the
            // kernel had forgotten its nodes (`rename` checks the nodes
            // held) had `find` make a node of every level, each holding
            // its whole path, 10 GB of server at 2,880 levels.
            if cpath.len() >= layerdb::PATH_MAX {
                continue;
            }
            items.push(DirItem {
                id: InodeTable::node_id(&cpath, child.node.ino),
                name,
                node: child.node.attributes_only(),
                is_dot: false,
            });
        }
        Ok(Listing::new(seq, generation, path, items))
    }

    /// Space of the upper's filesystem (zeros for a read-only stack).
    pub fn statfs(&self) -> Result<nix::sys::statvfs::Statvfs> {
        let p = match self.layers.upper(b"") {
            Ok(u) => u.root().to_path_buf(),
            Err(_) => std::path::PathBuf::from("/"),
        };
        nix::sys::statvfs::statvfs(&p).map_err(|e| FsError::io("statvfs", b"", e.into()))
    }

    /// The kernel checks permissions itself (default_permissions); this
    /// only answers existence and a write on a read-only mount.
    pub fn access(&self, id: NodeId, mask: i32) -> Result<()> {
        let _g = read_guard(&self.tree);
        let path = self.path_of(id)?;
        if mask & libc::W_OK != 0 && self.read_only {
            return Err(FsError::posix(Errno::EROFS, &path));
        }
        self.layers.get(&path).map(|_| ())
    }
}
