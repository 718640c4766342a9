//! Tests that mount FUSE filesystems or make namespaces need root and
//! /dev/fuse. Without them they fail, loudly, with the reason: CI runs them
//! as root, and a test that skips proves nothing.

pub fn require_root_and_fuse() {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root (it mounts FUSE filesystems and makes namespaces); run the suite with sudo, as CI does");
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "this test needs /dev/fuse: load the fuse module (modprobe fuse)"
    );
}
