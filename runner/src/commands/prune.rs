//! `strata container prune`: removes every stopped container.

use super::Ctx;
use crate::liveness;
use anyhow::Result;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn prune(ctx: &Ctx) -> Result<i32> {
    let store = ctx.store()?;
    let mut deleted = String::new();
    let mut reclaimed = 0;
    for rec in liveness::containers(&store)? {
        if rec.state.can_remove() {
            let size = files_bytes(&store.container_dir(&rec.id).upper());
            liveness::remove(&store, &rec)?;
            reclaimed += size;
            deleted.push_str(&rec.id);
            deleted.push('\n');
        }
    }
    // docker's report: the ids, a blank line, then the space the
    // containers' own layers took (`SizeRw`).
    if !deleted.is_empty() {
        println!("Deleted Containers:\n{deleted}");
    }
    println!(
        "Total reclaimed space: {}",
        crate::humanize::human_size(reclaimed)
    );
    Ok(0)
}

/// The bytes of the regular files under `dir`, each inode once, as
/// docker sizes a container's layer; what cannot be read counts nothing.
fn files_bytes(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(md) = entry.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                pending.push(entry.path());
            } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
                total += md.len();
            }
        }
    }
    total
}
