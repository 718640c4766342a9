//! The last steps of the process that becomes the user's command, shared by
//! `run` (after pivot_root) and `exec` (after setns): user, environment,
//! working directory, PATH lookup, capabilities, no_new_privs, the seccomp
//! filter (loaded last, so that it judges the user's command and as few
//! of our own syscalls as possible), execve. Also the pipe protocol that
//! carries a [`StartError`] back to the parent: the write end is
//! close-on-exec, so EOF with no bytes means the exec succeeded.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{chdir, execve, setgid, setgroups, setuid, Gid, Uid};

use super::capabilities;
use super::exit::{errno_text, kind_of_errno, StartError};
use super::lookup::{probe_path, resolve_command};
use super::security::Prepared;
use super::spec::final_env;
use super::user::{self, Ids};
use crate::sys;

/// What the user's process runs with, before defaults are applied.
#[derive(Debug, Clone)]
pub struct ProcessSpec<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    /// Whether a missing `cwd` is made: docker's `run -w` makes it, its
    /// `exec -w` fails (runc chdirs only), so an exec never adds a
    /// directory a commit would keep.
    pub make_cwd: bool,
    /// Whether the root filesystem is made read-only once `cwd` is made
    /// (`run --read-only`; docker makes a missing working directory before
    /// it mounts the root read-only).
    pub read_only_root: bool,
    /// Whether this process stays as the container's init and the command
    /// runs as its child (`run --init`).
    pub init: bool,
    pub user: &'a str,
    pub hostname: String,
    pub tty: bool,
    pub security: &'a Prepared,
    pub ulimits: &'a [layerdb::Ulimit],
}

/// Runs the steps and execs; returns only the error that stopped it.
/// `parent_alive` is a pipe whose write end the parent holds until it has
/// seen the result: a hang-up on it means the parent died, and we must not
/// start a process nobody supervises.
pub fn exec(process: &ProcessSpec<'_>, parent_alive: Option<BorrowedFd<'_>>) -> StartError {
    match prepare(process, || arm_parent_death_signal(parent_alive)) {
        Ok(ready) => exec_ready(&ready),
        Err(err) => err,
    }
}

/// The user's command, ready to exec: this process holds no more than
/// the container's processes do.
pub struct Ready {
    command: String,
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
    init: bool,
    tty: bool,
}

/// Every step before the exec, in order, ending with the process's final
/// user, capabilities, no_new_privs and seccomp filter; `before_filter`
/// runs just before the filter is loaded. `exec`'s joiner calls it before
/// it forks the process into the container's pid namespace, so that the
/// process is never there with the host's privileges: with them, a
/// container given CAP_SYS_PTRACE attached to it and ran code as the
/// host's root (found by a review).
pub fn prepare(
    process: &ProcessSpec<'_>,
    before_filter: impl FnOnce() -> Result<(), StartError>,
) -> Result<Ready, StartError> {
    let command = process
        .args
        .first()
        .ok_or_else(|| StartError::other("no command specified"))?;
    let ids = resolve_user(process.user)?;
    let env = final_env(process.env, &ids.home, &process.hostname, process.tty);
    let cwd = if process.cwd.is_empty() {
        "/"
    } else {
        process.cwd
    };
    if process.make_cwd {
        create_working_dir(cwd)?;
    }
    if process.read_only_root {
        super::rootfs::make_root_read_only()?;
    }
    let security = process.security;
    // While the capability to raise a hard limit is still held.
    super::ulimits::apply(process.ulimits)?;
    capabilities::limit_bounding(&security.capabilities)?;
    let kept = capabilities::final_set(&security.capabilities, ids.uid == 0)?;
    switch_user(&ids)?;
    capabilities::raise_for_setup()?;
    chdir(cwd).map_err(|errno| {
        StartError::new(
            kind_of_errno(errno),
            format!(
                "chdir to cwd ({cwd:?}) set in config.json failed: {}",
                errno_text(errno)
            ),
        )
    })?;
    // A working directory reached through a descriptor held from outside
    // the container is outside its root, and the kernel says so (runc's
    // check against CVE-2024-21626); none should be left by now.
    if nix::unistd::getcwd().is_err() {
        return Err(StartError::other(
            "current working directory is outside of container mount namespace root -- possible container breakout detected",
        ));
    }
    let path = resolve_command(
        command,
        crate::environment::lookup(&env, "PATH").unwrap_or(""),
        probe_path,
    )?;
    let ready = Ready {
        command: command.clone(),
        path: c_string(path.as_os_str().as_encoded_bytes())?,
        args: c_strings(process.args)?,
        env: c_strings(&env)?,
        init: process.init,
        tty: process.tty,
    };
    before_filter()?;
    sys::reset_signal_handling().map_err(|errno| StartError::from_errno("reset signals", errno))?;
    sys::cloexec_from(3)
        .map_err(|err| StartError::other(format!("close inherited files: {err}")))?;
    if security.no_new_privileges {
        prctl::set_no_new_privs()
            .map_err(|errno| StartError::from_errno("set no_new_privs", errno))?;
    }
    // Loading needs CAP_SYS_ADMIN (raised above) or no_new_privs; from
    // here on only capget, capset and execve (and for exec's process a
    // prctl, a poll and its terminal's calls), which a profile must allow.
    if let Some(program) = &security.filter {
        sys::load_seccomp_program(program)
            .map_err(|err| StartError::other(format!("load the seccomp filter: {err}")))?;
    }
    capabilities::set_final(&kept)?;
    Ok(ready)
}

