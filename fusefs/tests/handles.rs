//! File handles (`name_to_handle_at`): a handle the mount gives out opens
//! the file again (`open_by_handle_at`) even after the kernel dropped its
//! caches, or the mount gives none (EOPNOTSUPP, as kernel overlayfs
//! without `nfs_export`); never a handle that goes stale while its file
//! exists.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod common;

use fusefs::{DirLower, MountHandle, MountOptions};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Room for any handle a filesystem encodes (MAX_HANDLE_SZ).
const MAX_HANDLE: usize = 128;

/// `struct file_handle` with its payload.
#[repr(C)]
struct FileHandle {
    bytes: u32,
    kind: i32,
    payload: [u8; MAX_HANDLE],
}

/// The handle of `path`, or the errno `name_to_handle_at` gives.
fn handle_of(path: &Path) -> Result<FileHandle, i32> {
    let name = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut h = FileHandle {
        bytes: MAX_HANDLE as u32,
        kind: 0,
        payload: [0; MAX_HANDLE],
    };
    let mut mount_id: i32 = 0;
    // SAFETY: `name` is a NUL-terminated string, `h` a file_handle with
    // `bytes` of room after its header, `mount_id` an int; all outlive the
    // call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            name.as_ptr(),
            &mut h as *mut FileHandle,
            &mut mount_id as *mut i32,
            0,
        )
    };
    if r == 0 {
        Ok(h)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// Opens the file `h` names on the filesystem of `mount_dir`.
fn open_handle(mount_dir: &Path, h: &mut FileHandle) -> Result<OwnedFd, i32> {
    let dir = std::fs::File::open(mount_dir).unwrap();
    // SAFETY: `dir` is an open descriptor and `h` a file_handle filled by
    // name_to_handle_at; both outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            dir.as_raw_fd(),
            h as *mut FileHandle,
            libc::O_RDONLY,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[test]
fn a_handle_is_never_given_out_that_goes_stale_while_its_file_exists() {
    common::require_fuse();
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper, mnt) = (
        dir.path().join("lower"),
        dir.path().join("upper"),
        dir.path().join("mnt"),
    );
    for d in [&lower, &mnt] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(lower.join("kept"), "lower file\n").unwrap();
    let opts = MountOptions::new(vec![Box::new(DirLower::new(lower))], Some(upper));
    let m: MountHandle = fusefs::mount(opts, &mnt).unwrap();
    std::fs::write(mnt.join("made"), "upper file\n").unwrap();
    for name in ["kept", "made"] {
        match handle_of(&mnt.join(name)) {
            Err(libc::EOPNOTSUPP) => {}
            Err(e) => panic!("name_to_handle_at({name}): errno {e}"),
            Ok(mut h) => {
                // The kernel forgets the node; the handle must still open it.
                std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
                let fd = open_handle(&mnt, &mut h).unwrap_or_else(|e| {
                    panic!("{name}: a handle given out does not open its file: errno {e}")
                });
                let text = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                assert!(text.is_ok(), "{name}: {text:?}");
            }
        }
    }
    m.unmount().unwrap();
}
