//! `strata gc`, `strata verify`, `strata system df`.

use super::Ctx;
use crate::cli::VerifyArgs;
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

pub fn verify(ctx: &Ctx, args: VerifyArgs) -> Result<i32> {
    let store = ctx.store()?;
    let r = store.verify()?;
    for p in &r.problems {
        eprintln!("{p}");
    }
    if args.repair && !r.damaged.is_empty() {
        let images = store.remove_damaged_chunks(&r)?;
        eprintln!(
            "removed {} damaged chunk files; import the content of these images again to restore them: {}",
            r.damaged.len(),
            images.join(", ")
        );
    }
    println!(
        "checked {} images, {} layers, {} chunks: {} problems",
        r.images,
        r.layers,
        r.chunks,
        r.problems.len()
    );
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}

pub fn df(ctx: &Ctx) -> Result<i32> {
    let du = ctx.store()?.disk_usage()?;
    let ratio = if du.stored_bytes() == 0 {
        0.0
    } else {
        du.logical_bytes as f64 / du.stored_bytes() as f64
    };
    println!("TYPE        COUNT");
    println!("Images      {}", du.images);
    println!("Layers      {}", du.layers);
    println!("Containers  {}", du.containers);
    println!();
    println!(
        "Logical size (every file of every layer):  {}",
        human_size(du.logical_bytes)
    );
    println!(
        "Stored (chunks {} in {} files, index {}):  {}",
        human_size(du.chunk_bytes),
        du.chunk_files,
        human_size(du.index_bytes),
        human_size(du.stored_bytes())
    );
    println!("Dedup ratio:  {ratio:.2}x");
    Ok(0)
}
