//! Chunk-granular copy-up: a big file of a store layer is copied up as a
//! sparse upper file of the same size that names where its content still
//! is, and each block is copied from the layer only when a write first
//! touches it.
//!
//! A full copy of a 1 GiB file made its first one-byte write take
//! seconds. The upper file carries a record (the `user.strata.partial`
//! xattr, private like strata's other bookkeeping): the origin layer's id
//! and path, how much of the file still comes from it (`lower_len`), and a
//! bitmap of the blocks already in the upper. Every reader of the upper
//! merges the two: the mount server (the only writer) and a commit
//! ([`crate::changes`]). Once every block is in the upper the record goes
//! and the file is an ordinary one.
//!
//! Order, so a server killed at any instant leaves a record that is true:
//! a write copies the blocks it touches in part, writes its data, and only
//! then marks the blocks (before it answers); until marked a block reads
//! from the layer, which still has what it had. A truncation shrinks the
//! file first and the record after, and a record is always read with
//! `lower_len` no more than the file's size (it only grows past that by a
//! truncation), so a kill in between loses nothing either.
//!
//! Only files of layers that have an id ([`crate::Lower::layer_id`]:
//! store layers) are copied so; host directory layers copy in the kernel
//! already (`copy_file_range`). A record that cannot be stored (a host
//! filesystem without user xattrs) means a full copy, as before.

use crate::error::{FsError, Result};
use crate::lower::{Lower, Node};
use layerdb::Kind;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// The upper file's record of where its content is.
pub const PARTIAL_XATTR: &[u8] = b"user.strata.partial";

/// Files smaller than this are copied whole: a copy of a few MiB costs
/// less than a record and merged reads.
pub const MIN_SIZE: u64 = 8 << 20;

/// Blocks are at least 1 MiB (a few store chunks; one copy costs about a
/// millisecond) and at most this many per file, so the bitmap stays
/// within an xattr of one ext4 block, next to the file's other records.
const MAX_BLOCKS: u64 = 16 << 10;
const MIN_BLOCK_SHIFT: u8 = 20;

/// Format tag of the record's encoding.
const MAGIC: &[u8; 4] = b"SP1\0";

/// Where a partly copied file's content is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The origin layer ([`crate::Lower::layer_id`]).
    pub layer_id: String,
    /// The file's path in that layer.
    pub path: Vec<u8>,
    /// Bytes `[0, lower_len)` not in a filled block come from the layer;
    /// the rest of the file is the upper file's own.
    pub lower_len: u64,
    block_shift: u8,
    filled: Vec<u8>,
}

impl Record {
    /// A record for a copy of `size` bytes of `path` in layer `layer_id`,
    /// no block copied yet.
    pub fn new(layer_id: String, path: Vec<u8>, size: u64) -> Record {
        let mut block_shift = MIN_BLOCK_SHIFT;
        while size.div_ceil(1 << block_shift) > MAX_BLOCKS {
            block_shift += 1;
        }
        let blocks = size.div_ceil(1 << block_shift);
        Record {
            layer_id,
            path,
            lower_len: size,
            block_shift,
            filled: vec![0; blocks.div_ceil(8) as usize],
        }
    }

