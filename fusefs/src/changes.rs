//! The upper as a change set against its lowers: what commit writes as a
//! layer and what diff prints.
//!
//! Only the upper is walked; lowers are consulted once per upper entry to
//! tell an addition from a modification, so the cost follows the size of
//! the changes, not of the image. A layer has no redirects: a directory
//! renamed with one (see [`crate::union`]) is given whole at its new path,
//! its lower content included, and its old path is the whiteout the upper
//! has there, as containers-storage's naive diff gives it.

use crate::dir_lower::{host_path, DirLower};
use crate::error::{FsError, Result};
use crate::lower::Lower;
use crate::partial;
use crate::union;
use crate::whiteout::{hidden_name, is_marker};
use layerdb::{join_path, Entry, Kind};
use std::collections::HashMap;
use std::io::Read;
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
    pub source: Option<Source>,
    /// A regular file of a lower layer with no host file (a store layer),
    /// shown under a renamed directory: the index of the layer in the
    /// `lowers` given to [`changes`] and its path there. See
    /// [`Change::data`].
    pub layer_file: Option<(usize, Vec<u8>)>,
}

/// Where a regular file's data is on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file of the upper at its container path. A container commit
    /// without a pause (`--no-pause`) changes the upper while it is read:
    /// the file is opened from the upper's root one name at a time, never
    /// through a symlink (one swapped in for a directory led the commit
    /// out to the host, which then stored a host file in the image).
    Upper {
        /// The upper's root directory.
        root: PathBuf,
        /// The file's container path.
        path: Vec<u8>,
    },
    /// A file of a host directory lower, which nothing changes.
    Lower(PathBuf),
}

impl Change {
    /// A regular file's content: its host file, or read from the lower
    /// layer holding it (`lowers` as given to [`changes`]); `None` for
    /// anything else.
    pub fn data<'a>(&self, lowers: &[&'a dyn Lower]) -> Result<Option<Box<dyn Read + 'a>>> {
        if let Some(source) = &self.source {
            let f = match source {
                Source::Upper { root, path } => crate::dir_lower::open_beneath(root, path),
                Source::Lower(p) => std::fs::File::open(p),
            }
            .map_err(|e| FsError::io("open", &self.path, e))?;
            if let Source::Upper { .. } = source {
                if let Some(rec) = partial::record_of(&f, &self.path)? {
                    let (i, node) = partial::find_origin(lowers.iter().copied(), &rec, &self.path)?;
                    return Ok(Some(Box::new(PartialReader {
                        file: f,
                        rec,
                        origin: (lowers[i], node),
                        offset: 0,
                    })));
                }
            }
            return Ok(Some(Box::new(f)));
        }
        let Some((i, path)) = &self.layer_file else {
            return Ok(None);
        };
        let layer = *lowers
            .get(*i)
            .ok_or_else(|| FsError::posix(nix::errno::Errno::EIO, path))?;
        let node = layer
            .node(path)?
            .ok_or_else(|| FsError::posix(nix::errno::Errno::ENOENT, path))?;
        Ok(Some(Box::new(LayerReader {
            layer,
            path: path.clone(),
            node,
            offset: 0,
        })))
    }
}

/// Reads an upper file copied up block by block from start to end, each
/// block from the upper or from its layer.
struct PartialReader<'a> {
    file: std::fs::File,
    rec: partial::Record,
    origin: (&'a dyn Lower, crate::lower::Node),
    offset: u64,
}

impl Read for PartialReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (layer, node) = (self.origin.0, &self.origin.1);
        let n = partial::read_at(&self.file, &self.rec, (layer, node), self.offset, buf)
            .map_err(std::io::Error::other)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Reads a file of a layer from start to end.
struct LayerReader<'a> {
    layer: &'a dyn Lower,
    path: Vec<u8>,
    node: crate::lower::Node,
    offset: u64,
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .layer
            .read_at(&self.path, &self.node, self.offset, buf)
            .map_err(std::io::Error::other)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The change set of `upper` over `lowers` (top first), sorted by path
