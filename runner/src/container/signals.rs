//! Signals to a running container: `kill`, and the pause of a container
//! without a cgroup of its own (rootless on cgroup v1), which its monitor
//! makes for `commit` (see `pause.rs`).
//!
//! That pause stops every process of the container's pid namespace with
//! SIGSTOP (found by comparing /proc/*/ns/pid with the init's): it needs no
//! cgroup. The cost: a parent in the container can observe the stop
//! (waitpid with WUNTRACED), which the freezer of a container's cgroup,
//! used wherever it has one, hides.

use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Rounds of "list, stop, wait" before we give up on a container that
/// keeps forking or resuming its own processes.
const FREEZE_ROUNDS: usize = 20;
/// How long a round waits for the processes it stopped to show stopped:
/// 5 s in all, for one in the middle of a slow system call.
const ROUND_WAIT: Duration = Duration::from_millis(250);

/// Sends `signal` to the container's init (`pid` on the host).
pub fn kill(pid: i32, signal: crate::signal::Signal) -> anyhow::Result<()> {
    crate::sys::send_signal(Pid::from_raw(pid), signal.number())
        .with_context(|| format!("send {signal} to container process {pid}"))
}

/// Stops every process in the container of init `pid`, and returns once all
/// of them are stopped. Each round stops every process that /proc does
/// not show stopped, all at once, then waits for them; the next round
/// catches what was forked meanwhile, and a process that a sibling not
/// yet stopped sent SIGCONT (a SIGCONT cancels a SIGSTOP still pending,
/// too). Done when a round finds every process stopped: then none is left
/// to fork or resume another.
pub fn freeze(pid: i32) -> anyhow::Result<()> {
    for _ in 0..FREEZE_ROUNDS {
        let running: Vec<i32> = processes_in_namespace_of(pid)?
            .into_iter()
            .filter(|member| !is_stopped_or_gone(*member))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        for &member in &running {
            match signal::kill(Pid::from_raw(member), Signal::SIGSTOP) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(errno) => return Err(errno).with_context(|| format!("stop process {member}")),
            }
        }
        let deadline = Instant::now() + ROUND_WAIT;
        while !running.iter().all(|m| is_stopped_or_gone(*m)) && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
    bail!("container process {pid} kept starting or resuming processes while being paused")
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
