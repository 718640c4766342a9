//! Chunks: pieces of file content cut by content-defined chunking and kept
//! once per store as `chunks/<64 hex>`, named by their sha256.
//!
//! A chunk file is written unnamed (O_TMPFILE) and linked under its name
//! when complete, so a reader never sees half a chunk. Durability comes from one
//! `syncfs` before the database commit that first references the chunk (see
//! `ChunkDir::sync`), not from an fsync per chunk: chunks that a crash leaves
//! unreferenced are harmless and `gc` removes them.

use crate::digest::Digest;
use crate::entry::ChunkRef;
use crate::error::{IoContext, Result, StoreError};
use crate::storage::Storage;
use bytes::Bytes;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

mod checked;
mod chunk_ends;
mod open_chunks;
pub(crate) mod verdicts;
use checked::{Checked, Fingerprint};
pub use chunk_ends::ChunkEnds;
use open_chunks::{ChunkFile, OpenChunks};
use verdicts::{LookupsAhead, StoredVerdicts, Verdict};

/// Whether `data` is `chunk`'s content: its length and its sha256.
/// Opens the chunk file at `path` for reading, refusing anything but a
/// regular file: a FIFO planted under a chunk's name would block every
/// reader for good (the open is non-blocking, the type checked after it),
/// a device would serve bytes without end, and a symlink is not followed.
pub(crate) fn open_chunk_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)?;
    let kind = f.metadata()?.file_type();
    if kind.is_file() {
        return Ok(f);
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    Err(io::Error::other(format!("{what}, not a chunk file")))
}

pub(crate) fn content_matches(chunk: &ChunkRef, data: &[u8]) -> std::result::Result<(), String> {
    if data.len() != chunk.len as usize {
        return Err(format!("{} bytes, expected {}", data.len(), chunk.len));
    }
    if Digest::of(data) != chunk.digest {
        return Err("content does not match its name".to_string());
    }
    Ok(())
}

/// FastCDC's average chunk size, chosen by `scripts/bench-store` (see
/// docs/design.md): 64 KiB keeps the per-chunk overhead (one file, one
/// 36-byte reference) small while a one-byte edit still costs about one
/// chunk. Minimum and maximum are a quarter and four times the average.
pub const AVG_CHUNK: u32 = 64 * 1024;

/// Files of at least this many bytes are cut at [`BIG_AVG_CHUNK`].
pub const BIG_FILE: u64 = 8 << 20;

/// The average chunk size of big files. A chunk file is one disk request
/// when read cold and one inode, one open and one name when written: a
/// 1 GiB file at 64 KiB had 13,500 chunk files, read cold at 1.2-1.3x the
/// time of the same file in a plain directory (the disk's requests, not
/// its bytes, were the limit); at 1 MiB it has about 830 and reads at the
/// plain file's time, and imports in three quarters of the time. What it
/// costs: a one-byte edit of a big file stores a chunk of about 1 MiB
/// instead of 64 KiB (docs/design.md, "Big files, big chunks").
pub const BIG_AVG_CHUNK: u32 = 1 << 20;

/// The (min, avg, max) FastCDC sizes for a file of `size` bytes.
/// `STRATA_CHUNK_AVG` (bytes) sets one average for every file, so the
/// benchmark can compare sizes on real trees; chunk boundaries never
/// change a layer's diff id, only how it is stored.
fn chunk_sizes(size: u64) -> (u32, u32, u32) {
    let avg = std::env::var("STRATA_CHUNK_AVG")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| (1024..=4 << 20).contains(v))
        .unwrap_or(if size >= BIG_FILE {
            BIG_AVG_CHUNK
        } else {
            AVG_CHUNK
        });
    (avg / 4, avg, avg * 4)
}

/// Files up to this size (one filesystem block) are kept inside their
/// entry: as a chunk file each would cost an inode, a whole block and six
/// system calls, and creating the inode was most of an import's time (see
/// docs/design.md, "Where an ingest spends its time"). In the index they
/// are compressed with their neighbours.
pub const INLINE_MAX: u64 = 4096;

/// The store's chunk directory (`<root>/chunks`), with the open files, read-
/// ahead and verdicts of checked reads its clones share.
#[derive(Clone, Debug)]
pub struct ChunkDir {
    dir: PathBuf,
    /// Shared by clones: a store's readers (mount server threads) share
    /// one set of open chunk files.
    open: Arc<OpenChunks>,
    /// Windows of chunks for the read-ahead thread, started by the first
    /// sequential read; it ends when the last clone goes.
    ahead: Arc<OnceLock<SyncSender<Vec<ChunkRef>>>>,
    /// Which chunk files were found to hold their name's content.
    checked: Arc<Checked>,
    /// New chunk files written through this directory, when an ingest
    /// asked (so that it can remove them if it fails).
    created: Option<Arc<Mutex<Vec<Digest>>>>,
    /// Where chunk files are written, removed and synced (the store's
    /// storage seam).
    storage: Arc<dyn Storage>,
    /// The verdicts kept in the store, asked when a chunk has none here.
    stored: StoredVerdicts,
    /// The thread that asks them ahead of reads (`ChunkDir::expect`).
    lookups_ahead: LookupsAhead,
}

impl ChunkDir {
    /// The chunk directory at `dir` (not created here), with nothing open yet.
    pub fn new(dir: PathBuf) -> ChunkDir {
        ChunkDir {
            storage: crate::storage::of(&dir),
            dir,
            open: Arc::default(),
            ahead: Arc::default(),
            checked: Arc::default(),
            created: None,
            stored: StoredVerdicts::default(),
            lookups_ahead: LookupsAhead::default(),
        }
    }

