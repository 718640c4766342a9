//! The host side of the default network for root: the `strata0` bridge,
//! docker's `docker0` under another name. Made once, by the first
//! container that needs it: a private /16 that no host route overlaps
//! (docker's pool, 172.17-31.0.0/16), the gateway address on the bridge,
//! IPv4 forwarding on, and NAT to the outside (iptables MASQUERADE of the
//! subnet leaving by any other interface, plus the FORWARD rules that let
//! its traffic through a DROP policy), with the administrator's own rules
//! ahead of them in `STRATA-USER` (docker's `DOCKER-USER`). Like docker0
//! it stays when containers go; `ip link del strata0` and the rules below
//! remove it.

use std::fmt;
use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _};
use nix::fcntl::{Flock, FlockArg};

use super::netlink::Netlink;

pub const BRIDGE: &str = "strata0";

/// Where the bridge's subnet and the address leases are kept: the
/// bridge's lifetime is the host's uptime, as /run's is.
pub fn state_dir() -> PathBuf {
    PathBuf::from("/run/strata/network")
}

/// An IPv4 subnet: the network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Subnet {
    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The gateway: the first host address, on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask() & other.mask();
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }

    /// The addresses containers may get (all but the network, the gateway
    /// and broadcast), starting after `last` and wrapping around.
    pub fn hosts_after(&self, last: Option<Ipv4Addr>) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 2;
        let end = (u32::from(self.network) | !self.mask()) - 1;
        let start = last
            .map(u32::from)
            .filter(|last| (first..=end).contains(last))
            .map_or(first, |last| if last == end { first } else { last + 1 });
        (start..=end).chain(first..start).map(Ipv4Addr::from)
    }

    pub fn parse(text: &str) -> Option<Subnet> {
        let (network, prefix) = text.trim().split_once('/')?;
        let subnet = Subnet {
            network: network.parse().ok()?,
            prefix: prefix.parse().ok().filter(|p| (8..=30).contains(p))?,
        };
        Some(subnet)
    }
}

/// The bridge as a container's network setup needs it.
pub struct Bridge {
    pub index: u32,
    pub subnet: Subnet,
}

/// The network state directory, locked: bridge creation and leases happen
/// under it, so concurrent runs neither make two bridges nor share an
/// address.
pub struct Locked {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

pub fn lock() -> anyhow::Result<Locked> {
    // Root's alone: a lock anyone could open, anyone could hold, and
    // every root `run` on the bridge would wait for them.
    let dir = state_dir();
    crate::runtime::base_dir()?;
    crate::runtime::private_dir(&dir, 0, true, "is not a directory of root's: remove it")?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join("lock"))
        .context("open the network lock")?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .context("make the network lock private")?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .context("lock the network state")?;
    Ok(Locked { dir, _lock: lock })
}

/// The bridge, made first if it does not exist.
pub fn ensure(locked: &Locked, netlink: &mut Netlink) -> anyhow::Result<Bridge> {
    let subnet_file = locked.dir.join("subnet");
    let recorded = fs::read_to_string(&subnet_file)
        .ok()
        .and_then(|text| Subnet::parse(&text));
    if let Ok(index) = nix::net::if_::if_nametoindex(BRIDGE) {
        let Some(subnet) = recorded else {
            bail!(
                "the bridge {BRIDGE} exists but {} does not say its subnet: remove the bridge (ip link del {BRIDGE}) and strata makes it again",
                subnet_file.display()
            );
        };
        // A bridge an older strata made has IPv6 on, and no user chain.
        disable_ipv6(BRIDGE)?;
        if !locked.dir.join(USER_CHAIN_MADE).exists() {
            install_user_chain(locked)?;
        }
        return Ok(Bridge { index, subnet });
    }
    let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let subnet = free_subnet(&host_routes(&routes))?;
    netlink
        .add_bridge(BRIDGE)
        .with_context(|| format!("create the bridge {BRIDGE}"))?;
    let index = nix::net::if_::if_nametoindex(BRIDGE)
        .with_context(|| format!("find the new bridge {BRIDGE}"))?;
    netlink
        .add_address(index, subnet.gateway(), subnet.prefix)
        .with_context(|| format!("give {BRIDGE} the address {}", subnet.gateway()))?;
    disable_ipv6(BRIDGE)?;
    netlink
        .set_up(index)
        .with_context(|| format!("bring {BRIDGE} up"))?;
    enable_forwarding()?;
    install_nat(&subnet)?;
    install_user_chain(locked)?;
    fs::write(&subnet_file, subnet.to_string())
        .with_context(|| format!("write {}", subnet_file.display()))?;
    Ok(Bridge { index, subnet })
}

