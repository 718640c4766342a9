//! `strata verify [--repair]`: checks every chunk against its digest.

use super::Ctx;
use crate::cli::VerifyArgs;
use anyhow::Result;

pub fn verify(ctx: &Ctx, args: VerifyArgs) -> Result<i32> {
    if !args.repair {
        return check(ctx);
    }
    let store = ctx.store()?;
    let r = store.verify()?;
    report(&r);
    if !r.damaged.is_empty() {
        let images = store.remove_damaged_chunks(&r)?;
        eprintln!(
            "removed {} damaged chunk files; import the content of these images again to restore them: {}",
            r.damaged.len(),
            images.join(", ")
        );
    }
    summary(&r)
}

/// `verify` without `--repair`: the hashing reads through a reader, so it
/// holds no lock for its whole length and works on a full disk; the
/// writer is opened only for the verdicts' batch, and a writer that
/// cannot open (a full disk, a store of another user) costs only the
/// good verdicts, or is a problem if a damaged chunk's stays.
fn check(ctx: &Ctx) -> Result<i32> {
    let mut r = ctx.reader()?.verify()?;
    match ctx.store() {
        Ok(store) => store.record_verdicts(&mut r),
        Err(e) => r.verdicts_unrecorded(e.as_ref()),
    }
    report(&r);
    summary(&r)
}

fn report(r: &layerdb::verify::VerifyReport) {
    for p in &r.problems {
        eprintln!("{p}");
    }
}

fn summary(r: &layerdb::verify::VerifyReport) -> Result<i32> {
    outln!(
        "checked {} images, {} layers, {} chunks: {} problems",
        r.images,
        r.layers,
        r.chunks,
        r.problems.len()
    )?;
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}
