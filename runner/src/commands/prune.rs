//! `strata container prune`, `image prune` and `system prune`: remove
//! stopped containers and images nothing uses, then collect what they
//! leave (`gc`), and report it as docker does.

use super::Ctx;
use crate::humanize::human_size;
use crate::list_filter::PruneFilter;
use crate::liveness;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use layerdb::{Digest, Removal, Store};
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `container prune`.
pub fn containers(ctx: &Ctx, force: bool, filter: &[String]) -> Result<i32> {
    let filter = PruneFilter::parse(filter)?;
    if !force && !confirmed("This will remove all stopped containers.")? {
        return Ok(0);
    }
    let (deleted, reclaimed) = remove_stopped_containers(&ctx.store()?, &filter)?;
    print_deleted("Containers", &deleted)?;
    outln!("Total reclaimed space: {}", human_size(reclaimed))?;
    Ok(0)
}

/// `image prune [-a]`: images with no tag (`-a`: any) that no container
/// and no other image (a child committed on it) uses.
pub fn images(ctx: &Ctx, all: bool, force: bool, filter: &[String]) -> Result<i32> {
    let filter = PruneFilter::parse(filter)?;
    let warning = if all {
        "This will remove all images without at least one container associated to them."
    } else {
        "This will remove all dangling images."
    };
    if !force && !confirmed(warning)? {
        return Ok(0);
    }
    let deleted = remove_unused_images(&ctx.store_to_delete()?, all, &filter)?;
    print_deleted("Images", &deleted)?;
    let reclaimed = layerdb::gc::collect(&ctx.root)?.bytes_freed;
    outln!("Total reclaimed space: {}", human_size(reclaimed))?;
    Ok(0)
}

/// `system prune [-a] [--volumes]`: stopped containers, then (with
/// `--volumes`) the anonymous volumes none uses, then unused images, then
/// what they leave.
pub fn system(ctx: &Ctx, all: bool, force: bool, volumes: bool, filter: &[String]) -> Result<i32> {
    let filter = PruneFilter::parse(filter)?;
    let images = if all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    let volumes_line = match volumes {
        true => "  - all anonymous volumes not used by at least one container\n",
        false => "",
    };
    let warning =
        format!("This will remove:\n  - all stopped containers\n{volumes_line}  - {images}\n");
    if !force && !confirmed(&warning)? {
        return Ok(0);
    }
    let store = ctx.store_to_delete()?;
    let (containers, containers_bytes) = remove_stopped_containers(&store, &filter)?;
    let (volumes, volumes_bytes) = match volumes {
        true => remove_unused_volumes(&store, false)?,
        false => (Vec::new(), 0),
    };
    let images = remove_unused_images(&store, all, &filter)?;
    drop(store);
    print_deleted("Containers", &containers)?;
    print_deleted("Volumes", &volumes)?;
    print_deleted("Images", &images)?;
    let reclaimed = containers_bytes + volumes_bytes + layerdb::gc::collect(&ctx.root)?.bytes_freed;
    outln!("Total reclaimed space: {}", human_size(reclaimed))?;
    Ok(0)
}

