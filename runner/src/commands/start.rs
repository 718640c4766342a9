//! `strata start`: starts stopped containers again by re-executing `run`
//! for them; and `restart`, a stop and a start.

use super::Ctx;
use crate::cli::{StartArgs, StopArgs};
use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::{ContainerRecord, State};
use nix::fcntl::Flock;
use std::fs::File;
use std::os::unix::process::CommandExt;

pub fn start(ctx: &Ctx, args: StartArgs) -> Result<i32> {
    let attach = args.attach || args.interactive;
    if args.containers.len() > 1 && attach {
        bail!("you cannot start and attach multiple containers at once");
    }
    for name in &args.containers {
        let rec = ctx.container(name)?;
        if let State::Paused { .. } = rec.state {
            bail!("cannot start a paused container, try unpause instead");
        }
        if rec.state.is_running() {
            outln!("{name}")?;
            continue;
        }
        if attach {
            super::check_tty(args.interactive, rec.tty)?;
            // The one container: this process becomes its client, and
            // takes the start turn there (`__launch --turn`).
            let cmd = super::run::relaunch(ctx, &rec.id).arg("--turn").exec();
            return Err(cmd).context("re-executing strata to start the container");
        }
        let _turn = take_turn(ctx, &rec)?;
        let rec = ctx.container(name)?;
        if rec.state.is_running() {
            outln!("{name}")?;
            continue;
        }
        start_detached(ctx, &rec, name)?;
    }
    Ok(0)
}

/// `strata restart`: each container stopped as `stop` does (its stop
/// signal, SIGKILL after `-t` seconds), then started in the background.
/// An `--rm` container is kept across it, as docker keeps it: its monitor
/// finds the `restarting` mark and leaves it.
pub fn restart(ctx: &Ctx, args: StopArgs) -> Result<i32> {
    for name in &args.containers {
        let rec = ctx.container(name)?;
        let _turn = take_turn(ctx, &rec)?;
        let mark = ContainerPaths::of(&ctx.root, &rec).restarting();
        std::fs::write(&mark, b"").with_context(|| format!("mark {name} restarting"))?;
        let restarted = super::stop::stop_one(ctx, name, args.time)
            .and_then(|()| start_detached(ctx, &ctx.container(name)?, name));
        let _ = std::fs::remove_file(&mark);
        restarted?;
    }
    Ok(0)
}

/// Waits for the container's other starts, restarts, copies and
/// removals to end, as docker's daemon makes them take turns: a start
/// that comes second then finds the container running (nothing to do), a
/// restart stops it again, a removal finds it running.
/// Held until dropped; the relaunched `run` does not inherit it.
pub(super) fn take_turn(ctx: &Ctx, rec: &ContainerRecord) -> Result<Flock<File>> {
    turn_lock(
        &ContainerPaths::of(&ctx.root, rec),
        &rec.name,
        crate::file_lock::exclusive,
    )
}

/// The container's start turn, taken by `lock` (waiting, or not, or
/// inherited by a child). Whoever holds it looks the container up again:
/// a removal may have held it before. A container removed before its
/// lock file was opened is docker's "No such container".
pub(super) fn turn_lock<T>(
    paths: &ContainerPaths,
    name: &str,
    lock: fn(&std::path::Path) -> Result<T>,
) -> Result<T> {
    lock(&paths.start_lock()).map_err(|e| match paths.dir.exists() {
        true => e,
        false => layerdb::StoreError::NoSuchContainer(name.to_string()).into(),
    })
}

/// Starts a stopped container in the background; its name is printed once
/// it runs.
fn start_detached(ctx: &Ctx, rec: &ContainerRecord, name: &str) -> Result<()> {
    let status = super::run::relaunch(ctx, &rec.id)
        .arg("--detach")
        .arg("--print-name")
        .arg(name)
        .status()?;
    if !status.success() {
        bail!("starting {name} failed");
    }
    Ok(())
}
