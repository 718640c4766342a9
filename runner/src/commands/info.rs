//! `strata info` and `strata version`: what docker's print, for a
//! newcomer's first look and a bug report: the store's containers and
//! images, where it lives, and what of the host strata uses (cgroups,
//! FUSE over io_uring, user namespaces).

use super::Ctx;
use crate::container::cgroup::{host_version, Version};
use crate::humanize::bytes_size;
use crate::liveness;
use anyhow::Result;
use layerdb::State;

pub fn version() -> Result<i32> {
    outln!("Client: strata")?;
    outln!(" Version:      {}", env!("CARGO_PKG_VERSION"))?;
    outln!(
        " OS/Arch:      linux/{}",
        layerdb::image::host_architecture()
    )?;
    outln!()?;
    outln!("Server: none (strata runs containers without a daemon)")?;
    Ok(0)
}

pub fn info(ctx: &Ctx) -> Result<i32> {
    let store = ctx.reader()?;
    let containers = liveness::containers(&store)?;
    let count = |f: fn(&State) -> bool| containers.iter().filter(|c| f(&c.state)).count();
    let running = count(|s| matches!(s, State::Running { .. }));
    let paused = count(|s| matches!(s, State::Paused { .. }));
    let images = store.image_count()?;
    let volumes = crate::volumes::list(&ctx.root)?.len();
    drop(store);
    let rootless = !nix::unistd::geteuid().is_root();
    let uring = std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring").map_or(
        "not offered by this kernel".to_string(),
        |v| match v.trim() {
            "Y" => "on".to_string(),
            _ => "off (/sys/module/fuse/parameters/enable_uring)".to_string(),
        },
    );
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            let name = text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
            Some(name.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    let memory = super::stats::host_memory();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    outln!("Client: strata {}", env!("CARGO_PKG_VERSION"))?;
    outln!()?;
    outln!("Server: none (containers run under their own monitor process)")?;
    outln!(" Containers: {}", containers.len())?;
    outln!("  Running: {running}")?;
    outln!("  Paused: {paused}")?;
    outln!("  Stopped: {}", containers.len() - running - paused)?;
    outln!(" Images: {images}")?;
    outln!(" Volumes: {volumes}")?;
    outln!(" Storage Driver: strata (content-defined chunks, FUSE union)")?;
    outln!("  FUSE over io_uring: {uring}")?;
    outln!(" Logging Driver: json-file")?;
    outln!(" Cgroup Driver: cgroupfs")?;
    let cgroup = match host_version() {
        Version::V1 => "1",
        Version::V2 => "2",
    };
    outln!(" Cgroup Version: {cgroup}")?;
    outln!(
        " Security Options:\n  seccomp\n   Profile: builtin{}",
        if rootless { "\n  rootless" } else { "" }
    )?;
    outln!(" Kernel Version: {kernel}")?;
    outln!(" Operating System: {os}")?;
    outln!(" OSType: linux")?;
    outln!(" Architecture: {}", std::env::consts::ARCH)?;
    outln!(" CPUs: {cpus}")?;
    outln!(" Total Memory: {}", bytes_size(memory))?;
    outln!(" Strata Root Dir: {}", ctx.root.display())?;
    Ok(0)
}
