//! Opening files and their I/O: through a handle (CREATE, or OPEN with
//! passthrough) or, with no handle, through the node's kept file (see
//! `crate::node_files`).

use super::{read_guard, Attr, Place, UnionFs};
use crate::error::{FsError, Result};
use crate::handles::OpenFile;
use crate::ids::{FileHandle, NodeId};
use crate::layers::Layers;
use crate::lower::Node;
use crate::orphan::Orphan;
use crate::union::Resolved;
use crate::upper::{TimeSet, Upper};
use crate::view::IdMap;
use nix::errno::Errno;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// Who writes: the ids the union stores for the caller, and its process
/// (whose supplementary groups count too).
#[derive(Clone, Debug)]
pub struct Writer {
    /// The uid the union stores for the writer.
    pub uid: u32,
    /// The gid the union stores for the writer.
    pub gid: u32,
    /// The writing process, whose supplementary groups count too.
    pub pid: u32,
    /// Whether the writer lacks CAP_FSETID, so that its change clears
    /// S_ISUID and S_ISGID as on a local filesystem (the mount leaves that
    /// to the server, FUSE_HANDLE_KILLPRIV_V2, see `Adapter::init`).
    /// `Some` where known: the kernel flags a WRITE by such a caller
    /// (`Some(true)`). `None`: asked of /proc (fuser passes no flag for
    /// SETATTR, FALLOCATE or COPY_FILE_RANGE), and only when a file with
    /// set-id bits is changed.
    pub lacks_fsetid: Option<bool>,
    /// The mount's group mapping (fuse-overlayfs's `gidmapping`), which
    /// stores the supplementary groups /proc shows in the server's ids as
    /// `gid` is stored; `None` where ids are stored as the kernel names
    /// them.
    pub gid_map: Option<Arc<IdMap>>,
}

/// capability(7)'s numbers (libc has no constants for them).
const CAP_FOWNER: u32 = 3;
const CAP_FSETID: u32 = 4;

/// The set-id bits, which a write or a chown may have to clear.
pub(super) const SET_ID: u32 = libc::S_ISUID | libc::S_ISGID;

/// The uid map of process `pid` (a number, or `self`), which names its
/// user namespace's ids (readable for any process, unlike its namespace
/// link); `None` for a process /proc cannot show.
fn uid_map(pid: &str) -> Option<Vec<String>> {
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
    Some(map.split_whitespace().map(str::to_owned).collect())
}

/// This server's own uid map, which does not change while it runs.
fn own_uid_map() -> Option<&'static Vec<String>> {
    static OWN: OnceLock<Option<Vec<String>>> = OnceLock::new();
    OWN.get_or_init(|| uid_map("self")).as_ref()
}

/// The rest of the line of process `pid`'s /proc status that starts with
/// `key`; `None` for a process /proc cannot show.
fn status_field(pid: &str, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    Some(line.to_string())
}

/// Whether process `pid` (a number, or `self`) is in the initial user
/// namespace: only there does its uid map cover every id unchanged.
fn in_initial_user_namespace(pid: &str) -> bool {
    uid_map(pid).is_some_and(|m| m == ["0", "0", "4294967295"])
}

/// Whether process `pid` (a number, or `self`) has capability `cap` in its
/// effective set.
fn has_effective(pid: &str, cap: u32) -> bool {
    let effective =
        status_field(pid, "CapEff:").and_then(|c| u64::from_str_radix(c.trim(), 16).ok());
    effective.is_some_and(|c| c & (1 << cap) != 0)
}

/// Whether process `pid` (a number, or `self`) has CAP_FSETID where the
/// kernel asks for it (`capable`): effective, in the initial user
/// namespace.
fn has_fsetid(pid: &str) -> bool {
    has_effective(pid, CAP_FSETID) && in_initial_user_namespace(pid)
}