/// The first of docker's default pool that no host route overlaps.
fn free_subnet(routes: &[Subnet]) -> anyhow::Result<Subnet> {
    (17..=31)
        .map(|second| Subnet {
            network: Ipv4Addr::new(172, second, 0, 0),
            prefix: 16,
        })
        .find(|candidate| !routes.iter().any(|route| route.overlaps(candidate)))
        .context("every subnet of 172.17.0.0/16 to 172.31.0.0/16 overlaps a route of the host: no subnet left for the strata0 bridge")
}

/// The destinations of the host's IPv4 routes (not the default route),
/// from /proc/net/route: hex in the kernel's byte order.
fn host_routes(table: &str) -> Vec<Subnet> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let hex = |i: usize| {
                fields
                    .get(i)
                    .and_then(|field| u32::from_str_radix(field, 16).ok())
                    .map(u32::from_be)
            };
            let (destination, mask) = (hex(1)?, hex(7)?);
            (mask != 0).then(|| Subnet {
                network: Ipv4Addr::from(destination),
                prefix: mask.count_ones() as u8,
            })
        })
        .collect()
}

/// Turns IPv6 off on `interface` of the calling thread's network
/// namespace: the bridge is IPv4 only, and with IPv6 on, the host took
/// router advertisements a container (CAP_NET_RAW, in docker's default
/// set) sent on the bridge, and with them an address and a default route
/// through the container: its IPv6 traffic went there (docker's
/// CVE-2020-13401). A kernel without IPv6 has nothing to turn off.
pub fn disable_ipv6(interface: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6");
    match switch_on(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        done => done.with_context(|| format!("turn IPv6 off on {interface} ({path})")),
    }
}

fn enable_forwarding() -> anyhow::Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    switch_on(path).with_context(|| format!("enable IPv4 forwarding ({path})"))
}

/// Sets the kernel switch at `path` (under /proc/sys) to 1, unless it is.
fn switch_on(path: &str) -> std::io::Result<()> {
    match fs::read_to_string(path)?.trim() {
        "1" => Ok(()),
        _ => fs::write(path, "1"),
    }
}

/// docker's rules for its bridge: MASQUERADE the subnet's traffic that
/// leaves by another interface, accept what the bridge forwards and the
/// replies to it (placed first, in case the FORWARD policy is DROP, as
/// docker sets it).
fn nat_rules(subnet: &Subnet) -> Vec<Vec<String>> {
    let rule = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let subnet = subnet.to_string();
    vec![
        rule(&[
            "-t",
            "nat",
            "POSTROUTING",
            "-s",
            &subnet,
            "!",
            "-o",
            BRIDGE,
            "-j",
            "MASQUERADE",
        ]),
        rule(&["-t", "filter", "FORWARD", "-i", BRIDGE, "-j", "ACCEPT"]),
        rule(&[
            "-t",
            "filter",
            "FORWARD",
            "-o",
            BRIDGE,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ]),
    ]
}

fn install_nat(subnet: &Subnet) -> anyhow::Result<()> {
    for rule in nat_rules(subnet) {
        // `-t TABLE CHAIN ...`
        let (table, rest) = rule.split_at(2);
        let (chain, spec) = rest.split_at(1);
        add_rule(table, "-I", &chain[0], spec)?;
    }
    Ok(())
}

/// The chain for the administrator's own rules about containers' traffic,
/// as docker's `DOCKER-USER`: FORWARD jumps to it first, so a rule there
/// (`iptables -I STRATA-USER -i strata0 -d 10.0.0.0/8 -j DROP`) comes
/// ahead of the accept rules above, which otherwise pass everything the
/// bridge forwards before any rule of the host's own.
const USER_CHAIN: &str = "STRATA-USER";

