//! Layers: immutable change sets. `LayerBuilder` turns a stream of entries
//! (from a tar, a directory or a container's upper) into a `PendingLayer`,
//! checking every path on the way in; the store commits it atomically.

use crate::chunk::{ChunkDir, INLINE_MAX};
use crate::digest::Digest;
use crate::entry::{join_path, split_path, Data, Entry, Kind};
use crate::error::{Result, StoreError};
use crate::oci_tar;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// What the index keeps per layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// sha256 of the layer's canonical OCI tar.
    pub diff_id: Digest,
    /// Store-wide unique number; entry keys and inode numbers use it.
    pub seq: u32,
    /// Size as docker's classic store counts it (see `docker_size`).
    pub size: u64,
    pub entries: u64,
}

/// A layer built and hashed but not yet in the index. Its chunks are on
/// disk already; committing it is one atomic index write.
#[derive(Debug)]
pub struct PendingLayer {
    pub diff_id: Digest,
    pub size: u64,
    pub entries: Vec<(Vec<u8>, Entry)>,
    /// Bytes of file content read, and bytes of it new to the store.
    pub logical_bytes: u64,
    pub new_bytes: u64,
}

pub struct LayerBuilder {
    chunks: ChunkDir,
    /// Names the input in error messages (a file name, `-`, a container).
    source: String,
    entries: BTreeMap<Vec<u8>, Entry>,
    opaque_dirs: BTreeSet<Vec<u8>>,
    logical_bytes: u64,
    new_bytes: u64,
}

/// A change-set path as it appears in a tar or directory, already split
/// into OCI meaning.
enum Name {
    Plain(Vec<u8>),
    Whiteout(Vec<u8>),
    Opaque(Vec<u8>),
}

impl LayerBuilder {
    pub fn new(chunks: ChunkDir, source: &str) -> LayerBuilder {
        LayerBuilder {
            chunks,
            source: source.to_string(),
            entries: BTreeMap::new(),
            opaque_dirs: BTreeSet::new(),
            logical_bytes: 0,
            new_bytes: 0,
        }
    }

    fn bad(&self, reason: String) -> StoreError {
        StoreError::BadLayer {
            source_name: self.source.clone(),
            reason,
        }
    }

    /// Adds one entry as named in OCI form: `.wh.<name>` files become
    /// whiteouts and `.wh..wh..opq` marks its directory opaque. `content`
    /// is read for regular files.
    pub fn add_oci(
        &mut self,
        raw_path: &[u8],
        entry: Entry,
        content: Option<&mut dyn Read>,
    ) -> Result<()> {
        match self.classify(raw_path)? {
            Name::Plain(path) => self.add(path, entry, content),
            Name::Whiteout(path) => {
                let mut w = Entry::new(Kind::Whiteout, 0);
                w.mtime_ns = entry.mtime_ns;
                self.add(path, w, None)
            }
            Name::Opaque(dir) => {
                self.opaque_dirs.insert(dir);
                Ok(())
            }
        }
    }

