//! `strata __keep ID`: carries out a container's restart policy, docker's
//! restart manager without a daemon. `__launch` starts it for a container
//! whose policy restarts (a start by hand does, not a restart by the
//! keeper); it waits for that launch to end, then for each monitor of
//! the container to exit, and starts the container again when the policy
//! (`restart_policy.rs`) says so, after its delay, with `__launch
//! --kept`.
//!
//! It runs outside the container's namespaces, so a rootless container
//! gets a fresh user namespace from the launch as at its first start (its
//! monitor, inside one, could not make another). One keeper per
//! container holds its `keeper.lock`; a second one leaves at once. It
//! ends when the policy says no, when the container was stopped, killed
//! or removed by hand (`stop`, `kill`, `rm -f` mark it so), or when it is
//! gone.

use super::Ctx;
use crate::cli::KeepArgs;
use crate::liveness;
use crate::restart_policy::Backoff;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use layerdb::State;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub fn keep(ctx: &Ctx, args: KeepArgs) -> Result<i32> {
    // Its own session: the terminal that ran `run` may close.
    let _ = nix::unistd::setsid();
    let paths = ContainerPaths::new(&ctx.root, &args.id);
    let Some(_lock) = crate::file_lock::try_exclusive(&paths.keeper_lock())? else {
        return Ok(0); // another keeper watches the container
    };
    // The launch that started this is its parent while it lives: with a
    // descriptor of that pid held, the parent still being it means the
    // descriptor is the launch's (once it is gone this process has another
    // parent, and the pid may name someone else).
    if let Ok(launcher) = crate::sys::pidfd_open(Pid::from_raw(args.launcher)) {
        if nix::unistd::getppid().as_raw() == args.launcher {
            let mut fds = [PollFd::new(launcher.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::NONE);
        }
    }
    let mut backoff = Backoff::default();
    // When the launch waited for began: its run, if it started one, began
    // after.
    let mut since = args.since;
    loop {
        let Ok(rec) = liveness::container_from_files(&ctx.root, args.id.as_str()) else {
            return Ok(0); // removed
        };
        let (code, ran) = match rec.state {
            State::Running { monitor_pid, .. } | State::Paused { monitor_pid, .. } => {
                // Looked at again every second: a monitor's pid is only
                // its own while the state says so.
                liveness::wait_exit(monitor_pid, Some(Duration::from_secs(1)));
                continue;
            }
            State::Created => return Ok(0),
            // A start that failed (no such command, a bad mount) left the
            // last run's times, or none: docker restarts only what ran,
            // and its restart manager gives up once a start fails.
            State::Exited { started_ns, .. } if started_ns == 0 || started_ns < since => {
                return Ok(0)
            }
            State::Exited {
                code,
                started_ns,
                finished_ns,
                ..
            } => {
                let ran = u64::try_from(finished_ns - started_ns).unwrap_or(0);
                (code, Duration::from_nanos(ran))
            }
        };
        if paths.stopped_by_hand().exists() {
            return Ok(0);
        }
        let count = restart_count(&paths);
        let Some(delay) = backoff.next(&rec.restart, code, count, ran) else {
            return Ok(0);
        };
        let pending = Pending::mark(&paths)?;
        if !wait_unless_stopped(&paths, delay) {
            return Ok(0);
        }
        // A start by hand and this one take turns, as two starts do; one
        // made meanwhile has started it already.
        let _turn = super::start::take_turn(ctx, &rec)?;
        let Ok(rec) = liveness::container_from_files(&ctx.root, args.id.as_str()) else {
            return Ok(0);
        };
        if !rec.state.can_start() || paths.stopped_by_hand().exists() {
            continue;
        }
        // Read again: a start by hand meanwhile counts from zero.
        let count = restart_count(&paths);
        std::fs::write(paths.restart_count(), (count + 1).to_string())
            .with_context(|| format!("write {}", paths.restart_count().display()))?;
        since = crate::clock::now_ns();
        let _ = super::run::relaunch(ctx, &rec.id)
            .arg("--detach")
            .arg("--kept")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        drop(pending);
    }
}

/// The `restart-pending` mark while the keeper waits and starts, holding
/// its pid; gone when dropped, however the wait ends.
struct Pending(std::path::PathBuf);

impl Pending {
    fn mark(paths: &ContainerPaths) -> Result<Pending> {
        let path = paths.restart_pending();
        std::fs::write(&path, std::process::id().to_string())
            .with_context(|| format!("write {}", path.display()))?;
        Ok(Pending(path))
    }
}

/// Whether the container's keeper is waiting to start it again: its mark
/// is there, the keeper that wrote it lives (a killed keeper's mark says
/// nothing) and the container was not stopped by hand since (the keeper
/// sees that within 100 ms).
pub fn restart_pending(paths: &ContainerPaths) -> bool {
    if paths.stopped_by_hand().exists() {
        return false;
    }
    std::fs::read_to_string(paths.restart_pending())
        .ok()
        .and_then(|pid| pid.trim().parse().ok())
        .is_some_and(liveness::process_alive)
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How many times the policy has started the container since its last
/// start by hand.
pub fn restart_count(paths: &ContainerPaths) -> u32 {
    std::fs::read_to_string(paths.restart_count())
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits `delay`, looking every 100 ms whether the container was stopped
/// by hand or removed meanwhile: false if it was.
fn wait_unless_stopped(paths: &ContainerPaths, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        if paths.stopped_by_hand().exists() || !paths.dir.exists() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}
