//! cgroup v1: a hierarchy per controller (or a few comounted). The
//! container gets `/strata/<id>` in every hierarchy the host mounts, also
//! the named ones (`name=systemd`) and, on a hybrid host, the empty
//! unified one: its cgroup namespace then has no hierarchy's root in
//! view, where `release_agent` lives, and no other container's cgroups.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use layerdb::Resources;

use super::devices;
use super::limits::{memory_and_swap, CFS_PERIOD_US};
use super::{make_dir, wait_until, write_control, ContainerCgroup, Version};

/// Makes `/strata/<id>` in each hierarchy and applies `resources`. On
/// failure nothing is left behind.
pub fn create(id: &str, resources: &Resources) -> anyhow::Result<ContainerCgroup> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut cgroup = ContainerCgroup {
        version: Version::V1,
        dirs: Vec::new(),
        freezer: None,
    };
    let made = configure(id, resources, &mountinfo, &mut cgroup);
    if made.is_err() {
        cgroup.remove();
    }
    made.map(|()| cgroup)
}

fn configure(
    id: &str,
    resources: &Resources,
    mountinfo: &str,
    cgroup: &mut ContainerCgroup,
) -> anyhow::Result<()> {
    let controllers = controller_mounts(mountinfo);
    let mut hierarchies: BTreeSet<PathBuf> = controllers.values().cloned().collect();
    hierarchies.extend(unified_mount(mountinfo));
    let mut dirs = BTreeMap::new();
    for hierarchy in hierarchies {
        // Kept before it is made: the caller's cleanup of a failure
        // halfway (cpuset's controls, a full disk) must know of it.
        cgroup.dirs.push(hierarchy.join("strata").join(id));
        // cpuset refuses tasks until its cpus and mems are set.
        if controllers.get("cpuset") == Some(&hierarchy) {
            prepare_cpuset(&hierarchy, id)?;
        }
        let dir = make_dir(&hierarchy, id)?;
        dirs.insert(hierarchy, dir);
    }
    let dir_of = |controller: &str, why: &str| -> anyhow::Result<&PathBuf> {
        match controllers.get(controller).and_then(|h| dirs.get(h)) {
            Some(dir) => Ok(dir),
            None => bail!("{why}: the host has no {controller} cgroup hierarchy mounted"),
        }
    };
    if !resources.all_devices {
        let dir = dir_of("devices", "cannot limit the container's devices")?;
        write_control(dir, "devices.deny", "a")?;
        for rule in devices::allowed(resources)? {
            write_control(dir, "devices.allow", &rule.v1_text())?;
        }
    }
    if resources.memory > 0 {
        let dir = dir_of("memory", "cannot apply --memory")?;
        write_control(dir, "memory.limit_in_bytes", &resources.memory.to_string())?;
        // Memory + swap (docker's default: twice the limit), where the
        // kernel accounts swap at all.
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            let both = memory_and_swap(resources);
            write_control(dir, "memory.memsw.limit_in_bytes", &both.to_string())?;
        }
    }
    if resources.nano_cpus > 0 {
        let dir = dir_of("cpu", "cannot apply --cpus")?;
        write_control(dir, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
        let quota = super::limits::cfs_quota_us(resources.nano_cpus);
        write_control(dir, "cpu.cfs_quota_us", &quota.to_string())?;
    }
    if resources.pids_limit > 0 {
        let dir = dir_of("pids", "cannot apply --pids-limit")?;
        write_control(dir, "pids.max", &resources.pids_limit.to_string())?;
    }
    // Without a freezer hierarchy commit pauses with SIGSTOP instead.
    cgroup.freezer = dir_of("freezer", "").ok().cloned();
    Ok(())
}

