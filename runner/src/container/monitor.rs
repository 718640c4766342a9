//! The per-container monitor process: forked by the CLI before any thread
//! exists, it forks the container's first process (parked on a pipe), lets
//! the caller mount the rootfs (which may start FUSE threads: no fork after
//! that point), releases the container, waits for it and reports to the CLI.

use std::convert::Infallible;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};

use anyhow::Context as _;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, getpid, pipe2, setsid, ForkResult, Pid};

use super::attach::copy_once;
use super::events::{Event, EventSender};
use super::exit::{exit_code_of_status, StartError, EXIT_STRATA_FAILED};
use super::json_log::LineWriter;
use super::namespaces;
use super::process::{self, ProcessSpec};
use super::pty::{attach_stdio, Console, Pty};
use super::rootfs;
use super::security::Prepared;
use super::spec::Spec;
use super::userns;
use crate::sys;

/// What the caller does around the container's life. All methods run in
/// the monitor process.
pub trait MonitorHooks {
    /// Before the container starts: make the merged tree at `spec.rootfs`
    /// (may start threads).
    fn mount_rootfs(&mut self) -> anyhow::Result<()>;
    /// The user's command is running: `pid` is the container's init on the host.
    fn started(&mut self, monitor_pid: i32, pid: i32) -> anyhow::Result<()>;
    /// The container finished (or never started) with `code`, and whether
    /// its cgroup saw the kernel kill a process for its memory limit; the
    /// rootfs is still mounted.
    fn exited(&mut self, code: i32, oom_killed: bool);
    /// The container's process was made but never ran the user's command:
    /// its start failed with `code`, what the CLI exits with; the rootfs
    /// is still mounted.
    fn start_failed(&mut self, code: i32);
    /// Last call; made whenever `mount_rootfs` was called, even if it failed.
    fn unmount(&mut self);
}

/// The monitor's inputs besides the spec and the hooks.
pub struct MonitorSetup {
    pub pty: Option<Pty>,
    pub events: EventSender,
    /// Attached: the read end of a pipe the CLI holds open. Its hang-up
    /// means the CLI is gone: the container goes on (as docker's and
    /// podman's do), its output into the log alone.
    pub cli_alive: Option<OwnedFd>,
    pub detach: bool,
    /// Rootless: our end of the handshake through which the launcher maps
    /// the user namespace we make before anything else.
    pub userns: Option<userns::MonitorSide>,
    /// The container process's capabilities and seccomp program.
    pub security: Prepared,
}

