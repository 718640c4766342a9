//! The layer's canonical tar, hashed as entries arrive even when they do
//! not arrive quite in its order.
//!
//! The canonical tar has its entries in bytewise path order. Tars made by
//! walking a tree (GNU tar, docker, containerd, debootstrap's tarballs)
//! sort each directory's names and put a directory's contents right after
//! it, so `usr/lib/perl/Carp/Heavy.pm` comes before `usr/lib/perl/Carp.pm`,
//! which bytewise order puts first ('.' < '/'). Such displacements are
//! short, so entries wait in a reorder buffer (bounded, in bytes and in
//! entries) and leave it smallest first only when it is full or the layer
//! ends. An entry that arrives after a larger one already left ends the
//! streaming, and the tar is hashed at the end from the stored chunks, as
//! before. Waiting content is the chunks it was cut into (shared with the
//! chunk writer), never a copy. A file bigger than the buffer does not
//! wait whole: once its content passes the bound, what sorts before it
//! goes out, and it follows straight into the tar as it arrives (a layer
//! of a few MB of gzip can hold a file of many GB).

use super::as_read::{AsRead, Compared};
use crate::digest::Digest;
use crate::entry::{Entry, Kind};
use crate::oci_tar::{BackgroundHasher, TarWriter};
use bytes::Bytes;
use sha2::Sha256;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::rc::Rc;

/// Content bytes the reorder buffer holds at most.
const MAX_WAITING_BYTES: usize = 32 << 20;
/// Entries the reorder buffer holds at most.
const MAX_WAITING_ENTRIES: usize = 16 << 10;
/// Pieces smaller than this are copied into the hasher's header blocks
/// rather than handed over on their own.
const SMALL_PIECE: usize = 4096;

/// One entry waiting for its turn in the tar: its headers' entry and, for
/// a regular file, its content.
struct Waiting {
    entry: Entry,
    content: Option<Vec<Bytes>>,
}

/// The regular file being added, while its content arrives.
enum Current {
    /// Kept, to wait in the reorder buffer when it ends.
    Kept(Vec<u8>, Waiting),
    /// Too big to keep: its header and the content so far are in the tar,
    /// the rest goes straight after it; `len` bytes of it so far.
    Straight { len: u64 },
}

/// Where the canonical tar's bytes go.
enum Out {
    /// Compared with the tar as read, while the two are the same.
    Compared(Rc<RefCell<AsRead>>),
    /// Hashed on a thread of its own.
    Hashed(BackgroundHasher),
}

impl Out {
    /// The hasher the next bytes go to, once `compare` found what
    /// comparing them with the tar as read gives: none while the two are
    /// the same.
    fn hasher_after(
        &mut self,
        compare: impl FnOnce(&mut AsRead) -> Compared,
    ) -> io::Result<Option<&mut BackgroundHasher>> {
        if let Out::Compared(as_read) = self {
            let compared = compare(&mut as_read.borrow_mut());
            match compared {
                Compared::Same => return Ok(None),
                Compared::Differs(Some(before)) => {
                    *self = Out::Hashed(BackgroundHasher::spawn_from(before))
                }
                Compared::Differs(None) => {
                    return Err(io::Error::other(
                        "the canonical tar left the tar as read inside a file's content",
                    ))
                }
            }
        }
        Ok(match self {
            Out::Hashed(h) => Some(h),
            Out::Compared(_) => None,
        })
    }

    /// A piece of a file's content, after its header.
    fn content(&mut self, piece: &Bytes) -> io::Result<()> {
        let compare = |a: &mut AsRead| a.canonical_content(piece.len() as u64);
        match self.hasher_after(compare)? {
            None => Ok(()),
            Some(h) if piece.len() < SMALL_PIECE => h.write_all(piece),
            Some(h) => h.write_shared(piece.clone()),
        }
    }

