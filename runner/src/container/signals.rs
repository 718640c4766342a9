//! Signals to a running container: `kill`, and the pause of a container
//! without a cgroup of its own (rootless on cgroup v1), which its monitor
//! makes for `commit` (see `pause.rs`).
//!
//! That pause stops every process of the container's pid namespace with
//! SIGSTOP (found by comparing /proc/*/ns/pid with the init's): it needs no
//! cgroup. The cost: a parent in the container can observe the stop
//! (waitpid with WUNTRACED), which the freezer of a container's cgroup,
//! used wherever it has one, hides.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Rounds of "list, stop, wait" before we give up on a container that
/// keeps forking.
const FREEZE_ROUNDS: usize = 20;
/// How long one process may take to reach the stopped state.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `signal` to the container's init (`pid` on the host).
pub fn kill(pid: i32, signal: crate::signal::Signal) -> anyhow::Result<()> {
    crate::sys::send_signal(Pid::from_raw(pid), signal.number())
        .with_context(|| format!("send {signal} to container process {pid}"))
}

/// Stops every process in the container of init `pid`, and returns once all
/// of them are stopped. New processes forked meanwhile are caught by
/// listing again until a round finds nothing left running.
pub fn freeze(pid: i32) -> anyhow::Result<()> {
    let mut stopped: BTreeSet<i32> = BTreeSet::new();
    for _ in 0..FREEZE_ROUNDS {
        let running: Vec<i32> = processes_in_namespace_of(pid)?
            .into_iter()
            .filter(|member| !stopped.contains(member))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        for member in running {
            stop(member)?;
            stopped.insert(member);
        }
    }
    bail!("container process {pid} kept starting processes while being paused")
}

/// Resumes every process in the container of init `pid`.
pub fn thaw(pid: i32) -> anyhow::Result<()> {
    for member in processes_in_namespace_of(pid)? {
        match signal::kill(Pid::from_raw(member), Signal::SIGCONT) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => return Err(errno).with_context(|| format!("resume process {member}")),
        }
    }
    Ok(())
}

/// SIGSTOP and wait until /proc shows the process stopped (or gone).
fn stop(member: i32) -> anyhow::Result<()> {
    match signal::kill(Pid::from_raw(member), Signal::SIGSTOP) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(()),
        Err(errno) => return Err(errno).with_context(|| format!("stop process {member}")),
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !is_stopped_or_gone(member) {
        if Instant::now() > deadline {
            bail!("process {member} did not stop within {STOP_TIMEOUT:?}");
        }
        std::thread::yield_now();
    }
    Ok(())
}

fn is_stopped_or_gone(member: i32) -> bool {
    matches!(
        crate::liveness::process_state(member),
        None | Some('T' | 't' | 'Z' | 'X')
    )
}

/// Host pids whose pid namespace is the one `pid` lives in.
fn processes_in_namespace_of(pid: i32) -> anyhow::Result<Vec<i32>> {
    let namespace =
        namespace_id(pid).with_context(|| format!("container process {pid} is not running"))?;
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").context("list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(candidate) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        // A process may exit between listing and stat: then it is no member.
        if namespace_id(candidate).is_ok_and(|id| id == namespace) {
            members.push(candidate);
        }
    }
    Ok(members)
}

fn namespace_id(pid: i32) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(format!("/proc/{pid}/ns/pid"))?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_in_our_pid_namespace() {
        let own = std::process::id() as i32;
        let members = processes_in_namespace_of(own).expect("list namespace members");
        assert!(members.contains(&own));
    }
}
