//! What every real-mount test of fusefs needs first, and the fixture of
//! the tests that drive the union core without a mount.

// Each test crate uses a part of these helpers.
#![allow(dead_code)]

pub mod fixture;

use std::path::Path;

/// Mount tests need root and /dev/fuse. Without them they fail, loudly and
/// with the reason: CI runs them as root, and a skipped test proves nothing.
pub fn require_fuse() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "mount tests need root (CI runs them as root); run `sudo -E cargo test -p fusefs`"
    );
    assert!(
        Path::new("/dev/fuse").exists(),
        "mount tests need /dev/fuse; load the fuse module or pass --device /dev/fuse to the container"
    );
}
