//! Mount specs: docker's `-v` and `--mount` (host paths, and volumes,
//! which `volumes.rs` keeps) and `--tmpfs`, parsed and checked before a
//! container is recorded. The record's types are layerdb's [`BindMount`] and
//! [`TmpfsMount`].

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use layerdb::{BindMount, TmpfsMount};
use nix::mount::MsFlags;

/// A `-v` value checked and made ready for the record: the source
/// resolved on the host, the target cleaned.
pub fn volume(v: &str) -> anyhow::Result<BindMount> {
    let m = parse_bind_mount(v)?;
    if m.volume.is_some() {
        return Ok(BindMount {
            target: clean_target(&m.target),
            ..m
        });
    }
    let source = std::fs::canonicalize(&m.source).with_context(|| {
        format!(
            "invalid volume specification {v:?}: source {}",
            m.source.display()
        )
    })?;
    Ok(BindMount {
        source,
        target: clean_target(&m.target),
        read_only: m.read_only,
        volume: None,
    })
}

/// A `--tmpfs DST[:OPTIONS]` value checked for the record: the target
/// absolute and allowed, every option one tmpfs takes.
pub fn tmpfs(value: &str) -> anyhow::Result<TmpfsMount> {
    let (target, options) = value.split_once(':').unwrap_or((value, ""));
    let invalid = || format!("invalid tmpfs specification '{value}'");
    if !target.starts_with('/') {
        bail!("{}: mount path must be absolute", invalid());
    }
    check_target(target).with_context(invalid)?;
    tmpfs_options(options).with_context(invalid)?;
    Ok(TmpfsMount {
        target: clean_target(target),
        options: options.to_owned(),
    })
}

/// A `--mount` value, as one of the mounts `-v` and `--tmpfs` make.
#[derive(Debug, PartialEq)]
pub enum Mount {
    Bind(BindMount),
    Tmpfs(TmpfsMount),
}

