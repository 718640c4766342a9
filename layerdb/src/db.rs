//! The RocksDB index and how processes share it.
//!
//! RocksDB admits one read-write opener. strata has no daemon, so writers
//! (import, commit, rm...) take `<root>/lock` with flock first and wait for
//! it, bounded, printing once why they wait; the database is opened only
//! after that, so RocksDB's own LOCK is never contended. Long-lived readers
//! (mount servers) open a *secondary* instance instead, which takes no lock
//! and keeps reading while writers commit: layers are immutable, so the
//! view a secondary has when it opens is all it ever needs.

use crate::error::{IoContext, Result, StoreError};
use crate::lock;
use crate::storage::Storage;
use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct Db {
    db: DB,
    path: PathBuf,
    /// Held for a writer's whole life; None for a secondary.
    _lock: Option<File>,
    /// A secondary's private directory, removed on drop.
    secondary_dir: Option<PathBuf>,
    /// The store's storage seam, told of every batch written (tests).
    storage: Arc<dyn Storage>,
}

/// How long a writer waits for another to finish before giving up.
pub fn lock_timeout() -> Duration {
    std::env::var("STRATA_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(120))
}

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_compression_type(rocksdb::DBCompressionType::Zstd);
    // Small store, few files: keep every table open (required for secondaries).
    o.set_max_open_files(-1);
    o.set_keep_log_file_num(2);
    // Every strata command opens the index, so the open is on every
    // command's critical path: nothing here that a short-lived process
    // does not need. The tables are few: one thread opens them (the
    // default started 16 per open).
    o.set_max_file_opening_threads(1);
    // At info level each open wrote every option to the LOG (35 KB).
    o.set_log_level(rocksdb::LogLevel::Warn);
    // A table's index block has a key per data block, and with RocksDB's
    // default each one is stored whole: a layer's keys hold its paths (up
    // to 4 KB), which share long prefixes, so 20,000 such entries made a
    // flush build two 106 MB index blocks (heaptrack), and every open
    // read them back. Every 16th key whole, the others as what they add
    // to the key before, as the data blocks already store their keys.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_index_block_restart_interval(16);
    o.set_block_based_table_factory(&table);
    // Table statistics only tune compaction; reading them reads every table.
    o.set_skip_stats_update_on_db_open(true);
    // Periodic stats dumps start a timer thread in every process.
    o.set_stats_dump_period_sec(0);
    o.set_stats_persist_period_sec(0);
    // A log record that fails its checksum before the log's end is damage,
    // and the open fails. RocksDB's default recovers to the record before
    // it and drops every later write without a word, so the images those
    // writes recorded were lost and gc deleted their chunks. Only a record
    // cut short at a log's end is let go: a write a crash interrupted,
    // which never returned, or a commit's unsynced entry batch (see
    // `Store::write_entries`), which nothing names until a synced write
    // after it.
    o.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    // Recovery replays the log into the memtable and keeps the log rather
    // than writing (and fsyncing) a tiny table at each open after a write;
    // `open_writer` flushes once logs pile up or grow (an import's batch).
    // RocksDB preallocates its logs and MANIFEST (tens of MB) with
    // fallocate; on a nearly full disk that swallowed the space a deleting
    // command had just freed (see reserve.rs). The files stay small here.
    // Neither is wrapped by the crate.
    o.get_options_from_string("avoid_flush_during_recovery=true;allow_fallocate=false")
        .expect("a valid option string")
}

/// Write-ahead logs a writer lets accumulate (one per open that wrote)
/// before it flushes them into a table, so every open (and every
/// secondary's) replays a bounded log: at most this many files...
const MAX_LOGS: usize = 16;
/// ...and this many bytes. Container records are a few KB; an import or a
/// commit writes more in one batch, and the next writer flushes it, as
/// RocksDB's default recovery did.
const MAX_LOG_BYTES: u64 = 256 * 1024;

