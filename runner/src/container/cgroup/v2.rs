//! cgroup v2: one unified hierarchy. Root puts containers in
//! `/sys/fs/cgroup/strata/<id>`, as docker's cgroupfs driver puts them in
//! `/docker/<id>`; a rootless user below the cgroup it runs in, when
//! systemd delegated that one to it. Devices are limited by an eBPF
//! program attached to the cgroup (v2 has no devices controller).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use layerdb::Resources;

use super::limits::CFS_PERIOD_US;
use super::{devices, make_dir, wait_until, write_control, ContainerCgroup, Version, CGROUP_ROOT};

/// Makes the container's cgroup and applies `resources`; `None` for a
/// rootless caller whose cgroup is not delegated to it.
pub fn create(id: &str, resources: &Resources) -> anyhow::Result<Option<ContainerCgroup>> {
    let base = if super::is_root() {
        PathBuf::from(CGROUP_ROOT)
    } else {
        match delegated_base()? {
            Some(base) => base,
            None => return Ok(None),
        }
    };
    create_in(&base, id, resources).map(Some)
}

/// The cgroup `strata/<id>` below `base` (a cgroup v2 directory).
fn create_in(base: &Path, id: &str, resources: &Resources) -> anyhow::Result<ContainerCgroup> {
    let dir = make_dir(base, id)?;
    let cgroup = ContainerCgroup {
        version: Version::V2,
        dirs: vec![dir.clone()],
        freezer: Some(dir.clone()),
    };
    if let Err(err) = configure(base, &dir, resources) {
        cgroup.remove();
        return Err(err);
    }
    Ok(cgroup)
}

fn configure(base: &Path, dir: &Path, resources: &Resources) -> anyhow::Result<()> {
    let mut wanted = Vec::new();
    if resources.memory > 0 {
        wanted.push("memory");
    }
    if resources.nano_cpus > 0 {
        wanted.push("cpu");
    }
    if resources.pids_limit > 0 {
        wanted.push("pids");
    }
    if !wanted.is_empty() {
        enable_controllers(base, &wanted)?;
    }
    if resources.memory > 0 {
        write_control(dir, "memory.max", &resources.memory.to_string())?;
        // Swap alone here (docker's default: as much again as memory).
        if dir.join("memory.swap.max").exists() {
            let swap = match super::limits::memory_and_swap(resources) {
                -1 => "max".to_string(),
                both => (both - resources.memory).to_string(),
            };
            write_control(dir, "memory.swap.max", &swap)?;
        }
    }
    if resources.nano_cpus > 0 {
        let quota = super::limits::cfs_quota_us(resources.nano_cpus);
        write_control(dir, "cpu.max", &format!("{quota} {CFS_PERIOD_US}"))?;
    }
    if resources.pids_limit > 0 {
        write_control(dir, "pids.max", &resources.pids_limit.to_string())?;
    }
    if !resources.all_devices {
        let program: Vec<[u8; 8]> = devices::bpf_program(&devices::allowed(resources)?)
            .iter()
            .map(devices::Insn::bytes)
            .collect();
        let cgroup = fs::File::open(dir).with_context(|| format!("open {}", dir.display()))?;
        crate::sys::attach_device_filter(&cgroup, &program)
            .with_context(|| format!("attach the device filter to {}", dir.display()))?;
    }
    Ok(())
}

/// Turns `controllers` on for the children of `base` and of `base/strata`
/// (cgroup.subtree_control), naming what is missing when the kernel or
/// the delegation lacks one.
fn enable_controllers(base: &Path, controllers: &[&str]) -> anyhow::Result<()> {
    let available = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    if let Some(missing) = controllers
        .iter()
        .find(|c| !available.split_whitespace().any(|a| a == **c))
    {
        bail!(
            "cannot apply the container's limits: the {missing} controller is not available in {}",
            base.display()
        );
    }
    let enable: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    for dir in [base.to_path_buf(), base.join("strata")] {
        write_control(&dir, "cgroup.subtree_control", &enable.join(" "))?;
    }
    Ok(())
}

/// A rootless caller's delegated cgroup: the one it runs in, when it may
/// write there (systemd's `Delegate=yes` for user@UID.service gives the
/// user that subtree). Its own processes stay where they are.
fn delegated_base() -> anyhow::Result<Option<PathBuf>> {
    let own = fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?;
    let Some(path) = own.lines().find_map(|line| line.strip_prefix("0::")) else {
        return Ok(None);
    };
    let base = Path::new(CGROUP_ROOT).join(path.trim_start_matches('/'));
    let writable = nix::unistd::access(&base, nix::unistd::AccessFlags::W_OK).is_ok();
    Ok(writable.then_some(base))
}

