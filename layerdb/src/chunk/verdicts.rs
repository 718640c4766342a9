//! Verdicts kept in the store: which chunk files were found to hold their
//! name's bytes, each with the file's fingerprint then (`V` keys of the
//! index). A mount server trusts a chunk file whose fingerprint still
//! matches its stored verdict without hashing it: a cold read costs an
//! `fstat` and a lookup, across mount servers and restarts.
//!
//! Who records them, each in the index batch it makes anyway: an ingest
//! (import, load, pull, commit) for the chunk files it wrote or compared
//! with the bytes it brought, after the `syncfs` that makes them durable
//! (`Store::commit_exact_image`); `verify` for every chunk it hashed. gc
//! drops the verdicts of the chunks it removes, `verify` those of damaged
//! ones. Mount servers only read them, through their secondary instance of
//! the index: no reader takes the writer lock.
//!
//! What that gives up: damage made beneath the filesystem (a failing disk,
//! the block device written) keeps the fingerprint, so a chunk with a
//! stored verdict is served as it reads; `strata verify` hashes every
//! chunk whatever its verdict and drops the verdicts of damaged ones.

use super::checked::{Checked, Fingerprint};
use crate::db::Db;
use crate::digest::Digest;
use crate::error::Result;
use crate::keys;
use rocksdb::WriteBatch;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// A chunk found to hold its name's bytes, and its file's fingerprint then.
pub(crate) type Verdict = (Digest, Fingerprint);

/// Where a reader looks stored verdicts up: the store's index, held
/// weakly (a chunk directory's clones may outlive their store; a writer's
/// index must close, and let go of the writer lock, with its store).
#[derive(Clone, Default)]
pub(crate) struct StoredVerdicts(Option<Weak<Db>>);

impl std::fmt::Debug for StoredVerdicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "StoredVerdicts(index)",
            None => "StoredVerdicts(none)",
        })
    }
}

impl StoredVerdicts {
    /// The verdicts kept in `db`.
    pub fn of(db: &Arc<Db>) -> StoredVerdicts {
        StoredVerdicts(Some(Arc::downgrade(db)))
    }

    /// The fingerprint of `digest`'s file when it was last found good;
    /// None when there is none, or the index cannot say (then the chunk
    /// is hashed: a lookup that fails costs time, never trust).
    pub fn get(&self, digest: &Digest) -> Option<Fingerprint> {
        let db = self.0.as_ref()?.upgrade()?;
        let bytes = db.get(&keys::verdict(digest)).ok()??;
        Fingerprint::from_bytes(&bytes)
    }

    /// Whether there is an index to ask (a store's chunk directory).
    pub fn is_kept(&self) -> bool {
        self.0.is_some()
    }

    /// The fingerprints of `digests` (as [`StoredVerdicts::get`]), in one
    /// lookup of the index.
    pub fn get_many(&self, digests: &[Digest]) -> Vec<Option<Fingerprint>> {
        let Some(db) = self.0.as_ref().and_then(Weak::upgrade) else {
            return vec![None; digests.len()];
        };
        let keys: Vec<Vec<u8>> = digests.iter().map(keys::verdict).collect();
        db.get_many(&keys)
            .into_iter()
            .map(|r| Fingerprint::from_bytes(&r.ok()??))
            .collect()
    }
}

/// Looks stored verdicts up ahead of the reads that need them, on a thread
/// of its own: a mount that lists a directory hands over its files' first
/// chunks, and the first read of each finds its verdict in memory. A cold
/// lookup waits for an index block from disk, which a reader of many small
/// files (`tar`, `cp -a`) otherwise waited for once per file. Batches
/// beyond a few in flight are dropped (the reads look up what they need);
/// the thread ends with the last clone of its chunk directory.
#[derive(Clone, Debug, Default)]
pub(crate) struct LookupsAhead(Arc<OnceLock<SyncSender<Vec<Digest>>>>);

/// Batches waiting for the lookup thread.
const BATCHES_QUEUED: usize = 16;

