//! `strata pause` and `unpause`: every process of a container frozen
//! until unpaused, as docker's are. The container's monitor freezes and
//! thaws it (`container::pause`, the freezer `commit` uses); the state
//! file says `paused` meanwhile, for `ps`, `inspect` and the verbs that
//! treat a paused container differently (`exec` refuses it, `start`
//! points to `unpause`, `stop` and `kill` thaw it after their signal).

use super::Ctx;
use crate::cli::ContainersArgs;
use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::{ContainerRecord, State};

pub fn pause(ctx: &Ctx, args: ContainersArgs) -> Result<i32> {
    Ok(super::for_each_container(&args.containers, |name| {
        let mut rec = ctx.container(name)?;
        // Pauses and unpauses of a container take turns, as starts do.
        let _turn = super::start::take_turn(ctx, &rec)?;
        // The state first: a client that dies before the hold leaves a
        // container recorded paused that runs, which `unpause` (a release
        // of a container not frozen does nothing) sets right; the other
        // order could leave a frozen container that nothing says is.
        let mut was = State::Created;
        crate::run_state::update(&ctx.root, &mut rec, |state| {
            was = state.clone();
            match *state {
                State::Running {
                    monitor_pid,
                    monitor_start,
                    pid,
                    started_ns,
                } => Some(State::Paused {
                    monitor_pid,
                    monitor_start,
                    pid,
                    started_ns,
                }),
                _ => None,
            }
        })?;
        match was {
            State::Running { .. } => {}
            State::Paused { .. } => bail!("Container {} is already paused", rec.id),
            _ => bail!("Container {} is not running", rec.id),
        }
        let dir = ContainerPaths::of(&ctx.root, &rec).dir;
        if let Err(err) = crate::container::pause::hold(&dir) {
            let _ = record_running(ctx, &mut rec);
            return Err(err.context(format!("cannot pause container {}", rec.id)));
        }
        outln!("{name}")
    }))
}

pub fn unpause(ctx: &Ctx, args: ContainersArgs) -> Result<i32> {
    Ok(super::for_each_container(&args.containers, |name| {
        let rec = ctx.container(name)?;
        let _turn = super::start::take_turn(ctx, &rec)?;
        // As it is now that the turn is ours.
        let mut rec = crate::run_state::current(&ctx.root, rec);
        if !matches!(rec.state, State::Paused { .. }) {
            bail!("Container {} is not paused", rec.id);
        }
        resume(ctx, &mut rec)?;
        outln!("{name}")
    }))
}

/// Thaws a paused container through its monitor and records it running.
pub(super) fn resume(ctx: &Ctx, rec: &mut ContainerRecord) -> Result<()> {
    let dir = ContainerPaths::of(&ctx.root, rec).dir;
    crate::container::pause::release(&dir)
        .with_context(|| format!("cannot unpause container {}", rec.id))?;
    record_running(ctx, rec)
}

fn record_running(ctx: &Ctx, rec: &mut ContainerRecord) -> Result<()> {
    crate::run_state::update(&ctx.root, rec, |state| match *state {
        State::Paused {
            monitor_pid,
            monitor_start,
            pid,
            started_ns,
        } => Some(State::Running {
            monitor_pid,
            monitor_start,
            pid,
            started_ns,
        }),
        _ => None,
    })
}
