//! The pseudo-terminal of `-t`: opening it, the child's side (session,
//! controlling tty, stdio), and the CLI's terminal in raw mode.

use std::fs::OpenOptions;
use std::io::IsTerminal as _;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};

use anyhow::Context as _;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, setsid};

use super::exit::StartError;
use crate::sys;

/// Both ends of a pseudo-terminal. Opened before the monitor forks, so the
/// CLI keeps the master and the container gets the slave.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    /// Opens a pty sized like the CLI's own terminal, when it has one.
    pub fn open() -> anyhow::Result<Self> {
        let size = sys::window_size(std::io::stdin().as_fd());
        let pty = nix::pty::openpty(size.as_ref(), None).context("openpty")?;
        Ok(Self {
            master: pty.master,
            slave: pty.slave,
        })
    }
}

/// Gives this process its stdio: with a tty, a new session whose controlling
/// terminal is the slave (so Ctrl-C typed on the master signals our
/// foreground group through the line discipline); without one, stdin is
/// /dev/null unless `-i`. (No path of the slave is asked for here: an exec'd
/// process is in the container's mount namespace, where the host's
/// /dev/pts/N is not, and its `ttyname` failed every `exec -t`.)
pub fn attach_stdio(slave: Option<OwnedFd>, interactive: bool) -> Result<(), StartError> {
    let Some(slave) = slave else {
        if !interactive {
            redirect_stdin_to_null()?;
        }
        return Ok(());
    };
    setsid().map_err(|errno| StartError::from_errno("setsid", errno))?;
    sys::set_controlling_terminal(slave.as_fd())
        .map_err(|err| StartError::other(format!("set controlling terminal: {err}")))?;
    dup2_stdin(&slave).map_err(|errno| StartError::from_errno("dup2 stdin", errno))?;
    dup2_stdout(&slave).map_err(|errno| StartError::from_errno("dup2 stdout", errno))?;
    dup2_stderr(&slave).map_err(|errno| StartError::from_errno("dup2 stderr", errno))?;
    Ok(())
}

fn redirect_stdin_to_null() -> Result<(), StartError> {
    let null = OpenOptions::new()
        .read(true)
        .open("/dev/null")
        .map_err(|err| StartError::other(format!("open /dev/null: {err}")))?;
    dup2_stdin(&null).map_err(|errno| StartError::from_errno("dup2 stdin", errno))
}

/// The CLI's terminal in raw mode, so every key (Ctrl-C included) goes to
/// the container's pty as a byte. Restored on drop, so an early return or
/// an error leaves the user's terminal as it was.
pub struct RawMode {
    /// A duplicate of stdin: the same terminal, owned by the guard.
    tty: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts stdin in raw mode when it is a terminal; `None` otherwise.
    pub fn enter() -> anyhow::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let tty = stdin
            .as_fd()
            .try_clone_to_owned()
            .context("duplicate stdin")?;
        let saved = tcgetattr(&tty).context("read terminal settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&tty, SetArg::TCSANOW, &raw).context("set terminal raw mode")?;
        Ok(Some(Self { tty, saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Err(errno) = tcsetattr(&self.tty, SetArg::TCSANOW, &self.saved) {
            log::warn!("could not restore terminal settings: {errno}");
        }
    }
}

/// Copies the CLI terminal's window size to the pty (at start and on SIGWINCH).
pub fn copy_window_size(master: BorrowedFd<'_>) {
    if let Some(size) = sys::window_size(std::io::stdin().as_fd()) {
        if let Err(err) = sys::set_window_size(master, &size) {
            log::debug!("could not set the container's window size: {err}");
        }
    }
}
