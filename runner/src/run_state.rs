//! A container's run state (running, exited) lives in a small file in its
//! directory, `containers/<id>/state`, not in the index. Recording a start
//! and an exit in the index meant two more read-write RocksDB opens per
//! `run`, each with its fsyncs (manifest, CURRENT, OPTIONS, the log), and
//! the writer lock taken twice by every container's monitor. The record in
//! the index keeps what does not change while the container lives (image,
//! command, name) and the state it was created in; the file, once written,
//! supersedes that state.
//!
//! Crash safety: the file is replaced by a rename, so a process killed at
//! any instant leaves the old state or the new one, never a mix; a state
//! that says running after its monitor died is settled as exited by the
//! next command that looks (liveness.rs). After a power loss an unreadable
//! file counts as absent (the record's state). Every change is a checked
//! transition made under an flock of the container's directory, so two
//! monitors started at once cannot both record a start.

use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::{ContainerRecord, State};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, Instant};

/// `rec` with its state as last recorded in its state file, if any.
pub fn current(root: &Path, mut rec: ContainerRecord) -> ContainerRecord {
    if let Some(state) = read(&ContainerPaths::of(root, &rec)) {
        rec.state = state;
    }
    rec
}

/// Moves the container to the state `decide` names, if any, when its
/// current state allows it, and updates `rec` to match. Under the lock,
/// `decide` sees the current state: a decision taken on a state read
/// earlier could undo a change made since (a new start).
pub fn update(
    root: &Path,
    rec: &mut ContainerRecord,
    decide: impl FnOnce(&State) -> Option<State>,
) -> Result<()> {
    let paths = ContainerPaths::of(root, rec);
    let dir = File::open(&paths.dir).with_context(|| format!("open {}", paths.dir.display()))?;
    let _lock = lock_bounded(dir, &paths.dir)?;
    if let Some(state) = read(&paths) {
        rec.state = state;
    }
    let Some(to) = decide(&rec.state) else {
        return Ok(());
    };
    rec.transition(to)?;
    let bytes = serde_json::to_vec(&rec.state)?;
    let tmp = paths.dir.join("state.tmp");
    match fs::write(&tmp, &bytes) {
        Ok(()) => {}
        Err(e) if layerdb::error::no_space(&e) => {
            let _ = fs::remove_file(&tmp);
            return overwrite(&paths.state(), &bytes)
                .with_context(|| format!("write {} (the disk is full)", paths.state().display()));
        }
        Err(e) => return Err(e).with_context(|| format!("write {}", tmp.display())),
    }
    fs::rename(&tmp, paths.state())
        .with_context(|| format!("replace {}", paths.state().display()))?;
    Ok(())
}

/// Writes `bytes` over the state file in place, for a full disk: a new
/// file needs a block, but the old one has a block already (a state is
/// far smaller than one), so the exit of a container that filled the disk
/// is still recorded. Padded with spaces (JSON allows them) to the old
/// length, so one write leaves a whole state whenever it is killed; a
/// state file not there yet (a start) has no block to reuse.
fn overwrite(state: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(state)?;
    let old = f.metadata()?.len() as usize;
    let mut padded = bytes.to_vec();
    padded.resize(old.max(bytes.len()), b' ');
    f.write_all_at(&padded, 0)
}

/// How long a state change waits for another one on the same container:
/// each holds the lock for a read and a rename, far below this. Callers
/// may hold the writer lock (a command settling a container), which must
/// never wait without bound.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The container directory's flock, waited for at most [`LOCK_WAIT`].
fn lock_bounded(dir: File, path: &Path) -> Result<Flock<File>> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut dir = dir;
    loop {
        match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                dir = back;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "container state {} is locked by another process for more than {}s",
                path.display(),
                LOCK_WAIT.as_secs()
            ),
            Err((_, e)) => return Err(e).with_context(|| format!("lock {}", path.display())),
        }
    }
}

pub fn read(paths: &ContainerPaths) -> Option<State> {
    let bytes = fs::read(paths.state()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(root: &Path) -> ContainerRecord {
        let id = "ab".repeat(32);
        fs::create_dir_all(layerdb::ContainerDir::new(root, &id).path()).unwrap();
        ContainerRecord {
            id,
            name: "c".into(),
            image: layerdb::Digest([0; 32]),
            image_ref: "busybox".into(),
            created_ns: 0,
            state: State::Created,
            command: vec!["/bin/true".into()],
            config: Default::default(),
            hostname: "h".into(),
            tty: false,
            interactive: false,
            network: "host".into(),
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

    #[test]
    fn the_file_supersedes_the_recorded_state_and_transitions_are_checked() {
        let root = tempfile::tempdir().unwrap();
        let rec = record(root.path());
        assert_eq!(current(root.path(), rec.clone()).state, State::Created);

        let running = State::Running {
            monitor_pid: 1,
            monitor_start: 0,
            pid: 2,
            started_ns: 3,
        };
        // A second monitor's copy of the record still says created: the
        // file, read under the lock, refuses its start.
        let mut first = rec.clone();
        let mut second = rec.clone();
        update(root.path(), &mut first, |_| Some(running.clone())).unwrap();
        assert!(update(root.path(), &mut second, |_| Some(running.clone())).is_err());
        assert_eq!(current(root.path(), rec.clone()).state, running);

        let exited = State::Exited {
            code: 0,
            started_ns: 3,
            finished_ns: 4,
            oom_killed: false,
        };
        update(root.path(), &mut first, |_| Some(exited.clone())).unwrap();
        assert_eq!(first.state, exited);
        assert_eq!(current(root.path(), rec).state, exited);
    }

    #[test]
    fn an_unreadable_file_counts_as_absent() {
        let root = tempfile::tempdir().unwrap();
        let rec = record(root.path());
        fs::write(ContainerPaths::of(root.path(), &rec).state(), b"").unwrap();
        assert_eq!(current(root.path(), rec).state, State::Created);
    }
}
