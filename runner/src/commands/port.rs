//! `strata port`: a running container's published ports, as docker
//! lists them (`80/tcp -> 0.0.0.0:8080`), or the host addresses of one.

use super::Ctx;
use crate::cli::PortArgs;
use crate::liveness;
use anyhow::{bail, Result};
use layerdb::PortBinding;

pub fn port(ctx: &Ctx, args: PortArgs) -> Result<i32> {
    let store = ctx.reader()?;
    let rec = liveness::container(&store, &args.container)?;
    let mut ports = crate::network::settings_of(&store.container_dir(&rec.id), &rec).ports;
    ports.sort_by(|a, b| {
        (a.container_port, &a.protocol, a.host_port).cmp(&(
            b.container_port,
            &b.protocol,
            b.host_port,
        ))
    });
    let Some(wanted) = &args.private_port else {
        for p in &ports {
            outln!("{}/{} -> {}", p.container_port, p.protocol, host_address(p))?;
        }
        return Ok(0);
    };
    let (number, protocol) = wanted.split_once('/').unwrap_or((wanted, "tcp"));
    let Ok(number) = number.parse::<u16>() else {
        bail!("Invalid port: {wanted}");
    };
    let found: Vec<&PortBinding> = ports
        .iter()
        .filter(|p| p.container_port == number && p.protocol == protocol)
        .collect();
    if found.is_empty() {
        bail!(
            "No public port '{number}/{protocol}' published for {}",
            args.container
        );
    }
    for p in found {
        outln!("{}", host_address(p))?;
    }
    Ok(0)
}

/// `IP:PORT` (`[IP]:PORT` for IPv6), every address being `0.0.0.0`.
fn host_address(p: &PortBinding) -> String {
    match p.host_ip.as_str() {
        "" => format!("0.0.0.0:{}", p.host_port),
        ip if ip.contains(':') => format!("[{ip}]:{}", p.host_port),
        ip => format!("{ip}:{}", p.host_port),
    }
}
