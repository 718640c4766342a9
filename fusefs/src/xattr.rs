//! Extended attributes of host files (nix has no wrapper): the crate's only
//! `unsafe`, each call with its SAFETY note. Symlinks are never followed.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Calls `read` (a get/list xattr syscall into the buffer given, returning
/// its length or -1) with a buffer grown until the value fits. `None` when
/// the attribute is missing or the host filesystem has no xattrs.
fn read_sized(mut read: impl FnMut(&mut [u8]) -> isize) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        let r = read(&mut buf);
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            // Too small, or the value grew between calls: retry bigger.
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            _ => return Err(e),
        }
    }
}

/// The value of `name`, or `None` when the file lacks it (or the host
/// filesystem has no xattrs at all).
pub fn get(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    // SAFETY: p and n are NUL-terminated; buf is valid for buf.len() bytes.
    read_sized(|buf| unsafe {
        libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })
}

/// The value of `name` on an open file (which may have no name left).
pub fn get_fd(file: &std::fs::File, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    use std::os::fd::AsRawFd;
    let n = c_name(name)?;
    let fd = file.as_raw_fd();
    // SAFETY: fd is open for the borrow of `file`; n is NUL-terminated;
    // buf is valid for buf.len() bytes.
    read_sized(|buf| unsafe { libc::fgetxattr(fd, n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// The result of a set/remove xattr syscall.
fn done(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn set(path: &Path, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    let (v, len) = (value.as_ptr().cast(), value.len());
    // SAFETY: p and n are NUL-terminated; value is valid for value.len() bytes.
    done(unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), v, len, flags) })
}

/// Sets `name` on an open file (which may have no name left).
pub fn set_fd(file: &std::fs::File, name: &[u8], value: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let n = c_name(name)?;
    let (v, len) = (value.as_ptr().cast(), value.len());
    // SAFETY: the fd is open for the borrow of `file`; n is NUL-terminated;
    // value is valid for value.len() bytes.
    done(unsafe { libc::fsetxattr(file.as_raw_fd(), n.as_ptr(), v, len, 0) })
}

/// Removes `name`; a missing attribute is not an error.
pub fn remove(path: &Path, name: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    // SAFETY: p and n are NUL-terminated.
    match done(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        r => r,
    }
}

/// Names of all attributes of the file.
pub fn list(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = c_path(path)?;
    // SAFETY: p is NUL-terminated; buf is valid for buf.len() bytes.
    let Some(buf) = read_sized(|buf| unsafe {
        libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })?
    else {
        return Ok(Vec::new());
    };
    Ok(buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