/// A new cpuset cgroup starts with no cpus and no memory nodes: both
/// `strata` and the container's get their parent's.
fn prepare_cpuset(hierarchy: &Path, id: &str) -> anyhow::Result<()> {
    let mut parent = hierarchy.to_path_buf();
    for name in ["strata", id] {
        let dir = parent.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = fs::read_to_string(dir.join(file)).unwrap_or_default();
            if own.trim().is_empty() {
                let inherited = fs::read_to_string(parent.join(file))
                    .with_context(|| format!("read {}", parent.join(file).display()))?;
                write_control(&dir, file, inherited.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

/// [`controller_mounts`], with the unified hierarchy of a hybrid host
/// under "" (how /proc/PID/cgroup names it: `0::/path`).
pub(super) fn hierarchy_mounts(mountinfo: &str) -> BTreeMap<String, PathBuf> {
    let mut mounts = controller_mounts(mountinfo);
    if let Some(unified) = unified_mount(mountinfo) {
        mounts.insert(String::new(), unified);
    }
    mounts
}

/// The cgroup2 mount of a hybrid host (/sys/fs/cgroup/unified).
fn unified_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mountpoint = before.split(' ').nth(4)?;
        (after.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(mountpoint))
    })
}

/// Controller name -> mountpoint of its hierarchy, from mountinfo lines
/// like `... /sys/fs/cgroup/cpu,cpuacct ... - cgroup cgroup rw,cpu,cpuacct`.
fn controller_mounts(mountinfo: &str) -> BTreeMap<String, PathBuf> {
    let mut mounts = BTreeMap::new();
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let mut tail = after.split(' ');
        if tail.next() != Some("cgroup") {
            continue;
        }
        let (Some(mountpoint), Some(options)) = (before.split(' ').nth(4), tail.nth(1)) else {
            continue;
        };
        for option in options.split(',') {
            mounts
                .entry(option.to_owned())
                .or_insert_with(|| PathBuf::from(mountpoint));
        }
    }
    mounts
}

/// `strata update` of one hierarchy's directory of a running container:
/// the limits its controller has, -1 where there is none now. Memory and
/// swap move in the order the kernel accepts (the sum never below the
/// memory): the sum unbounded first, then the memory, then the sum.
pub fn update(dir: &Path, resources: &Resources) -> anyhow::Result<()> {
    let or_none = |value: i64| if value > 0 { value } else { -1 };
    if dir.join("memory.limit_in_bytes").exists() {
        // memsw may never be under the memory limit: lifted first, then
        // set again. A memory limit the kernel refuses (EBUSY: below
        // what the container uses) puts the old memsw limit back.
        let memsw = dir.join("memory.memsw.limit_in_bytes").exists();
        let old_memsw = fs::read_to_string(dir.join("memory.memsw.limit_in_bytes")).ok();
        if memsw {
            write_control(dir, "memory.memsw.limit_in_bytes", "-1")?;
        }
        let memory = or_none(resources.memory).to_string();
        if let Err(e) = write_control(dir, "memory.limit_in_bytes", &memory) {
            if let Some(old) = old_memsw.filter(|_| memsw) {
                let _ = write_control(dir, "memory.memsw.limit_in_bytes", old.trim());
            }
            return Err(e);
        }
        if memsw && resources.memory > 0 {
            let both = memory_and_swap(resources);
            write_control(dir, "memory.memsw.limit_in_bytes", &both.to_string())?;
        }
    }
    if dir.join("cpu.cfs_quota_us").exists() {
        write_control(dir, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
        let quota = match resources.nano_cpus {
            0 => -1,
            n => super::limits::cfs_quota_us(n),
        };
        write_control(dir, "cpu.cfs_quota_us", &quota.to_string())?;
    }
    if dir.join("pids.max").exists() {
        let pids = match resources.pids_limit {
            p if p > 0 => p.to_string(),
            _ => "max".to_string(),
        };
        write_control(dir, "pids.max", &pids)?;
    }
    Ok(())
}

pub fn freeze(dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    write_control(dir, "freezer.state", "FROZEN")?;
    let state = dir.join("freezer.state");
    // FREEZING until every task has stopped.
    wait_until("the freeze", timeout, || {
        Ok(fs::read_to_string(&state)
            .with_context(|| format!("read {}", state.display()))?
            .trim()
            == "FROZEN")
    })
}

pub fn thaw(dir: &Path) -> anyhow::Result<()> {
    write_control(dir, "freezer.state", "THAWED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_found_in_mountinfo_also_when_comounted() {
        let info = "\
35 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
36 25 0:31 / /sys/fs/cgroup/devices rw,nosuid shared:5 - cgroup cgroup rw,devices
37 25 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
38 25 0:33 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
40 1 8:1 / / rw - ext4 /dev/sda1 rw";
        let mounts = controller_mounts(info);
        assert_eq!(mounts["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(mounts["devices"], PathBuf::from("/sys/fs/cgroup/devices"));
        assert!(!mounts.contains_key("memory"));
        assert!(!mounts.values().any(|m| m.ends_with("unified")));
        assert_eq!(
            unified_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }
}
