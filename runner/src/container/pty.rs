//! The pseudo-terminal of `-t`: opening it, the child's side (session,
//! controlling tty, stdio), and the CLI's terminal in raw mode.

use std::fs::OpenOptions;
use std::io::IsTerminal as _;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use anyhow::Context as _;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, setsid, ttyname};

use super::exit::StartError;
use crate::sys;

/// Both ends of a pseudo-terminal. Opened before the monitor forks, so the
/// CLI keeps the master and the container gets the slave.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// What a container's /dev/console is bound from (exec's process has
    /// none).
    pub console: Console,
}

/// Where a container's /dev/console comes from: the pty's slave.
pub enum Console {
    /// A detached mount of the slave alone: root's pty is in a devpts
    /// instance of its own, mounted nowhere.
    Mount(OwnedFd),
    /// The slave's path in the host's devpts: an ordinary user may not
    /// make a devpts instance, and uses the host's.
    Path(PathBuf),
}

impl Pty {
    /// Opens a pty sized like the CLI's own terminal, when it has one.
    /// Root's comes from a devpts instance of its own (see
    /// [`Pty::in_own_devpts`]), or none is opened; an ordinary user's from
    /// the host's.
    pub fn open() -> anyhow::Result<Self> {
        let size = sys::window_size(std::io::stdin().as_fd());
        if nix::unistd::geteuid().is_root() {
            // Never the host's for root: a container that used up the
            // ptys every devpts instance but the host's first shares could
            // otherwise make root's fall back to a host node it may chmod
            // (found by a review).
            let pty =
                Self::in_own_devpts().context("open a pty in a devpts instance of its own")?;
            if let Some(size) = &size {
                sys::set_window_size(pty.master.as_fd(), size).context("size the pty")?;
            }
            return Ok(pty);
        }
        let pty = nix::pty::openpty(size.as_ref(), None).context("openpty")?;
        let path = ttyname(pty.slave.as_fd()).context("the pty's name")?;
        Ok(Self {
            master: pty.master,
            slave: pty.slave,
            console: Console::Path(path),
        })
    }

    /// A pty of a devpts instance made for it alone and mounted nowhere
    /// (the new mount API), with the host's devpts options. A slave of
    /// the host's devpts let the container's root chmod and chown the
    /// host's `/dev/pts/N` through its stdin or /dev/console (a review
    /// made it world-writable, so that any host user could read what was
    /// typed into the container); runc opens the pty in the container's
    /// own devpts for the same reason. This one's node is nobody else's.
    fn in_own_devpts() -> rustix::io::Result<Self> {
        use rustix::mount::*;
        let fs = fsopen("devpts", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for (key, value) in [("gid", "5"), ("mode", "620"), ("ptmxmode", "666")] {
            fsconfig_set_string(&fs, key, value)?;
        }
        fsconfig_create(&fs)?;
        let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC;
        let devpts = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
        let flags =
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC;
        let master = rustix::fs::openat(&devpts, "ptmx", flags, rustix::fs::Mode::empty())?;
        rustix::pty::unlockpt(&master)?;
        let peer = rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC;
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, peer)?;
        // The slave alone, as a mount of its own that the container's
        // first process moves onto its /dev/console: a bind from the
        // instance itself is refused once in another mount namespace.
        let tree = OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH;
        let console = open_tree(&slave, "", tree)?;
        Ok(Self {
            master,
            slave,
            console: Console::Mount(console),
        })
    }
}

/// Gives this process its stdio: with a tty, a new session whose controlling
/// terminal is the slave (so Ctrl-C typed on the master signals our
/// foreground group through the line discipline); without one, stdin is
/// /dev/null unless `-i`. (No path of the slave is asked for here: an exec'd
/// process is in the container's mount namespace, where the slave's path
/// resolves to nothing.)
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