impl LookupsAhead {
    /// Has the verdicts of `digests` looked up into `checked`, without
    /// waiting.
    pub fn ask(&self, digests: Vec<Digest>, checked: &Arc<Checked>, stored: &StoredVerdicts) {
        let tx = self.0.get_or_init(|| {
            let (tx, rx) = sync_channel::<Vec<Digest>>(BATCHES_QUEUED);
            let (checked, stored) = (checked.clone(), stored.clone());
            let spawned = std::thread::Builder::new()
                .name("verdicts-ahead".into())
                .spawn(move || {
                    for batch in rx {
                        checked.prefetch(&batch, &stored);
                    }
                });
            if let Err(e) = spawned {
                // The receiver went with the closure: batches are dropped.
                log::warn!("no verdict lookup thread: {e}");
            }
            tx
        });
        let _ = tx.try_send(digests);
    }
}

/// Puts `verdicts` into `batch`. The caller has made the files they name
/// durable first (a `syncfs`, or their bytes were durable before): a
/// crash never leaves a verdict for bytes that were not on disk.
///
/// Only a file whose ctime is behind the filesystem's clock is sure to get
/// a new ctime when it next changes (a second change within the same
/// clock tick may keep it), so this waits, at most `TICK_WAIT`, for the
/// clock to pass the newest file's ctime (an ingest's last chunks were
/// written a moment ago; `verify`'s long before), and leaves out any
/// verdict it is not past then.
pub(crate) fn record<'a>(batch: &mut WriteBatch, verdicts: impl IntoIterator<Item = &'a Verdict>) {
    let verdicts: Vec<&Verdict> = verdicts.into_iter().collect();
    let Some(newest) = verdicts.iter().map(|(_, p)| p.changed()).max() else {
        return;
    };
    let now = clock_past(newest);
    for (digest, print) in verdicts {
        if print.changed() < now {
            batch.put(keys::verdict(digest), print.to_bytes());
        }
    }
}

/// Longest wait for the clock to pass a file's ctime: a few of its ticks
/// (1-10 ms each). A writer holds the writer lock meanwhile.
const TICK_WAIT: Duration = Duration::from_millis(30);

/// The filesystem's clock once it is past `t`, or as it is after
/// `TICK_WAIT` (a ctime in the future: the clock was set back).
fn clock_past(t: (i64, i64)) -> (i64, i64) {
    let deadline = Instant::now() + TICK_WAIT;
    loop {
        let now = coarse_now();
        if now > t || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The clock file timestamps are taken from (`current_time` in the
/// kernel reads the coarse clock); a clock that cannot be read makes
/// every file look changed now, so nothing is recorded.
fn coarse_now() -> (i64, i64) {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_REALTIME_COARSE)
        .map(|t| (t.tv_sec(), t.tv_nsec()))
        .unwrap_or((i64::MIN, 0))
}

/// Drops the verdict of `digest` (a damaged or removed chunk) in `batch`.
pub(crate) fn drop_verdict(batch: &mut WriteBatch, digest: &Digest) {
    batch.delete(keys::verdict(digest));
}

/// Every chunk with a stored verdict.
pub(crate) fn stored(db: &Db) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    db.scan_each(&[keys::VERDICT], |k, _| {
        if let Ok(d) = <[u8; 32]>::try_from(&k[1..]) {
            out.push(Digest(d));
        }
        true
    })?;
    Ok(out)
}

/// The fingerprint of the file at `path`, if it can be had (tests, and
/// `verify` checking a file is the one it hashed; a writer takes it
/// through [`holding`], which also reads the bytes).
pub(crate) fn fingerprint_of(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path).ok().map(|m| Fingerprint::of(&m))
}