/// In the network's state directory once the user chain is in place: a
/// bridge an older strata made gets the chain at the next run, and later
/// runs spend no iptables call on it.
const USER_CHAIN_MADE: &str = "user-chain";

fn install_user_chain(locked: &Locked) -> anyhow::Result<()> {
    let filter = ["-t".to_string(), "filter".to_string()];
    let words = |w: &[&str]| w.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    // Made unless it exists; an administrator's rules in it are kept.
    let listed = iptables(&filter, "-S", USER_CHAIN, &[])?;
    if !listed.status.success() {
        let made = iptables(&filter, "-N", USER_CHAIN, &[])?;
        if !made.status.success() {
            bail!(
                "iptables -N {USER_CHAIN}: {}",
                String::from_utf8_lossy(&made.stderr).trim()
            );
        }
    }
    add_rule(&filter, "-A", USER_CHAIN, &words(&["-j", "RETURN"]))?;
    // First in FORWARD, as dockerd puts DOCKER-USER: a jump left lower
    // (the accept rules made again above it) is taken out first.
    let jump = words(&["-j", USER_CHAIN]);
    while iptables(&filter, "-D", "FORWARD", &jump)?.status.success() {}
    add_rule(&filter, "-I", "FORWARD", &jump)?;
    let made = locked.dir.join(USER_CHAIN_MADE);
    fs::write(&made, "").with_context(|| format!("write {}", made.display()))
}

/// Adds `spec` to `chain` (`-I` first or `-A` last) unless it is there.
fn add_rule(table: &[String], how: &str, chain: &str, spec: &[String]) -> anyhow::Result<()> {
    if iptables(table, "-C", chain, spec)?.status.success() {
        return Ok(());
    }
    let added = iptables(table, how, chain, spec)?;
    if !added.status.success() {
        bail!(
            "iptables {} {how} {chain} {}: {}",
            table.join(" "),
            spec.join(" "),
            String::from_utf8_lossy(&added.stderr).trim()
        );
    }
    Ok(())
}

fn iptables(
    table: &[String],
    action: &str,
    chain: &str,
    spec: &[String],
) -> anyhow::Result<std::process::Output> {
    Command::new(iptables_path())
        .args(table)
        .arg("-w")
        .arg(action)
        .arg(chain)
        .args(spec)
        .output()
        .context("run iptables for the strata0 bridge's NAT (apt-get install iptables)")
}

/// iptables lives in /usr/sbin, which an ordinary PATH may lack.
fn iptables_path() -> PathBuf {
    ["/usr/sbin/iptables", "/sbin/iptables"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("iptables"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn the_subnet_skips_those_the_host_routes_already() {
        let routes = host_routes(ROUTES);
        assert_eq!(
            routes,
            vec![
                Subnet::parse("192.0.2.0/24").unwrap(),
                Subnet::parse("172.17.0.0/16").unwrap()
            ]
        );
        assert_eq!(
            free_subnet(&routes).unwrap(),
            Subnet::parse("172.18.0.0/16").unwrap()
        );
        let everything = vec![Subnet::parse("172.16.0.0/12").unwrap()];
        assert!(free_subnet(&everything).is_err());
    }

    #[test]
    fn hosts_go_round_robin_and_skip_gateway_and_broadcast() {
        let subnet = Subnet::parse("10.1.0.0/30").unwrap();
        assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 1, 0, 1));
        let all: Vec<_> = subnet.hosts_after(None).collect();
        assert_eq!(all, vec![Ipv4Addr::new(10, 1, 0, 2)]);
        let subnet = Subnet::parse("10.1.0.0/29").unwrap();
        let after: Vec<_> = subnet
            .hosts_after(Some(Ipv4Addr::new(10, 1, 0, 4)))
            .collect();
        assert_eq!(
            after,
            [5, 6, 2, 3, 4]
                .iter()
                .map(|last| Ipv4Addr::new(10, 1, 0, *last))
                .collect::<Vec<_>>()
        );
    }
}
