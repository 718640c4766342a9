//! `strata kill`: sends a signal (`-s`, SIGKILL by default) to containers.

use super::stop::signal;
use super::Ctx;
use crate::cli::KillArgs;
use crate::liveness;
use crate::signal::Signal;
use anyhow::{bail, Result};

pub fn kill(ctx: &Ctx, args: KillArgs) -> Result<i32> {
    let sig: Signal = args.signal.parse()?;
    let store = ctx.reader()?;
    Ok(super::for_each_container(&args.containers, |name| {
        let rec = liveness::container(&store, name)?;
        if !rec.state.can_kill() {
            bail!(
                "cannot kill container: {name}: container {} is not running",
                rec.id
            );
        }
        signal(ctx, &rec, sig)?;
        outln!("{name}")
    }))
}
