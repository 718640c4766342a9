//! `strata exec`, and `__exec`, the re-executed process that joins the
//! container's namespaces.

use super::Ctx;
use crate::cli::{ExecArgs, ExecInArgs};
use anyhow::{bail, Context, Result};
use layerdb::{ContainerRecord, State};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

/// `strata exec`: finds the container, then re-executes into `__exec`,
/// which joins its namespaces from a process with one thread.
pub fn exec(ctx: &Ctx, args: ExecArgs) -> Result<i32> {
    if !args.detach {
        super::check_tty(args.interactive, args.tty)?;
    }
    if let Some(w) = &args.workdir {
        super::run::check_workdir(w)?;
    }
    let env = crate::environment::from_files_and_flags(&args.env_file, &args.env)?;
    let rec = ctx.container(&args.container)?;
    let process = Process {
        command: &args.command,
        env: &env,
        user: args.user.as_deref(),
        workdir: args.workdir.as_deref(),
        tty: args.tty,
        interactive: args.interactive,
        detach: args.detach,
    };
    let (mut cmd, _binary) = command_in(ctx, &rec, &process)?;
    Err(cmd.exec()).context("re-executing strata to join the container")
}

/// A process to run in a container: its command, and what it changes
/// of the container's config (env added; user and workdir replaced).
pub(super) struct Process<'a> {
    pub command: &'a [String],
    pub env: &'a [String],
    pub user: Option<&'a str>,
    pub workdir: Option<&'a str>,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
}

/// Where `exec` tells `__exec` when the container's init started (see
/// `container::exec_in`).
const PID_START: &str = "STRATA_EXEC_PID_START";

/// The `__exec` command line that runs `process` in the running
/// container `rec`, and the open file of the binary it runs from, which
/// must stay open until the command has started.
pub(super) fn command_in(
    ctx: &Ctx,
    rec: &ContainerRecord,
    process: &Process<'_>,
) -> Result<(std::process::Command, std::fs::File)> {
    if let State::Paused { .. } = rec.state {
        bail!(
            "Container {} is paused, unpause the container before exec",
            rec.id
        );
    }
    let State::Running {
        pid, monitor_pid, ..
    } = rec.state
    else {
        bail!("container {} is not running", rec.id);
    };
    let binary = monitor_binary(monitor_pid, pid, &rec.id)?;
    // The init as checked just now, by its start too: `__exec` opens its
    // namespaces by pid, which names another process once reused.
    let pid_start = layerdb::pins::process_start(pid).unwrap_or(0);
    let mut cmd = std::process::Command::new(format!("/proc/self/fd/{}", binary.as_raw_fd()));
    // None of the caller's environment: the process it forks into the
    // container is strata's binary until its exec, whose environment a
    // container given CAP_SYS_PTRACE could read (found by a review).
    cmd.env_clear();
    if let Some(log) = std::env::var_os("STRATA_LOG") {
        cmd.env("STRATA_LOG", log);
    }
    // In the environment, not an argument: the binary may be a monitor's
    // older one, whose `__exec` took an unknown option for the start of
    // the command (found by a review: it ran `--pid-start` from the
    // image, with none of the container's user, capabilities or filter).
    cmd.env(PID_START, pid_start.to_string());
    cmd.arg0("strata")
        .arg("--root")
        .arg(&ctx.root)
        .arg("__exec")
        .arg("--pid")
        .arg(pid.to_string());
    if process.tty {
        cmd.arg("--tty");
    }
    if process.interactive {
        cmd.arg("--interactive");
    }
    if process.detach {
        cmd.arg("--detach");
    }
    cmd.arg("--user")
        .arg(process.user.unwrap_or(&rec.config.user));
    cmd.arg("--workdir")
        .arg(process.workdir.unwrap_or(&rec.config.working_dir));
    for e in rec.config.env.iter().chain(process.env) {
        cmd.arg("--env").arg(e);
    }
    cmd.arg("--security")
        .arg(serde_json::to_string(&rec.security)?);
    cmd.arg("--ulimits")
        .arg(serde_json::to_string(&rec.resources.ulimits)?);
    cmd.arg("--").args(process.command);
    Ok((cmd, binary))
}

/// The file of the binary the container's monitor runs, which `__exec`
/// runs from. A command run in the container as `#!/proc/self/exe` runs
/// the binary that exec'd it, and the container's root can then open that
/// file through /proc and write it once nothing runs it (CVE-2019-5736's
/// pattern). The monitor's file cannot be opened for writing while the
/// monitor runs it (ETXTBSY), and no process of the container outlives the
/// monitor; another strata binary (a second install, or this one replaced
/// while the container ran) would be writable as soon as its exec ended.
/// Once the file is open, the container's init is checked to be the
/// monitor's child still, so that a pid reused since cannot hand over
/// another program.
fn monitor_binary(monitor_pid: i32, init_pid: i32, id: &str) -> Result<std::fs::File> {
    let gone = || {
        anyhow::anyhow!("container {id} is not running (its monitor, pid {monitor_pid}, is gone)")
    };
    let exe = std::fs::File::open(format!("/proc/{monitor_pid}/exe")).map_err(|_| gone())?;
    if !crate::liveness::is_child_of(init_pid, monitor_pid) {
        return Err(gone());
    }
    Ok(exe)
}

pub fn exec_in(args: ExecInArgs) -> Result<i32> {
    // Its command line carries the container's `-e` values, in view of
    // every host user for as long as the exec (or a health check every
    // interval) runs: blanked, as the monitor's are.
    crate::sys::hide_arguments();
    let security: layerdb::SecurityOptions =
        serde_json::from_str(&args.security).context("--security")?;
    let ulimits: Vec<layerdb::Ulimit> = serde_json::from_str(&args.ulimits).context("--ulimits")?;
    let spec = crate::container::ExecSpec {
        args: &args.command,
        env: &args.env,
        cwd: &args.workdir,
        user: &args.user,
        tty: args.tty,
        interactive: args.interactive,
        detach: args.detach,
        security: &security,
        ulimits: &ulimits,
    };
    let pid_start = std::env::var(PID_START)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match crate::container::exec_in((args.pid, pid_start), spec) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("strata: {}", crate::error_text::describe(&e));
            Ok(crate::container::exit_code_for(&e))
        }
    }
}
