//! `strata umount`: ends an inspection mount made by `strata mount`.

use super::mount::{forget_mountpoint, forget_record, record_path, server_of, Target};
use super::Ctx;
use crate::liveness;
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long `umount` waits for the mount's server to exit.
const SERVER_EXIT: Duration = Duration::from_secs(10);

pub fn umount(ctx: &Ctx, target: &str) -> Result<i32> {
    let path = mountpoint_of(ctx, target)?;
    // A container's own tree (what `mount` prints for a running one) is
    // its monitor's: taken away, the container's end failed to unmount
    // it, and an `--rm` container was left behind.
    let containers = std::fs::canonicalize(ctx.root.join(layerdb::ContainerDir::PARENT));
    if containers.is_ok_and(|dir| path.starts_with(dir)) {
        bail!(
            "{}: a running container's own tree, unmounted when it stops",
            path.display()
        );
    }
    // Only strata's own mounts: a bind mount or another filesystem that
    // someone put there is not this command's to take away.
    // `strata` for a mount of its own server, `strata:<id>` for a bind of
    // a running container's tree (`strata mount CONTAINER DIR`).
    let ours = liveness::mount_at(&path).is_some_and(|(fstype, source)| {
        fstype.starts_with("fuse") && (source == "strata" || source.starts_with("strata:"))
    });
    if !ours {
        bail!("{}: not a strata mount", path.display());
    }
    let record = record_path(&ctx.root, &path)?;
    let server = server_of(&record);
    fusefs::unmount(&path).with_context(|| format!("unmounting {}", path.display()))?;
    // Waited for, so that once this returns the upper is the caller's to
    // reuse or remove. (It also kept a mount made here since safe from the
    // server's last unmount of its path, before vendor/fuser took the fix
    // of cberner/fuser#703.)
    if let Some(pid) = server {
        let started = Instant::now();
        // A zombie's work is done: the server is nobody's child by now,
        // and who reaps it is not ours to wait for.
        let running = || !matches!(liveness::process_state(pid), None | Some('Z' | 'X'));
        while running() && started.elapsed() < SERVER_EXIT {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    forget_record(&ctx.root, &record);
    forget_mountpoint(&ctx.root, &path);
    outln!("{}", path.display())?;
    Ok(0)
}

/// The mountpoint `target` names: a path, or what `mount` took (a
/// container or an image; podman's `umount` takes a container) mounted at
/// the directory `mount` made for it.
fn mountpoint_of(ctx: &Ctx, target: &str) -> Result<PathBuf> {
    if let Ok(path) = std::fs::canonicalize(target) {
        return Ok(path);
    }
    let resolved = Target::resolve(&ctx.reader()?, target)
        .map_err(|_| anyhow!("{target}: no such mountpoint, container or image"))?;
    let made = resolved.made_mountpoint(&ctx.root)?;
    std::fs::canonicalize(made).map_err(|_| anyhow!("{target} is not mounted"))
}
