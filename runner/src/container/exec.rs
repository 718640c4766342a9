//! `strata exec`: a new process in a running container's namespaces.
//!
//! ```text
//! CLI          opens /proc/<pid>/ns/*, the pty; forks the helper; attach.rs
//!  +- helper   setsid; stdio relays; setns into user, ipc, uts, net; a
//!      |       subreaper; forks the joiner; reports to the CLI
//!      +- joiner   the container's cgroup; setns into cgroup, pid, mnt;
//!          |       forks the process (a pid namespace applies to children
//!          |       only), reports its pid, exits
//!          +- process  the helper's child once the joiner is gone; pty,
//!                      user, cwd, exec
//! ```
//!
//! The process is born in the container's mount namespace: none of ours
//! is ever in its pid namespace with the host's root. One that was (the
//! process joined mnt itself, after the fork) showed the host's root and
//! cwd, the caller's descriptors and environment, and strata's binary
//! through /proc/PID to the container, whose CAP_SYS_PTRACE (`--cap-add`)
//! overrides the non-dumpable guard (found by a review; runc joins every
//! namespace before its last fork for the same reason).

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};

use anyhow::Context as _;
use nix::fcntl::OFlag;
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{pipe2, setsid, ForkResult, Pid};

use super::attach;
use super::events::{Event, EventReceiver, EventSender};
use super::exit::StartError;
use super::monitor::{exit_process, reap, supervise};
use super::namespaces::NamespaceFiles;
use super::process::{self, ProcessSpec};
use super::pty::{attach_stdio, Pty};
use super::security::{Prepared, SecurityOptions};
use crate::sys;

/// What `strata exec` asks for: the process and the container's
/// recorded privileges, which it gets as the container's own processes do.
#[derive(Debug, Clone, Copy)]
pub struct ExecSpec<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub user: &'a str,
    pub tty: bool,
    pub interactive: bool,
    /// `exec -d`: the CLI returns once the process runs; the helper stays
    /// to reap it, the process's stdio is /dev/null.
    pub detach: bool,
    pub security: &'a SecurityOptions,
    pub ulimits: &'a [layerdb::Ulimit],
}

/// What the exec'd process runs with.
struct ExecRequest<'a> {
    namespaces: NamespaceFiles,
    /// The container's cgroup, which the process (not the helper, which
    /// must not count against its limits nor be frozen with it) joins
    /// before the container's cgroup namespace.
    cgroup: Option<super::cgroup::ContainerCgroup>,
    slave: Option<OwnedFd>,
    spec: ExecSpec<'a>,
    security: Prepared,
}