    /// The same directory, trusting the verdicts `stored` keeps (a store's
    /// index) for chunk files unchanged since.
    pub(crate) fn consulting(self, stored: StoredVerdicts) -> ChunkDir {
        ChunkDir { stored, ..self }
    }

    /// Chunks this directory's readers (and its clones') read whole and
    /// hashed: none for a chunk whose verdict they had.
    pub fn chunks_hashed(&self) -> u64 {
        self.checked.hashed()
    }

    /// The same directory, noting every chunk file written through it (or
    /// its clones) in the list returned.
    pub(crate) fn recording_new(&self) -> (ChunkDir, Arc<Mutex<Vec<Digest>>>) {
        let created = Arc::new(Mutex::new(Vec::new()));
        let dir = ChunkDir {
            created: Some(created.clone()),
            ..self.clone()
        };
        (dir, created)
    }

    /// Removes a chunk file; gone already is as good.
    pub(crate) fn remove(&self, digest: &Digest) -> Result<()> {
        self.remove_path(&self.path_of(digest))
    }

    /// Removes a file of the chunk directory (a chunk or a leftover
    /// temporary file); gone already is as good.
    pub(crate) fn remove_path(&self, path: &Path) -> Result<()> {
        match self.storage.remove_file(path) {
            // A directory under a chunk's name is no chunk: it goes too,
            // or neither `verify --repair` nor gc could ever clear it.
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => fs::remove_dir_all(path).at(path),
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).at(path),
            _ => Ok(()),
        }
    }

    /// Where the chunk `digest` lives: `<dir>/<64 hex>`. The file may be
    /// absent.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir.join(hex)
    }

    /// A chunk's file, from the open ones if kept (checked or not yet).
    fn open_for_reading(&self, chunk: &ChunkRef) -> Result<Arc<ChunkFile>> {
        if let Some(f) = self.open.get_or_wait(&chunk.digest) {
            return Ok(f);
        }
        let path = self.path_of(&chunk.digest);
        let f = match open_chunk_file(&path) {
            Ok(f) => f,
            // Out of descriptors or memory: the chunk is not at fault, and
            // the next read may open it.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
                ) =>
            {
                return Err(e).at(path);
            }
            Err(e) => return Err(self.damaged(chunk, e.to_string())),
        };
        let f = Arc::new(ChunkFile::new(f));
        self.open.keep(chunk.digest, f.clone());
        Ok(f)
    }

    /// The error for a chunk file that is missing or does not hold its
    /// name's content, logged once per chunk: every read of it fails alike.
    fn damaged(&self, chunk: &ChunkRef, reason: String) -> StoreError {
        if self.checked.first_report(&chunk.digest) {
            log::error!(
                "chunk {} is damaged ({reason}): reads of it fail with EIO; `strata verify` lists what uses it, `strata verify --repair` removes it",
                self.path_of(&chunk.digest).display()
            );
        }
        StoreError::BadChunk {
            digest: chunk.digest,
            reason,
        }
    }

    /// Has `chunks` opened and read in by the read-ahead thread, for a
    /// reader about to need them, without waiting: opening a chunk file
    /// cold waits for its inode on disk, and the reader's request need not.
    /// Windows are opened front to back, so the chunks before the last open
    /// one are open already. A reader asks for the rest of the window once
    /// half of it is not open (or pending): the thread is woken once per
    /// half window, not once per chunk a reader moves on by. A full queue
    /// drops the window (the reads open what they need).
    fn read_ahead(&self, chunks: &[ChunkRef]) {
        let opened = chunks
            .iter()
            .rposition(|c| self.open.contains(&c.digest))
            .map_or(0, |i| i + 1);
        if opened < chunks.len() && opened <= chunks.len() / 2 {
            let window = chunks[opened..].to_vec();
            let _ = self.reader_ahead().try_send(window);
        }
    }

    /// Says that `chunks` are about to be read (the first chunks of the
    /// files a mount just listed): their stored verdicts are looked up on
    /// another thread, so that a read finds them in memory. Nothing
    /// happens for a directory that keeps no verdicts.
    pub fn expect(&self, chunks: Vec<Digest>) {
        if self.stored.is_kept() && !chunks.is_empty() {
            self.lookups_ahead.ask(chunks, &self.checked, &self.stored);
        }
    }

    fn reader_ahead(&self) -> &SyncSender<Vec<ChunkRef>> {
        self.ahead.get_or_init(|| {
            let (tx, rx) = sync_channel::<Vec<ChunkRef>>(8);
            let (dir, open) = (self.dir.clone(), self.open.clone());
            let (checked, stored) = (self.checked.clone(), self.stored.clone());
            let spawned = std::thread::Builder::new()
                .name("chunk-read-ahead".into())
                .spawn(move || {
                    for window in rx {
                        // Each file is handed over as soon as it is open,
                        // its read asked for and not waited for, so the
                        // disk has the window's reads in flight; the
                        // readers check what they read (`read_at`), on
                        // their own threads. A file that cannot be opened
                        // is left to the reader, who reports it.
                        let claimed = open.claim(window.iter().map(|c| c.digest));
                        for &c in &claimed {
                            if !open.start(c) {
                                continue; // a reader took it
                            }
                            let f = open_chunk_file(&dir.join(c.hex())).ok();
                            if let Some(f) = &f {
                                open_chunks::start_reading(f);
                            }
                            open.settle(c, f.map(|f| Arc::new(ChunkFile::new(f))));
                        }
                        // Then their stored verdicts, while the disk reads
                        // them in: a lookup may wait for an index block
                        // the readers would otherwise wait for.
                        checked.prefetch(&claimed, &stored);
                    }
                });
            if let Err(e) = spawned {
                // The receiver is gone with the closure: windows are dropped.
                log::warn!("no chunk read-ahead thread: {e}");
            }
            tx
        })
    }

    /// Reads `buf.len()` bytes (fewer at the end) of a chunk from `offset`,
    /// from a file checked against the chunk's name. Every read compares
    /// the file with its verdict (one `fstat`, see `checked`), so a file
    /// changed since it was checked is checked again, even one kept open;
    /// a read that checks serves the bytes it hashed.
    pub fn read_at(&self, chunk: &ChunkRef, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let f = self.open_for_reading(chunk)?;
        let want = buf
            .len()
            .min((chunk.len as u64).saturating_sub(offset) as usize);
        let checking = f.checking();
        let bad = |reason: String| {
            self.open.forget(&chunk.digest);
            self.damaged(chunk, reason)
        };
        if let Some(print) = self
            .checked
            .needs_check(&f.file, chunk, &self.stored)
            .map_err(bad)?
        {
            let len = chunk.len as usize;
            if offset == 0 && want == len {
                // The whole chunk is wanted: read and hashed where it goes
                // (a failed check returns no bytes).
                self.checked
                    .check_into(&f.file, chunk, print, &mut buf[..len])
                    .map_err(bad)?;
                return Ok(len);
            }
            let mut data = vec![0u8; len];
            self.checked
                .check_into(&f.file, chunk, print, &mut data)
                .map_err(bad)?;
            // `data` is the chunk's length: `want` ends inside it.
            let from = (offset as usize).min(len);
            buf[..want].copy_from_slice(&data[from..from + want]);
            return Ok(want);
        }
        drop(checking);
        let mut done = 0;
        while done < want {
            let n = f
                .file
                .read_at(&mut buf[done..want], offset + done as u64)
                .at(self.path_of(&chunk.digest))?;
            if n == 0 {
                // Shortened since it was checked.
                self.open.forget(&chunk.digest);
                return Err(self.damaged(
                    chunk,
                    format!(
                        "ends at {}, expected {} bytes",
                        offset + done as u64,
                        chunk.len
                    ),
                ));
            }
            done += n;
        }
        Ok(done)
    }

    /// Reads a whole chunk and checks it against its name: no byte leaves
    /// the store under a name it does not hash to.
    pub fn read(&self, chunk: &ChunkRef) -> Result<Vec<u8>> {
        let bad = |reason: String| StoreError::BadChunk {
            digest: chunk.digest,
            reason,
        };
        let mut data = Vec::with_capacity(chunk.len as usize);
        // One byte past its length is enough to tell a file too long: a
        // chunk file grown to gigabytes is not read into memory whole.
        open_chunk_file(&self.path_of(&chunk.digest))
            .and_then(|f| f.take(u64::from(chunk.len) + 1).read_to_end(&mut data))
            .map_err(|e| bad(e.to_string()))?;
        content_matches(chunk, &data).map_err(bad)?;
        Ok(data)
    }

    /// Reads a whole chunk and checks it against its name, whatever any
    /// verdict says; gives its file's fingerprint from before the read
    /// (`verify` records it).
    pub(crate) fn check(&self, chunk: &ChunkRef) -> Result<Fingerprint> {
        let bad = |reason: String| StoreError::BadChunk {
            digest: chunk.digest,
            reason,
        };
        let f = open_chunk_file(&self.path_of(&chunk.digest)).map_err(|e| bad(e.to_string()))?;
        let meta = f.metadata().map_err(|e| bad(e.to_string()))?;
        if meta.len() != chunk.len as u64 {
            return Err(bad(format!("{} bytes, expected {}", meta.len(), chunk.len)));
        }
        let mut data = vec![0u8; chunk.len as usize];
        Fingerprint::settle(&f);
        f.read_exact_at(&mut data, 0)
            .map_err(|e| bad(e.to_string()))?;
        content_matches(chunk, &data).map_err(bad)?;
        Ok(Fingerprint::of(&meta))
    }

    /// Flushes every chunk written so far to disk, so that a database commit
    /// that references them can be trusted after a power loss.
    pub fn sync(&self) -> Result<()> {
        self.storage.create_dir_all(&self.dir).at(&self.dir)?;
        self.storage.sync_all(&self.dir).at(&self.dir)
    }

    /// Every chunk file and leftover temporary file, for gc and verify.
    pub fn list(&self) -> Result<Vec<(PathBuf, Option<Digest>)>> {
        let mut out = Vec::new();
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for f in dir {
            let f = f.at(&self.dir)?;
            let name = f.file_name().to_string_lossy().into_owned();
            out.push((f.path(), name.parse().ok()));
        }
        Ok(out)
    }
}

