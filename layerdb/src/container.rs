//! Container records: what the runner needs to start, list, commit and
//! remove a container. The filesystem itself is the upper directory.

use crate::digest::Digest;
use crate::image::RunConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A container's run state as the store records it; the runner moves it through
/// [`ContainerRecord::transition`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Recorded, upper made, never started.
    Created,
    /// The monitor process serves the mount and waits on `pid`.
    Running {
        /// The `strata` process that serves the container's mount and waits on
        /// it.
        monitor_pid: i32,
        /// When the monitor started ([`crate::pins::process_start`]): a
        /// pid names the monitor only while this matches, as pids are
        /// reused. 0 in states written before it was kept.
        #[serde(default)]
        monitor_start: u64,
        /// The container's init process, as the host sees it.
        pid: i32,
        /// When it started, in ns since the Unix epoch.
        started_ns: i64,
    },
    /// Frozen for a commit.
    Paused {
        /// The `strata` process that serves the container's mount and waits on
        /// it.
        monitor_pid: i32,
        /// As in `Running`.
        #[serde(default)]
        monitor_start: u64,
        /// The container's init process, as the host sees it.
        pid: i32,
        /// When it started, in ns since the Unix epoch.
        started_ns: i64,
    },
    /// Its process ended (or a start failed).
    Exited {
        /// The exit code docker would show: the process's, or 128 + the signal
        /// that killed it.
        code: i32,
        /// When it last started, in ns since the Unix epoch (0 if it never
        /// did).
        started_ns: i64,
        /// When it ended, in ns since the Unix epoch.
        finished_ns: i64,
        /// Whether the kernel killed a process of it for the container's
        /// memory limit (docker's `State.OOMKilled`). Absent in records
        /// written before it was kept.
        #[serde(default)]
        oom_killed: bool,
    },
}

impl State {
    /// Whether a process is alive: running or paused.
    pub fn is_running(&self) -> bool {
        matches!(self, State::Running { .. } | State::Paused { .. })
    }
    /// Whether `start` may run it: created or exited.
    pub fn can_start(&self) -> bool {
        matches!(self, State::Created | State::Exited { .. })
    }
    /// Whether there is a process to signal.
    pub fn can_kill(&self) -> bool {
        self.is_running()
    }
    /// Whether `rm` (without `-f`) may remove it: no process alive.
    pub fn can_remove(&self) -> bool {
        !self.is_running()
    }
    /// Whether `pause` may freeze it: running and not already paused.
    pub fn can_pause(&self) -> bool {
        matches!(self, State::Running { .. })
    }

    /// The monitor of a running or paused container: its pid and start.
    pub fn monitor(&self) -> Option<(i32, u64)> {
        match *self {
            State::Running {
                monitor_pid,
                monitor_start,
                ..
            }
            | State::Paused {
                monitor_pid,
                monitor_start,
                ..
            } => Some((monitor_pid, monitor_start)),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running { .. } => "running",
            State::Paused { .. } => "paused",
            State::Exited { .. } => "exited",
        }
    }

    /// Whether a container may go from `self` to `to`: created and exited
    /// containers start, running ones pause, resume and exit, and a start
    /// that fails leaves the container exited with that start's code (a
    /// created one and an exited one alike, as docker's daemon records it).
    pub fn can_become(&self, to: &State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Created | Exited { .. }, Running { .. })
                | (Created | Exited { .. }, Exited { .. })
                | (Running { .. }, Paused { .. } | Exited { .. })
                | (Paused { .. }, Running { .. } | Exited { .. })
        )
    }
}

/// A state change the container's current state does not allow.
#[derive(Debug, thiserror::Error)]
#[error("container {name} is {from}: it cannot become {to}")]
pub struct BadTransition {
    /// The container's name.
    pub name: String,
    /// Its current state, as `ps` shows it (`running`, `exited`...).
    pub from: &'static str,
    /// The state asked for.
    pub to: &'static str,
}

/// A bind mount given with `-v SRC:DST[:ro]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// The host path mounted.
    pub source: PathBuf,
    /// Where it appears inside the container (absolute).
    pub target: String,
    /// Mounted read-only (`:ro`).
    pub read_only: bool,
    /// The volume's name when the source is a volume's directory (`-v
    /// NAME:DST`, `-v DST`, an image's `VOLUME`); absent for a host path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

/// A tmpfs given with `--tmpfs DST[:OPTIONS]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Where it appears inside the container (absolute, cleaned).
    pub target: String,
    /// Its options as given (`rw,size=64m`), which come after docker's
    /// `noexec,nosuid,nodev`.
    pub options: String,
}

/// Where a container's output is kept, docker's `--log-driver`: its
/// json-file log (what `logs` reads), or nowhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    /// docker's default: a JSON object a line in the container's log.
    #[default]
    JsonFile,
    /// Output shown to an attached CLI only, never kept.
    None,
}

/// docker's json-file `--log-opt`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogOptions {
    /// `max-size`: bytes past which the log is rotated (0: never).
    pub max_size: u64,
    /// `max-file`: the files kept in all, the current one included
    /// (`<log>`, `<log>.1`...); 0 counts as 1.
    pub max_files: u32,
}

