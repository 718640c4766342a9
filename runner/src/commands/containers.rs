//! Container lifecycle verbs: ps, rm, stop, kill, start, logs, rename,
//! prune, exec.

use super::Ctx;
use crate::cli::{ExecArgs, ExecInArgs, KillArgs, LogsArgs, PsArgs, RmArgs, StartArgs, StopArgs};
use crate::liveness;
use crate::output::{self, ContainerStatus, PsOptions, PsRow};
use crate::signal::Signal;
use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::{ContainerRecord, State};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

fn status_of(state: &State) -> ContainerStatus {
    match *state {
        State::Created => ContainerStatus::Created,
        State::Running { started_ns, .. } => ContainerStatus::Running {
            started_at: started_ns,
        },
        State::Paused { started_ns, .. } => ContainerStatus::Paused {
            started_at: started_ns,
        },
        State::Exited {
            code, finished_ns, ..
        } => ContainerStatus::Exited {
            exit_code: code,
            finished_at: finished_ns,
        },
    }
}

pub fn ps(ctx: &Ctx, args: PsArgs) -> Result<i32> {
    let store = ctx.reader()?;
    let mut recs = liveness::containers(&store)?;
    recs.retain(|c| args.all || c.state.is_running());
    recs.sort_by_key(|c| std::cmp::Reverse(c.created_ns));
    let rows: Vec<PsRow> = recs
        .iter()
        .map(|c| PsRow {
            id: c.id.clone(),
            image: c.image_ref.clone(),
            image_id: format!("{:#}", c.image),
            command: output::container_command(&c.command),
            created: c.created_ns,
            status: status_of(&c.state),
            ports: output::ports_text(&crate::network::settings_of(c).ports),
            names: vec![c.name.clone()],
        })
        .collect();
    let options = PsOptions {
        quiet: args.quiet,
        no_trunc: args.no_trunc,
    };
    print!(
        "{}",
        output::render_ps(&rows, &options, crate::clock::now_ns())
    );
    Ok(0)
}

fn signal(ctx: &Ctx, rec: &ContainerRecord, sig: Signal) -> Result<()> {
    let pid = match rec.state {
        State::Running { pid, .. } | State::Paused { pid, .. } => pid,
        _ => bail!("container {} is not running", rec.name),
    };
    crate::container::kill(pid, sig)?;
    // A container frozen for a commit (its cgroup's freezer) would only
    // die once thawed; the commit then fails, as docker's does.
    if sig == Signal::KILL {
        let dir = ContainerPaths::of(&ctx.root, rec).dir;
        crate::container::cgroup::thaw_recorded(&dir)?;
    }
    Ok(())
}

pub fn rm(ctx: &Ctx, args: RmArgs) -> Result<i32> {
    let mut failed = None;
    for name in &args.containers {
        // The store is opened per container: waiting for a monitor to record
        // an exit needs the write lock free.
        let result = (|| -> Result<()> {
            let rec = {
                let store = ctx.store_to_delete()?;
                liveness::container(&store, name)?
            };
            if rec.state.is_running() {
                if !args.force {
                    bail!("cannot remove container \"/{}\": container is running: stop the container before removing or force remove", rec.name);
                }
                signal(ctx, &rec, Signal::KILL)?;
                wait_monitor(&rec)?;
            }
            let store = ctx.store_to_delete()?;
            let rec = liveness::container(&store, &rec.id)?;
            liveness::remove(&store, &rec)?;
            Ok(())
        })();
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                failed = Some(());
            }
        }
    }
    Ok(if failed.is_some() { 1 } else { 0 })
}

