//! Starting a file's writeback without waiting for it: `sync_file_range`,
//! the one system call layerdb makes that neither `nix` nor `rustix`
//! wraps, hence the crate's only `unsafe` (lib.rs denies it everywhere
//! else).
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;

/// Asks the kernel to start writing `f`'s dirty pages to disk and returns
/// at once. Only a hint: a later `syncfs` is what makes the data durable,
/// so a failure here changes nothing and is ignored.
pub(crate) fn start(f: &File) {
    let fd = f.as_fd();
    // SAFETY: sync_file_range only reads the descriptor, which the borrow
    // of `f` keeps open; offset 0 and length 0 mean the whole file.
    unsafe {
        libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}
