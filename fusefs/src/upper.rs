//! Writes to the upper directory, in strata's format (see
//! [`crate::override_stat`] and [`crate::whiteout`]).
//!
//! Host files are always plain files (mode 0600) or directories (0700)
//! owned by the server's user: type, owner, permission bits and device
//! numbers live in `user.containers.override_stat`, symlink targets in the
//! file content. So no host chown, mknod or symlink is ever made, an
//! unprivileged server keeps root's files, and no host symlink inside the
//! upper can redirect a path operation outside it.

use crate::dir_lower::{host_path, HostPath};
use crate::error::{FsError, Result};
use crate::override_stat::{host_xattr_name, OverrideStat, OVERRIDE_STAT, STRATA_INO};
use crate::resolution_cache::ResolutionCache;
use crate::whiteout::{whiteout_fits, whiteout_name, OPAQUE_XATTR, TMP_PREFIX};
use crate::xattr;
use layerdb::{join_path, Entry, Kind};
use nix::errno::Errno;
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Host permission of upper files and directories: the server's user needs
/// access, nobody else does (the container's view comes from xattrs).
const HOST_FILE_MODE: u32 = 0o600;
const HOST_DIR_MODE: u32 = 0o700;

/// The writable upper directory. Every method that changes it tells the
/// [`ResolutionCache`] which paths may have changed shape.
#[derive(Debug)]
pub struct Upper {
    root: PathBuf,
    tmp_counter: AtomicU64,
    dirs: Arc<ResolutionCache>,
}

/// A time to set: a value, the current time, or leave as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    Omit,
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
    /// Uses `root` as the upper, creating it if needed.
    pub fn open(root: &Path, dirs: Arc<ResolutionCache>) -> Result<Upper> {
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
            root: root.to_path_buf(),
            tmp_counter: AtomicU64::new(0),
            dirs,
        })
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

    /// Writes override_stat, the stable inode number (for copied-up files)
    /// and the container xattrs of `entry` onto the upper file at `path`.
    pub fn write_meta(&self, path: &[u8], entry: &Entry, ino: Option<u64>) -> Result<()> {
        self.dirs.invalidate(path);
        let host = self.host(path);
        self.set_override(path, &override_of(entry))?;
        if let Some(ino) = ino {
            xattr::set(&host, STRATA_INO, ino.to_string().as_bytes(), 0)
                .map_err(|e| FsError::io("setxattr user.strata.ino", path, e))?;
        }
        for (name, value) in &entry.xattrs {
            xattr::set(&host, &host_xattr_name(name), value, 0)
                .map_err(|e| FsError::io("setxattr", path, e))?;
        }
        Ok(())
    }

    /// Whether the entry at `path` has its container metadata (owner,
    /// mode, kind) recorded.
    pub fn has_meta(&self, path: &[u8]) -> Result<bool> {
        xattr::get(&self.host(path), OVERRIDE_STAT)
            .map(|v| v.is_some())
            .map_err(|e| FsError::io("getxattr override_stat", path, e))
    }

    pub fn set_override(&self, path: &[u8], ovr: &OverrideStat) -> Result<()> {
        self.dirs.invalidate(path);
        xattr::set(&self.host(path), OVERRIDE_STAT, &ovr.format(), 0)
            .map_err(|e| FsError::io("setxattr override_stat", path, e))
    }

    pub fn set_opaque(&self, path: &[u8]) -> Result<()> {
        self.dirs.invalidate(path);
        xattr::set(&self.host(path), OPAQUE_XATTR, b"y", 0)
            .map_err(|e| FsError::io("setxattr opaque", path, e))
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
    ///
    /// A name within 4 bytes of NAME_MAX has no `.wh.` form: deleting such a
    /// *lower* file is refused with ENAMETOOLONG (files born in the upper
    /// need no whiteout and are unaffected).
    pub fn whiteout(&self, dir: &[u8], name: &[u8]) -> Result<()> {
        if !whiteout_fits(name) {
            return Err(FsError::posix(Errno::ENAMETOOLONG, &join_path(dir, name)));
        }
        self.dirs.invalidate(&join_path(dir, name));
        let p = join_path(dir, &whiteout_name(name));
        match self.create_file(&p) {
            Ok(_) => Ok(()),
            Err(FsError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the whiteout of `name` in `dir`; true when there was one.
    pub fn remove_whiteout(&self, dir: &[u8], name: &[u8]) -> Result<bool> {
        if !whiteout_fits(name) {
            return Ok(false);
        }
        self.dirs.invalidate(&join_path(dir, name));
        let p = join_path(dir, &whiteout_name(name));
        match std::fs::remove_file(self.host(&p)) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                Ok(false)
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
        for de in rd {
            let de = de.map_err(|e| FsError::io("readdir", dir, e))?;
            let name = std::os::unix::ffi::OsStrExt::as_bytes(de.file_name().as_os_str()).to_vec();
            if crate::whiteout::is_reserved(&name) {
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
