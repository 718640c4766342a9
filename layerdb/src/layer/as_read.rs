//! The tar a layer was read from, hashed as read (the diff id its image
//! config names) and compared with the layer's canonical tar as that is
//! written, so that a tar already in canonical form (as strata pushes and
//! saves them) is hashed once, not twice: while the two are the same, the
//! canonical tar is only compared, and its digest is the input's.
//!
//! The canonical tar lags the input (its reorder buffer holds entries
//! back), so the input not yet compared waits here: bytes outside file
//! contents as they are, a file's content as its length only. Content
//! needs no comparing: the canonical tar's content for a file is the bytes
//! read for it, so where both tars put content after the same header
//! bytes it is the same (a path the input gives twice stops the canonical
//! stream, and the comparing with it). The canonical tar runs ahead only
//! by a big file's padding, written as the file ends, before the input
//! reads its own.
//!
//! At the first difference the comparing ends and the canonical tar is
//! hashed from there on, starting from the hash of the input up to where
//! the two still agreed (each waiting part keeps the hash of what came
//! before it); so it does when more than `MAX_WAITING_RAW` bytes of
//! headers wait.

use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::VecDeque;

/// Bytes outside file contents that may wait to be compared: past this
/// (headers of many megabytes, which a tar may hold) the canonical tar is
/// hashed instead of compared.
const MAX_WAITING_RAW: usize = 64 << 20;

/// The tar as read: its hash, and what the canonical tar has not been
/// compared with yet.
pub(crate) struct AsRead {
    hasher: Sha256,
    /// Input not yet compared, oldest first; empty once the two differ.
    waiting: VecDeque<Part>,
    /// Of `waiting`, the bytes outside contents.
    waiting_raw: usize,
    /// Canonical bytes outside contents that the input has not reached.
    ahead: Vec<u8>,
    comparing: Comparing,
    /// Whether the input is inside a file's content.
    in_content: bool,
}

/// Where the comparing is.
enum Comparing {
    /// The canonical tar is the input so far.
    Same,
    /// Ended where the canonical tar is (the input differed from canonical
    /// bytes that ran ahead of it, or too much waited): the canonical
    /// tar's hash before its next write.
    Differed(Sha256),
    /// Over: the canonical tar is hashed on its own, or not streamed.
    Off,
}

/// A stretch of the input not yet compared, with the hash of the input
/// before it.
enum Part {
    /// Bytes outside file contents (headers, padding, end blocks), of
    /// which `matched` are compared.
    Raw {
        before: Sha256,
        bytes: Vec<u8>,
        matched: usize,
    },
    /// A file's content: `len` bytes read so far (all of it once `ended`),
    /// `matched` of them compared.
    Content {
        before: Sha256,
        len: u64,
        matched: u64,
        ended: bool,
    },
}

/// What a comparison found.
#[derive(Debug)]
pub(crate) enum Compared {
    /// The canonical tar is the input so far.
    Same,
    /// They differ: the hash of the canonical tar up to (not including)
    /// what was being compared, or `None` where that cannot be known
    /// (inside a content neither keeps).
    Differs(Option<Sha256>),
}

impl AsRead {
    pub(crate) fn new() -> AsRead {
        AsRead {
            hasher: Sha256::new(),
            waiting: VecDeque::new(),
            waiting_raw: 0,
            ahead: Vec::new(),
            comparing: Comparing::Same,
            in_content: false,
        }
    }

    /// The sha256 of the input read so far.
    pub(crate) fn digest(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }

    /// Bytes the tar reader took in.
    pub(crate) fn took(&mut self, mut bytes: &[u8]) {
        if matches!(self.comparing, Comparing::Same) {
            if self.in_content {
                match self.waiting.back_mut() {
                    Some(Part::Content {
                        len, ended: false, ..
                    }) => *len += bytes.len() as u64,
                    // Content the canonical tar counted as ended (see
                    // `canonical_raw`): never seen, but these bytes are
                    // then compared with nothing, so no more comparing.
                    _ => self.stop(),
                }
            } else {
                bytes = self.took_raw(bytes);
            }
        }
        self.hasher.update(bytes);
    }

