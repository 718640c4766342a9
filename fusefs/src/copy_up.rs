//! Copy-up: the first write or metadata change of a lower file moves it
//! into the upper, with data, owner, mode, times, xattrs and its stable
//! inode number (`user.strata.ino`).
//!
//! A file is built under a temporary name and renamed into place, so no
//! request ever sees half a copy. Nothing is fsynced here (as in
//! fuse-overlayfs): the upper of a running container promises no per-file
//! durability; a commit syncs what it stores. A lower file with several names is copied once; its other names in
//! the same layer that the container still sees become hardlinks of the
//! copy, so they keep sharing one inode.

use crate::dir_lower::open_no_follow;
use crate::error::{FsError, Result};
use crate::layers::Layers;
use crate::lower::Lower;
use crate::partial;
use crate::union::Resolved;
use crate::upper::TimeSet;
use layerdb::{split_path, Kind};
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Size of the buffer store-layer data is copied through.
const COPY_CHUNK: usize = 1 << 20;

/// What of a regular file's content a copy takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Content {
    /// None: the file is about to be truncated to 0.
    Nothing,
    /// All of it, now.
    Whole,
    /// A big file of a store layer block by block, as writes need them
    /// (see [`crate::partial`]); others whole.
    ByBlock,
}

/// A regular file's copy in the upper, still open for reading and writing.
pub struct Copy {
    pub file: File,
    /// Copied block by block (see [`crate::partial`]): its opens go
    /// through the record of what is still in the layer.
    pub partial: bool,
}

/// Copies the `size` bytes of a host lower file in the kernel with
/// copy_file_range(2), which clones extents where the host filesystem can
/// (XFS, btrfs) and otherwise copies without a trip through userspace.
/// The size is the one the lower's resolution found (lowers do not change
/// while mounted; kernel overlayfs copies its stat's size too), so the
/// copy asks no stat of either file and no last call to find the end, as
/// `std::io::copy` does. Hosts that refuse the call between these two
/// files (another filesystem type, an old kernel) get `std::io::copy`.
fn copy_host_file(host: &Path, to: &mut File, (path, size): (&[u8], u64)) -> Result<()> {
    let mut from = open_no_follow(host).map_err(|e| FsError::io("open copy-up", path, e))?;
    let mut done = 0u64;
    while done < size {
        let left = usize::try_from(size - done).unwrap_or(usize::MAX);
        match rustix::fs::copy_file_range(&from, None, &*to, None, left) {
            // Nothing at all: some filesystems (procfs-like ones) answer
            // so and give their bytes to read(2) only.
            Ok(0) if done == 0 => break,
            Ok(0) => return Ok(()), // shorter than it was: what there is
            Ok(n) => done += n as u64,
            Err(e) if done == 0 && refused_between_files(e) => break,
            Err(e) => return Err(FsError::io("copy-up", path, e.into())),
        }
    }
    if done < size {
        std::io::copy(&mut from, to).map_err(|e| FsError::io("copy-up", path, e))?;
    }
    Ok(())
}

/// Whether copy_file_range(2) failed for the pair of files rather than for
/// the data: a copy through userspace can still do it.
fn refused_between_files(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::XDEV, Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP].contains(&e)
}

/// Copies a file of a layer without a host file (a store layer).
fn copy_through_buffer(layer: &dyn Lower, path: &[u8], r: &Resolved, to: &mut File) -> Result<()> {
    let mut buf = vec![0u8; COPY_CHUNK.min(r.node.entry.size.max(1) as usize)];
    let mut off = 0u64;
    loop {
        let n = layer.read_at(path, &r.node, off, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])
            .map_err(|e| FsError::io("write copy-up", path, e))?;
        off += n as u64;
    }
}

impl Layers {
    /// Makes `path` live in the upper and returns its resolution there.
    /// `with_data: false` skips file content (the caller truncates to 0).
    pub fn copy_up(&self, path: &[u8], with_data: bool) -> Result<Resolved> {
        Ok(self.copy_up_open(path, with_data)?.0)
    }

    /// [`Layers::copy_up`], and the copy of a regular file it made, open
    /// for reading and writing (none where it made none): a write that
    /// copied the file up then needs no open of its own.
    pub fn copy_up_open(&self, path: &[u8], with_data: bool) -> Result<(Resolved, Option<Copy>)> {
        let r = self.get(path)?;
        self.copy_up_open_from(path, r, with_data)
    }

