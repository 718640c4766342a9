//! Writes to the upper directory, in the format the server's privileges
//! allow (see [`crate::upper_format`]).
//!
//! In the rootless format host files are always plain files (mode 0600)
//! or directories (0700) owned by the server's user: type, owner,
//! permission bits and device numbers live in
//! `user.containers.override_stat`, symlink targets in the file content.
//! So no host chown, mknod or symlink is ever made, and an unprivileged
//! server keeps root's files. In the kernel format they are real.
//!
//! Host paths are only ever made of directories the union resolved, under
//! the tree lock, so a symlink in the upper never redirects one.

use crate::dir_lower::{host_path, HostPath};
use crate::error::{FsError, Result};
use crate::override_stat::{is_private_xattr, OverrideStat, OVERRIDE_STAT};
use crate::resolution_cache::ResolutionCache;
use crate::shared_whiteout::{Linked, SharedWhiteout};
use crate::upper_format::UpperFormat;
use crate::whiteout::{whiteout_fits, whiteout_name, TMP_PREFIX};
use crate::xattr::{self, Host};
use layerdb::{join_path, Entry, Kind};
use nix::errno::Errno;
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Host permission of upper files and directories as made, before the
/// kernel format gives them their own: the server's user needs access,
/// nobody else does (in the rootless format the container's view comes
/// from xattrs).
const HOST_FILE_MODE: u32 = 0o600;
const HOST_DIR_MODE: u32 = 0o700;

/// The writable upper directory. Every method that changes it tells the
/// [`ResolutionCache`] which paths may have changed shape.
#[derive(Debug)]
pub struct Upper {
    root: PathBuf,
    tmp_counter: AtomicU64,
    dirs: Arc<ResolutionCache>,
    format: UpperFormat,
    /// What new whiteout devices link to (see `shared_whiteout`); the
    /// upper's view as a layer knows them too.
    device_whiteouts: Arc<SharedWhiteout>,
}

/// A time to set: a value, the current time, or leave as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    /// The current time.
    Now,
    /// Leave the time as it is.
    Omit,
    /// This time, in ns since the Unix epoch.
    At(i64),
}

impl TimeSet {
    pub(crate) fn timespec(self) -> TimeSpec {
        match self {
            TimeSet::Now => TimeSpec::UTIME_NOW,
            TimeSet::Omit => TimeSpec::UTIME_OMIT,
            TimeSet::At(ns) => {
                TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
            }
        }
    }
}

/// Options opening a host file for a container's `open(2)` flags (creation
/// flags dropped: creation goes through [`Upper::create_file`]), plus
/// `extra` flags.
pub(crate) fn host_open_options(flags: i32, extra: i32) -> OpenOptions {
    // O_ACCMODE 3 (Linux: "no read, no write", for ioctls) passed the
    // kernel's checks for both; the host needs a real access mode.
    let acc = match flags & libc::O_ACCMODE {
        3 => libc::O_RDWR,
        a => a,
    };
    let keep =
        flags & (libc::O_APPEND | libc::O_TRUNC | libc::O_SYNC | libc::O_DSYNC | libc::O_NOATIME);
    let mut o = OpenOptions::new();
    o.read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(keep | extra | libc::O_CLOEXEC);
    o
}

/// The directory a layer's root names, with symlinks resolved: a root
/// given as a link (containers-storage's `overlay/l/<short id>` ->
/// `../<id>/diff`) shows the directory's owner and mode, never the link's,
/// and relative roots stay valid whatever the server's working directory.
/// A root that cannot be resolved (missing) stays as given, for the first
/// access to report.
pub(crate) fn resolved_root(root: &Path) -> PathBuf {
    std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
}

/// True for a container's 0/0 character device, which the kernel format
/// cannot hold as a device (it is the whiteout).
fn is_whiteout_like(kind: Kind, rdev: (u32, u32)) -> bool {
    kind == Kind::CharDev && rdev == (0, 0)
}

