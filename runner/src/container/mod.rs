//! Running containers: namespaces, rootfs, pivot_root, the user's process,
//! its pty, and the per-container monitor.
//!
//! Processes and where each file's code runs:
//!
//! ```text
//! CLI (strata run)           launch(): opens the pty, forks the monitor, then
//!  |                         attach.rs: copies the pty, forwards signals, gets the exit code
//!  +- monitor                monitor.rs: setsid; forks the container init *before*
//!      |                     mount_rootfs() may start FUSE threads; releases it; waits
//!      +- container pid 1    monitor.rs/namespaces.rs/rootfs.rs/process.rs: unshare
//!                            mnt/uts/ipc[/net], pty, mounts, pivot_root, user, exec
//! ```
//!
//! Rootless (an ordinary user), the monitor first makes a user namespace,
//! which the CLI maps from outside (`userns.rs`: the user is root in the
//! container, ids 1.. are the /etc/subuid range when there is one), and a
//! mount namespace owned by it: the FUSE mount is made there, invisible to
//! the host. Its pid namespace comes from a short-lived helper
//! (`namespaces.rs`), since the monitor may not setns back into the host's.
//!
//! The user's command becomes pid 1 of its pid namespace, as in docker
//! without `--init`: `ps` shows it as PID 1, and its exit is the
//! container's exit. Start failures travel as typed [`StartError`]s over
//! pipes and give docker's exit codes (125/126/127).

pub mod archive;
mod attach;
pub mod attach_input;
mod capabilities;
pub mod cgroup;
mod events;
mod exec;
mod exit;
pub mod host_devices;
pub mod in_root;
mod init;
pub mod json_log;
mod lookup;
mod monitor;
mod monitor_socket;
mod namespaces;
pub mod pause;
mod process;
mod pty;
mod relay;
mod rootfs;
mod seccomp;
mod security;
mod signals;
mod spec;
pub mod ulimits;
mod user;
mod userns;
mod volume_seed;

pub use exec::{exec_in, ExecSpec};
pub use exit::exit_code_for;
pub use monitor::{reap, MonitorHooks};
pub use namespaces::{private_mount_namespace, sync_root_filesystem};
pub use pty::RawMode;
pub use rootfs::{bind_volumes_for_copy, remount};
pub use security::options_from_flags;
pub use signals::kill;
pub use spec::{EtcFiles, Spec};

use anyhow::Context as _;
use nix::fcntl::OFlag;
use nix::unistd::{pipe2, ForkResult, Pid};

use events::{EventReceiver, EventSender};
use monitor::{exit_process, MonitorSetup};
use pty::Pty;
use userns::{MapHandshake, UserNamespace};

/// How a launched container ended up, as far as the CLI is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Foreground: the container ran and exited with `code` (128 + signal
    /// when a signal killed it). The monitor has unmounted the rootfs.
    Exited { code: i32 },
    /// Detached: the container is running under `monitor_pid`; `pid` is
    /// its init on the host.
    Detached { monitor_pid: i32, pid: i32 },
}

