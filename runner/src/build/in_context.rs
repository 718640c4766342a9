//! Names of the build context, opened by descriptor. Someone who can
//! write to the context while root builds it (a shared checkout) could
//! swap a directory for a link to a host directory between the walk that
//! listed it and the read by path, and the host's files went into the
//! image. Here a source is opened once, its links followed inside the
//! context by the kernel (`RESOLVE_IN_ROOT`), each name below it opened
//! from its directory's descriptor without following it, and every read
//! goes through the descriptor (`/proc/self/fd`), so it is the file that
//! was looked at, wherever its name has gone since.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

/// A name of the context, opened without opening its content (O_PATH),
/// and what it was when opened.
#[derive(Debug)]
pub struct Opened {
    file: File,
    pub meta: Metadata,
}

impl Opened {
    /// The context's root directory.
    pub fn root(path: &Path) -> io::Result<Opened> {
        Opened::of(crate::container::in_root::open_root(path)?)
    }

    /// `rel` under `root`, its links followed as if `root` were `/`
    /// (docker's `FollowSymlinkInScope`): no link leads out.
    pub fn resolve(root: &Opened, rel: impl AsRef<Path>) -> io::Result<Opened> {
        root.beneath(rel, OFlags::empty(), ResolveFlags::empty())
    }

    /// `rel` under `root`, a path that had no links when it was resolved:
    /// one met now fails the open.
    pub fn resolve_exact(root: &Opened, rel: impl AsRef<Path>) -> io::Result<Opened> {
        root.beneath(rel, OFlags::NOFOLLOW, ResolveFlags::NO_SYMLINKS)
    }

    fn beneath(
        &self,
        rel: impl AsRef<Path>,
        flags: OFlags,
        resolve: ResolveFlags,
    ) -> io::Result<Opened> {
        let rel = match rel.as_ref() {
            rel if rel.as_os_str().is_empty() => Path::new("."),
            rel => rel,
        };
        let fd = rustix::fs::openat2(
            &self.file,
            rel,
            OFlags::PATH | OFlags::CLOEXEC | flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | resolve,
        )?;
        Opened::of(fd)
    }

    /// `name` in this directory, itself when it is a link.
    pub fn child(&self, name: &OsStr) -> io::Result<Opened> {
        let fd = rustix::fs::openat(
            &self.file,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Opened::of(fd)
    }

    fn of(fd: rustix::fd::OwnedFd) -> io::Result<Opened> {
        let file = File::from(fd);
        let meta = file.metadata()?;
        Ok(Opened { file, meta })
    }

    /// The kernel's name for the descriptor, through which it is opened
    /// again: the same file, not a lookup of its name.
    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// Its content, when it was a regular file.
    pub fn open(&self) -> io::Result<File> {
        if !self.meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        File::open(self.proc_path())
    }

    /// The names in it, when it was a directory, sorted bytewise.
    pub fn names(&self) -> io::Result<Vec<std::ffi::OsString>> {
        let mut names = std::fs::read_dir(self.proc_path())?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }

    /// Its target, when it was a symlink.
    pub fn link_target(&self) -> io::Result<PathBuf> {
        use std::os::unix::ffi::OsStringExt as _;
        let target = rustix::fs::readlinkat(&self.file, "", Vec::new())?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(
            target.into_bytes(),
        )))
    }

    /// Where it is under `root` (the context's canonical path), as the
    /// kernel names it now: `a/b`, or empty for the root itself.
    pub fn path_under(&self, root: &Path) -> io::Result<String> {
        let at = std::fs::read_link(self.proc_path())?;
        match at.strip_prefix(root) {
            Ok(rel) => Ok(rel.to_string_lossy().into_owned()),
            Err(_) => Err(io::Error::other("resolved outside the build context")),
        }
    }
}
