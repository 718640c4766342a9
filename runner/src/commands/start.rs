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
    if args.attach || args.interactive {
        let [name] = args.containers.as_slice() else {
            bail!("you cannot start and attach multiple containers at once");
        };
        let Some(rec) = stopped(ctx, name)? else {
            return Ok(0);
        };
        super::check_tty(args.interactive, rec.tty)?;
        // The one container: this process becomes its client, and takes
        // the start turn there (`__launch --turn`).
        let cmd = super::run::relaunch(ctx, &rec.id).arg("--turn").exec();
        return Err(cmd).context("re-executing strata to start the container");
    }
    let failed = super::each_container(&args.containers, |name| {
        let Some(rec) = stopped(ctx, name)? else {
            return Ok(());
        };
        let _turn = take_turn(ctx, &rec)?;
        // Another start may have held the turn before.
        match stopped(ctx, name)? {
            Some(rec) => start_detached(ctx, &rec, name),
            None => Ok(()),
        }
    });
    if failed.is_empty() {
        return Ok(0);
    }
    // docker's last word after each container's own error.
    let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
    eprintln!("Error: failed to start containers: {}", names.join(", "));
    Ok(1)
}

/// The container `name` if it is one to start; a running one is already
/// started, which is said as a start says it (its name), and a paused one
/// is refused.
fn stopped(ctx: &Ctx, name: &str) -> Result<Option<ContainerRecord>> {
    let rec = ctx.container(name)?;
    if let State::Paused { .. } = rec.state {
        bail!("cannot start a paused container, try unpause instead");
    }
    if rec.state.is_running() {
        outln!("{name}")?;
        return Ok(None);
    }
    Ok(Some(rec))
}

/// `strata restart`: each container stopped as `stop` does (its stop
/// signal, SIGKILL after `-t` seconds), then started in the background.
/// An `--rm` container is kept across it, as docker keeps it: its monitor
/// finds the `restarting` mark and leaves it.
pub fn restart(ctx: &Ctx, args: StopArgs) -> Result<i32> {
    Ok(super::for_each_container(&args.containers, |name| {
        let rec = ctx.container(name)?;
        let _turn = take_turn(ctx, &rec)?;
        let mark = ContainerPaths::of(&ctx.root, &rec).restarting();
        std::fs::write(&mark, b"").with_context(|| format!("mark {name} restarting"))?;
        let restarted = super::stop::stop_one(ctx, name, args.time)
            .and_then(|()| start_detached(ctx, &ctx.container(name)?, name));
        let _ = std::fs::remove_file(&mark);
        restarted
    }))
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
/// it runs. A failed start's launch has said why: its failure is an
/// [`ExitCode`](crate::ExitCode), which is not said again.
fn start_detached(ctx: &Ctx, rec: &ContainerRecord, name: &str) -> Result<()> {
    let status = super::run::relaunch(ctx, &rec.id)
        .arg("--detach")
        .arg("--print-name")
        .arg(name)
        .status()?;
    match status.success() {
        true => Ok(()),
        false => Err(crate::ExitCode(status.code().unwrap_or(125)).into()),
    }
}