/// True for a 0/0 character device: kernel overlayfs's whiteout.
pub(crate) fn is_whiteout_device(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    md.file_type().is_char_device() && md.rdev() == 0
}

/// The override_stat describing `entry`.
pub fn override_of(entry: &Entry) -> OverrideStat {
    OverrideStat {
        uid: entry.uid,
        gid: entry.gid,
        mode: entry.mode,
        kind: Some(entry.kind),
        rdev: entry.rdev,
    }
}

impl Upper {
    /// Uses `root` as the upper, creating it if needed, written in
    /// `format`.
    pub fn open_as(root: &Path, dirs: Arc<ResolutionCache>, format: UpperFormat) -> Result<Upper> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(HOST_DIR_MODE)
            .create(root)
            .map_err(|e| FsError::Io {
                op: "create upper directory",
                path: root.display().to_string(),
                source: e,
            })?;
        Ok(Upper {
            root: resolved_root(root),
            tmp_counter: AtomicU64::new(0),
            dirs,
            format,
            device_whiteouts: Arc::default(),
        })
    }

    /// What its whiteout devices link to, for its view as a layer.
    pub(crate) fn device_whiteouts(&self) -> Arc<SharedWhiteout> {
        self.device_whiteouts.clone()
    }

    pub fn format(&self) -> UpperFormat {
        self.format
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn host(&self, path: &[u8]) -> HostPath {
        host_path(&self.root, path)
    }

    /// A fresh temporary path in directory `dir` (for build-then-rename).
    pub fn tmp_path(&self, dir: &[u8]) -> (Vec<u8>, HostPath) {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let name = [TMP_PREFIX, format!("{}.{n}", std::process::id()).as_bytes()].concat();
        let p = join_path(dir, &name);
        let h = self.host(&p);
        (p, h)
    }

    /// Creates a directory with the container metadata of `entry`.
    pub fn mkdir(&self, path: &[u8], entry: &Entry, ino: Option<u64>, opaque: bool) -> Result<()> {
        self.dirs.invalidate(path);
        let host = self.host(path);
        std::fs::DirBuilder::new()
            .mode(HOST_DIR_MODE)
            .create(&host)
            .map_err(|e| FsError::io("mkdir", path, e))?;
        self.write_meta(path, entry, ino)?;
        if opaque {
            self.set_opaque(path)?;
        }
        Ok(())
    }

    /// Creates an empty host file at `path` (failing if it exists) and
    /// opens it for writing.
    pub fn create_file(&self, path: &[u8]) -> Result<File> {
        self.dirs.invalidate(path);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(HOST_FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.host(path))
            .map_err(|e| FsError::io("create", path, e))
    }

    /// Creates a symlink at `path` (failing if it exists); its owner comes
    /// with [`Upper::write_meta`].
    pub fn create_symlink(&self, path: &[u8], target: &[u8]) -> Result<()> {
        if self.format.is_kernel() {
            self.dirs.invalidate(path);
            return std::os::unix::fs::symlink(
                std::ffi::OsStr::from_bytes(target),
                self.host(path),
            )
            .map_err(|e| FsError::io("symlink", path, e));
        }
        let mut f = self.create_file(path)?;
        f.write_all(target)
            .map_err(|e| FsError::io("write symlink", path, e))
    }

    /// Creates a device, fifo or socket node like `entry` at `path`
    /// (failing if it exists); its owner and mode come with
    /// [`Upper::write_meta`].
    pub fn create_special(&self, path: &[u8], entry: &Entry) -> Result<()> {
        if !self.format.is_kernel() {
            return self.create_file(path).map(drop);
        }
        use nix::sys::stat::{mknod, Mode, SFlag};
        self.dirs.invalidate(path);
        if is_whiteout_like(entry.kind, entry.rdev) {
            // A 0/0 device in this format would read as a whiteout (kernel
            // overlayfs refuses to make one, ext4 makes it): a plain file
            // with its type in override_stat instead.
            return self.create_file(path).map(drop);
        }
        let kind = match entry.kind {
            Kind::CharDev => SFlag::S_IFCHR,
            Kind::BlockDev => SFlag::S_IFBLK,
            Kind::Fifo => SFlag::S_IFIFO,
            Kind::Socket => SFlag::S_IFSOCK,
            _ => return self.create_file(path).map(drop),
        };
        let dev = libc::makedev(entry.rdev.0, entry.rdev.1);
        mknod(
            &*self.host(path),
            kind,
            Mode::from_bits_truncate(0o600),
            dev,
        )
        .map_err(|e| FsError::io("mknod", path, e.into()))
    }

    /// Gives the new upper node at `path` the owner, mode and xattrs of
    /// `entry`, and records its stable inode number (for copied-up files).
    pub fn write_meta(&self, path: &[u8], entry: &Entry, ino: Option<u64>) -> Result<()> {
        self.write_meta_of(path, entry, ino, None)
    }

    /// [`Upper::write_meta`] of a regular file [`Upper::create_file`]
    /// made (a CREATE's, or a copy-up's under its temporary name), through
    /// `file`: a root server makes root's files with the owner they are to
    /// have, often the mode too (tar creates them 0600), and a chown or
    /// chmod to what a file has is an inode write for nothing.
    pub fn write_new_file_meta(
        &self,
        file: &File,
        path: &[u8],
        entry: &Entry,
        ino: Option<u64>,
    ) -> Result<()> {
        self.write_meta_of(path, entry, ino, Some(file))
    }

    fn write_meta_of(
        &self,
        path: &[u8],
        entry: &Entry,
        ino: Option<u64>,
        new: Option<&File>,
    ) -> Result<()> {
        self.dirs.invalidate(path);
        let host = self.host(path);
        // A new file's calls go through its descriptor: no path walk.
        let xa = new.map_or(Host::Path(&host), Host::Open);
        self.owner_mode(xa, path, entry.kind, &override_of(entry), true, true)?;
        if let Some(ino) = ino {
            match xa.set(self.format.ino_xattr(), ino.to_string().as_bytes()) {
                // A symlink of a user namespace's upper takes no user.*
                // xattr: its number changes with the copy-up.
                Err(_) if entry.kind == Kind::Symlink => {}
                r => r.map_err(|e| FsError::io("setxattr stable inode number", path, e))?,
            }
        }
        if self.format.is_kernel() && matches!(entry.kind, Kind::Regular | Kind::Dir) {
            // The host may have given the node its directory's default
            // ACL; only the ACLs `entry` has may stay.
            let present = xa.list().map_err(|e| FsError::io("listxattr", path, e))?;
            for acl in [crate::acl::ACCESS, crate::acl::DEFAULT] {
                if present.iter().any(|n| n == acl) && !entry.xattrs.iter().any(|(n, _)| n == acl) {
                    xa.remove(acl)
                        .map_err(|e| FsError::io("removexattr", path, e))?;
                }
            }
        }
        // Nodes never carry the union's own names (`Node::from_entry`); an
        // entry from anywhere else must not write them either.
        let container = entry.xattrs.iter().filter(|(n, _)| !is_private_xattr(n));
        for (name, value) in container {
            xa.set(&self.format.host_xattr(name), value)
                .map_err(|e| FsError::io("setxattr", path, e))?;
        }
        Ok(())
    }

    /// Whether the upper's root needs the image root's owner, mode and
    /// xattrs: in the rootless format until it has them recorded; in the
    /// kernel format while it is empty and not marked as given them (an
    /// upper with content is shown as it is, as kernel overlayfs shows it).
    pub fn root_needs_meta(&self) -> Result<bool> {
        let root = self.host(b"");
        let marked = |name: &[u8]| {
            xattr::get(&root, name)
                .map(|v| v.is_some())
                .map_err(|e| FsError::io("getxattr", b"", e))
        };
        if !self.format.is_kernel() {
            return Ok(!marked(OVERRIDE_STAT)?);
        }
        if marked(self.format.root_marker())? {
            return Ok(false);
        }
        let mut entries = std::fs::read_dir(&root).map_err(|e| FsError::io("readdir", b"", e))?;
        Ok(entries.next().is_none())
    }

    /// Records that the root has the image root's metadata (see
    /// [`Upper::root_needs_meta`]).
    pub fn mark_root(&self) -> Result<()> {
        if !self.format.is_kernel() {
            return Ok(());
        }
        xattr::set(&self.host(b""), self.format.root_marker(), b"y", 0)
            .map_err(|e| FsError::io("setxattr", b"", e))
    }

    /// Sets the owner and mode of the node at `path` (of type `kind`);
    /// `overridden` as its resolution says (`Node::overridden`). Through
    /// `open` where the caller holds the file open (see [`Host`]).
    pub fn set_owner_mode(
        &self,
        (path, open): (&[u8], Option<&File>),
        kind: Kind,
        ovr: &OverrideStat,
        chown: bool,
        overridden: bool,
    ) -> Result<()> {
        self.dirs.invalidate(path);
        let host = self.host(path);
        let xa = open.map_or(Host::Path(&host), Host::Open);
        // An entry recorded in the rootless format before: its override
        // would still win over the host's owner and mode, and the host
        // file's owner is not the one it records.
        let recorded = self.format.is_kernel()
            && overridden
            && matches!(kind, Kind::Regular | Kind::Dir)
            && !is_whiteout_like(kind, ovr.rdev);
        self.owner_mode(xa, path, kind, ovr, chown || recorded, false)?;
        if recorded {
            xa.remove(OVERRIDE_STAT)
                .map_err(|e| FsError::io("removexattr override_stat", path, e))?;
        }
        Ok(())
    }

    /// [`Upper::set_owner_mode`] of an open file that may have no name left
    /// (an orphan): nothing remembered to forget, and chowned only with
    /// `chown`.
    pub fn set_file_owner_mode(
        &self,
        file: &File,
        kind: Kind,
        ovr: &OverrideStat,
        chown: bool,
    ) -> Result<()> {
        self.owner_mode(Host::Open(file), b"<open file>", kind, ovr, chown, false)
    }

    /// The owner (with `chown`) and mode of host file `xa` as `ovr` has
    /// them. Without `chown` the host file is not chowned, even to the
    /// owner it has: any chown drops `security.capability`, and a chmod or
    /// an ACL must keep it, as on ext4 (`cp -a` of a file with capabilities
    /// set them, then its ACL, and lost them). A node this process has
    /// just made (`new`) has a fresh ctime and no capabilities yet: open
    /// as `xa`, it is not chowned or chmodded to the owner or mode it has
    /// already. Any other is chmodded even to its own mode, which marks
    /// its ctime as a chown's must.
    fn owner_mode(
        &self,
        xa: Host,
        path: &[u8],
        kind: Kind,
        ovr: &OverrideStat,
        chown: bool,
        new: bool,
    ) -> Result<()> {
        if !self.format.is_kernel() || is_whiteout_like(kind, ovr.rdev) {
            xa.set(OVERRIDE_STAT, &ovr.format())
                .map_err(|e| FsError::io("setxattr override_stat", path, e))?;
            if !new {
                // The host skips writing the value an xattr already has,
                // ctime included; a chown or chmod marks ctime even when it
                // changes nothing, as the host's chown(-1, -1) does.
                match xa {
                    Host::Path(p) => std::os::unix::fs::lchown(p, None, None),
                    Host::Open(f) => std::os::unix::fs::fchown(f, None, None),
                }
                .map_err(|e| FsError::io("chown", path, e))?;
            }
            return Ok(());
        }
        let mode = ovr.mode & 0o7777;
        let has = match (xa, new) {
            (Host::Open(f), true) => Some(f.metadata().map_err(|e| FsError::io("fstat", path, e))?),
            _ => None,
        };
        let (chown, chmod) = match has {
            Some(md) if (md.uid(), md.gid()) == (ovr.uid, ovr.gid) => {
                (false, md.mode() & 0o7777 != mode)
            }
            // A chown clears the set-id bits the chmod then sets.
            _ => (chown, true),
        };
        // chown first: it clears the set-id bits the mode may set again.
        if chown {
            let owner = (Some(ovr.uid), Some(ovr.gid));
            match xa {
                Host::Path(p) => std::os::unix::fs::lchown(p, owner.0, owner.1),
                Host::Open(f) => std::os::unix::fs::fchown(f, owner.0, owner.1),
            }
            .map_err(|e| FsError::io("chown", path, e))?;
        }
        if chmod && kind != Kind::Symlink {
            let perms = std::fs::Permissions::from_mode(mode);
            match xa {
                Host::Path(p) => std::fs::set_permissions(p, perms),
                Host::Open(f) => f.set_permissions(perms),
            }
            .map_err(|e| FsError::io("chmod", path, e))?;
        }
        Ok(())
    }

    pub fn set_opaque(&self, path: &[u8]) -> Result<()> {
        self.dirs.invalidate(path);
        xattr::set(&self.host(path), self.format.opaque_xattr(), b"y", 0)
            .map_err(|e| FsError::io("setxattr opaque", path, e))
    }

    /// Records that the lower content of directory `path` is at `target`
    /// (see [`crate::whiteout`]).
    pub fn set_redirect(&self, path: &[u8], target: &[u8]) -> Result<()> {
        self.dirs.invalidate(path);
        xattr::set(&self.host(path), self.format.redirect_xattr(), target, 0)
            .map_err(|e| FsError::io("setxattr redirect", path, e))
    }

    /// Sets the times of the file at `path` through `file`, open on it.
    pub fn set_file_times(
        &self,
        (path, file): (&[u8], &File),
        atime: TimeSet,
        mtime: TimeSet,
    ) -> Result<()> {
        nix::sys::stat::futimens(file, &atime.timespec(), &mtime.timespec())
            .map_err(|e| FsError::io("futimens", path, e.into()))
    }

    pub fn set_times(&self, path: &[u8], atime: TimeSet, mtime: TimeSet) -> Result<()> {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &*self.host(path),
            &atime.timespec(),
            &mtime.timespec(),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| FsError::io("utimensat", path, e.into()))
    }

    /// Records that `name` in `dir` is deleted (hides every lower layer).
    /// In the kernel format the whiteout takes the name itself: the upper
    /// must have nothing there any more.
    ///
    /// A name within 4 bytes of NAME_MAX has no `.wh.` form: deleting such a
    /// *lower* file in the rootless format is refused with ENAMETOOLONG
    /// (files born in the upper need no whiteout and are unaffected).
    pub fn whiteout(&self, dir: &[u8], name: &[u8]) -> Result<()> {
        let path = join_path(dir, name);
        self.dirs.invalidate(&path);
        if self.format.is_kernel() {
            use nix::sys::stat::{mknod, Mode, SFlag};
            let host = self.host(&path);
            let made = match self.device_whiteouts.link(&host) {
                Linked::Yes | Linked::Exists => return Ok(()),
                Linked::No => mknod(&*host, SFlag::S_IFCHR, Mode::empty(), 0),
            };
            match made {
                Ok(()) => {
                    self.device_whiteouts.remember(&host);
                    return Ok(());
                }
                Err(Errno::EEXIST) => return Ok(()),
                // No devices here (a nodev filesystem, a user namespace
                // without whiteout devices): the `.wh.` form, as
                // fuse-overlayfs falls back to.
                Err(Errno::EPERM) => {}
                Err(e) => return Err(FsError::io("mknod whiteout", &path, e.into())),
            }
        }
        if !whiteout_fits(name) {
            return Err(FsError::posix(Errno::ENAMETOOLONG, &path));
        }
        let p = join_path(dir, &whiteout_name(name));
        match self.create_file(&p) {
            Ok(_) => Ok(()),
            Err(FsError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// True when the host node at `path` is a kernel-format whiteout.
    fn is_whiteout_device(&self, path: &[u8]) -> bool {
        self.host(path)
            .symlink_metadata()
            .is_ok_and(|md| is_whiteout_device(&md))
    }

    /// Removes the whiteout of `name` in `dir`, in either form; true when
    /// there was one.
    pub fn remove_whiteout(&self, dir: &[u8], name: &[u8]) -> Result<bool> {
        let path = join_path(dir, name);
        self.dirs.invalidate(&path);
        let mut removed = false;
        if self.is_whiteout_device(&path) {
            std::fs::remove_file(self.host(&path))
                .map_err(|e| FsError::io("unlink whiteout", &path, e))?;
            removed = true;
        }
        if !whiteout_fits(name) {
            return Ok(removed);
        }
        let p = join_path(dir, &whiteout_name(name));
        match std::fs::remove_file(self.host(&p)) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                Ok(removed)
            }
            Err(e) => Err(FsError::io("unlink whiteout", &p, e)),
        }
    }

    /// Empties a directory that holds only whiteouts and markers (a
    /// directory empty to the container) so the host can remove or replace
    /// it.
    pub fn clear_markers(&self, dir: &[u8]) -> Result<()> {
        self.dirs.invalidate(dir);
        let host = self.host(dir);
        let rd = match std::fs::read_dir(&host) {
            Ok(rd) => rd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(FsError::io("readdir", dir, e)),
        };
        let shared = self.device_whiteouts.names_in(&host);
        for de in rd {
            let de = de.map_err(|e| FsError::io("readdir", dir, e))?;
            let name = std::os::unix::ffi::OsStrExt::as_bytes(de.file_name().as_os_str()).to_vec();
            let device = || {
                shared.is_shared_whiteout(&de)
                    || de
                        .path()
                        .symlink_metadata()
                        .is_ok_and(|md| is_whiteout_device(&md))
            };
            if crate::whiteout::is_reserved(&name) || device() {
                std::fs::remove_file(de.path())
                    .map_err(|e| FsError::io("unlink", &join_path(dir, &name), e))?;
            }
        }
        Ok(())
    }

    pub fn remove_file(&self, path: &[u8]) -> Result<()> {
        self.dirs.invalidate(path);
        std::fs::remove_file(self.host(path)).map_err(|e| FsError::io("unlink", path, e))
    }

    pub fn remove_dir(&self, path: &[u8]) -> Result<()> {
        self.dirs.invalidate(path);
        self.clear_markers(path)?;
        std::fs::remove_dir(self.host(path)).map_err(|e| FsError::io("rmdir", path, e))
    }

    pub fn rename(&self, from: &[u8], to: &[u8], flags: nix::fcntl::RenameFlags) -> Result<()> {
        self.dirs.invalidate(from);
        self.dirs.invalidate(to);
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &*self.host(from),
            nix::fcntl::AT_FDCWD,
            &*self.host(to),
            flags,
        )
        .map_err(|e| FsError::io("rename", from, e.into()))
    }

    pub fn link(&self, existing: &[u8], new: &[u8]) -> Result<()> {
        self.dirs.invalidate(new);
        std::fs::hard_link(self.host(existing), self.host(new))
            .map_err(|e| FsError::io("link", new, e))
    }

    /// Opens an upper file with `open(2)` flags (see [`host_open_options`]).
    pub fn open_file(&self, path: &[u8], flags: i32) -> Result<File> {
        host_open_options(flags, libc::O_NOFOLLOW)
            .open(self.host(path))
            .map_err(|e| FsError::io("open", path, e))
    }

    /// The container kind of a new node for a `mknod` file type.
    pub fn kind_of_mode(mode: u32) -> Option<Kind> {
        match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Some(Kind::Regular),
            libc::S_IFCHR => Some(Kind::CharDev),
            libc::S_IFBLK => Some(Kind::BlockDev),
            libc::S_IFIFO => Some(Kind::Fifo),
            libc::S_IFSOCK => Some(Kind::Socket),
            _ => None,
        }
    }
}
