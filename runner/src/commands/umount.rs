//! `strata umount`: ends an inspection mount made by `strata mount`.

use super::mount::record_path;
use super::Ctx;
use anyhow::{Context, Result};

pub fn umount(ctx: &Ctx, target: &str) -> Result<i32> {
    let path =
        std::fs::canonicalize(target).with_context(|| format!("{target}: no such mountpoint"))?;
    fusefs::unmount(&path).with_context(|| format!("unmounting {}", path.display()))?;
    let record = record_path(&ctx.root, &path)?;
    let _ = std::fs::remove_file(record.with_extension("log"));
    let _ = std::fs::remove_file(record);
    println!("{}", path.display());
    Ok(0)
}