/// Cuts streams into content-defined chunks. It reads in large blocks and
/// cuts there, handing each chunk out as a slice of its block (shared,
/// not copied: the chunk writers and the tar's hasher take the same
/// bytes), where FastCDC's own streaming reader would copy every chunk
/// out of a buffer it then shifts and zero-fills. The cut points are
/// FastCDC's: a chunk's end depends on at most `max` bytes from its
/// start, and a cut is only made with that many bytes (or the end of the
/// stream) in the block; the bytes after the last cut start the next one.
pub struct Chunker;

/// Bytes read per block: large enough that reads and cuts per block are
/// few, small enough to stay in the cache-friendly range of one buffer.
const READ_BLOCK: usize = 4 << 20;

impl Chunker {
    /// Calls `each` with every chunk of `reader`'s content, in order, for
    /// a stream expected to hold `expected` bytes (a tar entry's size): a
    /// block is no larger than what is left of it and a byte to see its
    /// end, so a small file's chunk keeps no more memory than its bytes,
    /// and a big file is cut into big chunks ([`BIG_FILE`]). A stream of
    /// another length is cut all the same. Returns the number of bytes
    /// read.
    pub fn split_sized(
        &self,
        reader: &mut dyn Read,
        expected: u64,
        each: &mut dyn FnMut(Bytes) -> Result<()>,
    ) -> Result<u64> {
        let (min, avg, max) = chunk_sizes(expected);
        let full = READ_BLOCK + max as usize;
        // The bytes after the last cut (fewer than `max`).
        let mut carried: Vec<u8> = Vec::new();
        let mut total = 0u64;
        let mut end_of_input = false;
        while !end_of_input || !carried.is_empty() {
            // Past the expected end (a file that grew after its size was
            // taken, as a running container's may), whole blocks again: a
            // byte at a time, each read would copy `carried` once more.
            let size = match expected.checked_sub(total) {
                Some(left) => (carried.len() as u64)
                    .saturating_add(left)
                    .saturating_add(1)
                    .min(full as u64) as usize,
                None => full,
            };
            let mut block = std::mem::take(&mut carried);
            let mut filled = block.len();
            block.resize(size.max(filled + 1), 0);
            while !end_of_input && filled < block.len() {
                match reader.read(&mut block[filled..]) {
                    Ok(0) => end_of_input = true,
                    Ok(n) => {
                        filled += n;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).at("<input>"),
                }
            }
            block.truncate(filled);
            let block = Bytes::from(block);
            let cdc = fastcdc::v2020::FastCDC::new(&block, min, avg, max);
            let mut start = 0;
            while start < filled && (end_of_input || filled - start >= max as usize) {
                let (_, end) = cdc.cut(start, filled - start);
                each(block.slice(start..end))?;
                start = end;
            }
            carried = block[start..].to_vec();
        }
        Ok(total)
    }
}