/// Runs `spec.args` inside the container whose init is `pid` (on the host),
/// started at `start` ([`layerdb::pins::process_start`]), and returns its
/// exit code. Start failures are errors carrying a [`StartError`] (see
/// [`super::exit_code_for`]). Must be called while the CLI has a single
/// thread.
pub fn exec_in((pid, start): (i32, u64), spec: ExecSpec<'_>) -> anyhow::Result<i32> {
    anyhow::ensure!(!spec.args.is_empty(), "no command specified");
    let security = Prepared::new(spec.security)?;
    let namespaces = NamespaceFiles::open(Pid::from_raw(pid))?;
    let cgroup = super::cgroup::ContainerCgroup::of_process(pid)?;
    // What was opened is the init's only if the pid still names the
    // process that started then: a pid freed and reused since names
    // another process, whose namespaces (the host's) must not be joined.
    anyhow::ensure!(
        layerdb::pins::process_alive_since(pid, start),
        "container process {pid} is not running"
    );
    let pty = spec.tty.then(Pty::open).transpose()?;
    let (master, slave) = match pty {
        Some(pty) => (Some(pty.master), Some(pty.slave)),
        None => (None, None),
    };
    let (events_read, events_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    match sys::fork().context("fork the exec helper")? {
        ForkResult::Child => {
            drop((events_read, master));
            let request = ExecRequest {
                namespaces,
                cgroup,
                slave,
                spec,
                security,
            };
            exit_process(run_helper(request, &EventSender::new(events_write)))
        }
        ForkResult::Parent { child } if spec.detach => {
            drop((events_write, slave, namespaces, master));
            // The helper goes on alone: it reaps the process and exits.
            let started = EventReceiver::new(events_read).wait_started();
            if started.is_err() {
                reap(child);
            }
            started.map(|_| 0)
        }
        ForkResult::Parent { child } => {
            drop((events_write, slave, namespaces));
            let result = attach::foreground(
                EventReceiver::new(events_read),
                master,
                spec.interactive,
                true,
            );
            reap(child);
            result
        }
    }
}

/// The helper: joins the namespaces, forks the process, reports its start
/// and its exit. Returns the exit code.
fn run_helper(request: ExecRequest<'_>, events: &EventSender) -> i32 {
    let fail = |err: StartError| {
        let code = err.exit_code();
        events.send(&Event::Failed(err));
        code
    };
    // Not dumpable from here until the command's execve: the process it
    // forks into the container's namespaces is the host's strata binary
    // holding the caller's descriptors (a directory open in the caller's
    // shell) until then, and the container's root could otherwise open
    // them, its memory and its binary through /proc/PID (CVE-2016-9962,
    // CVE-2024-21626's shape). execve makes it dumpable again.
    if let Err(errno) = nix::sys::prctl::set_dumpable(false) {
        return fail(StartError::from_errno("prctl PR_SET_DUMPABLE", errno));
    }
    let spec = &request.spec;
    if let Err(err) = leave_cli(spec.detach) {
        return fail(err);
    }
    // The CLI's stdio behind pipes, as a container's is (relay.rs); held
    // until the process has exited and its output is through. Detached,
    // /dev/null: the CLI is gone once the process runs.
    let relays = match spec.detach {
        true => stdio_to_null().map(|()| None),
        false => super::relay::interpose(spec.tty, spec.interactive, None).map(Some),
    };
    let relays = match relays {
        Ok(relays) => relays,
        Err(err) => return fail(StartError::other(crate::error_text::describe(&err))),
    };
    if let Err(err) = request.namespaces.join_for_helper() {
        return fail(err);
    }
    if let Err(errno) = prctl::set_child_subreaper(true) {
        return fail(StartError::from_errno("become a child subreaper", errno));
    }
    let pid = match fork_process(request) {
        Ok(pid) => pid,
        Err(err) => return fail(err),
    };
    events.send(&Event::Started { pid: pid.as_raw() });
    let code = supervise(pid, None, None);
    drop(relays);
    events.send(&Event::Exited { code });
    code
}

/// A session of our own (Ctrl-C at the CLI's terminal is forwarded by the
/// CLI, it must not kill us or the relays), and death with the CLI unless
/// detached (then the CLI leaves first).
fn leave_cli(detach: bool) -> Result<(), StartError> {
    setsid().map_err(|errno| StartError::from_errno("setsid", errno))?;
    if detach {
        return Ok(());
    }
    prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|errno| StartError::from_errno("set parent death signal", errno))
}

/// stdin, stdout and stderr on /dev/null, for a detached process.
fn stdio_to_null() -> anyhow::Result<()> {
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        sys::dup_onto(null.as_fd(), fd)?;
    }
    Ok(())
}

/// Forks the joiner, which forks the process (see the module's notes),
/// and waits for the process's exec.
fn fork_process(request: ExecRequest<'_>) -> Result<Pid, StartError> {
    let pipe = |what| pipe2(OFlag::O_CLOEXEC).map_err(|errno| StartError::from_errno(what, errno));
    let (errors_read, errors_write) = pipe("pipe")?;
    let (alive_read, alive_write) = pipe("pipe")?;
    let (pid_read, pid_write) = pipe("pipe")?;
    match sys::fork()
        .map_err(|err| StartError::other(format!("fork: {}", crate::error_text::describe(&err))))?
    {
        ForkResult::Child => {
            drop((errors_read, alive_write, pid_read));
            join_and_fork(request, alive_read, errors_write, pid_write)
        }
        ForkResult::Parent { child: joiner } => {
            drop((errors_write, alive_read, pid_write));
            let mut bytes = [0u8; 4];
            let forked = std::fs::File::from(pid_read).read_exact(&mut bytes);
            // Reaped, the joiner has left the process to us.
            reap(joiner);
            if forked.is_err() {
                // It failed before the fork, and said why; or it was killed
                // after (the container's memory limit), and the process it
                // left waits for our word: a hang-up ends it, and its end
                // the wait below.
                drop(alive_write);
                return Err(match process::receive_start_result(errors_read) {
                    Err(err) => err,
                    Ok(()) => StartError::other("the exec joiner died"),
                });
            }
            let pid = Pid::from_raw(i32::from_be_bytes(bytes));
            // Our child now: it may arm its parent-death signal.
            let released = nix::unistd::write(&alive_write, &[1])
                .map_err(|errno| StartError::from_errno("release the exec process", errno))
                .and_then(|_| process::receive_start_result(errors_read));
            drop(alive_write);
            match released {
                Ok(()) => Ok(pid),
                Err(err) => {
                    reap(pid);
                    Err(err)
                }
            }
        }
    }
}

