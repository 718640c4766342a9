//! A container's network, as docker's and podman's defaults have it.
//!
//! Every container but `--network host` gets a network namespace of its
//! own (made with its pid namespace, see container/namespaces.rs). For
//! `bridge`, the default, the monitor then connects it, between the fork
//! of the container's first process and its release, so the user's command
//! starts with its network up:
//!
//! - root (`bridge.rs`, `lease.rs`, `netlink.rs`, `proxy.rs`): a veth pair
//!   from the `strata0` bridge (made once, with NAT) to the container's
//!   `eth0`, an address leased on the bridge's subnet, a default route via
//!   the bridge, and a userland proxy in the monitor per `-p`;
//! - rootless (`pasta.rs`): pasta, as rootless podman runs it, which also
//!   forwards the `-p` ports.
//!
//! What the container got is written to `network.json` in its directory
//! for `inspect` and `ps`, and undone when the container ends: the lease
//! is freed, pasta killed, the file removed; the veth pair goes with the
//! namespace.

mod bridge;
mod etc;
mod lease;
mod netlink;
pub mod options;
mod pasta;
mod proxy;

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use layerdb::PortBinding;
use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub use etc::{host_network_hosts, hosts, resolv_conf};
pub use options::Mode;

use crate::container::Spec;
use lease::Lease;
use netlink::Netlink;

/// The network part of a container's start parameters.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    pub mode: Mode,
    /// `-p`, with host port 0 where any free port will do.
    pub ports: Vec<PortBinding>,
    /// `--add-host`, as `NAME:IP`.
    pub extra_hosts: Vec<String>,
    /// The container's directory: `network.json` and pasta's files go there.
    pub dir: PathBuf,
}

/// What a running container's network is, as `inspect` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Empty behind pasta: the container has the host's addresses.
    pub ip_address: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub mac_address: String,
    /// The host's end of the veth pair.
    pub host_interface: String,
    /// The published ports with the host ports actually bound.
    pub ports: Vec<PortBinding>,
}

fn settings_file(dir: &Path) -> PathBuf {
    dir.join("network.json")
}