/// Names and stores chunks on threads of their own, so that hashing and
/// writing chunk files overlap reading and cutting on the caller's thread
/// (which also feeds the canonical tar's hasher): the caller hands each
/// chunk over unnamed and learns the names from [`ChunkWriter::finish`].
/// A chunk repeated in the ingest is written once; whether the store has
/// a chunk already is asked by the writing threads too (a `stat` per
/// chunk).
pub struct ChunkWriter {
    dir: ChunkDir,
    /// What the writing threads share.
    shared: Arc<Written>,
    /// The slot of the next chunk handed over.
    next: u32,
    to_writer: Option<SyncSender<Vec<Job>>>,
    writers: Vec<JoinHandle<Result<()>>>,
    /// Chunks not yet handed over, and their bytes: they go to the
    /// writing threads about 1 MiB at a time, since a hand-over per chunk
    /// woke a thread (two `futex` calls and a context switch) 3,000 times
    /// per Debian import.
    batch: Vec<Job>,
    batch_bytes: usize,
    /// Syncs the store's filesystem each `BULK_WRITEBACK` new bytes, so
    /// that the disk writes while the ingest still works (see there).
    flusher: Option<JoinHandle<io::Result<()>>>,
}

/// Bytes of chunks handed to the writing threads at a time.
const WRITER_BATCH: usize = 1 << 20;

/// New chunk bytes after which the chunk writers have the store's
/// filesystem synced, on a thread of its own, while they go on: the
/// kernel writes the files back together, and the `syncfs` before the
/// commit finds little left. Writeback started per chunk file
/// (`sync_file_range`) cost a sixth of an import's CPU; none until the
/// commit left the disk idle while the ingest worked and the commit's
/// `syncfs` long (docs/design.md, "An ingest without a writeback per
/// chunk").
const BULK_WRITEBACK: u64 = 48 << 20;

/// The writing threads' results.
#[derive(Default)]
struct Written {
    /// Chunks named so far, whether new or not: each is written once.
    queued: Mutex<HashSet<Digest>>,
    /// Every chunk's name by the slot it was handed over in.
    names: Mutex<Vec<ChunkRef>>,
    /// Bytes of the chunks the store did not have.
    new_bytes: AtomicU64,
    /// The chunk files written or found to hold their bytes, with their
    /// fingerprints: their verdicts, recorded when the layer is committed.
    verdicts: Mutex<Vec<Verdict>>,
    /// Chunk files written since the flusher's last sync: once the next
    /// has written them back, their pages leave the page cache (see
    /// `drop_cached`).
    unsynced: Mutex<Vec<Digest>>,
}

/// Work for a chunk writing thread: the chunk of a slot, to name and then
/// store: written if the store has no file for it; if it has one, the file
/// is compared with the bytes and replaced if it differs, so importing the
/// same content again repairs a damaged chunk.
struct Job(u32, Bytes);

/// Threads naming and writing chunk files: creating and linking a file
/// waits on the filesystem's journal as much as it works, so two keep the
/// writes going while one waits.
const WRITERS: usize = 2;

impl ChunkWriter {
    /// A writer of new chunks into `dir`; its threads start with the first
    /// batch of chunks.
    pub fn new(dir: ChunkDir) -> ChunkWriter {
        ChunkWriter {
            dir,
            shared: Arc::default(),
            next: 0,
            to_writer: None,
            writers: Vec::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            flusher: None,
        }
    }