/// Runs the monitor to the end and returns its exit code (the container's).
pub fn run(spec: &Spec, hooks: &mut dyn MonitorHooks, setup: MonitorSetup) -> i32 {
    let MonitorSetup {
        pty,
        events,
        cli_alive,
        detach,
        userns,
        security,
    } = setup;
    let fail = |err: StartError| {
        let code = err.exit_code();
        events.send(&Event::Failed(err));
        code
    };
    // Held while the container lives: the open stdin of a `-di` container,
    // or the relays of an attached one's stdio files.
    let stdio_held = match leave_terminal(spec, detach, cli_alive.as_ref()) {
        Ok(held) => held,
        Err(err) => return fail(StartError::other(crate::error_text::describe(&err))),
    };
    // Before the fork below: the container inherits the user and mount
    // namespaces, and the FUSE mount is made in them.
    let in_user_namespace = userns.is_some();
    if let Some(userns) = userns {
        if let Err(err) = userns.enter() {
            return fail(StartError::other(crate::error_text::describe(&err)));
        }
    }
    // We copy the pty's output: detached to the log (our stdout), attached
    // to the CLI's stdout and the log. The CLI writes its input.
    let (master, slave) = match pty {
        Some(pty) => (Some(pty.master), Some((pty.slave, pty.console))),
        None => (None, None),
    };
    let child = match ContainerChild::fork(spec, &security, slave, in_user_namespace) {
        Ok(child) => child,
        Err(err) => return fail(StartError::other(crate::error_text::describe(&err))),
    };
    // Its cgroup (limits, devices, freezer) before it runs anything, made
    // while the rootfs mounts; gone when `placement` drops, after the
    // container ended.
    let placing = super::cgroup::Placement::start(spec, child.pid);
    // Connected before the container runs; undone when `network` drops.
    let network = match crate::network::attach(spec, child.pid, in_user_namespace) {
        Ok(network) => network,
        Err(err) => {
            child.abandon();
            return fail(StartError::other(crate::error_text::describe(&err)));
        }
    };
    if let Err(err) = hooks.mount_rootfs() {
        child.abandon();
        hooks.unmount();
        return fail(StartError::other(format!(
            "mount the container's rootfs: {}",
            crate::error_text::describe(&err)
        )));
    }
    let placement = match placing.finish() {
        Ok(placement) => placement,
        Err(err) => {
            child.abandon();
            hooks.unmount();
            return fail(StartError::other(crate::error_text::describe(&err)));
        }
    };
    let pid = child.pid;
    if let Err(err) = child.release() {
        reap(pid);
        hooks.start_failed(err.exit_code());
        hooks.unmount();
        return fail(err);
    }
    if let Err(err) = hooks.started(getpid().as_raw(), pid.as_raw()) {
        let _ = kill(pid, Signal::SIGKILL);
        reap(pid);
        let err = StartError::other(format!(
            "record the container as started: {}",
            crate::error_text::describe(&err)
        ));
        hooks.start_failed(err.exit_code());
        hooks.unmount();
        return fail(err);
    }
    events.send(&Event::Started { pid: pid.as_raw() });
    // commit pauses the container through us, so its death cannot leave
    // it paused.
    let pause = super::pause::serve(&spec.container_dir, pid, placement.cgroup())
        .map_err(|err| log::warn!("commit will not be able to pause the container: {err:#}"));
    // A detached `-i` container's stdin, for `strata attach`.
    let input = match (&master, &stdio_held.stdin) {
        _ if !(detach && spec.interactive) => None,
        (Some(master), _) => Some(master.as_fd()),
        (None, Some(stdin)) => Some(stdin.as_fd()),
        (None, None) => None,
    };
    let _attach = input.map(|input| {
        super::attach_input::serve(&spec.container_dir, input)
            .map_err(|err| log::warn!("attach will not reach the container's input: {err:#}"))
    });
    let mut output = PtyOutput {
        stdout: !detach,
        log: (stdio_held.log.as_ref())
            .map(|log| LineWriter::new(log.as_fd(), "stdout", log_rotation(spec))),
    };
    let code = supervise(
        pid,
        master.as_ref().map(|m| (m.as_fd(), &mut output)),
        cli_alive,
    );
    drop(output);
    drop(network);
    let oom_killed = placement
        .cgroup()
        .is_some_and(super::cgroup::ContainerCgroup::oom_killed);
    // Its cgroups go before its record: a `--rm` container's record (its
    // `cgroup` file) is what finds them again after a kill in between.
    drop(pause);
    drop(placement);
    hooks.exited(code, oom_killed);
    hooks.unmount();
    // Its last output in the files before the CLI hears that it ended.
    drop(stdio_held);
    events.send(&Event::Exited { code });
    code
}

/// A session of our own, so a Ctrl-C typed at the CLI's terminal does not
/// kill the monitor (the CLI forwards signals instead). The container's
/// output always reaches its log, as docker's does: without a terminal
/// through relays (relay.rs) that also copy it to the CLI's stdio when
/// attached; with one the monitor copies the pty (`supervise`). Detached,
/// stdin is /dev/null, or with `-i` a pipe kept open and never written, as
/// docker keeps a `-di` container's stdin open (`sh` waits on it rather
/// than exiting at once); the monitor holds that pipe's write end while it
/// lives.
fn leave_terminal(spec: &Spec, detach: bool, cli_alive: Option<&OwnedFd>) -> anyhow::Result<Held> {
    setsid().context("setsid")?;
    let log = match &spec.log_file {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open the container log {}", path.display()))?,
        ),
        None => None,
    };
    let mut stdin = None;
    if detach {
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("open /dev/null")?;
        if spec.interactive && !spec.tty {
            let (read, write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
            dup2_stdin(&read).context("dup2 stdin")?;
            stdin = Some(write);
        } else {
            dup2_stdin(&null).context("dup2 stdin")?;
        }
        dup2_stdout(&null).context("dup2 stdout")?;
        // Our own messages: through the stderr relay below without a
        // terminal; with one, as plain lines among the entries (which
        // `logs` shows as they are).
        let stderr = match &log {
            Some(log) if spec.tty => log.as_fd(),
            _ => null.as_fd(),
        };
        dup2_stderr(stderr).context("dup2 stderr")?;
    }
    let logged = super::relay::Logged {
        log: log.as_ref(),
        rotation: log_rotation(spec),
        cli_alive: cli_alive.map(|fd| fd.as_fd()),
    };
    let relays = super::relay::interpose(spec.tty, spec.interactive && !detach, Some(logged))?;
    Ok(Held {
        stdin,
        _relays: relays,
        log,
    })
}

