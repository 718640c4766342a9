//! `strata rm` (`container rm`): removes containers, killing running ones
//! with `-f`.

use super::stop::{signal, wait_monitor};
use super::Ctx;
use crate::cli::RmArgs;
use crate::liveness;
use crate::signal::Signal;
use anyhow::{bail, Result};

pub fn rm(ctx: &Ctx, args: RmArgs) -> Result<i32> {
    let failed = super::each_container(&args.containers, |name| {
        remove(ctx, &args, name)?;
        outln!("{name}")
    });
    // docker's `rm -f` of a container that is not there says so and
    // succeeds: the cleanup scripts' idiom.
    let failed = failed
        .iter()
        .any(|(_, e)| !(args.force && is_no_such_container(e)));
    Ok(if failed { 1 } else { 0 })
}

/// Removes one container, killed first with `-f`. The store is opened per
/// container: waiting for a monitor to record an exit needs the write
/// lock free.
fn remove(ctx: &Ctx, args: &RmArgs, name: &str) -> Result<()> {
    let rec = {
        let store = ctx.store_to_delete()?;
        match liveness::container(&store, name) {
            Ok(rec) => rec,
            // A record that cannot be read is still removable by its full id,
            // the way out of what `verify` reports.
            Err(e) => match (is_damaged_record(&e), name.parse()) {
                (true, Ok(id)) => return liveness::remove_damaged(&store, &id),
                _ => return Err(e),
            },
        }
    };
    let paths = crate::stack::ContainerPaths::of(&ctx.root, &rec);
    if !args.force && super::keep::restart_pending(&paths) {
        bail!("cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove", rec.name);
    }
    // Its keeper held off first; then what it may have started meanwhile is
    // seen running.
    let keeper_turn = super::stop::hold_off_keeper(ctx, &rec)?;
    let rec = match keeper_turn {
        Some(_) => ctx.container(&rec.id)?,
        None => rec,
    };
    // A running container is refused without -f, else killed and its monitor
    // waited for (with no store open: it records the exit).
    let end_run = |rec: &layerdb::ContainerRecord| -> Result<()> {
        if !args.force {
            bail!("cannot remove container \"/{}\": container is running: stop the container before removing or force remove", rec.name);
        }
        signal(ctx, rec, Signal::KILL)?;
        wait_monitor(rec)
    };
    if rec.state.is_running() {
        end_run(&rec)?;
    }
    // A copy into the stopped container (`cp`, a build's COPY) serves its tree
    // from the upper until it ends: removed under it, its server would lose
    // the directory it writes to.
    let _turn = match keeper_turn {
        Some(turn) => Some(turn),
        None => match super::start::take_turn(ctx, &rec) {
            Ok(turn) => Some(turn),
            // Removed meanwhile (a `run --rm` client): looked up below.
            Err(_) if !paths.dir.exists() => None,
            Err(e) => return Err(e),
        },
    };
    let look_up = || -> Result<Option<(layerdb::Store, _)>> {
        let store = ctx.store_to_delete()?;
        match liveness::container(&store, &rec.id) {
            Ok(rec) => Ok(Some((store, rec))),
            // The `run --rm` client of a container killed here removes it once
            // it exits: gone is what was asked.
            Err(e) if is_no_such_container(&e) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let Some((mut store, mut rec)) = look_up()? else {
        return Ok(());
    };
    // A start or restart that held the turn before this one may have started
    // it meanwhile: removed running, it ran on with no record to find or stop
    // it (found by a review of concurrent commands).
    if rec.state.is_running() {
        drop(store);
        end_run(&rec)?;
        let Some(found) = look_up()? else {
            return Ok(());
        };
        (store, rec) = found;
    }
    liveness::remove(&store, &rec)?;
    if args.volumes {
        let others = liveness::containers(&store)?;
        crate::volumes::remove_anonymous(&ctx.root, &rec, &others);
    }
    Ok(())
}

fn is_no_such_container(e: &anyhow::Error) -> bool {
    matches!(
        store_error(e),
        Some(layerdb::StoreError::NoSuchContainer(_))
    )
}

/// Whether looking a container up by its full id failed on its record.
fn is_damaged_record(e: &anyhow::Error) -> bool {
    matches!(store_error(e), Some(layerdb::StoreError::Corrupt { .. }))
}

fn store_error(e: &anyhow::Error) -> Option<&layerdb::StoreError> {
    e.downcast_ref::<layerdb::StoreError>()
}