/// `strata update` of a running container's cgroup `dir` (`base/strata/
/// <id>`): each limit written anew, `max` where there is none now, the
/// controllers turned on first where it had none.
pub fn update(dir: &Path, resources: &Resources) -> anyhow::Result<()> {
    let base = dir
        .parent()
        .and_then(Path::parent)
        .context("the container's cgroup has no parent")?;
    enable_controllers(base, &["memory", "cpu", "pids"])?;
    let limit = |value: i64| match value {
        v if v > 0 => v.to_string(),
        _ => "max".to_string(),
    };
    // v2 counts swap apart from memory: each is set on its own.
    write_control(dir, "memory.max", &limit(resources.memory))?;
    if dir.join("memory.swap.max").exists() {
        let swap = match (resources.memory, super::limits::memory_and_swap(resources)) {
            (0, _) | (_, -1) => "max".to_string(),
            (memory, both) => (both - memory).to_string(),
        };
        write_control(dir, "memory.swap.max", &swap)?;
    }
    let quota = match resources.nano_cpus {
        0 => "max".to_string(),
        n => super::limits::cfs_quota_us(n).to_string(),
    };
    write_control(dir, "cpu.max", &format!("{quota} {CFS_PERIOD_US}"))?;
    write_control(dir, "pids.max", &limit(resources.pids_limit))
}

pub fn freeze(dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    write_control(dir, "cgroup.freeze", "1")?;
    let events = dir.join("cgroup.events");
    wait_until("the freeze", timeout, || {
        Ok(fs::read_to_string(&events)
            .with_context(|| format!("read {}", events.display()))?
            .lines()
            .any(|line| line.trim() == "frozen 1"))
    })
}

pub fn thaw(dir: &Path) -> anyhow::Result<()> {
    write_control(dir, "cgroup.freeze", "0")
}

/// cgroup.kill (Linux 5.14): SIGKILL to every process in one write.
/// False when the kernel has no such file.
pub fn kill_all(dir: &Path) -> anyhow::Result<bool> {
    let kill = dir.join("cgroup.kill");
    if !kill.exists() {
        return Ok(false);
    }
    write_control(dir, "cgroup.kill", "1")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The unified hierarchy: /sys/fs/cgroup on v2, beside the v1 ones on
    /// a hybrid host (eBPF device programs work on both).
    fn unified() -> PathBuf {
        match super::super::host_version() {
            Version::V2 => PathBuf::from(CGROUP_ROOT),
            Version::V1 => PathBuf::from(CGROUP_ROOT).join("unified"),
        }
    }

    fn require_unified_as_root() -> PathBuf {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: it makes cgroups and attaches an eBPF program"
        );
        let base = unified();
        assert!(
            base.join("cgroup.procs").exists(),
            "this test needs the cgroup v2 hierarchy mounted at {}",
            base.display()
        );
        base
    }

    fn state_of(pid: u32) -> char {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(") ")
            .next()
            .and_then(|s| s.chars().next())
            .unwrap_or('X')
    }

    #[test]
    fn a_v2_cgroup_freezes_thaws_and_is_removed_with_what_is_left_in_it() {
        let base = require_unified_as_root();
        let id = format!("test-{}", std::process::id());
        let cgroup = create_in(&base, &id, &Resources::default()).expect("make the cgroup");
        let mut sleeper = Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("sleep runs");
        let pid = sleeper.id();
        let moved = cgroup.add(i32::try_from(pid).unwrap());
        let frozen = moved.and_then(|()| cgroup.freeze());
        let events = fs::read_to_string(base.join("strata").join(&id).join("cgroup.events"));
        let thawed = cgroup.thaw();
        let killed = cgroup.kill_remaining();
        let status = sleeper.wait().expect("reap sleep");
        cgroup.remove();
        killed.expect("kill what is left");
        frozen.expect("freeze");
        thawed.expect("thaw");
        assert!(events.unwrap().contains("frozen 1"));
        assert!(
            !base.join("strata").join(&id).exists(),
            "the cgroup is left"
        );
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the process left in the cgroup is killed"
        );
        assert_eq!(state_of(pid), 'X');
    }

    #[test]
    fn the_device_filter_lets_the_kernel_refuse_kmsg_and_allow_dev_null() {
        let base = require_unified_as_root();
        let dir = base.join(format!("strata-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create a test cgroup");
        let program: Vec<[u8; 8]> = devices::bpf_program(devices::DOCKER_DEFAULT_DEVICES)
            .iter()
            .map(devices::Insn::bytes)
            .collect();
        let attached = crate::sys::attach_device_filter(&fs::File::open(&dir).unwrap(), &program);
        // /dev/kmsg's numbers (1:11): not among docker's devices, and a
        // device the host itself opens (some sandboxes refuse root its disk).
        fs::File::open("/dev/kmsg").expect("the host opens /dev/kmsg");
        let nodes = tempfile::tempdir().expect("temp dir");
        let disk = nodes.path().join("kmsg");
        nix::sys::stat::mknod(
            &disk,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 11),
        )
        .expect("mknod a kmsg node");
        let script = format!(
            "echo $$ > {}/cgroup.procs && head -c1 /dev/null && echo null ok; head -c1 {} >/dev/null",
            dir.display(),
            disk.display()
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        let _ = fs::remove_dir(&dir);
        attached.expect("load and attach the device filter");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stdout, "null ok\n", "{stderr}");
        assert!(
            stderr.contains("Operation not permitted"),
            "kmsg opened: {stderr}"
        );
    }
}