    /// Queues `data` to be named and stored (checked against the store's
    /// file if it has one). Returns its slot: its name is the slot's entry
    /// in what `finish` returns.
    pub fn put(&mut self, data: impl Into<Bytes>) -> Result<u32> {
        let data = data.into();
        let slot = self.next;
        self.next += 1;
        self.batch_bytes += data.len();
        self.batch.push(Job(slot, data));
        if self.batch_bytes >= WRITER_BATCH {
            self.hand_over()?;
        }
        Ok(slot)
    }

    /// Hands the batch of chunks to the writing threads (started by the
    /// first one).
    fn hand_over(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let dir = &self.dir;
        let shared = &self.shared;
        let writers = &mut self.writers;
        let flusher = &mut self.flusher;
        let to_writer = self.to_writer.get_or_insert_with(|| {
            // Ends when the writers (holding its senders) have; a sync
            // asked while one runs is merged into the next.
            let (to_flusher, flushes) = sync_channel::<()>(1);
            let (synced, written) = (dir.clone(), shared.clone());
            let sync = move || -> io::Result<()> {
                for () in flushes {
                    let unsynced = std::mem::take(&mut *lock(&written.unsynced));
                    synced.storage.sync_all(&synced.dir)?;
                    drop_cached(&synced, &unsynced);
                }
                Ok(())
            };
            let spawned = std::thread::Builder::new().name("chunk-flusher".into());
            *flusher = Some(spawned.spawn(sync).expect("a thread can be started"));
            // Bounded, so that queued chunks (8 batches: 8 MiB and a
            // chunk) wait for a slow disk instead of piling up in memory.
            let (to_writer, queued) = sync_channel::<Vec<Job>>(8);
            let queued = Arc::new(Mutex::new(queued));
            for _ in 0..WRITERS {
                let (dir, queued, shared) = (dir.clone(), queued.clone(), shared.clone());
                let to_flusher = to_flusher.clone();
                let write = move || loop {
                    let next = queued.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(batch) = next else {
                        return Ok(());
                    };
                    for Job(slot, data) in batch {
                        let digest = Digest::of(&data);
                        shared.name(slot, digest, data.len() as u32);
                        if !lock(&shared.queued).insert(digest) {
                            continue;
                        }
                        let before = shared.new_bytes.load(AtomicOrdering::Relaxed);
                        if let Some(print) = store_chunk(&dir, &shared, digest, &data)? {
                            lock(&shared.verdicts).push((digest, print));
                        }
                        let after = shared.new_bytes.load(AtomicOrdering::Relaxed);
                        if before / BULK_WRITEBACK != after / BULK_WRITEBACK {
                            // Full: a sync is asked already.
                            let _ = to_flusher.try_send(());
                        }
                    }
                };
                let spawned = std::thread::Builder::new().name("chunk-writer".into());
                writers.push(spawned.spawn(write).expect("a thread can be started"));
            }
            to_writer
        });
        if to_writer.send(batch).is_err() {
            // The writer stopped at an error: that error is the answer.
            self.finish_writes()?;
        }
        Ok(())
    }

    /// Waits until every queued chunk is on disk (not yet durable: see
    /// `ChunkDir::sync`), or returns the first write that failed. Gives
    /// the bytes of the chunks the store did not have, and every chunk's
    /// name by its slot.
    pub fn finish(self) -> Result<(u64, Vec<ChunkRef>)> {
        self.finish_with_verdicts()
            .map(|(new_bytes, names, _)| (new_bytes, names))
    }

    /// `finish`, also giving the verdicts of the chunk files written or
    /// found good (see `verdicts`).
    pub(crate) fn finish_with_verdicts(mut self) -> Result<(u64, Vec<ChunkRef>, Vec<Verdict>)> {
        self.finish_writes()?;
        let names = std::mem::take(&mut *lock(&self.shared.names));
        let verdicts = std::mem::take(&mut *lock(&self.shared.verdicts));
        Ok((
            self.shared.new_bytes.load(AtomicOrdering::Relaxed),
            names,
            verdicts,
        ))
    }

    fn finish_writes(&mut self) -> Result<()> {
        // The chunks not handed over yet go first; a hand-over that found
        // the writers stopped has joined them and returns their error.
        self.hand_over()?;
        // Closing the queue ends the writer once it has written the rest.
        self.to_writer = None;
        let mut first_error = Ok(());
        for writer in self.writers.drain(..) {
            let done = writer.join().unwrap_or_else(|_| {
                Err(StoreError::Io {
                    path: self.dir.dir.clone(),
                    source: io::Error::other("a chunk writing thread panicked"),
                })
            });
            if first_error.is_ok() {
                first_error = done;
            }
        }
        // The writers are gone, and the flusher's queue with them. A
        // writeback error it met fails the ingest: the commit's `syncfs`,
        // on a descriptor opened after it, would not see it.
        if let Some(flusher) = self.flusher.take() {
            let synced = flusher
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the chunk flushing thread panicked")))
                .map_err(|e| io::Error::new(e.kind(), format!("writing the new chunks back: {e}")))
                .at(&self.dir.dir);
            if first_error.is_ok() {
                first_error = synced;
            }
        }
        first_error
    }
}

