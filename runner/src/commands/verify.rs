//! `strata verify [--repair]`: checks every chunk against its digest.

use super::Ctx;
use crate::cli::VerifyArgs;
use anyhow::Result;

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
