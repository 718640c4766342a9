//! Container records as files: each container's record is
//! `containers/<id>/record.json`, in the directory that holds its upper,
//! not a key of the index.
//!
//! Why: a record in the index cost `run` a read-write open of RocksDB to
//! make it and another to delete it (`--rm`), each writing and fsyncing a
//! new MANIFEST, CURRENT and OPTIONS file and a log, under the writer lock
//! that every import and commit waits for. A record file costs one synced
//! create and two directory fsyncs, and removing it is an unlink. Records
//! are what docker (`config.v2.json`) and runc (`state.json`) keep per
//! container too.
//!
//! The rules that keep a store whole at any crash:
//!
//! - The record is the container: a directory without one is not listed
//!   and gc removes it. The record is made last (its directory, upper and
//!   the caller's files first), whole (its bytes synced before it is
//!   named), and durable before `run` returns (its directory, then
//!   `containers/`, synced). A removal drops the record first, then the
//!   directory.
//! - Every change of a record (made, renamed, removed) happens under the
//!   containers lock (`<root>/containers.lock`), which `rmi` and gc also
//!   hold while they look at which images and directories containers use:
//!   two `run --name X` cannot both find X free, a gc never takes the
//!   directory of a container being made for an orphan, and an image is
//!   never removed between a `run` finding it and its record naming it.
//!   The runner's volume commands hold it too ([`Store::hold_containers`]),
//!   so no volume is removed between a `run` making it and naming it.
//!   The lock is an flock, no file is written to take it.
//! - Names are unique among records: a new name is checked against every
//!   record under the lock (one small file per container; `ps` reads them
//!   all as well).
//!
//! Stores made before keep their records in the index (`C` and `N`
//! keys): they are read beside the files, and the first writer that opens
//! the store moves them into files (files first, then the keys go).
//!
//! Lock order: `gc.lock`, the writer lock, then the containers lock.

use crate::container::{valid_container_id, ContainerDir, ContainerRecord};
use crate::error::{IoContext, Result, StoreError};
use crate::keys;
use crate::store::Store;
use rocksdb::WriteBatch;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::Path;

/// The containers lock's file, in the store root.
const LOCK: &str = "containers.lock";

/// Holds the containers lock, waiting (bounded) while another process
/// changes a record.
pub(crate) fn lock(root: &Path) -> Result<File> {
    crate::lock::take(
        &root.join(LOCK),
        crate::lock::Mode::Exclusive,
        crate::db::lock_timeout(),
        "another strata process to finish making or removing a container",
    )
}

/// The containers lock, held until dropped ([`Store::hold_containers`]).
pub struct ContainersHeld {
    _lock: File,
}

/// Container `id`'s record as its file holds it; None without one (a
/// container being made, or one removed). A file that does not decode,
/// or names another id, is damage and an error.
pub fn read_record(root: &Path, id: &str) -> Result<Option<ContainerRecord>> {
    let path = ContainerDir::new(root, id).record();
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A directory gone meanwhile (removed) reads as ENOTDIR or ENOENT.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(e).at(&path),
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        key: path.display().to_string(),
        reason,
    };
    let rec: ContainerRecord =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if rec.id != id {
        return Err(corrupt(format!("the record is container {}'s", rec.id)));
    }
    Ok(Some(rec))
}

/// A container id and why its record file cannot be read.
pub type DamagedRecord = (String, String);

/// The record files: every container's by id, and the ids whose record
/// cannot be read with the reason (damage, or a newer strata's format).
#[derive(Default)]
struct RecordFiles {
    good: BTreeMap<String, ContainerRecord>,
    damaged: Vec<DamagedRecord>,
}