impl Written {
    /// Notes the name of the chunk of `slot`.
    fn name(&self, slot: u32, digest: Digest, len: u32) {
        let mut names = lock(&self.names);
        let slot = slot as usize;
        if names.len() <= slot {
            // Filled in by the other thread's slots, or by the next ones.
            let unnamed = ChunkRef {
                digest: Digest([0; 32]),
                len: 0,
            };
            names.resize(slot + 1, unnamed);
        }
        names[slot] = ChunkRef { digest, len };
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes the chunk `digest` unless the store has it; replaces a file
/// under its name that holds other bytes. Returns the fingerprint of the
/// file that now holds `data` (written or compared here): its verdict.
fn store_chunk(
    dir: &ChunkDir,
    shared: &Written,
    digest: Digest,
    data: &[u8],
) -> Result<Option<Fingerprint>> {
    let path = dir.path_of(&digest);
    if !path.exists() {
        shared
            .new_bytes
            .fetch_add(data.len() as u64, AtomicOrdering::Relaxed);
        let new = dir.storage.create_file(&path, data, false).at(&path)?;
        if let Some(created) = dir.created.as_ref().filter(|_| new) {
            lock(created).push(digest);
        }
        if new {
            lock(&shared.unsynced).push(digest);
        }
        // Named first by another process: its bytes are its writer's.
        // Ours: what the name holds now is read back and compared, its
        // fingerprint taken before the read, so a change made to the file
        // since it was written (or another file put under the name) gets
        // no verdict, and one made after moves the fingerprint.
        return Ok(new.then(|| verdicts::holding(&path, data)).flatten());
    }
    if let Some(print) = verdicts::holding(&path, data) {
        return Ok(Some(print));
    }
    log::warn!("replacing damaged chunk {}", path.display());
    // A rename does not replace a directory put under the name.
    if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
        dir.storage.remove_dir_all(&path).at(&path)?;
    }
    dir.storage.replace_file(&path, data).at(&path)?;
    Ok(verdicts::holding(&path, data))
}

/// Takes the pages of chunk files the flusher has just written back out
/// of the page cache. An ingest writes each chunk once and reads it back
/// once, before this; the pages would otherwise stay, a pull's 350 MB of
/// them pushing out what the host had cached. Dropped, they are reused by
/// the ingest's next writes: in a VM whose free memory goes back to the
/// host, every page a write takes fresh from the free pool costs a fault
/// in the host (writing 350 MB in 64 KiB files, syncing every 48 MiB:
/// 1.4 s of system time, 0.3 s with each batch's pages dropped after its
/// sync). A hint: a file that cannot be opened keeps its pages.
fn drop_cached(dir: &ChunkDir, digests: &[Digest]) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    for digest in digests {
        if let Ok(f) = open_chunk_file(&dir.path_of(digest)) {
            let _ = posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        }
    }
}

/// An ingest that fails still waits for its queued chunks: no write
/// outlives it (and the gc lock it holds).
impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.finish_writes();
    }
}

