//! `strata __launch ID`: start a recorded container. `start` re-executes
//! into this, and `run` calls it once a forked child has recorded the
//! container, so the monitor is forked from a process with one thread;
//! nothing here opens the index before `container::launch`.

use super::Ctx;
use crate::cli::LaunchArgs;
use crate::container::{self, EtcFiles, Outcome, Spec};
use crate::container_id::ContainerId;
use crate::hooks::ContainerHooks;
use crate::stack::ContainerPaths;
use anyhow::{Context, Result};
use layerdb::ContainerRecord;

pub fn run(ctx: &Ctx, args: LaunchArgs) -> Result<i32> {
    let paths = ContainerPaths::new(&ctx.root, &args.id);
    // `run` and `start -a`: the turn `start` takes for a detached start,
    // held by the monitor until it records the container running (see
    // `ContainerHooks::holding_turn`), and taken before the record is
    // read, as a removal that held it took the record away. Without it
    // two starts at once, one attached, both launched, and the loser's
    // failure path recorded an exit over the winner's state, unmounted its
    // tree and emptied the cgroup both used; and a `container prune`
    // removed a new container while `run` launched it (both found by a
    // review of concurrent commands).
    let turn = match args.turn {
        true => Some(super::start::turn_lock(
            &paths,
            args.id.as_str(),
            crate::file_lock::exclusive_inherited,
        )?),
        false => None,
    };
    // The record file, not the index: nothing here opens the index before
    // `container::launch` forks.
    let rec = layerdb::container_records::read_record(&ctx.root, args.id.as_str())?
        .with_context(|| format!("No such container: {}", args.id))?;
    if turn.is_some() && crate::run_state::read(&paths).is_some_and(|s| crate::liveness::runs(&s)) {
        // Started by another while this one waited, as `start` finds it.
        outln!("{}", rec.name)?;
        return Ok(0);
    }
    if !args.kept {
        // A start by hand: the restart policy applies again, counted
        // from zero, as docker's start resets it.
        let _ = std::fs::remove_file(paths.stopped_by_hand());
        let _ = std::fs::remove_file(paths.restart_count());
        if crate::restart_policy::restarts(&rec.restart) {
            start_keeper(ctx, &args.id, Some(crate::clock::now_ns()))?;
        }
    }
    if crate::health::Check::of(&rec.config).is_some() {
        // The last run's health goes: this one starts over.
        let _ = std::fs::remove_file(paths.health());
        start_helper(ctx, "__health", &[], &args.id)?;
    }
    let spec = spec_of(&args.id, &rec, &paths);
    let hooks = Box::new(
        ContainerHooks::new(ctx.root.clone(), args.id.clone(), rec.auto_remove).holding_turn(turn),
    );
    let outcome = container::launch(&spec, hooks, args.detach);
    let code = match outcome {
        Ok(Outcome::Detached { .. }) => {
            if args.print_id {
                outln!("{}", rec.id)?;
            }
            if let Some(name) = &args.print_name {
                outln!("{name}")?;
            }
            return Ok(0);
        }
        // The monitor removed an --rm container already.
        Ok(Outcome::Exited { code }) => code,
        Err(e) => {
            eprintln!("strata: {}", crate::error_text::describe(&e));
            // The monitor did not remove an --rm container: it never ran,
            // or it was killed (its mount may be left: settled first).
            if rec.auto_remove {
                let store = ctx.reader()?;
                if let Ok(rec) = crate::liveness::container(&store, &rec.id) {
                    crate::liveness::remove(&store, &rec)?;
                    let others = crate::liveness::containers(&store)?;
                    crate::volumes::remove_anonymous(&ctx.root, &rec, &others);
                }
            }
            container::exit_code_for(&e)
        }
    };
    Ok(code)
}

/// Starts the container's restart keeper, which watches it from the end
/// of this process on; `launch_ns`, the time this process's launch began,
/// tells it whether the launch started a run.
pub(super) fn start_keeper(ctx: &Ctx, id: &ContainerId, launch_ns: Option<i64>) -> Result<()> {
    let launcher = std::process::id().to_string();
    let since = launch_ns.unwrap_or(0).to_string();
    start_helper(
        ctx,
        "__keep",
        &["--launcher", &launcher, "--since", &since],
        id,
    )
}

/// Starts one of the processes that watch the container while it runs
/// (`strata __keep`, `strata __health`), in the background. Started
/// first: the launch forks the monitor, which needs this process to have
/// one thread.
fn start_helper(ctx: &Ctx, verb: &str, flags: &[&str], id: &ContainerId) -> Result<()> {
    use std::process::Stdio;
    std::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(&ctx.root)
        .arg(verb)
        .args(flags)
        .arg(id.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting strata {verb} for the container"))?;
    Ok(())
}

/// What the container process needs, from its record.
fn spec_of(id: &ContainerId, rec: &ContainerRecord, paths: &ContainerPaths) -> Spec {
    Spec {
        id: id.clone(),
        rootfs: paths.merged(),
        args: rec.command.clone(),
        env: rec.config.env.clone(),
        cwd: rec.config.working_dir.clone(),
        user: rec.config.user.clone(),
        hostname: rec.hostname.clone(),
        tty: rec.tty,
        interactive: rec.interactive,
        network: crate::network::NetworkSpec {
            // Checked when the container was created.
            mode: crate::network::Mode::parse(&rec.network).unwrap_or_default(),
            ports: rec.net.ports.clone(),
            extra_hosts: rec.net.extra_hosts.clone(),
            dir: paths.dir.clone(),
        },
        mounts: rec.mounts.clone(),
        tmpfs: rec.tmpfs.clone(),
        init: rec.init,
        etc_files: EtcFiles {
            hosts: Some(paths.hosts()),
            hostname: Some(paths.hostname()),
            resolv_conf: Some(paths.resolv_conf()),
        },
        log_file: (rec.log_driver == layerdb::LogDriver::JsonFile).then(|| paths.log()),
        log_options: rec.log_options,
        security: rec.security.clone(),
        resources: rec.resources.clone(),
        container_dir: paths.dir.clone(),
    }
}
