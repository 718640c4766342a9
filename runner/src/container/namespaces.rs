//! Creating and joining the namespaces a container lives in.
//!
//! The pid namespace is made first, when the monitor forks the container's
//! first process (before the rootfs is mounted); the mount, uts, ipc and net
//! namespaces are unshared later by that process, once the monitor has made
//! the FUSE mount, so the new mount namespace's copy of the host tree holds
//! it whatever the host's mount propagation is.

use std::fs::File;

use anyhow::Context as _;
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{ForkResult, Pid};

use super::exit::StartError;
use crate::sys;

/// Forks a child that is pid 1 of a new pid namespace. The caller keeps its
/// own pid namespace for later children and threads: unshare(CLONE_NEWPID)
/// only changes where the *next* child goes, and the kernel refuses to start
/// threads while that differs from the caller's own, so we switch back at
/// once with setns.
pub fn fork_into_new_pid_namespace() -> anyhow::Result<ForkResult> {
    let own = File::open("/proc/self/ns/pid").context("open /proc/self/ns/pid")?;
    unshare(CloneFlags::CLONE_NEWPID).context("unshare the pid namespace")?;
    let forked = sys::fork();
    if let Ok(ForkResult::Parent { .. }) | Err(_) = forked {
        setns(&own, CloneFlags::CLONE_NEWPID).context("return to our own pid namespace")?;
    }
    forked
}

/// The namespaces the container's first process unshares for itself.
pub fn unshare_container_namespaces(network_none: bool) -> Result<(), StartError> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if network_none {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|errno| StartError::from_errno("unshare namespaces", errno))
}

/// Sets the hostname in the container's uts namespace, and brings `lo` up in
/// its own network namespace (`--network none`).
pub fn configure(hostname: &str, network_none: bool) -> Result<(), StartError> {
    if !hostname.is_empty() {
        nix::unistd::sethostname(hostname)
            .map_err(|errno| StartError::from_errno("sethostname", errno))?;
    }
    if network_none {
        sys::bring_up_loopback().map_err(|err| StartError::other(format!("bring up lo: {err}")))?;
    }
    Ok(())
}

/// The namespaces `strata exec` joins. The helper joins all but mnt and
/// forks; the new process joins mnt itself, so the helper keeps the host's
/// /proc (and its fork safety check keeps working).
const JOINED: [(&str, CloneFlags); 5] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The namespace files of a running container, opened by the CLI before it
/// forks so a failure is reported as strata's own.
pub struct NamespaceFiles {
    files: Vec<(File, CloneFlags, &'static str)>,
}

impl NamespaceFiles {
    pub fn open(pid: Pid) -> anyhow::Result<Self> {
        let files = JOINED
            .iter()
            .map(|(name, flag)| {
                let path = format!("/proc/{pid}/ns/{name}");
                let file = File::open(&path)
                    .with_context(|| format!("container process {pid} is not running ({path})"))?;
                Ok((file, *flag, *name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { files })
    }

    /// Joins all but the mount namespace. The pid namespace applies to
    /// this process's children only.
    pub fn join_all_but_mount(&self) -> Result<(), StartError> {
        self.join_where(|flag| flag != CloneFlags::CLONE_NEWNS)
    }

    /// Joins the mount namespace (root and cwd become the container's).
    /// Must run in a single-threaded process: the kernel refuses a mount
    /// namespace switch to a process that shares its file system context.
    pub fn join_mount(&self) -> Result<(), StartError> {
        self.join_where(|flag| flag == CloneFlags::CLONE_NEWNS)
    }

    fn join_where(&self, wanted: impl Fn(CloneFlags) -> bool) -> Result<(), StartError> {
        for (file, flag, name) in self.files.iter().filter(|(_, flag, _)| wanted(*flag)) {
            setns(file, *flag)
                .map_err(|errno| StartError::from_errno(&format!("setns {name}"), errno))?;
        }
        Ok(())
    }
}
