//! The CLI's side of a foreground container or exec: writes its input to
//! the pty (and copies the pty's output for an exec; a container's monitor
//! copies its own, see monitor.rs), keeps the window size in step,
//! forwards signals to the process, and returns the exit status the
//! monitor reports.

use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};

use anyhow::{bail, Context as _};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{read, Pid};

use super::events::{Event, EventReceiver};
use super::pty::{copy_window_size, RawMode};

/// Signals the CLI catches: SIGWINCH resizes, the rest go to the container
/// (docker's --sig-proxy).
const CAUGHT: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// After the exit is reported, the pty is drained until EIO (no slave left
/// open: the kernel has delivered everything); this bounds the wait when a
/// process that outlived the command (an `exec`'s background job) keeps the
/// slave open without writing.
const DRAIN_IDLE_TIMEOUT_MS: u16 = 1000;

/// Runs until the monitor reports the exit; returns the exit code.
/// `copies_output`: whether the pty's output is ours to copy to stdout.
pub fn foreground(
    events: EventReceiver,
    master: Option<OwnedFd>,
    interactive: bool,
    copies_output: bool,
) -> anyhow::Result<i32> {
    let _raw = match master {
        Some(_) => RawMode::enter()?,
        None => None,
    };
    if let Some(master) = &master {
        copy_window_size(master.as_fd());
    }
    let signals = CaughtSignals::block()?;
    let mut session = Session {
        events,
        stdin_open: master.is_some() && interactive,
        master,
        copies_output,
        signals,
        pid: None,
    };
    session.run()
}

/// The signals of [`CAUGHT`], blocked and read from a signalfd; the old
/// mask comes back on drop.
struct CaughtSignals {
    fd: SignalFd,
    old_mask: SigSet,
}

impl CaughtSignals {
    fn block() -> anyhow::Result<Self> {
        let mut set = SigSet::empty();
        CAUGHT.iter().for_each(|signal| set.add(*signal));
        let mut old_mask = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old_mask))
            .context("block signals")?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("signalfd")?;
        Ok(Self { fd, old_mask })
    }
}

impl Drop for CaughtSignals {
    fn drop(&mut self) {
        while let Ok(Some(_)) = self.fd.read_signal() {}
        if let Err(errno) = self.old_mask.thread_set_mask() {
            log::warn!("could not restore the signal mask: {errno}");
        }
    }
}

/// What one poll round found ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Events,
    Signals,
    Master,
    Stdin,
}

struct Session {
    events: EventReceiver,
    master: Option<OwnedFd>,
    copies_output: bool,
    stdin_open: bool,
    signals: CaughtSignals,
    pid: Option<Pid>,
}

impl Session {
    fn run(&mut self) -> anyhow::Result<i32> {
        loop {
            for source in self.wait_ready()? {
                if let Some(code) = self.handle(source)? {
                    self.drain_master();
                    return Ok(code);
                }
            }
        }
    }

    fn wait_ready(&self) -> anyhow::Result<Vec<Source>> {
        let stdin = std::io::stdin();
        let mut sources = vec![(Source::Events, self.events.as_fd())];
        // Signals wait, blocked and queued, until the container's pid is
        // known: read before that, they would have nowhere to go.
        if self.pid.is_some() {
            sources.push((Source::Signals, self.signals.fd.as_fd()));
        }
        if let Some(master) = &self.master {
            if self.copies_output {
                sources.push((Source::Master, master.as_fd()));
            }
            if self.stdin_open {
                sources.push((Source::Stdin, stdin.as_fd()));
            }
        }
        let mut fds: Vec<PollFd<'_>> = sources
            .iter()
            .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno).context("poll"),
        }
        Ok(sources
            .iter()
            .zip(&fds)
            .filter(|(_, fd)| fd.revents().is_some_and(|events| !events.is_empty()))
            .map(|((source, _), _)| *source)
            .collect())
    }

    /// Handles one ready source; `Some(code)` once the container exited.
    fn handle(&mut self, source: Source) -> anyhow::Result<Option<i32>> {
        match source {
            Source::Events => self.handle_events(),
            Source::Signals => {
                self.handle_signals();
                Ok(None)
            }
            Source::Master => {
                if !self.copy_master_to_stdout() {
                    self.master = None;
                }
                Ok(None)
            }
            Source::Stdin => {
                self.copy_stdin_to_master();
                Ok(None)
            }
        }
    }

    fn handle_events(&mut self) -> anyhow::Result<Option<i32>> {
        let Some(events) = self.events.receive()? else {
            bail!("the container monitor exited without reporting the container's exit status");
        };
        for event in events {
            match event {
                Event::Started { pid } => self.pid = Some(Pid::from_raw(pid)),
                Event::Failed(err) => return Err(err.into()),
                Event::Exited { code } => return Ok(Some(code)),
            }
        }
        Ok(None)
    }

    fn handle_signals(&self) {
        while let Ok(Some(info)) = self.signals.fd.read_signal() {
            let Ok(signal) = i32::try_from(info.ssi_signo)
                .map_err(drop)
                .and_then(|n| Signal::try_from(n).map_err(drop))
            else {
                continue;
            };
            if signal == Signal::SIGWINCH {
                if let Some(master) = &self.master {
                    copy_window_size(master.as_fd());
                }
            } else if let Some(pid) = self.pid {
                if let Err(errno) = kill(pid, signal) {
                    log::debug!("forwarding {signal} to {pid}: {errno}");
                }
            }
        }
    }

    /// Returns false once the pty is closed (EIO: no slave left open).
    fn copy_master_to_stdout(&self) -> bool {
        let Some(master) = &self.master else {
            return false;
        };
        copy_once(master.as_fd(), &mut std::io::stdout())
    }

    fn copy_stdin_to_master(&mut self) {
        let Some(master) = &self.master else { return };
        let mut buffer = [0u8; 8192];
        match read(std::io::stdin().as_fd(), &mut buffer) {
            Ok(0) | Err(_) => self.stdin_open = false,
            Ok(count) => {
                if !write_all(master.as_fd(), &buffer[..count]) {
                    self.stdin_open = false;
                }
            }
        }
    }

    fn drain_master(&self) {
        if let Some(master) = self.master.as_ref().filter(|_| self.copies_output) {
            drain(master.as_fd(), &mut std::io::stdout());
        }
    }
}

/// After the process exited, what it wrote just before may still be in
/// the pty (the kernel moves it from slave to master asynchronously):
/// copied to `to` until EIO (no slave left open), or until the pty has
/// been idle for [`DRAIN_IDLE_TIMEOUT_MS`].
pub(super) fn drain(master: BorrowedFd<'_>, to: &mut impl std::io::Write) {
    loop {
        let mut fds = [PollFd::new(master, PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(DRAIN_IDLE_TIMEOUT_MS)).unwrap_or(0);
        if ready == 0 || !copy_once(master, to) {
            return;
        }
    }
}

/// Copies one read's worth from `from` to `to`; false at end (EOF or EIO).
pub fn copy_once(from: BorrowedFd<'_>, to: &mut impl std::io::Write) -> bool {
    let mut buffer = [0u8; 8192];
    match read(from, &mut buffer) {
        Ok(0) | Err(Errno::EIO) => false,
        Ok(count) => to
            .write_all(&buffer[..count])
            .and_then(|()| to.flush())
            .is_ok(),
        Err(Errno::EINTR | Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// Writes all of `bytes` to a descriptor; false when it fails.
pub(super) fn write_all(to: BorrowedFd<'_>, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match nix::unistd::write(to, bytes) {
            Ok(count) => bytes = &bytes[count..],
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}
