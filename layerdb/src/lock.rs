//! File locks between strata processes: flock, polled so that every wait
//! is bounded and the user is told, once, what is being waited for.

use crate::error::{IoContext, Result, StoreError};
// rustix rather than nix: nix's `Flock` owns the file and panics when
// dropping it fails to unlock, and nix's plain `flock` is deprecated.
use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// Takes the lock on `path` (made if missing), waiting at most `limit`;
/// `waiting_for` is printed once if the wait is not immediate.
pub(crate) fn take(path: &Path, mode: Mode, limit: Duration, waiting_for: &str) -> Result<File> {
    let f = crate::storage::of(path).open_lock(path).at(path)?;
    let how = match mode {
        Mode::Shared => FlockOperation::NonBlockingLockShared,
        Mode::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    let deadline = Instant::now() + limit;
    let mut told = false;
    loop {
        match flock(&f, how) {
            Ok(()) => return Ok(f),
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(errno) => return Err(std::io::Error::from(errno)).at(path),
        }
        let store = path.parent().unwrap_or(path).to_path_buf();
        if Instant::now() >= deadline {
            return Err(StoreError::Busy(store));
        }
        if !told {
            eprintln!("waiting for {waiting_for} (store {})", store.display());
            told = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Turns the shared lock held through `f` into an exclusive one if nobody
/// else holds the lock, without waiting. A failed conversion may drop the
/// shared lock (flock conversions are not atomic): for a holder about to
/// give the lock up either way.
pub(crate) fn try_exclusive(f: &File) -> bool {
    flock(f, FlockOperation::NonBlockingLockExclusive).is_ok()
}