/// How the container's log is rotated, if it is.
fn log_rotation(spec: &Spec) -> Option<super::json_log::Rotation> {
    let path = spec.log_file.as_deref()?;
    super::json_log::Rotation::of(path, &spec.log_options)
}

/// What the monitor holds for the container's stdio while it lives.
struct Held {
    /// Detached: the open stdin of a `-di` container.
    stdin: Option<OwnedFd>,
    /// Without a terminal: the relays of stdout and stderr (and stdin
    /// when attached with `-i`), waited for last.
    _relays: super::relay::Relays,
    /// The container's log (none with `--log-driver none`), which a
    /// terminal's output goes to.
    log: Option<std::fs::File>,
}

/// Where the monitor copies a container's pty output: the log, and when
/// attached our stdout (the CLI's) while it takes it. The CLI may be gone
/// (killed): the container goes on, and its output into the log.
pub struct PtyOutput<'log> {
    stdout: bool,
    log: Option<LineWriter<'log>>,
}

impl std::io::Write for PtyOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stdout {
            let mut out = std::io::stdout();
            self.stdout = out.write_all(buf).and_then(|()| out.flush()).is_ok();
        }
        if let Some(log) = &mut self.log {
            log.write(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The container's first process, parked until [`Self::release`].
struct ContainerChild {
    pid: Pid,
    /// We write one byte when the rootfs is mounted and keep it open until
    /// the exec result is in: the child treats a hang-up as our death.
    go: OwnedFd,
    /// Close-on-exec in the child: EOF alone means the exec succeeded.
    errors: OwnedFd,
}

impl ContainerChild {
    fn fork(
        spec: &Spec,
        security: &Prepared,
        slave: Option<(OwnedFd, Console)>,
        in_user_namespace: bool,
    ) -> anyhow::Result<Self> {
        let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        let (errors_read, errors_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        match namespaces::fork_into_new_pid_namespace(
            in_user_namespace,
            spec.network.mode.is_private(),
        )
        .context("fork the container process")?
        {
            ForkResult::Child => {
                drop((go_write, errors_read));
                // Nothing of the CLI's or the monitor's reaches the
                // container (see `sys::close_all_but`): a `-w
                // /proc/self/fd/N` or an image's WORKDIR so named led to
                // a directory the caller held, or the stdin copy a relay
                // keeps (found by a review).
                let mut keep = vec![go_read.as_fd(), errors_write.as_fd()];
                if let Some((slave, console)) = &slave {
                    keep.push(slave.as_fd());
                    if let Console::Mount(mount) = console {
                        keep.push(mount.as_fd());
                    }
                }
                crate::sys::close_all_but(&keep);
                let err = container_init(spec, security, slave, &go_read);
                process::send_start_error(errors_write, &err);
                crate::sys::exit_immediately(err.exit_code())
            }
            ForkResult::Parent { child } => Ok(Self {
                pid: child,
                go: go_write,
                errors: errors_read,
            }),
        }
    }

    /// The rootfs could not be mounted: the parked child goes away.
    fn abandon(self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        reap(self.pid);
    }

    /// Lets the child go on and waits until it exec'd or failed.
    fn release(self) -> Result<(), StartError> {
        nix::unistd::write(&self.go, &[1])
            .map_err(|errno| StartError::from_errno("release the container process", errno))?;
        process::receive_start_result(self.errors)
    }
}

/// pid 1 of the new pid namespace, until it execs the user's command
/// (which then is pid 1: docker's default, without --init). Returns only
/// the error that stopped it.
fn container_init(
    spec: &Spec,
    security: &Prepared,
    slave: Option<(OwnedFd, Console)>,
    go: &OwnedFd,
) -> StartError {
    match init_steps(spec, security, slave, go) {
        Ok(never) => match never {},
        Err(err) => err,
    }
}

fn init_steps(
    spec: &Spec,
    security: &Prepared,
    slave: Option<(OwnedFd, Console)>,
    go: &OwnedFd,
) -> Result<Infallible, StartError> {
    // Until "go", a monitor that dies closes the pipe and wait_for_go
    // fails. After it, if the monitor dies (even by SIGKILL), so does the
    // container: with pid 1 gone, the kernel kills the rest of the pid
    // namespace. Armed only now because a rootless monitor is our parent
    // only once its pid namespace helper has exited (see namespaces.rs);
    // process::exec checks the pipe again after arming it.
    process::wait_for_go(go)?;
    prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|errno| StartError::from_errno("set parent death signal", errno))?;
    // The monitor has moved us into the container's cgroup by now.
    super::cgroup::enter_namespace()
        .map_err(|errno| StartError::from_errno("unshare the cgroup namespace", errno))?;
    namespaces::unshare_container_namespaces()?;
    let (slave, console) = slave.unzip();
    attach_stdio(slave, spec.interactive)?;
    rootfs::enter(spec, console.as_ref())?;
    namespaces::configure(&spec.hostname, spec.network.mode.is_private())?;
    let process = ProcessSpec {
        args: &spec.args,
        env: &spec.env,
        cwd: &spec.cwd,
        make_cwd: true,
        read_only_root: spec.security.read_only_rootfs,
        init: spec.init,
        user: &spec.user,
        hostname: spec.hostname.clone(),
        tty: spec.tty,
        security,
        ulimits: &spec.resources.ulimits,
    };
    Err(process::exec(&process, Some(go.as_fd())))
}

/// Waits for the container to exit, copying its pty's output (a terminal's
/// master) to `output` if it has one, then what is left in the pty; once
/// `cli_alive` hangs up (the attached CLI is gone) none goes to our stdout.
pub fn supervise(
    pid: Pid,
    mut pty: Option<(BorrowedFd<'_>, &mut PtyOutput<'_>)>,
    mut cli_alive: Option<OwnedFd>,
) -> i32 {
    let Ok(exited) = sys::pidfd_open(pid) else {
        return reap(pid);
    };
    loop {
        let mut fds = vec![PollFd::new(exited.as_fd(), PollFlags::POLLIN)];
        let pty_index = pty.as_ref().map(|(master, _)| {
            fds.push(PollFd::new(*master, PollFlags::POLLIN));
            fds.len() - 1
        });
        let cli_index = cli_alive.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return reap(pid),
        }
        let ready = |index: Option<usize>| {
            index
                .and_then(|i| fds.get(i))
                .and_then(PollFd::revents)
                .is_some_and(|events| !events.is_empty())
        };
        let container_exited = ready(Some(0));
        let output = ready(pty_index);
        let cli_gone = ready(cli_index);
        drop(fds);
        if cli_gone {
            cli_alive = None;
            if let Some((_, out)) = &mut pty {
                out.stdout = false;
            }
        }
        if output && !pty.as_mut().is_some_and(|(m, out)| copy_once(*m, out)) {
            pty = None;
        }
        if container_exited {
            let code = reap(pid);
            if let Some((master, out)) = pty {
                super::attach::drain(master, out);
            }
            return code;
        }
    }
}

/// Waits for `pid` and returns its exit code (128 + signal when killed).
pub fn reap(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Err(_) => return EXIT_STRATA_FAILED,
            Ok(status) => {
                if let Some(code) = exit_code_of_status(status) {
                    return code;
                }
            }
        }
    }
}

/// Ends a forked helper process without running the parent's exit
/// handlers (they belong to the CLI: its store, its buffers).
pub fn exit_process(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    crate::sys::exit_immediately(code)
}