/// A `--mount` value: docker's comma-separated `key=value` fields (`type`,
/// `source`/`src`, `target`/`destination`/`dst`, `readonly`/`ro`,
/// `bind-propagation`, `tmpfs-size`, `tmpfs-mode`, `consistency`). Unlike
/// `-v`, a bind's source must exist, as docker requires.
pub fn mount(value: &str) -> anyhow::Result<Mount> {
    let invalid = |why: String| anyhow!("invalid argument \"{value}\" for \"--mount\" flag: {why}");
    let (mut kind, mut source, mut target) = ("volume".to_owned(), None, None);
    let (mut read_only, mut tmpfs_data) = (false, Vec::new());
    for field in value.split(',') {
        let (key, val) = match field.split_once('=') {
            Some((key, val)) => (key, Some(val)),
            None => (field, None),
        };
        let given = || {
            val.ok_or_else(|| invalid(format!("invalid field '{field}' must be a key=value pair")))
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => kind = given()?.to_ascii_lowercase(),
            "source" | "src" => source = Some(given()?),
            "target" | "destination" | "dst" => target = Some(given()?),
            "readonly" | "ro" => {
                // Go's ParseBool, as docker reads it.
                read_only = match val {
                    None | Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
                    Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
                    Some(other) => {
                        return Err(invalid(format!("invalid value for {key}: {other}")))
                    }
                }
            }
            // Binds are private here, as docker's default; the other
            // propagations would share the host's later mounts.
            "bind-propagation" => match given()? {
                "rprivate" | "private" => {}
                other => {
                    return Err(invalid(format!(
                        "bind-propagation {other} is not supported: binds are rprivate"
                    )))
                }
            },
            // Checked here, as docker does, not left for the kernel to
            // refuse at the start: bytes, and an octal mode.
            "tmpfs-size" => {
                let size = crate::humanize::parse_size(given()?, "--mount")?;
                tmpfs_data.push(format!("size={size}"));
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(given()?, 8)
                    .ok()
                    .filter(|mode| *mode <= 0o7777)
                    .ok_or_else(|| {
                        invalid(format!("invalid value for {key}: {}", val.unwrap_or("")))
                    })?;
                tmpfs_data.push(format!("mode={mode:o}"));
            }
            // docker accepts it and ignores it on Linux.
            "consistency" => {
                given()?;
            }
            _ => return Err(invalid(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return Err(invalid("target is required".into()));
    };
    let config = |kind: &str| format!("invalid mount config for type \"{kind}\"");
    if !target.starts_with('/') {
        bail!(
            "{}: invalid mount path: '{target}' mount path must be absolute",
            config(&kind)
        );
    }
    check_target(target).with_context(|| config(&kind))?;
    match kind.as_str() {
        "bind" => {
            if !tmpfs_data.is_empty() {
                bail!("{}: tmpfs options are for type=tmpfs", config(&kind));
            }
            let source = match source {
                Some(s) if !s.is_empty() => s,
                _ => bail!("{}: field Source must not be empty", config(&kind)),
            };
            if !source.starts_with('/') {
                bail!(
                    "{}: source {source:?} must be an absolute host path",
                    config(&kind)
                );
            }
            let source = std::fs::canonicalize(source).map_err(|_| {
                anyhow!(
                    "{}: bind source path does not exist: {source}",
                    config(&kind)
                )
            })?;
            Ok(Mount::Bind(BindMount {
                source,
                target: clean_target(target),
                read_only,
                volume: None,
            }))
        }
        "tmpfs" => {
            if source.is_some_and(|s| !s.is_empty()) {
                bail!("{}: field Source must be empty for tmpfs", config(&kind));
            }
            if read_only {
                tmpfs_data.push("ro".into());
            }
            let options = tmpfs_data.join(",");
            tmpfs_options(&options).with_context(|| config(&kind))?;
            Ok(Mount::Tmpfs(TmpfsMount {
                target: clean_target(target),
                options,
            }))
        }
        "volume" => {
            if !tmpfs_data.is_empty() {
                bail!("{}: tmpfs options are for type=tmpfs", config(&kind));
            }
            let name = source.unwrap_or_default();
            if !name.is_empty() {
                crate::volumes::check_name(name)?;
            }
            Ok(Mount::Bind(volume_mount(name, target, read_only)))
        }
        other => Err(invalid(format!(
            "invalid mount type {other:?}: bind, volume or tmpfs"
        ))),
    }
}

/// The mount flags and the tmpfs data of `--tmpfs` options: docker's
/// `noexec,nosuid,nodev`, then each option given, a later flag undoing an
/// earlier one (`exec` lifts `noexec`); `key=value` options (size, mode,
/// uid, gid, nr_inodes, nr_blocks, huge, mpol) are tmpfs's own data.
pub fn tmpfs_options(options: &str) -> anyhow::Result<(MsFlags, String)> {
    let mut flags = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut data = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        if let Some((key, value)) = option.split_once('=') {
            // Values checked here, as the kernel reads them: a bad one
            // failed only at the start, with EINVAL naming nothing, and
            // left the container made (found by a review).
            let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
            let sized = |v: &str| {
                let number = v
                    .trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T', 'p', 'P', 'e', 'E']);
                digits(number) && v.len() - number.len() <= 1
            };
            let valid = match key {
                "size" => sized(value) || value.strip_suffix('%').is_some_and(digits),
                "nr_inodes" | "nr_blocks" => sized(value),
                "mode" => {
                    !value.is_empty()
                        && value.len() <= 4
                        && value.bytes().all(|b| (b'0'..=b'7').contains(&b))
                }
                "uid" | "gid" => digits(value),
                "huge" => matches!(
                    value,
                    "never" | "always" | "within_size" | "advise" | "deny" | "force"
                ),
                "mpol" => true,
                _ => bail!("unknown tmpfs option '{option}'"),
            };
            if !valid {
                bail!("invalid value '{value}' for tmpfs option '{key}'");
            }
            data.push(option);
            continue;
        }
        let (set, flag) = match option {
            "ro" => (true, MsFlags::MS_RDONLY),
            "rw" => (false, MsFlags::MS_RDONLY),
            "noexec" => (true, MsFlags::MS_NOEXEC),
            "exec" => (false, MsFlags::MS_NOEXEC),
            "nosuid" => (true, MsFlags::MS_NOSUID),
            "suid" => (false, MsFlags::MS_NOSUID),
            "nodev" => (true, MsFlags::MS_NODEV),
            "dev" => (false, MsFlags::MS_NODEV),
            "sync" => (true, MsFlags::MS_SYNCHRONOUS),
            "async" => (false, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (true, MsFlags::MS_DIRSYNC),
            "noatime" => (true, MsFlags::MS_NOATIME),
            "atime" => (false, MsFlags::MS_NOATIME),
            "nodiratime" => (true, MsFlags::MS_NODIRATIME),
            "diratime" => (false, MsFlags::MS_NODIRATIME),
            "relatime" => (true, MsFlags::MS_RELATIME),
            "norelatime" => (false, MsFlags::MS_RELATIME),
            "strictatime" => (true, MsFlags::MS_STRICTATIME),
            _ => bail!("unknown tmpfs option '{option}'"),
        };
        flags.set(flag, set);
    }
    Ok((flags, data.join(",")))
}

/// `/a//b/./c/` as `/a/b/c`, and `/a/../b` as `/b`, as Go's filepath.Clean
/// makes docker's targets: the target is compared with change-set paths
/// and with the places no mount may go.
pub fn clean_target(target: &str) -> String {
    format!("/{}", target_parts(target).join("/"))
}

/// The components of a container path cleaned lexically, as Go's
/// filepath.Clean cleans them: no empty one, no `.`, and `..` taking back
/// the one before it (at the root, nothing).
pub fn target_parts(target: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts
}

/// A volume's mount, its source made when the container is (`name`
/// empty: an anonymous volume, named then).
pub fn volume_mount(name: &str, target: &str, read_only: bool) -> BindMount {
    BindMount {
        source: PathBuf::new(),
        target: clean_target(target),
        read_only,
        volume: Some(name.to_owned()),
    }
}

/// Parses docker's `-v` value: `HOST:DST`, `NAME:DST` (a named volume),
/// or `DST` (an anonymous one), with `:OPTIONS` after the first two; the
/// paths absolute.
fn parse_bind_mount(value: &str) -> anyhow::Result<BindMount> {
    let parts: Vec<&str> = value.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] if target.starts_with('/') => ("", *target, ""),
        // An empty source is docker's invalid spec, not an anonymous
        // volume (that is `-v /x` alone).
        ["", ..] => bail!("invalid volume specification: '{value}'"),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => bail!("invalid volume specification: '{value}'"),
    };
    let volume = match source.starts_with('/') {
        true => None,
        false if source.is_empty() => Some(String::new()),
        false => {
            crate::volumes::check_name(source)?;
            Some(source.to_owned())
        }
    };
    if !target.starts_with('/') {
        bail!("invalid volume specification: '{value}': mount path must be absolute");
    }
    let read_only = parse_volume_options(options)
        .with_context(|| format!("invalid volume specification: '{value}'"))?;
    check_target(target).with_context(|| {
        format!("invalid volume specification: '{value}': invalid mount config for type \"bind\"")
    })?;
    Ok(BindMount {
        source: PathBuf::from(source),
        target: target.to_owned(),
        read_only,
        volume,
    })
}

/// Where a volume may not go: over the root or the kernel file systems
/// the runtime mounts itself (docker refuses `/`, runc `/proc` and mounts
/// inside it; a bind over /sys or /dev would hand the container the host's).
pub fn check_target(target: &str) -> anyhow::Result<()> {
    match target_parts(target).as_slice() {
        [] => bail!("invalid specification: destination can't be '/'"),
        [top @ ("proc" | "sys" | "dev")] => {
            bail!("invalid specification: destination can't be '/{top}'")
        }
        ["proc", ..] => bail!("{target:?} cannot be mounted because it is inside /proc"),
        _ => Ok(()),
    }
}

/// Returns whether the options ask for read-only. `z`/`Z` (SELinux labels)
/// are accepted and ignored, as on a host without SELinux.
fn parse_volume_options(options: &str) -> anyhow::Result<bool> {
    let mut read_only = false;
    for option in options.split(',').filter(|option| !option.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "z" | "Z" => {}
            other => bail!("unknown option '{other}'"),
        }
    }
    Ok(read_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_option_values_are_checked_as_the_kernel_reads_them() {
        for good in [
            "size=64m",
            "size=50%",
            "size=1024",
            "mode=1777",
            "uid=1000",
            "nr_inodes=10k",
            "huge=never",
        ] {
            assert!(tmpfs_options(good).is_ok(), "{good}");
        }
        for bad in [
            "size=abc",
            "size=64mb",
            "size=",
            "mode=999",
            "mode=12345",
            "uid=-1",
            "huge=maybe",
            "nr_inodes=x",
        ] {
            let e = format!("{:#}", tmpfs_options(bad).expect_err(bad));
            assert!(e.starts_with("invalid value"), "{bad}: {e}");
        }
    }

    #[test]
    fn tmpfs_options_come_after_dockers_defaults() {
        let t = tmpfs("/run//x/:exec,size=1m,mode=1777").expect("valid");
        assert_eq!(t.target, "/run/x");
        let (flags, data) = tmpfs_options(&t.options).unwrap();
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        assert_eq!(data, "size=1m,mode=1777");
        let (flags, data) = tmpfs_options("").unwrap();
        assert_eq!(
            flags,
            MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert_eq!(data, "");
        assert!(tmpfs_options("ro,dev")
            .unwrap()
            .0
            .contains(MsFlags::MS_RDONLY));
        for refused in [
            "tmp",
            "/tmp:bogus",
            "/tmp:size",
            "/tmp:user_xattr=1",
            "/",
            "/proc/x",
        ] {
            assert!(tmpfs(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn volume_with_ro_option_is_read_only() {
        let mount = parse_bind_mount("/data:/mnt/data:ro").expect("valid spec");
        assert_eq!(
            mount,
            BindMount {
                source: "/data".into(),
                target: "/mnt/data".into(),
                read_only: true,
                volume: None,
            }
        );
    }

    #[test]
    fn volume_without_options_is_read_write() {
        let mount = parse_bind_mount("/a:/b").expect("valid spec");
        assert!(!mount.read_only);
    }

    #[test]
    fn volume_takes_names_and_refuses_relative_targets_and_unknown_options() {
        let named = parse_bind_mount("data:/b:ro").unwrap();
        assert_eq!(
            (named.volume.as_deref(), named.read_only),
            (Some("data"), true)
        );
        assert_eq!(parse_bind_mount("/a").unwrap().volume.as_deref(), Some(""));
        assert!(parse_bind_mount("da ta:/b").is_err());
        assert!(parse_bind_mount("/a:b").is_err());
        assert!(parse_bind_mount("/a:/b:bogus").is_err());
        assert!(parse_bind_mount("a").is_err());
        assert!(parse_bind_mount("/a:/b:ro:x").is_err());
        // docker's invalid spec, not an anonymous volume.
        assert!(parse_bind_mount(":/x").is_err());
        assert!(parse_bind_mount(":/x:ro").is_err());
    }

    #[test]
    fn volume_over_root_or_the_kernel_file_systems_is_refused() {
        let message = |value: &str| format!("{:#}", parse_bind_mount(value).expect_err("refused"));
        assert_eq!(
            message("/tmp:/"),
            "invalid volume specification: '/tmp:/': invalid mount config for type \"bind\": \
             invalid specification: destination can't be '/'"
        );
        assert!(message("/tmp:/proc/").ends_with("destination can't be '/proc'"));
        assert!(message("/tmp://sys").ends_with("destination can't be '/sys'"));
        assert!(message("/tmp:/dev:ro").ends_with("destination can't be '/dev'"));
        assert!(message("/tmp:/proc/sys").contains("inside /proc"));
        assert!(message("/tmp:/x/../proc").ends_with("destination can't be '/proc'"));
        assert!(message("/tmp:/..").ends_with("destination can't be '/'"));
        assert!(message("/tmp:/x/../../proc/sys").contains("inside /proc"));
        assert!(parse_bind_mount("/tmp:/dev/shm/x").is_ok());
        assert!(parse_bind_mount("/tmp:/system").is_ok());
    }

    #[test]
    fn mount_takes_dockers_fields_for_binds_and_tmpfs() {
        assert_eq!(
            mount("type=bind,src=/tmp,dst=/data//x/,readonly").unwrap(),
            Mount::Bind(BindMount {
                source: std::fs::canonicalize("/tmp").unwrap(),
                target: "/data/x".into(),
                read_only: true,
                volume: None,
            })
        );
        assert_eq!(
            mount("type=bind,source=/tmp,target=/d,ro=false,bind-propagation=rprivate").unwrap(),
            Mount::Bind(BindMount {
                source: std::fs::canonicalize("/tmp").unwrap(),
                target: "/d".into(),
                read_only: false,
                volume: None,
            })
        );
        assert_eq!(
            mount("type=tmpfs,destination=/cache,tmpfs-size=64M,tmpfs-mode=1770,readonly=true")
                .unwrap(),
            Mount::Tmpfs(TmpfsMount {
                target: "/cache".into(),
                options: "size=67108864,mode=1770,ro".into(),
            })
        );
        assert_eq!(
            mount("Type=TMPFS,dst=/c,tmpfs-size=1.5k,readonly=F").unwrap(),
            Mount::Tmpfs(TmpfsMount {
                target: "/c".into(),
                options: "size=1536".into(),
            })
        );
        let refused = |value: &str| format!("{:#}", mount(value).expect_err(value));
        assert!(refused("type=bind,src=/tmp").contains("target is required"));
        assert!(refused("type=bind,dst=/d").contains("Source must not be empty"));
        assert!(refused("type=bind,src=/no/such/dir,dst=/d").contains("does not exist"));
        assert!(refused("type=bind,src=rel,dst=/d").contains("absolute host path"));
        assert!(refused("src=/tmp,dst=/d").contains("invalid characters for a local volume name"));
        let named = mount("type=volume,src=db,dst=/d/,ro").unwrap();
        assert_eq!(named, Mount::Bind(volume_mount("db", "/d", true)));
        assert_eq!(
            mount("dst=/d").unwrap(),
            Mount::Bind(volume_mount("", "/d", false))
        );
        assert!(refused("type=bind,src=/tmp,dst=/d,colour=red").contains("unexpected key 'colour'"));
        assert!(refused("type=bind,src=/tmp,dst=/d,bind-propagation=shared").contains("rprivate"));
        assert!(refused("type=bind,src=/tmp,dst=/").contains("destination can't be '/'"));
        assert!(refused("type=bind,src=/tmp,dst=d").contains("must be absolute"));
        assert!(refused("type=tmpfs,dst=/d,tmpfs-size").contains("key=value"));
        assert!(refused("type=tmpfs,src=/tmp,dst=/d").contains("Source must be empty"));
        assert!(refused("type=npipe,dst=/d").contains("invalid mount type"));
        assert!(refused("type=tmpfs,dst=/d,tmpfs-size=64q").contains("invalid size"));
        assert!(refused("type=tmpfs,dst=/d,tmpfs-mode=999").contains("tmpfs-mode"));
        assert!(refused("type=tmpfs,dst=/d,tmpfs-size=1m,exec").contains("unexpected key 'exec'"));
        assert!(refused("type=tmpfs,dst=/x/../proc").contains("destination can't be '/proc'"));
    }

    #[test]
    fn volume_targets_are_cleaned_for_comparison() {
        assert_eq!(clean_target("/deep//data/./"), "/deep/data");
        assert_eq!(clean_target("/a/../b/c/.."), "/b");
        assert_eq!(clean_target("/../../x"), "/x");
        assert_eq!(clean_target("/"), "/");
    }
}
