//! Creating and joining the namespaces a container lives in.
//!
//! The pid namespace and a private network namespace are made first, when
//! the monitor forks the container's first process (before the rootfs is
//! mounted), so the monitor can connect that network before it releases the
//! process (network/); the mount, uts and ipc namespaces are unshared later
//! by that process, once the monitor has made the FUSE mount, so the new
//! mount namespace's copy of the host tree holds it whatever the host's
//! mount propagation is.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;

use anyhow::Context as _;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, ForkResult, Pid};

use super::exit::StartError;
use crate::sys;

/// Forks a child that is pid 1 of a new pid namespace. The caller keeps its
/// own pid namespace for later children and threads: unshare(CLONE_NEWPID)
/// only changes where the *next* child goes, and the kernel refuses to start
/// threads while that differs from the caller's own, so we switch back at
/// once with setns.
///
/// `in_user_namespace`: the caller is a rootless monitor in a user
/// namespace of its own. It may not setns back into the host's pid
/// namespace (that takes CAP_SYS_ADMIN in the host's user namespace), so a
/// short-lived helper unshares and forks instead; see
/// [`fork_through_helper`].
///
/// `private_network`: the child also gets a new network namespace, made
/// the same way, which the caller then connects before releasing it.
pub fn fork_into_new_pid_namespace(
    in_user_namespace: bool,
    private_network: bool,
) -> anyhow::Result<ForkResult> {
    let mut flags = CloneFlags::CLONE_NEWPID;
    if private_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if in_user_namespace {
        return fork_through_helper(flags);
    }
    let own_pid = File::open("/proc/self/ns/pid").context("open /proc/self/ns/pid")?;
    let own_net = File::open("/proc/self/ns/net").context("open /proc/self/ns/net")?;
    unshare(flags).context("unshare the pid and network namespaces")?;
    let forked = sys::fork();
    if let Ok(ForkResult::Parent { .. }) | Err(_) = forked {
        setns(&own_pid, CloneFlags::CLONE_NEWPID).context("return to our own pid namespace")?;
        if private_network {
            setns(&own_net, CloneFlags::CLONE_NEWNET)
                .context("return to our own network namespace")?;
        }
    }
    forked
}

/// The helper's way: we become a child subreaper, fork a helper that
/// unshares the pid namespace (and the network namespace, in `flags`),
/// forks pid 1, reports pid 1's pid (as our pid
/// namespace sees it) and exits. Orphaned, pid 1 is reparented to us, so we
/// wait for it and get its exit status as if we had forked it. Our own
/// `pid_for_children` never changes, so threads (FUSE) stay possible.
///
/// The child must not set its parent-death signal before the monitor has
/// released it: until the helper is gone, "parent" means the helper.
fn fork_through_helper(flags: CloneFlags) -> anyhow::Result<ForkResult> {
    prctl::set_child_subreaper(true).context("become a child subreaper")?;
    let (pid_read, pid_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    match sys::fork().context("fork the pid namespace helper")? {
        ForkResult::Child => {
            drop(pid_read);
            let report = match unshare(flags) {
                Err(errno) => -(errno as i32),
                Ok(()) => match sys::fork() {
                    Ok(ForkResult::Child) => {
                        drop(pid_write);
                        return Ok(ForkResult::Child);
                    }
                    Ok(ForkResult::Parent { child }) => child.as_raw(),
                    Err(_) => -(Errno::EAGAIN as i32),
                },
            };
            let _ = File::from(pid_write).write_all(&report.to_be_bytes());
            sys::exit_immediately(0)
        }
        ForkResult::Parent { child: helper } => {
            drop(pid_write);
            let mut bytes = [0u8; 4];
            let read = File::from(pid_read).read_exact(&mut bytes);
            // The helper exits at once; reaping it makes pid 1 our child.
            let _ = waitpid(helper, None);
            read.context("the pid namespace helper died")?;
            match i32::from_be_bytes(bytes) {
                pid if pid > 0 => Ok(ForkResult::Parent {
                    child: Pid::from_raw(pid),
                }),
                errno => Err(Errno::from_raw(-errno)).context("unshare the pid namespace"),
            }
        }
    }
}

/// The namespaces the container's first process unshares for itself.
pub fn unshare_container_namespaces() -> Result<(), StartError> {
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    unshare(flags).map_err(|errno| StartError::from_errno("unshare namespaces", errno))
}

/// Sets the hostname in the container's uts namespace, and brings `lo` up in
/// its own network namespace (every network but `host`).
pub fn configure(hostname: &str, private_network: bool) -> Result<(), StartError> {
    if !hostname.is_empty() {
        nix::unistd::sethostname(hostname)
            .map_err(|errno| StartError::from_errno("sethostname", errno))?;
    }
    if private_network {
        sys::bring_up_loopback().map_err(|err| StartError::other(format!("bring up lo: {err}")))?;
    }
    Ok(())
}

/// The namespaces `strata exec` joins, in order. The helper joins user,
/// ipc, uts and net; the joiner it forks joins cgroup, pid and mnt and
/// forks the process, born in all of them (see exec.rs), so the helper
/// keeps the host's /proc (and its fork safety check keeps working). A rootless
/// container's user namespace comes first: it grants the capabilities the
/// other joins need. A namespace the caller is already in is skipped (the
/// host network; the host user namespace of a root container), since
/// setns into one's own user namespace is refused, and into a host
/// namespace from a user namespace is not allowed.
const JOINED: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
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
        let mut files = Vec::new();
        for (name, flag) in JOINED {
            let path = format!("/proc/{pid}/ns/{name}");
            let file = File::open(&path)
                .with_context(|| format!("container process {pid} is not running ({path})"))?;
            if !is_own_namespace(&file, name)? {
                files.push((file, flag, name));
            }
        }
        Ok(Self { files })
    }

    /// Joins the user, ipc, uts and network namespaces: the exec helper's
    /// part, which keeps the host's /proc and cgroups.
    pub fn join_for_helper(&self) -> Result<(), StartError> {
        self.join_where(|flag| !Self::joined_by_the_joiner(flag))
    }

    /// Joins the cgroup namespace (the joiner has joined the container's
    /// cgroup before: from inside the namespace, v2 refuses the move), the
    /// pid namespace (for the joiner's children) and the mount namespace
    /// (root and cwd become the container's). Must run in a
    /// single-threaded process: the kernel refuses a mount namespace switch
    /// to a process that shares its file system context.
    pub fn join_for_process(&self) -> Result<(), StartError> {
        self.join_where(Self::joined_by_the_joiner)
    }

    fn joined_by_the_joiner(flag: CloneFlags) -> bool {
        [
            CloneFlags::CLONE_NEWNS,
            CloneFlags::CLONE_NEWCGROUP,
            CloneFlags::CLONE_NEWPID,
        ]
        .contains(&flag)
    }

    fn join_where(&self, wanted: impl Fn(CloneFlags) -> bool) -> Result<(), StartError> {
        for (file, flag, name) in self.files.iter().filter(|(_, flag, _)| wanted(*flag)) {
            setns(file, *flag)
                .map_err(|errno| StartError::from_errno(&format!("setns {name}"), errno))?;
        }
        Ok(())
    }
}

