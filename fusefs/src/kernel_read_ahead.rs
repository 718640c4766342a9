//! How far ahead of a sequential reader the kernel reads a mount's files,
//! which also bounds how big its READ requests get.
//!
//! A FUSE mount's read-ahead starts at the kernel's default (128 KiB) and
//! the INIT reply can only lower it (the kernel keeps the smaller of its
//! own and the server's `max_readahead`), so every READ of a sequential
//! reader asked for 128 KiB: 8,192 round trips for a 1 GiB file, each two
//! cross-CPU wakeups, however fast the server answers. The mount's
//! backing-device setting (`/sys/class/bdi/<dev>/read_ahead_kb`, the same
//! knob `blockdev --setra` turns for a disk) is the one way up; with it
//! the kernel asks for up to `max_pages` (1 MiB) per READ and keeps
//! several in flight. It belongs to this mount alone and goes with it.
//!
//! Only root may write it: an ordinary user's mount (through fusermount3)
//! or one made inside a user namespace keeps the default.

use std::path::Path;

/// The read-ahead asked for, in KiB: the request size the kernel allows
/// (`max_pages`, 256 pages) times four, so that a sequential reader has
/// several 1 MiB READs in flight. (The host's disk here reads ahead
/// 8 MiB.)
pub const READ_AHEAD_KB: u32 = 4096;

/// The read-ahead to set: [`READ_AHEAD_KB`], or `STRATA_READ_AHEAD_KB`
/// (for measuring; 0 leaves the kernel's default).
fn wanted() -> u32 {
    std::env::var("STRATA_READ_AHEAD_KB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(READ_AHEAD_KB)
}

/// Sets the read-ahead of the FUSE mount at `mountpoint` (see [`wanted`]),
/// once its handshake is done (the INIT reply would lower it again). Never asks the mount's server: the device number
/// comes from a `statx` that may not sync (the server may not be serving
/// yet). Failing is not an error: reads work, in smaller requests.
pub fn widen(mountpoint: &Path) {
    let kb = wanted();
    if kb == 0 {
        return;
    }
    let Some(dev) = crate::mount::fuse_device_at(mountpoint) else {
        // Not the new mount (not there yet, or not FUSE): its knob would
        // be a disk's, a setting of the whole host.
        log::debug!(
            "read-ahead of {} left as is: not its FUSE mount",
            mountpoint.display()
        );
        return;
    };
    let knob = format!("/sys/class/bdi/{}:{}/read_ahead_kb", dev.0, dev.1);
    if let Err(e) = std::fs::write(&knob, kb.to_string()) {
        log::debug!(
            "read-ahead of {} left as is ({knob}: {e})",
            mountpoint.display()
        );
    }
}
