//! Where the filesystem puts the store's directories. ext4 places a new
//! directory near its parent (the Orlov allocator) and a new file in its
//! directory's block group, so a store made under a directory tree where
//! files were just deleted by the thousand (a removed store, a build's
//! scratch space) got its `chunks/` among those inodes; without a
//! journal, ext4 skips every inode freed in the last minute or more,
//! looking each one up, for every file it makes. An import's chunk files
//! then took seconds more (docs/design.md, "Where an ingest spends its
//! time"). Marked as the top of a directory hierarchy (`chattr +T`), the
//! store root's subdirectories are spread to block groups with room
//! instead, as ext4 does for the children of `/`.

use std::fs::File;
use std::path::Path;

/// Marks `root` as the top of a directory hierarchy, before the store's
/// directories are made in it. Only a placement hint: a filesystem without
/// the flag (tmpfs, xfs) or a refusal changes nothing and is ignored.
pub(crate) fn mark_top_of_tree(root: &Path) {
    let Ok(dir) = File::open(root) else {
        return;
    };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&dir) {
        if !flags.contains(rustix::fs::IFlags::TOPDIR) {
            let _ = rustix::fs::ioctl_setflags(&dir, flags | rustix::fs::IFlags::TOPDIR);
        }
    }
}

/// Whether `root` is marked as the top of a directory hierarchy (None
/// where the filesystem has no such flag).
pub fn is_top_of_tree(root: &Path) -> Option<bool> {
    let dir = File::open(root).ok()?;
    let flags = rustix::fs::ioctl_getflags(&dir).ok()?;
    Some(flags.contains(rustix::fs::IFlags::TOPDIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_root_is_marked_as_the_top_of_a_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        crate::store::create_root(&root).unwrap();
        let marked = is_top_of_tree(&root).unwrap_or_else(|| {
            panic!(
                "{} has no inode flags (FS_IOC_GETFLAGS): run the test on ext4",
                dir.path().display()
            )
        });
        assert!(marked, "the store root has FS_TOPDIR_FL");
        assert!(root.join("chunks").is_dir());
    }
}