/// Moves this process into a mount namespace of its own, where what it
/// mounts reaches no other namespace and goes when the process does, even
/// when it is killed (a mount in the host's namespace would stay behind,
/// its server dead). The host's later mounts still arrive (a slave). Needs
/// root (or root of a user namespace) and a process with one thread.
pub fn private_mount_namespace() -> anyhow::Result<()> {
    use nix::mount::MsFlags;
    unshare(CloneFlags::CLONE_NEWNS).context("unshare the mount namespace")?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("make the new mount namespace a slave of the host's")
}

/// `syncfs` of a running container's root filesystem, so pages it wrote
/// through mmap reach the upper. A rootless container's FUSE mount admits
/// only processes of its user namespace, so this joins that namespace
/// first: call it in a process of its own, with one thread (setns into a
/// user namespace requires it); `strata commit` runs it as `__flush`.
pub fn sync_root_filesystem(pid: Pid) -> anyhow::Result<()> {
    let dir = open_root_filesystem(pid)?;
    nix::unistd::syncfs(&dir).with_context(|| format!("syncfs /proc/{pid}/root"))
}

/// The root directory of the running container whose init is `pid`, as
/// its processes see it (its volumes and /proc mounted in it), opened
/// from inside its user namespace, which this joins when it is not ours:
/// a rootless container's FUSE mount admits only processes of its user
/// namespace. Call it in a process with one thread (setns into a user
/// namespace requires it).
pub fn open_root_filesystem(pid: Pid) -> anyhow::Result<File> {
    let user = format!("/proc/{pid}/ns/user");
    let ns =
        File::open(&user).with_context(|| format!("container process {pid} is not running"))?;
    if !is_own_namespace(&ns, "user")? {
        setns(&ns, CloneFlags::CLONE_NEWUSER).context("join the container's user namespace")?;
    }
    let root = format!("/proc/{pid}/root");
    File::open(&root).with_context(|| format!("open {root}"))
}

/// Whether `file` (a /proc/PID/ns/NAME) is the namespace we are in.
fn is_own_namespace(file: &File, name: &str) -> anyhow::Result<bool> {
    let theirs = file.metadata().context("stat a container namespace")?;
    let own_path = format!("/proc/self/ns/{name}");
    let ours = std::fs::metadata(&own_path).with_context(|| format!("stat {own_path}"))?;
    Ok(theirs.dev() == ours.dev() && theirs.ino() == ours.ino())
}
