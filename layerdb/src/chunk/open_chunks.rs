//! Chunk files kept open for reading, and read ahead of sequential readers.
//!
//! A mount server reads a file 128 KiB at a time, two or three chunk files
//! per read. Opening each per read, and reading each only when asked,
//! made a cold sequential read wait for one small disk read after another
//! (a 1 GiB file: 3 s, against 0.7 s for the same file on a plain
//! directory). Here a read that follows on from the chunk before it opens
//! the next chunks of the file and asks the kernel to read them in
//! (`POSIX_FADV_WILLNEED`, no wait), so the disk has many reads in flight;
//! the open files are kept for the reads that come for them.
//!
//! The read-ahead thread only opens: the readers check what they read
//! against its name (`ChunkDir::read_at`), on the mount server's reader
//! threads, and serve the bytes they hashed.

use crate::digest::Digest;
use crate::entry::ChunkRef;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Open chunk files kept: room for the read-ahead windows of a few
/// concurrent sequential readers, far below the descriptor limit.
const KEPT: usize = 256;

/// Chunks opened ahead of a sequential reader: about 4 MiB at the average
/// chunk size, as far as the kernel reads ahead of a reader of a mount
/// (fusefs's `kernel_read_ahead`), so the READs it sends ahead find
/// their chunks opened and on their way in, and enough reads in flight to
/// keep the disk busy. (32 left a reader of a READ sent 4 MiB ahead
/// waiting for the read-ahead thread to open its chunks.)
const AHEAD: usize = 64;

/// At most this many bytes are read ahead: a big file's chunks
/// (`BIG_AVG_CHUNK`) are read ahead about 8 deep, not 64 MiB.
const AHEAD_BYTES: u64 = 8 << 20;

/// The chunks to read ahead of a sequential reader, out of the ones after
/// the chunk it reads (`next`): [`AHEAD`] of them, up to [`AHEAD_BYTES`].
pub fn window(next: &[ChunkRef]) -> &[ChunkRef] {
    let mut bytes = 0u64;
    let n = next
        .iter()
        .take(AHEAD)
        .take_while(|c| {
            let room = bytes < AHEAD_BYTES;
            bytes += c.len as u64;
            room
        })
        .count();
    &next[..n]
}

/// An open chunk file.
#[derive(Debug)]
pub struct ChunkFile {
    pub file: File,
    /// Held while the file's verdict is looked up or made, so that a
    /// second reader of the same chunk (two requests sharing it) waits
    /// for the first one's verdict instead of hashing the same bytes again.
    checking: Mutex<()>,
}

impl ChunkFile {
    pub fn new(file: File) -> ChunkFile {
        ChunkFile {
            file,
            checking: Mutex::new(()),
        }
    }