/// The joiner: joins the container's cgroup and its cgroup, pid and mount
/// namespaces, takes on the process's user, capabilities and seccomp
/// filter (every step before the exec: see `process::prepare`), forks the
/// process, reports its pid and exits. The process is thus never in the
/// container's pid namespace with more than the container's processes
/// hold.
fn join_and_fork(
    request: ExecRequest<'_>,
    alive: OwnedFd,
    errors: OwnedFd,
    pid_pipe: OwnedFd,
) -> ! {
    let ExecRequest {
        namespaces,
        cgroup,
        slave,
        spec,
        security,
    } = request;
    let joined = (|| {
        // Counted while this process's /proc still shows it.
        let threads = sys::thread_count()
            .map_err(|err| StartError::other(format!("count threads: {err}")))?;
        if let Some(cgroup) = &cgroup {
            cgroup
                .add(0)
                .map_err(|err| StartError::other(crate::error_text::describe(&err)))?;
        }
        namespaces.join_for_process()?;
        drop((namespaces, cgroup));
        // Nothing of the caller's reaches the container, not even through
        // /proc/PID/fd of the process before its exec (which a container
        // with CAP_SYS_PTRACE may open): see `sys::close_all_but`.
        let mut keep = vec![alive.as_fd(), errors.as_fd(), pid_pipe.as_fd()];
        keep.extend(slave.as_ref().map(|s| s.as_fd()));
        sys::close_all_but(&keep);
        let hostname = nix::unistd::gethostname()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let process = ProcessSpec {
            args: spec.args,
            env: spec.env,
            cwd: spec.cwd,
            make_cwd: false,
            read_only_root: false,
            init: false,
            user: spec.user,
            hostname,
            tty: spec.tty,
            security: &security,
            ulimits: spec.ulimits,
        };
        let ready = process::prepare(&process, || Ok(()))?;
        let forked = sys::fork_counted(threads).map_err(|err| {
            StartError::other(format!("fork: {}", crate::error_text::describe(&err)))
        })?;
        Ok((forked, ready))
    })();
    match joined {
        Ok((ForkResult::Child, ready)) => {
            drop(pid_pipe);
            let err = exec_process(slave, spec.interactive, &ready, &alive);
            process::send_start_error(errors, &err);
            exit_process(err.exit_code())
        }
        Ok((ForkResult::Parent { child }, _)) => {
            let _ = std::fs::File::from(pid_pipe).write_all(&child.as_raw().to_be_bytes());
            sys::exit_immediately(0)
        }
        Err(err) => {
            process::send_start_error(errors, &err);
            exit_process(err.exit_code())
        }
    }
}

/// The process: once the helper is its parent, its parent-death signal,
/// its terminal, the exec.
fn exec_process(
    slave: Option<OwnedFd>,
    interactive: bool,
    ready: &process::Ready,
    alive: &OwnedFd,
) -> StartError {
    // The joiner is gone once the helper says so: a parent-death signal
    // armed before would come with the joiner's exit.
    let steps = process::wait_for_go(alive)
        .and_then(|()| process::arm_parent_death_signal(Some(alive.as_fd())))
        .and_then(|()| attach_stdio(slave, interactive));
    match steps {
        Ok(()) => process::exec_ready(ready),
        Err(err) => err,
    }
}
