//! `strata container prune`: removes every stopped container.

use super::Ctx;
use crate::liveness;
use anyhow::Result;

pub fn prune(ctx: &Ctx) -> Result<i32> {
    let store = ctx.store()?;
    println!("Deleted Containers:");
    for rec in liveness::containers(&store)? {
        if rec.state.can_remove() {
            liveness::remove(&store, &rec)?;
            println!("{}", rec.id);
        }
    }
    println!();
    Ok(0)
}
