//! Layers: immutable change sets. `LayerBuilder` turns a stream of entries
//! (from a tar, a directory or a container's upper) into a `PendingLayer`,
//! checking every path on the way in; the store commits it atomically.
//!
//! Content is read once: as it is cut into chunks it also goes to the
//! canonical tar whose sha256 is the diff id, hashed on a thread of its
//! own, while new chunks are written on another. That takes entries in the
//! tar's order (path order), which commit and directory imports give and
//! canonical tars have; for other input the tar is hashed at the end,
//! from the stored chunks. A layer of an image read from a tar that is
//! already canonical has its canonical tar compared with it instead of
//! hashed again (`as_read`).

use crate::chunk::{ChunkDir, ChunkWriter, Chunker, INLINE_MAX};
use crate::digest::Digest;
use crate::entry::{join_path, split_path, ChunkRef, Data, Entry, Kind};
use crate::error::{Result, StoreError};
use crate::oci::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::oci_tar;
use crate::tar_split::OriginalTar;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

pub(crate) mod as_read;
mod canonical_stream;
mod link_targets;
use as_read::AsRead;
use canonical_stream::CanonicalStream;
use link_targets::LinkTargets;
use std::cell::RefCell;
use std::rc::Rc;

/// What the index keeps per layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// sha256 of the layer's canonical OCI tar.
    pub diff_id: Digest,
    /// Store-wide unique number; entry keys and inode numbers use it.
    pub seq: u32,
    /// Size as docker's classic store counts it (see `docker_size`).
    pub size: u64,
    /// Number of entries (paths) in the layer.
    pub entries: u64,
}

/// A layer built and hashed but not yet in the index. Its chunks are on
/// disk already; committing it is one atomic index write.
#[derive(Debug)]
pub struct PendingLayer {
    /// sha256 of the layer's canonical OCI tar: the layer's name in the store.
    pub diff_id: Digest,
    /// Size as docker's classic store counts it (see [`LayerMeta::size`]).
    pub size: u64,
    /// The layer's entries by path, in path order.
    pub entries: Vec<(Vec<u8>, Entry)>,
    /// Bytes of file content read, and bytes of it new to the store.
    pub logical_bytes: u64,
    /// Of `logical_bytes`, the bytes of chunks the store did not have.
    pub new_bytes: u64,
    /// The tar this layer was read from, when that was not its canonical
    /// tar and the store can write it again (see `tar_split`).
    pub original: Option<OriginalTar>,
    /// The chunk files its ingest wrote or found to hold their bytes, with
    /// their fingerprints: recorded as verdicts by the commit, once synced.
    pub(crate) verdicts: Vec<crate::chunk::verdicts::Verdict>,
}

/// Builds one layer from entries given in any order (a tar's, a directory
/// walk's, an upper's): writes new chunks as content arrives, hashes the
/// canonical tar on the way when the entries come in its order, and ends in a
/// [`PendingLayer`].
pub struct LayerBuilder {
    chunks: ChunkDir,
    writer: ChunkWriter,
    /// The canonical tar, hashed as the entries arrive (put in its order
    /// on the way); it stops when one arrives too far out of that order
    /// (or with another size than it said).
    tar: CanonicalStream,
    /// Names the input in error messages (a file name, `-`, a container).
    source: String,
    entries: BTreeMap<Vec<u8>, Entry>,
    opaque_dirs: BTreeSet<Vec<u8>>,
    /// The hardlinks among `entries`, by the path each names.
    links: LinkTargets,
    /// Bytes of small files' content the entries hold, and how many they
    /// may (`INLINE_HELD_MAX`).
    inline_held: u64,
    inline_budget: u64,
    logical_bytes: u64,
    new_bytes: u64,
    /// The chunks of regular files by path, as the writer's slots: the
    /// writing threads name them, and `finish` puts the names in the
    /// entries (whose chunk lists are empty until then). A path whose
    /// entry is gone or was replaced by one without chunks is skipped.
    unnamed: HashMap<Vec<u8>, Vec<u32>>,
}

/// A small file keeps its content in its entry, which the builder holds
/// until the layer is committed. Past this many bytes of such content in
/// one layer, the rest go to chunk files as larger files do: a crafted
/// layer of small files (200,000 zero-filled ones are 3.4 MB of gzip)
/// made the ingest hold 1.1 GB. Real layers hold a few MB to tens
/// (Debian's minbase 4 MiB, in 5,324 files).
const INLINE_HELD_MAX: u64 = 128 << 20;

