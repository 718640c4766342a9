//! The storage seam: every operation by which the store changes its own
//! files on disk (chunk files, the format file, its directories, lock and
//! reserve files, removals) and every sync it makes goes through one
//! [`Storage`] value, found by the store's root ([`of`]).
//!
//! The real backend ([`Real`]) is the default. A test installs another for
//! one root ([`install`]): [`Recording`] does the real operations and keeps
//! a log of them, from which it builds the store as a power cut at any
//! instant of the log would leave it (`docs/design.md`, "Testing
//! durability"). Reads go straight to the files: a test backend keeps the
//! real files current, so reading needs no seam.
//!
//! RocksDB writes its own files through its C++ Env, which this seam does
//! not see; what the seam sees of the index is each write batch, after it
//! was written, and whether it was synced ([`Storage::index_written`]).

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

mod real;
mod recording;

pub use real::Real;
pub use recording::{copy_tree, Crash, Event, Recording};

/// The file and sync operations the store makes. Paths are absolute paths
/// inside a store's root.
pub trait Storage: Send + Sync + Debug {
    /// Makes the directory `dir` with `mode`; an existing one is an
    /// `AlreadyExists` error.
    fn create_dir(&self, dir: &Path, mode: u32) -> io::Result<()>;

    /// Makes `dir` and its missing parents; returns whether it made any.
    fn create_dir_all(&self, dir: &Path) -> io::Result<bool>;

    /// Makes the file `path` holding `data`, named only when complete (a
    /// reader never sees part of it; the directory is made if missing).
    /// With `sync` its bytes are on disk before it is named (the name
    /// itself is durable only once its directory is synced). Returns false
    /// if the name was taken (the file is left as it is).
    fn create_file(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<bool>;

    /// Replaces the file `path` by one holding `data`, through a temporary
    /// name and a rename (nothing is left behind on failure).
    fn replace_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;

    /// Replaces the file `path` by one holding `data`, its bytes synced
    /// before the rename (after a crash the name holds the old bytes or
    /// all the new ones; the rename itself is durable once the directory
    /// is synced).
    fn replace_file_synced(&self, path: &Path, data: &[u8]) -> io::Result<()>;

    /// Removes the file `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes the directory `dir` and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Makes the names in `dir` (made, renamed, removed) durable (fsync).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Makes everything written to the filesystem holding `path` durable
    /// (`syncfs`): file contents, names, and the index's log as well.
    fn sync_all(&self, path: &Path) -> io::Result<()>;

    /// Makes the file `path` holding `len` preallocated bytes, unless it
    /// exists (the disk space reserve).
    fn preallocate(&self, path: &Path, len: i64) -> io::Result<()>;

    /// Opens the lock file `path` for flock, making it if missing.
    fn open_lock(&self, path: &Path) -> io::Result<File>;

    /// Told of each index write batch (RocksDB's serialized form) once it
    /// is written, and whether it was written with `sync`. Only called
    /// when [`Storage::watches_index`] says so: the copy costs.
    fn index_written(&self, _batch: &[u8], _synced: bool) {}

    /// Whether [`Storage::index_written`] wants the batches.
    fn watches_index(&self) -> bool {
        false
    }
}

/// Backends installed for particular store roots (tests).
static INSTALLED: Mutex<Vec<(PathBuf, Arc<dyn Storage>)>> = Mutex::new(Vec::new());

/// The backend for the store holding `path` (its root or a path inside):
/// the one installed for the nearest root above it, or the real one.
pub fn of(path: &Path) -> Arc<dyn Storage> {
    static REAL: OnceLock<Arc<dyn Storage>> = OnceLock::new();
    let installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    let found = installed
        .iter()
        .filter(|(r, _)| path.starts_with(r))
        .max_by_key(|(r, _)| r.as_os_str().len());
    match found {
        Some((_, s)) => s.clone(),
        None => REAL.get_or_init(|| Arc::new(Real)).clone(),
    }
}

/// Uses `backend` for the store at `root` until the returned guard is
/// dropped (for tests).
pub fn install(root: &Path, backend: Arc<dyn Storage>) -> Installed {
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    installed.retain(|(r, _)| r != root);
    installed.push((root.to_path_buf(), backend));
    Installed(root.to_path_buf())
}

/// A backend installed by [`install`]; the real one is back when dropped.
#[must_use = "the backend is uninstalled when this is dropped"]
pub struct Installed(PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        installed.retain(|(r, _)| r != &self.0);
    }
}
