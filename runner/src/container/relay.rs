//! The stdio of an attached container or exec without a terminal: pipes,
//! with a process of the monitor's (or exec helper's) copying between each
//! and what the CLI was given. Given a file itself, the container could
//! open it again through `/proc/self/fd/N` with modes of its own: read
//! what the user's output file held before (`>>`), truncate it, or write
//! the file its stdin came from, as its root (who is the host's root for a
//! root container); given a directory, walk the host's tree from it; given
//! the user's terminal, read its keystrokes. docker and podman relay every
//! stream. A pipe reopened through /proc is the same pipe, and /dev/null
//! holds nothing, so only those two are handed over as they are.

use super::json_log::LineWriter;
use crate::sys;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstat, major, minor, FileStat, SFlag};
use nix::sys::wait::waitpid;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, pipe2, ForkResult, Pid};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long the output relays may take to drain once the process has
/// exited: longer only when something it left in the background still
/// holds the pipe (containerd gives an exec's streams 2 s too).
const DRAIN: Duration = Duration::from_secs(2);

/// One stdio descriptor behind a pipe.
struct Relay {
    fd: i32,
    pid: Pid,
    /// What the CLI gave (close-on-exec), put back when the relay ends.
    original: OwnedFd,
}

/// The relays of this process's stdio, ended when this drops: the output
/// ones drained, so that what the process wrote is in the files before the
/// CLI hears it ended; the stdin one stopped, its reader gone.
#[derive(Default)]
pub struct Relays(Vec<Relay>);

/// Puts a pipe and a relay in place of each of fds 1 and 2, and 0 when the
/// process gets the CLI's stdin (`-i`), that is neither a pipe nor
/// /dev/null; none with a terminal (`tty`: the process gets the pty, not
/// these). With `logged` (a container's, not an exec's) fds 1 and 2 always
/// get a relay, which also appends what it copies to the log (docker's
/// json-file lines, see json_log.rs), as docker logs every container's
/// output, and goes on into the log alone once the other side fails, is
/// /dev/null (a detached container's) or its CLI is gone. Must run in a
/// single-threaded process, after it left the CLI's session (a Ctrl-C at
/// the CLI's terminal must not kill a relay).
pub fn interpose(tty: bool, stdin: bool, logged: Option<Logged<'_>>) -> anyhow::Result<Relays> {
    let mut relays = Vec::new();
    if tty {
        return Ok(Relays(relays));
    }
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for fd in (if stdin { 0 } else { 1 })..=2 {
        let Ok(stat) = fstat(sys::borrow_open_fd(fd)) else {
            continue;
        };
        // (A log on fds 0-2, the CLI's stdio having been closed, would be
        // overwritten below: not logged then.)
        let log = logged
            .as_ref()
            .and_then(|l| l.log)
            .filter(|log| fd > 0 && log.as_raw_fd() > 2);
        if log.is_none() && handed_over_as_is(&stat) {
            continue;
        }
        let cli_alive = logged.as_ref().and_then(|l| l.cli_alive);
        // Output thrown away (a detached container's) goes to the log only.
        let to_null = fd > 0 && is_dev_null(&stat);
        let original = sys::borrow_open_fd(fd).try_clone_to_owned()?;
        let (read, write) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        match sys::fork()? {
            ForkResult::Child => {
                // The relay copies its fd 0 to its fd 1: for stdin what the
                // CLI gave into the pipe, for stdout and stderr the pipe
                // into it. It keeps nothing else open, so that the other
                // relays' pipes and the monitor's own end when their
                // holders do.
                let arranged = match fd {
                    0 => dup2_stdout(&write),
                    1 => dup2_stdin(&read),
                    _ => dup2_stdin(&read).and_then(|()| dup2_stdout(sys::borrow_open_fd(2))),
                };
                if arranged.and_then(|()| dup2_stderr(&null)).is_err() {
                    sys::exit_immediately(1);
                }
                // The log as fd 3 and the CLI's liveness pipe as fd 4, both
                // moved above those numbers first, so neither overwrites
                // the other where it was.
                let high =
                    |fd: Option<BorrowedFd<'_>>| fd.map(|fd| sys::dup_above(fd, ALIVE_FD + 1));
                let (log_high, alive_high) = (high(log.map(AsFd::as_fd)), high(cli_alive));
                let place = |high: Option<std::io::Result<i32>>, at: i32| {
                    high.map(|h| {
                        h.and_then(|h| sys::dup_onto(sys::borrow_open_fd(h), at))
                            .is_ok()
                    })
                };
                let (has_log, has_alive) = (place(log_high, LOG_FD), place(alive_high, ALIVE_FD));
                if has_log == Some(false) || has_alive == Some(false) {
                    sys::exit_immediately(1);
                }
                sys::close_all_from_before_exit(ALIVE_FD as u32 + 1);
                let stream = if fd == 1 { "stdout" } else { "stderr" };
                let rotation = logged.as_ref().and_then(|l| l.rotation.clone());
                let log =
                    has_log.map(|_| LineWriter::new(sys::borrow_open_fd(LOG_FD), stream, rotation));
                let alive = has_alive.map(|_| sys::borrow_open_fd(ALIVE_FD));
                let to = (!to_null).then(|| sys::borrow_open_fd(1));
                sys::exit_immediately(copy(sys::borrow_open_fd(0), to, log, alive));
            }
            ForkResult::Parent { child } => {
                let relay = Relay {
                    fd,
                    pid: child,
                    original,
                };
                onto_stdio(if fd == 0 { read.as_fd() } else { write.as_fd() }, fd)?;
                relays.push(relay);
            }
        }
    }
    Ok(Relays(relays))
}

