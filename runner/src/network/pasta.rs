//! The default network of a rootless container: `pasta` (Debian's passt
//! package), as rootless podman uses it. pasta joins the container's
//! network namespace, makes a tap device there with the host's addresses
//! and routes, and carries the container's traffic through ordinary
//! sockets of the user on the host: no privilege, no bridge.
//!
//! Options, and why:
//! - `-T none -U none --no-map-gw`: nothing from the container reaches the
//!   host's loopback. pasta's defaults would forward the container's
//!   connections to ports bound on the host's 127.0.0.1 (`-T auto`) and
//!   map the gateway address to the host; a service on the host's
//!   127.0.0.1 trusts whoever reaches it.
//! - `-t`/`-u`: only the ports given with `-p` (pasta's default `auto`
//!   would publish whatever the container listens on).
//! - `--netns /proc/self/fd/N`: the namespace as a descriptor the monitor
//!   opened. pasta drops capabilities before it opens the namespace, and
//!   opening another process's /proc/PID/ns/net then fails the ptrace
//!   check against the container's full set; its own fd table it may read.
//! - `--runas 0:0`: pasta runs as root of our user namespace (the user
//!   himself); its default, "nobody", may not exist there.
//! - `-f` and the monitor's parent-death signal: pasta is the monitor's
//!   child, killed when the container ends and when the monitor dies.
//! - `-P FIFO`: pasta writes its pid once the namespace is configured;
//!   the container is released only then.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _};
use layerdb::PortBinding;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

/// A running pasta, killed on drop.
pub struct Pasta {
    child: Child,
}

impl Drop for Pasta {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts pasta for the network namespace `netns` and waits until it has
/// configured it. `dir` (the container's directory) holds its fifo and log.
/// Returns the ports as published (a free host port chosen for each that
/// asked for any).
pub fn start(
    netns: &File,
    ports: &[PortBinding],
    dir: &Path,
) -> anyhow::Result<(Pasta, Vec<PortBinding>)> {
    let program = find_pasta()?;
    let published = ports
        .iter()
        .map(choose_host_port)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fifo = dir.join("pasta.pid");
    let log = dir.join("pasta.log");
    let _ = fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))
        .with_context(|| format!("mkfifo {}", fifo.display()))?;
    // Opened before pasta starts, without waiting for a writer.
    let ready: OwnedFd = nix::fcntl::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {}", fifo.display()))?;
    // The one descriptor pasta inherits: a copy without close-on-exec.
    let inherited = netns.as_fd().try_clone_to_owned()?;
    fcntl(&inherited, FcntlArg::F_SETFD(FdFlag::empty()))?;
    let mut command = Command::new(&program);
    command
        .args([
            "-f",
            "-q",
            "--runas",
            "0:0",
            "--config-net",
            "--no-netns-quit",
        ])
        .arg("--netns")
        .arg(format!("/proc/self/fd/{}", inherited.as_raw_fd()))
        .args(["-T", "none", "-U", "none", "--no-map-gw"])
        .args(port_options(&published, "tcp", "-t"))
        .args(port_options(&published, "udp", "-u"))
        .arg("-P")
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).with_context(|| format!("create {}", log.display()))?);
    crate::sys::kill_with_parent(&mut command);
    let child = command
        .spawn()
        .with_context(|| format!("run {}", program.display()))?;
    drop(inherited);
    let pasta = Pasta { child };
    wait_until_ready(&pasta, ready, &log)?;
    let _ = fs::remove_file(&fifo);
    Ok((pasta, published))
}

/// Waits for pasta's pid on the fifo, or for pasta to exit (its log then
/// says why).
fn wait_until_ready(pasta: &Pasta, ready: OwnedFd, log: &Path) -> anyhow::Result<()> {
    let exited = crate::sys::pidfd_open(nix::unistd::Pid::from_raw(pasta.child.id() as i32))
        .context("watch pasta")?;
    loop {
        let mut fds = [
            PollFd::new(ready.as_fd(), PollFlags::POLLIN),
            PollFd::new(exited.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(errno).context("wait for pasta"),
        }
        let happened = |fd: &PollFd| fd.revents().is_some_and(|events| !events.is_empty());
        if happened(&fds[0]) {
            let mut pid = [0u8; 32];
            match nix::unistd::read(ready.as_fd(), &mut pid) {
                Ok(0) => break,
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(errno) => return Err(errno).context("read pasta's pid"),
            }
        }
        if happened(&fds[1]) {
            break;
        }
    }
    let why = fs::read_to_string(log).unwrap_or_default();
    let why: Vec<&str> = why
        .lines()
        .filter(|line| !line.starts_with("Failed to send"))
        .collect();
    bail!(
        "pasta could not set up the container's network: {}",
        why.join("; ")
    )
}

fn find_pasta() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pasta"))
        .find(|candidate| candidate.is_file())
        .context("pasta not found: rootless containers get their network from it (apt-get install passt), or run with --network host or none")
}

/// A binding that asked for any host port gets a free one now: pasta
/// needs a number. (Another process may take it before pasta binds it;
/// pasta then fails and says so.)
fn choose_host_port(port: &PortBinding) -> anyhow::Result<PortBinding> {
    let mut chosen = port.clone();
    if port.host_port == 0 {
        let ip: Ipv4Addr = port.host_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let any = SocketAddr::from((ip, 0));
        chosen.host_port = if port.protocol == "udp" {
            UdpSocket::bind(any)?.local_addr()?.port()
        } else {
            TcpListener::bind(any)?.local_addr()?.port()
        };
    }
    if chosen.host_ip.is_empty() {
        chosen.host_ip = Ipv4Addr::UNSPECIFIED.to_string();
    }
    Ok(chosen)
}

/// pasta's port options for one protocol: `-t [ADDR/]HOST:CONTAINER`
/// per binding, or `-t none`.
fn port_options(ports: &[PortBinding], protocol: &str, flag: &str) -> Vec<String> {
    let specs: Vec<String> = ports
        .iter()
        .filter(|port| port.protocol == protocol)
        .map(|port| {
            let address = match port.host_ip.as_str() {
                "" | "0.0.0.0" => String::new(),
                ip => format!("{ip}/"),
            };
            format!("{address}{}:{}", port.host_port, port.container_port)
        })
        .collect();
    if specs.is_empty() {
        return vec![flag.to_owned(), "none".to_owned()];
    }
    specs
        .into_iter()
        .flat_map(|spec| [flag.to_owned(), spec])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_published_ports_are_forwarded() {
        let ports = vec![
            PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
            },
            PortBinding {
                host_ip: "0.0.0.0".into(),
                host_port: 5353,
                container_port: 53,
                protocol: "udp".into(),
            },
        ];
        assert_eq!(
            port_options(&ports, "tcp", "-t"),
            ["-t", "127.0.0.1/8080:80"]
        );
        assert_eq!(port_options(&ports, "udp", "-u"), ["-u", "5353:53"]);
        assert_eq!(port_options(&[], "tcp", "-t"), ["-t", "none"]);
    }
}
