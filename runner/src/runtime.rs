//! Runtime state: what lives only while processes do (mount records and
//! their logs, default inspection mountpoints), kept apart from the store:
//! `/run/strata` for root, `$XDG_RUNTIME_DIR/strata` for other users, or
//! `/tmp/strata-<uid>` when that is unset. Each store gets its own
//! subdirectory, named by a digest of its root, so stores never mix.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `sub` in the runtime directory of the store at `root`, made 0700 with
/// whatever is missing above it: another mount's end may have taken the
/// store's directory away since (`tidy`), and a `create_dir_all` would
/// make it again open.
pub fn dir(root: &Path, sub: impl AsRef<Path>) -> Result<PathBuf> {
    let dir = path(root)?.join(sub);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Where the runtime directory of the store at `root` is, made or not.
pub fn path(root: &Path) -> Result<PathBuf> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let key = layerdb::Digest::of(root.as_os_str().as_encoded_bytes()).short();
    Ok(base()?.join(key))
}

/// Takes away the store's runtime directory, and its `sub` directory,
/// when nothing is left in them: stores come and go (every test makes
/// its own), and /run is memory. Whoever writes there makes them again
/// if they went in between (`mount::write_record`).
pub fn tidy(root: &Path, sub: &str) {
    if let Ok(dir) = path(root) {
        let _ = std::fs::remove_dir(dir.join(sub));
        let _ = std::fs::remove_dir(dir);
    }
}

/// The directory that holds every store's runtime directory, for what is
/// shared between stores (compiled seccomp filters).
pub fn base_dir() -> Result<PathBuf> {
    base()
}

/// `dir`, made 0700 if missing; it must be a directory of `uid`'s, or
/// `refused` says what to do. One open to others is made private when
/// `mend` (an older strata made `/run/strata` 0755 where the network's
/// state came first, which let any user read the leases and hold the
/// network lock), and refused otherwise (in a shared /tmp, another user
/// may have made it open, to watch or redirect our mounts).
pub fn private_dir(dir: &Path, uid: u32, mend: bool, refused: &str) -> Result<PathBuf> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let open = meta.permissions().mode() & 0o077 != 0;
    if !meta.is_dir() || meta.uid() != uid || (open && !mend) {
        bail!("{} {refused}", dir.display());
    }
    if open {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("make {} private", dir.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// Whether this process runs in the host's user namespace, whose uid map
/// is the identity over every id.
fn is_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

fn base() -> Result<PathBuf> {
    let uid = nix::unistd::geteuid();
    // Root of the host, not root of a user namespace (`strata unshare`),
    // which may not write to the host's /run.
    if uid.is_root() && is_initial_user_namespace() {
        let refused = "is not a directory of root's: remove it";
        return private_dir(Path::new("/run/strata"), 0, true, refused);
    }
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| Path::new(d).is_dir()) {
        return Ok(PathBuf::from(xdg).join("strata"));
    }
    let dir = PathBuf::from(format!("/tmp/strata-{uid}"));
    let refused = "is not a private directory of yours: remove it or set XDG_RUNTIME_DIR";
    private_dir(&dir, uid.as_raw(), false, refused)
}