/// A pipe (or FIFO) or /dev/null: reopened through /proc, nothing more
/// than the container already holds.
fn handed_over_as_is(stat: &FileStat) -> bool {
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    kind == SFlag::S_IFIFO || is_dev_null(stat)
}

fn is_dev_null(stat: &FileStat) -> bool {
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    kind == SFlag::S_IFCHR && major(stat.st_rdev) == 1 && minor(stat.st_rdev) == 3
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
        // The CLI's stdio back (the monitor's own messages go there again),
        // which closes this process's ends of the pipes.
        for relay in &self.0 {
            let _ = onto_stdio(&relay.original, relay.fd);
        }
        let deadline = Instant::now() + DRAIN;
        for relay in &self.0 {
            // stdin's relay may be waiting on a terminal for a line that
            // nobody will read.
            if relay.fd == 0 || !exits_by(relay.pid, deadline) {
                let _ = kill(relay.pid, Signal::SIGKILL);
            }
            let _ = waitpid(relay.pid, None);
        }
    }
}

/// Whether process `pid` (a child) exits before `deadline`.
fn exits_by(pid: Pid, deadline: Instant) -> bool {
    let Ok(exited) = sys::pidfd_open(pid) else {
        return true; // gone already
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(
            &mut [PollFd::new(exited.as_fd(), PollFlags::POLLIN)],
            timeout,
        ) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// What a container's relays need besides its stdio: its log (none with
/// `--log-driver none`), and the read end of the pipe its CLI holds
/// (`None` when detached).
pub struct Logged<'a> {
    pub log: Option<&'a File>,
    /// When the log is rotated.
    pub rotation: Option<super::json_log::Rotation>,
    pub cli_alive: Option<BorrowedFd<'a>>,
}

/// Where a relay keeps the container's log, and the CLI's liveness pipe.
const LOG_FD: i32 = 3;
const ALIVE_FD: i32 = 4;

/// Copies until the end of `from` or a write to `to` that fails (EPIPE:
/// the container closed its stdin); 0, or 1 on a read that fails. With a
/// `log`, every read goes to it too, and once `to` fails (the CLI's pipe
/// closed by its reader) or `alive` hangs up (the CLI is gone) the log
/// alone takes the rest: the container outlives its CLI, as with docker,
/// and a dead CLI's terminal gets nothing more. Without a log (stdin's
/// relay) the CLI's end ends the copy.
fn copy(
    from: BorrowedFd<'_>,
    mut to: Option<BorrowedFd<'_>>,
    mut log: Option<LineWriter>,
    mut alive: Option<BorrowedFd<'_>>,
) -> i32 {
    let mut buf = vec![0u8; 64 << 10];
    let code = loop {
        if let Some(fd) = alive {
            let mut fds = [
                PollFd::new(from, PollFlags::POLLIN),
                PollFd::new(fd, PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break 1,
            }
            if fds[1].revents().is_some_and(|events| !events.is_empty()) {
                alive = None;
                to = None;
                if log.is_none() {
                    break 0;
                }
            }
            if fds[0].revents().is_none_or(|events| events.is_empty()) {
                continue;
            }
        }
        match nix::unistd::read(from, &mut buf) {
            Ok(0) => break 0,
            Ok(n) => {
                if to.is_some_and(|to| !super::attach::write_all(to, &buf[..n])) {
                    to = None;
                }
                match &mut log {
                    Some(log) => log.write(&buf[..n]),
                    None if to.is_none() => break 0,
                    None => {}
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break 1,
        }
    };
    // The last line without a newline is logged as `log` drops, here,
    // before the relay's `_exit`.
    code
}
