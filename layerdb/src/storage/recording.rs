//! A backend for tests: it does the real operations and records them, and
//! rebuilds the store as a crash after any prefix of the record leaves it.
//!
//! The model of what a crash keeps (docs/design.md, "Testing
//! durability"): a file's bytes are durable once synced (a `sync` create,
//! `sync_all`); a name made, renamed or removed is durable once its
//! directory is synced (`sync_dir`, `sync_all`). RocksDB is modelled by its
//! promise, not its files: a batch written with `sync` is durable when the
//! write returns, and so is every batch before it (its log is written in
//! order); a batch written without is durable only once a later synced
//! batch or a `sync_all` (which syncs the log's file too) has run. The
//! index after a crash is the index before the operation plus its durable
//! batches, replayed, provided `db/` itself survived.

use super::{Real, Storage};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One operation that changed the store, as recorded when it returned.
#[derive(Clone, Debug)]
pub enum Event {
    /// A directory was made.
    CreateDir(PathBuf),
    /// A file was made whole under its name; `synced`: its bytes first.
    CreateFile {
        /// Its path.
        path: PathBuf,
        /// Its bytes.
        data: Vec<u8>,
        /// Whether its bytes were synced before it was named.
        synced: bool,
    },
    /// A file was replaced through a temporary name and a rename.
    ReplaceFile {
        /// Its path.
        path: PathBuf,
        /// Its new bytes.
        data: Vec<u8>,
        /// Whether its bytes were synced before the rename.
        synced: bool,
    },
    /// A file was removed.
    RemoveFile(PathBuf),
    /// A directory tree was removed.
    RemoveDirAll(PathBuf),
    /// A directory's names were synced.
    SyncDir(PathBuf),
    /// The whole filesystem was synced.
    SyncAll,
    /// An index batch was written.
    IndexWrite {
        /// The batch, serialized.
        batch: Vec<u8>,
        /// Whether it was written with `sync`.
        synced: bool,
    },
}

impl Event {
    /// Whether this event makes something durable: where a crash matters.
    pub fn is_sync(&self) -> bool {
        matches!(
            self,
            Event::SyncDir(_)
                | Event::SyncAll
                | Event::IndexWrite { synced: true, .. }
                | Event::CreateFile { synced: true, .. }
                | Event::ReplaceFile { synced: true, .. }
        )
    }
}

/// What a crash keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// The process was killed: the page cache keeps everything it did.
    Kill,
    /// The power was cut: everything not synced is lost.
    PowerCut,
    /// The power was cut after the filesystem's journal had committed
    /// every name change, in order, but no file bytes that were not synced
    /// (a new file then shows empty, as ext4 with `data=writeback` or xfs
    /// may leave it). Index batches not synced are lost.
    PowerCutKeepingNames,
}

/// The real backend, with a record of every operation that changed the
/// store.
#[derive(Debug, Default)]
pub struct Recording {
    real: Real,
    events: Mutex<Vec<Event>>,
}

impl Recording {
    /// A recorder with an empty record.
    pub fn new() -> Recording {
        Recording::default()
    }

    /// The operations recorded so far, in the order they returned.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, e: Event) {
        self.lock().push(e);
    }

    /// Builds at `out` (which must not exist) the store at `root` as
    /// `crash` after `events` (a prefix of a record) leaves it; `before`
    /// is a copy of the store made before the first event, with no
    /// process having it open (absent if the store did not exist).
    pub fn rebuild(
        root: &Path,
        before: &Path,
        events: &[Event],
        crash: Crash,
        out: &Path,
    ) -> crate::error::Result<()> {
        use crate::error::IoContext;
        if before.exists() {
            copy_tree(before, out)?;
        }
        let mut model = Model::default();
        for e in events {
            model.apply(e);
        }
        for (path, node) in model.outcome(crash) {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let target = out.join(rel);
            if target != out && !target.parent().is_some_and(|p| p.is_dir()) {
                continue; // its directory did not survive
            }
            match node {
                Outcome::Dir if !target.is_dir() => fs::create_dir(&target).at(&target)?,
                Outcome::Dir => {}
                Outcome::File(bytes) => fs::write(&target, bytes).at(&target)?,
                Outcome::Absent if target.is_dir() => fs::remove_dir_all(&target).at(&target)?,
                Outcome::Absent if target.exists() => fs::remove_file(&target).at(&target)?,
                Outcome::Absent => {}
            }
        }
        let batches = model.durable_batches(crash);
        if batches.is_empty() || !out.is_dir() {
            return Ok(());
        }
        let db_dir = out.join("db");
        if !db_dir.is_dir() {
            return Ok(()); // the index did not survive
        }
        let db = crate::db::Db::open_writer(out)?;
        for b in batches {
            db.write(rocksdb::WriteBatch::from_data(&b))?;
        }
        Ok(())
    }
}