/// The longest path Linux names, counting its NUL: a layer's paths (and
/// link targets) are shorter.
pub const PATH_MAX: usize = 4096;

/// `path` for an error message: whole when short, else its two ends.
pub(crate) fn shortened(path: &[u8]) -> String {
    const ENDS: usize = 40;
    let text = String::from_utf8_lossy(path);
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 2 * ENDS + 1 {
        return text.into_owned();
    }
    let head: String = chars[..ENDS].iter().collect();
    let tail: String = chars[chars.len() - ENDS..].iter().collect();
    format!("{head}…{tail}")
}

/// A change-set path as it appears in a tar or directory, already split
/// into OCI meaning.
enum Name {
    Plain(Vec<u8>),
    Whiteout(Vec<u8>),
    Opaque(Vec<u8>),
}

impl LayerBuilder {
    /// A builder writing chunks into `chunks`; `source` names the input in
    /// error messages (a file name, `-`, a container).
    pub fn new(chunks: ChunkDir, source: &str) -> LayerBuilder {
        Self::with_tar(chunks, source, CanonicalStream::new())
    }

    /// A builder of a layer read from a tar that `as_read` hashes: the
    /// canonical tar is compared with it and hashed only where it differs
    /// (see `as_read`).
    pub(crate) fn compared_with(
        chunks: ChunkDir,
        source: &str,
        as_read: Rc<RefCell<AsRead>>,
    ) -> LayerBuilder {
        Self::with_tar(chunks, source, CanonicalStream::compared_with(as_read))
    }

