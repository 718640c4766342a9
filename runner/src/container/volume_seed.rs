//! docker's first use of an empty volume: what the image has at the
//! volume's target (the tree under it, and the directory's own owner,
//! mode and times) is copied into the volume before it is mounted there,
//! so `-v pgdata:/var/lib/postgresql/data` starts from the image's
//! directory as docker's does. A volume that holds anything is left as
//! it is. Runs in the container's first process, before pivot_root, with
//! `image_dir` already resolved inside the rootfs.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::exit::StartError;

/// Copies `image_dir` into the empty volume directory `volume`.
pub fn seed(volume: &Path, image_dir: &Path) -> Result<(), StartError> {
    let is_dir = fs::symlink_metadata(image_dir).is_ok_and(|md| md.is_dir());
    let empty = fs::read_dir(volume).is_ok_and(|mut entries| entries.next().is_none());
    if !(is_dir && empty) {
        return Ok(());
    }
    copy_tree(image_dir, volume).map_err(|err| {
        StartError::other(format!(
            "copy the image's {} into its volume {}: {err}",
            image_dir.display(),
            volume.display()
        ))
    })
}

/// The entries under `from` into the existing directory `to`, then
/// `from`'s own metadata onto `to`. Device nodes, fifos and sockets are
/// left out; a file with several names is copied once per name.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)?;
            copy_metadata(&src, &dst)?;
        } else if kind.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
            copy_metadata(&src, &dst)?;
        }
    }
    copy_metadata(from, to)
}

/// Owner (where the user namespace maps it: a rootless container without
/// subordinate ids keeps the copy's), then mode (a chown clears set-id
/// bits), then times; a symlink's mode is its own.
fn copy_metadata(from: &Path, to: &Path) -> io::Result<()> {
    let md = fs::symlink_metadata(from)?;
    let _ = std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid()));
    if !md.file_type().is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    let atime = TimeSpec::new(md.atime(), md.atime_nsec());
    let mtime = TimeSpec::new(md.mtime(), md.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}