/// docker's question before a prune: `WARNING! {what}` and `Are you sure
/// you want to continue? [y/N]`, answered on stdin; only `y` or `yes`
/// (any case) goes on, and no answer (end of input) is no.
pub(super) fn confirmed(what: &str) -> Result<bool> {
    out!("WARNING! {what}\nAre you sure you want to continue? [y/N] ")?;
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    let answer = answer.trim();
    Ok(answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes"))
}

/// docker's list of what a prune removed: `Deleted {kind}:`, a line each,
/// a blank line; nothing when nothing went.
pub(super) fn print_deleted(kind: &str, lines: &[String]) -> Result<()> {
    if !lines.is_empty() {
        outln!("Deleted {kind}:\n{}\n", lines.join("\n"))?;
    }
    Ok(())
}

/// Removes every stopped container: their ids, and the space their own
/// layers took (docker's `SizeRw`).
fn remove_stopped_containers(store: &Store, filter: &PruneFilter) -> Result<(Vec<String>, u64)> {
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for rec in liveness::containers(store)? {
        if !(rec.state.can_remove() && filter.admits(Some(rec.created_ns), &rec.config.labels)) {
            continue;
        }
        // One a `run`, `start`, `cp` or `rm` holds the turn of is in use
        // (being started, copied into, removed), and is left as docker's
        // prune leaves a container it cannot lock; one that holds still
        // is looked at again under its turn, which a start waits for.
        // Removed under a start, it left a directory without a record, or
        // failed on "Directory not empty" (found by a review of
        // concurrent commands).
        let paths = ContainerPaths::of(store.root(), &rec);
        let turn = super::start::turn_lock(&paths, &rec.id, crate::file_lock::try_exclusive);
        let Ok(Some(_turn)) = turn else {
            continue;
        };
        let Ok(rec) = liveness::container(store, &rec.id) else {
            continue;
        };
        // A container its restart policy is about to start again is
        // docker's "restarting", which a prune leaves.
        if !rec.state.can_remove() || super::keep::restart_pending(&paths) {
            continue;
        }
        let size = files_bytes(&paths.upper());
        liveness::remove(store, &rec)?;
        reclaimed += size;
        deleted.push(rec.id);
    }
    Ok((deleted, reclaimed))
}

/// Removes the images no container and no other image uses, untagged
/// ones only unless `all`, until none is left (removing a child can leave
/// its untagged parent unused): docker's `untagged:` and `deleted:` lines.
fn remove_unused_images(store: &Store, all: bool, filter: &PruneFilter) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    // Images a container was made from since `used` was read (a racing
    // `run`): skipped, as docker's prune skips images in use, where the
    // refusal ended the prune (found by a review of concurrent commands).
    let mut taken: HashSet<Digest> = HashSet::new();
    loop {
        let images = store.images()?;
        let used: HashSet<Digest> = liveness::containers(store)?
            .into_iter()
            .map(|c| c.image)
            .chain(images.iter().filter_map(|(image, _)| image.parent))
            .chain(taken.iter().copied())
            .collect();
        let unused: Vec<Digest> = images
            .iter()
            .filter(|(image, tags)| !used.contains(&image.id) && (all || tags.is_empty()))
            .filter(|(image, _)| {
                let config = image.config();
                let created = crate::humanize::parse_rfc3339(&config.created).ok();
                filter.admits(created, &config.config.labels)
            })
            .map(|(image, _)| image.id)
            .collect();
        if unused.is_empty() {
            return Ok(lines);
        }
        for id in unused {
            let removals = match store.remove_image(&format!("{id:#}"), false) {
                Err(layerdb::StoreError::ImageInUse { .. }) => {
                    taken.insert(id);
                    continue;
                }
                removed => removed?,
            };
            for removal in removals {
                lines.push(match removal {
                    Removal::Untagged(r) => format!("untagged: {r}"),
                    Removal::Deleted(id) => format!("deleted: {id:#}"),
                });
            }
        }
    }
}

/// Removes the volumes no container uses, anonymous ones only unless
/// `all`, and what removals cut short left: their names and the bytes
/// they held.
pub(super) fn remove_unused_volumes(store: &Store, all: bool) -> Result<(Vec<String>, u64)> {
    let root = store.root();
    crate::volumes::remove_leftovers(root);
    // Chosen and renamed away under the containers lock, which `run`
    // holds from making a container's volumes to naming them in its
    // record: a volume a `run` was about to use was removed under it, its
    // data left where nothing listed it (found by a review of concurrent
    // commands). Removed after, so that no `run` waits for that.
    let doomed = {
        let _held = store.hold_containers()?;
        let containers = liveness::containers(store)?;
        let mut doomed = Vec::new();
        for v in crate::volumes::list(root)? {
            if (all || v.anonymous) && crate::volumes::users(&containers, &v.name).is_empty() {
                doomed.push(crate::volumes::take_away(root, &v.name)?);
            }
        }
        doomed
    };
    let (mut deleted, mut reclaimed) = (Vec::new(), 0);
    for volume in doomed {
        let size = files_bytes(&volume.path);
        let name = volume.name().to_string();
        volume.remove()?;
        reclaimed += size;
        deleted.push(name);
    }
    Ok((deleted, reclaimed))
}

/// The bytes of the regular files under `dir`, each inode once, as
/// docker sizes a container's layer; what cannot be read counts nothing.
pub(super) fn files_bytes(dir: &Path) -> u64 {
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
