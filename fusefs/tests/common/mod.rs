//! What every real-mount test of fusefs needs first, and the fixture of
//! the tests that drive the union core without a mount.

// Each test crate uses a part of these helpers.
#![allow(dead_code)]

pub mod fixture;

use std::path::Path;

/// `len` bytes that differ everywhere (xorshift from `seed`), so a block
/// read from the wrong place or offset shows.
pub fn noise(len: u64, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

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
