//! `strata stats`: each container's CPU, memory, network, block I/O and
//! task counts, as docker's table shows them, every second until
//! interrupted, or once with `--no-stream`. CPU % is the container's CPU
//! time over the host's in the last second, times the host's CPUs, as
//! docker computes it; the rest comes from the container's cgroup
//! (`container::cgroup::Usage`) and its network namespace's counters.

use super::Ctx;
use crate::cli::StatsArgs;
use crate::container::cgroup::{ContainerCgroup, Usage};
use crate::humanize::{bytes_size, human_size_with_precision};
use crate::liveness;
use anyhow::Result;
use layerdb::{ContainerRecord, State};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// One container's reading.
#[derive(Default, Clone, Copy)]
struct Sample {
    usage: Usage,
    received: u64,
    sent: u64,
}

pub fn stats(ctx: &Ctx, args: StatsArgs) -> Result<i32> {
    let mut previous: Option<(u64, Vec<Sample>)> = None;
    loop {
        let containers = chosen(ctx, &args)?;
        let host = host_cpu_ns();
        let samples: Vec<Sample> = containers.iter().map(sample).collect();
        let Some((host_before, before)) = previous.take().filter(|(_, b)| b.len() == samples.len())
        else {
            // The first reading only starts the interval.
            previous = Some((host, samples));
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        let mut table = String::from(
            "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS\n",
        );
        for ((c, now), then) in containers.iter().zip(&samples).zip(&before) {
            table.push_str(&row(c, now, then, host.saturating_sub(host_before), &args));
        }
        let mut out = std::io::stdout().lock();
        if !args.no_stream {
            // docker's redraw: clear the screen, home the cursor.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        write!(out, "{}", crate::output::align_columns(&table))?;
        out.flush()?;
        if args.no_stream {
            return Ok(0);
        }
        previous = Some((host, samples));
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The containers named, else the running ones (every one with `-a`).
fn chosen(ctx: &Ctx, args: &StatsArgs) -> Result<Vec<ContainerRecord>> {
    let store = ctx.reader()?;
    if args.containers.is_empty() {
        let all = liveness::containers(&store)?;
        return Ok(all
            .into_iter()
            .filter(|c| args.all || c.state.is_running())
            .collect());
    }
    args.containers
        .iter()
        .map(|name| liveness::container(&store, name))
        .collect()
}

fn sample(c: &ContainerRecord) -> Sample {
    let (State::Running { pid, .. } | State::Paused { pid, .. }) = c.state else {
        return Sample::default();
    };
    let usage = ContainerCgroup::of_process(pid)
        .ok()
        .flatten()
        .map(|cg| cg.usage())
        .unwrap_or_default();
    let (received, sent) = network_bytes(pid);
    Sample {
        usage,
        received,
        sent,
    }
}

/// One line of the table, tab-separated.
fn row(c: &ContainerRecord, now: &Sample, then: &Sample, host_ns: u64, args: &StatsArgs) -> String {
    let id = match args.no_trunc {
        true => c.id.as_str(),
        false => &c.id[..12],
    };
    let dash = || "--".to_string();
    let cpu = match (now.usage.cpu_ns, then.usage.cpu_ns) {
        (Some(n), Some(t)) if host_ns > 0 => {
            let cpus = online_cpus() as f64;
            format!(
                "{:.2}%",
                n.saturating_sub(t) as f64 / host_ns as f64 * cpus * 100.0
            )
        }
        _ if !c.state.is_running() => "0.00%".to_string(),
        _ => dash(),
    };
    let limit = now.usage.memory_limit.unwrap_or_else(host_memory);
    let (memory, memory_percent) = match now.usage.memory {
        Some(m) => (
            format!("{} / {}", bytes_size(m), bytes_size(limit)),
            format!("{:.2}%", m as f64 / limit.max(1) as f64 * 100.0),
        ),
        None if !c.state.is_running() => ("0B / 0B".to_string(), "0.00%".to_string()),
        None => (dash(), dash()),
    };
    let size = |n: u64| human_size_with_precision(n as f64, 3);
    let net = format!("{} / {}", size(now.received), size(now.sent));
    let block = match (now.usage.read_bytes, now.usage.written_bytes) {
        (Some(r), Some(w)) => format!("{} / {}", size(r), size(w)),
        _ => "0B / 0B".to_string(),
    };
    let pids = match now.usage.pids {
        Some(p) => p.to_string(),
        None if c.state.is_running() => dash(),
        None => "0".to_string(),
    };
    format!(
        "{id}\t{}\t{cpu}\t{memory}\t{memory_percent}\t{net}\t{block}\t{pids}\n",
        c.name
    )
}

/// Bytes received and sent on the interfaces of `pid`'s network
/// namespace, loopback left out; none on the host's network (docker
/// shows a host-network container's as 0B).
fn network_bytes(pid: i32) -> (u64, u64) {
    let ns = |p: &str| std::fs::metadata(format!("/proc/{p}/ns/net")).map(|m| m.ino());
    if ns(&pid.to_string()).ok() == ns("self").ok() {
        return (0, 0);
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return (0, 0);
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let fields: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            Some((*fields.first()?, *fields.get(8)?))
        })
        .fold((0, 0), |(r, s), (fr, fs)| (r + fr, s + fs))
}

/// The host's CPU time so far, every CPU and state together, in ns.
fn host_cpu_ns() -> u64 {
    let ticks: u64 = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| {
            let line = text.lines().next()?.strip_prefix("cpu ")?.to_string();
            Some(
                line.split_whitespace()
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum(),
            )
        })
        .unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    ticks * (1_000_000_000 / hz)
}

fn online_cpus() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map_or(1, |n| n.max(1) as u64)
}

/// The host's memory, the limit of a container without one.
pub(super) fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let kib = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
            kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}
