//! `strata create [OPTIONS] IMAGE [COMMAND] [ARG...]`: docker's `create`,
//! `run`'s record without the start. It takes `run`'s flags (docker's
//! `create` shares them but for `-d`, which means nothing here), pulls a
//! missing image as `run` does, and prints the new container's full id;
//! `strata start` runs it.

use super::Ctx;
use crate::cli::RunArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, args: RunArgs) -> Result<i32> {
    let id = crate::container_id::ContainerId::random();
    super::run::create_apart(ctx, &args, &id)?;
    outln!("{id}")?;
    Ok(0)
}