/// Everything the store keeps about one container; stored as JSON under its id
/// (see the `keys` schema).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex characters, random.
    pub id: String,
    /// Unique among containers, without docker's leading `/`.
    pub name: String,
    /// The image id (config digest) it was created from; the image cannot be
    /// removed while this record exists.
    pub image: Digest,
    /// The reference the user gave (`ubuntu`, `sample-app:latest`...).
    pub image_ref: String,
    /// When it was created, in ns since the Unix epoch.
    pub created_ns: i64,
    /// Its run state; change it only through [`ContainerRecord::transition`].
    pub state: State,
    /// The process: entrypoint + cmd as resolved at create time.
    pub command: Vec<String>,
    /// The image's run config with the run flags applied (-e, -w, -u...).
    pub config: RunConfig,
    /// The hostname inside its UTS namespace (`-h`, else the short id).
    pub hostname: String,
    /// A pseudo-terminal is the process's stdio (`-t`).
    pub tty: bool,
    /// Stdin stays open (`-i`).
    pub interactive: bool,
    /// The network mode (`--network`): `bridge`, `host`, `none`...
    pub network: String,
    /// `-v` bind mounts, in the order given.
    pub mounts: Vec<BindMount>,
    /// `--tmpfs` mounts, in the order given. Absent in records made
    /// before it.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// Removed when its process exits (`--rm`).
    pub auto_remove: bool,
    /// Its pid 1 is an init that runs the command, forwards signals and
    /// reaps orphans (`--init`). Absent in records made before it.
    #[serde(default)]
    pub init: bool,
    /// Where its output is kept (`--log-driver`). Absent in records made
    /// before it (which had a log).
    #[serde(default)]
    pub log_driver: LogDriver,
    /// `--log-opt max-size=`, `max-file=`. Absent in records made before
    /// them (no rotation).
    #[serde(default)]
    pub log_options: LogOptions,
    /// `--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`.
    #[serde(default)]
    pub security: SecurityOptions,
    /// `--memory`, `--cpus`, `--pids-limit` and device access, applied
    /// through the container's cgroup. Absent in records made before it.
    #[serde(default)]
    pub resources: Resources,
    /// `-p`, `--dns`, `--add-host`: what the container's network is given
    /// beyond its mode (`network`). Absent in records made before it.
    #[serde(default)]
    pub net: NetworkConfig,
    /// `--restart`: whether the container is started again when it exits.
    /// Absent in records made before it (`no`).
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// docker's `--restart`, as its HostConfig names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    /// `no` (empty), `always`, `unless-stopped` or `on-failure`.
    pub name: String,
    /// `on-failure:N`: at most N restarts (0: no bound).
    pub maximum_retry_count: u32,
}

/// What `run`/`create` were told about the container's privileges, as
/// given (docker's inspect shows them so); the runner resolves them into
/// capability sets and a seccomp filter at every start and exec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityOptions {
    /// Capabilities added to docker's default set (`--cap-add`), as given.
    pub cap_add: Vec<String>,
    /// Capabilities removed from it (`--cap-drop`), as given.
    pub cap_drop: Vec<String>,
    /// `--privileged`: every capability and device, no seccomp filter.
    pub privileged: bool,
    /// `--security-opt` values, as given (`seccomp=...`, `no-new-
    /// privileges`...).
    pub security_opt: Vec<String>,
    /// The JSON of `--security-opt seccomp=FILE`, read when the container
    /// was created: the profile belongs to the container, as in docker,
    /// not to a file that may change or go away.
    pub seccomp_profile: Option<String>,
    /// `--read-only`: the root filesystem, and the /etc files bound into
    /// it, are mounted read-only (docker's `ReadonlyRootfs`).
    pub read_only_rootfs: bool,
}

/// What the container may use, in docker's HostConfig units: 0 means no
/// limit for each number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Bytes of memory (`--memory`).
    pub memory: i64,
    /// Bytes of memory and swap together (`--memory-swap`): 0 is docker's
    /// default (swap as much as memory), -1 no limit on swap. Absent in
    /// records made before it.
    #[serde(default)]
    pub memory_swap: i64,
    /// CPU time in billionths of a CPU (`--cpus 1.5` is 1_500_000_000).
    pub nano_cpus: i64,
    /// Most tasks at once (`--pids-limit`).
    pub pids_limit: i64,
    /// Every device, not only docker's defaults (`--privileged`).
    pub all_devices: bool,
    /// `--ulimit`: resource limits of the container's processes, by name
    /// (one each). Absent in records made before it.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size`: bytes of the container's /dev/shm (0: docker's 64 MiB).
    /// Absent in records made before it.
    #[serde(default)]
    pub shm_size: i64,
    /// `--device`: host devices given to the container. Absent in records
    /// made before it.
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
}

/// One `--device HOST[:CONTAINER][:PERMISSIONS]`, in docker's HostConfig
/// shape: the host's path is found again at each start, as docker does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    /// The node, or a directory of nodes, on the host.
    pub path_on_host: String,
    /// Where it appears in the container (absolute).
    pub path_in_container: String,
    /// What the container may do with it: some of `r`, `w` and `m`.
    pub cgroup_permissions: String,
}