    /// Adds an entry whose path is already clean and whose kind already
    /// says what it is (the union filesystem's change set uses this).
    pub fn add(
        &mut self,
        path: Vec<u8>,
        mut entry: Entry,
        content: Option<&mut dyn Read>,
    ) -> Result<()> {
        let shown = String::from_utf8_lossy(&path).into_owned();
        if self.entries.contains_key(&path) {
            return Err(self.bad(format!("duplicate entry {shown:?}")));
        }
        match entry.kind {
            Kind::Regular => self.store_content(&mut entry, content, &shown)?,
            Kind::Hardlink => {
                entry.link = self.clean_link(&entry.link, &shown)?;
                match self.entries.get(&entry.link) {
                    Some(t) if t.kind == Kind::Regular => {}
                    _ => {
                        return Err(self.bad(format!(
                            "hardlink {shown:?} points to {:?}, which is not a file earlier in the layer",
                            String::from_utf8_lossy(&entry.link)
                        )))
                    }
                }
            }
            Kind::Symlink => {
                if escapes_root(&path, &entry.link) {
                    return Err(self.bad(format!(
                        "symlink {shown:?} points outside the layer: {:?}",
                        String::from_utf8_lossy(&entry.link)
                    )));
                }
                entry.size = entry.link.len() as u64;
            }
            _ => {}
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    fn store_content(
        &mut self,
        entry: &mut Entry,
        content: Option<&mut dyn Read>,
        shown: &str,
    ) -> Result<()> {
        let Some(reader) = content else {
            entry.data = Data::None;
            return Ok(());
        };
        let mut head = Vec::with_capacity(INLINE_MAX as usize + 1);
        reader
            .take(INLINE_MAX + 1)
            .read_to_end(&mut head)
            .map_err(|e| self.bad(format!("reading {shown:?}: {e}")))?;
        if head.len() as u64 <= INLINE_MAX {
            entry.size = head.len() as u64;
            self.logical_bytes += entry.size;
            self.new_bytes += entry.size;
            entry.data = if head.is_empty() {
                Data::None
            } else {
                Data::Inline(head)
            };
            return Ok(());
        }
        let mut whole = std::io::Cursor::new(head).chain(reader);
        let (chunks, total, written) = self
            .chunks
            .put_stream(&mut whole)
            .map_err(|e| self.bad(format!("reading {shown:?}: {e}")))?;
        entry.size = total;
        self.logical_bytes += total;
        self.new_bytes += written;
        entry.data = Data::Chunks(chunks);
        Ok(())
    }

    /// Normalises a tar path: drops a leading `./`, a trailing `/` and empty
    /// components; refuses absolute names and `..`.
    fn clean(&self, raw: &[u8]) -> Result<Vec<u8>> {
        let shown = String::from_utf8_lossy(raw);
        if raw.starts_with(b"/") {
            return Err(self.bad(format!("entry name {shown:?} is absolute")));
        }
        let mut out: Vec<u8> = Vec::with_capacity(raw.len());
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => continue,
                b".." => return Err(self.bad(format!("entry name {shown:?} contains \"..\""))),
                _ => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(part);
                }
            }
        }
        Ok(out)
    }

    fn clean_link(&self, raw: &[u8], shown: &str) -> Result<Vec<u8>> {
        let trimmed = raw.strip_prefix(b"/").unwrap_or(raw);
        self.clean(trimmed).map_err(|_| {
            self.bad(format!(
                "hardlink {shown:?} points outside the layer: {:?}",
                String::from_utf8_lossy(raw)
            ))
        })
    }

    fn classify(&self, raw: &[u8]) -> Result<Name> {
        let path = self.clean(raw)?;
        let (parent, name) = split_path(&path);
        let Some(hidden) = name.strip_prefix(b".wh.") else {
            return Ok(Name::Plain(path));
        };
        if hidden == b".wh..opq" {
            return Ok(Name::Opaque(parent.to_vec()));
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.bad(format!(
                "whiteout {:?} names no file",
                String::from_utf8_lossy(&path)
            )));
        }
        Ok(Name::Whiteout(join_path(parent, hidden)))
    }

    /// Numbers the entries, links hardlinks to their targets and hashes the
    /// canonical tar: the layer is complete and immutable from here on.
    pub fn finish(mut self) -> Result<PendingLayer> {
        for dir in std::mem::take(&mut self.opaque_dirs) {
            let e = self
                .entries
                .entry(dir)
                .or_insert_with(|| Entry::new(Kind::Dir, 0o755));
            if e.kind != Kind::Dir {
                return Err(self.bad("opaque marker inside a non-directory".to_string()));
            }
            e.opaque = true;
        }
        let mut inos: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        for (i, (path, e)) in self.entries.iter_mut().enumerate() {
            e.ino = i as u32 + 1;
            e.nlink = 1;
            inos.insert(path.clone(), e.ino);
        }
        let links: Vec<Vec<u8>> = self
            .entries
            .values()
            .filter(|e| e.kind == Kind::Hardlink)
            .map(|e| e.link.clone())
            .collect();
        for target in &links {
            if let Some(t) = self.entries.get_mut(target) {
                t.nlink += 1;
            }
        }
        let targets: BTreeMap<Vec<u8>, (u32, u32)> = links
            .iter()
            .filter_map(|t| self.entries.get(t).map(|e| (t.clone(), (e.ino, e.nlink))))
            .collect();
        for e in self
            .entries
            .values_mut()
            .filter(|e| e.kind == Kind::Hardlink)
        {
            let (ino, nlink) = targets[&e.link];
            e.ino = ino;
            e.nlink = nlink;
        }
        let entries: Vec<(Vec<u8>, Entry)> = self.entries.into_iter().collect();
        let size = docker_size(entries.iter().map(|(_, e)| e));
        let mut hasher = oci_tar::HashingWriter::default();
        oci_tar::write(
            entries.iter().map(|(p, e)| (p.as_slice(), e)),
            &self.chunks,
            &mut hasher,
        )?;
        Ok(PendingLayer {
            diff_id: hasher.digest(),
            size,
            entries,
            logical_bytes: self.logical_bytes,
            new_bytes: self.new_bytes,
        })
    }
}

