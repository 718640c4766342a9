//! `strata umount`: ends an inspection mount made by `strata mount`.

use super::mount::{forget_record, record_path, server_of};
use super::Ctx;
use crate::liveness;
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

/// How long `umount` waits for the mount's server to exit.
const SERVER_EXIT: Duration = Duration::from_secs(10);

pub fn umount(ctx: &Ctx, target: &str) -> Result<i32> {
    let path =
        std::fs::canonicalize(target).with_context(|| format!("{target}: no such mountpoint"))?;
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
    outln!("{}", path.display())?;
    Ok(0)
}
