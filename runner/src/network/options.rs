//! The network flags of `run`, checked and parsed as docker parses them:
//! `--network`, `-p`, `--dns`, `--add-host`. Pure, so every rule is
//! unit-tested.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Context as _};
use layerdb::PortBinding;

/// Which network a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A network namespace of its own on the `strata0` bridge with NAT
    /// (root), or behind pasta (rootless): docker's default.
    #[default]
    Bridge,
    /// The host's network namespace.
    Host,
    /// A network namespace of its own with only `lo`.
    None,
}

impl Mode {
    /// docker's names; `default` is docker's alias for the default network.
    /// Anything else is refused with docker's message.
    pub fn parse(name: &str) -> anyhow::Result<Mode> {
        match name {
            "bridge" | "default" => Ok(Mode::Bridge),
            "host" => Ok(Mode::Host),
            "none" => Ok(Mode::None),
            other => bail!("network {other} not found"),
        }
    }

    /// The name a record keeps and `inspect` shows as NetworkMode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Host => "host",
            Mode::None => "none",
        }
    }

    /// Whether the container gets a network namespace of its own.
    pub fn is_private(self) -> bool {
        self != Mode::Host
    }
}

/// `-p` as docker reads it: `CONTAINER`, `HOST:CONTAINER`,
/// `IP:HOST:CONTAINER` or `IP::CONTAINER`, each with an optional `/tcp` or
/// `/udp`. A missing host port means "any free port". Ranges and IPv6
/// host addresses are not supported.
pub fn parse_publish(spec: &str) -> anyhow::Result<PortBinding> {
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((ports, proto)) => (ports, proto),
        None => (spec, "tcp"),
    };
    if !matches!(protocol, "tcp" | "udp") {
        bail!("invalid proto: {protocol}");
    }
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host_port, container_port) = match parts.as_slice() {
        [container] => ("", "", *container),
        [host, container] => ("", *host, *container),
        [ip, host, container] => (*ip, *host, *container),
        _ => bail!("invalid published port {spec:?}: expected [IP:][HOST:]CONTAINER[/tcp|/udp]"),
    };
    if !host_ip.is_empty() {
        host_ip.parse::<Ipv4Addr>().with_context(|| {
            format!(
                "invalid IP address {host_ip:?} in -p {spec}: only IPv4 addresses are supported"
            )
        })?;
    }
    let container_port = port_number(container_port)
        .with_context(|| format!("invalid containerPort: {container_port}"))?;
    let host_port = if host_port.is_empty() {
        0
    } else {
        port_number(host_port).with_context(|| format!("invalid hostPort: {host_port}"))?
    };
    Ok(PortBinding {
        host_ip: host_ip.to_owned(),
        host_port,
        container_port,
        protocol: protocol.to_owned(),
    })
}

/// `--expose PORT[-PORT][/PROTO]`: the image-config keys (`80/tcp`) of
/// each port of the range.
pub fn parse_expose(spec: &str) -> anyhow::Result<Vec<String>> {
    let (ports, protocol) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    if !matches!(protocol, "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {protocol}");
    }
    let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
    let bad = || anyhow::anyhow!("invalid range format for --expose: {spec}");
    let first = port_number(first).map_err(|_| bad())?;
    let last = port_number(last).map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok((first..=last)
        .map(|port| format!("{port}/{protocol}"))
        .collect())
}

fn port_number(text: &str) -> anyhow::Result<u16> {
    if text.contains('-') {
        bail!("port ranges are not supported");
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => bail!("not a port number"),
    }
}

/// `--dns IP`: docker accepts only addresses.
pub fn check_dns(server: &str) -> anyhow::Result<()> {
    server
        .parse::<IpAddr>()
        .map(|_| ())
        .with_context(|| format!("{server} is not an ip address"))
}