/// Copies the tree at `from` to `to` (directories and files; a store has
/// nothing else).
pub fn copy_tree(from: &Path, to: &Path) -> crate::error::Result<()> {
    use crate::error::IoContext;
    fs::create_dir_all(to).at(to)?;
    for e in fs::read_dir(from).at(from)? {
        let e = e.at(from)?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().at(&src)?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).at(&src)?;
        }
    }
    Ok(())
}

/// A name in the model.
#[derive(Clone, Debug)]
enum Node {
    Dir,
    /// Index into `Model::files`.
    File(usize),
    Absent,
}

/// What a name is after a crash.
enum Outcome {
    Dir,
    File(Vec<u8>),
    Absent,
}

/// The names and file bytes as the operations left them, and what of that
/// is durable. A name never mentioned is as it was before.
#[derive(Default)]
struct Model {
    names: BTreeMap<PathBuf, Node>,
    durable_names: BTreeMap<PathBuf, Node>,
    /// Each file's bytes and its durable bytes.
    files: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Each index batch and whether it is durable.
    batches: Vec<(Vec<u8>, bool)>,
}

impl Model {
    fn apply(&mut self, e: &Event) {
        match e {
            Event::CreateDir(p) => {
                self.names.insert(p.clone(), Node::Dir);
            }
            Event::CreateFile { path, data, synced } => {
                let durable = synced.then(|| data.clone());
                self.files.push((data.clone(), durable));
                self.names
                    .insert(path.clone(), Node::File(self.files.len() - 1));
            }
            Event::ReplaceFile { path, data, synced } => {
                let durable = synced.then(|| data.clone());
                self.files.push((data.clone(), durable));
                self.names
                    .insert(path.clone(), Node::File(self.files.len() - 1));
            }
            Event::RemoveFile(p) => {
                self.names.insert(p.clone(), Node::Absent);
            }
            Event::RemoveDirAll(p) => {
                // Names below `p` sort right after it.
                let below = self.names.range_mut(p.clone()..);
                for (_, n) in below.take_while(|(k, _)| k.starts_with(p)) {
                    *n = Node::Absent;
                }
                self.names.insert(p.clone(), Node::Absent);
            }
            Event::SyncDir(d) => {
                for (p, n) in &self.names {
                    if p.parent() == Some(d.as_path()) {
                        self.durable_names.insert(p.clone(), n.clone());
                    }
                }
            }
            Event::SyncAll => {
                self.durable_names = self.names.clone();
                for f in &mut self.files {
                    f.1 = Some(f.0.clone());
                }
                for b in &mut self.batches {
                    b.1 = true;
                }
            }
            Event::IndexWrite { batch, synced } => {
                if *synced {
                    for b in &mut self.batches {
                        b.1 = true;
                    }
                }
                self.batches.push((batch.clone(), *synced));
            }
        }
    }

    fn outcome(&self, crash: Crash) -> Vec<(PathBuf, Outcome)> {
        let names = match crash {
            Crash::PowerCut => &self.durable_names,
            Crash::Kill | Crash::PowerCutKeepingNames => &self.names,
        };
        names
            .iter()
            .map(|(p, n)| {
                let o = match n {
                    Node::Dir => Outcome::Dir,
                    Node::Absent => Outcome::Absent,
                    Node::File(i) => {
                        let (bytes, durable) = &self.files[*i];
                        Outcome::File(match crash {
                            Crash::Kill => bytes.clone(),
                            _ => durable.clone().unwrap_or_default(),
                        })
                    }
                };
                (p.clone(), o)
            })
            .collect()
    }

    fn durable_batches(&self, crash: Crash) -> Vec<Vec<u8>> {
        self.batches
            .iter()
            .filter(|(_, durable)| *durable || crash == Crash::Kill)
            .map(|(b, _)| b.clone())
            .collect()
    }
}

/// The dirs `dir` and its missing ancestors, outermost first.
fn missing_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

