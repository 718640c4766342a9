//! `strata attach`: a running container's output, followed in its log
//! (which holds a terminal's output too), and for a detached `-i`
//! container the CLI's input, sent to its stdin through its monitor
//! (`container::attach_input`). It ends when the container exits (with
//! its exit code) or when the detach keys, Ctrl-P Ctrl-Q, are typed, as
//! docker's does.

use super::logs::{Followed, Printer};
use super::Ctx;
use crate::cli::AttachArgs;
use crate::liveness;
use crate::stack::ContainerPaths;
use anyhow::{bail, Context, Result};
use layerdb::State;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::time::Duration;

/// docker's default detach keys: Ctrl-P, Ctrl-Q.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

pub fn attach(ctx: &Ctx, args: AttachArgs) -> Result<i32> {
    let rec = ctx.container(&args.container)?;
    match rec.state {
        State::Running { .. } => {}
        State::Paused { .. } => bail!("You cannot attach to a paused container, unpause it first"),
        _ => bail!("You cannot attach to a stopped container, start it first"),
    }
    if rec.log_driver == layerdb::LogDriver::None {
        bail!("configured logging driver does not support reading");
    }
    let paths = ContainerPaths::of(&ctx.root, &rec);
    // The input goes in only for a container that keeps its stdin open.
    let mut input = match !args.no_stdin && rec.interactive {
        true => Some(crate::container::attach_input::connect(&paths.dir)?),
        false => None,
    };
    if input.is_some() && rec.tty {
        super::check_tty(true, true)?;
    }
    let _raw = match input.is_some() && rec.tty {
        true => crate::container::RawMode::enter()?,
        false => None,
    };
    let path = paths.log();
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    file.seek(std::io::SeekFrom::End(0))?;
    let mut log = Followed { file, path };
    let mut printer = Printer::new(false, None, None);
    let mut typed: Vec<u8> = Vec::new();
    loop {
        // The monitor looked at first: what it wrote before it ended is
        // in the log for the reads below.
        let alive = liveness::monitor_runs(&rec.state);
        if let Some(socket) = &mut input {
            let stdin = std::io::stdin();
            let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) > 0;
            if ready {
                let mut buf = [0u8; 4096];
                let n = stdin.lock().read(&mut buf).unwrap_or(0);
                if n == 0 {
                    // Our input ended; the container's stays open.
                    input = None;
                } else if send(socket, &buf[..n], &mut typed)? {
                    return Ok(0);
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        if log.print_new(&mut printer)? {
            continue;
        }
        if !alive {
            printer.finish()?;
            let store = ctx.reader()?;
            return Ok(
                match liveness::container(&store, &rec.id).map(|r| r.state) {
                    Ok(State::Exited { code, .. }) => code,
                    // Removed (`--rm`) with its code.
                    _ => 0,
                },
            );
        }
    }
}

/// Sends typed bytes on, holding back a start of the detach keys until it
/// is known whether they follow; true once they were typed.
fn send(
    socket: &mut std::os::unix::net::UnixStream,
    bytes: &[u8],
    typed: &mut Vec<u8>,
) -> Result<bool> {
    let mut out = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        if byte == DETACH_KEYS[typed.len()] {
            typed.push(byte);
            if typed.len() == DETACH_KEYS.len() {
                socket.write_all(&out).context("send to the container")?;
                return Ok(true);
            }
            continue;
        }
        out.append(typed);
        out.push(byte);
    }
    socket.write_all(&out).context("send to the container")?;
    Ok(false)
}
