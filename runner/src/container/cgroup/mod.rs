//! A container's own cgroup: its limits (`--memory`, `--cpus`,
//! `--pids-limit`), its device access (docker's default devices only) and
//! the freezer `commit` pauses it with.
//!
//! Named as runc's cgroupfs manager names docker's, `/strata/<id>` in each
//! hierarchy: cgroup v1 (one hierarchy per controller, found in
//! /proc/self/mountinfo) or v2 (one unified hierarchy), told apart at run
//! time by the file system type of /sys/fs/cgroup.
//!
//! The monitor makes the cgroup and moves the container's first process
//! into it while that process still waits to start, so everything the
//! container runs is inside before it runs anything; the process then
//! unshares its cgroup namespace, so the container sees its own cgroup as
//! `/`. The directories made are listed in `<container dir>/cgroup`, so any
//! later command (a kill that must thaw, the cleanup after a monitor died)
//! finds them without the monitor.
//!
//! Rootless, as podman does: on v1 nothing is delegated to users, so the
//! container runs without a cgroup (limits are ignored with a warning,
//! see [`rootless_limits_warning`]); on v2 the subtree systemd delegates to
//! the user is used when the caller's cgroup is writable.

pub(crate) mod devices;
mod limits;
mod usage;
mod v1;
mod v2;

pub use limits::{
    memory_and_swap, parse_cpus, parse_memory, parse_memory_swap, parse_pids_limit, validate,
};
pub use usage::Usage;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use layerdb::Resources;
use serde::{Deserialize, Serialize};

/// How long a freeze may take before the pause fails, and how long the
/// last processes of an ended container may take to leave their cgroup.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The host's cgroup layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// A hierarchy per controller (legacy, or hybrid with an empty
    /// unified hierarchy beside them).
    V1,
    /// The unified hierarchy at /sys/fs/cgroup.
    V2,
}

/// Where cgroups are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The layout of this host: v2 when /sys/fs/cgroup itself is cgroup2.
pub fn host_version() -> Version {
    match nix::sys::statfs::statfs(CGROUP_ROOT) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => Version::V2,
        _ => Version::V1,
    }
}

/// Root of the host: uid 0 in the initial user namespace (a rootless
/// monitor is uid 0 too, in a user namespace of its own).
fn is_root() -> bool {
    let initial = fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    nix::unistd::geteuid().is_root() && initial
}

/// The warning `run` prints when limits were asked for and cannot be
/// applied (podman's rule: rootless on cgroup v1).
pub fn rootless_limits_warning(resources: &Resources) -> Option<&'static str> {
    (asks_for_limits(resources) && !is_root() && host_version() == Version::V1).then_some(
        "WARNING: resource limits are not supported and ignored on cgroup v1 rootless systems",
    )
}

fn asks_for_limits(resources: &Resources) -> bool {
    resources.memory > 0 || resources.nano_cpus > 0 || resources.pids_limit > 0
}

/// A container's cgroup: one directory per hierarchy on v1, one on v2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerCgroup {
    version: Version,
    /// Every directory the container's processes are in.
    dirs: Vec<PathBuf>,
    /// The directory whose freezer pauses the container, if the host has one.
    freezer: Option<PathBuf>,
}

impl ContainerCgroup {
    /// Makes the cgroup of container `id` with `resources` applied and
    /// records it in `record` (a file in the container's directory).
    /// `None` when the container runs without one (rootless on v1, or on
    /// v2 without a delegated subtree); then limits cannot apply and a
    /// request for them is an error here (`run` warned already on v1).
    pub fn create(id: &str, resources: &Resources, record: &Path) -> anyhow::Result<Option<Self>> {
        let made = match host_version() {
            Version::V1 if !is_root() => None,
            Version::V1 => Some(v1::create(id, resources)?),
            Version::V2 => v2::create(id, resources)?,
        };
        let Some(cgroup) = made else {
            if asks_for_limits(resources) && host_version() == Version::V2 {
                bail!("cannot apply the container's limits: no cgroup is delegated to this user (systemd's Delegate=yes gives one)");
            }
            return Ok(None);
        };
        let saved = serde_json::to_vec(&cgroup).context("encode the cgroup record")?;
        if let Err(err) = fs::write(record, saved) {
            cgroup.remove();
            return Err(err).with_context(|| format!("write {}", record.display()));
        }
        Ok(Some(cgroup))
    }

