//! docker's first use of an empty volume: what the image has at the
//! volume's target (the tree under it, and the directory's own owner,
//! mode and times) is copied into the volume before it is mounted there,
//! so `-v pgdata:/var/lib/postgresql/data` starts from the image's
//! directory as docker's does. A volume that holds anything is left as
//! it is. Runs in the container's first process, before pivot_root, as
//! the host sees it (root, as a rootful store runs it), with `image_dir`
//! already resolved inside the rootfs.
//!
//! The volume may be shared with a running container, which can change
//! it while the copy runs: turn a directory the copy just made into a
//! symlink to a host path, say. So every write goes through a descriptor
//! of the directory it is in: entries are made with `O_EXCL` (or
//! `mkdirat`/`symlinkat`, which fail on anything already there),
//! directories are entered with `O_NOFOLLOW`, and owners, modes and times
//! are set on the open descriptor. A change made under the copy fails it
//! (the container does not start); it can never lead a write out of the
//! volume.
//!
//! Only the image's own tree is copied: nothing on another file system
//! than the root's (a target that a symlink leads into /proc, /sys or
//! /dev, or onto another volume, seeds nothing).

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, futimens, mkdirat, utimensat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};

use super::exit::StartError;

/// Copies `image_dir` (inside the container's `root`) into the empty
/// volume directory `volume`.
pub fn seed(volume: &Path, root: &Path, image_dir: &Path) -> Result<(), StartError> {
    let root_dev = fs::metadata(root).map(|md| md.dev()).ok();
    let source = fs::symlink_metadata(image_dir).ok();
    let of_the_image = source.is_some_and(|md| md.is_dir() && Some(md.dev()) == root_dev);
    let empty = fs::read_dir(volume).is_ok_and(|mut entries| entries.next().is_none());
    if !(of_the_image && empty) {
        return Ok(());
    }
    let failed = |err: io::Error| {
        StartError::other(format!(
            "copy the image's {} into its volume {}: {err}",
            image_dir.display(),
            volume.display()
        ))
    };
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let to = nix::fcntl::open(volume, flags, Mode::empty()).map_err(|e| failed(e.into()))?;
    copy_tree(image_dir, root_dev.unwrap_or_default(), &to).map_err(failed)
}

/// The entries under `from` into the directory open as `to`, then
/// `from`'s own metadata onto it. Device nodes, fifos, sockets and
/// anything on another file system than `dev` are left out; a file with
/// several names is copied once per name.
fn copy_tree(from: &Path, dev: u64, to: &OwnedFd) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, name) = (entry.path(), entry.file_name());
        let md = fs::symlink_metadata(&src)?;
        if md.dev() != dev {
            continue;
        }
        let kind = md.file_type();
        if kind.is_dir() {
            mkdirat(to, name.as_os_str(), Mode::from_bits_truncate(0o700))?;
            let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
            let dir = openat(to, name.as_os_str(), flags, Mode::empty())?;
            copy_tree(&src, dev, &dir)?;
        } else if kind.is_file() {
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let out = openat(to, name.as_os_str(), flags, Mode::from_bits_truncate(0o600))?;
            let mut out = File::from(out);
            io::copy(&mut File::open(&src)?, &mut out)?;
            set_metadata(out.as_fd(), &md)?;
        } else if kind.is_symlink() {
            symlinkat(&fs::read_link(&src)?, to, name.as_os_str())?;
            // Owner (where the user namespace maps it), then times; a
            // symlink has no mode of its own.
            let owner = (Some(Uid::from_raw(md.uid())), Some(Gid::from_raw(md.gid())));
            let _ = fchownat(
                to,
                name.as_os_str(),
                owner.0,
                owner.1,
                AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            let (atime, mtime) = times(&md);
            utimensat(
                to,
                name.as_os_str(),
                &atime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )?;
        }
    }
    set_metadata(to.as_fd(), &fs::symlink_metadata(from)?)
}

/// Owner (where the user namespace maps it: a rootless container without
/// subordinate ids keeps the copy's), then mode (a chown clears set-id
/// bits), then times.
fn set_metadata(fd: std::os::fd::BorrowedFd<'_>, md: &fs::Metadata) -> io::Result<()> {
    let _ = fchown(
        fd,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
    );
    fchmod(fd, Mode::from_bits_truncate(md.mode() & 0o7777))?;
    let (atime, mtime) = times(md);
    futimens(fd, &atime, &mtime)?;
    Ok(())
}

fn times(md: &fs::Metadata) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(md.atime(), md.atime_nsec()),
        TimeSpec::new(md.mtime(), md.mtime_nsec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_planted_in_the_volume_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let (image, volume, host) = (
            dir.path().join("image"),
            dir.path().join("vol"),
            dir.path().join("host"),
        );
        for d in [&image, &volume, &host] {
            fs::create_dir(d).unwrap();
        }
        fs::write(image.join("f"), "image").unwrap();
        fs::write(host.join("secret"), "host").unwrap();
        let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY;
        let to = nix::fcntl::open(&volume, flags, Mode::empty()).unwrap();
        // What a container sharing the volume would plant mid-copy.
        std::os::unix::fs::symlink(host.join("secret"), volume.join("f")).unwrap();
        let dev = fs::metadata(&image).unwrap().dev();
        assert!(copy_tree(&image, dev, &to).is_err());
        assert_eq!(fs::read_to_string(host.join("secret")).unwrap(), "host");
    }

    #[test]
    fn the_tree_is_copied_with_its_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (image, volume) = (dir.path().join("image"), dir.path().join("vol"));
        fs::create_dir_all(image.join("sub")).unwrap();
        fs::create_dir(&volume).unwrap();
        fs::write(image.join("sub/f"), "x").unwrap();
        fs::set_permissions(image.join("sub/f"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("sub/f", image.join("l")).unwrap();
        seed(&volume, dir.path(), &image).unwrap();
        assert_eq!(fs::read_to_string(volume.join("sub/f")).unwrap(), "x");
        let mode = fs::metadata(volume.join("sub/f")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o751);
        assert_eq!(fs::read_link(volume.join("l")).unwrap(), Path::new("sub/f"));
    }
}
