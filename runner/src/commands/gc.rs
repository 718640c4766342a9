//! `strata gc`: removes what no image or container uses.

use super::Ctx;
use crate::humanize::human_size;
use anyhow::Result;

pub fn gc(ctx: &Ctx) -> Result<i32> {
    let r = layerdb::gc::collect(&ctx.root)?;
    println!(
        "Removed {} layers, {} chunks, {} container directories; reclaimed space: {}",
        r.layers_removed,
        r.chunks_removed,
        r.dirs_removed,
        human_size(r.bytes_freed)
    );
    Ok(0)
}
