//! Extended attributes of host files, through the `xattr` crate (and
//! `rustix`, which it is built on, where flags are needed). Symlinks are
//! never followed: the path forms act on the link itself (l*xattr), the
//! `_fd` forms on an open file, which may have no name left (f*xattr).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use xattr::FileExt;

/// A file's capabilities (`setcap`), which a write or chown drops.
pub const CAPABILITY: &[u8] = b"security.capability";

/// `None` for an attribute that is missing (the crate already answers
/// ENODATA so) or a host filesystem without xattrs at all (ENOTSUP).
fn absent_if_unsupported(r: io::Result<Option<Vec<u8>>>) -> io::Result<Option<Vec<u8>>> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(None),
        r => r,
    }
}

/// The value of `name`, or `None` when the file lacks it (or the host
/// filesystem has no xattrs at all).
pub fn get(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    absent_if_unsupported(xattr::get(path, OsStr::from_bytes(name)))
}

/// The value of `name` on an open file (which may have no name left).
pub fn get_fd(file: &std::fs::File, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    absent_if_unsupported(file.get_xattr(OsStr::from_bytes(name)))
}

/// Sets `name` to `value`; `flags` are setxattr(2)'s (`XATTR_CREATE`,
/// `XATTR_REPLACE`, or 0), which the `xattr` crate cannot pass.
pub fn set(path: &Path, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    let flags = rustix::fs::XattrFlags::from_bits_retain(flags as u32);
    rustix::fs::lsetxattr(path, OsStr::from_bytes(name), value, flags).map_err(io::Error::from)
}

/// Sets `name` on an open file (which may have no name left).
pub fn set_fd(file: &std::fs::File, name: &[u8], value: &[u8]) -> io::Result<()> {
    file.set_xattr(OsStr::from_bytes(name), value)
}

/// Removes `name`; a missing attribute is not an error.
pub fn remove(path: &Path, name: &[u8]) -> io::Result<()> {
    match xattr::remove(path, OsStr::from_bytes(name)) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        r => r,
    }
}

/// Names of all attributes of the file; none on a host filesystem
/// without xattrs.
pub fn list(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    match xattr::list(path) {
        Ok(names) => Ok(names.map(OsStringExt::into_vec).collect()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Removes `name` from an open file (which may have no name left); a
/// missing attribute is not an error.
pub fn remove_fd(file: &std::fs::File, name: &[u8]) -> io::Result<()> {
    match file.remove_xattr(OsStr::from_bytes(name)) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        r => r,
    }
}

/// Names of all attributes of an open file (which may have no name left);
/// none on a host filesystem without xattrs.
pub fn list_fd(file: &std::fs::File) -> io::Result<Vec<Vec<u8>>> {
    match file.list_xattr() {
        Ok(names) => Ok(names.map(OsStringExt::into_vec).collect()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A host file the calls above name: by its path, or through a descriptor
/// open on it. A call through the descriptor walks no path, and a path
/// walk costs a lookup per component (a new file's, right after CREATE).
#[derive(Clone, Copy, Debug)]
pub enum Host<'a> {
    Path(&'a Path),
    Open(&'a std::fs::File),
}

impl Host<'_> {
    pub fn get(self, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self {
            Host::Path(p) => get(p, name),
            Host::Open(f) => get_fd(f, name),
        }
    }

    pub fn set(self, name: &[u8], value: &[u8]) -> io::Result<()> {
        match self {
            Host::Path(p) => set(p, name, value, 0),
            Host::Open(f) => set_fd(f, name, value),
        }
    }

    pub fn remove(self, name: &[u8]) -> io::Result<()> {
        match self {
            Host::Path(p) => remove(p, name),
            Host::Open(f) => remove_fd(f, name),
        }
    }

    pub fn list(self) -> io::Result<Vec<Vec<u8>>> {
        match self {
            Host::Path(p) => list(p),
            Host::Open(f) => list_fd(f),
        }
    }
}
