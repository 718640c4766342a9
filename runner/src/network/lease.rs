//! Addresses on the bridge, one lease file per address in use:
//! `/run/strata/network/leases/<ip>` holding `<container id> <monitor pid>`.
//!
//! The bridge is the host's, shared by every store on it (each test has a
//! store of its own), so the leases live beside it in /run rather than in
//! a store; both go at a reboot. Leases are taken under the network
//! directory's flock, so concurrent runs never share an address. A monitor
//! frees its lease when its container exits; one killed before that
//! leaves a lease whose pid is gone, taken back by the next allocation.
//! Addresses are handed out round-robin after the last one given, as
//! docker does, so a just-freed address is not reused at once.

use std::fs;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::bridge::Subnet;

/// An address held for a container until dropped.
pub struct Lease {
    pub address: Ipv4Addr,
    file: PathBuf,
    holder: String,
}

impl Lease {
    /// The first free address after the last one given. Call with the
    /// network directory locked.
    pub fn take(dir: &Path, subnet: &Subnet, id: &str, pid: u32) -> anyhow::Result<Lease> {
        let leases = dir.join("leases");
        fs::create_dir_all(&leases).with_context(|| format!("create {}", leases.display()))?;
        let last_file = dir.join("last-lease");
        let last = fs::read_to_string(&last_file)
            .ok()
            .and_then(|text| text.trim().parse::<Ipv4Addr>().ok());
        let holder = format!("{id} {pid}");
        for address in subnet.hosts_after(last) {
            let file = leases.join(address.to_string());
            if !is_free(&file) {
                continue;
            }
            fs::write(&file, &holder).with_context(|| format!("write {}", file.display()))?;
            let _ = fs::write(&last_file, address.to_string());
            return Ok(Lease {
                address,
                file,
                holder,
            });
        }
        bail!(
            "no free address left on the strata0 bridge ({}): every one is leased in {}",
            subnet,
            leases.display()
        )
    }
}

/// Free: no lease, or one whose monitor is gone.
fn is_free(file: &Path) -> bool {
    match fs::read_to_string(file) {
        Err(err) => err.kind() == ErrorKind::NotFound,
        Ok(text) => text
            .split_whitespace()
            .nth(1)
            .and_then(|pid| pid.parse::<i32>().ok())
            .is_none_or(|pid| !crate::liveness::process_alive(pid)),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Only our own: a lease reclaimed after we were presumed dead is
        // another container's now.
        if fs::read_to_string(&self.file).is_ok_and(|text| text == self.holder) {
            let _ = fs::remove_file(&self.file);
        }
    }
}

/// Frees the leases still naming container `id`: its monitor was killed
/// before it could (`rm` calls this). Nothing to do for rootless users.
pub fn forget(dir: &Path, id: &str) {
    let Ok(entries) = fs::read_dir(dir.join("leases")) else {
        return;
    };
    for entry in entries.flatten() {
        let holder = fs::read_to_string(entry.path()).unwrap_or_default();
        if holder.split_whitespace().next() == Some(id) {
            let _ = fs::remove_file(entry.path());
        }
    }
}