/// Waits (without holding the store) for a container's monitor to exit.
fn wait_monitor(rec: &ContainerRecord) -> Result<()> {
    let (State::Running { monitor_pid, .. } | State::Paused { monitor_pid, .. }) = rec.state else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while liveness::process_alive(monitor_pid) {
        if Instant::now() >= deadline {
            bail!("container {} did not stop", rec.name);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

pub fn stop(ctx: &Ctx, args: StopArgs) -> Result<i32> {
    for name in &args.containers {
        let rec = {
            let store = ctx.store()?;
            liveness::container(&store, name)?
        };
        if rec.state.is_running() {
            let sig = Signal::for_stop(&rec.config.stop_signal)?;
            signal(ctx, &rec, sig)?;
            let (State::Running { monitor_pid, .. } | State::Paused { monitor_pid, .. }) =
                rec.state
            else {
                unreachable!("checked running above")
            };
            let deadline = Instant::now() + Duration::from_secs(args.time);
            while liveness::process_alive(monitor_pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if liveness::process_alive(monitor_pid) {
                signal(ctx, &rec, Signal::KILL)?;
                wait_monitor(&rec)?;
            }
        }
        println!("{name}");
    }
    Ok(0)
}

pub fn kill(ctx: &Ctx, args: KillArgs) -> Result<i32> {
    let sig: Signal = args.signal.parse()?;
    let store = ctx.reader()?;
    for name in &args.containers {
        let rec = liveness::container(&store, name)?;
        if !rec.state.can_kill() {
            bail!(
                "cannot kill container: {name}: container {} is not running",
                rec.id
            );
        }
        signal(ctx, &rec, sig)?;
        println!("{name}");
    }
    Ok(0)
}

pub fn start(ctx: &Ctx, args: StartArgs) -> Result<i32> {
    if args.containers.len() > 1 && (args.attach || args.interactive) {
        bail!("you cannot start and attach multiple containers at once");
    }
    for name in &args.containers {
        let rec = {
            let store = ctx.store()?;
            liveness::container(&store, name)?
        };
        if rec.state.is_running() {
            println!("{name}");
            continue;
        }
        let mut cmd = super::run::relaunch(ctx, &rec.id);
        if !(args.attach || args.interactive) {
            cmd.arg("--detach").arg("--print-name").arg(name);
        }
        if args.containers.len() == 1 {
            return Err(cmd.exec()).context("re-executing strata to start the container");
        }
        let status = cmd.status()?;
        if !status.success() {
            bail!("starting {name} failed");
        }
    }
    Ok(0)
}

pub fn logs(ctx: &Ctx, args: LogsArgs) -> Result<i32> {
    use std::io::{Read, Seek, Write};
    let (rec, log) = {
        let store = ctx.reader()?;
        let rec = liveness::container(&store, &args.container)?;
        let log = ContainerPaths::of(&ctx.root, &rec).log();
        (rec, log)
    };
    let mut out = std::io::stdout().lock();
    let mut file = match std::fs::File::open(&log) {
        Ok(f) => f,
        Err(_) if !args.follow => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("open {}", log.display())),
    };
    std::io::copy(&mut file, &mut out)?;
    out.flush()?;
    if !args.follow {
        return Ok(0);
    }
    let monitor = match rec.state {
        State::Running { monitor_pid, .. } | State::Paused { monitor_pid, .. } => monitor_pid,
        _ => return Ok(0),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let alive = liveness::process_alive(monitor);
        let pos = file.stream_position()?;
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            out.flush()?;
            continue;
        }
        if !alive {
            return Ok(0);
        }
        file.seek(std::io::SeekFrom::Start(pos))?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn rename(ctx: &Ctx, container: &str, new_name: &str) -> Result<i32> {
    if !crate::names::is_valid_name(new_name) {
        bail!("{}", crate::names::invalid_name_message(new_name));
    }
    let store = ctx.store()?;
    let rec = store.container(container)?;
    store.rename_container(&rec, new_name)?;
    Ok(0)
}

pub fn prune(ctx: &Ctx) -> Result<i32> {
    let store = ctx.store()?;
    println!("Deleted Containers:");
    for rec in liveness::containers(&store)? {
        if rec.state.can_remove() {
            liveness::remove(&store, &rec)?;
            println!("{}", rec.id);
        }
    }
    println!();
    Ok(0)
}

/// `strata exec`: finds the container, then re-executes into `__exec`,
/// which joins its namespaces from a process with one thread.
pub fn exec(ctx: &Ctx, args: ExecArgs) -> Result<i32> {
    let env = crate::environment::from_flags(&args.env)?;
    let rec = {
        let store = ctx.reader()?;
        liveness::container(&store, &args.container)?
    };
    let State::Running { pid, .. } = rec.state else {
        bail!("container {} is not running", rec.id);
    };
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("--root")
        .arg(&ctx.root)
        .arg("__exec")
        .arg("--pid")
        .arg(pid.to_string());
    if args.tty {
        cmd.arg("--tty");
    }
    if args.interactive {
        cmd.arg("--interactive");
    }
    cmd.arg("--user")
        .arg(args.user.as_deref().unwrap_or(&rec.config.user));
    cmd.arg("--workdir")
        .arg(args.workdir.as_deref().unwrap_or(&rec.config.working_dir));
    for e in rec.config.env.iter().chain(&env) {
        cmd.arg("--env").arg(e);
    }
    cmd.arg("--security")
        .arg(serde_json::to_string(&rec.security)?);
    cmd.arg("--").args(&args.command);
    Err(cmd.exec()).context("re-executing strata to join the container")
}

pub fn exec_in(args: ExecInArgs) -> Result<i32> {
    let security: layerdb::SecurityOptions =
        serde_json::from_str(&args.security).context("--security")?;
    let spec = crate::container::ExecSpec {
        args: &args.command,
        env: &args.env,
        cwd: &args.workdir,
        user: &args.user,
        tty: args.tty,
        interactive: args.interactive,
        security: &security,
    };
    match crate::container::exec_in(args.pid, spec) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("strata: {e:#}");
            Ok(crate::container::exit_code_for(&e))
        }
    }
}