/// Whether the write-ahead logs in `db_dir` are past either bound.
fn logs_piled_up(db_dir: &Path) -> bool {
    let Ok(dir) = fs::read_dir(db_dir) else {
        return false;
    };
    let (count, bytes) = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .fold((0, 0), |(n, b), e| {
            (n + 1, b + e.metadata().map(|m| m.len()).unwrap_or(0))
        });
    count > MAX_LOGS || bytes > MAX_LOG_BYTES
}

/// Every index write is synced (its log record is on disk when the write
/// returns): a command that returned has happened, and the chunks a batch
/// names were synced before it (`ChunkDir::sync`), gc's unlinks come after.
const SYNC_WRITES: bool = true;

impl Db {
    pub fn open_writer(root: &Path) -> Result<Db> {
        Db::open_writer_then(root, || {})
    }

    /// Opens for writing, calling `locked` once the writer lock is held,
    /// before the database opens (and writes its new MANIFEST).
    pub fn open_writer_then(root: &Path, locked: impl FnOnce()) -> Result<Db> {
        let lock = lock::take(
            &root.join("lock"),
            lock::Mode::Exclusive,
            lock_timeout(),
            "another strata process to finish writing",
        )?;
        locked();
        let path = root.join("db");
        check_not_orphaned(root)?;
        remove_unfinished_options(&path);
        threads::check(threads::WRITER)?;
        let db = DB::open(&options(), &path).map_err(|e| db_error(&path, e))?;
        threads::started(threads::WRITER);
        if logs_piled_up(&path) {
            db.flush().map_err(|e| db_error(&path, e))?;
        }
        Ok(Db {
            db,
            path,
            _lock: Some(lock),
            secondary_dir: None,
            storage: crate::storage::of(root),
        })
    }

