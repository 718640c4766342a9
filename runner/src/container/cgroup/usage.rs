//! What a container's cgroup counts of its use, for `strata stats`: CPU
//! time, memory (docker's figure: without the inactive page cache),
//! its limit, bytes read and written on block devices, and tasks.

use std::fs;
use std::path::Path;

use super::{ContainerCgroup, Version};

/// One reading; `None` where the cgroup does not count it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: Option<u64>,
    pub memory: Option<u64>,
    pub memory_limit: Option<u64>,
    pub read_bytes: Option<u64>,
    pub written_bytes: Option<u64>,
    pub pids: Option<u64>,
}

impl ContainerCgroup {
    /// Reads the counters of every directory of the cgroup.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for dir in &self.dirs {
            match self.version {
                Version::V2 => read_v2(dir, &mut usage),
                Version::V1 => read_v1(dir, &mut usage),
            }
        }
        usage
    }
}

fn read_v2(dir: &Path, usage: &mut Usage) {
    let usec = keyed(&dir.join("cpu.stat"), "usage_usec");
    usage.cpu_ns = usage.cpu_ns.or(usec.map(|us| us * 1000));
    let inactive = keyed(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
    let current = number(&dir.join("memory.current"));
    usage.memory = usage.memory.or(current.map(|c| c.saturating_sub(inactive)));
    usage.memory_limit = usage.memory_limit.or(number(&dir.join("memory.max")));
    if let Ok(text) = fs::read_to_string(dir.join("io.stat")) {
        let sum = |key: &str| {
            text.split_whitespace()
                .filter_map(|field| field.strip_prefix(key)?.parse::<u64>().ok())
                .sum::<u64>()
        };
        usage.read_bytes = Some(sum("rbytes="));
        usage.written_bytes = Some(sum("wbytes="));
    }
    usage.pids = usage.pids.or(number(&dir.join("pids.current")));
}

fn read_v1(dir: &Path, usage: &mut Usage) {
    usage.cpu_ns = usage.cpu_ns.or(number(&dir.join("cpuacct.usage")));
    if let Some(current) = number(&dir.join("memory.usage_in_bytes")) {
        let inactive = keyed(&dir.join("memory.stat"), "total_inactive_file").unwrap_or(0);
        usage.memory = Some(current.saturating_sub(inactive));
        // v1 says "no limit" with a page-rounded i64::MAX.
        usage.memory_limit = number(&dir.join("memory.limit_in_bytes")).filter(|l| *l < 1 << 62);
    }
    if let Ok(text) = fs::read_to_string(dir.join("blkio.throttle.io_service_bytes")) {
        let sum = |op: &str| {
            text.lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    match fields.as_slice() {
                        [_, kind, bytes] if *kind == op => bytes.parse::<u64>().ok(),
                        _ => None,
                    }
                })
                .sum::<u64>()
        };
        usage.read_bytes = Some(sum("Read"));
        usage.written_bytes = Some(sum("Write"));
    }
    usage.pids = usage.pids.or(number(&dir.join("pids.current")));
}

/// A file holding one number (`max` and a missing file are none).
fn number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a file of `KEY VALUE` lines.
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}
