//! `strata wait`: blocks until each container stops, then prints its exit
//! code, as docker's (a container never started counts as stopped, 0).

use super::Ctx;
use crate::cli::ContainersArgs;
use crate::liveness;
use crate::stack::ContainerPaths;
use anyhow::{bail, Result};
use layerdb::{ContainerRecord, State};
use std::time::Duration;

pub fn wait(ctx: &Ctx, args: ContainersArgs) -> Result<i32> {
    Ok(super::for_each_container(&args.containers, |name| {
        let rec = ctx.container(name)?;
        outln!("{}", wait_one(ctx, rec)?)
    }))
}

/// The exit code of `rec` once it is not running. Its init's exit wakes
/// the wait (a pidfd); its monitor records the code a moment later. A
/// second's timeout looks again, for a monitor that died and a restart
/// that started another init.
fn wait_one(ctx: &Ctx, mut rec: ContainerRecord) -> Result<i32> {
    let paths = ContainerPaths::of(&ctx.root, &rec);
    loop {
        let pid = match rec.state {
            State::Exited { code, .. } => return Ok(code),
            State::Created => return Ok(0),
            State::Running { pid, .. } | State::Paused { pid, .. } => pid,
        };
        if liveness::wait_exit(pid, Some(Duration::from_secs(1))) {
            // Gone: its monitor records the exit a moment after.
            std::thread::sleep(Duration::from_millis(10));
        }
        // From its files: a long wait opens no index each second.
        rec = match liveness::container_from_files(&ctx.root, &rec.id) {
            Ok(rec) => rec,
            // An --rm container removed between two looks: its code went
            // with it.
            Err(_) if !paths.dir.exists() => {
                bail!(
                    "container {} was removed before its exit code was read",
                    rec.name
                )
            }
            Err(e) => return Err(e),
        };
    }
}
