//! Whole-file advisory locks (flock) on lock files the runner keeps beside
//! a container's files: made if missing, held until dropped, released by
//! the kernel when their holder dies, however it dies.

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;

fn open(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

/// The lock at `path`, waiting while another process holds it.
pub fn exclusive(path: &Path) -> Result<Flock<File>> {
    Flock::lock(open(path)?, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("lock {}", path.display()))
}

/// The lock at `path` if no other process holds it.
pub fn try_exclusive(path: &Path) -> Result<Option<Flock<File>>> {
    Ok(Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock).ok())
}

/// [`exclusive`], held by a plain file: the lock belongs to the file's
/// open description, so a child forked while it is held holds it too, and
/// it goes when the last copy is closed. (A `Flock` unlocks on drop, for
/// every copy at once.)
pub fn exclusive_inherited(path: &Path) -> Result<File> {
    let file = open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("lock {}", path.display()))?;
    Ok(file)
}