/// Reads `buf.len()` bytes from `offset` of a file made of `chunks`,
/// touching only the chunks that cover the range, unless the read follows
/// on from the chunk before (its file is open): then the next chunks are
/// read ahead. `ends` are the chunks' ends (`ChunkEnds::of(chunks)`, kept
/// by a caller that reads the file more than once): the first chunk is
/// found by a binary search, not a walk from the file's start.
pub fn read_chunked(
    dir: &ChunkDir,
    chunks: &[ChunkRef],
    ends: &ChunkEnds,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize> {
    let Some((first, mut start)) = ends.find(offset) else {
        return Ok(0);
    };
    let mut done = 0usize;
    for (i, chunk) in chunks.iter().enumerate().skip(first) {
        if done == buf.len() {
            break;
        }
        if i > 0 && dir.open.contains(&chunks[i - 1].digest) {
            dir.read_ahead(open_chunks::window(&chunks[i + 1..]));
        }
        // `ChunkDir::read_at` gives every byte of the chunk from the
        // offset asked or fails: the next chunk starts where this one
        // ends, and the read goes on at its start.
        let want = offset + done as u64;
        done += dir.read_at(chunk, want - start, &mut buf[done..])?;
        start += chunk.len as u64;
    }
    Ok(done)
}

/// The path a chunk lives at, for tests and tools.
pub fn chunk_path(root: &Path, digest: &Digest) -> PathBuf {
    ChunkDir::new(root.join("chunks")).path_of(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_range_read_touches_only_the_chunks_that_cover_it() {
        let (_dir, chunks, refs) = three_chunks();
        // Without the first and last chunk, a read inside the middle one works.
        std::fs::remove_file(chunks.path_of(&refs[0].digest)).unwrap();
        std::fs::remove_file(chunks.path_of(&refs[2].digest)).unwrap();
        let mut buf = [0u8; 50];
        assert_eq!(
            read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 120, &mut buf).unwrap(),
            50
        );
        assert_eq!(buf, [2u8; 50]);
        // A read that crosses into a missing chunk fails, naming it.
        let mut buf = [0u8; 50];
        let err = read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 180, &mut buf).unwrap_err();
        assert!(err.to_string().contains(&refs[2].digest.hex()));
    }

    /// Three chunks of 100 bytes each (1s, 2s, 3s) in a fresh directory.
    fn three_chunks() -> (tempfile::TempDir, ChunkDir, Vec<ChunkRef>) {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkDir::new(dir.path().to_path_buf());
        let mut writer = ChunkWriter::new(chunks.clone());
        for b in [1u8, 2, 3] {
            writer.put(vec![b; 100]).unwrap();
        }
        let (_, refs) = writer.finish().unwrap();
        (dir, chunks, refs)
    }

    /// Random reads of a file of many chunks of uneven lengths, each
    /// byte telling its own offset apart from its neighbours', across
    /// chunk boundaries, at the last byte and past the end: a chunk found
    /// one off (or a start offset one off) gives other bytes.
    #[test]
    fn random_reads_of_a_file_of_many_chunks_give_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkDir::new(dir.path().to_path_buf());
        let byte_at = |p: u64| (p.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |below: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % below
        };
        let mut content = Vec::new();
        let mut writer = ChunkWriter::new(chunks.clone());
        for _ in 0..300 {
            let len = 1 + next(200) as usize;
            let piece: Vec<u8> = (0..len)
                .map(|i| byte_at((content.len() + i) as u64))
                .collect();
            content.extend_from_slice(&piece);
            writer.put(bytes::Bytes::from(piece)).unwrap();
        }
        let (_, refs) = writer.finish().unwrap();
        assert_eq!(refs.len(), 300);
        let ends = ChunkEnds::of(&refs);
        let size = content.len() as u64;
        let read = |offset: u64, len: usize| {
            let mut buf = vec![0u8; len];
            let n = read_chunked(&chunks, &refs, &ends, offset, &mut buf).unwrap();
            buf.truncate(n);
            buf
        };
        for _ in 0..2000 {
            let offset = next(size);
            let len = 1 + next(700) as usize;
            let end = (offset as usize + len).min(content.len());
            assert_eq!(
                read(offset, len),
                &content[offset as usize..end],
                "{len} bytes at {offset}"
            );
        }
        // Every chunk boundary, from one byte before to one after.
        let mut start = 0usize;
        for c in &refs {
            let end = start + c.len as usize;
            let from = end.saturating_sub(1);
            assert_eq!(
                read(from as u64, 2),
                &content[from..(from + 2).min(content.len())]
            );
            start = end;
        }
        assert_eq!(read(size - 1, 10), &content[content.len() - 1..]);
        assert_eq!(read(size, 10), b"");
        assert_eq!(read(size + 5, 10), b"");
    }

    #[test]
    fn a_chunk_that_does_not_hash_to_its_name_is_never_read() {
        let (_dir, chunks, refs) = three_chunks();
        let mut bytes = vec![2u8; 100];
        bytes[50] = 9;
        fs::write(chunks.path_of(&refs[1].digest), bytes).unwrap();
        let mut buf = [0u8; 300];
        let err = read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 0, &mut buf).unwrap_err();
        assert!(matches!(err, StoreError::BadChunk { digest, .. } if digest == refs[1].digest));
        // Its neighbours still read.
        let mut buf = [0u8; 100];
        assert_eq!(
            read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 200, &mut buf).unwrap(),
            100
        );
        assert_eq!(buf, [3u8; 100]);
        assert!(
            chunks.read(&refs[1]).is_err(),
            "whole-chunk reads check too"
        );
    }

    #[test]
    fn a_chunk_damaged_in_place_after_its_check_is_caught_on_the_next_read() {
        let (_dir, chunks, refs) = three_chunks();
        let mut buf = [0u8; 100];
        assert_eq!(
            read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 100, &mut buf).unwrap(),
            100
        );
        assert!(chunks.open.contains(&refs[1].digest), "checked, kept open");
        // Rewritten in place (same inode, same size) with its mtime put
        // back, as `touch -r` would: only the ctime tells. It moves with the
        // filesystem's clock, whose ticks are coarse: wait until a new
        // file's ctime is past the chunk's.
        let path = chunks.path_of(&refs[1].digest);
        let before = fs::metadata(&path).unwrap();
        verdicts::tests::wait_for_the_clock_to_pass(&path);
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[9u8], 50).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        drop(f);
        let after = fs::metadata(&path).unwrap();
        assert_eq!(
            (after.ino(), after.len(), after.modified().unwrap()),
            (before.ino(), before.len(), before.modified().unwrap())
        );
        let err = read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 100, &mut buf).unwrap_err();
        assert!(matches!(err, StoreError::BadChunk { digest, .. } if digest == refs[1].digest));
        // Put right (by `verify --repair` and a re-import), it reads again.
        fs::remove_file(&path).unwrap();
        let mut writer = ChunkWriter::new(chunks.clone());
        writer.put(vec![2u8; 100]).unwrap();
        writer.finish().unwrap();
        assert_eq!(
            read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 100, &mut buf).unwrap(),
            100
        );
        assert_eq!(buf, [2u8; 100]);
    }

    #[test]
    fn a_short_chunk_fails_the_read_instead_of_shifting_the_next() {
        let (_dir, chunks, refs) = three_chunks();
        fs::write(chunks.path_of(&refs[0].digest), [1u8; 60]).unwrap();
        let mut buf = [0u8; 300];
        let err = read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 0, &mut buf).unwrap_err();
        assert!(matches!(err, StoreError::BadChunk { digest, .. } if digest == refs[0].digest));
        let err = read_chunked(&chunks, &refs, &ChunkEnds::of(&refs), 70, &mut buf).unwrap_err();
        assert!(matches!(err, StoreError::BadChunk { .. }), "{err}");
    }

    #[test]
    fn storing_the_same_bytes_again_replaces_a_damaged_chunk() {
        let (_dir, chunks, refs) = three_chunks();
        let path = chunks.path_of(&refs[1].digest);
        fs::write(&path, [7u8; 100]).unwrap();
        let mut writer = ChunkWriter::new(chunks.clone());
        writer.put(vec![2u8; 100]).unwrap();
        assert_eq!(writer.finish().unwrap().0, 0, "the chunk was known");
        assert_eq!(fs::read(&path).unwrap(), vec![2u8; 100]);
    }

    #[test]
    fn the_same_bytes_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkDir::new(dir.path().to_path_buf());
        let same = Bytes::from_static(b"same");
        let mut writer = ChunkWriter::new(chunks.clone());
        writer.put(same.clone()).unwrap();
        writer.put(same.clone()).unwrap();
        let (new, names) = writer.finish().unwrap();
        assert_eq!(new, 4, "new once");
        let mut writer = ChunkWriter::new(chunks.clone());
        writer.put(same).unwrap();
        let (new, again) = writer.finish().unwrap();
        assert_eq!(new, 0, "known");
        assert!(names[0] == names[1] && names[1] == again[0]);
        assert_eq!(names[0].digest, Digest::of(b"same"));
        assert_eq!(chunks.list().unwrap().len(), 1);
    }

    /// Hands out at most `step` bytes per read, as pipes and tar entries do.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// `len` pseudo-random bytes (xorshift64 from `seed`): content that
    /// cuts into chunks of every size, the same on every run.
    pub(super) fn xorshift_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn the_chunker_cuts_where_fastcdcs_stream_reader_does() {
        // Cut points must never move: stores made before keep deduplicating
        // against new input. Pseudo-random bytes over several read blocks,
        // with runs of zeros that force maximum-size chunks; cut as a
        // file just below a big one (64 KiB chunks) and as a big file.
        let mut data = xorshift_bytes(9_500_000, 0x9e37_79b9_7f4a_7c15);
        data[5_000_000..6_000_000].fill(0);
        for data in [&data[..BIG_FILE as usize - 1], &data[..]] {
            let size = data.len() as u64;
            let (min, avg, max) = chunk_sizes(size);
            let expected: Vec<usize> = fastcdc::v2020::StreamCDC::new(data, min, avg, max)
                .map(|c| c.unwrap().length)
                .collect();
            for step in [usize::MAX, 4097] {
                let mut got = Vec::new();
                let mut input = Trickle { data, step };
                let total = Chunker
                    .split_sized(&mut input, size, &mut |c| {
                        got.push(c.len());
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(total, size);
                assert_eq!(got, expected, "{size} bytes read {step} at a time");
            }
        }
        let mut none = Vec::new();
        Chunker
            .split_sized(&mut io::empty(), 0, &mut |c| {
                none.push(c.len());
                Ok(())
            })
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_stream_longer_than_said_is_read_in_blocks() {
        // A file that grew between its stat and its read: 3 MiB more than
        // the 8 MiB expected. Read a byte at a time past the end, it took
        // 3 million reads (and a copy of up to 4 MiB each).
        struct Counted<'a> {
            data: &'a [u8],
            reads: usize,
        }
        impl Read for Counted<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.reads += 1;
                if self.reads > 1000 {
                    return Err(io::Error::other("too many reads"));
                }
                self.data.read(buf)
            }
        }
        let data = xorshift_bytes(BIG_FILE as usize + (3 << 20), 0x1234_5678_9abc_def1);
        let mut input = Counted {
            data: &data,
            reads: 0,
        };
        let mut chunks: Vec<Bytes> = Vec::new();
        let total = Chunker
            .split_sized(&mut input, BIG_FILE, &mut |c| {
                chunks.push(c);
                Ok(())
            })
            .unwrap();
        assert_eq!(total, data.len() as u64);
        assert_eq!(chunks.concat(), data);
        assert!(input.reads < 20, "{} reads", input.reads);
    }

    #[test]
    fn big_files_are_cut_into_big_chunks() {
        let data = xorshift_bytes(BIG_FILE as usize, 0x5851_f42d_4c95_7f2d);
        let count = |size: u64| {
            let mut n = 0;
            Chunker
                .split_sized(&mut &data[..size as usize], size, &mut |_| {
                    n += 1;
                    Ok(())
                })
                .unwrap();
            n
        };
        // Just below the bound the file is cut as any other: about 128
        // chunks of 64 KiB; at the bound, about 8 of 1 MiB.
        let (small, big) = (count(BIG_FILE - 1), count(BIG_FILE));
        assert!(small > 60, "{small} chunks below the bound");
        assert!(big < 20, "{big} chunks at the bound");
    }

    #[test]
    fn chunks_are_handed_out_as_slices_of_the_block_they_were_read_into() {
        // Pseudo-random bytes that cut into several chunks in one block.
        let data = xorshift_bytes(1_000_000, 0x2545_f491_4f6c_dd1d);
        let mut chunks: Vec<Bytes> = Vec::new();
        Chunker
            .split_sized(&mut &data[..], data.len() as u64, &mut |c| {
                chunks.push(c);
                Ok(())
            })
            .unwrap();
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        assert_eq!(chunks.concat(), data);
        // Each chunk starts where the one before ends, in memory too: no
        // chunk was copied out of the block.
        for pair in chunks.windows(2) {
            let end = pair[0].as_ptr() as usize + pair[0].len();
            assert_eq!(pair[1].as_ptr() as usize, end);
        }
    }

    #[test]
    fn the_writers_have_the_filesystem_synced_as_new_bytes_pile_up() {
        use crate::storage::{self, Event, Recording};
        let dir = tempfile::tempdir().unwrap();
        let recording = Arc::new(Recording::new());
        let _installed = storage::install(dir.path(), recording.clone());
        let chunks = ChunkDir::new(dir.path().join("chunks"));
        let mut writer = ChunkWriter::new(chunks);
        let pieces = (BULK_WRITEBACK >> 20) + 1;
        for seed in 1..=pieces {
            writer.put(xorshift_bytes(1 << 20, seed)).unwrap();
        }
        let (new, _) = writer.finish().unwrap();
        assert_eq!(new, pieces << 20);
        let syncs = recording
            .events()
            .iter()
            .filter(|e| matches!(e, Event::SyncAll))
            .count();
        assert!(syncs >= 1, "no sync while {pieces} MiB were written");
    }
}
