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
//! chunk writer), never a copy.

use crate::digest::Digest;
use crate::entry::{Entry, Kind};
use crate::oci_tar::{BackgroundHasher, TarWriter};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::{self, Write};

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

/// The canonical tar being hashed, with its reorder buffer.
pub(super) struct CanonicalStream {
    /// `None` once the streaming ended (the tar is hashed at the end).
    tar: Option<TarWriter<BackgroundHasher>>,
    /// The entry being added (its content still arriving).
    current: Option<(Vec<u8>, Waiting)>,
    waiting: BTreeMap<Vec<u8>, Waiting>,
    waiting_bytes: usize,
    /// The last entry written to the tar, and whether it is a directory an
    /// opaque marker may still follow.
    last: Option<(Vec<u8>, bool)>,
    limits: (usize, usize),
}

impl CanonicalStream {
    pub(super) fn new() -> CanonicalStream {
        CanonicalStream {
            tar: Some(TarWriter::new(BackgroundHasher::spawn())),
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
            Some(_) => self.current = Some((path.to_vec(), waiting)),
        }
    }

    /// The next piece of the current file's content.
    pub(super) fn content(&mut self, piece: Bytes) {
        if let Some((
            _,
            Waiting {
                content: Some(c), ..
            },
        )) = &mut self.current
        {
            self.waiting_bytes += piece.len();
            c.push(piece);
        }
    }

    /// Ends the current file: `len` bytes came, its header said `declared`.
    pub(super) fn end_content(&mut self, declared: u64, len: u64) {
        if self.tar.is_none() {
            return;
        }
        match self.current.take() {
            Some((path, waiting)) if declared == len => self.wait(path, waiting),
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
        Some(tar.finish().and_then(BackgroundHasher::digest))
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

    /// Writes one entry to the tar, in its turn.
    fn write(&mut self, path: &[u8], waiting: Waiting) {
        let Some(tar) = self.tar.as_mut() else {
            return;
        };
        let mut len = 0u64;
        let mut written = tar.entry(path, &waiting.entry);
        for piece in waiting.content.iter().flatten() {
            len += piece.len() as u64;
            self.waiting_bytes = self.waiting_bytes.saturating_sub(piece.len());
            written = written.and_then(|()| match piece.len() < SMALL_PIECE {
                true => tar.out().write_all(piece),
                false => tar.out().write_shared(piece.clone()),
            });
        }
        if waiting.content.is_some() {
            written = written.and_then(|()| tar.end_content(len));
        }
        if written.is_err() {
            return self.stop();
        }
        let markable = waiting.entry.kind == Kind::Dir && !waiting.entry.opaque;
        self.last = Some((path.to_vec(), markable));
    }

    #[cfg(test)]
    pub(super) fn set_limits(&mut self, bytes: usize, entries: usize) {
        self.limits = (bytes, entries);
    }
}
