//! `--device HOST[:CONTAINER][:PERMISSIONS]`: host device nodes given to
//! a container, as docker gives them. Each is bound at its place in the
//! container (a node made in the container's /dev would open nothing:
//! that tmpfs is nodev) and allowed by the container's device cgroup with
//! the permissions given, `rwm` by default. A directory gives every node
//! below it (`--device /dev/snd`). The host's path is found again at each
//! start: a device gone since `create` fails the start in one line.

use std::fs;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use layerdb::DeviceMapping;

use super::cgroup::devices::{DeviceRule, DeviceType, MKNOD, READ, WRITE};

/// docker's `--device` syntax: `HOST`, `HOST:CONTAINER`, `HOST:PERMISSIONS`
/// (when the second part is only `r`, `w` and `m`) or
/// `HOST:CONTAINER:PERMISSIONS`; both paths absolute.
pub fn parse(spec: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, permissions) = match parts[..] {
        [host] => (host, host, "rwm"),
        [host, second] if is_permissions(second) => (host, host, second),
        [host, container] => (host, container, "rwm"),
        [host, container, permissions] => (host, container, permissions),
        _ => bail!("invalid device specification: {spec}"),
    };
    if !is_permissions(permissions) {
        bail!("invalid device specification: {spec}: bad mode specified: {permissions}");
    }
    for path in [host, container] {
        if !path.starts_with('/') {
            bail!("invalid device specification: {spec}: {path} is not an absolute path");
        }
    }
    if container.split('/').any(|part| part == "..") {
        bail!("invalid device specification: {spec}: {container} is not a place for a device");
    }
    crate::mount_spec::check_target(container)
        .with_context(|| format!("invalid device specification: {spec}"))?;
    Ok(DeviceMapping {
        path_on_host: host.to_string(),
        path_in_container: container.to_string(),
        cgroup_permissions: permissions.to_string(),
    })
}

/// Some of `r`, `w` and `m`, each once at most.
fn is_permissions(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 3
        && text.chars().all(|c| "rwm".contains(c))
        && text
            .chars()
            .enumerate()
            .all(|(i, c)| !text[..i].contains(c))
}

/// One node to give: where it is on the host, where it goes in the
/// container, and the cgroup rule that lets the container use it.
#[derive(Clone, Debug)]
pub struct HostDevice {
    pub host: PathBuf,
    pub target: String,
    pub rule: DeviceRule,
}

/// The nodes `mapping` gives, found on the host now (its links followed,
/// as docker follows them).
pub fn expand(mapping: &DeviceMapping) -> Result<Vec<HostDevice>> {
    let context = || {
        format!(
            "error gathering device information while adding custom device {:?}",
            mapping.path_on_host
        )
    };
    let host = fs::canonicalize(&mapping.path_on_host).with_context(context)?;
    let meta = fs::metadata(&host).with_context(context)?;
    let access = mapping
        .cgroup_permissions
        .chars()
        .map(|c| match c {
            'r' => READ,
            'w' => WRITE,
            _ => MKNOD,
        })
        .fold(0, |all, bit| all | bit);
    let mut found = Vec::new();
    if meta.is_dir() {
        walk(&host, &mapping.path_in_container, access, &mut found).with_context(context)?;
    } else {
        let Some(device) = node(&host, &meta, mapping.path_in_container.clone(), access) else {
            bail!("{}: not a device node", context());
        };
        found.push(device);
    }
    Ok(found)
}

/// Every device node below `dir`, links not followed, to go below
/// `target`.
fn walk(dir: &Path, target: &str, access: u32, found: &mut Vec<HostDevice>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let name = entry.file_name();
        let inside = format!(
            "{}/{}",
            target.trim_end_matches('/'),
            name.to_string_lossy()
        );
        if meta.is_dir() {
            walk(&path, &inside, access, found)?;
        } else if let Some(device) = node(&path, &meta, inside, access) {
            found.push(device);
        }
    }
    Ok(())
}

fn node(host: &Path, meta: &fs::Metadata, target: String, access: u32) -> Option<HostDevice> {
    let kind = match meta.file_type() {
        t if t.is_char_device() => DeviceType::Char,
        t if t.is_block_device() => DeviceType::Block,
        _ => return None,
    };
    let rdev = meta.rdev();
    Some(HostDevice {
        host: host.to_path_buf(),
        target,
        rule: DeviceRule {
            kind,
            major: Some(nix::sys::stat::major(rdev) as u32),
            minor: Some(nix::sys::stat::minor(rdev) as u32),
            access,
        },
    })
}

/// The nodes of every `--device` of the container.
pub fn expand_all(mappings: &[DeviceMapping]) -> Result<Vec<HostDevice>> {
    let mut all = Vec::new();
    for mapping in mappings {
        all.extend(expand(mapping)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: &str, container: &str, permissions: &str) -> DeviceMapping {
        DeviceMapping {
            path_on_host: host.into(),
            path_in_container: container.into(),
            cgroup_permissions: permissions.into(),
        }
    }

    #[test]
    fn the_forms_docker_takes() {
        let cases = [
            ("/dev/fuse", mapping("/dev/fuse", "/dev/fuse", "rwm")),
            ("/dev/fuse:r", mapping("/dev/fuse", "/dev/fuse", "r")),
            (
                "/dev/sda:/dev/xvdc",
                mapping("/dev/sda", "/dev/xvdc", "rwm"),
            ),
            (
                "/dev/sda:/dev/xvdc:rw",
                mapping("/dev/sda", "/dev/xvdc", "rw"),
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec).unwrap(), want, "{spec}");
        }
        for bad in [
            "dev/fuse",
            "/dev/sda:xvdc",
            "/dev/sda:/dev/xvdc:rwx",
            "/dev/sda:/dev/xvdc:rr",
            "/dev/sda:/x:r:w",
            "/dev/sda:/",
            "/dev/sda:/dev/../etc/passwd",
            "/dev/sda:/proc/sysrq-trigger",
            "/dev/sda:/dev",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_node_a_directory_and_a_file() {
        let null = expand(&mapping("/dev/null", "/dev/mine", "rw")).unwrap();
        assert_eq!(null.len(), 1);
        assert_eq!(null[0].target, "/dev/mine");
        assert_eq!(null[0].rule.kind, DeviceType::Char);
        assert_eq!((null[0].rule.major, null[0].rule.minor), (Some(1), Some(3)));
        assert_eq!(null[0].rule.access, READ | WRITE);
        assert_eq!(null[0].rule.v1_text(), "c 1:3 rw");
        // /dev/net holds tun on any host that has it; the walk keeps the
        // path below the directory.
        if Path::new("/dev/net/tun").exists() {
            let net = expand(&mapping("/dev/net", "/dev/n", "rwm")).unwrap();
            assert!(net.iter().any(|d| d.target == "/dev/n/tun"), "{net:?}");
        }
        let err = expand(&mapping("/etc/passwd", "/x", "rwm")).unwrap_err();
        assert!(format!("{err:#}").contains("not a device node"), "{err:#}");
        let err = expand(&mapping("/dev/nothing-here", "/x", "rwm")).unwrap_err();
        assert!(format!("{err:#}").contains("/dev/nothing-here"), "{err:#}");
    }
}