/// Execs the command [`prepare`] readied (its `--init` first); returns
/// only the error that stopped it.
pub fn exec_ready(ready: &Ready) -> StartError {
    if ready.init {
        if let Err(err) = super::init::start(ready.tty) {
            return err;
        }
    }
    match execve(&ready.path, &ready.args, &ready.env) {
        Err(errno) => exec_error(&ready.command, errno),
        Ok(never) => match never {},
    }
}

fn resolve_user(spec: &str) -> Result<Ids, StartError> {
    let passwd = user::read_account_file("/etc/passwd", true);
    let group = user::read_account_file("/etc/group", true);
    user::resolve(spec, &passwd, &group)
}

/// docker -w creates a missing working directory (owned by root, before the
/// switch to the user). This runs inside the container's root, so a
/// symlink on the way resolves within it; one whose target is missing has
/// its target made, as runc does (`/s` -> `/made/here` and `-w /s/wd`
/// make `/made/here/wd`), where `create_dir_all` stopped at the link.
fn create_working_dir(cwd: &str) -> Result<(), StartError> {
    use std::path::{Component, Path, PathBuf};
    let failed = |err: std::io::Error| StartError::other(format!("mkdir {cwd}: {err}"));
    let mut at = PathBuf::from("/");
    let mut left: Vec<PathBuf> = vec![PathBuf::from(cwd)];
    let mut links = 0;
    while let Some(path) = left.pop() {
        let mut parts = path.components();
        let Some(part) = parts.next() else {
            continue;
        };
        let rest = parts.as_path().to_path_buf();
        if !rest.as_os_str().is_empty() {
            left.push(rest);
        }
        let next = match part {
            Component::RootDir => PathBuf::from("/"),
            Component::CurDir => continue,
            Component::ParentDir => at.parent().unwrap_or(Path::new("/")).to_path_buf(),
            Component::Normal(name) => at.join(name),
            Component::Prefix(_) => continue,
        };
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(failed(std::io::Error::from_raw_os_error(libc::ELOOP)));
                }
                // Its target is walked in its place, from where it is.
                left.push(std::fs::read_link(&next).map_err(failed)?);
                continue;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&next).map_err(failed)?;
            }
            Err(e) => return Err(failed(e)),
        }
        at = next;
    }
    Ok(())
}

/// Groups first: after setuid to a non-root user we may no longer change them.
/// In a rootless container with a single id, setgroups(2) is denied (the
/// kernel's condition for that mapping): with no groups wanted we keep the
/// ones we have, which the container sees as nogroup anyway. (Told by the
/// call's EPERM, not by /proc/self/setgroups: exec's joiner runs this in
/// the container's mount namespace, whose /proc does not show it.)
fn switch_user(ids: &Ids) -> Result<(), StartError> {
    let groups: Vec<Gid> = ids.groups.iter().copied().map(Gid::from_raw).collect();
    match setgroups(&groups) {
        Err(Errno::EPERM) if groups.is_empty() => {}
        set => set.map_err(|errno| StartError::from_errno("setgroups", errno))?,
    }
    setgid(Gid::from_raw(ids.gid)).map_err(|errno| StartError::from_errno("setgid", errno))?;
    setuid(Uid::from_raw(ids.uid)).map_err(|errno| StartError::from_errno("setuid", errno))
}

/// The parent-death signal is cleared by a credential change, so it is set
/// (again) after switch_user; then we check the parent did not die before it
/// was armed.
pub fn arm_parent_death_signal(parent_alive: Option<BorrowedFd<'_>>) -> Result<(), StartError> {
    prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|errno| StartError::from_errno("set parent death signal", errno))?;
    let Some(fd) = parent_alive else {
        return Ok(());
    };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::ZERO)
        .map_err(|errno| StartError::from_errno("poll parent", errno))?;
    let hung_up = ready > 0
        && fds[0]
            .revents()
            .is_some_and(|events| events.contains(PollFlags::POLLHUP));
    if hung_up {
        return Err(StartError::other(
            "the monitor exited before the container started",
        ));
    }
    Ok(())
}

fn exec_error(command: &str, errno: Errno) -> StartError {
    StartError::new(
        kind_of_errno(errno),
        format!("exec: {command:?}: {}", errno_text(errno)),
    )
}

fn c_string(bytes: &[u8]) -> Result<CString, StartError> {
    CString::new(bytes)
        .map_err(|_| StartError::other("argument or environment contains a NUL byte"))
}

fn c_strings(items: &[String]) -> Result<Vec<CString>, StartError> {
    items.iter().map(|item| c_string(item.as_bytes())).collect()
}

/// Sends `err` to the parent (child side of the error pipe).
pub fn send_start_error(pipe: OwnedFd, err: &StartError) {
    let mut file = File::from(pipe);
    // If the parent is gone there is nobody to tell; the exit code remains.
    if let Ok(json) = serde_json::to_vec(err) {
        let _ = file.write_all(&json);
    }
}

/// Waits for the child's exec: EOF with no bytes means it succeeded.
pub fn receive_start_result(pipe: OwnedFd) -> Result<(), StartError> {
    let mut bytes = Vec::new();
    File::from(pipe)
        .read_to_end(&mut bytes)
        .map_err(|err| StartError::other(format!("read start result: {err}")))?;
    if bytes.is_empty() {
        return Ok(());
    }
    Err(serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| StartError::other(String::from_utf8_lossy(&bytes).into_owned())))
}

/// Reads the one "go" byte the monitor writes once the rootfs is mounted.
pub fn wait_for_go(pipe: &OwnedFd) -> Result<(), StartError> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(pipe.as_fd(), &mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => {
                return Err(StartError::other(
                    "the monitor exited before the container started",
                ))
            }
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(StartError::from_errno("wait for the monitor", errno)),
        }
    }
}