/// (bytewise: the order of a layer's tar, so commit can hash the tar as it
/// reads the files). Of several names of one file the first in that order
/// is the file, the others hardlinks to it. Run it on a quiet upper
/// (container paused).
pub fn changes(upper: &Path, lowers: &[&dyn Lower]) -> Result<Vec<Change>> {
    let mut walk = Walk {
        upper,
        view: DirLower::upper(upper, None),
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

/// True for the redirect of a directory moved back where it was (kernel
/// overlayfs keeps it): its lower content is at its own path, so it is no
/// rename. Only asked outside renamed directories, where `path` is where
/// the lowers keep it too.
fn points_at_itself(path: &[u8], redirect: &[u8]) -> bool {
    match redirect.strip_prefix(b"/") {
        Some(abs) => abs == path,
        None => redirect == layerdb::split_path(path).1,
    }
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
                        layer_file: None,
                    },
                    None,
                ));
                continue;
            }
            let path = join_path(dir, &name);
            let Some(node) = self.view.node(&path)? else {
                continue;
            };
            let redirected = node.is_dir()
                && !node.entry.opaque
                && node
                    .redirect
                    .as_deref()
                    .is_some_and(|r| !points_at_itself(&path, r));
            let kind = if node.is_whiteout() {
                ChangeKind::Deleted
            } else {
                self.kind_at(&path)?
            };
            let mut entry = node.entry;
            if redirected {
                // Whole at its new path: lowers there must not merge in.
                entry.opaque = kind == ChangeKind::Modified;
            }
            let mut source = None;
            let mut inode = None;
            if entry.kind == Kind::Regular {
                let (h, ino) = self.upper_file(&path)?;
                inode = ino;
                source = Some(h);
            }
            let is_dir = entry.kind == Kind::Dir;
            self.out.push((
                Change {
                    path: path.clone(),
                    kind,
                    entry,
                    source,
                    layer_file: None,
                },
                inode,
            ));
            if redirected {
                self.whole(&path)?;
            } else if is_dir {
                self.dir(&path)?;
            }
        }
        Ok(())
    }

    fn kind_at(&self, path: &[u8]) -> Result<ChangeKind> {
        Ok(if self.in_lowers(path)? {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        })
    }

    /// Upper file `path`, and its (dev, ino) when it has several names.
    fn upper_file(&self, path: &[u8]) -> Result<(Source, Option<(u64, u64)>)> {
        let h = host_path(self.upper, path);
        let md = h
            .symlink_metadata()
            .map_err(|e| FsError::io("lstat", path, e))?;
        let inode = (md.nlink() > 1).then(|| (md.dev(), md.ino()));
        let source = Source::Upper {
            root: self.upper.to_path_buf(),
            path: path.to_vec(),
        };
        Ok((source, inode))
    }

    /// Everything the union shows under the renamed directory `dir`, from
    /// the upper and from the lowers its redirects lead to.
    fn whole(&mut self, dir: &[u8]) -> Result<()> {
        let mut stack: Vec<&dyn Lower> = vec![&self.view];
        stack.extend_from_slice(self.lowers);
        let Some(r) = union::resolve(&stack, dir)? else {
            return Ok(());
        };
        for (name, child) in union::list(&stack, &r, dir)? {
            let path = join_path(dir, &name);
            let mut entry = child.node.entry.clone();
            // Nothing below the renamed directory merges: no markers.
            entry.opaque = false;
            let (mut source, mut layer_file, mut inode) = (None, None, None);
            if entry.kind == Kind::Regular {
                if child.layer == 0 {
                    let (h, ino) = self.upper_file(&path)?;
                    (source, inode) = (Some(h), ino);
                } else {
                    let lower = child.layer - 1;
                    match self.lowers[lower].host_path(&child.path) {
                        Some(h) => source = Some(Source::Lower(h.to_path_buf())),
                        None => layer_file = Some((lower, child.path.clone())),
                    }
                }
            }
            let is_dir = entry.kind == Kind::Dir;
            let kind = self.kind_at(&path)?;
            self.out.push((
                Change {
                    path: path.clone(),
                    kind,
                    entry,
                    source,
                    layer_file,
                },
                inode,
            ));
            if is_dir {
                self.whole(&path)?;
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

    /// A commit without a pause reads the upper while the container runs:
    /// a directory swapped for a symlink to the host between the walk and
    /// the read must fail the read, never give the host file's bytes.
    #[test]
    fn a_directory_swapped_for_a_symlink_after_the_walk_is_not_followed() {
        let upper = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("secret"), "host").unwrap();
        fs::create_dir(upper.path().join("d")).unwrap();
        fs::write(upper.path().join("d/secret"), "container").unwrap();
        let cs = changes(upper.path(), &[]).unwrap();
        let file = cs.iter().find(|c| c.path == b"d/secret").unwrap();
        let read = |c: &Change| -> Option<String> {
            let mut s = String::new();
            c.data(&[]).ok()??.read_to_string(&mut s).ok()?;
            Some(s)
        };
        assert_eq!(read(file).as_deref(), Some("container"));
        fs::rename(upper.path().join("d"), upper.path().join("d2")).unwrap();
        std::os::unix::fs::symlink(host.path(), upper.path().join("d")).unwrap();
        assert_eq!(read(file), None, "read through the swapped-in symlink");
    }

    #[test]
    fn a_renamed_directory_is_given_whole_at_its_new_path_and_deleted_at_the_old() {
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir(upper.path().join("new")).unwrap();
        crate::xattr::set(
            &upper.path().join("new"),
            b"user.overlay.redirect",
            b"old",
            0,
        )
        .unwrap();
        fs::write(upper.path().join(".wh.old"), "").unwrap();
        fs::write(upper.path().join("new/mine"), "m").unwrap();
        let mut low = crate::MemLower::new("low", 1);
        low.dir("old", 0o755)
            .file("old/f", b"lower f")
            .dir("old/sub", 0o700)
            .symlink("old/sub/l", "../f");
        let lowers: [&dyn Lower; 1] = [&low];
        let cs = changes(upper.path(), &lowers).unwrap();
        let got: Vec<(&[u8], ChangeKind, Kind)> = cs
            .iter()
            .map(|c| (c.path.as_slice(), c.kind, c.entry.kind))
            .collect();
        use ChangeKind::*;
        assert_eq!(
            got,
            [
                (&b"new"[..], Added, Kind::Dir),
                (b"new/f", Added, Kind::Regular),
                (b"new/mine", Added, Kind::Regular),
                (b"new/sub", Added, Kind::Dir),
                (b"new/sub/l", Added, Kind::Symlink),
                (b"old", Deleted, Kind::Whiteout),
            ]
        );
        assert_eq!(cs[3].entry.mode, 0o700);
        assert_eq!(cs[4].entry.link, b"../f");
        let mut data = Vec::new();
        cs[1]
            .data(&lowers)
            .unwrap()
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        assert_eq!(data, b"lower f");
        assert!(!cs[0].entry.opaque, "nothing at the new path below");
    }

    #[test]
    fn a_directory_moved_back_where_it_was_gives_only_its_own_changes() {
        let upper = tempfile::tempdir().unwrap();
        for (dir, redirect) in [("a", &b"a"[..]), ("b", b"/b")] {
            fs::create_dir(upper.path().join(dir)).unwrap();
            crate::xattr::set(
                &upper.path().join(dir),
                b"user.overlay.redirect",
                redirect,
                0,
            )
            .unwrap();
        }
        fs::write(upper.path().join("a/new"), "n").unwrap();
        let mut low = crate::MemLower::new("low", 1);
        low.dir("a", 0o755)
            .file("a/f", b"f")
            .dir("b", 0o755)
            .file("b/g", b"g");
        let lowers: [&dyn Lower; 1] = [&low];
        let cs = changes(upper.path(), &lowers).unwrap();
        let got: Vec<(&[u8], ChangeKind, bool)> = cs
            .iter()
            .map(|c| (c.path.as_slice(), c.kind, c.entry.opaque))
            .collect();
        use ChangeKind::*;
        assert_eq!(
            got,
            [
                (&b"a"[..], Modified, false),
                (b"a/new", Added, false),
                (b"b", Modified, false),
            ]
        );
    }
}