    /// The xattr value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + self.layer_id.len() + self.path.len());
        v.extend_from_slice(MAGIC);
        v.push(self.block_shift);
        v.extend_from_slice(&self.lower_len.to_le_bytes());
        for part in [self.layer_id.as_bytes(), &self.path] {
            v.extend_from_slice(&(part.len() as u16).to_le_bytes());
            v.extend_from_slice(part);
        }
        v.extend_from_slice(&self.filled);
        v
    }

    /// Reads an xattr value back; `None` for one that is not a whole,
    /// consistent record.
    pub fn parse(v: &[u8]) -> Option<Record> {
        let rest = v.strip_prefix(MAGIC)?;
        let (&block_shift, rest) = rest.split_first()?;
        let (len, rest) = rest.split_at_checked(8)?;
        let lower_len = u64::from_le_bytes(len.try_into().ok()?);
        let mut rest = rest;
        let mut part = || -> Option<Vec<u8>> {
            let (n, r) = rest.split_at_checked(2)?;
            let (p, r) = r.split_at_checked(u16::from_le_bytes(n.try_into().ok()?) as usize)?;
            rest = r;
            Some(p.to_vec())
        };
        let layer_id = String::from_utf8(part()?).ok()?;
        let path = part()?;
        let r = Record {
            layer_id,
            path,
            lower_len,
            block_shift,
            filled: rest.to_vec(),
        };
        if !(MIN_BLOCK_SHIFT..=62).contains(&block_shift) {
            return None;
        }
        let covered = (r.filled.len() as u64 * 8).checked_mul(1 << block_shift)?;
        (covered >= lower_len).then_some(r)
    }

    fn block(&self) -> u64 {
        1 << self.block_shift
    }

    fn is_filled(&self, i: u64) -> bool {
        self.filled[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    fn set_filled(&mut self, i: u64) {
        self.filled[(i / 8) as usize] |= 1 << (i % 8);
    }

    /// Blocks `[first, end)` overlapping bytes `[start, end)`, within
    /// `lower_len`.
    fn blocks(&self, start: u64, end: u64) -> std::ops::Range<u64> {
        let end = end.min(self.lower_len);
        if start >= end {
            return 0..0;
        }
        start / self.block()..end.div_ceil(self.block())
    }

    /// Whether no byte still comes from the layer.
    pub fn is_complete(&self) -> bool {
        (0..self.lower_len.div_ceil(self.block())).all(|i| self.is_filled(i))
    }

    /// Whether byte `off` comes from the layer, and how far the same holds.
    fn piece(&self, off: u64) -> (bool, u64) {
        if off >= self.lower_len {
            return (false, u64::MAX);
        }
        let b = self.block();
        let mut i = off / b;
        let from_layer = !self.is_filled(i);
        while (i + 1) * b < self.lower_len && self.is_filled(i + 1) != from_layer {
            i += 1;
        }
        (from_layer, ((i + 1) * b).min(self.lower_len))
    }
}

/// The record of an upper file, or `None` for an ordinary one. Its
/// `lower_len` is cut to the file's size (see the module's note on order).
pub fn record_of(file: &File, what: &[u8]) -> Result<Option<Record>> {
    Ok(stored_record(file, what)?.map(|(mut rec, size)| {
        rec.lower_len = rec.lower_len.min(size);
        rec
    }))
}

/// The record as stored, and the file's size.
fn stored_record(file: &File, what: &[u8]) -> Result<Option<(Record, u64)>> {
    let Some(v) = crate::xattr::get_fd(file, PARTIAL_XATTR)
        .map_err(|e| FsError::io("getxattr partial", what, e))?
    else {
        return Ok(None);
    };
    let rec = Record::parse(&v).ok_or_else(|| FsError::Corrupt {
        path: crate::error::show(what),
        reason: "unreadable record of a partial copy-up".into(),
    })?;
    let size = file
        .metadata()
        .map_err(|e| FsError::io("fstat", what, e))?
        .size();
    Ok(Some((rec, size)))
}

/// Stores `rec` on `file`, or removes it once nothing comes from the layer.
fn store(file: &File, rec: &Record, what: &[u8]) -> Result<()> {
    let r = if rec.is_complete() {
        crate::xattr::remove_fd(file, PARTIAL_XATTR)
    } else {
        crate::xattr::set_fd(file, PARTIAL_XATTR, &rec.encode())
    };
    r.map_err(|e| FsError::io("setxattr partial", what, e))
}

/// Makes the new upper file `file` a partial copy of `node` (at `path` in
/// `layer`): its size, and a record naming the layer. `Ok(false)` when it
/// cannot be (no layer id, too small, no user xattrs here): the caller
/// copies the data.
pub fn start(file: &File, layer: &dyn Lower, path: &[u8], node: &Node) -> Result<bool> {
    let size = node.entry.size;
    let Some(id) = layer.layer_id().filter(|_| size >= MIN_SIZE) else {
        return Ok(false);
    };
    let rec = Record::new(id, path.to_vec(), size);
    if let Err(e) = crate::xattr::set_fd(file, PARTIAL_XATTR, &rec.encode()) {
        log::debug!(
            "{}: partial copy-up not recorded ({e}): copying it whole",
            crate::error::show(path)
        );
        return Ok(false);
    }
    file.set_len(size)
        .map_err(|e| FsError::io("truncate copy-up", path, e))?;
    Ok(true)
}

/// Reads `buf.len()` bytes at `off` (fewer at the end of `file`), each from
/// the upper file or the origin (`origin`, the node at `rec.path` there).
pub fn read_at(
    file: &File,
    rec: &Record,
    (origin, node): (&dyn Lower, &Node),
    off: u64,
    buf: &mut [u8],
) -> Result<usize> {
    let size = file
        .metadata()
        .map_err(|e| FsError::io("fstat", &rec.path, e))?
        .size();
    let want = (buf.len() as u64).min(size.saturating_sub(off)) as usize;
    let mut done = 0;
    while done < want {
        let at = off + done as u64;
        let (from_layer, end) = rec.piece(at);
        let n = ((end - at) as usize).min(want - done);
        let part = &mut buf[done..done + n];
        let got = if from_layer {
            origin.read_at(&rec.path, node, at, part)?
        } else {
            file.read_at(part, at)
                .map_err(|e| FsError::io("read", &rec.path, e))?
        };
        if got == 0 {
            // Zeros past the host file's end cannot be (the size was read
            // above), nor a layer file shorter than `lower_len`.
            return Err(FsError::Corrupt {
                path: crate::error::show(&rec.path),
                reason: format!("partial copy-up: nothing to read at {at}"),
            });
        }
        done += got;
    }
    Ok(done)
}

/// A partial upper file as a mount serves it: its record, kept in memory
/// and stored on each change, and its origin. One per host inode, shared
/// by every open of it ([`Partials`]); the lock orders writes that copy
/// blocks against each other and against reads.
pub struct PartialFile {
    kept: RwLock<Kept>,
    origin: Arc<dyn Lower>,
    node: Node,
}

/// The record as the mount knows it.
#[derive(Debug)]
struct Kept {
    rec: Record,
    /// `lower_len` was cut when a read-only open read the record, and not
    /// stored then: a read-only mount (export's) must not write into an
    /// upper a running container's server writes too. The first change
    /// stores it.
    unsaved: bool,
}

impl std::fmt::Debug for PartialFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialFile")
            .field("kept", &self.kept)
            .finish()
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PartialFile {
    /// Reads through the record (see [`read_at`]).
    pub fn read_at(&self, file: &File, off: u64, buf: &mut [u8]) -> Result<usize> {
        let kept = read_lock(&self.kept);
        read_at(
            file,
            &kept.rec,
            (self.origin.as_ref(), &self.node),
            off,
            buf,
        )
    }

    /// Changes bytes `[off, off + len)` with `change` (a write, a hole
    /// punched): first copies the blocks it covers only in part, after it
    /// marks them all as the upper's.
    pub fn change<R>(
        &self,
        file: &File,
        (off, len): (u64, u64),
        change: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        self.copy_and_change(file, (off, off.saturating_add(len)), false, change)
    }

    /// Copies every block still in the layer: before a change that moves
    /// data within the file (fallocate's collapse and insert).
    pub fn fill(&self, file: &File) -> Result<()> {
        self.copy_and_change(file, (0, u64::MAX), true, || Ok(()))
    }

    /// Copies the blocks of `[off, end)` still in the layer (`all`: every
    /// one, else those the range covers only in part, whose other bytes
    /// must stay), runs `change`, then marks them all and stores the record.
    fn copy_and_change<R>(
        &self,
        file: &File,
        (off, end): (u64, u64),
        all: bool,
        change: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let mut kept = write_lock(&self.kept);
        let rec = &kept.rec;
        let blocks: Vec<u64> = rec
            .blocks(off, end)
            .filter(|&i| !rec.is_filled(i))
            .collect();
        let b = rec.block();
        for &i in &blocks {
            let (start, stop) = (i * b, ((i + 1) * b).min(rec.lower_len));
            if all || off > start || end < stop {
                self.copy_block(file, rec, start, stop)?;
            }
        }
        let out = change()?;
        for &i in &blocks {
            kept.rec.set_filled(i);
        }
        if !blocks.is_empty() || kept.unsaved {
            store(file, &kept.rec, &kept.rec.path)?;
            kept.unsaved = false;
        }
        Ok(out)
    }

    /// Truncates the file to `size` and then the record (see the module's
    /// note on order).
    pub fn truncate(&self, file: &File, size: u64) -> Result<()> {
        let mut kept = write_lock(&self.kept);
        file.set_len(size)
            .map_err(|e| FsError::io("truncate", &kept.rec.path, e))?;
        if size < kept.rec.lower_len || kept.unsaved {
            kept.rec.lower_len = kept.rec.lower_len.min(size);
            store(file, &kept.rec, &kept.rec.path)?;
            kept.unsaved = false;
        }
        Ok(())
    }

    fn copy_block(&self, file: &File, rec: &Record, start: u64, stop: u64) -> Result<()> {
        let mut buf = vec![0u8; (stop - start) as usize];
        let mut done = 0;
        while done < buf.len() {
            let at = start + done as u64;
            let n = self
                .origin
                .read_at(&rec.path, &self.node, at, &mut buf[done..])?;
            if n == 0 {
                return Err(FsError::Corrupt {
                    path: crate::error::show(&rec.path),
                    reason: format!("partial copy-up: the layer's file ends before {stop}"),
                });
            }
            done += n;
        }
        file.write_all_at(&buf, start)
            .map_err(|e| FsError::io("write copy-up", &rec.path, e))
    }
}

/// The partial files a mount has open, by host inode, so that every open
/// of one shares its record and lock.
#[derive(Default)]
pub struct Partials {
    open: Mutex<HashMap<(u64, u64), Weak<PartialFile>>>,
}

impl Partials {
    /// The partial state of upper file `file`, `None` for an ordinary one.
    /// `lowers` are the mount's, one of which the record names; `writable`:
    /// the open may change the file (see `Kept::unsaved`).
    pub fn of<L: Lower + 'static>(
        &self,
        file: &File,
        (lowers, writable): (&[Arc<L>], bool),
        what: &[u8],
    ) -> Result<Option<Arc<PartialFile>>> {
        // Most upper files have no record: one failed getxattr for them.
        if record_of(file, what)?.is_none() {
            return Ok(None);
        }
        let md = file.metadata().map_err(|e| FsError::io("fstat", what, e))?;
        let key = (md.dev(), md.ino());
        let mut open = crate::handles::lock(&self.open);
        if let Some(p) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(Some(p));
        }
        // Read again under the lock: an open that has just gone may have
        // stored a newer one since.
        let Some((mut rec, size)) = stored_record(file, what)? else {
            return Ok(None);
        };
        let mut unsaved = false;
        if size < rec.lower_len {
            // Shrunk after it was stored (a truncation cut short, or an
            // open with O_TRUNC): a later growth must read zeros there.
            rec.lower_len = size;
            match writable {
                true => store(file, &rec, what)?,
                false => unsaved = true,
            }
        }
        if rec.is_complete() {
            return Ok(None);
        }
        let (origin, node) =
            find_origin(lowers.iter().map(|l| l.as_ref() as &dyn Lower), &rec, what)?;
        let origin: Arc<dyn Lower> = lowers[origin].clone();
        let p = Arc::new(PartialFile {
            kept: RwLock::new(Kept { rec, unsaved }),
            origin,
            node,
        });
        open.retain(|_, w| w.strong_count() > 0);
        open.insert(key, Arc::downgrade(&p));
        Ok(Some(p))
    }
}