    /// [`Layers::copy_up_open`] of `path`, which resolves as `r` (the
    /// caller resolved it, and nothing changed the tree since).
    pub fn copy_up_open_from(
        &self,
        path: &[u8],
        r: Resolved,
        with_data: bool,
    ) -> Result<(Resolved, Option<Copy>)> {
        // A node the upper holds has its every ancestor there: the common
        // case (each SETATTR of a file an untar made, each CREATE's
        // directory) costs no host stat of the parent.
        if self.in_upper(&r) {
            return Ok((r, None));
        }
        // The ancestors missing from the upper first, top down, so that
        // each one's parent is already there: one level of recursion
        // below, not one per level (an image's tree 2,000 levels deep
        // overflowed the serving thread's stack). The parent's resolution
        // found on the way is the one the copy starts from.
        let (parent, _) = split_path(path);
        let mut missing = Vec::new();
        let mut dir = parent;
        let mut parent_r = None;
        while !dir.is_empty() {
            let d = self.get(dir)?;
            if self.in_upper(&d) {
                parent_r = (dir == parent).then_some(d);
                break;
            }
            missing.push(dir);
            dir = split_path(dir).0;
        }
        for dir in missing.into_iter().rev() {
            parent_r = Some(self.copy_up_one(dir, true)?);
        }
        let parent_r = match parent_r {
            Some(p) => p,
            None => self.get(parent)?, // the root
        };
        // Still the lower node to copy: the ancestors' copies change how
        // its directories merge, not what it is.
        self.copy_up_resolved(path, r, parent_r, with_data)
    }

    /// [`Layers::copy_up`] of `path` whose parent is in the upper (or is
    /// the root, whose own copy is the upper directory).
    fn copy_up_one(&self, path: &[u8], with_data: bool) -> Result<Resolved> {
        let r = self.get(path)?;
        if self.in_upper(&r) {
            return Ok(r);
        }
        let parent = self.get(split_path(path).0)?;
        Ok(self.copy_up_resolved(path, r, parent, with_data)?.0)
    }