/// One `--ulimit NAME=SOFT[:HARD]`, in docker's HostConfig shape; -1 is
/// no limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    /// docker's name of the limit (`nofile`, `nproc`, `core`...).
    pub name: String,
    /// The soft limit.
    pub soft: i64,
    /// The hard limit.
    pub hard: i64,
}

/// A container's network options as given to `run` (the addresses it gets
/// are runtime state, kept beside its run state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// `-p [IP:][HOST:]CONTAINER[/PROTO]`, in the order given.
    pub ports: Vec<PortBinding>,
    /// `--dns`: name servers replacing the host's.
    pub dns: Vec<String>,
    /// `--add-host NAME:IP`, as given.
    pub extra_hosts: Vec<String>,
}

/// One published port. `host_port` 0 means "any free port", chosen when
/// the container starts; an empty `host_ip` means every address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// The host address to listen on; empty for all.
    pub host_ip: String,
    /// The host port; 0 until the container starts and one is chosen.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
}

impl ContainerRecord {
    /// The first 12 hex characters of the id, as docker shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// Moves to `to` if the current state allows it.
    pub fn transition(&mut self, to: State) -> Result<(), BadTransition> {
        if !self.state.can_become(&to) {
            return Err(BadTransition {
                name: self.name.clone(),
                from: self.state.name(),
                to: to.name(),
            });
        }
        self.state = to;
        Ok(())
    }
}

/// Container ids become paths: check them first.
pub fn valid_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A container's directory in the store, `<root>/containers/<id>/`: its
/// upper (`upper/`) and the runtime files the runner keeps beside it. The
/// one place that layout is spelled: the store, verify and the runner ask
/// it (records made before it also stored the upper's path; that field is
/// now ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerDir(PathBuf);

impl ContainerDir {
    /// The directory of the store root that holds every container's.
    pub const PARENT: &'static str = "containers";

    /// The directory of container `id` (64 hex) under store `root`.
    pub fn new(root: &Path, id: &str) -> ContainerDir {
        ContainerDir(root.join(Self::PARENT).join(id))
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The container's writable upper layer.
    pub fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }

    /// The container's record (`container_records`): the container exists
    /// once this file does.
    pub fn record(&self) -> PathBuf {
        self.0.join("record.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_containers_life() {
        let running = State::Running {
            monitor_pid: 1,
            monitor_start: 0,
            pid: 2,
            started_ns: 0,
        };
        let exited = State::Exited {
            code: 0,
            started_ns: 0,
            finished_ns: 1,
            oom_killed: false,
        };
        assert!(State::Created.can_become(&running));
        assert!(running.can_become(&exited));
        assert!(exited.can_become(&running));
        // A failed start of an exited container records its code.
        assert!(exited.can_become(&exited));
        assert!(!exited.can_become(&State::Created));
        assert!(!State::Created.can_become(&State::Paused {
            monitor_pid: 1,
            monitor_start: 0,
            pid: 2,
            started_ns: 0
        }));
        assert!(!running.can_become(&running));
    }

    #[test]
    fn a_running_container_cannot_be_removed_or_started() {
        let s = State::Running {
            monitor_pid: 1,
            monitor_start: 0,
            pid: 2,
            started_ns: 0,
        };
        assert!(!s.can_remove() && !s.can_start() && s.can_kill());
        let e = State::Exited {
            code: 0,
            started_ns: 0,
            finished_ns: 1,
            oom_killed: false,
        };
        assert!(e.can_remove() && e.can_start() && !e.can_kill());
    }

    #[test]
    fn a_containers_upper_is_in_its_directory_under_the_store_root() {
        let id = "ab".repeat(32);
        let dir = ContainerDir::new(Path::new("/store"), &id);
        assert_eq!(dir.path(), Path::new("/store/containers").join(&id));
        assert_eq!(
            dir.upper(),
            Path::new("/store/containers").join(&id).join("upper")
        );
    }

    #[test]
    fn a_record_that_stored_its_upper_path_still_reads() {
        let rec = ContainerRecord {
            id: "ab".repeat(32),
            name: "c".into(),
            image: Digest([0; 32]),
            image_ref: "busybox".into(),
            created_ns: 0,
            state: State::Created,
            command: vec!["true".into()],
            config: RunConfig::default(),
            hostname: "h".into(),
            tty: false,
            interactive: false,
            network: "none".into(),
            mounts: vec![],
            tmpfs: vec![],
            auto_remove: false,
            init: false,
            log_driver: Default::default(),
            security: SecurityOptions::default(),
            resources: Resources::default(),
            net: NetworkConfig::default(),
            restart: RestartPolicy::default(),
            log_options: LogOptions::default(),
        };
        let mut old = serde_json::to_value(&rec).expect("encode");
        old["upper"] = "/elsewhere/upper".into();
        let read: ContainerRecord = serde_json::from_value(old).expect("old record decodes");
        assert_eq!(read, rec);
    }
}