/// The index among `lowers` of the layer `rec` names, and its node; EIO
/// (logged with the reason) when this stack does not have it as recorded.
pub fn find_origin<'a>(
    lowers: impl Iterator<Item = &'a dyn Lower>,
    rec: &Record,
    what: &[u8],
) -> Result<(usize, Node)> {
    let mut found = None;
    for (i, l) in lowers.enumerate() {
        if l.layer_id().as_deref() == Some(rec.layer_id.as_str()) {
            found = l.node(&rec.path)?.map(|n| (i, n));
            break;
        }
    }
    match found {
        Some((i, n)) if n.entry.kind == Kind::Regular && n.entry.size >= rec.lower_len => {
            Ok((i, n))
        }
        _ => {
            log::error!(
                "{}: partly copied up from {} of layer {}, which this mount does not have",
                crate::error::show(what),
                crate::error::show(&rec.path),
                rec.layer_id
            );
            Err(FsError::posix(nix::errno::Errno::EIO, what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_refuses_damage() {
        let mut r = Record::new("sha256:ab".into(), b"usr/big".to_vec(), (5 << 20) + 1);
        r.set_filled(2);
        let v = r.encode();
        assert_eq!(Record::parse(&v), Some(r.clone()));
        for cut in 0..v.len() - 1 {
            assert_eq!(Record::parse(&v[..cut]), None, "cut at {cut}");
        }
        let mut bad = v.clone();
        bad[4] = 3; // blocks of 8 bytes
        assert_eq!(Record::parse(&bad), None);
        let mut huge = v;
        huge[4] = 200;
        assert_eq!(Record::parse(&huge), None);
    }

    #[test]
    fn blocks_stay_few_for_big_files() {
        let r = Record::new(String::new(), Vec::new(), 1 << 40);
        assert!(r.filled.len() as u64 * 8 <= MAX_BLOCKS);
        assert_eq!(r.block() * MAX_BLOCKS, 1 << 40);
        let small = Record::new(String::new(), Vec::new(), 1 << 30);
        assert_eq!(small.block(), 1 << 20);
    }

    #[test]
    fn pieces_alternate_between_layer_and_upper() {
        let mut r = Record::new(String::new(), Vec::new(), 4 << 20);
        r.set_filled(1);
        r.set_filled(2);
        let m = 1 << 20;
        assert_eq!(r.piece(5), (true, m));
        assert_eq!(r.piece(m), (false, 3 * m));
        assert_eq!(r.piece(3 * m + 7), (true, 4 * m));
        assert_eq!(r.piece(4 * m), (false, u64::MAX));
        r.lower_len = m + 10;
        assert_eq!(r.piece(m), (false, m + 10));
        assert_eq!(r.piece(m + 10), (false, u64::MAX));
        assert!(!r.is_complete());
        r.set_filled(0);
        assert!(r.is_complete());
    }
}