    pub fn open_secondary(root: &Path) -> Result<Db> {
        let path = root.join("db");
        check_not_orphaned(root)?;
        if !path.join("CURRENT").exists() {
            // A reader of a store nobody wrote yet: make it, then read it
            // (its owner only: every other writer checked before it made
            // the root, `store::create_root_for_writing`).
            crate::store::check_owner(root)?;
            drop(Db::open_writer(root)?);
        }
        let dir = root
            .join("tmp")
            .join(format!("secondary-{}-{}", std::process::id(), unique()));
        let storage = crate::storage::of(root);
        threads::check(threads::READER)?;
        storage.create_dir_all(&dir).at(&dir)?;
        let open = || {
            let db = DB::open_as_secondary(&options(), &path, &dir).and_then(|db| {
                db.try_catch_up_with_primary()?;
                Ok(db)
            });
            db.map_err(|e| db_error(&path, e)).and_then(|db| {
                check_tables(&db, &path)?;
                Ok(db)
            })
        };
        // A writer at work can make a sound index look damaged for a
        // moment: a table it is flushing is on disk before its MANIFEST
        // names it, and one its compaction replaced goes after a view
        // named it (a `create` beside a commit and a `verify` said the
        // index was damaged; found by a test of verify's own race).
        // Damage stays; the moment passes: the open is tried again.
        let mut opened = open();
        for wait_ms in [20, 80, 320] {
            if !matches!(opened, Err(StoreError::IndexDamaged { .. })) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(wait_ms));
            opened = open();
        }
        let db = match opened {
            Ok(db) => {
                threads::started(threads::READER);
                db
            }
            Err(e) => {
                // Not left behind for gc (a full disk fails here too).
                let _ = storage.remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(Db {
            db,
            path,
            _lock: None,
            secondary_dir: Some(dir),
            storage,
        })
    }

    /// Opens without writing anything at all (no lock, no log, no
    /// directory): for reading the index on a full disk. The view is the
    /// one at open; a writer replacing files during the open makes it fail.
    pub fn open_without_writing(root: &Path) -> Result<Db> {
        let path = root.join("db");
        let mut o = options();
        o.create_if_missing(false);
        threads::check(threads::READER)?;
        let db = DB::open_for_read_only(&o, &path, false).map_err(|e| db_error(&path, e))?;
        threads::started(threads::READER);
        Ok(Db {
            db,
            path,
            _lock: None,
            secondary_dir: None,
            storage: crate::storage::of(root),
        })
    }

    /// A secondary's view brought up to what the primary has written so
    /// far (a writer's view is always current).
    pub fn catch_up(&self) -> Result<()> {
        if self.secondary_dir.is_some() {
            self.db
                .try_catch_up_with_primary()
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    pub fn is_writer(&self) -> bool {
        self._lock.is_some()
    }

    fn err(&self, source: rocksdb::Error) -> StoreError {
        db_error(&self.path, source)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(|e| self.err(e))
    }

    /// The values of `keys`, in their order: one call for many lookups
    /// (RocksDB sorts them and reads each block they share once).
    pub fn get_many(&self, keys: &[Vec<u8>]) -> Vec<Result<Option<Vec<u8>>>> {
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|r| r.map_err(|e| self.err(e)))
            .collect()
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.scan_each(prefix, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Calls `f` for each pair under `prefix` until it returns false.
    pub fn scan_each(&self, prefix: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let iter = self.db.iterator(rocksdb::IteratorMode::From(
            prefix,
            rocksdb::Direction::Forward,
        ));
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) || !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Applies a batch atomically and durably: after a crash the store shows
    /// all of it or none of it.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_synced(batch, SYNC_WRITES)
    }

    /// Applies a batch atomically but not durably: a crash may lose it,
    /// and keeps it only if a later synced write made it (the log is
    /// written in order). For keys nothing names until such a write.
    pub fn write_unsynced(&self, batch: WriteBatch) -> Result<()> {
        self.write_synced(batch, false)
    }

    fn write_synced(&self, batch: WriteBatch, synced: bool) -> Result<()> {
        if !self.is_writer() {
            return Err(StoreError::ReadOnly(self.path.clone()));
        }
        let mut o = WriteOptions::default();
        o.set_sync(synced);
        let watched = self.storage.watches_index().then(|| batch.data().to_vec());
        self.db.write_opt(batch, &o).map_err(|e| self.err(e))?;
        if let Some(batch) = watched {
            self.storage.index_written(&batch, synced);
        }
        Ok(())
    }

    /// Whether any key is in `from..to`.
    pub fn any_between(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        let mut iter = self.db.iterator(rocksdb::IteratorMode::From(
            from,
            rocksdb::Direction::Forward,
        ));
        match iter.next() {
            Some(item) => Ok(&*item.map_err(|e| self.err(e))?.0 < to),
            None => Ok(false),
        }
    }

    /// Rewrites the tables holding keys in `from..to` without what a
    /// delete covers. A range delete only marks the keys: the tables keep
    /// them, and every open reads those tables' index blocks, which hold
    /// a key per block (paths of up to 4 KB each), until RocksDB gets to
    /// compact them, which a store written by short commands seldom
    /// does. It needs room for the new tables: where it fails (a full
    /// disk), RocksDB compacts them later.
    pub fn compact_range(&self, from: &[u8], to: &[u8]) {
        if self.is_writer() {
            self.db.compact_range(Some(from), Some(to));
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(dir) = &self.secondary_dir {
            let _ = self.storage.remove_dir_all(dir);
        }
        // A writer that left a large log (an import, a commit, a pull)
        // flushes it before it lets go: `run` opens no writer, so every
        // reader after it would replay that log (a Debian import's made
        // each `run` cost some 90 ms more). The log is synced already; a
        // flush that fails (a full disk) leaves it for the next writer.
        if self._lock.is_some() && logs_piled_up(&self.path) {
            if let Err(e) = self.db.flush() {
                log::warn!("{}: {e}", self.path.display());
            }
        }
    }
}

/// RocksDB starts threads as it opens (its background pools, a timer) and
/// cannot fail cleanly when it cannot: `std::system_error` crosses its C
/// API and the process aborts ("Rust cannot catch foreign exceptions"), as
/// it did for a user at their process limit (`ulimit -u`). So as many
/// threads are started first, here, where failing is an error.
mod threads {
    use crate::error::{Result, StoreError};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Threads a read-only or secondary open starts in a process that has
    /// none of RocksDB's yet: `rocksdb:low` and `rocksdb:high` (strace).
    pub const READER: usize = 2;
    /// A read-write open starts those and the timer of its periodic tasks.
    pub const WRITER: usize = 3;

    /// How many of RocksDB's threads this process has started: they live
    /// on (its pools are the process's), so a later open needs only the
    /// rest.
    static STARTED: AtomicUsize = AtomicUsize::new(0);

    /// Fails with one line unless the threads an open of kind `wanted`
    /// starts can be started now: that many are started, all alive at
    /// once, then ended.
    pub fn check(wanted: usize) -> Result<()> {
        let more = wanted.saturating_sub(STARTED.load(Ordering::Relaxed));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
        let mut alive = Vec::with_capacity(more);
        let mut failed = None;
        for _ in 0..more {
            let wait = wait.clone();
            // Each holds on until `release` goes: they exist together.
            let spawned = std::thread::Builder::new()
                .name("strata:probe".into())
                .stack_size(16 * 1024)
                .spawn(move || {
                    let _ = wait.lock().map(|w| w.recv());
                });
            match spawned {
                Ok(t) => alive.push(t),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(release);
        for t in alive {
            let _ = t.join();
        }
        match failed {
            None => Ok(()),
            Some(e) => Err(StoreError::NoThread(e)),
        }
    }

    /// Notes that an open of kind `kind` succeeded, its threads started.
    pub fn started(kind: usize) {
        STARTED.fetch_max(kind, Ordering::Relaxed);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Refuses an index whose `CURRENT` is gone while it holds what an index
/// that was written holds: a table, or a log with records. RocksDB, told
/// to create a missing index, would make a new one holding at most what
/// the logs replay, and gc would then delete the chunks of every image the
/// lost tables recorded. (An index a crash cut off while it was first
/// made has neither, and is made again.)
fn check_not_orphaned(root: &Path) -> Result<()> {
    let path = root.join("db");
    if path.join("CURRENT").exists() {
        return Ok(());
    }
    check_index_present(root)?;
    let Ok(entries) = fs::read_dir(&path) else {
        return Ok(());
    };
    let written = entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.ends_with(".sst")
            || (name.ends_with(".log") && e.metadata().is_ok_and(|m| m.len() > 0))
    });
    if !written {
        return Ok(());
    }
    Err(StoreError::IndexDamaged {
        path,
        reason: "its CURRENT file is missing while it holds tables or logs".to_string(),
    })
}

/// Refuses a store whose `db/` is gone while its chunks or containers are
/// there: the index was removed, and a new empty one would list no image,
/// pass verify, and let gc delete every chunk. A store makes `db/` before
/// its other directories (`store::prepare_root`) and an ingest writes
/// chunks only after that, so here only a removal leaves chunks without
/// it. Two stores it cannot tell: one whose `db/` was emptied rather than
/// removed (what a first import killed midway leaves: chunks, an empty
/// `db/`), which gets a new index; and one made before strata made `db/`
/// itself (f47b7c7), whose first import was killed midway, which is
/// refused though it never held an image (moving it aside loses nothing).
pub(crate) fn check_index_present(root: &Path) -> Result<()> {
    let path = root.join("db");
    if fs::symlink_metadata(&path).is_ok() {
        return Ok(());
    }
    let holding = ["chunks", "containers"]
        .into_iter()
        .find(|sub| fs::read_dir(root.join(sub)).is_ok_and(|mut entries| entries.next().is_some()));
    match holding {
        Some(sub) => Err(StoreError::IndexDamaged {
            path,
            reason: format!("it is missing while {sub}/ holds files"),
        }),
        None => Ok(()),
    }
}

/// Removes the options files a writer killed while it wrote them left
/// (`OPTIONS-N.dbtmp`, renamed to `OPTIONS-N` once whole): RocksDB never
/// removes them and gc did not, so a store killed often kept tens of them
/// (found by a review). Called under the writer lock, where no other
/// writer is writing one.
fn remove_unfinished_options(db: &Path) {
    let Ok(entries) = fs::read_dir(db) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("OPTIONS-") && name.ends_with(".dbtmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Refuses a secondary whose tables are not all there, whole. A secondary
/// opens without the table files a primary's compaction may have removed
/// since, and one whose MANIFEST names a table lost or cut short opens
/// with no table at all, so the images they recorded went unnoticed (a
/// writer's open checks its tables itself). Its view lists its tables and
/// their sizes (`rocksdb.sstables`): each must be there at that size, and
/// a view of none while `db/` holds tables is such a failed load.
fn check_tables(db: &DB, path: &Path) -> Result<()> {
    let damaged = |reason: String| StoreError::IndexDamaged {
        path: path.to_path_buf(),
        reason,
    };
    let listing = db
        .property_value("rocksdb.sstables")
        .map_err(|e| db_error(path, e))?
        .unwrap_or_default();
    // Lines like ` 141:1389[...]`: the table's number and its size.
    let tables: Vec<(u64, u64)> = listing
        .lines()
        .filter_map(|l| {
            let (number, rest) = l.trim_start().split_once(':')?;
            let size = rest.split('[').next()?;
            Some((number.parse().ok()?, size.parse().ok()?))
        })
        .collect();
    for (number, size) in &tables {
        let file = path.join(format!("{number:06}.sst"));
        match fs::metadata(&file) {
            Ok(m) if m.len() == *size => {}
            Ok(m) => {
                return Err(damaged(format!(
                    "table {number:06}.sst holds {} bytes, expected {size}",
                    m.len()
                )))
            }
            Err(e) => return Err(damaged(format!("table {number:06}.sst: {e}"))),
        }
    }
    let on_disk = fs::read_dir(path).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".sst"))
    });
    if tables.is_empty() && on_disk {
        return Err(damaged(
            "its tables could not be loaded (one is missing or cut short)".to_string(),
        ));
    }
    Ok(())
}

fn db_error(path: &Path, source: rocksdb::Error) -> StoreError {
    StoreError::Db {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(root: &Path) -> (usize, u64) {
        fs::read_dir(root.join("db"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .fold((0, 0), |(n, b), e| (n + 1, b + e.metadata().unwrap().len()))
    }

    fn put(root: &Path, key: u32, value: &[u8]) {
        let db = Db::open_writer(root).unwrap();
        let mut batch = WriteBatch::default();
        batch.put(key.to_be_bytes(), value);
        db.write(batch).unwrap();
    }

    #[test]
    fn writes_survive_reopening_and_the_replayed_logs_stay_bounded() {
        let root = tempfile::tempdir().unwrap();
        for n in 0..(3 * MAX_LOGS as u32) {
            put(root.path(), n, b"v");
        }
        // Each open that wrote leaves a log behind; a writer flushes them
        // into a table before they exceed the bound.
        assert!(logs(root.path()).0 <= MAX_LOGS + 1);
        // A large batch (an import) is flushed by its writer as it closes,
        // so readers (a `run` opens no writer) never replay it.
        put(root.path(), 1000, &vec![7; 2 * MAX_LOG_BYTES as usize]);
        assert!(logs(root.path()).1 <= MAX_LOG_BYTES);
        let writer = Db::open_writer(root.path()).unwrap();
        assert_eq!(writer.scan(b"").unwrap().len(), 3 * MAX_LOGS + 1);
        drop(writer);
        let reader = Db::open_secondary(root.path()).unwrap();
        assert_eq!(reader.scan(b"").unwrap().len(), 3 * MAX_LOGS + 1);
    }

    #[test]
    fn a_writer_removes_the_options_files_a_killed_writer_left() {
        let root = tempfile::tempdir().unwrap();
        put(root.path(), 1, b"v");
        // What a writer killed while it wrote its options leaves.
        let left = root.path().join("db/OPTIONS-000099.dbtmp");
        fs::write(&left, b"half").unwrap();
        put(root.path(), 2, b"v");
        assert!(!left.exists());
        assert_eq!(
            Db::open_writer(root.path())
                .unwrap()
                .scan(b"")
                .unwrap()
                .len(),
            2
        );
    }
}