/// Whether this server's own writes keep set-id bits on the host: it has
/// CAP_FSETID. A server in a user namespace of its own (a rootless
/// container's) does not, and the host clears the bits of each file it
/// writes.
fn server_keeps_set_id() -> bool {
    static KEEPS: OnceLock<bool> = OnceLock::new();
    *KEEPS.get_or_init(|| has_fsetid("self"))
}

impl Writer {
    /// Whether the writer is in stored group `gid` (its own or a
    /// supplementary one, from /proc; a process gone counts as outside, and
    /// a group the mapping does not cover names no stored group).
    pub(super) fn in_group(&self, gid: u32) -> bool {
        if self.gid == gid {
            return true;
        }
        let stored = |shown: u32| match &self.gid_map {
            Some(map) => map.mapped(shown),
            None => Some(shown),
        };
        status_field(&self.pid.to_string(), "Groups:").is_some_and(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .any(|g| stored(g) == Some(gid))
        })
    }

    /// Whether the writer's change clears set-id bits: it lacks CAP_FSETID
    /// in the initial user namespace, where the kernel asks (`capable`; a
    /// container's root in a user namespace of its own lacks it). A
    /// process /proc cannot tell about (gone, or in a pid namespace the
    /// server does not see: pid 0) counts as lacking it.
    pub(super) fn clears_set_id(&self) -> bool {
        self.lacks_fsetid
            .unwrap_or_else(|| !has_fsetid(&self.pid.to_string()))
    }

    /// Whether the writer may change the mode of a file `owner` owns, as
    /// the kernel decides it (`inode_owner_or_capable`): it is the owner,
    /// or has CAP_FOWNER in a user namespace that maps ids as the server's
    /// own does, where every owner the mount shows is mapped.
    pub(super) fn owns_or_has_fowner(&self, owner: u32) -> bool {
        let pid = self.pid.to_string();
        self.uid == owner
            || (has_effective(&pid, CAP_FOWNER)
                && uid_map(&pid).is_some_and(|m| Some(&m) == own_uid_map()))
    }

    /// The set-id bits of a file (permission bits `mode`, group `gid`)
    /// that this writer's write, fallocate or truncation clears, as the
    /// kernel decides it (`setattr_should_drop_suidgid`): none for a
    /// caller with CAP_FSETID; else S_ISUID, and S_ISGID with group
    /// execute or for a caller outside the file's group.
    pub(super) fn set_id_bits_cleared(&self, mode: u32, gid: u32) -> u32 {
        if mode & SET_ID == 0 || !self.clears_set_id() {
            return 0;
        }
        match mode & libc::S_IXGRP != 0 || !self.in_group(gid) {
            true => SET_ID,
            false => libc::S_ISUID,
        }
    }
}

/// A node's path and its resolution in a lower layer, as found under the
/// tree's read lock (see `UnionFs::node_file`).
type LowerFound = Option<(Vec<u8>, Resolved)>;

/// An fstat of an open upper file (which may have no name left).
fn fstat(file: &std::fs::File) -> Result<std::fs::Metadata> {
    file.metadata()
        .map_err(|e| FsError::io("fstat", b"<open file>", e))
}

/// An open upper file's owner record (see [`crate::override_stat`]), if
/// it has one that reads.
fn owner_record(file: &std::fs::File) -> Result<Option<crate::override_stat::OverrideStat>> {
    crate::override_stat::OverrideStat::of_file(file)
        .map_err(|e| FsError::io("fgetxattr", b"<open file>", e))
}

/// Whether a file whose resolution shows `entry` is plain: no set-id bits
/// and no capabilities, nothing a write must clear (see
/// `crate::plain_writes`).
pub(super) fn is_plain(entry: &layerdb::Entry) -> bool {
    entry.mode & SET_ID == 0
        && !entry
            .xattrs
            .iter()
            .any(|(n, _)| n == crate::xattr::CAPABILITY)
}

