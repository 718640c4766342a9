//! `strata system df`: the store's counts, sizes and dedup ratio.

use super::Ctx;
use crate::humanize::human_size;
use anyhow::Result;

pub fn df(ctx: &Ctx) -> Result<i32> {
    // Counting writes nothing: a reader, which a full disk does not stop.
    let du = ctx.reader()?.disk_usage()?;
    let ratio = if du.stored_bytes() == 0 {
        0.0
    } else {
        du.logical_bytes as f64 / du.stored_bytes() as f64
    };
    outln!("TYPE        COUNT")?;
    outln!("Images      {}", du.images)?;
    outln!("Layers      {}", du.layers)?;
    outln!("Containers  {}", du.containers)?;
    outln!()?;
    outln!(
        "Logical size (every file of every layer):  {}",
        human_size(du.logical_bytes)
    )?;
    outln!(
        "Stored (chunks {} in {} files, index {}):  {}",
        human_size(du.chunk_bytes),
        du.chunk_files,
        human_size(du.index_bytes),
        human_size(du.stored_bytes())
    )?;
    outln!("Dedup ratio:  {ratio:.2}x")?;
    Ok(0)
}
