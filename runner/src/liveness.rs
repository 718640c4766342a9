//! Noticing containers whose monitor died (kill -9, a crash, a reboot):
//! their record still says running. Any command that opens the store for
//! writing settles them: the stale mount goes and the state becomes exited.

use crate::stack::ContainerPaths;
use anyhow::Result;
use layerdb::{ContainerRecord, State, Store};

/// Exit code recorded for a container whose monitor vanished: as if killed.
const VANISHED: i32 = 137;

pub fn process_alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
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
    let _ = fusefs::unmount(&ContainerPaths::of(store.root(), &rec).merged());
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
