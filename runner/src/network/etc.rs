//! What a container's /etc/resolv.conf and /etc/hosts say, by docker's
//! rules. Pure: the caller reads the host's file and writes the result.

use std::net::{IpAddr, Ipv4Addr};

use super::options::Mode;

/// docker's fallback when the host names no resolver a container can
/// reach (Google's public servers, as libnetwork's resolvconf package has).
const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The container's resolv.conf from the host's `host` text.
///
/// - `none`: empty, there is nothing to ask.
/// - `host`: the host's file as it is (the container shares its loopback),
///   unless `--dns` is given.
/// - `bridge`: the host's, without loopback resolvers (127.0.0.0/8, ::1:
///   in the container's namespace they are its own loopback, where nothing
///   listens, e.g. systemd-resolved's 127.0.0.53); when none is left, the
///   fallback servers, as docker does.
///
/// `--dns` servers replace the host's name servers; search and options
/// lines are kept either way.
pub fn resolv_conf(host: &str, mode: Mode, dns: &[String]) -> String {
    if mode == Mode::None {
        return String::new();
    }
    if mode == Mode::Host && dns.is_empty() {
        return host.to_owned();
    }
    let is_nameserver = |line: &str| line.split_whitespace().next() == Some("nameserver");
    let reachable = |line: &str| {
        line.split_whitespace()
            .nth(1)
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .is_some_and(|ip| !ip.is_loopback())
    };
    let kept: Vec<&str> = host
        .lines()
        .filter(|line| {
            !is_nameserver(line) || (dns.is_empty() && (mode == Mode::Host || reachable(line)))
        })
        .collect();
    if dns.is_empty()
        && kept.iter().any(|line| is_nameserver(line))
        && kept.len() == host.lines().count()
    {
        // Nothing filtered: the host's file byte for byte.
        return host.to_owned();
    }
    let mut out: String = kept.iter().map(|line| format!("{line}\n")).collect();
    let servers: Vec<&str> = if dns.is_empty() {
        if kept.iter().any(|line| is_nameserver(line)) {
            vec![]
        } else {
            FALLBACK_NAMESERVERS.to_vec()
        }
    } else {
        dns.iter().map(String::as_str).collect()
    };
    for server in servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    out
}

/// The /etc/hosts of a container on the host's network, as docker makes
/// it: the host's own, then the `--add-host` entries.
pub fn host_network_hosts(host_hosts: &str, extra: &[(String, IpAddr)]) -> String {
    let mut out = host_hosts.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

/// The container's /etc/hosts: localhost, the `--add-host` entries, and
/// the container's own name on its bridge address (docker's), or on
/// 127.0.1.1 (Debian's convention) where it has none yet.
pub fn hosts(hostname: &str, extra: &[(String, IpAddr)], address: Option<Ipv4Addr>) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    let own = address.unwrap_or(Ipv4Addr::new(127, 0, 1, 1));
    out.push_str(&format!("{own}\t{hostname}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_networks_hosts_file_is_the_hosts_own_with_added_hosts() {
        let extra = [("db".to_string(), "10.0.0.5".parse().unwrap())];
        assert_eq!(
            host_network_hosts("127.0.0.1 localhost\n127.0.1.1 vm", &extra),
            "127.0.0.1 localhost\n127.0.1.1 vm\n10.0.0.5\tdb\n"
        );
    }

    const HOST: &str = "search example.org\nnameserver 10.255.255.53\noptions ndots:2\n";
    const RESOLVED: &str = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";

    #[test]
    fn a_host_resolver_reachable_from_the_bridge_is_kept_as_is() {
        assert_eq!(resolv_conf(HOST, Mode::Bridge, &[]), HOST);
        assert_eq!(resolv_conf(HOST, Mode::Host, &[]), HOST);
        assert_eq!(resolv_conf(HOST, Mode::None, &[]), "");
    }

    #[test]
    fn loopback_resolvers_give_way_to_dockers_fallback_on_the_bridge() {
        assert_eq!(
            resolv_conf(RESOLVED, Mode::Bridge, &[]),
            "options edns0 trust-ad\nsearch .\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(RESOLVED, Mode::Host, &[]), RESOLVED);
        let mixed = "nameserver 127.0.0.53\nnameserver 192.0.2.53\n";
        assert_eq!(
            resolv_conf(mixed, Mode::Bridge, &[]),
            "nameserver 192.0.2.53\n"
        );
    }

    #[test]
    fn dns_flags_replace_the_name_servers_and_keep_search_and_options() {
        let dns = vec!["192.0.2.1".to_string(), "192.0.2.2".to_string()];
        assert_eq!(
            resolv_conf(HOST, Mode::Bridge, &dns),
            "search example.org\noptions ndots:2\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"
        );
        assert_eq!(
            resolv_conf(RESOLVED, Mode::Host, &dns),
            "options edns0 trust-ad\nsearch .\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"
        );
    }

    #[test]
    fn hosts_name_the_container_on_its_address_after_the_extra_entries() {
        let extra = vec![("db".to_string(), "10.0.0.5".parse().unwrap())];
        assert_eq!(
            hosts("box", &extra, Some(Ipv4Addr::new(172, 17, 0, 2))),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.5\tdb\n172.17.0.2\tbox\n"
        );
        assert!(hosts("box", &[], None).ends_with("127.0.1.1\tbox\n"));
    }
}
