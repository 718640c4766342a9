//! Reading a directory tree on the host into a layer (`strata import DIR`),
//! keeping owners, modes, times, xattrs, devices and hardlinks.
//!
//! The tree may belong to someone else than the importer (root importing
//! a user's directory), who may change it while it is read. So every name
//! is reached from a descriptor of the tree's root without following a
//! link (openat2's `RESOLVE_NO_SYMLINKS`), and a file is read only if it
//! is the one listed (same device and inode). By path, a directory the
//! owner swapped for a link to one of root's while the import ran had
//! root's file read into the image (a review as a local attacker, session
//! 46: a 0600 file of root's came out of `save` world-readable).

use crate::chunk::ChunkDir;
use crate::entry::{Entry, Kind};
use crate::error::{Result, StoreError};
use crate::layer::{LayerBuilder, PendingLayer};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Builds a layer from the tree at `dir`.
pub fn from_dir(
    chunks: ChunkDir,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<PendingLayer> {
    let source = dir.display().to_string();
    let mut builder = LayerBuilder::new(chunks, &source);
    let failed = |rel: &[u8], e: io::Error| failed(dir, rel, e);
    // The directory itself as the caller names it, links and all.
    let root = fs::File::open(dir).map_err(|e| failed(b"", e))?;
    let tree = list(&root, dir)?;
    // Its files in path order: the order of the layer's tar, which the
    // builder then hashes as it reads them. The first name of a file in
    // that order is the file, later ones link to it.
    let mut seen: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut parent: Option<(Vec<u8>, OwnedFd)> = None;
    for (rel, meta) in tree {
        let mut entry = entry_of_metadata(&meta);
        let ft = meta.file_type();
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = seen.get(&key) {
                entry = Entry::new(Kind::Hardlink, 0);
                entry.link = first.clone();
                builder.add_oci(&rel, entry, None)?;
                continue;
            }
            seen.insert(key, rel.clone());
        }
        if rel.is_empty() {
            entry.xattrs = xattrs_of_file(&root);
            builder.add_oci(&rel, entry, None)?;
            continue;
        }
        let (up, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(cut) => (&rel[..cut], &rel[cut + 1..]),
            None => (&b""[..], &rel[..]),
        };
        // Entries in path order share their directory with the one before.
        if parent.as_ref().is_none_or(|(at, _)| at != up) {
            let fd =
                beneath(&root, up, OFlags::PATH | OFlags::DIRECTORY).map_err(|e| failed(up, e))?;
            parent = Some((up.to_vec(), fd));
        }
        let (_, dir_fd) = parent.as_ref().expect("set above");
        let name = OsStr::from_bytes(name);
        if ft.is_file() || ft.is_dir() {
            let mut file = open_listed(dir_fd, name, &meta).map_err(|e| failed(&rel, e))?;
            entry.xattrs = xattrs_of_file(&file);
            if ft.is_file() {
                progress(meta.len());
                builder.add_oci(&rel, entry, Some(&mut file))?;
                continue;
            }
        } else {
            // By path through the directory's descriptor: the name itself
            // (a link, a device, a fifo) is not followed.
            let at = fd_path(dir_fd).join(name);
            entry.xattrs = read_xattrs(&at);
            if ft.is_symlink() {
                let target = fs::read_link(&at).map_err(|e| failed(&rel, e))?;
                entry.link = target.into_os_string().into_encoded_bytes();
            }
        }
        builder.add_oci(&rel, entry, None)?;
    }
    builder.finish()
}

/// `e`, met at `rel` under the tree `dir`.
fn failed(dir: &Path, rel: &[u8], e: io::Error) -> StoreError {
    StoreError::Io {
        path: dir.join(OsStr::from_bytes(rel)),
        source: e,
    }
}

/// Every name under `root` (the tree `dir`) with its metadata, the root
/// first (empty), each directory listed through its own descriptor.
fn list(root: &fs::File, dir: &Path) -> Result<Vec<(Vec<u8>, fs::Metadata)>> {
    let top = root.metadata().map_err(|e| failed(dir, b"", e))?;
    let mut tree = vec![(Vec::new(), top)];
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let listed = beneath(root, &rel, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| failed(dir, &rel, e))?;
        let at = fd_path(&listed);
        for item in fs::read_dir(&at).map_err(|e| failed(dir, &rel, e))? {
            let name = item.map_err(|e| failed(dir, &rel, e))?.file_name();
            let child = crate::entry::join_path(&rel, name.as_encoded_bytes());
            let meta = fs::symlink_metadata(at.join(&name)).map_err(|e| failed(dir, &child, e))?;
            if meta.is_dir() {
                stack.push(child.clone());
            }
            tree.push((child, meta));
        }
    }
    tree.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(tree)
}

/// `rel` under `root`, opened with `flags` where no link is on its way.
fn beneath(root: &fs::File, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let path = match rel.is_empty() {
        true => OsStr::new("."),
        false => OsStr::from_bytes(rel),
    };
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    Ok(rustix::fs::openat2(
        root,
        path,
        flags,
        Mode::empty(),
        resolve,
    )?)
}

/// The file or directory `name` in `dir`, if it is still the one listed:
/// a name replaced since is refused (the review's swap, one level down).
fn open_listed(dir: &OwnedFd, name: &OsStr, listed: &fs::Metadata) -> io::Result<fs::File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = fs::File::from(rustix::fs::openat(dir.as_fd(), name, flags, Mode::empty())?);
    let now = file.metadata()?;
    if (now.dev(), now.ino()) != (listed.dev(), listed.ino()) {
        return Err(io::Error::other("replaced while it was imported"));
    }
    Ok(file)
}

/// A path naming what `fd` holds open, through this thread's /proc.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()))
}

fn entry_of_metadata(meta: &fs::Metadata) -> Entry {
    let kind = Entry::kind_of(meta.file_type());
    let mut e = Entry::new(kind, meta.mode());
    if kind == Kind::Regular {
        e.size = meta.len();
    }
    e.uid = meta.uid();
    e.gid = meta.gid();
    e.mtime_ns = crate::import::seconds_to_ns(meta.mtime(), meta.mtime_nsec());
    if matches!(kind, Kind::CharDev | Kind::BlockDev) {
        let rdev = meta.rdev();
        e.rdev = (libc::major(rdev), libc::minor(rdev));
    }
    e
}

/// The xattrs of an open file, sorted by name.
fn xattrs_of_file(file: &fs::File) -> Vec<(Vec<u8>, Vec<u8>)> {
    use xattr::FileExt;
    let Ok(names) = file.list_xattr() else {
        return Vec::new();
    };
    sorted(names.filter_map(|n| {
        let value = file.get_xattr(&n).ok().flatten()?;
        Some((n.into_encoded_bytes(), value))
    }))
}

/// The xattrs of `path` itself (a link is not followed), sorted by name.
fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    sorted(names.filter_map(|n| {
        let value = xattr::get(path, &n).ok().flatten()?;
        Some((n.into_encoded_bytes(), value))
    }))
}

fn sorted(pairs: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = pairs.collect();
    out.sort();
    out
}