/// What a container's network is now, from its directory `dir`: empty
/// unless it runs.
pub fn settings_of(dir: &layerdb::ContainerDir, rec: &layerdb::ContainerRecord) -> Settings {
    if !rec.state.is_running() {
        return Settings::default();
    }
    fs::read(settings_file(dir.path()))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// What is undone when the container ends (on drop, in the monitor),
/// in this order.
#[derive(Default)]
pub struct Attachment {
    settings_file: Option<SettingsFile>,
    _pasta: Option<pasta::Pasta>,
    _lease: Option<Lease>,
}

/// `network.json`, removed on drop: a stopped container has no network.
struct SettingsFile(PathBuf);

impl Drop for SettingsFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Connects the network namespace of the container's parked first
/// process `pid`. Runs in the monitor, before any thread starts: the root
/// path enters the container's namespace for a moment.
pub fn attach(spec: &Spec, pid: Pid, rootless: bool) -> anyhow::Result<Attachment> {
    let network = &spec.network;
    if network.mode != Mode::Bridge {
        return Ok(Attachment::default());
    }
    let netns = File::open(format!("/proc/{pid}/ns/net"))
        .context("open the container's network namespace")?;
    if rootless {
        let (pasta, ports) = pasta::start(&netns, &network.ports, &network.dir)?;
        let settings = Settings {
            ports,
            ..Settings::default()
        };
        let mut attachment = Attachment {
            _pasta: Some(pasta),
            ..Attachment::default()
        };
        attachment.settings_file = Some(write_settings(&network.dir, &settings)?);
        return Ok(attachment);
    }
    attach_to_bridge(spec, &netns)
}

fn attach_to_bridge(spec: &Spec, netns: &File) -> anyhow::Result<Attachment> {
    let network = &spec.network;
    let mut host = Netlink::open().context("open a netlink socket")?;
    let (bridge, lease) = {
        let locked = bridge::lock()?;
        let bridge = bridge::ensure(&locked, &mut host)?;
        let lease = Lease::take(
            &locked.dir,
            &bridge.subnet,
            spec.id.as_str(),
            std::process::id(),
        )?;
        (bridge, lease)
    };
    let address = lease.address;
    let mut attachment = Attachment {
        _lease: Some(lease),
        ..Attachment::default()
    };
    // The host ports first: one that is taken fails the start before
    // anything else is made.
    let listeners = network
        .ports
        .iter()
        .map(proxy::bind)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let host_interface = veth_name(spec.id.as_str());
    let mac = mac_of(address);
    host.add_veth(&host_interface, bridge.index, "eth0", mac, netns.as_fd())
        .context("create the container's veth pair")?;
    let (prefix, gateway) = (bridge.subnet.prefix, bridge.subnet.gateway());
    in_namespace(netns, || {
        let mut inside = Netlink::open()?;
        let eth0 = nix::net::if_::if_nametoindex("eth0")?;
        // No IPv6 on the bridge: the container takes no router
        // advertisement another container sends (see `disable_ipv6`).
        bridge::disable_ipv6("eth0").map_err(std::io::Error::other)?;
        inside.add_address(eth0, address, prefix)?;
        inside.set_up(eth0)?;
        inside.add_default_route(gateway, eth0)
    })
    .context("configure the container's eth0")?;
    if let Some(hosts_file) = &spec.etc_files.hosts {
        let extra = parsed_extra_hosts(&network.extra_hosts);
        fs::write(hosts_file, hosts(&spec.hostname, &extra, Some(address)))
            .with_context(|| format!("write {}", hosts_file.display()))?;
    }
    let mut ports = Vec::new();
    for (listener, bound) in listeners {
        let target = SocketAddr::from((address, bound.container_port));
        proxy::serve(listener, target).context("start a port proxy thread")?;
        ports.push(bound);
    }
    let settings = Settings {
        ip_address: address.to_string(),
        prefix_len: prefix,
        gateway: gateway.to_string(),
        mac_address: mac_text(mac),
        host_interface,
        ports,
    };
    attachment.settings_file = Some(write_settings(&network.dir, &settings)?);
    Ok(attachment)
}

/// Frees what a container whose monitor died may have left: its address
/// lease (the veth pair went with its namespace, pasta with the monitor).
pub fn forget(id: &str) {
    lease::forget(&bridge::state_dir(), id);
}

/// `--add-host` entries, checked when the container was created.
pub fn parsed_extra_hosts(entries: &[String]) -> Vec<(String, std::net::IpAddr)> {
    entries
        .iter()
        .filter_map(|entry| options::parse_extra_host(entry).ok())
        .collect()
}

fn write_settings(dir: &Path, settings: &Settings) -> anyhow::Result<SettingsFile> {
    let file = settings_file(dir);
    fs::write(&file, serde_json::to_vec(settings)?)
        .with_context(|| format!("write {}", file.display()))?;
    Ok(SettingsFile(file))
}

/// Runs `configure` with this thread in the network namespace `netns`,
/// then comes back: a netlink socket belongs to the namespace it was made
/// in. Failing to come back is an error the start cannot survive.
fn in_namespace(
    netns: &File,
    configure: impl FnOnce() -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let own = File::open("/proc/self/ns/net").context("open /proc/self/ns/net")?;
    setns(netns, CloneFlags::CLONE_NEWNET).context("enter the container's network namespace")?;
    let result = configure();
    setns(&own, CloneFlags::CLONE_NEWNET).context("return to the host's network namespace")?;
    Ok(result?)
}

/// The host end's name: `veth`, the container's short id, 4 random hex
/// digits (15 characters, the kernel's limit). Random, since the pair of
/// the container's previous start may still be on its way out: the kernel
/// removes a dead namespace's devices asynchronously.
fn veth_name(id: &str) -> String {
    let suffix: u16 = rand::random();
    format!("veth{}{suffix:04x}", &id[..7])
}

/// docker's: 02:42 and the IPv4 address. A stale neighbour entry for an
/// address handed out again then still names the right device.
fn mac_of(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x42, a, b, c, d]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_the_kernels_limit_and_macs_follow_the_address() {
        let name = veth_name(&"0123456789abcdef".repeat(4));
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("veth0123456"));
        assert_eq!(
            mac_text(mac_of(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
    }
}