/// The fingerprint of the file at `path` if it holds exactly `data` (a
/// chunk file an ingest found under the name of the bytes it brings),
/// taken before it is read: a change during the read moves it (see
/// [`Fingerprint::settle`]).
pub(crate) fn holding(path: &Path, data: &[u8]) -> Option<Fingerprint> {
    let mut f = super::open_chunk_file(path).ok()?;
    let meta = f.metadata().ok()?;
    if meta.len() != data.len() as u64 {
        return None;
    }
    Fingerprint::settle(&f);
    f.seek(SeekFrom::Start(0)).ok()?;
    let mut found = Vec::with_capacity(data.len());
    // One byte more than expected shows a file grown since the fstat.
    (&mut f)
        .take(data.len() as u64 + 1)
        .read_to_end(&mut found)
        .ok()?;
    (found == data).then(|| Fingerprint::of(&meta))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::entry::{Entry, Kind};
    use crate::ingest::Ingest;
    use crate::store::{NewImage, Store};
    use crate::{ChunkRef, Reference};
    use std::fs;
    use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    /// Bytes that cut into several chunks, different for each seed.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        crate::chunk::tests::xorshift_bytes(
            len,
            0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x85eb_ca6b),
        )
    }

    /// Imports `data` as the file `f` of image `name`, as `strata import`
    /// does (an ingest, then a commit).
    fn import(root: &Path, name: &str, data: &[u8]) {
        let ingest = Ingest::begin(root).unwrap();
        let mut b = ingest.builder("test");
        let mut e = Entry::new(Kind::Regular, 0o644);
        e.size = data.len() as u64;
        b.add(b"f".to_vec(), e, Some(&mut &data[..] as &mut dyn Read))
            .unwrap();
        let layer = b.finish().unwrap();
        Store::open(root)
            .unwrap()
            .commit_image(NewImage {
                config: crate::image::ImageConfig::new("2024-01-01T00:00:00Z".into()),
                layer: Some(layer),
                parent: None,
                reference: Some(Reference::parse(name).unwrap()),
            })
            .unwrap();
    }

    /// A fresh reader (a new mount server's view) of image `name`'s file:
    /// the bytes it serves, or the error, and how many chunks it hashed.
    fn read_fresh(root: &Path, name: &str) -> (crate::error::Result<Vec<u8>>, u64) {
        let store = Store::open_read_only(root).unwrap();
        let layer = top_layer(&store, name);
        let entry = store.entry(&layer, b"f").unwrap().unwrap();
        let mut buf = vec![0u8; entry.size as usize];
        let read = store.read_at(&entry, 0, &mut buf).map(|_| buf);
        (read, store.chunks().chunks_hashed())
    }

    /// The layer `import` made for image `name`.
    fn top_layer(store: &Store, name: &str) -> crate::LayerMeta {
        let image = store.resolve_image(name).unwrap();
        store.layer(image.layers.last().unwrap()).unwrap()
    }

    fn chunks_of(root: &Path, name: &str) -> Vec<ChunkRef> {
        let store = Store::open_read_only(root).unwrap();
        store
            .entry(&top_layer(&store, name), b"f")
            .unwrap()
            .unwrap()
            .chunks()
            .to_vec()
    }

    fn path_of(root: &Path, c: &ChunkRef) -> PathBuf {
        crate::chunk::chunk_path(root, &c.digest)
    }

    /// Waits until a file made now gets a later ctime than `path` has: a
    /// change made after that moves `path`'s ctime (the filesystem's clock
    /// ticks coarsely).
    pub(crate) fn wait_for_the_clock_to_pass(path: &Path) {
        let before = fs::metadata(path).unwrap();
        let probe = path.with_file_name("probe");
        while fs::File::create(&probe)
            .and_then(|f| f.metadata())
            .map(|m| (m.ctime(), m.ctime_nsec()))
            .unwrap()
            <= (before.ctime(), before.ctime_nsec())
        {
            std::thread::yield_now();
        }
        fs::remove_file(&probe).unwrap();
    }

    /// Rewrites one byte of `path` in place and puts its mtime back, as
    /// `touch -r` would: only the ctime tells.
    fn flip_in_place(path: &Path) {
        let mtime = fs::metadata(path).unwrap().modified().unwrap();
        wait_for_the_clock_to_pass(path);
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 10).unwrap();
        f.write_all_at(&[b[0] ^ 1], 10).unwrap();
        f.set_modified(mtime).unwrap();
    }

    #[test]
    fn a_cold_read_of_chunks_an_import_wrote_hashes_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let data = noise(600_000, 1);
        import(&root, "a:1", &data);
        let chunks = chunks_of(&root, "a:1");
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        let (read, hashed) = read_fresh(&root, "a:1");
        assert_eq!(read.unwrap(), data);
        assert_eq!(hashed, 0, "every chunk trusted by its stored verdict");
    }

    #[test]
    fn a_listing_looks_its_files_first_verdicts_up_ahead_and_reads_still_compare_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let data = noise(600_000, 7);
        import(&root, "a:1", &data);
        let chunks = chunks_of(&root, "a:1");
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        flip_in_place(&path_of(&root, &chunks[1]));

        let store = Store::open_read_only(&root).unwrap();
        let layer = top_layer(&store, "a:1");
        let kids = store.children(&layer, b"").unwrap();
        store.expect_reads(kids.iter().map(|(_, e)| e));
        let checked = &store.chunks().checked;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(checked.knows(&chunks[0].digest) && checked.knows(&chunks[1].digest)) {
            assert!(Instant::now() < deadline, "no verdict was looked up ahead");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!checked.knows(&chunks[2].digest), "only the first chunks");

        // The flipped chunk's verdict came ahead with its old fingerprint:
        // the read compares it with the file's, hashes, and refuses.
        let entry = store.entry(&layer, b"f").unwrap().unwrap();
        let mut buf = vec![0u8; entry.size as usize];
        let err = store.read_at(&entry, 0, &mut buf).unwrap_err().to_string();
        assert!(err.contains(&chunks[1].digest.hex()), "{err}");
        assert_eq!(store.chunks().chunks_hashed(), 1, "only the changed chunk");
    }

    #[test]
    fn a_chunk_changed_after_its_verdict_is_hashed_again_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        import(&root, "a:1", &noise(600_000, 2));
        let damaged = chunks_of(&root, "a:1")[1];
        assert!(Store::open_read_only(&root)
            .unwrap()
            .has_chunk_verdict(&damaged.digest)
            .unwrap());
        flip_in_place(&path_of(&root, &damaged));
        let (read, hashed) = read_fresh(&root, "a:1");
        assert!(
            matches!(read, Err(crate::StoreError::BadChunk { digest, .. }) if digest == damaged.digest),
            "{read:?}"
        );
        assert_eq!(hashed, 1, "only the changed chunk is hashed");
    }

    #[test]
    fn verify_hashes_despite_verdicts_and_drops_the_verdict_of_a_damaged_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let data = noise(600_000, 3);
        import(&root, "a:1", &data);
        let damaged = chunks_of(&root, "a:1")[1];
        let path = path_of(&root, &damaged);
        // Damage that keeps the fingerprint (made beneath the filesystem):
        // here, the bytes changed and the stored verdict made to match.
        flip_in_place(&path);
        wait_for_the_clock_to_pass(&path);
        {
            let store = Store::open(&root).unwrap();
            let mut batch = WriteBatch::default();
            let print = fingerprint_of(&path).unwrap();
            record(&mut batch, &[(damaged.digest, print)]);
            store.db().write(batch).unwrap();
        }
        // What the stored verdict gives up: a reader trusts the file.
        let (read, hashed) = read_fresh(&root, "a:1");
        assert_ne!(read.unwrap(), data, "served as it reads");
        assert_eq!(hashed, 0);
        let report = Store::open(&root).unwrap().verify().unwrap();
        assert_eq!(report.damaged.len(), 1, "{:?}", report.problems);
        assert_eq!(report.damaged[0].0, damaged.digest);
        let store = Store::open_read_only(&root).unwrap();
        assert!(!store.has_chunk_verdict(&damaged.digest).unwrap());
        assert!(store
            .has_chunk_verdict(&chunks_of(&root, "a:1")[0].digest)
            .unwrap());
        drop(store);
        let (read, _) = read_fresh(&root, "a:1");
        assert!(
            matches!(read, Err(crate::StoreError::BadChunk { digest, .. }) if digest == damaged.digest),
            "{read:?}"
        );
    }

    #[test]
    fn verify_records_the_verdicts_of_the_chunks_it_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let data = noise(600_000, 4);
        import(&root, "a:1", &data);
        // A mode change moves the ctime: the stored verdict no longer holds.
        let path = path_of(&root, &chunks_of(&root, "a:1")[0]);
        wait_for_the_clock_to_pass(&path);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_fresh(&root, "a:1").1, 1, "the changed file is hashed");
        let report = Store::open(&root).unwrap().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let (read, hashed) = read_fresh(&root, "a:1");
        assert_eq!(read.unwrap(), data);
        assert_eq!(hashed, 0, "verify's verdicts trusted");
    }

    #[test]
    fn importing_the_same_content_again_replaces_a_damaged_chunk_and_its_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let data = noise(600_000, 5);
        import(&root, "a:1", &data);
        let path = path_of(&root, &chunks_of(&root, "a:1")[1]);
        flip_in_place(&path);
        import(&root, "a:2", &data);
        let (read, hashed) = read_fresh(&root, "a:1");
        assert_eq!(read.unwrap(), data);
        assert_eq!(hashed, 0, "the replaced file's verdict recorded");
    }

    #[test]
    fn gc_drops_the_verdicts_of_the_chunks_it_removes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        import(&root, "a:1", &noise(300_000, 6));
        import(&root, "b:1", &noise(300_000, 7));
        let (kept, gone) = (chunks_of(&root, "a:1"), chunks_of(&root, "b:1"));
        Store::open(&root)
            .unwrap()
            .remove_image("b:1", false)
            .unwrap();
        crate::gc::collect(&root).unwrap();
        let store = Store::open_read_only(&root).unwrap();
        assert!(!path_of(&root, &gone[0]).exists());
        assert!(!store.has_chunk_verdict(&gone[0].digest).unwrap());
        assert!(store.has_chunk_verdict(&kept[0].digest).unwrap());
        assert_eq!(
            stored(store.db()).unwrap().len(),
            kept.len(),
            "one verdict per chunk left"
        );
    }

    /// An attacker who can write the chunk directory flips a byte of each
    /// chunk file as soon as an import links it, racing the import's own
    /// look at the file: whatever wins, a fresh reader never gets the
    /// flipped bytes under the chunk's name (a verdict is only ever
    /// recorded for bytes read back equal to what was written).
    #[test]
    fn a_chunk_changed_while_its_import_writes_it_is_never_served_as_good() {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        import(root, "first:1", &noise(100_000, 1));
        let chunks = root.join("chunks");
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        inotify
            .add_watch(
                &chunks,
                AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
            )
            .unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let racer = {
            let (stop, chunks) = (stop.clone(), chunks.clone());
            std::thread::spawn(move || {
                let mut flipped = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Ok(events) = inotify.read_events() else {
                        std::thread::yield_now();
                        continue;
                    };
                    for e in events {
                        let Some(name) = e.name else { continue };
                        let path = chunks.join(name);
                        if let Ok(f) = fs::OpenOptions::new().read(true).write(true).open(&path) {
                            let mut b = [0u8; 1];
                            if f.read_exact_at(&mut b, 10).is_ok() {
                                let _ = f.write_all_at(&[b[0] ^ 1], 10);
                                flipped += 1;
                            }
                        }
                    }
                }
                flipped
            })
        };
        // Just below a big file: many 64 KiB chunks for the racer.
        let data = noise(crate::chunk::BIG_FILE as usize - 1, 2);
        import(root, "raced:1", &data);
        stop.store(true, Ordering::SeqCst);
        let flipped = racer.join().unwrap();
        assert!(flipped > 0, "the racer flipped no chunk file");
        // Chunk by chunk, as a fresh mount server reads them: refused, or
        // the bytes the import was given.
        let store = Store::open_read_only(root).unwrap();
        let entry = store
            .entry(&top_layer(&store, "raced:1"), b"f")
            .unwrap()
            .unwrap();
        let mut at = 0usize;
        let mut served_bad = 0;
        for c in entry.chunks() {
            let mut buf = vec![0u8; c.len as usize];
            if store.read_at(&entry, at as u64, &mut buf).is_ok()
                && buf != data[at..at + c.len as usize]
            {
                served_bad += 1;
            }
            at += c.len as usize;
        }
        assert_eq!(
            served_bad, 0,
            "{served_bad} chunks served with bytes that do not hash to their name ({flipped} flipped)"
        );
    }
}
