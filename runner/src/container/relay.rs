//! The stdio of an attached container or exec without a terminal, where the
//! CLI's is a file: a pipe, with a
//! process of the monitor's copying between it and the file. Given the
//! file itself, the container could open it again through
//! `/proc/self/fd/N` with modes of its own: read what the user's output
//! file held before (`>>`), truncate it, or write the file its stdin came
//! from, as its root (who is the host's root for a root container). docker
//! and podman relay every stream; a pipe, a terminal or a socket given
//! itself opens again as itself, so only files are relayed.

use crate::sys;
use nix::sys::stat::{fstat, SFlag};
use nix::sys::wait::waitpid;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, pipe2, ForkResult, Pid};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};

/// The relays of this process's stdio; each is waited for when this drops,
/// after this process's own ends of their pipes are closed, so that what
/// the container wrote reaches the file before the monitor ends.
pub struct Relays(Vec<(i32, Pid)>);

/// Puts a pipe and a relay in place of each of fds 1 and 2, and 0 when the
/// process gets the CLI's stdin (`-i`), that is a regular file or a block
/// device. Must run before any thread starts.
pub fn interpose(stdin: bool) -> anyhow::Result<Relays> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let mut relays = Vec::new();
    for fd in (if stdin { 0 } else { 1 })..=2 {
        let Ok(stat) = fstat(sys::borrow_open_fd(fd)) else {
            continue;
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind != SFlag::S_IFREG && kind != SFlag::S_IFBLK {
            continue;
        }
        let (read, write) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        match sys::fork()? {
            ForkResult::Child => {
                // The relay copies its fd 0 to its fd 1: for stdin the file
                // into the pipe, for stdout and stderr the pipe into the
                // file. It keeps nothing else open, so that the other
                // relays' pipes and the monitor's own end when their
                // holders do.
                let arranged = match fd {
                    0 => dup2_stdout(&write),
                    1 => dup2_stdin(&read),
                    _ => dup2_stdin(&read).and_then(|()| dup2_stdout(sys::borrow_open_fd(2))),
                };
                if arranged.and_then(|()| dup2_stderr(&null)).is_err() {
                    sys::exit_now(1);
                }
                sys::close_all_from_before_exit(3);
                sys::exit_now(copy(sys::borrow_open_fd(0), sys::borrow_open_fd(1)));
            }
            ForkResult::Parent { child } => {
                onto_stdio(if fd == 0 { read.as_fd() } else { write.as_fd() }, fd)?;
                relays.push((fd, child));
            }
        }
    }
    Ok(Relays(relays))
}

/// Makes stdio descriptor `fd` (0, 1 or 2) a copy of `source`.
fn onto_stdio(source: impl AsFd, fd: i32) -> nix::Result<()> {
    match fd {
        0 => dup2_stdin(source),
        1 => dup2_stdout(source),
        _ => dup2_stderr(source),
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
            for (fd, _) in &self.0 {
                let _ = onto_stdio(&null, *fd);
            }
        }
        for (_, pid) in &self.0 {
            let _ = waitpid(*pid, None);
        }
    }
}

/// Copies until the end of `from` or a write that fails (EPIPE: the
/// container closed its stdin); 0, or 1 on a read that fails.
fn copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> i32 {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match nix::unistd::read(from, &mut buf) {
            Ok(0) => return 0,
            Ok(n) => {
                if !super::attach::write_all(to, &buf[..n]) {
                    return 0;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 1,
        }
    }
}
