//! Noticing containers whose monitor died (kill -9, a crash, a reboot):
//! their state still says running. Any command that looks a container up
//! settles it: the stale mount goes and the state becomes exited.

use crate::container_id::ContainerId;
use crate::run_state;
use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::{ContainerRecord, State, Store};

/// Exit code recorded for a container whose monitor vanished: as if killed.
const VANISHED: i32 = 137;

pub use layerdb::pins::process_alive;
use layerdb::pins::process_stat;

/// Whether process `pid` is alive and `parent`'s child.
pub fn is_child_of(pid: i32, parent: i32) -> bool {
    process_stat(pid).is_some_and(|s| s.ppid == parent)
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`...) from
/// /proc/<pid>/stat; `None` once it is gone.
pub fn process_state(pid: i32) -> Option<char> {
    process_stat(pid).map(|s| s.state)
}

/// Whether something is mounted on `path` in this mount namespace.
fn is_mounted(path: &std::path::Path) -> bool {
    mount_at(path).is_some()
}

/// The filesystem type and source of the mount on top at `path` in this
/// mount namespace (`fuse` and `strata` for `strata mount`'s), if anything
/// is mounted there.
pub fn mount_at(path: &std::path::Path) -> Option<(String, String)> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    mount_in(&info, path)
}

fn mount_in(mountinfo: &[u8], path: &std::path::Path) -> Option<(String, String)> {
    use std::os::unix::ffi::OsStrExt as _;
    // Field 5 is the mount point, with space, tab, newline and backslash
    // octal-escaped; the type and source follow the " - " separator. A later line
    // is a mount made later: the one on top.
    let mut want = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => want.extend(format!("\\{b:03o}").bytes()),
            _ => want.push(b),
        }
    }
    let fstype = |line: &[u8]| {
        let rest = &line[line.windows(3).position(|w| w == b" - ")? + 3..];
        let mut fields = rest.split(|&b| b == b' ');
        let mut next = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
        Some((next(), next()))
    };
    mountinfo
        .split(|&b| b == b'\n')
        .filter(|l| l.split(|&b| b == b' ').nth(4) == Some(want.as_slice()))
        .filter_map(fstype)
        .next_back()
}

/// The record with its current state (run_state.rs), a dead monitor's
/// container settled as exited (and recorded so).
pub fn settle(store: &Store, rec: ContainerRecord) -> Result<ContainerRecord> {
    let mut rec = run_state::current(store.root(), rec);
    if vanished(&rec.state).is_none() {
        return Ok(rec);
    }
    let paths = ContainerPaths::of(store.root(), &rec);
    let finished_ns = crate::clock::now_ns();
    // Checked again, and cleaned up, under the state's lock: a start may
    // have settled it meanwhile and started a new monitor, which mounts
    // the same `merged` and makes the same cgroup before it records the
    // start under this lock.
    let recorded = run_state::update(store.root(), &mut rec, |state| {
        let started_ns = vanished(state)?;
        // Its processes died with the monitor (or are killed now: frozen
        // ones would not die of it), and its cgroup goes. A root
        // container's mount outlives its server as a dead FUSE mount; a
        // rootless one lived in the monitor's namespace and went with it.
        crate::container::cgroup::remove_recorded(&paths.dir);
        let merged = paths.merged();
        if is_mounted(&merged) {
            let _ = fusefs::unmount(&merged);
        }
        Some(State::Exited {
            code: VANISHED,
            started_ns,
            finished_ns,
            oom_killed: false,
        })
    });
    if let Err(e) = recorded {
        // Settled but not recorded (a full disk refused the state file):
        // the caller sees it exited, and the next command that looks
        // records it. A state not even decided (its lock) is an error.
        if vanished(&rec.state).is_some() {
            return Err(e);
        }
        log::warn!("container {}: its exit is not recorded: {e:#}", rec.name);
    }
    Ok(rec)
}

/// The container `id` from its files alone (its record and state file),
/// without opening the index: for the processes that watch a container
/// for its whole life (`__keep`, `__health`), whose index reader's memory
/// would stay with them. One whose monitor died is settled through the
/// index, as every command settles it.
pub fn container_from_files(root: &std::path::Path, id: &str) -> Result<ContainerRecord> {
    let rec = layerdb::container_records::read_record(root, id)?
        .with_context(|| format!("No such container: {id}"))?;
    let rec = run_state::current(root, rec);
    match vanished(&rec.state) {
        None => Ok(rec),
        Some(_) => settle(&Store::open_read_only(root)?, rec),
    }
}

/// Whether `state` says running (or paused) and its monitor is alive.
pub fn runs(state: &State) -> bool {
    state.is_running() && vanished(state).is_none()
}

/// When the state says running but its monitor is gone: the start time.
fn vanished(state: &State) -> Option<i64> {
    match *state {
        State::Running { started_ns, .. } | State::Paused { started_ns, .. }
            if !monitor_runs(state) =>
        {
            Some(started_ns)
        }
        _ => None,
    }
}

/// Whether the monitor a running or paused state names still runs: its
/// pid alive and started when recorded. A monitor killed leaves its pid to
/// be reused, and the next process under it is not the container's.
pub fn monitor_runs(state: &State) -> bool {
    state
        .monitor()
        .is_some_and(|(pid, start)| layerdb::pins::process_alive_since(pid, start))
}

/// Removes a container that does not run: first a mount its monitor left
/// when it died (the state may not say running: killed between mounting and
/// recording the start), since deleting the directory would fail on it
/// once the record is gone; then an address lease it may have left; then
/// the record, then the directory.
pub fn remove(store: &Store, rec: &ContainerRecord) -> Result<()> {
    remove_stopped(store, &ContainerPaths::of(store.root(), rec), &rec.id)
}

/// [`remove`]'s steps for the container `id` whose files are `paths`.
fn remove_stopped(store: &Store, paths: &ContainerPaths, id: &str) -> Result<()> {
    let merged = paths.merged();
    if is_mounted(&merged) {
        fusefs::unmount(&merged).with_context(|| format!("unmount {}", merged.display()))?;
    }
    crate::network::forget(id);
    Ok(layerdb::container_records::remove(store.root(), id)?)
}

/// Removes container `id`, whose record cannot be read: the way out of
/// what `verify` reports. Refused while a monitor its state file names is
/// alive (a newer strata's record reads as damaged too); then as
/// [`remove`]: a mount a dead monitor left, the lease, the record and the
/// directory.
pub fn remove_damaged(store: &Store, id: &ContainerId) -> Result<()> {
    let paths = ContainerPaths::new(store.root(), id);
    let running = run_state::read(&paths).filter(monitor_runs);
    if let Some((monitor_pid, _)) = running.and_then(|state| state.monitor()) {
        bail!("cannot remove container {id}: its record cannot be read and its monitor (pid {monitor_pid}) is running");
    }
    remove_stopped(store, &paths, id.as_str())
}

/// Waits until process `pid` exits, or `limit` passes (`None`: no
/// limit), without polling: a pidfd. True once it has exited (or was
/// gone already).
pub fn wait_exit(pid: i32, limit: Option<std::time::Duration>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let Ok(fd) = crate::sys::pidfd_open(nix::unistd::Pid::from_raw(pid)) else {
        return true;
    };
    let timeout = match limit {
        Some(limit) => PollTimeout::try_from(limit).unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, timeout).unwrap_or(0) > 0
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_is_known_by_its_parent_until_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let (pid, own) = (child.id() as i32, std::process::id() as i32);
        assert!(is_child_of(pid, own));
        assert!(!is_child_of(pid, 1));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_child_of(pid, own));
    }

    use super::*;
    use std::path::Path;

    #[test]
    fn the_type_on_top_of_an_escaped_mount_point_is_found() {
        let info = b"36 25 0:32 / /mnt/a\\040b rw - ext4 /dev/vda rw
40 36 0:45 / /mnt/a\\040b rw,nosuid - fuse strata rw
41 25 0:46 / /mnt/ab rw - tmpfs tmpfs rw
";
        let mount = |p: &str| mount_in(info, Path::new(p));
        let pair = |t: &str, s: &str| Some((t.to_string(), s.to_string()));
        assert_eq!(mount("/mnt/a b"), pair("fuse", "strata"));
        assert_eq!(mount("/mnt/ab"), pair("tmpfs", "tmpfs"));
        assert_eq!(mount("/mnt/a"), None);
    }
}
