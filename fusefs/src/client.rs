//! Walking a tree this process serves, from a thread the kill of the
//! process cannot strand.
//!
//! `cp` and `export` serve a container's tree from their own process and
//! then use it themselves (bind its volumes, tar it). A kill -9 that lands
//! while such a thread waits for an answer the server has already read
//! leaves the thread waiting for good: the kernel drops a killed caller's
//! request only while no server has read it, the server threads die with
//! the process, and the connection ends only when the last descriptor of
//! its `/dev/fuse` closes, which happens when the last thread holding the
//! process's file table exits: the waiting one. The process then sits in
//! D state until someone aborts the connection through fusectl, holding
//! the container's locks (found in CI, session 45).
//!
//! [`client_thread`] runs the walk on a thread with a file table of its
//! own, without the server's `/dev/fuse` descriptors and io_uring rings
//! (which hold the device too): the server's threads then hold the last
//! ones, their deaths end the connection, and the waiting walk gets an
//! error and dies with them.
//!
//! Such a mount must be served through `/dev/fuse` alone
//! (`MountOptions::io_uring` false). Over io_uring, Linux 6.18 never ends
//! a request it had assigned to a ring entry whose server thread then
//! died before taking it (the entry stays `FRRS_FUSE_REQ`, the ring's
//! teardown retries for good, and fusectl's abort ends nothing): a kill
//! ends the server and its walk together, and the walk, or the flush of
//! a file it closes as it exits, waits in D state until the machine
//! restarts (a review: 8 of 12 `export`s killed 35-50 ms in).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The device number of `/dev/fuse` (misc major 10, minor 229).
const FUSE_DEVICE: (u64, u64) = (10, 229);

/// Runs `f` on a thread of its own whose file table holds none of this
/// process's FUSE connections (see the module's comment), and returns
/// what it returns. The table is a copy, which keeps every other file of
/// the process open until `f` returns: for commands doing one thing, not
/// for a library's callers whose other threads close files meanwhile. `f` may use every descriptor open before it ran but
/// those; a descriptor it opens must be closed before it returns (its
/// number means nothing outside the thread's table), and is named through
/// `/proc/thread-self/fd` (`/proc/self/fd` shows the process's table).
pub fn client_thread<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        let walk = scope.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FILES)?;
            close_connections()?;
            Ok(f())
        });
        walk.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Closes, in the calling thread's file table, every descriptor of
/// `/dev/fuse` and of an io_uring ring.
fn close_connections() -> std::io::Result<()> {
    let fds = Path::new("/proc/thread-self/fd");
    let mut connections = Vec::new();
    for entry in std::fs::read_dir(fds)? {
        let entry = entry?;
        let Some(fd) = (entry.file_name().to_str()).and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let ring = std::fs::read_link(entry.path())
            .is_ok_and(|target| target == Path::new("anon_inode:[io_uring]"));
        let device = std::fs::metadata(entry.path()).is_ok_and(|m| {
            m.file_type().is_char_device()
                && (
                    nix::sys::stat::major(m.rdev()),
                    nix::sys::stat::minor(m.rdev()),
                ) == FUSE_DEVICE
        });
        if ring || device {
            connections.push(fd);
        }
    }
    for fd in connections {
        nix::unistd::close(fd)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_thread_keeps_other_descriptors_and_the_process_keeps_all() {
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        let seen = client_thread(|| nix::sys::stat::fstat(&file).is_ok()).unwrap();
        assert!(seen, "descriptor {fd} gone in the client thread");
        assert!(nix::sys::stat::fstat(&file).is_ok());
    }

    #[test]
    fn a_fuse_descriptor_is_closed_in_the_thread_only() {
        // Root or not, /dev/fuse opens where FUSE is (0666 or as root).
        let Ok(fuse) = std::fs::File::open("/dev/fuse") else {
            panic!("/dev/fuse does not open: FUSE is needed for this test");
        };
        let fd = fuse.as_raw_fd();
        let path = format!("/proc/thread-self/fd/{fd}");
        let in_thread = client_thread(|| std::fs::read_link(&path).ok()).unwrap();
        // Closed there (the number may be free, or nothing of ours).
        assert_ne!(in_thread.as_deref(), Some(Path::new("/dev/fuse")));
        assert_eq!(std::fs::read_link(&path).unwrap(), Path::new("/dev/fuse"));
    }
}
