//! Pausing a running container, done by its monitor: for `commit` (while
//! the committer's connection lasts, so a committer that dies cannot leave
//! the container paused) and for `strata pause` (until `unpause`).
//!
//! The monitor listens on `<container dir>/pause.sock`. A client sends
//! `pause`; the monitor freezes the container (its cgroup's freezer, or
//! SIGSTOP to every process of its pid namespace where it has no cgroup:
//! rootless on cgroup v1) and answers `paused`. It resumes the container
//! when the client sends `resume` (answering `resumed`) or when the
//! connection ends: the kernel closes a killed committer's socket, even
//! after SIGKILL, and the monitor sees end of file and thaws. `hold`
//! freezes it beyond the connection (`held`), until a `release`
//! (`released`); a commit of a held container neither freezes nor thaws
//! it. One client is served at a time; a second commit waits for the
//! first.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context as _};
use nix::unistd::Pid;

use super::cgroup::ContainerCgroup;
use super::signals;

/// The socket's name in the container's directory.
const SOCKET: &str = "pause.sock";

/// How the container is paused: its cgroup's freezer, or signals.
#[derive(Clone)]
enum Method {
    Freezer(ContainerCgroup),
    Signals(Pid),
}

impl Method {
    fn freeze(&self) -> anyhow::Result<()> {
        match self {
            Method::Freezer(cgroup) => cgroup.freeze(),
            Method::Signals(pid) => signals::freeze(pid.as_raw()),
        }
    }

    fn thaw(&self) -> anyhow::Result<()> {
        match self {
            Method::Freezer(cgroup) => cgroup.thaw(),
            Method::Signals(pid) => signals::thaw(pid.as_raw()),
        }
    }
}

/// Starts serving pause requests for the container whose init is `pid`,
/// on a thread of the monitor (call it after the rootfs is mounted: the
/// monitor forks nothing after that). The socket is removed when the
/// returned guard drops.
pub fn serve(
    container_dir: &Path,
    pid: Pid,
    cgroup: Option<&ContainerCgroup>,
) -> anyhow::Result<super::monitor_socket::Guard> {
    let method = match cgroup.filter(|cgroup| cgroup.has_freezer()) {
        Some(cgroup) => Method::Freezer(cgroup.clone()),
        None => Method::Signals(pid),
    };
    let (listener, guard) = super::monitor_socket::listen(container_dir, SOCKET)?;
    std::thread::Builder::new()
        .name("pause".into())
        .spawn(move || {
            let mut held = false;
            for client in super::monitor_socket::clients(&listener) {
                serve_client(client, &method, &mut held);
            }
        })
        .context("start the pause thread")?;
    Ok(guard)
}

/// One client: pause on request, resume on request or when it is gone;
/// hold or release for `strata pause` and `unpause`.
fn serve_client(client: UnixStream, method: &Method, held: &mut bool) {
    let Ok(reader) = client.try_clone() else {
        return;
    };
    let mut lines = BufReader::new(reader).lines();
    let mut writer = client;
    // Paused for this client, and whether it froze the container itself
    // (then it thaws it when done), or found it held.
    let mut paused = false;
    let mut froze = false;
    while let Some(Ok(line)) = lines.next() {
        let done = |result: anyhow::Result<()>, answer: &str| match result {
            Ok(()) => answer.to_owned(),
            Err(err) => format!("error: {}", crate::error_text::describe(&err)),
        };
        let answer = match (line.as_str(), paused) {
            ("pause", false) if *held => {
                paused = true;
                "paused".to_owned()
            }
            ("pause", false) => {
                let frozen = freeze(method);
                (paused, froze) = (frozen.is_ok(), frozen.is_ok());
                done(frozen, "paused")
            }
            ("resume", true) => {
                let thawed = match froze && !*held {
                    true => method.thaw(),
                    false => Ok(()),
                };
                (paused, froze) = (thawed.is_err(), froze && thawed.is_err());
                done(thawed, "resumed")
            }
            ("hold", _) if *held => "held".to_owned(),
            ("hold", _) => {
                // A commit's freeze (this client's) becomes the hold.
                let frozen = if froze { Ok(()) } else { freeze(method) };
                *held = frozen.is_ok();
                froze = false;
                done(frozen, "held")
            }
            ("release", _) => {
                // Thawed whether held or not: a `pause` whose client died
                // before it asked for the hold recorded the container
                // paused, and `unpause` must still succeed.
                let thawed = method.thaw();
                *held = *held && thawed.is_err();
                done(thawed, "released")
            }
            (other, _) => format!("error: unexpected request {other:?}"),
        };
        if writeln!(writer, "{answer}").is_err() {
            break;
        }
    }
    if froze && !*held {
        if let Err(err) = method.thaw() {
            log::error!("resuming the container after its committer went away: {err:#}");
        }
    }
}

/// Freezes the container; a partial freeze (SIGSTOP of some) is undone.
fn freeze(method: &Method) -> anyhow::Result<()> {
    let frozen = method.freeze();
    if frozen.is_err() {
        let _ = method.thaw();
    }
    frozen
}

/// A container paused by its monitor for as long as this lives: dropping
/// it (or the death of this process) resumes the container.
pub struct Paused {
    stream: UnixStream,
    lines: std::io::Lines<BufReader<UnixStream>>,
}

/// Asks the monitor of the container in `container_dir` to pause it.
pub fn pause(container_dir: &Path) -> anyhow::Result<Paused> {
    let mut paused = connect(container_dir)?;
    paused.request("pause", "paused")?;
    Ok(paused)
}

/// Asks the monitor to keep the container paused until [`release`]
/// (`strata pause`).
pub fn hold(container_dir: &Path) -> anyhow::Result<()> {
    connect(container_dir)?.request("hold", "held")
}

/// Asks the monitor to let a held container run again (`strata
/// unpause`); harmless for one not held.
pub fn release(container_dir: &Path) -> anyhow::Result<()> {
    connect(container_dir)?.request("release", "released")
}

fn connect(container_dir: &Path) -> anyhow::Result<Paused> {
    let stream = super::monitor_socket::connect(container_dir, SOCKET)?;
    Ok(Paused {
        lines: BufReader::new(stream.try_clone().context("clone the socket")?).lines(),
        stream,
    })
}

impl Paused {
    fn request(&mut self, request: &str, expected: &str) -> anyhow::Result<()> {
        writeln!(self.stream, "{request}").context("write to the container's monitor")?;
        let answer = self
            .lines
            .next()
            .context("the container's monitor went away")?
            .context("read from the container's monitor")?;
        if answer != expected {
            bail!(
                "{request} the container: {}",
                answer.strip_prefix("error: ").unwrap_or(&answer)
            );
        }
        Ok(())
    }

    /// Resumes the container and waits until it runs again.
    pub fn resume(mut self) -> anyhow::Result<()> {
        self.request("resume", "resumed")
    }
}
