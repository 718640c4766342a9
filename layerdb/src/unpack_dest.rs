//! Where the names of a tar being unpacked land under the directory it is
//! unpacked in (`cp` into a container, `cp` out of one, `build -`'s
//! context): no `..` or absolute name, and each parent checked where it
//! really is (an earlier entry's symlink followed) before anything is made
//! in it, as the tar crate checks them. Missing parents are made 0755 (the
//! umask applies), after the check (CVE-2021-38511 made them first).
//!
//! The tar crate canonicalizes every entry's parent: a lstat per component
//! of a path as long as the tree is deep, so a tar whose files sit 2,000
//! directories down cost minutes of system time per few hundred files.
//! Here a parent found to be a plain directory (no link on the way) is
//! remembered until an entry is made at it or above it.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

/// `err` naming what was done to `path`.
fn failed(what: &str, path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

/// The directory a tar is unpacked in, and what is known of it so far.
pub struct Destination {
    root: PathBuf,
    /// Directories under `root` reached without a link, each with every
    /// directory above it: what `place` need not look at again.
    plain: BTreeSet<PathBuf>,
}

impl Destination {
    /// Unpacking into `dir`, which exists.
    pub fn new(dir: &Path) -> io::Result<Destination> {
        let root = std::fs::canonicalize(dir).map_err(|e| failed("resolve", dir, e))?;
        Ok(Destination {
            root,
            plain: BTreeSet::new(),
        })
    }

    /// The directory itself, resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `name` goes, if it stays under the root: the root itself for
    /// `./`, `None` for a name with `..`. An absolute name is taken from
    /// the root, as docker's and the tar crate's extractions take it.
    pub fn place(&mut self, name: &Path) -> io::Result<Option<PathBuf>> {
        let mut parts = Vec::new();
        for part in name.components() {
            match part {
                Component::Normal(part) => parts.push(part),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => return Ok(None),
            }
        }
        let Some((last, parents)) = parts.split_last() else {
            return Ok(Some(self.root.clone()));
        };
        let parent: PathBuf = parents
            .iter()
            .fold(self.root.clone(), |p, part| p.join(part));
        if self.plain.contains(&parent) {
            return Ok(Some(parent.join(last)));
        }
        // `at` stays a real path: a plain directory is stepped into as it
        // is, only a link is resolved.
        let mut at = self.root.clone();
        let mut linked = false;
        for part in parents {
            let next = at.join(part);
            if let Ok(md) = std::fs::symlink_metadata(&next) {
                let real = match md.file_type().is_symlink() {
                    true => {
                        linked = true;
                        std::fs::canonicalize(&next).map_err(|e| failed("resolve", &next, e))?
                    }
                    false => next.clone(),
                };
                if !real.starts_with(&self.root) {
                    return Ok(None);
                }
                if !real.is_dir() {
                    return Err(io::Error::other(format!(
                        "{}: not a directory",
                        next.display()
                    )));
                }
                at = real;
            } else {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&next)
                    .map_err(|e| failed("mkdir", &next, e))?;
                at = next;
            }
            if !linked {
                self.plain.insert(at.clone());
            }
        }
        Ok(Some(at.join(last)))
    }

    /// Where an entry named `name` is made, with what is known under that
    /// path forgotten (`making`): `None` for the destination itself (`./`,
    /// left as it is); a name leaving it is refused.
    pub fn entry(&mut self, name: &Path) -> io::Result<Option<PathBuf>> {
        match self.place(name)? {
            Some(path) if path == self.root => Ok(None),
            Some(path) => {
                self.making(&path);
                Ok(Some(path))
            }
            None => Err(io::Error::other(format!(
                "{}: a name leaving the destination",
                name.display()
            ))),
        }
    }

    /// A directory entry was made at `path` (as `place` gave it, after
    /// `making`): a real directory now (the tar crate makes none through
    /// a link), as plain as its parent. A copy's tar names each level of
    /// a deep tree before what is in it, and each would walk from the
    /// root again.
    pub fn made_dir(&mut self, path: &Path) {
        if let Some(parent) = path.parent() {
            if parent == self.root || self.plain.contains(parent) {
                self.plain.insert(path.to_path_buf());
            }
        }
    }

    /// An entry is about to be made at `path` (as `place` gave it): what
    /// was known of it and under it may change.
    pub fn making(&mut self, path: &Path) {
        let under: Vec<PathBuf> = self
            .plain
            .range(path.to_path_buf()..)
            .take_while(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in under {
            self.plain.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_under_the_root_through_links_made_on_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut dest = Destination::new(&root).unwrap();
        let root = dest.root().to_path_buf();
        assert_eq!(
            dest.place(Path::new("a/b/f")).unwrap(),
            Some(root.join("a/b/f"))
        );
        assert!(root.join("a/b").is_dir(), "parents are made");
        assert_eq!(dest.place(Path::new("../x")).unwrap(), None);
        assert_eq!(
            dest.place(Path::new("/a/g")).unwrap(),
            Some(root.join("a/g"))
        );
        assert_eq!(dest.place(Path::new("./")).unwrap(), Some(root.clone()));
        // "a" becomes a link out of the root: "a/b/f" no longer goes in.
        let a = dest.place(Path::new("a")).unwrap().unwrap();
        dest.making(&a);
        std::fs::remove_dir_all(&a).unwrap();
        std::os::unix::fs::symlink(tmp.path(), &a).unwrap();
        assert_eq!(dest.place(Path::new("a/b/f")).unwrap(), None);
        // A link inside the root is followed where it leads.
        dest.making(&a);
        std::fs::remove_file(&a).unwrap();
        std::fs::create_dir(root.join("c")).unwrap();
        std::os::unix::fs::symlink("c", &a).unwrap();
        assert_eq!(
            dest.place(Path::new("a/f")).unwrap(),
            Some(root.join("c/f"))
        );
    }
}