    /// The cgroup recorded for a container, if it has one.
    pub fn recorded(record: &Path) -> Option<Self> {
        serde_json::from_slice(&fs::read(record).ok()?).ok()
    }

    /// The cgroup of a running container, from its init's
    /// /proc/PID/cgroup: `None` when the container has none of its own
    /// (rootless on v1), so an exec'd process stays where it is.
    pub fn of_process(pid: i32) -> anyhow::Result<Option<Self>> {
        let listing = format!("/proc/{pid}/cgroup");
        let text = fs::read_to_string(&listing)
            .with_context(|| format!("container process {pid} is not running ({listing})"))?;
        // Lines are `ID:CONTROLLERS:PATH`; only the container's own count.
        let own = text
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once(':')?;
                rest.split_once(':')
            })
            .filter(|(_, path)| path.contains("/strata/"));
        let version = host_version();
        let mut cgroup = ContainerCgroup {
            version,
            dirs: Vec::new(),
            freezer: None,
        };
        let mounts = match version {
            Version::V1 => v1::hierarchy_mounts(&fs::read_to_string("/proc/self/mountinfo")?),
            Version::V2 => Default::default(),
        };
        for (controllers, path) in own {
            let relative = path.trim_start_matches('/');
            let dir = match version {
                Version::V2 if controllers.is_empty() => Path::new(CGROUP_ROOT).join(relative),
                Version::V1 => match controllers.split(',').next().and_then(|c| mounts.get(c)) {
                    Some(mount) => mount.join(relative),
                    None => continue,
                },
                Version::V2 => continue,
            };
            if version == Version::V2 || controllers.split(',').any(|c| c == "freezer") {
                cgroup.freezer = Some(dir.clone());
            }
            cgroup.dirs.push(dir);
        }
        Ok((!cgroup.dirs.is_empty()).then_some(cgroup))
    }

    /// Moves process `pid` (0: the caller) into every directory.
    pub fn add(&self, pid: i32) -> anyhow::Result<()> {
        for dir in &self.dirs {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, pid.to_string())
                .with_context(|| format!("move process {pid} into {}", procs.display()))?;
        }
        Ok(())
    }

    /// Applies `resources` to the running container's cgroup (`strata
    /// update`): each limit written anew, none where there is none now.
    pub fn update(&self, resources: &Resources) -> anyhow::Result<()> {
        for dir in &self.dirs {
            match self.version {
                Version::V2 => v2::update(dir, resources)?,
                Version::V1 => v1::update(dir, resources)?,
            }
        }
        Ok(())
    }

    /// Whether the container can be paused through a freezer.
    pub fn has_freezer(&self) -> bool {
        self.freezer.is_some()
    }

    /// Freezes every process of the container and returns once they are.
    pub fn freeze(&self) -> anyhow::Result<()> {
        let Some(dir) = &self.freezer else {
            bail!("the container's cgroup has no freezer");
        };
        match self.version {
            Version::V1 => v1::freeze(dir, SETTLE_TIMEOUT),
            Version::V2 => v2::freeze(dir, SETTLE_TIMEOUT),
        }
    }

    /// Lets the container's processes run again. A cgroup removed
    /// meanwhile holds none to thaw: its container died and its monitor
    /// removed it (as after `rm -f`'s signal).
    pub fn thaw(&self) -> anyhow::Result<()> {
        let Some(dir) = &self.freezer else {
            return Ok(());
        };
        let thawed = match self.version {
            Version::V1 => v1::thaw(dir),
            Version::V2 => v2::thaw(dir),
        };
        match thawed {
            Err(err) if removed_meanwhile(&err) => Ok(()),
            thawed => thawed,
        }
    }

    /// Whether the kernel killed a process of the container for its
    /// memory limit: the `oom_kill` count of its memory cgroup (v2's
    /// `memory.events`, v1's `memory.oom_control`, Linux 4.13+).
    pub fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|dir| {
            ["memory.events", "memory.oom_control"].iter().any(|name| {
                fs::read_to_string(dir.join(name)).is_ok_and(|text| {
                    text.lines().any(|line| {
                        line.strip_prefix("oom_kill ")
                            .and_then(|n| n.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > 0)
                    })
                })
            })
        })
    }

    /// Kills whatever is still in the cgroup and removes its directories
    /// (best effort: called on the way out, errors are logged).
    pub fn remove(&self) {
        if let Err(err) = self.kill_remaining() {
            log::warn!("killing what is left in the container's cgroup: {err:#}");
        }
        for dir in &self.dirs {
            if let Err(err) = remove_dir(dir) {
                log::warn!("removing cgroup {}: {err:#}", dir.display());
            }
        }
    }

    /// A frozen process cannot die on v1 until thawed, so thaw first;
    /// then SIGKILL every process listed.
    fn kill_remaining(&self) -> anyhow::Result<()> {
        self.thaw()?;
        if self.version == Version::V2 {
            if let Some(dir) = self.dirs.first() {
                if v2::kill_all(dir)? {
                    return Ok(());
                }
            }
        }
        for dir in &self.dirs {
            for pid in processes(dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        Ok(())
    }
}

/// The file in a container's directory that lists its cgroup.
pub fn record_path(container_dir: &Path) -> PathBuf {
    container_dir.join("cgroup")
}

/// The monitor's hold on a container's cgroup: made and joined by the
/// container's first process before it runs, removed (with its record)
/// when this drops, after the container ended.
pub struct Placement {
    cgroup: Option<ContainerCgroup>,
    record: PathBuf,
}

impl Placement {
    /// Makes the cgroup of container `id` and moves `pid` (still waiting
    /// to start) into it.
    fn new(
        id: &str,
        resources: &Resources,
        container_dir: &Path,
        pid: nix::unistd::Pid,
    ) -> anyhow::Result<Self> {
        let record = record_path(container_dir);
        let cgroup = ContainerCgroup::create(id, resources, &record)?;
        let placement = Placement { cgroup, record };
        if let Some(cgroup) = &placement.cgroup {
            cgroup.add(pid.as_raw())?;
        }
        Ok(placement)
    }

    /// [`Placement::new`] for `spec` on a thread of its own, so that its
    /// cost overlaps the rootfs mount: the first move of a process between
    /// cgroups waits for an RCU grace period (10-15 ms measured here under
    /// load). Call it after the container's fork: the thread forks nothing.
    pub fn start(spec: &super::Spec, pid: nix::unistd::Pid) -> Placing {
        let id = spec.id.clone();
        let resources = spec.resources.clone();
        let dir = spec.container_dir.clone();
        let work = move || Placement::new(id.as_str(), &resources, &dir, pid);
        match std::thread::Builder::new()
            .name("cgroup".into())
            .spawn(work)
        {
            Ok(thread) => Placing(Some(Ok(thread))),
            Err(err) => Placing(Some(Err(
                anyhow::Error::from(err).context("start the cgroup thread")
            ))),
        }
    }

    pub fn cgroup(&self) -> Option<&ContainerCgroup> {
        self.cgroup.as_ref()
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove();
            let _ = fs::remove_file(&self.record);
        }
    }
}