    /// Compares raw input with the canonical bytes ahead of it and keeps
    /// what is left; gives back the bytes not yet hashed.
    fn took_raw<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let n = self.ahead.len().min(bytes.len());
        if n > 0 {
            if self.ahead[..n] != bytes[..n] {
                self.hash_from_here();
                return bytes;
            }
            self.hasher.update(&bytes[..n]);
            self.ahead.drain(..n);
        }
        let rest = &bytes[n..];
        if rest.is_empty() {
            return rest;
        }
        match self.waiting.back_mut() {
            Some(Part::Raw { bytes: kept, .. }) => kept.extend_from_slice(rest),
            _ => self.waiting.push_back(Part::Raw {
                before: self.hasher.clone(),
                bytes: rest.to_vec(),
                matched: 0,
            }),
        }
        self.waiting_raw += rest.len();
        if self.waiting_raw > MAX_WAITING_RAW {
            self.hash_from_here();
        }
        rest
    }

    /// What the reader takes in from here on is a file's content, which
    /// the layer keeps as read.
    pub(crate) fn start_content(&mut self) {
        self.in_content = true;
        if !matches!(self.comparing, Comparing::Same) {
            return;
        }
        if !self.ahead.is_empty() {
            // The canonical tar put more raw bytes here than the input.
            return self.hash_from_here();
        }
        self.waiting.push_back(Part::Content {
            before: self.hasher.clone(),
            len: 0,
            matched: 0,
            ended: false,
        });
    }

    /// The content is read.
    pub(crate) fn end_content(&mut self) {
        self.in_content = false;
        if let Some(Part::Content { ended, .. }) = self.waiting.back_mut() {
            *ended = true;
        }
        self.pop_matched();
    }

    /// The canonical tar's next bytes outside file contents.
    pub(crate) fn canonical_raw(&mut self, mut buf: &[u8]) -> Compared {
        if !matches!(self.comparing, Comparing::Same) {
            return self.differ();
        }
        while !buf.is_empty() {
            match self.waiting.front_mut() {
                None => {
                    self.ahead.extend_from_slice(buf);
                    return Compared::Same;
                }
                Some(Part::Raw { bytes, matched, .. }) => {
                    let n = (bytes.len() - *matched).min(buf.len());
                    if bytes[*matched..*matched + n] != buf[..n] {
                        return self.differ();
                    }
                    *matched += n;
                    buf = &buf[n..];
                    self.pop_matched();
                }
                // A big file written as it streams: the canonical tar
                // holds all of its content, so the input read all of it
                // too, though it has not said the content ended.
                Some(Part::Content { len, matched, .. }) if *matched == *len => {
                    self.waiting.pop_front();
                }
                Some(Part::Content { .. }) => return self.differ(),
            }
        }
        Compared::Same
    }

    /// The canonical tar's next `len` bytes of a file's content.
    pub(crate) fn canonical_content(&mut self, len: u64) -> Compared {
        if !matches!(self.comparing, Comparing::Same) || !self.ahead.is_empty() {
            return self.differ();
        }
        match self.waiting.front_mut() {
            Some(Part::Content {
                len: read, matched, ..
            }) if *matched + len <= *read => {
                *matched += len;
                self.pop_matched();
                Compared::Same
            }
            _ => self.differ(),
        }
    }

    /// The canonical tar is complete: the same as the input if the input
    /// has nothing more (the input is read to its end by now).
    pub(crate) fn canonical_end(&mut self) -> Compared {
        let all = self.waiting.is_empty() && self.ahead.is_empty();
        match matches!(self.comparing, Comparing::Same) && all {
            true => Compared::Same,
            false => self.differ(),
        }
    }

    /// No more comparing: the canonical tar stopped being written as the
    /// input arrives.
    pub(crate) fn stop(&mut self) {
        self.comparing = Comparing::Off;
        self.waiting.clear();
        self.waiting_raw = 0;
        self.ahead.clear();
    }

    /// Drops the parts compared to their end.
    fn pop_matched(&mut self) {
        while let Some(front) = self.waiting.front() {
            let done = match front {
                Part::Raw { bytes, matched, .. } => *matched == bytes.len(),
                Part::Content {
                    len,
                    matched,
                    ended,
                    ..
                } => *ended && matched == len,
            };
            // A raw part still open for input goes too: what follows
            // starts a part of its own, with the same hash before it.
            if !done {
                return;
            }
            if let Some(Part::Raw { bytes, .. }) = self.waiting.pop_front() {
                self.waiting_raw -= bytes.len();
            }
        }
    }

    /// Ends the comparing where the canonical tar is now: its next write
    /// is hashed, from the state of what the two agreed on.
    fn hash_from_here(&mut self) {
        let agreed = self.agreed();
        self.stop();
        if let Some(h) = agreed {
            self.comparing = Comparing::Differed(h);
        }
    }

    /// Ends the comparing at a difference; the canonical tar's hash up to
    /// the canonical bytes being compared.
    fn differ(&mut self) -> Compared {
        let state = match &self.comparing {
            Comparing::Differed(h) => Some(h.clone()),
            Comparing::Off => None,
            Comparing::Same => self.agreed(),
        };
        self.stop();
        Compared::Differs(state)
    }

    /// The hash of the canonical tar so far, while the two are the same:
    /// the input's up to where the canonical tar is, and what ran ahead;
    /// `None` inside a content (neither keeps its bytes).
    fn agreed(&self) -> Option<Sha256> {
        let mut h = match self.waiting.front() {
            None => self.hasher.clone(),
            Some(Part::Raw {
                before,
                bytes,
                matched,
            }) => {
                let mut h = before.clone();
                h.update(&bytes[..*matched]);
                h
            }
            Some(Part::Content {
                before, matched: 0, ..
            }) => before.clone(),
            Some(Part::Content { .. }) => return None,
        };
        h.update(&self.ahead);
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use crate::chunk::ChunkDir;
    use crate::digest::Digest;
    use crate::entry::{Entry, Kind};
    use crate::oci_tar::{self, TarWriter, CANONICAL_HASHES};
    use std::io::Write;

    /// A file entry of `size` bytes.
    fn file(size: usize) -> Entry {
        Entry {
            size: size as u64,
            mtime_ns: 1_700_000_000_000_000_000,
            ..Entry::new(Kind::Regular, 0o644)
        }
    }

    fn dir() -> Entry {
        Entry::new(Kind::Dir, 0o755)
    }

    /// A tar in canonical form entry by entry, in the order given (the
    /// canonical tar's own order or not); content is `size` bytes counting
    /// up from the path's length.
    fn tar_of(entries: &[(&str, Entry)]) -> Vec<u8> {
        let mut t = TarWriter::new(Vec::new());
        for (path, e) in entries {
            t.entry(path.as_bytes(), e).unwrap();
            if e.kind == Kind::Regular {
                let content: Vec<u8> = (0..e.size)
                    .map(|i| (i as usize + path.len()) as u8)
                    .collect();
                t.out().write_all(&content).unwrap();
                t.end_content(e.size).unwrap();
            }
        }
        t.finish().unwrap()
    }

    /// A tree with small and chunked files and a directory's contents in
    /// path order.
    fn tree() -> Vec<(&'static str, Entry)> {
        vec![
            ("", dir()),
            ("a", file(10)),
            ("b", file(300_000)),
            ("c", dir()),
            ("c/d", file(0)),
            ("c/e", file(5000)),
            ("f", file(1)),
        ]
    }

    /// Reads `input` as a layer of an image; its diff id as read, the
    /// stored layer's diff id, the sha256 of its canonical tar written out
    /// from the store, and how many times the ingest hashed a canonical
    /// tar (on a thread of its own, or from the chunks at the end).
    fn ingest(input: &[u8]) -> (Digest, Digest, Digest, usize) {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkDir::new(dir.path().join("chunks"));
        let before = CANONICAL_HASHES.with(|n| n.get());
        let (layer, as_read) = crate::import::from_tar_with_diff_id(
            chunks.clone(),
            "t",
            input,
            crate::import::Framing::Sniffed,
            &|_| None,
        )
        .unwrap();
        let started = CANONICAL_HASHES.with(|n| n.get()) - before;
        let mut canonical = oci_tar::HashingWriter::default();
        oci_tar::write(
            layer.entries.iter().map(|(p, e)| (p.as_slice(), e)),
            &chunks,
            &mut canonical,
        )
        .unwrap();
        (as_read, layer.diff_id, canonical.digest(), started)
    }

    /// Sets header field `at..at + value.len()` of the `n`th header (of
    /// the files and directories, counted from 0) and its checksum.
    fn retouch_header(tar: &mut [u8], n: usize, at: usize, value: &[u8]) {
        let mut archive = tar::Archive::new(&tar[..]);
        let pos = archive
            .entries()
            .unwrap()
            .nth(n)
            .unwrap()
            .unwrap()
            .raw_header_position() as usize;
        let h = &mut tar[pos..pos + 512];
        h[at..at + value.len()].copy_from_slice(value);
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn content_longer_than_the_inputs_is_a_difference_after_the_header() {
        let mut a = super::AsRead::new();
        a.took(b"head");
        a.start_content();
        a.took(b"12345");
        a.end_content();
        assert!(matches!(a.canonical_raw(b"head"), super::Compared::Same));
        match a.canonical_content(6) {
            super::Compared::Differs(Some(h)) => {
                assert_eq!(Digest::from_hasher(h), Digest::of(b"head"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_past_the_bound_are_hashed_not_kept() {
        let mut a = super::AsRead::new();
        let header = vec![9u8; 1 << 20];
        a.took(b"first");
        assert!(matches!(a.canonical_raw(b"fi"), super::Compared::Same));
        for _ in 0..65 {
            a.took(&header);
        }
        assert!(a.waiting.is_empty(), "{} bytes kept", a.waiting_raw);
        match a.canonical_raw(b"rst") {
            super::Compared::Differs(Some(h)) => {
                assert_eq!(Digest::from_hasher(h), Digest::of(b"fi"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_canonical_tar_is_hashed_once() {
        let input = tar_of(&tree());
        let (as_read, stored, canonical, hashers) = ingest(&input);
        assert_eq!(as_read, Digest::of(&input));
        assert_eq!(stored, as_read);
        assert_eq!(canonical, as_read);
        assert_eq!(hashers, 0, "the canonical tar was hashed");
    }

    #[test]
    fn a_header_other_than_canonical_anywhere_gives_the_canonical_digest() {
        let plain = tar_of(&tree());
        for n in 0..tree().len() {
            let mut input = plain.clone();
            // The ustar user name, which the canonical tar leaves empty.
            retouch_header(&mut input, n, 265, b"someone");
            let (as_read, stored, canonical, hashers) = ingest(&input);
            assert_eq!(as_read, Digest::of(&input));
            assert_eq!(stored, canonical, "user name in header {n}");
            assert_eq!(canonical, Digest::of(&plain));
            assert_eq!(hashers, 1);
        }
    }

    #[test]
    fn bytes_the_tar_reader_skips_give_the_canonical_digest() {
        let plain = tar_of(&tree());
        // A file's padding not zero: after "a", 10 bytes of content.
        let mut input = plain.clone();
        input[512 + 512 + 20] = 1;
        // Record padding after the end blocks, as GNU tar writes.
        let mut padded = plain.clone();
        padded.resize(plain.len().div_ceil(10240) * 10240 + 10240, 0);
        for input in [input, padded] {
            let (as_read, stored, canonical, _) = ingest(&input);
            assert_eq!(as_read, Digest::of(&input));
            assert_eq!(stored, canonical);
            assert_eq!(canonical, Digest::of(&plain));
        }
    }

    #[test]
    fn entries_out_of_order_or_missing_give_the_canonical_digest() {
        let walk = vec![
            ("", dir()),
            ("c", dir()),
            ("c/e", file(5000)),
            ("c.txt", file(70_000)),
            ("d", file(3)),
        ];
        let missing_parent = vec![("", dir()), ("x/y", file(100)), ("z", file(2))];
        for input in [tar_of(&walk), tar_of(&missing_parent)] {
            let (as_read, stored, canonical, _) = ingest(&input);
            assert_eq!(as_read, Digest::of(&input));
            assert_eq!(stored, canonical);
            assert_ne!(canonical, as_read);
        }
    }

    #[test]
    fn a_file_past_the_reorder_buffer_is_compared_as_it_streams() {
        let size = (40 << 20) + 10;
        let big = vec![("", dir()), ("a", file(size)), ("b", file(7))];
        let input = tar_of(&big);
        let (as_read, stored, canonical, hashers) = ingest(&input);
        assert_eq!((stored, canonical), (as_read, as_read));
        assert_eq!(hashers, 0);
        // The canonical tar writes the big file's padding before the
        // input reaches its own; and a header after it.
        let mut padding = input.clone();
        padding[1024 + size + 100] = 1;
        let mut header = input.clone();
        retouch_header(&mut header, 2, 265, b"someone");
        for other in [padding, header] {
            let (_, stored, canonical, hashers) = ingest(&other);
            assert_eq!(
                (stored, canonical),
                (Digest::of(&input), Digest::of(&input))
            );
            assert_eq!(hashers, 1);
        }
    }
}