    /// The digest of the whole tar.
    fn digest(mut self) -> io::Result<Digest> {
        self.hasher_after(AsRead::canonical_end)?;
        match self {
            Out::Compared(as_read) => Ok(as_read.borrow().digest()),
            Out::Hashed(h) => h.digest(),
        }
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(h) = self.hasher_after(|a| a.canonical_raw(buf))? {
            h.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The canonical tar being hashed, with its reorder buffer.
pub(super) struct CanonicalStream {
    /// `None` once the streaming ended (the tar is hashed at the end).
    tar: Option<TarWriter<Out>>,
    current: Option<Current>,
    waiting: BTreeMap<Vec<u8>, Waiting>,
    waiting_bytes: usize,
    /// The last entry written to the tar, and whether it is a directory an
    /// opaque marker may still follow.
    last: Option<(Vec<u8>, bool)>,
    limits: (usize, usize),
}

impl CanonicalStream {
    /// A stream hashing the canonical tar.
    pub(super) fn new() -> CanonicalStream {
        Self::into(Out::Hashed(BackgroundHasher::spawn_from(Sha256::default())))
    }

    /// A stream comparing the canonical tar with the tar read into
    /// `as_read` while the two are the same, and hashing it from where
    /// they differ.
    pub(super) fn compared_with(as_read: Rc<RefCell<AsRead>>) -> CanonicalStream {
        Self::into(Out::Compared(as_read))
    }

    fn into(out: Out) -> CanonicalStream {
        CanonicalStream {
            tar: Some(TarWriter::new(out)),
            current: None,
            waiting: BTreeMap::new(),
            waiting_bytes: 0,
            last: None,
            limits: (MAX_WAITING_BYTES, MAX_WAITING_ENTRIES),
        }
    }

    /// Whether the tar is still hashed as entries arrive.
    #[cfg(test)]
    pub(super) fn is_streaming(&self) -> bool {
        self.tar.is_some()
    }

    /// Ends the streaming: the tar will be hashed from the chunks.
    pub(super) fn stop(&mut self) {
        if let Some(Out::Compared(as_read)) = self.tar.as_mut().map(|t| t.out()) {
            as_read.borrow_mut().stop();
        }
        self.tar = None;
        self.current = None;
        self.waiting.clear();
        self.waiting_bytes = 0;
    }

    /// Starts an entry (a regular file's content follows, then
    /// [`CanonicalStream::end_content`]).
    pub(super) fn entry(&mut self, path: &[u8], entry: &Entry) {
        if self.tar.is_none() {
            return;
        }
        let after_last = self.last.as_ref().is_none_or(|(l, _)| l.as_slice() < path);
        if !after_last || self.waiting.contains_key(path) {
            return self.stop();
        }
        let content = (entry.kind == Kind::Regular).then(Vec::new);
        let waiting = Waiting {
            entry: entry.clone(),
            content,
        };
        match waiting.content {
            None => self.wait(path.to_vec(), waiting),
            Some(_) => self.current = Some(Current::Kept(path.to_vec(), waiting)),
        }
    }

    /// The next piece of the current file's content.
    pub(super) fn content(&mut self, piece: Bytes) {
        match &mut self.current {
            Some(Current::Kept(
                _,
                Waiting {
                    content: Some(c), ..
                },
            )) => {
                self.waiting_bytes += piece.len();
                c.push(piece);
                if self.waiting_bytes > self.limits.0 {
                    self.write_current();
                }
            }
            Some(Current::Straight { len }) => {
                *len += piece.len() as u64;
                if self.put(&piece).is_err() {
                    self.stop();
                }
            }
            _ => {}
        }
    }

    /// Ends the current file: `len` bytes came, its header said `declared`.
    pub(super) fn end_content(&mut self, declared: u64, len: u64) {
        if self.tar.is_none() {
            return;
        }
        match self.current.take() {
            Some(Current::Kept(path, waiting)) if declared == len => self.wait(path, waiting),
            Some(Current::Straight { len: put }) if declared == len && put == len => {
                if self
                    .tar
                    .as_mut()
                    .is_none_or(|t| t.end_content(len).is_err())
                {
                    self.stop();
                }
            }
            _ => self.stop(),
        }
    }

    /// Marks directory `dir` opaque: its marker follows it in the tar.
    /// `mtime_ns` is the directory's.
    pub(super) fn opaque_marker(&mut self, dir: &[u8], mtime_ns: i64) {
        if self.tar.is_none() {
            return;
        }
        if let Some(w) = self.waiting.get_mut(dir) {
            if w.entry.kind == Kind::Dir {
                w.entry.opaque = true;
                return;
            }
        }
        // The marker goes right after its directory, before anything
        // waiting (all of which comes after the last entry written).
        let follows_its_dir = matches!(&self.last, Some((last, true)) if last == dir);
        let written = follows_its_dir
            && self
                .tar
                .as_mut()
                .is_some_and(|t| t.opaque_marker(dir, mtime_ns).is_ok());
        if written {
            self.last = Some((dir.to_vec(), false));
        } else {
            self.stop();
        }
    }

    /// Writes every waiting entry and gives the tar's digest, or `None` if
    /// the streaming ended.
    pub(super) fn finish(mut self) -> Option<io::Result<Digest>> {
        if self.current.is_some() {
            self.stop();
        }
        while let Some((path, waiting)) = self.waiting.pop_first() {
            self.write(&path, waiting);
        }
        let tar = self.tar.take()?;
        Some(tar.finish().and_then(Out::digest))
    }

    fn wait(&mut self, path: Vec<u8>, waiting: Waiting) {
        self.waiting.insert(path, waiting);
        let (max_bytes, max_entries) = self.limits;
        while self.waiting_bytes > max_bytes || self.waiting.len() > max_entries {
            let Some((path, waiting)) = self.waiting.pop_first() else {
                break;
            };
            self.write(&path, waiting);
        }
    }

    /// The current file outgrew the buffer: everything waiting that sorts
    /// before it is written, then its header and content so far; the rest
    /// of its content follows straight (see [`Current::Straight`]).
    fn write_current(&mut self) {
        let Some(Current::Kept(path, waiting)) = self.current.take() else {
            return;
        };
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().as_slice() > path.as_slice() {
                break;
            }
            let (before, w) = entry.remove_entry();
            self.write(&before, w);
        }
        if let Some(len) = self.write_head(&path, &waiting) {
            self.current = Some(Current::Straight { len });
        }
    }

    /// Writes one entry to the tar, in its turn.
    fn write(&mut self, path: &[u8], waiting: Waiting) {
        let Some(len) = self.write_head(path, &waiting) else {
            return;
        };
        if waiting.content.is_some()
            && self
                .tar
                .as_mut()
                .is_none_or(|t| t.end_content(len).is_err())
        {
            self.stop();
        }
    }

    /// Writes an entry's header and the content it holds; gives that
    /// content's length, or `None` when the streaming ended.
    fn write_head(&mut self, path: &[u8], waiting: &Waiting) -> Option<u64> {
        let mut written = self.tar.as_mut()?.entry(path, &waiting.entry);
        let mut len = 0u64;
        for piece in waiting.content.iter().flatten() {
            len += piece.len() as u64;
            self.waiting_bytes = self.waiting_bytes.saturating_sub(piece.len());
            written = written.and_then(|()| self.put(piece));
        }
        if written.is_err() {
            self.stop();
            return None;
        }
        let markable = waiting.entry.kind == Kind::Dir && !waiting.entry.opaque;
        self.last = Some((path.to_vec(), markable));
        Some(len)
    }

    /// Puts a piece of content into the tar.
    fn put(&mut self, piece: &Bytes) -> io::Result<()> {
        match self.tar.as_mut() {
            Some(tar) => tar.out().content(piece),
            None => Ok(()),
        }
    }

    #[cfg(test)]
    pub(super) fn set_limits(&mut self, bytes: usize, entries: usize) {
        self.limits = (bytes, entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a tree walk's order (`d/x` before the big `d.txt`, which the
    /// canonical order puts first) with `limits`; gives the digest and the
    /// most content the stream held at once.
    fn hash_walk(limits: (usize, usize), big: usize) -> (Digest, usize) {
        let mut s = CanonicalStream::new();
        s.set_limits(limits.0, limits.1);
        let mut most = 0;
        let piece = Bytes::from(vec![7u8; 64 << 10]);
        let mut feed = |s: &mut CanonicalStream, path: &str, kind: Kind, size: usize| {
            let mut e = Entry::new(kind, 0o755);
            e.size = size as u64;
            s.entry(path.as_bytes(), &e);
            if kind == Kind::Regular {
                let mut left = size;
                while left > 0 {
                    let n = left.min(piece.len());
                    s.content(piece.slice(..n));
                    most = most.max(s.waiting_bytes);
                    left -= n;
                }
                s.end_content(size as u64, size as u64);
            }
        };
        feed(&mut s, "", Kind::Dir, 0);
        feed(&mut s, "d", Kind::Dir, 0);
        feed(&mut s, "d/x", Kind::Regular, 5_000);
        feed(&mut s, "d.txt", Kind::Regular, big);
        feed(&mut s, "e", Kind::Regular, 70_000);
        let digest = s.finish().expect("still streaming").unwrap();
        (digest, most)
    }

    #[test]
    fn a_file_bigger_than_the_buffer_goes_straight_through_in_its_turn() {
        let big = 4 << 20;
        let (whole, most_whole) = hash_walk((usize::MAX, usize::MAX), big);
        assert!(most_whole >= big, "kept whole without a bound");
        let bound = 256 << 10;
        let (straight, most) = hash_walk((bound, 1024), big);
        assert_eq!(straight, whole, "the same canonical tar");
        assert!(most <= bound + (64 << 10), "held {most} bytes at once");
    }
}