/// A [`Placement`] being made; dropped unfinished, it waits for the
/// thread and undoes what it made.
pub struct Placing(Option<anyhow::Result<std::thread::JoinHandle<anyhow::Result<Placement>>>>);

impl Placing {
    /// Waits for the placement.
    pub fn finish(mut self) -> anyhow::Result<Placement> {
        match self.0.take() {
            Some(Ok(thread)) => thread
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the cgroup thread panicked"))),
            Some(Err(err)) => Err(err),
            None => bail!("the container's cgroup was placed already"),
        }
    }
}

impl Drop for Placing {
    fn drop(&mut self) {
        if let Some(Ok(thread)) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// After a monitor died: what is left of its container's cgroup goes.
pub fn remove_recorded(container_dir: &Path) {
    let record = record_path(container_dir);
    if let Some(cgroup) = ContainerCgroup::recorded(&record) {
        cgroup.remove();
    }
    let _ = fs::remove_file(&record);
}

/// A SIGKILL does not reach a process frozen by a v1 freezer: `rm -f`
/// and `kill` thaw the container's cgroup once the signal is sent.
///
/// A cgroup gone meanwhile is thawed enough: the container died of the
/// signal and its monitor removed it.
pub fn thaw_recorded(container_dir: &Path) -> anyhow::Result<()> {
    let Some(cgroup) = ContainerCgroup::recorded(&record_path(container_dir)) else {
        return Ok(());
    };
    cgroup.thaw()
}

/// Whether a control file could not be written because its cgroup was
/// removed: gone before the open (ENOENT), or between the open and the
/// write (ENODEV, kernfs's answer for a node being removed; `rm -f` met
/// it in scripts/bench-fs).
fn removed_meanwhile(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>().is_some_and(|io| {
        io.kind() == std::io::ErrorKind::NotFound || io.raw_os_error() == Some(libc::ENODEV)
    })
}

/// The pids listed in a cgroup directory (none when it is gone).
fn processes(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// rmdir, retried while the last processes are still leaving (EBUSY).
fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Writes `value` to the control file `name` of `dir`, naming both on failure.
fn write_control(dir: &Path, name: &str, value: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    fs::write(&path, value).with_context(|| format!("write {value:?} to {}", path.display()))
}

/// Polls until `done` holds, for at most `timeout`.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        if Instant::now() > deadline {
            bail!("{what} did not happen within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// `strata/<id>` below `base`, made with its parent.
fn make_dir(base: &Path, id: &str) -> anyhow::Result<PathBuf> {
    let dir = base.join("strata").join(id);
    fs::create_dir_all(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
    Ok(dir)
}

/// The cgroup namespace: the container sees its own cgroup as `/` in
/// /proc/self/cgroup and in any cgroup file system it could mount, never
/// the host's hierarchy or its `release_agent`. Called by the container's
/// first process once the monitor has moved it into its cgroup.
pub fn enter_namespace() -> nix::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_record_round_trips() {
        let dir = tempfile::tempdir().expect("temp dir");
        let record = dir.path().join("cgroup");
        let cgroup = ContainerCgroup {
            version: Version::V1,
            dirs: vec!["/sys/fs/cgroup/devices/strata/x".into()],
            freezer: Some("/sys/fs/cgroup/freezer/strata/x".into()),
        };
        fs::write(&record, serde_json::to_vec(&cgroup).expect("encode")).expect("write");
        assert_eq!(ContainerCgroup::recorded(&record), Some(cgroup));
        assert_eq!(ContainerCgroup::recorded(&dir.path().join("none")), None);
    }

    #[test]
    fn thawing_a_cgroup_its_monitor_removed_meanwhile_succeeds() {
        // rm -f: the SIGKILL ended the container, and its monitor removed
        // the cgroup before the thaw that follows the signal.
        let dir = tempfile::tempdir().expect("temp dir");
        for version in [Version::V1, Version::V2] {
            let cgroup = ContainerCgroup {
                version,
                dirs: vec![dir.path().join("gone")],
                freezer: Some(dir.path().join("gone")),
            };
            let record = record_path(dir.path());
            fs::write(&record, serde_json::to_vec(&cgroup).expect("encode")).expect("write");
            thaw_recorded(dir.path()).expect("nothing left to thaw");
        }
    }

    #[test]
    fn a_cgroup_removed_between_open_and_write_counts_as_gone() {
        let failed = |errno| {
            Err::<(), _>(std::io::Error::from_raw_os_error(errno))
                .context("write \"THAWED\" to freezer.state")
                .unwrap_err()
        };
        assert!(removed_meanwhile(&failed(libc::ENOENT)));
        assert!(removed_meanwhile(&failed(libc::ENODEV)));
        assert!(!removed_meanwhile(&failed(libc::EACCES)));
    }

    #[test]
    fn limits_warn_only_when_some_are_asked_for() {
        assert_eq!(rootless_limits_warning(&Resources::default()), None);
    }
}
