//! `strata top`: the processes of a running container, as docker's:
//! the host's `ps` (with the given options, `-ef` by default), its lines
//! kept for the processes in the container's pid namespace.

use super::Ctx;
use crate::cli::TopArgs;
use anyhow::{bail, Context, Result};
use layerdb::State;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

pub fn top(ctx: &Ctx, args: TopArgs) -> Result<i32> {
    let rec = ctx.container(&args.container)?;
    let (State::Running { pid, .. } | State::Paused { pid, .. }) = rec.state else {
        bail!("Container {} is not running", rec.id);
    };
    let options = match args.ps_options.is_empty() {
        true => vec!["-ef".to_string()],
        false => args.ps_options.clone(),
    };
    let out = std::process::Command::new("ps")
        .args(&options)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            options.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let members = pid_namespace_members(pid)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split_whitespace().position(|f| f == "PID") else {
        bail!("Couldn't find PID field in ps output");
    };
    outln!("{header}")?;
    for line in lines {
        let listed = line.split_whitespace().nth(column);
        if listed
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| members.contains(&p))
        {
            outln!("{line}")?;
        }
    }
    Ok(0)
}

/// The host pids of the processes that share `init`'s pid namespace:
/// the container's own and those `exec` started.
fn pid_namespace_members(init: i32) -> Result<HashSet<i32>> {
    let ns =
        |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| (m.dev(), m.ino()));
    let theirs = ns(&init.to_string())
        .with_context(|| format!("container process {init} is not running"))?;
    let mut members = HashSet::new();
    for entry in std::fs::read_dir("/proc").context("read /proc")?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if ns(&pid.to_string()).is_ok_and(|n| n == theirs) {
            members.insert(pid);
        }
    }
    Ok(members)
}
