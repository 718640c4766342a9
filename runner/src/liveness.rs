//! Noticing containers whose monitor died (kill -9, a crash, a reboot):
//! their state still says running. Any command that looks a container up
//! settles it: the stale mount goes and the state becomes exited.

use crate::run_state;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use layerdb::{ContainerRecord, State, Store};

/// Exit code recorded for a container whose monitor vanished: as if killed.
const VANISHED: i32 = 137;

pub use layerdb::pins::process_alive;

/// Whether something is mounted on `path` in this mount namespace.
fn is_mounted(path: &std::path::Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    // Field 5 is the mount point (spaces and the like octal-escaped).
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

/// The record with its current state (run_state.rs), a dead monitor's
/// container settled as exited (and recorded so).
pub fn settle(store: &Store, rec: ContainerRecord) -> Result<ContainerRecord> {
    let mut rec = run_state::current(store.root(), rec);
    if vanished(&rec.state).is_none() {
        return Ok(rec);
    }
    // A root container's mount outlives its server as a dead FUSE mount; a
    // rootless one lived in the monitor's namespace and went with it.
    let paths = ContainerPaths::of(store.root(), &rec);
    // Its processes died with the monitor (or are killed now: frozen
    // ones would not die of it), and its cgroup goes.
    crate::container::cgroup::remove_recorded(&paths.dir);
    let merged = paths.merged();
    if is_mounted(&merged) {
        let _ = fusefs::unmount(&merged);
    }
    let finished_ns = crate::clock::now_ns();
    // Checked again under the state's lock: a start may have come between.
    run_state::update(store.root(), &mut rec, |state| {
        let started_ns = vanished(state)?;
        Some(State::Exited {
            code: VANISHED,
            started_ns,
            finished_ns,
        })
    })?;
    Ok(rec)
}

/// When the state says running but its monitor is gone: the start time.
fn vanished(state: &State) -> Option<i64> {
    match *state {
        State::Running {
            monitor_pid,
            started_ns,
            ..
        }
        | State::Paused {
            monitor_pid,
            started_ns,
            ..
        } if !process_alive(monitor_pid) => Some(started_ns),
        _ => None,
    }
}

/// Removes a container that does not run: first a mount its monitor left
/// when it died (the state may not say running: killed between mounting and
/// recording the start), since deleting the directory would fail on it
/// once the record is gone; then an address lease it may have left; then
/// the record, then the directory.
pub fn remove(store: &Store, rec: &ContainerRecord) -> Result<()> {
    let merged = ContainerPaths::of(store.root(), rec).merged();
    if is_mounted(&merged) {
        fusefs::unmount(&merged).with_context(|| format!("unmount {}", merged.display()))?;
    }
    crate::network::forget(&rec.id);
    Ok(store.remove_container(rec)?)
}

/// A container by name or id, settled.
pub fn container(store: &Store, name: &str) -> Result<ContainerRecord> {
    settle(store, store.container(name)?)
}

/// Every container, settled.
pub fn containers(store: &Store) -> Result<Vec<ContainerRecord>> {
    store
        .containers()?
        .into_iter()
        .map(|c| settle(store, c))
        .collect()
}