    fn with_tar(chunks: ChunkDir, source: &str, tar: CanonicalStream) -> LayerBuilder {
        LayerBuilder {
            writer: ChunkWriter::new(chunks.clone()),
            chunks,
            tar,
            source: source.to_string(),
            entries: BTreeMap::new(),
            opaque_dirs: BTreeSet::new(),
            links: LinkTargets::default(),
            inline_held: 0,
            inline_budget: INLINE_HELD_MAX,
            logical_bytes: 0,
            new_bytes: 0,
            unnamed: HashMap::new(),
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
                // `finish` makes the directory an entry if none names it.
                self.refuse_past_path_max(&dir, &dir, "name")?;
                self.stream_opaque_marker(&dir);
                self.opaque_dirs.insert(dir);
                Ok(())
            }
        }
    }

    /// Adds an entry whose path is already clean and whose kind already
    /// says what it is (the union filesystem's change set uses this). A
    /// regular file's `entry.size` should be its content's length: the
    /// tar header, hashed before the content is read, says that size.
    pub fn add(
        &mut self,
        path: Vec<u8>,
        mut entry: Entry,
        content: Option<&mut dyn Read>,
    ) -> Result<()> {
        self.refuse_past_path_max(&path, &path, "name")?;
        if matches!(entry.kind, Kind::Symlink | Kind::Hardlink) {
            self.refuse_past_path_max(&path, &entry.link, "link target")?;
        }
        let shown = String::from_utf8_lossy(&path).into_owned();
        if path.is_empty() && entry.kind != Kind::Dir {
            return Err(
                self.bad("entry \".\" names the root, which must be a directory".to_string())
            );
        }
        if let Some(old) = self.entries.get(&path) {
            self.refuse_replacing_a_link_target(&path, old.kind, entry.kind)?;
        }
        if let Some(old) = self.take(&path) {
            self.replace(&path, &old, &mut entry);
        }
        match entry.kind {
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
            // A relative target that climbs above the root is kept, as
            // docker keeps it: it resolves inside the container's root.
            Kind::Symlink => entry.size = entry.link.len() as u64,
            _ => {}
        }
        self.stream_entry(&path, &entry);
        self.unnamed.remove(&path);
        if entry.kind == Kind::Regular {
            let slots = self.store_content(&mut entry, content, &shown)?;
            if !slots.is_empty() {
                self.unnamed.insert(path.clone(), slots);
            }
        }
        if entry.kind == Kind::Hardlink {
            self.links.add(&path, &entry.link);
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    /// Takes `path`'s entry out of the layer, with what the builder
    /// counts of it.
    fn take(&mut self, path: &[u8]) -> Option<Entry> {
        let old = self.entries.remove(path)?;
        match &old.data {
            _ if old.kind == Kind::Hardlink => self.links.remove(path, &old.link),
            Data::Inline(bytes) => self.inline_held -= bytes.len() as u64,
            _ => {}
        }
        Some(old)
    }

    /// Refuses an entry whose `what` (its name, or its link's target)
    /// is `PATH_MAX` bytes or longer: no system call takes such a path
    /// whole, so no extraction (docker's neither) can make it, and a
    /// layer holding thousands of them (a tar 10,000 directories deep is
    /// 113 MB of names) would weigh on every later command, whose index
    /// keys hold each entry's path.
    fn refuse_past_path_max(&self, path: &[u8], value: &[u8], what: &str) -> Result<()> {
        if value.len() < PATH_MAX {
            return Ok(());
        }
        Err(self.bad(format!(
            "entry {:?}: its {what} is {} bytes; a path must be shorter than PATH_MAX ({PATH_MAX} bytes)",
            shortened(path),
            value.len()
        )))
    }

    /// Refuses a second entry for `path` that would take away a file a
    /// hardlink earlier in the layer names: the file itself, or one under
    /// it when a directory is replaced by something else. The layer keeps
    /// hardlinks by name, so the link would name the new entry (or
    /// nothing), where an extraction keeps the first file's content under
    /// the link's name.
    fn refuse_replacing_a_link_target(&self, path: &[u8], old: Kind, new: Kind) -> Result<()> {
        let subtree_goes = old == Kind::Dir && new != Kind::Dir;
        match self.links.naming(path, subtree_goes) {
            Some((link, target)) => Err(self.bad(format!(
                "entry {:?} replaces {:?}, which hardlink {:?} earlier in the layer names",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(target),
                String::from_utf8_lossy(link)
            ))),
            None => Ok(()),
        }
    }

    /// A second entry for `path` (`old` is gone from the entries): the
    /// later one wins, as in docker's extraction. A directory over a
    /// directory only changes its attributes; anything else replaces the
    /// old entry and, when that was a directory, everything under it.
    fn replace(&mut self, path: &[u8], old: &Entry, new: &mut Entry) {
        // The hashed tar holds the old entry: hash it again at the end.
        self.tar.stop();
        if old.kind == Kind::Dir && new.kind == Kind::Dir {
            new.opaque |= old.opaque;
        } else if old.kind == Kind::Dir {
            // What is under it, found by range: a walk over the whole
            // layer per replaced directory made a tar alternating one
            // name between a directory and a file quadratic.
            let prefix = [path, b"/"].concat();
            let under = |set: &mut dyn Iterator<Item = &Vec<u8>>| -> Vec<Vec<u8>> {
                set.take_while(|p| p.starts_with(&prefix))
                    .cloned()
                    .collect()
            };
            for p in under(&mut self.entries.range(prefix.clone()..).map(|(p, _)| p)) {
                self.take(&p);
            }
            for p in under(&mut self.opaque_dirs.range(prefix.clone()..)) {
                self.opaque_dirs.remove(&p);
            }
            self.opaque_dirs.remove(path);
        }
    }

    /// Adds the parent directories no entry names, as docker's extraction
    /// makes them: a directory the layers below have keeps what it is
    /// there (`below` finds it; the union looks a child up only in layers
    /// that have its parent, so the layer must name it), any other is
    /// made 0755, owned by root, with the time of the first entry under
    /// it. Whiteouts make none: theirs are below. A parent that is not a
    /// directory is an error.
    pub fn add_missing_parents(&mut self, below: &dyn Fn(&[u8]) -> Option<Entry>) -> Result<()> {
        let named = |p: &[u8]| self.entries.get(p);
        let missing = unnamed_parents(self.entries.iter(), &named).map_err(|e| {
            self.bad(format!(
                "entry {:?} is inside {:?}, which is not a directory",
                String::from_utf8_lossy(&e.path),
                String::from_utf8_lossy(&e.parent)
            ))
        })?;
        if missing.is_empty() {
            return Ok(());
        }
        self.tar.stop();
        for (dir, mtime_ns) in missing {
            let e = match below(&dir).filter(|e| e.kind == Kind::Dir) {
                Some(lower) => Entry {
                    mode: lower.mode,
                    uid: lower.uid,
                    gid: lower.gid,
                    mtime_ns: lower.mtime_ns,
                    xattrs: lower.xattrs,
                    ..Entry::new(Kind::Dir, 0)
                },
                None => Entry {
                    mtime_ns,
                    ..Entry::new(Kind::Dir, 0o755)
                },
            };
            self.entries.insert(dir, e);
        }
        Ok(())
    }

    /// Gives an entry's headers to the hashed tar.
    fn stream_entry(&mut self, path: &[u8], entry: &Entry) {
        self.tar.entry(path, entry);
    }

    /// The canonical tar has a directory's opaque marker right after it.
    fn stream_opaque_marker(&mut self, dir: &[u8]) {
        let already =
            self.opaque_dirs.contains(dir) || self.entries.get(dir).is_some_and(|e| e.opaque);
        if already {
            return;
        }
        let mtime_ns = self.entries.get(dir).map_or(0, |e| e.mtime_ns);
        self.tar.opaque_marker(dir, mtime_ns);
    }

    /// Ends a file's content in the hashed tar: `len` bytes followed the
    /// header, which said `declared`.
    fn stream_content_end(&mut self, declared: u64, len: u64) {
        self.tar.end_content(declared, len);
    }

    /// Reads a regular file's content into `entry` (inline, or chunks
    /// handed to the writer) and the hashed tar; returns the writer's
    /// slots of its chunks.
    fn store_content(
        &mut self,
        entry: &mut Entry,
        content: Option<&mut dyn Read>,
        shown: &str,
    ) -> Result<Vec<u32>> {
        let declared = entry.size;
        let Some(reader) = content else {
            entry.data = Data::None;
            self.stream_content_end(declared, 0);
            return Ok(Vec::new());
        };
        let mut head = Vec::with_capacity(INLINE_MAX as usize + 1);
        reader
            .take(INLINE_MAX + 1)
            .read_to_end(&mut head)
            .map_err(|e| self.bad(format!("reading {shown:?}: {e}")))?;
        let len = head.len() as u64;
        if len <= INLINE_MAX && self.inline_held + len <= self.inline_budget {
            // The entry keeps `head` until the layer is committed: at the
            // capacity read with, each small file held 4 KB (50,000 files
            // of 2 bytes peaked at 270 MB).
            head.shrink_to_fit();
            self.inline_held += len;
            entry.size = len;
            self.logical_bytes += entry.size;
            self.new_bytes += entry.size;
            if !head.is_empty() {
                self.tar.content(Bytes::from(head.clone()));
            }
            self.stream_content_end(declared, entry.size);
            entry.data = if head.is_empty() {
                Data::None
            } else {
                Data::Inline(head)
            };
            return Ok(Vec::new());
        }
        let mut whole = std::io::Cursor::new(head).chain(reader);
        let mut slots = Vec::new();
        let (writer, tar) = (&mut self.writer, &mut self.tar);
        let total = Chunker
            .split_sized(&mut whole, declared, &mut |piece| {
                slots.push(writer.put(piece.clone())?);
                tar.content(piece);
                Ok(())
            })
            .map_err(|e| {
                self.bad(format!(
                    "reading {shown:?}: {}",
                    crate::error::with_causes(&e)
                ))
            })?;
        self.stream_content_end(declared, total);
        entry.size = total;
        self.logical_bytes += total;
        // Named in `finish`.
        entry.data = Data::Chunks(Vec::new());
        Ok(slots)
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

    /// The path a regular file named `raw` in a tar is stored at, or None
    /// for a whiteout or opaque marker (or a name `add_oci` refuses).
    pub(crate) fn plain_path(&self, raw: &[u8]) -> Option<Vec<u8>> {
        match self.classify(raw) {
            Ok(Name::Plain(path)) => Some(path),
            _ => None,
        }
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
        if name == OPAQUE_MARKER {
            return Ok(Name::Opaque(parent.to_vec()));
        }
        let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
            return Ok(Name::Plain(path));
        };
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
        for (i, e) in self.entries.values_mut().enumerate() {
            e.ino = i as u32 + 1;
            e.nlink = 1;
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
        let waited = std::time::Instant::now();
        let (new_bytes, names, verdicts) = self.writer.finish_with_verdicts()?;
        let writers_done = waited.elapsed();
        self.new_bytes += new_bytes;
        for (path, slots) in &self.unnamed {
            if let Some(Data::Chunks(list)) = self.entries.get_mut(path).map(|e| &mut e.data) {
                // Every slot handed over was named, or `finish` failed.
                let named: Option<Vec<ChunkRef>> = slots
                    .iter()
                    .map(|&s| names.get(s as usize).copied())
                    .collect();
                *list = named.ok_or_else(|| StoreError::BadLayer {
                    source_name: self.source.clone(),
                    reason: "a chunk was left unnamed".to_string(),
                })?;
            }
        }
        let entries: Vec<(Vec<u8>, Entry)> = self.entries.into_iter().collect();
        let size = docker_size(entries.iter().map(|(_, e)| e));
        let streamed = self.tar.finish();
        let diff_id = match streamed {
            Some(Ok(digest)) => digest,
            // Out of order, or the hashing thread failed: hash the tar
            // again from the chunks, all on disk now.
            _ => {
                let mut hasher = oci_tar::HashingWriter::default();
                oci_tar::write(
                    entries.iter().map(|(p, e)| (p.as_slice(), e)),
                    &self.chunks,
                    &mut hasher,
                )?;
                hasher.digest()
            }
        };
        // Where an ingest's tail goes (docs/design.md, "Where an ingest
        // spends its time"): the input is read by now.
        log::debug!(
            "layer {}: waited {writers_done:?} for the chunk writers, {:?} in all for the tar's hash",
            self.source,
            waited.elapsed()
        );
        Ok(PendingLayer {
            diff_id,
            size,
            entries,
            logical_bytes: self.logical_bytes,
            new_bytes: self.new_bytes,
            original: None,
            verdicts,
        })
    }
}

/// An entry whose parent is named, but not as a directory.
#[derive(Debug)]
struct InsideNonDir {
    path: Vec<u8>,
    parent: Vec<u8>,
}

/// The directories above `entries` (in path order) that none of them
/// names, each with the time of the first entry under it; whiteouts need
/// none. `named` finds an entry by path. Or the first entry whose parent
/// is named but not a directory.
///
/// The walk up from an entry stops at the first parent known: one named
/// (it is an entry, walked up from in its turn) or one found missing
/// already (walked up from when it was found). Each directory is looked
/// up once per child, so the walk is linear in the entries; walking every
/// entry to the root made a tar 10,000 directories deep cubic (132 s).
/// Path order puts a directory before everything under it, so the first
/// entry to reach a missing directory is the first under it either way.
fn unnamed_parents<'a>(
    entries: impl Iterator<Item = (&'a Vec<u8>, &'a Entry)>,
    named: &dyn Fn(&[u8]) -> Option<&'a Entry>,
) -> std::result::Result<BTreeMap<Vec<u8>, i64>, InsideNonDir> {
    let mut missing: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (path, entry) in entries {
        if entry.kind == Kind::Whiteout {
            continue;
        }
        // The root is the union's, whether a layer names it or not.
        let mut child = path.as_slice();
        loop {
            let (parent, _) = split_path(child);
            if parent.is_empty() || missing.contains_key(parent) {
                break;
            }
            match named(parent) {
                Some(p) if p.kind == Kind::Dir => break,
                Some(_) => {
                    return Err(InsideNonDir {
                        path: path.clone(),
                        parent: parent.to_vec(),
                    })
                }
                None => {
                    missing.insert(parent.to_vec(), entry.mtime_ns);
                }
            }
            child = parent;
        }
    }
    Ok(missing)
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
    fn a_relative_symlink_that_climbs_above_the_root_is_kept() {
        let (_d, mut b) = builder();
        let mut link = Entry::new(Kind::Symlink, 0o777);
        link.link = b"../../etc/passwd".to_vec();
        b.add_oci(b"a/l", link, None).unwrap();
        let layer = b.finish().unwrap();
        assert_eq!(layer.entries[0].1.link, b"../../etc/passwd");
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
    fn the_last_of_duplicate_entries_wins() {
        let (_d, mut b) = builder();
        file(&mut b, "a", b"x").unwrap();
        file(&mut b, "./a", b"y").unwrap();
        b.add_oci(b"d", Entry::new(Kind::Dir, 0o700), None).unwrap();
        file(&mut b, "d/f", b"in d").unwrap();
        file(&mut b, "d", b"d is a file now").unwrap();
        let layer = b.finish().unwrap();
        let map: BTreeMap<_, _> = layer.entries.into_iter().collect();
        assert_eq!(map[&b"a".to_vec()].data, Data::Inline(b"y".to_vec()));
        assert_eq!(map[&b"d".to_vec()].kind, Kind::Regular);
        assert!(!map.contains_key(&b"d/f"[..]));
    }

    #[test]
    fn missing_parents_are_made_as_below_or_root_owned_0755() {
        let (_d, mut b) = builder();
        file(&mut b, "a/b/file", b"x").unwrap();
        file(&mut b, "gone/.wh.x", b"").unwrap();
        let mut lower_a = Entry::new(Kind::Dir, 0o700);
        lower_a.uid = 1000;
        let below = |p: &[u8]| (p == b"a").then(|| lower_a.clone());
        b.add_missing_parents(&below).unwrap();
        let layer = b.finish().unwrap();
        let map: BTreeMap<_, _> = layer.entries.into_iter().collect();
        let attrs = |dir: &str| {
            let e = &map[dir.as_bytes()];
            (e.kind, e.mode & 0o7777, e.uid, e.gid)
        };
        assert_eq!(attrs("a"), (Kind::Dir, 0o700, 1000, 0), "as below");
        assert_eq!(attrs("a/b"), (Kind::Dir, 0o755, 0, 0), "docker's default");
        assert!(!map.contains_key(&b"gone"[..]));
        let (_d, mut b) = builder();
        file(&mut b, "f", b"x").unwrap();
        file(&mut b, "f/g", b"x").unwrap();
        assert!(b.add_missing_parents(&|_| None).is_err());
    }

    #[test]
    fn the_walk_for_missing_parents_looks_each_directory_up_once_per_child() {
        // A chain 300 directories deep, every one named, with a file at
        // its bottom; and a file 300 levels down under unnamed ones.
        let mut entries: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
        let (mut named_dir, mut unnamed_dir) = (b"n".to_vec(), b"u".to_vec());
        for _ in 0..300 {
            entries.insert(named_dir.clone(), Entry::new(Kind::Dir, 0o755));
            named_dir.extend_from_slice(b"/d");
            unnamed_dir.extend_from_slice(b"/d");
        }
        entries.insert(named_dir, Entry::new(Kind::Regular, 0o644));
        entries.insert(unnamed_dir, Entry::new(Kind::Regular, 0o644));
        let lookups = std::cell::Cell::new(0usize);
        let named = |p: &[u8]| {
            lookups.set(lookups.get() + 1);
            entries.get(p)
        };
        let missing = unnamed_parents(entries.iter(), &named).unwrap();
        assert_eq!(missing.len(), 300, "u and the 299 below it");
        // The parent of each of the 300 named entries below `n`, and each
        // missing directory once: linear, where walking every entry to
        // the root looked up 45,450.
        assert_eq!(lookups.get(), 300 + 300);
    }

    #[test]
    fn a_name_or_link_target_of_path_max_bytes_is_refused_and_named_shortened() {
        let (_d, mut b) = builder();
        // 4,095 bytes: the longest a system call takes (with its NUL).
        let longest = format!("{}f", "d/".repeat(2047));
        file(&mut b, &longest, b"x").unwrap();
        let too_long = format!("{}ff", "d/".repeat(2047));
        let err = file(&mut b, &too_long, b"x").unwrap_err().to_string();
        assert!(
            err.contains("4096 bytes") && err.contains("PATH_MAX"),
            "{err}"
        );
        assert!(err.contains("\"d/d/") && err.contains("d/ff\""), "{err}");
        assert!(err.len() < 300, "the name is shortened: {err}");
        let mut link = Entry::new(Kind::Symlink, 0o777);
        link.link = "x".repeat(PATH_MAX).into_bytes();
        let err = b.add_oci(b"l", link, None).unwrap_err().to_string();
        assert!(err.contains("link target is 4096 bytes"), "{err}");
        let marker = format!("{}dd/.wh..wh..opq", "d/".repeat(2047));
        let err = file(&mut b, &marker, b"").unwrap_err().to_string();
        assert!(err.contains("its name is 4096 bytes"), "{err}");
    }

    #[test]
    fn dangling_hardlinks_are_refused() {
        let (_d, mut b) = builder();
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
    fn a_target_may_be_replaced_once_the_links_naming_it_are_gone() {
        let (_d, mut b) = builder();
        let link = |to: &str| {
            let mut l = Entry::new(Kind::Hardlink, 0);
            l.link = to.as_bytes().to_vec();
            l
        };
        let dir = || Entry::new(Kind::Dir, 0o755);
        file(&mut b, "t", b"1").unwrap();
        b.add_oci(b"d", dir(), None).unwrap();
        b.add_oci(b"d/l", link("t"), None).unwrap();
        b.add_oci(b"m", link("t"), None).unwrap();
        assert!(file(&mut b, "t", b"2").is_err(), "two links name it");
        // One link goes with its directory, the other is replaced.
        file(&mut b, "d", b"a file now").unwrap();
        assert!(file(&mut b, "t", b"2").is_err(), "\"m\" still names it");
        file(&mut b, "m", b"a file now").unwrap();
        file(&mut b, "t", b"2").unwrap();
        let layer = b.finish().unwrap();
        let paths: Vec<&[u8]> = layer.entries.iter().map(|(p, _)| p.as_slice()).collect();
        assert_eq!(paths, [&b"d"[..], b"m", b"t"]);
    }

    #[test]
    fn a_file_of_one_block_is_kept_in_its_entry_and_a_larger_one_in_chunks() {
        let (d, mut b) = builder();
        // One block of ext4 (and most filesystems) and a byte more.
        let block = vec![3u8; 4096];
        let more = vec![4u8; 4097];
        file(&mut b, "block", &block).unwrap();
        file(&mut b, "more", &more).unwrap();
        let layer = b.finish().unwrap();
        let map: BTreeMap<_, _> = layer.entries.into_iter().collect();
        let inline = matches!(&map[&b"block".to_vec()].data, Data::Inline(b) if *b == block);
        assert!(inline, "the 4096-byte file is in its entry");
        assert_eq!(map[&b"more".to_vec()].chunks().len(), 1);
        let files = std::fs::read_dir(d.path().join("chunks")).unwrap().count();
        assert_eq!(files, 1, "only the larger file has a chunk file");
    }

    #[test]
    fn a_small_files_content_holds_no_more_memory_than_its_length() {
        let (_d, mut b) = builder();
        file(&mut b, "two", b"x\n").unwrap();
        let layer = b.finish().unwrap();
        match &layer.entries[0].1.data {
            Data::Inline(head) => assert_eq!(head.capacity(), 2, "as long as its content"),
            other => panic!("kept inline, not {other:?}"),
        }
    }

    #[test]
    fn small_files_past_the_layers_inline_budget_go_to_chunk_files() {
        let (d, mut b) = builder();
        b.inline_budget = 10;
        file(&mut b, "a", b"12345").unwrap();
        // Replaced: its bytes are no longer held.
        file(&mut b, "a", b"123456").unwrap();
        file(&mut b, "b", b"1234").unwrap();
        file(&mut b, "c", b"1").unwrap();
        let layer = b.finish().unwrap();
        let map: BTreeMap<_, _> = layer.entries.into_iter().collect();
        assert_eq!(map[&b"a".to_vec()].data, Data::Inline(b"123456".to_vec()));
        assert_eq!(map[&b"b".to_vec()].data, Data::Inline(b"1234".to_vec()));
        let c = &map[&b"c".to_vec()];
        assert_eq!((c.size, c.chunks().len()), (1, 1), "{c:?}");
        let files = std::fs::read_dir(d.path().join("chunks")).unwrap().count();
        assert_eq!(files, 1);
    }

    #[test]
    fn a_replaced_file_gets_the_names_of_its_last_content() {
        // Chunks are named on the writing threads and put in the entries
        // at `finish`: a path added twice must end with its second
        // content's chunks, one replaced by a small file or a directory
        // with none.
        let (d, mut b) = builder();
        let (first, second) = (vec![1u8; 100_000], vec![2u8; 150_000]);
        file(&mut b, "a", &first).unwrap();
        file(&mut b, "a", &second).unwrap();
        file(&mut b, "s", &first).unwrap();
        file(&mut b, "s", b"small now").unwrap();
        file(&mut b, "dir", &second).unwrap();
        b.add_oci(b"dir", Entry::new(Kind::Dir, 0o755), None)
            .unwrap();
        file(&mut b, "dir/f", &first).unwrap();
        let layer = b.finish().unwrap();
        let map: BTreeMap<_, _> = layer.entries.into_iter().collect();
        let chunks = ChunkDir::new(d.path().join("chunks"));
        let content = |path: &str| -> Vec<u8> {
            let e = &map[path.as_bytes()];
            e.chunks()
                .iter()
                .flat_map(|c| chunks.read(c).unwrap())
                .collect()
        };
        assert_eq!(content("a"), second);
        assert_eq!(content("dir/f"), first);
        assert_eq!(
            map[&b"s".to_vec()].data,
            Data::Inline(b"small now".to_vec())
        );
        assert_eq!(map[&b"dir".to_vec()].data, Data::None);
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

    /// A layer in path order with every form the tar has: the root, PAX
    /// names and times, xattrs, inline and chunked files, a hardlink, a
    /// symlink, an opaque directory (by marker) and a whiteout.
    /// A path, its entry and a regular file's content.
    type Item = (Vec<u8>, Entry, Option<Vec<u8>>);

    fn sample() -> Vec<Item> {
        let mut out = Vec::new();
        let mut add = |path: &str, mut e: Entry, data: Option<Vec<u8>>| {
            if let Some(d) = &data {
                e.size = d.len() as u64;
            }
            e.mtime_ns = 1_700_000_000_123_456_789;
            out.push((path.as_bytes().to_vec(), e, data));
        };
        add("", Entry::new(Kind::Dir, 0o755), None);
        add("a", Entry::new(Kind::Dir, 0o755), None);
        add(
            "a/.wh..wh..opq",
            Entry::new(Kind::Regular, 0),
            Some(Vec::new()),
        );
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        add("a/big", Entry::new(Kind::Regular, 0o644), Some(big));
        let mut link = Entry::new(Kind::Hardlink, 0);
        link.link = b"a/big".to_vec();
        add("a/big-link", link, None);
        add("a/gone", Entry::new(Kind::Regular, 0), Some(Vec::new()));
        let mut attrs = Entry::new(Kind::Regular, 0o600);
        attrs.xattrs = vec![(b"user.k".to_vec(), b"v".to_vec())];
        add(
            &format!("b/{}", "n".repeat(120)),
            attrs,
            Some(b"small".to_vec()),
        );
        let mut sym = Entry::new(Kind::Symlink, 0o777);
        sym.link = b"a/big".to_vec();
        add("s", sym, None);
        out[5].0 = b"a/.wh.gone".to_vec();
        out
    }

    /// Builds a layer of `items`; says whether the tar was hashed as they
    /// arrived. `waiting` bounds the reorder buffer (bytes, entries). The
    /// chunks live in the directory returned, removed when it drops (a
    /// kept one left six directories in /tmp per run).
    fn build_from(
        items: &[Item],
        waiting: Option<(usize, usize)>,
    ) -> (bool, PendingLayer, ChunkDir, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkDir::new(dir.path().join("chunks"));
        let mut b = LayerBuilder::new(chunks.clone(), "test");
        if let Some((bytes, entries)) = waiting {
            b.tar.set_limits(bytes, entries);
        }
        for (path, entry, data) in items {
            let mut reader = data.as_deref();
            let content = reader.as_mut().map(|r| r as &mut dyn Read);
            b.add_oci(path, entry.clone(), content).unwrap();
        }
        let streamed = b.tar.is_streaming();
        (streamed, b.finish().unwrap(), chunks, dir)
    }

    /// The canonical tar of `layer`, hashed from its stored chunks.
    fn canonical_digest(layer: &PendingLayer, chunks: &ChunkDir) -> Digest {
        let mut canonical = oci_tar::HashingWriter::default();
        oci_tar::write(
            layer.entries.iter().map(|(p, e)| (p.as_slice(), e)),
            chunks,
            &mut canonical,
        )
        .unwrap();
        canonical.digest()
    }

    #[test]
    fn the_diff_id_hashed_as_entries_arrive_is_the_canonical_tars() {
        let in_order = sample();
        let mut shuffled = in_order.clone();
        shuffled.swap(6, 7);
        let mut misdeclared = in_order.clone();
        misdeclared[3].1.size -= 1;
        let no_wait = Some((0, 0));
        let mut ids = Vec::new();
        for (items, waiting, streams) in [
            (&in_order, None, true),
            (&in_order, no_wait, true),
            (&shuffled, None, true),
            (&shuffled, no_wait, false),
            (&misdeclared, None, false),
        ] {
            let (streamed, layer, chunks, _dir) = build_from(items, waiting);
            assert_eq!(streamed, streams, "waiting {waiting:?}");
            assert_eq!(layer.diff_id, canonical_digest(&layer, &chunks));
            ids.push(layer.diff_id);
        }
        assert!(ids.iter().all(|id| *id == ids[0]));
    }

    #[test]
    fn a_tree_walks_order_is_hashed_as_entries_arrive() {
        // A walk (tar, docker) puts a directory's contents right after
        // it: `d/x` before `d.txt`, which bytewise order puts first.
        let mut items = Vec::new();
        for (path, kind, data) in [
            ("", Kind::Dir, None),
            ("d", Kind::Dir, None),
            ("d/x", Kind::Regular, Some(vec![5u8; 100_000])),
            ("d/y", Kind::Regular, Some(b"small".to_vec())),
            ("d.txt", Kind::Regular, Some(vec![6u8; 70_000])),
            ("e", Kind::Regular, Some(Vec::new())),
        ] {
            let mut e = Entry::new(kind, 0o755);
            e.size = data.as_ref().map_or(0, |d: &Vec<u8>| d.len() as u64);
            items.push((path.as_bytes().to_vec(), e, data));
        }
        let (streamed, layer, chunks, _dir) = build_from(&items, None);
        assert!(streamed, "hashed as the entries arrived");
        assert_eq!(layer.diff_id, canonical_digest(&layer, &chunks));
    }
}