/// Starts the container described by `spec` under a new monitor process.
///
/// Must be called while the CLI has a single thread (it forks). The hooks
/// run in the monitor only; the CLI's copy is dropped unused. A start
/// failure is an error carrying a [`StartError`]: print it with a `strata: `
/// prefix and exit with [`exit_code_for`].
///
/// Run by an ordinary user, the monitor makes a user namespace (mapped
/// from here, see `userns.rs`) and a mount namespace before it mounts.
pub fn launch(spec: &Spec, hooks: Box<dyn MonitorHooks>, detach: bool) -> anyhow::Result<Outcome> {
    spec.validate()?;
    let security = security::Prepared::new(&spec.security)?;
    let userns = UserNamespace::for_caller()?;
    if let Some(notice) = userns.as_ref().and_then(|userns| userns.notice.as_deref()) {
        eprintln!("strata: {notice}");
    }
    let (monitor_side, launcher_side) = match &userns {
        Some(_) => {
            let (monitor, launcher) = MapHandshake::new()?.split();
            (Some(monitor), Some(launcher))
        }
        None => (None, None),
    };
    let pty = spec.tty.then(Pty::open).transpose()?;
    let (events_read, events_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (alive_read, alive_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    match crate::sys::fork().context("fork the container monitor")? {
        ForkResult::Child => {
            drop((events_read, alive_write, launcher_side));
            crate::sys::hide_arguments();
            let mut hooks = hooks;
            let setup = MonitorSetup {
                pty,
                events: EventSender::new(events_write),
                cli_alive: (!detach).then_some(alive_read),
                detach,
                userns: monitor_side,
                security,
            };
            let code = monitor::run(spec, hooks.as_mut(), setup);
            drop(hooks);
            exit_process(code)
        }
        ForkResult::Parent { child } => {
            drop((events_write, alive_read, hooks, monitor_side));
            if let (Some(userns), Some(launcher)) = (&userns, launcher_side) {
                if let Err(err) = launcher.map(userns, child) {
                    reap(child);
                    return Err(err.context("map the container's user namespace"));
                }
            }
            let master = pty.map(|pty| pty.master);
            let events = EventReceiver::new(events_read);
            let outcome = if detach {
                wait_detached(events, child)
            } else {
                // The monitor copies the pty's output (to our stdout and
                // the log): a container outlives its CLI, as with docker.
                attach::foreground(events, master, spec.interactive, false)
                    .map(|code| Outcome::Exited { code })
            };
            // Foreground: the monitor unmounts before it exits, so the caller
            // may remove the container's files once we return.
            if !matches!(outcome, Ok(Outcome::Detached { .. })) {
                reap(child);
            }
            drop(alive_write);
            outcome
        }
    }
}

fn wait_detached(mut events: EventReceiver, monitor: Pid) -> anyhow::Result<Outcome> {
    let pid = events.wait_started()?;
    Ok(Outcome::Detached {
        monitor_pid: monitor.as_raw(),
        pid,
    })
}

/// Becomes `command`; one that cannot run is named, with a shell's exit
/// code: 127 when not found, 126 otherwise (root's `unshare nosuchcmd`
/// said only "No such file or directory", with 125).
fn exec_command(command: &mut std::process::Command, name: &str) -> ! {
    use std::os::unix::process::CommandExt as _;
    let err = command.exec();
    eprintln!("strata: {name}: {err}");
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    exit_process(code)
}

/// `strata unshare`: runs `args` in a new user namespace where the caller
/// is root (with its /etc/subuid range mapped when granted) and a new mount
/// namespace, as `podman unshare` does: where a user's FUSE mounts and
/// container files can be handled with the ids containers see. Root gets
/// the command run as it is. Must be called with a single thread (it forks).
pub fn unshare(args: &[String]) -> anyhow::Result<i32> {
    let Some(userns) = UserNamespace::for_caller()? else {
        exec_command(
            std::process::Command::new(&args[0]).args(&args[1..]),
            &args[0],
        )
    };
    if let Some(notice) = &userns.notice {
        eprintln!("{notice}");
    }
    let (monitor_side, launcher_side) = MapHandshake::new()?.split();
    match crate::sys::fork().context("fork")? {
        ForkResult::Child => {
            drop(launcher_side);
            if let Err(e) = monitor_side.enter() {
                eprintln!("strata: {}", crate::error_text::describe(&e));
                crate::sys::exit_immediately(125);
            }
            exec_command(
                std::process::Command::new(&args[0])
                    .args(&args[1..])
                    .env("STRATA_UNSHARED", "1"),
                &args[0],
            )
        }
        ForkResult::Parent { child } => {
            drop(monitor_side);
            launcher_side.map(&userns, child)?;
            let status = nix::sys::wait::waitpid(child, None).context("wait")?;
            Ok(exit::exit_code_of_status(status).unwrap_or(125))
        }
    }
}
