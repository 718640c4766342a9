//! `strata update`: changes a container's limits (`--memory`,
//! `--memory-swap`, `--cpus`, `--pids-limit`) and restart policy, as
//! docker's does: in its record for its next starts, and at once in a
//! running container's cgroup (v2; on v1 at its next start). A policy
//! that now restarts gets a running container a keeper, as a start by
//! hand would.

use super::Ctx;
use crate::cli::UpdateArgs;
use crate::container::cgroup::{self, ContainerCgroup};
use anyhow::{bail, Context, Result};
use layerdb::State;

pub fn update(ctx: &Ctx, args: UpdateArgs) -> Result<i32> {
    let restart = args
        .restart
        .as_deref()
        .map(crate::restart_policy::parse)
        .transpose()?;
    let given = [
        &args.memory,
        &args.memory_swap,
        &args.cpus,
        &args.pids_limit,
    ];
    if restart.is_none() && given.iter().all(|v| v.is_none()) {
        bail!("you must provide one or more flags when using this command");
    }
    for name in &args.containers {
        let rec = ctx.container(name)?;
        if rec.auto_remove
            && restart
                .as_ref()
                .is_some_and(crate::restart_policy::restarts)
        {
            bail!("Cannot update container {}: restart policy cannot be updated because AutoRemove is enabled for the container", rec.id);
        }
        let mut resources = rec.resources.clone();
        if let Some(m) = &args.memory {
            resources.memory = cgroup::parse_memory(m)?;
        }
        if let Some(s) = &args.memory_swap {
            resources.memory_swap = cgroup::parse_memory_swap(s)?;
        }
        if let Some(c) = &args.cpus {
            resources.nano_cpus = cgroup::parse_cpus(c)?;
        }
        if let Some(p) = &args.pids_limit {
            resources.pids_limit = cgroup::parse_pids_limit(p)?;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        cgroup::validate(&resources, cpus)?;
        // The running cgroup first: a limit the kernel refuses (memory
        // below what the container uses) leaves the record as it was.
        let limits_given = given.iter().any(|v| v.is_some());
        if let (true, State::Running { pid, .. } | State::Paused { pid, .. }) =
            (limits_given, &rec.state)
        {
            match ContainerCgroup::of_process(*pid)? {
                Some(cg) => cg
                    .update(&resources)
                    .with_context(|| format!("Cannot update container {}", rec.id))?,
                // Rootless on cgroup v1: nothing is delegated, as at run.
                None => {
                    if let Some(warning) = cgroup::rootless_limits_warning(&resources) {
                        eprintln!("{warning}");
                    }
                }
            }
        }
        let store = ctx.store()?;
        let updated = store.update_container(&rec.id, |r| {
            r.resources = resources;
            if let Some(policy) = restart.clone() {
                r.restart = policy;
            }
        })?;
        // (The record keeps the state it was made in; the state file has
        // the current one, which `rec` was settled with.)
        if rec.state.is_running() && crate::restart_policy::restarts(&updated.restart) {
            // Its keeper, if it has none (a second one leaves at once).
            super::launch::start_keeper(ctx, &updated.id.parse()?, None)?;
        }
        outln!("{name}")?;
    }
    Ok(0)
}
