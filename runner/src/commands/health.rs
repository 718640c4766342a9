//! `strata __health ID`: runs a container's health probe (`health.rs`)
//! every interval while the container runs, as docker's daemon does, and
//! keeps the result in its `health.json`. `__launch` starts one at each
//! start of a container that has a check; it waits for that start (its
//! state running, at most a minute), then probes until the monitor it
//! found exits. Each probe is an `exec` of the check's command (the
//! container's user, environment and working directory), its output
//! kept (4 KiB), killed when it outlasts the timeout.

use super::exec::{command_in, Process};
use super::Ctx;
use crate::cli::HealthArgs;
use crate::health::{Check, Health, Probe, OUTPUT_BYTES};
use crate::humanize::format_rfc3339_nano;
use crate::liveness;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use layerdb::{ContainerRecord, State};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub fn health(ctx: &Ctx, args: HealthArgs) -> Result<i32> {
    // Its own session: the terminal that ran `run` may close.
    let _ = nix::unistd::setsid();
    let paths = ContainerPaths::new(&ctx.root, &args.id);
    // The start it was made for, at most a minute away: a monitor that
    // started since the launch began (its start time is later).
    let launched = crate::clock::now_ns();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (rec, monitor_pid, started_ns) = loop {
        let rec = liveness::container_from_files(&ctx.root, args.id.as_str())?;
        match rec.state {
            State::Running {
                monitor_pid,
                started_ns,
                ..
            } if started_ns >= launched - 1_000_000_000 => break (rec, monitor_pid, started_ns),
            State::Exited { .. } | State::Created if Instant::now() > deadline => return Ok(0),
            _ if Instant::now() > deadline => return Ok(0),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let Some(check) = Check::of(&rec.config) else {
        return Ok(0);
    };
    // One prober per container: a previous start's leaves with its monitor.
    let _lock = crate::file_lock::exclusive(&paths.health_lock())?;
    let monitor =
        crate::sys::pidfd_open(Pid::from_raw(monitor_pid)).context("watch the monitor")?;
    let mut health = Health::starting();
    write(&paths, &health)?;
    loop {
        // The interval, cut short by the monitor's exit.
        let mut fds = [PollFd::new(monitor.as_fd(), PollFlags::POLLIN)];
        let wait = PollTimeout::try_from(check.interval).unwrap_or(PollTimeout::MAX);
        if poll(&mut fds, wait).unwrap_or(0) > 0 {
            return Ok(0);
        }
        // Paused: docker skips the probe.
        let rec = liveness::container_from_files(&ctx.root, args.id.as_str())?;
        match rec.state {
            State::Running { started_ns: s, .. } if s == started_ns => {}
            State::Paused { .. } => continue,
            _ => return Ok(0),
        }
        let start = crate::clock::now_ns();
        let in_start_period = start - started_ns < check.start_period.as_nanos() as i64;
        let probe = run_probe(ctx, &rec, &check, start);
        health.record(probe, in_start_period, check.retries);
        write(&paths, &health)?;
    }
}

/// One probe: the check's command in the container, its stdout and
/// stderr together, killed past the timeout (exit code -1, docker's).
fn run_probe(ctx: &Ctx, rec: &ContainerRecord, check: &Check, start: i64) -> Probe {
    let process = Process {
        command: &check.argv,
        env: &[],
        user: None,
        workdir: None,
        tty: false,
        interactive: false,
        detach: false,
    };
    let ended = |exit_code: i32, output: String| Probe {
        start: format_rfc3339_nano(start),
        end: format_rfc3339_nano(crate::clock::now_ns()),
        exit_code,
        output,
    };
    // One pipe for stdout and stderr, read here against the deadline:
    // the probe (or what it leaves running in the background) may write
    // without end, and only the first OUTPUT_BYTES are kept.
    let spawned = command_in(ctx, rec, &process).and_then(|(mut cmd, binary)| {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(write.try_clone()?))
            .stderr(Stdio::from(write))
            .spawn()
            .context("start the health check")?;
        // The command holds the pipe's write end until dropped.
        drop(cmd);
        drop(binary);
        Ok((child, read))
    });
    let (mut child, read) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => return ended(-1, crate::error_text::describe(&e)),
    };
    let mut output = Vec::with_capacity(OUTPUT_BYTES);
    let mut pipe = std::fs::File::from(read);
    let _ = nix::fcntl::fcntl(
        &pipe,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let deadline = Instant::now() + check.timeout;
    let status = loop {
        drain(&mut pipe, &mut output);
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(20u8));
            }
            _ => {
                stop_probe(&mut child);
                break None;
            }
        }
    };
    // What the probe wrote before it ended; then the pipe is closed, so
    // what it left behind gets EPIPE rather than a reader.
    drain(&mut pipe, &mut output);
    drop(pipe);
    match status {
        Some(status) => ended(
            status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output).into_owned(),
        ),
        None => ended(
            -1,
            format!(
                "Health check exceeded timeout ({})",
                crate::humanize::format_go_duration(check.timeout)
            ),
        ),
    }
}

/// Reads what the pipe holds now (a bounded amount, so a writer without
/// end cannot hold the probe past its deadline), keeping the first
/// OUTPUT_BYTES.
fn drain(pipe: &mut std::fs::File, output: &mut Vec<u8>) {
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..64 {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = OUTPUT_BYTES.saturating_sub(output.len());
                output.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Ends a probe past its timeout: SIGTERM to its `exec` client, which
/// passes it on to the probe in the container, whose helper then reaps it;
/// SIGKILL a second later if it is still there. (A SIGKILL first ended the
/// client and its helper and left the probe, killed by its parent-death
/// signal, a zombie of the container's init, one per timeout.)
fn stop_probe(child: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The container's health, if a prober has written it.
pub fn read(paths: &ContainerPaths) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(paths.health()).ok()?).ok()
}

fn write(paths: &ContainerPaths, health: &Health) -> Result<()> {
    let tmp = paths.health().with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(health)?)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, paths.health())
        .with_context(|| format!("write {}", paths.health().display()))
}