    /// [`Layers::copy_up_one`] of `path`, resolved as `r`, whose parent
    /// is in the upper and resolves as `parent`; and the copy of a regular
    /// file, still open.
    fn copy_up_resolved(
        &self,
        path: &[u8],
        r: Resolved,
        parent_r: Resolved,
        with_data: bool,
    ) -> Result<(Resolved, Option<Copy>)> {
        if self.in_upper(&r) {
            return Ok((r, None));
        }
        let upper = self.upper(path)?;
        // The parent is in the upper, and so is the root, unless the upper
        // directory itself was removed under the mount (a container
        // removed while a copy served its tree): then the root resolves
        // to a lower, and each write fails.
        if path.is_empty() || !self.in_upper(&parent_r) {
            return Err(FsError::io(
                "copy up: the upper directory is gone",
                path,
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        let (parent, _) = split_path(path);
        let parent_times = parent_r.node;
        let node = &r.node;
        let entry = &node.entry;
        // A regular file's copy, still open: what follows goes through it.
        let mut copy = None;
        match entry.kind {
            Kind::Dir => {
                // Not opaque: the lower directory keeps merging below it.
                upper.mkdir(path, entry, Some(node.ino), false)?;
            }
            Kind::Whiteout | Kind::Hardlink => {
                return Err(FsError::Corrupt {
                    path: crate::error::show(path),
                    reason: format!("layer yielded a {:?} node to copy up", entry.kind),
                })
            }
            _ => {
                let (tmp, _) = upper.tmp_path(parent);
                let content = if with_data {
                    Content::ByBlock
                } else {
                    Content::Nothing
                };
                let built = self.build_copy(&tmp, path, &r, content).and_then(|file| {
                    upper.rename(&tmp, path, nix::fcntl::RenameFlags::empty())?;
                    Ok(file)
                });
                match built {
                    Ok(file) => copy = file,
                    Err(e) => {
                        // Best effort: the temporary name is invisible anyway.
                        let _ = upper.remove_file(&tmp);
                        return Err(e);
                    }
                }
            }
        }
        let (a, m) = (TimeSet::At(node.atime_ns), TimeSet::At(entry.mtime_ns));
        match &copy {
            Some(c) => upper.set_file_times((path, &c.file), a, m)?,
            None => upper.set_times(path, a, m)?,
        }
        // Copy-up changes nothing the container sees in the parent: its
        // times are put back, as kernel overlayfs puts them back.
        let (pa, pm) = (parent_times.atime_ns, parent_times.entry.mtime_ns);
        upper.set_times(parent, TimeSet::At(pa), TimeSet::At(pm))?;
        if entry.kind == Kind::Regular && entry.nlink > 1 {
            let linked = self.link_other_names(path, &r)?;
            let hidden = entry.nlink.saturating_sub(1 + linked);
            if hidden > 0 {
                let name = upper.format().nlink_xattr();
                crate::xattr::set(&upper.host(path), name, hidden.to_string().as_bytes(), 0)
                    .map_err(|e| FsError::io("setxattr link count", path, e))?;
                self.invalidate(path);
            }
        }
        match copy {
            Some(c) => Ok((self.new_file(path, &c.file)?, Some(c))),
            None => Ok((self.get(path)?, None)),
        }
    }

    /// A nameless upper copy of `r`, the lower file `path` named before a
    /// whiteout hid it (see [`crate::orphan`]): built under a temporary
    /// name, opened, then unlinked.
    pub(crate) fn copy_out(&self, path: &[u8], r: &Resolved) -> Result<File> {
        let upper = self.upper(path)?;
        let (tmp, _) = upper.tmp_path(b"");
        let root = self.get(b"")?.node;
        let node = &r.node;
        let file = self
            .build_copy(&tmp, path, r, Content::Whole)
            .and_then(|_| {
                let (a, m) = (TimeSet::At(node.atime_ns), TimeSet::At(node.entry.mtime_ns));
                upper.set_times(&tmp, a, m)
            })
            .and_then(|()| upper.open_file(&tmp, libc::O_RDWR));
        let removed = upper.remove_file(&tmp);
        let file = file?;
        removed?;
        // The temporary name came and went: the root looks untouched.
        upper.set_times(
            b"",
            TimeSet::At(root.atime_ns),
            TimeSet::At(root.entry.mtime_ns),
        )?;
        Ok(file)
    }

    /// Writes the copy of `r` (found at `path`) into the upper at `tmp`; a
    /// regular file's copy comes back open for reading and writing.
    fn build_copy(
        &self,
        tmp: &[u8],
        path: &[u8],
        r: &Resolved,
        content: Content,
    ) -> Result<Option<Copy>> {
        let upper = self.upper(path)?;
        let entry = &r.node.entry;
        let layer = self
            .layer(r.layer)
            .ok_or_else(|| FsError::posix(nix::errno::Errno::EIO, path))?;
        match entry.kind {
            Kind::Regular => {
                let mut file = upper.create_file(tmp)?;
                let mut partial = false;
                // The layer keeps it under its own path (`Resolved::path`).
                match (content, layer.host_path(&r.path)) {
                    (Content::Nothing, _) => {}
                    (_, Some(host)) => copy_host_file(&host, &mut file, (path, entry.size))?,
                    (Content::ByBlock, None) if partial::start(&file, layer, &r.path, &r.node)? => {
                        partial = true
                    }
                    (_, None) => copy_through_buffer(layer, &r.path, r, &mut file)?,
                }
                upper.write_new_file_meta(&file, tmp, entry, Some(r.node.ino))?;
                return Ok(Some(Copy { file, partial }));
            }
            Kind::Symlink => upper.create_symlink(tmp, &layer.read_link(&r.path, &r.node)?)?,
            _ => upper.create_special(tmp, entry)?,
        }
        upper.write_meta(tmp, entry, Some(r.node.ino))?;
        Ok(None)
    }

    /// After copying up `path`, makes the other names of the same lower
    /// inode that the container still sees hardlinks of the copy; returns
    /// how many.
    fn link_other_names(&self, path: &[u8], r: &Resolved) -> Result<u32> {
        let Some(layer) = self.layer(r.layer) else {
            return Ok(0);
        };
        let mut linked = 0;
        let upper = self.upper(path)?;
        let same = |o: &Resolved| o.layer == r.layer && o.node.ino == r.node.ino;
        for layer_name in layer.names_of(r.node.ino)? {
            if layer_name == r.path {
                continue; // the file being copied
            }
            // Deleted or replaced in the container: none; under a renamed
            // directory: the path there.
            for other in self.union_names(r.layer, &layer_name, same)? {
                self.copy_up(split_path(&other).0, true)?;
                upper.link(path, &other)?;
                linked += 1;
            }
        }
        Ok(linked)
    }
}