impl Storage for Recording {
    fn create_dir(&self, dir: &Path, mode: u32) -> io::Result<()> {
        self.real.create_dir(dir, mode)?;
        self.record(Event::CreateDir(dir.to_path_buf()));
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<bool> {
        let missing = missing_dirs(dir);
        let made = self.real.create_dir_all(dir)?;
        for d in missing {
            self.record(Event::CreateDir(d));
        }
        Ok(made)
    }

    fn create_file(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<bool> {
        let missing = missing_dirs(path.parent().unwrap_or(Path::new("")));
        let made = self.real.create_file(path, data, sync)?;
        for d in missing {
            self.record(Event::CreateDir(d));
        }
        if made {
            self.record(Event::CreateFile {
                path: path.to_path_buf(),
                data: data.to_vec(),
                synced: sync,
            });
        }
        Ok(made)
    }

    fn replace_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.real.replace_file(path, data)?;
        self.record(Event::ReplaceFile {
            path: path.to_path_buf(),
            data: data.to_vec(),
            synced: false,
        });
        Ok(())
    }

    fn replace_file_synced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.real.replace_file_synced(path, data)?;
        self.record(Event::ReplaceFile {
            path: path.to_path_buf(),
            data: data.to_vec(),
            synced: true,
        });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.real.remove_file(path)?;
        self.record(Event::RemoveFile(path.to_path_buf()));
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.real.remove_dir_all(dir)?;
        self.record(Event::RemoveDirAll(dir.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.real.sync_dir(dir)?;
        self.record(Event::SyncDir(dir.to_path_buf()));
        Ok(())
    }

    fn sync_all(&self, path: &Path) -> io::Result<()> {
        self.real.sync_all(path)?;
        self.record(Event::SyncAll);
        Ok(())
    }

    /// Not recorded: the reserve only holds space, and a crash that loses
    /// it loses nothing (the next writer makes it again).
    fn preallocate(&self, path: &Path, len: i64) -> io::Result<()> {
        self.real.preallocate(path, len)
    }

    /// Not recorded: a lock file holds nothing; flock is not on disk.
    fn open_lock(&self, path: &Path) -> io::Result<File> {
        self.real.open_lock(path)
    }

    fn index_written(&self, batch: &[u8], synced: bool) {
        self.record(Event::IndexWrite {
            batch: batch.to_vec(),
            synced,
        });
    }

    fn watches_index(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file `name` of a store rebuilt after `events` (paths relative
    /// to its root) as `crash` leaves it: its bytes, or None if absent.
    /// Before the events the store held one file, `old`.
    fn after(events: &[Event], crash: Crash, name: &str) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let (root, before) = (dir.path().join("store"), dir.path().join("before"));
        fs::create_dir_all(&before).unwrap();
        fs::write(before.join("old"), b"before").unwrap();
        let out = dir.path().join("out");
        let events: Vec<Event> = events.iter().map(|e| e.under(&root)).collect();
        Recording::rebuild(&root, &before, &events, crash, &out).unwrap();
        fs::read(out.join(name)).ok()
    }

    impl Event {
        /// The event with its relative paths taken from `root`.
        fn under(&self, root: &Path) -> Event {
            let at = |p: &PathBuf| root.join(p);
            match self {
                Event::CreateFile { path, data, synced } => Event::CreateFile {
                    path: at(path),
                    data: data.clone(),
                    synced: *synced,
                },
                Event::RemoveFile(p) => Event::RemoveFile(at(p)),
                Event::SyncDir(p) => Event::SyncDir(at(p)),
                other => other.clone(),
            }
        }
    }

    fn create(name: &str, synced: bool) -> Event {
        Event::CreateFile {
            path: name.into(),
            data: b"new".to_vec(),
            synced,
        }
    }

    #[test]
    fn a_new_file_needs_its_bytes_and_its_directory_synced_to_survive_a_power_cut() {
        let made = [create("f", false)];
        assert_eq!(after(&made, Crash::Kill, "f"), Some(b"new".to_vec()));
        assert_eq!(after(&made, Crash::PowerCut, "f"), None);
        assert_eq!(after(&made, Crash::PowerCutKeepingNames, "f"), Some(vec![]));
        let named = [create("f", false), Event::SyncDir("".into())];
        assert_eq!(after(&named, Crash::PowerCut, "f"), Some(vec![]));
        let both = [create("f", true), Event::SyncDir("".into())];
        assert_eq!(after(&both, Crash::PowerCut, "f"), Some(b"new".to_vec()));
        let all = [create("f", false), Event::SyncAll];
        assert_eq!(after(&all, Crash::PowerCut, "f"), Some(b"new".to_vec()));
    }

    #[test]
    fn a_removal_survives_a_power_cut_only_once_its_directory_is_synced() {
        let removed = [Event::RemoveFile("old".into())];
        assert_eq!(after(&removed, Crash::Kill, "old"), None);
        assert_eq!(
            after(&removed, Crash::PowerCut, "old"),
            Some(b"before".to_vec())
        );
        assert_eq!(after(&removed, Crash::PowerCutKeepingNames, "old"), None);
        let synced = [Event::RemoveFile("old".into()), Event::SyncDir("".into())];
        assert_eq!(after(&synced, Crash::PowerCut, "old"), None);
    }
}