    pub fn checking(&self) -> std::sync::MutexGuard<'_, ()> {
        self.checking.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct OpenChunks {
    inner: Mutex<Kept>,
    /// Signalled when a pending chunk is kept or given up.
    settled: Condvar,
}

/// How long a reader waits for the read-ahead thread to open a chunk it
/// needs, before opening it itself: the read-ahead is one file open (an
/// inode read) away, far below this.
const PENDING_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Kept {
    /// Each file with the time of its last use.
    files: HashMap<Digest, (Arc<ChunkFile>, u64)>,
    /// The same by time of last use: the least recently used file is
    /// closed first.
    by_use: BTreeMap<u64, Digest>,
    clock: u64,
    /// Chunks the read-ahead thread has claimed and not started opening
    /// yet: a reader that needs one takes it (opens it itself) rather than
    /// wait for the thread to open the window's chunks before it.
    pending: HashSet<Digest>,
    /// Chunks the read-ahead thread is opening now: a reader waits for
    /// them (one open and one read-ahead request) rather than open them a
    /// second time.
    opening: HashSet<Digest>,
    /// Readers waiting in `get_or_wait`: a settled chunk wakes them only
    /// if there are any (a wakeup is a system call).
    waiting: usize,
}

impl Kept {
    fn touch(&mut self, digest: &Digest) -> Option<Arc<ChunkFile>> {
        self.clock += 1;
        let now = self.clock;
        let (file, used) = self.files.get_mut(digest)?;
        self.by_use.remove(used);
        *used = now;
        self.by_use.insert(now, *digest);
        Some(file.clone())
    }
}

impl OpenChunks {
    /// The open file of a chunk, waiting (bounded) if the read-ahead thread
    /// is opening it; None if it is not kept, and then the caller opens
    /// it: a chunk claimed by the read-ahead thread and not started yet is
    /// taken from it (the thread skips it).
    pub fn get_or_wait(&self, digest: &Digest) -> Option<Arc<ChunkFile>> {
        let deadline = Instant::now() + PENDING_WAIT;
        let mut kept = self.lock();
        loop {
            if let Some(f) = kept.touch(digest) {
                return Some(f);
            }
            if kept.pending.remove(digest) {
                return None;
            }
            let now = Instant::now();
            if !kept.opening.contains(digest) || now >= deadline {
                return None;
            }
            kept.waiting += 1;
            kept = self
                .settled
                .wait_timeout(kept, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            kept.waiting -= 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the chunk is kept open or claimed by the read-ahead thread.
    pub fn contains(&self, digest: &Digest) -> bool {
        let kept = self.lock();
        kept.files.contains_key(digest)
            || kept.pending.contains(digest)
            || kept.opening.contains(digest)
    }

    /// Marks chunks the read-ahead thread is about to open; returns those
    /// that were neither kept nor claimed (the ones it should open).
    pub fn claim(&self, digests: impl IntoIterator<Item = Digest>) -> Vec<Digest> {
        let mut kept = self.lock();
        digests
            .into_iter()
            .filter(|d| {
                !kept.files.contains_key(d) && !kept.opening.contains(d) && kept.pending.insert(*d)
            })
            .collect()
    }

    /// Starts opening a claimed chunk: false if a reader took it since
    /// (the thread skips it).
    pub fn start(&self, digest: Digest) -> bool {
        let mut kept = self.lock();
        kept.pending.remove(&digest) && kept.opening.insert(digest)
    }

    /// Ends a started claim: the chunk is kept (`file`) or left to the
    /// reader.
    pub fn settle(&self, digest: Digest, file: Option<Arc<ChunkFile>>) {
        if let Some(f) = file {
            self.keep(digest, f);
        }
        let mut kept = self.lock();
        kept.opening.remove(&digest);
        let waiting = kept.waiting > 0;
        drop(kept);
        if waiting {
            self.settled.notify_all();
        }
    }

    /// Closes a kept file (it failed its check): the next read opens the
    /// chunk again, and finds it repaired or reports it again.
    pub fn forget(&self, digest: &Digest) {
        let mut kept = self.lock();
        if let Some((_, used)) = kept.files.remove(digest) {
            kept.by_use.remove(&used);
        }
    }

    /// Keeps `file` open for `digest`, closing the least recently used
    /// file when full.
    pub fn keep(&self, digest: Digest, file: Arc<ChunkFile>) {
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if kept.touch(&digest).is_some() {
            return;
        }
        if kept.files.len() >= KEPT {
            if let Some((_, oldest)) = kept.by_use.pop_first() {
                kept.files.remove(&oldest);
            }
        }
        let now = kept.clock;
        kept.files.insert(digest, (file, now));
        kept.by_use.insert(now, digest);
    }
}

/// Asks the kernel to read a whole file in, without waiting. Only a hint:
/// the read that follows reports any error.
pub fn start_reading(f: &File) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    // Offset 0 and length 0 mean the whole file.
    let _ = posix_fadvise(f, 0, 0, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_takes_a_claimed_chunk_not_started_and_waits_for_one_being_opened() {
        let open = Arc::new(OpenChunks::default());
        let d = |i: u32| Digest::of(&i.to_be_bytes());
        assert_eq!(open.claim([d(1), d(2)]), [d(1), d(2)]);
        assert!(open.contains(&d(2)), "claimed: a reader does not ask again");
        // Not started: the reader opens it itself, and the thread skips it.
        assert!(open.get_or_wait(&d(2)).is_none());
        assert!(!open.start(d(2)), "taken by the reader");
        // Being opened: the reader waits for the thread's file.
        assert!(open.start(d(1)));
        let reader = {
            let open = open.clone();
            std::thread::spawn(move || open.get_or_wait(&d(1)).is_some())
        };
        while open.lock().waiting == 0 {
            std::thread::yield_now();
        }
        let f = Arc::new(ChunkFile::new(File::open("/dev/null").unwrap()));
        open.settle(d(1), Some(f));
        assert!(reader.join().unwrap(), "the thread's file, waited for");
        assert_eq!(open.claim([d(1)]), [], "kept: not claimed again");
    }

    #[test]
    fn the_least_recently_used_file_is_closed_first() {
        let open = OpenChunks::default();
        let f = Arc::new(ChunkFile::new(File::open("/dev/null").unwrap()));
        let d = |i: u32| Digest::of(&i.to_be_bytes());
        for i in 0..KEPT as u32 {
            open.keep(d(i), f.clone());
        }
        assert!(open.get_or_wait(&d(0)).is_some());
        open.keep(d(KEPT as u32), f.clone());
        assert!(open.contains(&d(0)), "used last, kept");
        assert!(!open.contains(&d(1)), "the least recently used, closed");
        assert!(open.contains(&d(KEPT as u32)));
    }
}
