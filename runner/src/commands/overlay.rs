//! strata as fuse-overlayfs (see `crate::overlay_compat`): mounts directory
//! lowers and an upper, then serves in the background (the command
//! returns once the mount is up, as fuse-overlayfs does) or, with `-f`, in
//! the foreground. Either way SIGTERM, SIGINT and SIGHUP unmount and end
//! the server with status 0, and so does an unmount by anyone else
//! (`fusermount3 -u`, `umount`).

use crate::overlay_compat::{self, OverlayArgs};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// Set in the background server's environment: say "ready" on stdout once
/// mounted, then let go of the caller's stdio.
const NOTIFY_ENV: &str = "STRATA_OVERLAY_NOTIFY";

pub fn run(args: &[String]) -> Result<i32> {
    let a = overlay_compat::parse(args)?;
    for opt in &a.ignored {
        eprintln!("strata: ignoring fuse-overlayfs option {opt}");
    }
    check_dirs(&a)?;
    if !a.foreground {
        return start_in_background(args, &a.mountpoint);
    }
    serve(a, std::env::var_os(NOTIFY_ENV).is_some())
}

/// Bad paths fail here, before anything is mounted or made.
fn check_dirs(a: &OverlayArgs) -> Result<()> {
    let is_dir = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_dir());
    for l in &a.lowers {
        if !is_dir(l) {
            bail!("lowerdir {}: not a directory", l.display());
        }
    }
    if !is_dir(&a.mountpoint) {
        bail!("mountpoint {}: not a directory", a.mountpoint.display());
    }
    Ok(())
}

/// Runs this same command line again with `-f` in a new session and
/// returns once it has mounted.
fn start_in_background(args: &[String], mountpoint: &Path) -> Result<i32> {
    let mut child = Command::new("/proc/self/exe")
        .arg("fuse-overlayfs")
        .args(args)
        .arg("-f")
        .env(NOTIFY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the fuse-overlayfs server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().context("stderr")?, &mut err)?;
        let _ = child.wait();
        bail!("mounting on {}: {}", mountpoint.display(), err.trim());
    }
    Ok(0)
}

/// Mounts, then serves until unmounted or stopped by a signal.
fn serve(a: OverlayArgs, notify: bool) -> Result<i32> {
    if notify {
        // Its own session: the server outlives the caller's terminal.
        let _ = nix::unistd::setsid();
    }
    // Blocked before the server threads start, so they inherit the mask
    // and the signals wait for `stop_on_signal` instead of killing the
    // process with the mount left dead ("transport endpoint is not
    // connected").
    let mut stop = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(s);
    }
    stop.thread_block().context("blocking SIGTERM and SIGINT")?;
    let lowers: Vec<Box<dyn fusefs::Lower>> = a
        .lowers
        .iter()
        .map(|d| Box::new(fusefs::DirLower::new(d)) as Box<dyn fusefs::Lower>)
        .collect();
    let mut opts = fusefs::MountOptions::new(lowers, a.upper.clone());
    opts.read_only = a.upper.is_none();
    // As fuse-overlayfs: a server running as root (in the host's or a
    // user namespace, as rootless podman runs it) serves every user.
    opts.allow_other = nix::unistd::geteuid().is_root();
    opts.fsname = "fuse-overlayfs".into();
    opts.view = a.view;
    opts.upper_format = a.upper_format;
    let handle = fusefs::mount(opts, &a.mountpoint)?;
    if notify {
        println!("ready");
        let devnull = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let _ = nix::unistd::dup2_stdout(&devnull);
        let _ = nix::unistd::dup2_stderr(&devnull);
    }
    let mountpoint = a.mountpoint.clone();
    std::thread::spawn(move || stop_on_signal(&stop, &mountpoint));
    handle.join()?;
    Ok(0)
}

/// Waits for one of `signals`, then detaches the mount: the kernel ends
/// the session once nothing uses it, and the server returns.
fn stop_on_signal(signals: &SigSet, mountpoint: &Path) {
    match signals.wait() {
        Ok(sig) => log::info!("{sig}: unmounting {}", mountpoint.display()),
        Err(e) => {
            log::error!("waiting for signals: {e}");
            return;
        }
    }
    if let Err(e) = fusefs::unmount(mountpoint) {
        log::error!("unmounting {}: {e}", mountpoint.display());
    }
}