/// Reads every record file. One that cannot be read is set aside, not an
/// error: a damaged record must not stop `ps`, `run`, `rmi` or gc (which
/// keeps its directory), and `verify` reports it.
fn file_records(root: &Path) -> Result<RecordFiles> {
    let dir = root.join(ContainerDir::PARENT);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RecordFiles::default()),
        Err(e) => return Err(e).at(&dir),
    };
    let mut out = RecordFiles::default();
    for e in entries {
        let name = e.at(&dir)?.file_name();
        let Some(id) = name.to_str().filter(|n| valid_container_id(n)) else {
            continue;
        };
        match read_record(root, id) {
            Ok(Some(rec)) => {
                out.good.insert(id.to_string(), rec);
            }
            Ok(None) => {}
            Err(e) => out.damaged.push((id.to_string(), e.to_string())),
        }
    }
    Ok(out)
}

/// Removes container `id`'s record, under the containers lock (a rename
/// cannot write it back meanwhile); the directory stays. Not synced: a
/// power cut that brings the record back leaves an exited container that
/// `rm` removes. Removing a record already gone is no error.
pub fn forget(root: &Path, id: &str) -> Result<()> {
    // An id is a path component here: never `..` or a path.
    if !valid_container_id(id) {
        return Err(StoreError::NoSuchContainer(id.to_string()));
    }
    let _lock = lock(root)?;
    let path = ContainerDir::new(root, id).record();
    match crate::storage::of(root).remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(&path),
        _ => Ok(()),
    }
}

/// Removes container `id`: its record ([`forget`]), then its directory
/// (never while its filesystem is mounted there: it would delete through
/// the mount). Killed between, the directory is an orphan that gc removes.
pub fn remove(root: &Path, id: &str) -> Result<()> {
    forget(root, id)?;
    crate::store::remove_container_dir(ContainerDir::new(root, id).path())
}

/// How a new container is named.
#[derive(Clone, Debug)]
pub enum NewName {
    /// The name the user gave: taken, it is docker's conflict.
    Given(String),
    /// The first of these that no container has (generated names).
    FirstFree(Vec<String>),
}

/// A container being made: the containers lock is held, its directory and
/// upper exist and the caller adds its own files ([`NewContainer::dir`])
/// before [`NewContainer::commit`] writes the record. Dropped without a
/// commit, the directory is removed.
pub struct NewContainer<'a> {
    store: &'a Store,
    rec: ContainerRecord,
    dir: ContainerDir,
    committed: bool,
    _lock: File,
}

impl NewContainer<'_> {
    /// The container's directory, to add files to.
    pub fn dir(&self) -> &ContainerDir {
        &self.dir
    }

    /// The record that will be written, with its name chosen.
    pub fn record(&self) -> &ContainerRecord {
        &self.rec
    }

    /// Writes the record, whole and durable: its bytes synced before it is
    /// named, then its directory (the record's name, the upper's) and
    /// `containers/` (the directory's name) synced. Returns the record.
    pub fn commit(mut self) -> Result<ContainerRecord> {
        let storage = crate::storage::of(self.store.root());
        let path = self.dir.record();
        let bytes = serde_json::to_vec(&self.rec).expect("container records always serialize");
        if !storage.create_file(&path, &bytes, true).at(&path)? {
            return Err(StoreError::Corrupt {
                key: path.display().to_string(),
                reason: "a record is already there".into(),
            });
        }
        self.committed = true;
        storage.sync_dir(self.dir.path()).at(self.dir.path())?;
        let parent = self.store.root().join(ContainerDir::PARENT);
        storage.sync_dir(&parent).at(&parent)?;
        Ok(self.rec.clone())
    }
}

impl Drop for NewContainer<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = crate::store::remove_container_dir(self.dir.path());
        }
    }
}

impl Store {
    /// Holds the containers lock until the guard is dropped: meanwhile no
    /// container is made, renamed or removed. For a decision made on which
    /// containers there are, such as removing a volume none names (the
    /// runner's volume commands; its `run` makes a container's volumes
    /// while it holds the lock for the record).
    pub fn hold_containers(&self) -> Result<ContainersHeld> {
        Ok(ContainersHeld {
            _lock: lock(self.root())?,
        })
    }

