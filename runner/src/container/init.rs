//! `run --init`: the container's pid 1 stays a small init, as docker's
//! `docker-init` (tini) does, and the command runs as its child. The init
//! forwards every signal it gets to the command (pid 1 ignores the ones it
//! has no handler for, so a command that never expected to be pid 1 would
//! not stop on SIGTERM), reaps every process that ends (orphans would
//! otherwise stay zombies), and exits as the command did: its status, or
//! 128 + the signal that killed it.
//!
//! It forks after every restriction is in place (user, capabilities,
//! no_new_privs, the seccomp filter), so it holds nothing the command
//! does not; it is not dumpable, so the command cannot read its memory.

use super::exit::StartError;
use crate::sys;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, setpgid, tcsetpgrp, ForkResult, Pid};

/// Forks the command off. Returns in the child, which goes on to exec the
/// command in a process group of its own (in the terminal's foreground
/// with `tty`, so that ^C reaches the command, not the init); the parent
/// never returns.
pub fn start(tty: bool) -> Result<(), StartError> {
    let mut before = SigSet::empty();
    // Blocked before the fork: a signal that comes at once waits for the
    // init's loop instead of killing it or being lost.
    sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut before),
    )
    .map_err(|errno| StartError::from_errno("block signals for the init", errno))?;
    // The init stays strata's binary holding the start's descriptors until
    // it closes them: not dumpable from before the command exists, which
    // could otherwise open them through /proc/1 (the command's execve makes
    // it dumpable again).
    let _ = nix::sys::prctl::set_dumpable(false);
    match sys::fork().map_err(|e| StartError::other(format!("fork the init's command: {e:#}")))? {
        ForkResult::Child => {
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
            if tty {
                // SIGTTOU is blocked, so a background group may take the
                // terminal.
                let _ = tcsetpgrp(std::io::stdin(), getpgrp());
            }
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&before), None)
                .map_err(|errno| StartError::from_errno("unblock signals", errno))?;
            Ok(())
        }
        ForkResult::Parent { child } => serve(child),
    }
}

/// The init's loop: forwards signals to `command`, reaps what ends, and
/// exits with `command`'s status once it ends.
fn serve(command: Pid) -> ! {
    // Only the command's exec closes the descriptors the monitor watches
    // for the start's outcome; the init must not keep them open.
    sys::close_all_from_before_exit(3);
    sys::hide_environment();
    let _ = nix::sys::prctl::set_name(c"strata-init");
    let all = SigSet::all();
    loop {
        match all.wait() {
            Ok(Signal::SIGCHLD) => reap(command),
            Ok(signal) => {
                let _ = kill(command, signal);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every process that has ended; exits if `command` is one of them.
fn reap(command: Pid) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => sys::exit_immediately(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                sys::exit_immediately(128 + signal as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
