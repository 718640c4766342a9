//! The upper as a change set against its lowers: what commit writes as a
//! layer and what diff prints.
//!
//! Only the upper is walked; lowers are consulted once per upper entry to
//! tell an addition from a modification, so the cost follows the size of
//! the changes, not of the image.

use crate::dir_lower::{host_path, DirLower};
use crate::error::{FsError, Result};
use crate::lower::Lower;
use crate::union;
use crate::whiteout::{hidden_name, is_marker};
use layerdb::{join_path, Entry, Kind};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How a path differs from the layers below the upper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Not in the layers below.
    Added,
    /// In the layers below, changed (content, metadata or both).
    Modified,
    /// In the layers below, deleted (a whiteout in the upper).
    Deleted,
}

/// One changed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The path, relative to the root, without a leading `/`.
    pub path: Vec<u8>,
    /// How it changed.
    pub kind: ChangeKind,
    /// Metadata as the container sees it: `Kind::Whiteout` for a deletion,
    /// `opaque` for a directory replacing the lower one, `Kind::Hardlink`
    /// (with `link` = the first name) for further names of one inode.
    /// Never carries strata's or overlay's own xattrs.
    pub entry: Entry,
    /// Host file holding a regular file's data.
    pub source: Option<PathBuf>,
}

/// The change set of `upper` over `lowers` (top first), sorted by path
/// (bytewise: the order of a layer's tar, so commit can hash the tar as it
/// reads the files). Of several names of one file the first in that order
/// is the file, the others hardlinks to it. Run it on a quiet upper
/// (container paused).
pub fn changes(upper: &Path, lowers: &[&dyn Lower]) -> Result<Vec<Change>> {
    let mut walk = Walk {
        upper,
        view: DirLower::upper(upper),
        lowers,
        out: Vec::new(),
    };
    walk.dir(b"")?;
    walk.out.sort_unstable_by(|a, b| a.0.path.cmp(&b.0.path));
    let mut first_name: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(walk.out.len());
    for (mut change, inode) in walk.out {
        if let Some(inode) = inode {
            match first_name.get(&inode) {
                Some(first) => {
                    change.entry.kind = Kind::Hardlink;
                    change.entry.link = first.clone();
                    change.entry.size = 0;
                    change.source = None;
                }
                None => {
                    first_name.insert(inode, change.path.clone());
                }
            }
        }
        out.push(change);
    }
    Ok(out)
}

struct Walk<'a> {
    upper: &'a Path,
    view: DirLower,
    lowers: &'a [&'a dyn Lower],
    /// Changes in walk order, each regular file with several names with
    /// its (dev, ino).
    out: Vec<(Change, Option<(u64, u64)>)>,
}

impl Walk<'_> {
    fn in_lowers(&self, path: &[u8]) -> Result<bool> {
        Ok(union::resolve(self.lowers, path)?.is_some())
    }

    fn dir(&mut self, dir: &[u8]) -> Result<()> {
        let host = host_path(self.upper, dir);
        let mut names = Vec::new();
        for de in std::fs::read_dir(&host).map_err(|e| FsError::io("readdir", dir, e))? {
            let de = de.map_err(|e| FsError::io("readdir", dir, e))?;
            names.push(de.file_name().as_bytes().to_vec());
        }
        // Sort by the container name so a whiteout sits where its file was.
        names.sort_by(|a, b| hidden_name(a).unwrap_or(a).cmp(hidden_name(b).unwrap_or(b)));
        for name in names {
            if is_marker(&name) {
                continue;
            }
            if let Some(gone) = hidden_name(&name) {
                let path = join_path(dir, gone);
                // A name both whited out and present is present.
                if self.view.node(&path)?.is_some_and(|n| !n.is_whiteout()) {
                    continue;
                }
                self.out.push((
                    Change {
                        path,
                        kind: ChangeKind::Deleted,
                        entry: Entry::new(Kind::Whiteout, 0),
                        source: None,
                    },
                    None,
                ));
                continue;
            }
            let path = join_path(dir, &name);
            let Some(node) = self.view.node(&path)? else {
                continue;
            };
            let kind = if node.is_whiteout() {
                ChangeKind::Deleted
            } else if self.in_lowers(&path)? {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            };
            let entry = node.entry;
            let mut source = None;
            let mut inode = None;
            if entry.kind == Kind::Regular {
                let h = host_path(self.upper, &path);
                let md = h
                    .symlink_metadata()
                    .map_err(|e| FsError::io("lstat", &path, e))?;
                if md.nlink() > 1 {
                    inode = Some((md.dev(), md.ino()));
                }
                source = Some(h.to_path_buf());
            }
            let is_dir = entry.kind == Kind::Dir;
            self.out.push((
                Change {
                    path: path.clone(),
                    kind,
                    entry,
                    source,
                },
                inode,
            ));
            if is_dir {
                self.dir(&path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn changes_come_in_path_order_with_the_first_name_of_a_file_first() {
        // Walked depth first, `d/f` comes before `d-x`; in path order (the
        // layer tar's) `d-x` is first, so it is the file and `d/f` links
        // to it.
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir(upper.path().join("d")).unwrap();
        fs::write(upper.path().join("d/f"), "data").unwrap();
        fs::hard_link(upper.path().join("d/f"), upper.path().join("d-x")).unwrap();
        let cs = changes(upper.path(), &[]).unwrap();
        let got: Vec<(&[u8], Kind, &[u8])> = cs
            .iter()
            .map(|c| (c.path.as_slice(), c.entry.kind, c.entry.link.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (&b"d"[..], Kind::Dir, &b""[..]),
                (b"d-x", Kind::Regular, b""),
                (b"d/f", Kind::Hardlink, b"d-x"),
            ]
        );
        assert!(cs[1].source.is_some() && cs[2].source.is_none());
    }
}