/// `-h NAME`: a name /etc/hosts and /etc/hostname can hold as one word,
/// as sethostname(2) takes it: at most 64 bytes, no whitespace or control
/// byte. A line break wrote lines of the caller's choosing into the
/// container's /etc/hosts (found by a review as an attacker), as
/// `--add-host` refuses them.
pub fn check_hostname(name: &str) -> anyhow::Result<()> {
    let bad = |c: char| c.is_whitespace() || c.is_control();
    if name.len() > 64 || name.contains(bad) {
        bail!("invalid hostname {name:?}: at most 64 bytes, without spaces or control characters");
    }
    Ok(())
}

/// `--add-host NAME:IP` (IPv6 addresses keep their colons: the name ends
/// at the first one). docker's `host-gateway` is not supported.
pub fn parse_extra_host(entry: &str) -> anyhow::Result<(String, IpAddr)> {
    let Some((name, ip)) = entry.split_once(':') else {
        bail!("bad format for add-host: {entry:?}");
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("bad format for add-host: {entry:?}");
    }
    let ip = ip
        .parse::<IpAddr>()
        .with_context(|| format!("invalid IP address in add-host: {ip:?}"))?;
    Ok((name.to_owned(), ip))
}

/// docker's spelling of a binding's container side: `80/tcp`.
pub fn port_key(port: &PortBinding) -> String {
    format!("{}/{}", port.container_port, port.protocol)
}

#[cfg(test)]
mod tests {

    #[test]
    fn expose_takes_ports_and_ranges() {
        assert_eq!(parse_expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_expose("53/udp").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_expose("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        for bad in ["x", "90-80", "80/icmp", "0", ""] {
            assert!(parse_expose(bad).is_err(), "{bad}");
        }
    }
    use super::*;

    fn binding(host_ip: &str, host_port: u16, container_port: u16, protocol: &str) -> PortBinding {
        PortBinding {
            host_ip: host_ip.into(),
            host_port,
            container_port,
            protocol: protocol.into(),
        }
    }

    #[test]
    fn published_ports_take_dockers_four_shapes() {
        assert_eq!(parse_publish("80").unwrap(), binding("", 0, 80, "tcp"));
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            binding("", 8080, 80, "tcp")
        );
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp").unwrap(),
            binding("127.0.0.1", 8080, 80, "udp")
        );
        assert_eq!(
            parse_publish("127.0.0.1::80").unwrap(),
            binding("127.0.0.1", 0, 80, "tcp")
        );
    }

    #[test]
    fn bad_published_ports_are_refused_with_dockers_words() {
        let err = |spec: &str| format!("{:#}", parse_publish(spec).unwrap_err());
        assert!(err("80/sctpx").contains("invalid proto: sctpx"));
        assert!(err("8080:abc").contains("invalid containerPort: abc"));
        assert!(err("x:80").contains("invalid hostPort: x"));
        assert!(err("0:80").contains("invalid hostPort"));
        assert!(err("1:2:3:4").contains("invalid published port"));
        assert!(err("localhost:1:2").contains("invalid IP address"));
        assert!(err("8000-8010:80").contains("ranges"));
    }

    #[test]
    fn network_names_are_dockers() {
        assert_eq!(Mode::parse("bridge").unwrap(), Mode::Bridge);
        assert_eq!(Mode::parse("default").unwrap(), Mode::Bridge);
        assert_eq!(Mode::parse("host").unwrap(), Mode::Host);
        assert_eq!(Mode::parse("none").unwrap(), Mode::None);
        assert_eq!(
            Mode::parse("mynet").unwrap_err().to_string(),
            "network mynet not found"
        );
    }

    #[test]
    fn extra_hosts_and_dns_servers_must_be_addresses() {
        assert_eq!(
            parse_extra_host("db:10.0.0.5").unwrap(),
            ("db".to_string(), "10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            parse_extra_host("v6:::1").unwrap().1,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(parse_extra_host("db").is_err());
        assert!(parse_extra_host("db:host-gateway").is_err());
        assert!(check_dns("1.1.1.1").is_ok());
        assert!(check_dns("dns.example").is_err());
    }
}