    /// Every container's record, in id order: the record files, and the
    /// records of a store made before them still in the index.
    /// A record that cannot be read is left out (with a warning):
    /// [`Store::damaged_containers`] lists those.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let (good, damaged) = self.containers_and_damaged()?;
        for (id, reason) in &damaged {
            log::warn!("container {id} is left out: {reason}");
        }
        Ok(good)
    }

    /// The containers whose record file cannot be read, by id, with the
    /// reason: `verify` reports them and gc keeps their directories.
    pub fn damaged_containers(&self) -> Result<Vec<DamagedRecord>> {
        Ok(file_records(self.root())?.damaged)
    }

    /// [`Store::containers`] and [`Store::damaged_containers`] from one
    /// reading of the record files, for gc and verify, which need both.
    pub fn containers_and_damaged(&self) -> Result<(Vec<ContainerRecord>, Vec<DamagedRecord>)> {
        let files = file_records(self.root())?;
        let mut all = files.good;
        for rec in self.legacy_containers()? {
            all.entry(rec.id.clone()).or_insert(rec);
        }
        Ok((all.into_values().collect(), files.damaged))
    }

    /// By full id, unique id prefix or name.
    pub fn container(&self, s: &str) -> Result<ContainerRecord> {
        if valid_container_id(s) {
            if let Some(rec) = read_record(self.root(), s)? {
                return Ok(rec);
            }
        }
        let all = self.containers()?;
        if let Some(rec) = all.iter().find(|c| c.name == s) {
            return Ok(rec.clone());
        }
        let mut matches = all
            .into_iter()
            .filter(|c| !s.is_empty() && c.id.starts_with(s));
        match (matches.next(), matches.next()) {
            (Some(rec), None) => Ok(rec),
            (Some(_), Some(_)) => Err(StoreError::AmbiguousPrefix(s.to_string())),
            (None, _) => Err(StoreError::NoSuchContainer(s.to_string())),
        }
    }

    /// Starts making a container from `rec` (its `name` is set here):
    /// under the containers lock, checks that its image is in the store
    /// (`NoSuchImage` otherwise: an `rmi` may have removed it since it was
    /// looked up) and that its name is free (`NameInUse`, docker's
    /// message), then makes its directory and upper.
    pub fn new_container(
        &self,
        mut rec: ContainerRecord,
        name: NewName,
    ) -> Result<NewContainer<'_>> {
        // A container's files are its maker's: root's in a user's store
        // would be files the user's `rm` cannot remove.
        crate::store::check_owner(self.root())?;
        let lock = lock(self.root())?;
        self.db().catch_up()?;
        if self.image(&rec.image)?.is_none() {
            return Err(StoreError::NoSuchImage(format!("{:#}", rec.image)));
        }
        let all = self.containers()?;
        let taken: HashSet<&str> = all.iter().map(|c| c.name.as_str()).collect();
        rec.name = match name {
            NewName::Given(n) => {
                if let Some(holder) = all.iter().find(|c| c.name == n) {
                    return Err(StoreError::NameInUse {
                        name: n,
                        holder: holder.id.clone(),
                    });
                }
                n
            }
            NewName::FirstFree(candidates) => candidates
                .into_iter()
                .find(|n| !taken.contains(n.as_str()))
                .ok_or(StoreError::NoFreeName)?,
        };
        let dir = self.container_dir(&rec.id);
        let storage = crate::storage::of(self.root());
        // An id is random: a directory already there is a leftover of a
        // container never recorded, or another's; neither is reused (nor
        // removed: it is not this one's).
        storage.create_dir(dir.path(), 0o755).at(dir.path())?;
        let made = NewContainer {
            store: self,
            rec,
            dir,
            committed: false,
            _lock: lock,
        };
        let upper = made.dir.upper();
        storage.create_dir(&upper, 0o755).at(&upper)?;
        Ok(made)
    }

    /// Renames a container; a name in use by another container is
    /// `RenameTaken`, its own name `RenameToSameName` (docker's messages). The record is replaced whole
    /// (synced, then renamed over the old one, then its directory synced).
    /// Returns the renamed record.
    pub fn rename_container(
        &self,
        rec: &ContainerRecord,
        new_name: &str,
    ) -> Result<ContainerRecord> {
        let _lock = lock(self.root())?;
        let all = self.containers()?;
        if let Some(holder) = all.iter().find(|c| c.name == new_name) {
            return Err(match holder.id == rec.id {
                true => StoreError::RenameToSameName,
                false => StoreError::RenameTaken {
                    name: new_name.to_string(),
                    holder: holder.id.clone(),
                },
            });
        }
        let Some(mut renamed) = all.into_iter().find(|c| c.id == rec.id) else {
            return Err(StoreError::NoSuchContainer(rec.id.clone()));
        };
        renamed.name = new_name.to_string();
        self.replace_record(&renamed)?;
        Ok(renamed)
    }

    /// Changes what `change` changes of a container's record (`strata
    /// update`: its limits and restart policy), under the containers lock
    /// and replaced whole as a rename replaces it. Returns the new record.
    pub fn update_container(
        &self,
        id: &str,
        change: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord> {
        let _lock = lock(self.root())?;
        let mut rec = read_record(self.root(), id)?
            .ok_or_else(|| StoreError::NoSuchContainer(id.to_string()))?;
        change(&mut rec);
        self.replace_record(&rec)?;
        Ok(rec)
    }

    /// The record written whole: synced, renamed over the old one, its
    /// directory synced.
    fn replace_record(&self, rec: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&rec.id);
        let storage = crate::storage::of(self.root());
        let bytes = serde_json::to_vec(rec).expect("container records always serialize");
        let path = dir.record();
        storage.replace_file_synced(&path, &bytes).at(&path)?;
        storage.sync_dir(dir.path()).at(dir.path())?;
        Ok(())
    }

    /// Drops the record first, then the directory: a crash between leaves
    /// only an orphan directory, which gc removes.
    pub fn remove_container(&self, rec: &ContainerRecord) -> Result<()> {
        remove(self.root(), &rec.id)
    }

    /// Drops a container's record, leaving its directory to the caller.
    pub fn forget_container(&self, rec: &ContainerRecord) -> Result<()> {
        forget(self.root(), &rec.id)
    }

    /// Records still in the index (a store made before record files).
    fn legacy_containers(&self) -> Result<Vec<ContainerRecord>> {
        self.db()
            .scan(&[keys::CONTAINER])?
            .iter()
            .map(|(k, v)| {
                serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(k).into_owned(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Moves records still in the index into record files: each file
    /// first (whole and synced, its directory made if a crash lost it, so
    /// that `verify` still reports its upper missing), then the index keys
    /// go in one batch. Killed between, both are there and the file wins.
    /// For a writer, at open; nothing to do is one prefix scan.
    pub(crate) fn move_legacy_containers(&self) -> Result<()> {
        let legacy = self.legacy_containers()?;
        if legacy.is_empty() {
            return Ok(());
        }
        let _lock = lock(self.root())?;
        let storage = crate::storage::of(self.root());
        let mut batch = WriteBatch::default();
        for rec in legacy {
            let dir = self.container_dir(&rec.id);
            storage.create_dir_all(dir.path()).at(dir.path())?;
            if read_record(self.root(), &rec.id)?.is_none() {
                let bytes = serde_json::to_vec(&rec).expect("container records always serialize");
                storage
                    .create_file(&dir.record(), &bytes, true)
                    .at(dir.record())?;
                storage.sync_dir(dir.path()).at(dir.path())?;
            }
            batch.delete(keys::container(&rec.id));
        }
        let parent = self.root().join(ContainerDir::PARENT);
        storage.sync_dir(&parent).at(&parent)?;
        for (key, _) in self.db().scan(&[keys::NAME])? {
            batch.delete(key);
        }
        self.db().write(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::State;
    use crate::image::ImageConfig;
    use crate::reference::Reference;
    use crate::store::NewImage;
    use crate::Digest;

    fn record(id: &str, image: Digest) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            name: String::new(),
            image,
            image_ref: "i".into(),
            created_ns: 1,
            state: State::Created,
            command: vec!["/bin/true".into()],
            config: Default::default(),
            hostname: "h".into(),
            tty: false,
            interactive: false,
            network: "none".into(),
            mounts: vec![],
            tmpfs: vec![],
            auto_remove: false,
            init: false,
            log_driver: Default::default(),
            security: Default::default(),
            resources: Default::default(),
            net: Default::default(),
            restart: Default::default(),
            log_options: Default::default(),
        }
    }

    /// A store with one image (no layers), tagged `i`.
    fn store_with_image(root: &Path) -> Digest {
        let store = Store::open(root).unwrap();
        store
            .commit_image(NewImage {
                config: ImageConfig::new("2024-01-01T00:00:00Z".into()),
                layer: None,
                parent: None,
                reference: Some(Reference::parse("i").unwrap()),
            })
            .unwrap()
            .id
    }

    fn make(store: &Store, id: &str, image: Digest, name: NewName) -> Result<ContainerRecord> {
        store.new_container(record(id, image), name)?.commit()
    }

    #[test]
    fn a_damaged_record_is_left_out_reported_and_kept_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let image = store_with_image(root);
        let store = Store::open(root).unwrap();
        let (good, bad) = ("a".repeat(64), "b".repeat(64));
        make(&store, &good, image, NewName::Given("good".into())).unwrap();
        make(&store, &bad, image, NewName::Given("bad".into())).unwrap();
        let damaged = ContainerDir::new(root, &bad);
        fs::write(damaged.record(), b"{\"id\": 7").unwrap();

        let listed: Vec<String> = store
            .containers()
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(listed, std::slice::from_ref(&good));
        make(
            &store,
            &"c".repeat(64),
            image,
            NewName::FirstFree(vec!["c".into()]),
        )
        .unwrap();
        assert_eq!(store.damaged_containers().unwrap()[0].0, bad);
        let report = store.verify().unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.starts_with(&format!("container {bad}"))),
            "{:?}",
            report.problems
        );
        drop(store);
        crate::gc::collect(root).unwrap();
        assert!(
            damaged.path().is_dir(),
            "gc took a damaged container's directory"
        );
    }

    #[test]
    fn of_two_containers_made_at_once_under_one_name_one_gets_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let image = store_with_image(&root);
        // Each through its own reader, as concurrent `run`s are.
        let results: Vec<Result<ContainerRecord>> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..6u8)
                .map(|n| {
                    let root = &root;
                    s.spawn(move || {
                        let store = Store::open_read_only(root).unwrap();
                        let id = format!("{n:x}").repeat(64);
                        make(&store, &id, image, NewName::Given("same".into()))
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(StoreError::NameInUse { name, .. }) if name == "same"),
                "{r:?}"
            );
        }
        let store = Store::open_read_only(&root).unwrap();
        assert_eq!(store.containers().unwrap().len(), 1);
        // The losers left no directory behind.
        assert_eq!(fs::read_dir(root.join("containers")).unwrap().count(), 1);
    }

    #[test]
    fn a_generated_name_skips_the_names_taken() {
        let dir = tempfile::tempdir().unwrap();
        let image = store_with_image(dir.path());
        let store = Store::open_read_only(dir.path()).unwrap();
        make(&store, &"a".repeat(64), image, NewName::Given("x".into())).unwrap();
        let names = NewName::FirstFree(vec!["x".into(), "y".into()]);
        let rec = make(&store, &"b".repeat(64), image, names).unwrap();
        assert_eq!(rec.name, "y");
        let none = NewName::FirstFree(vec!["x".into(), "y".into()]);
        assert!(matches!(
            make(&store, &"c".repeat(64), image, none),
            Err(StoreError::NoFreeName)
        ));
    }

    #[test]
    fn a_container_is_not_made_over_an_image_removed_since_the_reader_opened() {
        let dir = tempfile::tempdir().unwrap();
        let image = store_with_image(dir.path());
        let reader = Store::open_read_only(dir.path()).unwrap();
        assert!(reader.image(&image).unwrap().is_some());
        Store::open(dir.path())
            .unwrap()
            .remove_image("i", false)
            .unwrap();
        let made = reader.new_container(record(&"a".repeat(64), image), NewName::Given("c".into()));
        assert!(
            matches!(made, Err(StoreError::NoSuchImage(_))),
            "{:?}",
            made.err()
        );
        assert!(!dir.path().join("containers").join("a".repeat(64)).exists());
    }

    #[test]
    fn gc_counts_what_the_orphan_directories_it_removes_held() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        drop(Store::open(&root).unwrap());
        // What a killed `rm` leaves: a container's directory, no record.
        let upper = root
            .join(ContainerDir::PARENT)
            .join("b".repeat(64))
            .join("upper");
        fs::create_dir_all(upper.join("d")).unwrap();
        fs::write(upper.join("d/big"), vec![7u8; 300_000]).unwrap();
        let report = crate::gc::collect(&root).unwrap();
        assert_eq!(report.dirs_removed, 1);
        assert!(report.bytes_freed >= 300_000, "{report:?}");
    }

    #[test]
    fn a_gc_while_a_container_is_being_made_leaves_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let image = store_with_image(&root);
        let reader = Store::open_read_only(&root).unwrap();
        let made = reader
            .new_container(record(&"a".repeat(64), image), NewName::Given("c".into()))
            .unwrap();
        // The directory has no record yet: gc, running meanwhile, must wait
        // for it rather than take it for an orphan.
        std::thread::scope(|s| {
            let gc = s.spawn(|| crate::gc::collect(&root).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(300));
            made.commit().unwrap();
            assert_eq!(gc.join().unwrap().dirs_removed, 0);
        });
        let rec = reader.container("c").unwrap();
        assert!(reader.container_dir(&rec.id).upper().is_dir());
    }

    #[test]
    fn an_rmi_while_a_container_is_being_made_over_the_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let image = store_with_image(&root);
        let reader = Store::open_read_only(&root).unwrap();
        let made = reader
            .new_container(record(&"a".repeat(64), image), NewName::Given("c".into()))
            .unwrap();
        let removed = std::thread::scope(|s| {
            let rmi = s.spawn(|| Store::open(&root).unwrap().remove_image("i", false));
            std::thread::sleep(std::time::Duration::from_millis(300));
            made.commit().unwrap();
            rmi.join().unwrap()
        });
        assert!(
            matches!(removed, Err(StoreError::ImageInUse { .. })),
            "{removed:?}"
        );
        let problems = Store::open(&root).unwrap().verify().unwrap().problems;
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn records_in_the_index_are_read_then_moved_into_files_by_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let image = store_with_image(root);
        let mut old = record(&"a".repeat(64), image);
        old.name = "old".into();
        {
            // As a store made before record files holds a container.
            let store = Store::open(root).unwrap();
            fs::create_dir_all(store.container_dir(&old.id).upper()).unwrap();
            let mut batch = WriteBatch::default();
            batch.put(keys::container(&old.id), serde_json::to_vec(&old).unwrap());
            batch.put(keys::name(&old.name), old.id.as_bytes());
            store.db().write(batch).unwrap();
        }
        // A reader sees it, and its name is taken.
        let reader = Store::open_read_only(root).unwrap();
        assert_eq!(reader.containers().unwrap(), vec![old.clone()]);
        assert_eq!(reader.container("old").unwrap(), old);
        let taken = make(
            &reader,
            &"b".repeat(64),
            image,
            NewName::Given("old".into()),
        );
        assert!(
            matches!(taken, Err(StoreError::NameInUse { .. })),
            "{taken:?}"
        );
        drop(reader);
        // A writer moves it into its file; the index keeps no container.
        let writer = Store::open(root).unwrap();
        assert!(writer.db().scan(&[keys::CONTAINER]).unwrap().is_empty());
        assert!(writer.db().scan(&[keys::NAME]).unwrap().is_empty());
        assert_eq!(read_record(root, &old.id).unwrap(), Some(old.clone()));
        assert_eq!(writer.containers().unwrap(), vec![old.clone()]);
        writer.remove_container(&old).unwrap();
        assert!(writer.containers().unwrap().is_empty());
    }
}