/// The upper file at `path` (resolved as `r`) opened for writing.
fn open_upper_file(
    layers: &Layers,
    upper: &Upper,
    (path, r): (&[u8], &Resolved),
    flags: i32,
) -> Result<OpenFile> {
    if r.is_dir() {
        return Err(FsError::posix(Errno::EISDIR, path));
    }
    layers.upper_open_file(upper.open_file(path, flags)?, flags, path)
}

impl UnionFs {
    /// Opens a file; returns the handle and whether the kernel may keep its
    /// page cache (lower files never change).
    pub fn open(&self, id: NodeId, flags: i32) -> Result<(FileHandle, bool)> {
        let acc = flags & libc::O_ACCMODE;
        let (file, keep_cache) = if acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            let _g = self.change_tree();
            (self.open_for_write(id, flags, None)?, false)
        } else {
            let _g = read_guard(&self.tree);
            self.open_for_read(id, flags)?
        };
        Ok((self.handles.add_file(file), keep_cache))
    }

    /// Copies up first; the caller holds the tree write lock. `lower`: the
    /// node's path and its resolution in a lower, as the caller found them
    /// with the tree as it is now.
    fn open_for_write(&self, id: NodeId, flags: i32, lower: LowerFound) -> Result<OpenFile> {
        match self.place(id)? {
            Place::Path(path) => {
                let upper = self.writable(&path)?;
                let with_data = flags & libc::O_TRUNC == 0;
                let (r, copy) = match lower {
                    Some((p, r)) if p == path => {
                        self.layers.copy_up_open_from(&path, r, with_data)?
                    }
                    _ => self.layers.copy_up_open(&path, with_data)?,
                };
                let Some(copy) = copy else {
                    return open_upper_file(&self.layers, upper, (&path, &r), flags);
                };
                // A copy just made whose resolution shows it plain: its
                // writes have nothing to clear.
                if is_plain(&r.node.entry) {
                    let generation = self.generation.load(Ordering::Relaxed);
                    self.plain_writes.record(id, generation);
                }
                match (copy.partial, flags == libc::O_RDWR) {
                    // A handle-less write's open: the copy is open so, and
                    // whole.
                    (false, true) => Ok(OpenFile::Host {
                        file: copy.file,
                        writable: true,
                        backs_node: true,
                    }),
                    (true, true) => self.layers.upper_open_file(copy.file, flags, &path),
                    (_, false) => open_upper_file(&self.layers, upper, (&path, &r), flags),
                }
            }
            Place::Orphan(o) => self.writable_orphan(id, &o)?.open(&self.layers, flags),
        }
    }

    /// The caller holds the tree read lock.
    fn open_for_read(&self, id: NodeId, flags: i32) -> Result<(OpenFile, bool)> {
        match self.place(id)? {
            Place::Path(path) => {
                let r = self.layers.get(&path)?;
                let in_upper = self.layers.in_upper(&r);
                let file = self
                    .layers
                    .open_read(&path, &r, in_upper || self.read_only)?;
                Ok((file, !in_upper))
            }
            Place::Orphan(o) => Ok((
                o.open(&self.layers, flags)?,
                matches!(*o, Orphan::Lower { .. }),
            )),
        }
    }

    /// Calls `f` with the host file behind handle `fh`, what FUSE
    /// passthrough can hand to the kernel, and whether a copy-up may
    /// replace it (a lower file of a writable mount, see
    /// `OpenFile::Host`). `None` for a file of a store layer.
    pub fn with_backing_file<R>(
        &self,
        fh: FileHandle,
        f: impl FnOnce(Option<(&std::fs::File, bool)>) -> R,
    ) -> R {
        match self.handles.file(fh).as_deref() {
            Some(OpenFile::Host {
                file, backs_node, ..
            }) => f(Some((file, !backs_node))),
            _ => f(None),
        }
    }

    /// The tree's generation, bumped by every change (a copy-up among
    /// them): an open that saw it unchanged around it saw no copy-up.
    pub fn tree_generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The file an I/O request names: handle `fh`'s or, without a handle (the
    /// kernel sent no OPEN, see `crate::node_files`), node `id`'s. A
    /// writable host file when `write`.
    fn file_of(&self, id: NodeId, fh: Option<FileHandle>, write: bool) -> Result<Arc<OpenFile>> {
        let Some(fh) = fh else {
            return self.node_file(id, write);
        };
        match self.handles.file(fh) {
            Some(h) if !write || h.is_writable() => Ok(h),
            _ => Err(FsError::posix(
                Errno::EBADF,
                format!("<handle {fh}>").as_bytes(),
            )),
        }
    }

    /// Node `id`'s file, opened as OPEN would open it and kept (see
    /// [`NodeFiles`]); for a write, copied up first if it is still lower.
    fn node_file(&self, id: NodeId, write: bool) -> Result<Arc<OpenFile>> {
        let now = || self.generation.load(Ordering::Relaxed);
        if let Some(f) = self.node_files.get(id, now(), write) {
            return Ok(f);
        }
        let (found, generation) = {
            let _g = read_guard(&self.tree);
            let found = match write {
                false => Ok(self.open_for_read(id, libc::O_RDONLY)?.0),
                true => self.open_upper_for_write(id, libc::O_RDWR)?,
            };
            (found, now())
        };
        let lower = match found {
            Ok(f) => return Ok(self.node_files.insert(id, generation, f)),
            Err(lower) => lower,
        };
        // A copy-up changes the tree: the write lock, and a new generation.
        let _g = self.change_tree();
        // What the read lock found holds if nothing changed the tree since.
        let lower = lower.filter(|_| now() == generation + 1);
        let f = self.open_for_write(id, libc::O_RDWR, lower)?;
        Ok(self.node_files.insert(id, now(), f))
    }

    /// Node `id`'s file opened for writing with `flags`, if it is in the
    /// upper already; else (`Err`) the node's path and lower resolution a
    /// copy-up starts from (none for an orphan). No copy-up, so the tree
    /// read lock will do (the caller holds a lock).
    fn open_upper_for_write(
        &self,
        id: NodeId,
        flags: i32,
    ) -> Result<std::result::Result<OpenFile, LowerFound>> {
        match self.place(id)? {
            Place::Path(path) => {
                let upper = self.writable(&path)?;
                let r = self.resolve_node(id, &path)?;
                if !self.layers.in_upper(&r) {
                    return Ok(Err(Some((path, r))));
                }
                open_upper_file(&self.layers, upper, (&path, &r), flags).map(Ok)
            }
            Place::Orphan(o) => match *o {
                Orphan::Upper(_) | Orphan::Gone(_) => o.open(&self.layers, flags).map(Ok),
                Orphan::Lower { .. } => Ok(Err(None)),
            },
        }
    }

    /// Reads up to `size` bytes at `offset` through handle `fh` (none: node
    /// `id`'s file); fewer only at the end of the file.
    pub fn read(
        &self,
        id: NodeId,
        fh: Option<FileHandle>,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; size as usize];
        let n = self.read_into(id, fh, offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Reads into `buf` at `offset` through handle `fh` (none: node `id`'s
    /// file) and returns the bytes read: all of `buf` but at the end of
    /// the file.
    pub fn read_into(
        &self,
        id: NodeId,
        fh: Option<FileHandle>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let h = self.file_of(id, fh, false)?;
        let mut done = 0;
        while done < buf.len() {
            let off = offset + done as u64;
            let n = match &*h {
                OpenFile::Host { file, .. } => file
                    .read_at(&mut buf[done..], off)
                    .map_err(|e| FsError::io("read", b"<open file>", e))?,
                OpenFile::Partial { file, partial, .. } => {
                    partial.read_at(file, off, &mut buf[done..])?
                }
                OpenFile::Layer { layer, path, node } => {
                    let _g = read_guard(&self.tree);
                    let l = self
                        .layers
                        .layer(*layer)
                        .ok_or_else(|| FsError::posix(Errno::EIO, path))?;
                    l.read_at(path, node, off, &mut buf[done..])?
                }
            };
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    /// Writes `data` at `offset` through handle `fh` (none: node `id`'s file) and
    /// returns the bytes written; clears set-id bits as the kernel would for
    /// `writer`.
    pub fn write(
        &self,
        id: NodeId,
        fh: Option<FileHandle>,
        offset: u64,
        data: &[u8],
        writer: &Writer,
    ) -> Result<usize> {
        let h = self.file_of(id, fh, true)?;
        // pwrite on an O_APPEND descriptor appends whatever the offset, which
        // is what an O_APPEND writer expects.
        let write = |file: &std::fs::File| {
            file.write_all_at(data, offset)
                .map_err(|e| FsError::io("write", b"<open file>", e))
        };
        let file = h
            .host_file()
            .ok_or_else(|| FsError::posix(Errno::EBADF, b"<open file>"))?;
        let change = || match &*h {
            OpenFile::Host { file, .. } => write(file),
            OpenFile::Partial {
                file,
                appends,
                partial,
                ..
            } => {
                // Where the bytes land: an append's at the end.
                let at = match appends {
                    true => file
                        .metadata()
                        .map_err(|e| FsError::io("fstat", b"<open file>", e))?
                        .len(),
                    false => offset,
                };
                partial.change(file, (at, data.len() as u64), || write(file))
            }
            OpenFile::Layer { .. } => Err(FsError::posix(Errno::EBADF, b"<open file>")),
        };
        if self
            .plain_writes
            .holds(id, self.generation.load(Ordering::Relaxed))
        {
            change()?;
            return Ok(data.len());
        }
        let plain_at = self.under_set_id_rules(id, file, writer, change)?;
        if self.drop_capabilities(file, writer)? {
            if let Some(generation) = plain_at {
                self.plain_writes.record(id, generation);
            }
        }
        Ok(data.len())
    }

    /// A write drops the file's capabilities, as on ext4. Through the page
    /// cache the kernel drops them before the WRITE comes; through a
    /// direct handle (a new file opened write-only, see
    /// `Adapter::new_file_open_flags`) it leaves that to the server. The
    /// host drops the kernel format's itself when the server writes; the
    /// rootless format keeps them in a user xattr no write touches, so the
    /// server removes it. Not for a shared mapping's written-back pages
    /// (no caller, pid 0), which keep them on ext4. True when the file
    /// has none left.
    fn drop_capabilities(&self, file: &std::fs::File, writer: &Writer) -> Result<bool> {
        let format = self.upper_format()?;
        if format.is_kernel() {
            return Ok(true);
        }
        if writer.pid == 0 {
            return Ok(false);
        }
        crate::xattr::remove_fd(file, &format.host_xattr(crate::xattr::CAPABILITY))
            .map_err(|e| FsError::io("fremovexattr", b"<open file>", e))?;
        Ok(true)
    }

    /// Makes `change` (a write or fallocate of node `id`'s open `file` by
    /// `w`) leave the set-id bits as a local filesystem would: cleared
    /// when `w` lacks CAP_FSETID (see [`Writer::clears_set_id`]): S_ISUID,
    /// and S_ISGID with group execute or when `w` is outside the file's
    /// group; kept otherwise. The mode is read before the change, because
    /// the host may clear bits itself when the server writes: a server
    /// without CAP_FSETID (one in a user namespace) loses them on every
    /// write, whoever the caller. Bits a caller keeps are put back; when
    /// bits go, the kernel is told to forget the mode it cached. Returns
    /// the generation at which it found the file without set-id bits, if
    /// it looked (see `crate::plain_writes`).
    fn under_set_id_rules(
        &self,
        id: NodeId,
        file: &std::fs::File,
        w: &Writer,
        change: impl FnOnce() -> Result<()>,
    ) -> Result<Option<u64>> {
        // Only a host file in the kernel format, written by a server
        // without CAP_FSETID, loses bits to the host: the rootless format
        // keeps the mode in an xattr no write touches.
        let host_takes = !server_keeps_set_id() && self.upper_format()?.is_kernel();
        let (before, plain_at) = match w.lacks_fsetid == Some(false) && !host_takes {
            true => (None, None),
            false => {
                // No change is half made while the mode is read.
                let _g = read_guard(&self.tree);
                let generation = self.generation.load(Ordering::Relaxed);
                let before = self.set_id_mode(file)?;
                (before, before.is_none().then_some(generation))
            }
        };
        change()?;
        let Some((mode, gid)) = before else {
            return Ok(plain_at);
        };
        let clear = w.set_id_bits_cleared(mode, gid);
        // Only the set-id bits are decided here: the rest stays as it is
        // now, a chmod that raced the change included. Bits are put back
        // only where the host took them; elsewhere one that is gone now
        // was taken by someone else.
        let Some((now, _)) = self.file_mode(file)? else {
            return Ok(None);
        };
        let target = match host_takes {
            true => (now & !SET_ID) | (mode & SET_ID & !clear),
            false => now & !clear,
        };
        if target != now {
            self.set_mode(file, target)?;
        }
        if target != mode {
            self.set_id_cleared(id);
        }
        Ok(None)
    }

    fn upper_format(&self) -> Result<crate::upper_format::UpperFormat> {
        Ok(self.layers.upper(b"<open file>")?.format())
    }

    /// [`UnionFs::file_mode`] of a file with set-id bits.
    fn set_id_mode(&self, file: &std::fs::File) -> Result<Option<(u32, u32)>> {
        let m = self.file_mode(file)?;
        Ok(m.filter(|(mode, _)| mode & SET_ID != 0))
    }

    /// The permission bits and group of an open upper file, as a
    /// resolution shows them (`None`: a file the format shows no owner
    /// for).
    fn file_mode(&self, file: &std::fs::File) -> Result<Option<(u32, u32)>> {
        let mode = self.file_owner_mode(file, true, || fstat(file))?;
        Ok(mode.map(|(mode, _, gid)| (mode, gid)))
    }

    /// The permission bits, owner and group of an open upper file, as a
    /// resolution shows them: its owner record's where it has one, else
    /// the host's in the kernel format (`md` gives its fstat; `None` in
    /// the rootless one). The kernel format shows a record too, one
    /// another server wrote (an upper may mix both formats), so it is
    /// looked for there unless `may_have_record` says the file has none.
    fn file_owner_mode(
        &self,
        file: &std::fs::File,
        may_have_record: bool,
        md: impl FnOnce() -> Result<std::fs::Metadata>,
    ) -> Result<Option<(u32, u32, u32)>> {
        let kernel = self.upper_format()?.is_kernel();
        if !kernel || may_have_record {
            if let Some(o) = owner_record(file)? {
                return Ok(Some((o.mode & 0o7777, o.uid, o.gid)));
            }
        }
        if !kernel {
            return Ok(None);
        }
        use std::os::unix::fs::MetadataExt;
        let md = md()?;
        Ok(Some((md.mode() & 0o7777, md.uid(), md.gid())))
    }

    /// A SETATTR of times alone on a file CREATE made, the tree unchanged
    /// since (tar's futimens of every file it writes): set through the
    /// node's open file and answered from its fstat. Through the path it
    /// cost a resolution (a stat, an xattr listing and a getxattr in the
    /// rootless format), the utimensat and a stat after, each a call by
    /// the whole host path. None where that does not hold. The caller
    /// holds the tree read lock: times change nothing a resolution keeps.
    pub(super) fn set_new_file_times(
        &self,
        id: NodeId,
        (atime, mtime): (TimeSet, TimeSet),
    ) -> Result<Option<Attr>> {
        let now = self.generation.load(Ordering::Relaxed);
        let Some((h, made)) = self.node_files.made(id, now) else {
            return Ok(None);
        };
        let Some(file) = h.host_file() else {
            return Ok(None);
        };
        let path = self.path_of(id)?;
        let upper = self.writable(&path)?;
        upper.set_file_times((&path, file), atime, mtime)?;
        Ok(self.made_node(file, &made)?.map(|node| Attr {
            id,
            node,
            generation: 0,
        }))
    }

    /// The file CREATE made for node `id` and the node it shows now, if
    /// the tree is still at `generation`: while it is, that file is the
    /// node entire (no link in another layer, no part in a lower).
    pub(super) fn made_file(
        &self,
        id: NodeId,
        generation: u64,
    ) -> Result<Option<(Arc<OpenFile>, Node)>> {
        let Some((h, made)) = self.node_files.made(id, generation) else {
            return Ok(None);
        };
        let now = match h.host_file() {
            Some(file) => self.made_node(file, &made)?,
            None => None,
        };
        Ok(now.map(|node| (h, node)))
    }

    /// `made`, what CREATE answered for `file`, as the file shows it now:
    /// its times and size from one fstat, its owner and mode where the
    /// format keeps them (a write may clear set-id bits without a tree
    /// change). None for a file without an owner record.
    pub(super) fn made_node(&self, file: &std::fs::File, made: &Node) -> Result<Option<Node>> {
        let md = fstat(file)?;
        let owner = self.file_owner_mode(file, made.overridden, || Ok(md.clone()))?;
        let Some((mode, uid, gid)) = owner else {
            return Ok(None);
        };
        let mut node = crate::dir_lower::refreshed(made, &md);
        (node.entry.mode, node.entry.uid, node.entry.gid) = (mode, uid, gid);
        Ok(Some(node))
    }

    /// Sets an open upper file's permission bits where a resolution takes
    /// them from (see [`UnionFs::file_owner_mode`]).
    fn set_mode(&self, file: &std::fs::File, mode: u32) -> Result<()> {
        let what = b"<open file>";
        if let Some(mut o) = owner_record(file)? {
            o.mode = (o.mode & !0o7777) | mode;
            return crate::xattr::set_fd(file, crate::override_stat::OVERRIDE_STAT, &o.format())
                .map_err(|e| FsError::io("fsetxattr override_stat", what, e));
        }
        if self.upper_format()?.is_kernel() {
            use std::os::unix::fs::PermissionsExt;
            return file
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| FsError::io("fchmod", what, e));
        }
        Ok(())
    }

    /// Flushes a host-backed file to disk: its data only with `datasync`, else
    /// its metadata too. Store-backed files have nothing to flush.
    pub fn fsync(&self, id: NodeId, fh: Option<FileHandle>, datasync: bool) -> Result<()> {
        let h = self.file_of(id, fh, false)?;
        if let OpenFile::Host { file, .. } | OpenFile::Partial { file, .. } = &*h {
            // A partial file's record says where its data is: fdatasync
            // must make it durable too, which only fsync does.
            let r = if datasync && matches!(*h, OpenFile::Host { .. }) {
                file.sync_data()
            } else {
                file.sync_all()
            };
            r.map_err(|e| FsError::io("fsync", b"<open file>", e))?;
        }
        Ok(())
    }

    /// Closes handle `fh`; the kernel sends this once per OPEN or CREATE.
    pub fn release(&self, fh: FileHandle) {
        self.handles.close_file(fh);
    }

    /// fallocate(2) on an open upper file: `mode` takes its flags (keep size,
    /// punch hole...), offset and length are bytes; clears S_ISGID as a write
    /// does.
    pub fn fallocate(
        &self,
        (id, fh): (NodeId, Option<FileHandle>),
        offset: u64,
        length: u64,
        mode: i32,
        writer: &Writer,
    ) -> Result<()> {
        let h = self.file_of(id, fh, true)?;
        let flags = nix::fcntl::FallocateFlags::from_bits_truncate(mode);
        let allocate = |file: &std::fs::File| {
            nix::fcntl::fallocate(file, flags, offset as libc::off_t, length as libc::off_t)
                .map_err(|e| FsError::io("fallocate", b"<open file>", e.into()))
        };
        let file = h
            .host_file()
            .ok_or_else(|| FsError::posix(Errno::EBADF, b"<open file>"))?;
        self.under_set_id_rules(id, file, writer, || match &*h {
            OpenFile::Host { file, .. } => allocate(file),
            OpenFile::Partial { file, partial, .. } => {
                use nix::fcntl::FallocateFlags as F;
                let zeroes = F::FALLOC_FL_PUNCH_HOLE | F::FALLOC_FL_ZERO_RANGE;
                if flags.intersects(zeroes) {
                    // Zeros in the range: the upper's from now on.
                    partial.change(file, (offset, length), || allocate(file))
                } else if flags.difference(F::FALLOC_FL_KEEP_SIZE).is_empty() {
                    // Space only: no byte changes.
                    allocate(file)
                } else {
                    // Collapse or insert moves bytes: all must be here.
                    partial.fill(file)?;
                    allocate(file)
                }
            }
            OpenFile::Layer { .. } => Err(FsError::posix(Errno::EBADF, b"<open file>")),
        })
        .map(|_| ())
    }

    /// lseek(2) on an open file, for SEEK_DATA and SEEK_HOLE above all: a store
    /// file is data up to its size, with ENXIO from there.
    pub fn lseek(
        &self,
        id: NodeId,
        fh: Option<FileHandle>,
        offset: i64,
        whence: i32,
    ) -> Result<i64> {
        let h = self.file_of(id, fh, false)?;
        match &*h {
            OpenFile::Host { file, .. } => {
                let w = match whence {
                    libc::SEEK_DATA => nix::unistd::Whence::SeekData,
                    libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
                    libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
                    libc::SEEK_END => nix::unistd::Whence::SeekEnd,
                    _ => nix::unistd::Whence::SeekSet,
                };
                // The handle's offset is not shared with the caller (the
                // kernel keeps file positions); only the answer matters.
                nix::unistd::lseek(file, offset, w)
                    .map_err(|e| FsError::io("lseek", b"<open file>", e.into()))
            }
            OpenFile::Partial { file, .. } => {
                // Its holes are the layer's data: data everywhere, as below.
                let size = file
                    .metadata()
                    .map_err(|e| FsError::io("fstat", b"<open file>", e))?;
                data_to_the_end(size.len() as i64, offset, whence, b"<open file>")
            }
            OpenFile::Layer { node, path, .. } => {
                // Store files have no holes: data everywhere up to the size.
                data_to_the_end(node.entry.size as i64, offset, whence, path)
            }
        }
    }

    /// Copies up to `len` bytes (at most 1 MiB a call) from one open file to
    /// another, each given as (node, handle, offset); returns the bytes copied.
    pub fn copy_file_range(
        &self,
        (id_in, fh_in, off_in): (NodeId, Option<FileHandle>, u64),
        (id_out, fh_out, off_out): (NodeId, Option<FileHandle>, u64),
        len: u64,
        writer: &Writer,
    ) -> Result<usize> {
        self.file_of(id_out, fh_out, true)?;
        // nix offers copy_file_range only behind its `zerocopy` feature,
        // which the workspace does not enable: copy through a buffer (at
        // most 1 MiB per call; the kernel loops for more).
        let data = self.read(id_in, fh_in, off_in, len.min(1 << 20) as u32)?;
        self.write(id_out, fh_out, off_out, &data, writer)
    }
}

/// SEEK_DATA and SEEK_HOLE in a file of `size` bytes with data everywhere,
/// ENXIO from its end; other seeks are the kernel's.
fn data_to_the_end(size: i64, offset: i64, whence: i32, path: &[u8]) -> Result<i64> {
    match whence {
        libc::SEEK_DATA if offset < size => Ok(offset),
        libc::SEEK_HOLE if offset < size => Ok(size),
        libc::SEEK_DATA | libc::SEEK_HOLE => Err(FsError::posix(Errno::ENXIO, path)),
        _ => Err(FsError::posix(Errno::EINVAL, path)),
    }
}
