//! `strata gc`: removes what no image or container uses.

use super::Ctx;
use crate::humanize::human_size;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};

pub fn gc(ctx: &Ctx) -> Result<i32> {
    detach_orphaned_mounts(ctx)?;
    super::mount::reap_dead_servers(&ctx.root)?;
    // Volumes are not layers, but what a killed `volume create`, `rm` or
    // `prune` left is nothing's either (only `volume prune` took it).
    crate::volumes::remove_leftovers(&ctx.root);
    let r = layerdb::gc::collect(&ctx.root)?;
    outln!(
        "Removed {} layers, {} chunks, {} container directories; reclaimed space: {}",
        r.layers_removed,
        r.chunks_removed,
        r.dirs_removed,
        human_size(r.bytes_freed)
    )?;
    Ok(0)
}

/// Unmounts the tree of each container directory that has no record (a
/// removal cut short after the record went, its monitor's mount left,
/// dead once the monitor died), after ending what runs in its cgroup and
/// removing the cgroup. layerdb's gc removes such directories,
/// and could not while a mount held one (ENOTCONN, every time). A
/// container being made has no mount before its record.
fn detach_orphaned_mounts(ctx: &Ctx) -> Result<()> {
    let dir = ctx.root.join("containers");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(Ok(id)) = name
            .to_str()
            .map(str::parse::<crate::container_id::ContainerId>)
        else {
            continue;
        };
        let orphaned = matches!(
            layerdb::container_records::read_record(&ctx.root, id.as_str()),
            Ok(None)
        );
        if !orphaned {
            continue;
        }
        let paths = ContainerPaths::new(&ctx.root, &id);
        let merged = paths.merged();
        if let Some(state) = crate::run_state::read(&paths).filter(crate::liveness::monitor_runs) {
            if let Some((monitor_pid, _)) = state.monitor() {
                eprintln!(
                    "strata gc: container directory {} has no record, but its monitor (pid {monitor_pid}) still runs; its processes are killed and its tree detached",
                    id.as_str()
                );
            }
        }
        // What runs in its cgroup ends, and the cgroup goes: nothing else
        // would remove them once the record is gone.
        crate::container::cgroup::remove_recorded(&paths.dir);
        // Its monitor, once the container's processes ended, unmounts it
        // itself and may do so first: only a mount still there is an error.
        if crate::liveness::mount_at(&merged).is_some() {
            if let Err(e) = fusefs::unmount(&merged) {
                if crate::liveness::mount_at(&merged).is_some() {
                    return Err(e).with_context(|| format!("unmount {}", merged.display()));
                }
            }
        }
    }
    Ok(())
}
