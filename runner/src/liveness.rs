//! Noticing containers whose monitor died (kill -9, a crash, a reboot):
//! their record still says running. Any command that opens the store for
//! writing settles them: the stale mount goes and the state becomes exited.

use crate::stack::ContainerPaths;
use anyhow::Result;
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

/// The record with a dead monitor settled as exited (and written back).
pub fn settle(store: &Store, mut rec: ContainerRecord) -> Result<ContainerRecord> {
    let (monitor_pid, started_ns) = match rec.state {
        State::Running {
            monitor_pid,
            started_ns,
            ..
        }
        | State::Paused {
            monitor_pid,
            started_ns,
            ..
        } => (monitor_pid, started_ns),
        _ => return Ok(rec),
    };
    if process_alive(monitor_pid) {
        return Ok(rec);
    }
    // A root container's mount outlives its server as a dead FUSE mount; a
    // rootless one lived in the monitor's namespace and went with it.
    let merged = ContainerPaths::of(store.root(), &rec).merged();
    if is_mounted(&merged) {
        let _ = fusefs::unmount(&merged);
    }
    rec.transition(State::Exited {
        code: VANISHED,
        started_ns,
        finished_ns: crate::clock::now_ns(),
    })?;
    store.put_container(&rec)?;
    Ok(rec)
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
