//! Whiteout devices made as hard links to one inode, as kernel overlayfs
//! (since Linux 5.8) links its whiteouts to one in its work directory.
//!
//! A whiteout device has no content: every one may be the same inode.
//! Making each a new inode cost the host an inode allocation, which on
//! ext4 with many recently freed inodes scans the inode bitmap block by
//! block (`recently_deleted`): half the server's time in `rm -rf` of a
//! lower tree. A link allocates nothing. Tools that read uppers already
//! meet such linked devices from kernel overlayfs. The rootless form, an
//! empty `.wh.` file, stays one inode each: a tar writer that groups
//! files by inode (containers-storage's, for a rootless podman using
//! strata as its mount program) would record all but one as hardlinks
//! to another whiteout's name.
//!
//! The inode is remembered by an `O_PATH` descriptor, never by a path: a
//! path may since name something else (a file created where the whiteout
//! was), an inode never changes type. It is linked through
//! `/proc/self/fd/N`, which needs no privilege (`AT_EMPTY_PATH` would need
//! CAP_DAC_READ_SEARCH). Once its last name is gone (the kernel refuses to
//! link an inode with no links), at the link limit (EMLINK), or where
//! links fail at all, a new whiteout is made the ordinary way and
//! remembered instead.

use crate::handles::lock;
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use std::cell::OnceCell;
use std::fs::{DirEntry, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

/// The whiteout device new ones link to.
#[derive(Debug, Default)]
pub struct SharedWhiteout {
    last: Mutex<Option<Remembered>>,
}

#[derive(Debug)]
struct Remembered {
    file: File,
    /// (st_dev, st_ino) of `file`.
    id: (u64, u64),
}

/// What [`SharedWhiteout::link`] did.
pub enum Linked {
    /// `dest` is a new name of the shared whiteout.
    Yes,
    /// Something is at `dest` already.
    Exists,
    /// No whiteout to link to (none yet, gone, full): make one and
    /// [`SharedWhiteout::remember`] it.
    No,
}

impl SharedWhiteout {
    /// Makes `dest` a name of the remembered whiteout.
    pub fn link(&self, dest: &Path) -> Linked {
        let last = lock(&self.last);
        let Some(src) = last.as_ref() else {
            return Linked::No;
        };
        let src = format!("/proc/self/fd/{}", src.file.as_raw_fd());
        match nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            src.as_str(),
            nix::fcntl::AT_FDCWD,
            dest,
            AtFlags::AT_SYMLINK_FOLLOW,
        ) {
            Ok(()) => Linked::Yes,
            Err(Errno::EEXIST) => Linked::Exists,
            Err(_) => Linked::No,
        }
    }

    /// Remembers the whiteout just made at `dest`, for the next ones to
    /// link to. Best effort: without it the next whiteout is made anew.
    pub fn remember(&self, dest: &Path) {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dest);
        let remembered = opened.ok().and_then(|file| {
            let md = file.metadata().ok()?;
            Some(Remembered {
                id: (md.dev(), md.ino()),
                file,
            })
        });
        *lock(&self.last) = remembered;
    }

    /// Tells the shared whiteout's names in the listing of the host
    /// directory `dir`.
    pub fn names_in<'a>(&self, dir: &'a Path) -> Names<'a> {
        let pinned = lock(&self.last).as_ref().and_then(|r| {
            let file = r.file.try_clone().ok()?;
            Some((file, r.id))
        });
        Names {
            pinned,
            dir,
            dir_dev: OnceCell::new(),
        }
    }
}

/// The shared whiteout's names in one directory, known from their
/// directory entries alone: an entry of the whiteout's inode (a char
/// device, on its filesystem) is that whiteout device, so it needs no
/// stat. A directory emptied by `rm -rf` holds one per file it had, and
/// its removal listed them twice, a stat each time. The inode is held
/// open while the listing lasts, so its number cannot be given to another
/// file meanwhile.
pub struct Names<'a> {
    pinned: Option<(File, (u64, u64))>,
    dir: &'a Path,
    /// The directory's st_dev, asked once, at the first candidate.
    dir_dev: OnceCell<Option<u64>>,
}

impl Names<'_> {
    /// Whether `de`, an entry of this directory, is the shared whiteout.
    pub fn is_shared_whiteout(&self, de: &DirEntry) -> bool {
        let Some((_, (dev, ino))) = &self.pinned else {
            return false;
        };
        de.ino() == *ino
            && de.file_type().is_ok_and(|t| t.is_char_device())
            && *self
                .dir_dev
                .get_or_init(|| std::fs::symlink_metadata(self.dir).ok().map(|m| m.dev()))
                == Some(*dev)
    }
}
