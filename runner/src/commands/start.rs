//! `strata start`: starts stopped containers again by re-executing `run`
//! for them.

use super::Ctx;
use crate::cli::StartArgs;
use crate::liveness;
use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;

pub fn start(ctx: &Ctx, args: StartArgs) -> Result<i32> {
    if args.containers.len() > 1 && (args.attach || args.interactive) {
        bail!("you cannot start and attach multiple containers at once");
    }
    for name in &args.containers {
        let rec = {
            // The lookup only reads; the relaunched `run` records the start.
            let store = ctx.reader()?;
            liveness::container(&store, name)?
        };
        if rec.state.is_running() {
            println!("{name}");
            continue;
        }
        if args.attach || args.interactive {
            super::check_tty(args.interactive, rec.tty)?;
        }
        let mut cmd = super::run::relaunch(ctx, &rec.id);
        if !(args.attach || args.interactive) {
            cmd.arg("--detach").arg("--print-name").arg(name);
        }
        if args.containers.len() == 1 {
            return Err(cmd.exec()).context("re-executing strata to start the container");
        }
        let status = cmd.status()?;
        if !status.success() {
            bail!("starting {name} failed");
        }
    }
    Ok(0)
}
