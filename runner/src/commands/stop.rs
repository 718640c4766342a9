//! `strata stop`: the container's stop signal, then SIGKILL after `-t`
//! seconds; and the signalling and waiting that `kill` and `rm -f` share.

use super::Ctx;
use crate::cli::StopArgs;
use crate::liveness;
use crate::signal::Signal;
use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::{ContainerRecord, State};
use std::time::{Duration, Instant};

pub(super) fn signal(ctx: &Ctx, rec: &ContainerRecord, sig: Signal) -> Result<()> {
    let (pid, monitor_pid) = match rec.state {
        State::Running {
            pid, monitor_pid, ..
        }
        | State::Paused {
            pid, monitor_pid, ..
        } => (pid, monitor_pid),
        _ => bail!("container {} is not running", rec.name),
    };
    // Stopped by hand: its restart policy lets it be (docker's "manually
    // stopped"), until a start by hand. Marked before the signal, which
    // its keeper may see the effect of at once.
    let paths = ContainerPaths::of(&ctx.root, rec);
    std::fs::write(paths.stopped_by_hand(), b"")
        .with_context(|| format!("mark {} stopped by hand", rec.name))?;
    // The record's pid is the container's first process only while its
    // monitor has not reaped it: after that (the monitor still tearing
    // down when a stop's timeout ends), the number may be another
    // process's, which must not get the signal.
    if !liveness::is_child_of(pid, monitor_pid) {
        return Ok(());
    }
    crate::container::kill(pid, sig)?;
    // A container frozen for a commit (its cgroup's freezer) would only
    // die once thawed; the commit then fails, as docker's does.
    if sig == Signal::KILL {
        crate::container::cgroup::thaw_recorded(&paths.dir)?;
    }
    // A paused one is unpaused after the signal, which it then gets, as
    // docker's daemon does for stop and kill.
    if let State::Paused { .. } = rec.state {
        let mut rec = rec.clone();
        let resumed = super::pause::resume(ctx, &mut rec);
        // Killed, it may be gone with its monitor before the thaw.
        if liveness::process_alive(pid) {
            resumed?;
        }
    }
    Ok(())
}

/// Waits (without holding the store) for a container's monitor to exit.
pub(super) fn wait_monitor(rec: &ContainerRecord) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while liveness::monitor_runs(&rec.state) {
        if Instant::now() >= deadline {
            bail!("container {} did not stop", rec.name);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

pub fn stop(ctx: &Ctx, args: StopArgs) -> Result<i32> {
    Ok(super::for_each_container(&args.containers, |name| {
        let _turn = hold_off_keeper(ctx, &ctx.container(name)?)?;
        stop_one(ctx, name, args.time)?;
        outln!("{name}")
    }))
}

/// Holds off the restart keeper of a container that has a policy: marks
/// it stopped by hand (a keeper that has not yet taken its turn then lets
/// it be), then takes the start turn (a keeper that has is starting it
/// now: that start ends first, and what it started is then seen running).
/// Without this a `stop` or `rm` that read "exited" while the keeper was
/// relaunching returned, and the container ran on (or, removed, ran on
/// with no record). `None` for a container without a policy.
pub(super) fn hold_off_keeper(
    ctx: &Ctx,
    rec: &ContainerRecord,
) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let paths = ContainerPaths::of(&ctx.root, rec);
    if !crate::restart_policy::restarts(&rec.restart) || !paths.dir.exists() {
        return Ok(None);
    }
    std::fs::write(paths.stopped_by_hand(), b"")
        .with_context(|| format!("mark {} stopped by hand", rec.name))?;
    super::start::take_turn(ctx, rec).map(Some)
}

/// Sends a running container its stop signal and waits for it to exit,
/// killing it after `time` seconds (never when negative, as docker's
/// daemon waits); a stopped one is left as it is.
pub(super) fn stop_one(ctx: &Ctx, name: &str, time: i64) -> Result<()> {
    // Read through a reader: a stop needs no index write, and the
    // writer's open writes a MANIFEST, which a full disk refuses (a
    // container filling the disk must still be stoppable).
    let rec = ctx.container(name)?;
    if !rec.state.is_running() {
        // Between two runs of its restart policy: it stays stopped (the
        // caller held its keeper off).
        return Ok(());
    }
    let sig = Signal::for_stop(&rec.config.stop_signal)?;
    signal(ctx, &rec, sig)?;
    let deadline = u64::try_from(time)
        .ok()
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    while liveness::monitor_runs(&rec.state) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(10));
    }
    if liveness::monitor_runs(&rec.state) {
        signal(ctx, &rec, Signal::KILL)?;
        wait_monitor(&rec)?;
    }
    Ok(())
}
