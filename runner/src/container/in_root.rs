//! Mounts at a path inside a container's tree, made where the path
//! resolved. The target is opened with openat2's `RESOLVE_IN_ROOT` (each
//! `..` and absolute link stops at the tree's root, whatever the tree
//! holds) and the mount goes onto that descriptor, not onto a path looked
//! up again. Between a lookup and a mount by path, a process sharing a
//! volume on the way (another container) could swap a directory for a
//! link to the host's tree and have the mount land there (runc's
//! CVE-2021-30465); `cp` then ran a host binary in that namespace.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use crate::mount_spec::target_parts;

/// A mount target opened inside a tree, and where it is on the host.
pub struct Target {
    fd: OwnedFd,
    /// The host's path of the target, for messages and checks; mounts go
    /// through the descriptor.
    pub host: PathBuf,
    /// The target's path inside the tree, as it resolved (`/` first).
    pub inside: String,
}

/// The tree at `root`, opened to resolve targets in.
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `path` (absolute inside the tree) under `root`, the missing parts
/// made on the way: directories, and the last one a file when `file`.
pub fn target(root: &OwnedFd, path: &str, file: bool) -> io::Result<Target> {
    let fd = open_or_make(root, &target_parts(path), file, 0)?;
    let host = fd_path(&fd)?;
    let inside = inside(root, &host)?;
    Ok(Target { fd, host, inside })
}

/// Where the kernel says `fd` is.
fn fd_path(fd: &OwnedFd) -> io::Result<PathBuf> {
    std::fs::read_link(fd_link(fd))
}

/// The /proc link of `fd`: the calling thread's, which has a file table
/// of its own in `fusefs::client_thread` (/proc/self names the process's).
fn fd_link(fd: &OwnedFd) -> String {
    format!("/proc/thread-self/fd/{}", fd.as_raw_fd())
}

/// Where the host's `host` is inside the tree `root`, `/` first.
fn inside(root: &OwnedFd, host: &Path) -> io::Result<String> {
    match host.strip_prefix(fd_path(root)?) {
        Ok(rest) => Ok(format!("/{}", rest.display())),
        Err(_) => Err(io::Error::other("the target resolved outside the tree")),
    }
}

/// Links followed while a target is made, at most (the kernel's own
/// limit for a path).
const MAX_LINKS: usize = 40;

/// The target `parts` (a path's names, cleaned as docker cleans a mount's
/// destination) opened under `root`, made where missing.
fn open_or_make(root: &OwnedFd, parts: &[&str], file: bool, links: usize) -> io::Result<OwnedFd> {
    let resolve = |parts: &[&str]| {
        let path = match parts.is_empty() {
            true => ".".to_string(),
            false => parts.join("/"),
        };
        rustix::fs::openat2(
            root,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    match resolve(parts) {
        Err(rustix::io::Errno::NOENT) => {}
        found => return Ok(found?),
    }
    let Some((name, parent)) = parts.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    };
    // The parent by the same rule; the name made inside it, never
    // through a link (a dangling one left there makes the open below
    // fail).
    let dir = open_or_make(root, parent, false, links)?;
    let dir = rustix::fs::openat(
        &dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let made = match file {
        true => rustix::fs::openat(
            &dir,
            *name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop),
        false => rustix::fs::mkdirat(&dir, *name, Mode::from_raw_mode(0o755)),
    };
    match made {
        Ok(()) => Ok(resolve(parts)?),
        Err(rustix::io::Errno::EXIST) => match resolve(parts) {
            // A link to nothing yet (an image's `/data -> /srv/data`):
            // its target is made, in the tree, as a start makes it.
            Err(rustix::io::Errno::NOENT) if links < MAX_LINKS => {
                let link = rustix::fs::readlinkat(&dir, *name, Vec::new())?;
                let link = link.to_string_lossy().into_owned();
                let from = match link.starts_with('/') {
                    true => link,
                    false => format!("{}/{link}", inside(root, &fd_path(&dir)?)?),
                };
                open_or_make(root, &target_parts(&from), file, links + 1)
            }
            found => Ok(found?),
        },
        Err(e) => Err(e.into()),
    }
}

/// A recursive bind of `source` onto `target`, its mounts given `attrs`
/// (`MOUNT_ATTR_RDONLY`, `_NOSUID`...) before it is attached: a copy of
/// the source's tree is made, set, then moved onto the descriptor.
pub fn bind(source: &Path, target: &Target, attrs: u64) -> io::Result<()> {
    let tree = rustix::mount::open_tree(
        CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    if attrs != 0 {
        crate::sys::set_mount_attrs_recursively(tree.as_fd(), attrs)?;
    }
    rustix::mount::move_mount(
        tree.as_fd(),
        "",
        target.fd.as_fd(),
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?;
    Ok(())
}

/// A new file system (`tmpfs`) mounted onto `target`, through the
/// descriptor's /proc link, which the kernel follows to the opened place.
pub fn mount(fstype: &str, target: &Target, flags: MsFlags, data: &str) -> io::Result<()> {
    let at = fd_link(&target.fd);
    nix::mount::mount(Some(fstype), at.as_str(), Some(fstype), flags, Some(data))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn targets_are_made_and_resolved_inside_the_tree() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        let root = open_root(t).unwrap();
        let made = target(&root, "/a/./b/../c", false).unwrap();
        assert_eq!(made.inside, "/a/c");
        assert!(t.join("a/c").is_dir());
        // Links lead inside the tree, absolute or climbing out.
        symlink("../../../../etc", t.join("esc")).unwrap();
        let file = target(&root, "/esc/hosts", true).unwrap();
        assert_eq!(file.inside, "/etc/hosts");
        assert!(t.join("etc/hosts").is_file());
        // A link to nothing yet: its target is made, as a start makes it.
        symlink("/srv/data", t.join("data")).unwrap();
        assert_eq!(target(&root, "/data", false).unwrap().inside, "/srv/data");
        std::fs::create_dir(t.join("d")).unwrap();
        symlink("../q", t.join("d/r")).unwrap();
        assert_eq!(target(&root, "/d/r", false).unwrap().inside, "/q");
        // A loop of links ends.
        symlink("/loop2", t.join("loop1")).unwrap();
        symlink("/loop1", t.join("loop2")).unwrap();
        assert!(target(&root, "/loop1", false).is_err());
    }
}
