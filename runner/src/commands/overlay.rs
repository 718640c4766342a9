//! strata as fuse-overlayfs (see `crate::overlay_compat`): mounts directory
//! lowers and an upper, then serves in the background (the command
//! returns once the mount is up, as fuse-overlayfs does) or, with `-f`, in
//! the foreground. Either way SIGTERM, SIGINT and SIGHUP unmount and end
//! the server with status 0, and so does an unmount by anyone else
//! (`fusermount3 -u`, `umount`).

use crate::overlay_compat::{self, OverlayArgs};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::ForkResult;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

pub fn run(args: &[String]) -> Result<i32> {
    let a = overlay_compat::parse(args)?;
    for opt in &a.ignored {
        eprintln!("strata: ignoring fuse-overlayfs option {opt}");
    }
    check_dirs(&a)?;
    if !a.foreground {
        return start_in_background(a);
    }
    serve(a, None)
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

/// Forks the server, which mounts and serves in a session of its own, and
/// returns once it has mounted. A fork, not a new run of this program: a
/// binary this size takes as long to start as the mount itself, and
/// podman starts one for every container.
fn start_in_background(a: OverlayArgs) -> Result<i32> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    match crate::sys::fork().context("starting the fuse-overlayfs server")? {
        ForkResult::Child => {
            drop(ready_r);
            // Its errors go to the caller's stderr and end this process.
            serve(a, Some(ready_w))
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            let mut line = String::new();
            BufReader::new(std::fs::File::from(ready_r)).read_line(&mut line)?;
            if line.trim() != "ready" {
                // A server that failed said why, in one line on the
                // caller's stderr: its code is the answer. Only one that
                // died without a word is reported here.
                if let Ok(nix::sys::wait::WaitStatus::Exited(_, code)) =
                    nix::sys::wait::waitpid(child, None)
                {
                    if code != 0 {
                        return Ok(code);
                    }
                }
                bail!(
                    "mounting on {}: the server ended before the mount was up",
                    a.mountpoint.display()
                );
            }
            Ok(0)
        }
    }
}

/// Mounts, then serves until unmounted or stopped by a signal. A
/// background server (`ready`: where it says "ready" once mounted) then
/// lets go of the caller's stdio, which podman waits on.
fn serve(a: OverlayArgs, ready: Option<OwnedFd>) -> Result<i32> {
    if ready.is_some() {
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
    opts.read_only = a.read_only || a.upper.is_none();
    opts.flags = a.flags;
    // As fuse-overlayfs: a server running as root (in the host's or a
    // user namespace, as rootless podman runs it) serves every user.
    opts.allow_other = nix::unistd::geteuid().is_root();
    opts.fsname = "fuse-overlayfs".into();
    opts.view = a.view;
    opts.upper_format = a.upper_format;
    crate::sys::one_malloc_arena();
    let handle = fusefs::mount(opts, &a.mountpoint)?;
    if let Some(ready) = ready {
        let devnull = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let _ = nix::unistd::dup2_stdin(&devnull);
        let _ = nix::unistd::dup2_stdout(&devnull);
        let _ = nix::unistd::dup2_stderr(&devnull);
        std::fs::File::from(ready)
            .write_all(b"ready\n")
            .context("telling the caller the mount is up")?;
    }
    let mountpoint = a.mountpoint.clone();
    let device = handle.device();
    std::thread::spawn(move || stop_on_signal(&stop, &mountpoint, device));
    handle.join()?;
    Ok(0)
}

/// Waits for one of `signals`, then detaches the mount: the kernel ends
/// the session once nothing uses it, and the server returns. If the path
/// holds another mount by then (ours detached by someone else while in
/// use, and the path mounted again, as podman does), that one is left
/// alone and the server ends at once: its exit ends the connection.
fn stop_on_signal(signals: &SigSet, mountpoint: &Path, device: Option<fusefs::Device>) {
    match signals.wait() {
        Ok(sig) => log::info!("{sig}: unmounting {}", mountpoint.display()),
        Err(e) => {
            log::error!("waiting for signals: {e}");
            return;
        }
    }
    let unmounted = match device {
        Some(device) => fusefs::unmount_if_at(mountpoint, device),
        None => fusefs::unmount(mountpoint).map(|()| true),
    };
    match unmounted {
        Ok(true) => {}
        Ok(false) => {
            log::info!("{} holds another mount now: ending", mountpoint.display());
            crate::sys::exit_immediately(0);
        }
        Err(e) => log::error!("unmounting {}: {e}", mountpoint.display()),
    }
}