/// docker's classic-store layer size: apparent sizes of non-directories,
/// hardlinked files once (their extra names add nothing), symlinks by the
/// length of their target.
pub fn docker_size<'a>(entries: impl Iterator<Item = &'a Entry>) -> u64 {
    entries
        .filter(|e| matches!(e.kind, Kind::Regular | Kind::Symlink))
        .map(|e| e.size)
        .sum()
}

/// Whether a relative symlink at `path` climbs above the layer root.
/// Absolute targets resolve inside the container's root, so they never do.
fn escapes_root(path: &[u8], target: &[u8]) -> bool {
    if target.starts_with(b"/") {
        return false;
    }
    let (parent, _) = split_path(path);
    let mut depth = parent
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .count() as i64;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> (tempfile::TempDir, LayerBuilder) {
        let dir = tempfile::tempdir().unwrap();
        let b = LayerBuilder::new(ChunkDir::new(dir.path().join("chunks")), "test.tar");
        (dir, b)
    }

    fn file(b: &mut LayerBuilder, path: &str, data: &[u8]) -> Result<()> {
        b.add_oci(
            path.as_bytes(),
            Entry::new(Kind::Regular, 0o644),
            Some(&mut &data[..]),
        )
    }

    #[test]
    fn relative_symlinks_may_not_climb_above_the_root() {
        assert!(escapes_root(b"a/link", b"../../etc/passwd"));
        assert!(!escapes_root(b"a/b/link", b"../../etc/passwd"));
        assert!(!escapes_root(b"link", b"/etc/passwd"));
    }

    #[test]
    fn dot_dot_and_absolute_names_are_refused() {
        let (_d, mut b) = builder();
        assert!(file(&mut b, "../x", b"")
            .unwrap_err()
            .to_string()
            .contains("\"..\""));
        assert!(file(&mut b, "/etc/x", b"")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }

    #[test]
    fn whiteout_names_become_whiteout_entries() {
        let (_d, mut b) = builder();
        file(&mut b, "./etc/.wh.passwd", b"").unwrap();
        file(&mut b, "etc/.wh..wh..opq", b"").unwrap();
        assert!(file(&mut b, "etc/.wh.", b"")
            .unwrap_err()
            .to_string()
            .contains("names no file"));
        let layer = b.finish().unwrap();
        let map: BTreeMap<_, _> = layer.entries.into_iter().collect();
        assert_eq!(map[&b"etc/passwd".to_vec()].kind, Kind::Whiteout);
        assert!(map[&b"etc".to_vec()].opaque);
    }

    #[test]
    fn duplicates_and_dangling_hardlinks_are_refused() {
        let (_d, mut b) = builder();
        file(&mut b, "a", b"x").unwrap();
        assert!(file(&mut b, "./a", b"y")
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        let mut link = Entry::new(Kind::Hardlink, 0);
        link.link = b"missing".to_vec();
        assert!(b.add_oci(b"l", link, None).is_err());
    }

    #[test]
    fn hardlinks_share_their_targets_inode_and_count_once() {
        let (_d, mut b) = builder();
        file(&mut b, "a", &[7u8; 1000]).unwrap();
        let mut link = Entry::new(Kind::Hardlink, 0);
        link.link = b"./a".to_vec();
        b.add_oci(b"b", link, None).unwrap();
        let layer = b.finish().unwrap();
        let (a, l) = (&layer.entries[0].1, &layer.entries[1].1);
        assert_eq!((a.ino, a.nlink), (l.ino, l.nlink));
        assert_eq!(a.nlink, 2);
        assert_eq!(layer.size, 1000);
    }

    #[test]
    fn the_same_input_always_gives_the_same_diff_id() {
        let build = || {
            let (_d, mut b) = builder();
            file(&mut b, "x/y", &[1u8; 200_000]).unwrap();
            file(&mut b, "x/small", b"hi").unwrap();
            b.finish().unwrap().diff_id
        };
        assert_eq!(build(), build());
    }
}
