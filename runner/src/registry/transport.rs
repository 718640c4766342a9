//! Which registries may be spoken to without TLS: docker's rule. Loopback
//! (`localhost`, `127.0.0.0/8`, `::1`) always, and the registries named in
//! `STRATA_INSECURE_REGISTRIES` (comma-separated `host[:port]`, or a CIDR
//! block such as `10.0.0.0/8`, like docker's `insecure-registries`). For
//! those, TLS is still tried first and plain HTTP only when it fails.

use std::net::IpAddr;

/// The environment variable that lists insecure registries.
pub const INSECURE_REGISTRIES_ENV: &str = "STRATA_INSECURE_REGISTRIES";

/// Whether `host[:port]` may be reached over plain HTTP.
pub fn plain_http_allowed(host: &str) -> bool {
    let listed = std::env::var(INSECURE_REGISTRIES_ENV).unwrap_or_default();
    allowed_by(host, &listed)
}

fn allowed_by(host_port: &str, listed: &str) -> bool {
    let host = host_only(host_port);
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    listed
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            entry == host_port
                || (!entry.contains(':') && entry == host)
                || ip.is_some_and(|ip| in_cidr(ip, entry))
        })
}

/// `host` of `host[:port]`, keeping an IPv6 address's brackets.
fn host_only(host_port: &str) -> &str {
    if host_port.starts_with('[') {
        return host_port
            .find(']')
            .map_or(host_port, |end| &host_port[..=end]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_may_use_plain_http() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.2.1",
            "[::1]:5000",
        ] {
            assert!(allowed_by(host, ""), "{host}");
        }
    }

    #[test]
    fn other_registries_need_tls_unless_listed() {
        assert!(!allowed_by("registry-1.docker.io", ""));
        assert!(!allowed_by("10.1.2.3:5000", ""));
        assert!(!allowed_by("localhost.example.com", ""));
        assert!(allowed_by("myreg:5000", "other, myreg:5000"));
        assert!(allowed_by("myreg:5000", "myreg"));
        assert!(!allowed_by("myreg:5001", "myreg:5000"));
        assert!(allowed_by("10.1.2.3:5000", "10.0.0.0/8"));
        assert!(!allowed_by("11.1.2.3:5000", "10.0.0.0/8"));
    }
}
