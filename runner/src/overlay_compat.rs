//! fuse-overlayfs's command line, so tools that drive fuse-overlayfs
//! (containers-storage's `mount_program`, mount.fuse3, test suites) can
//! drive strata unchanged: run the strata binary under a name containing
//! `fuse-overlayfs` (a symlink), or as `strata fuse-overlayfs ARGS`.
//!
//! `PROG [SOURCE] MOUNTPOINT -o lowerdir=A:B,upperdir=U,workdir=W[,...]`
//! mounts A over B with upper U and returns once mounted (fuse-overlayfs
//! daemonizes the same way); `-f` serves in the foreground.
//!
//! Paths are taken as containers-storage gives them: relative to the
//! working directory (it runs the program in its `overlay` directory with
//! `lowerdir=l/<short id>:...`), a `:` inside a path escaped as `\:`, and
//! a `,` inside an option as `\,`.

use anyhow::{bail, Result};
use fusefs::{IdMap, MountFlags, UpperFormat, View};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct OverlayArgs {
    /// Absolute, top first.
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    /// Owners and options as the kernel is shown them.
    pub view: View,
    /// `xattr_permissions=2`: owners and modes in
    /// `user.containers.override_stat` even where the server could chown.
    pub upper_format: Option<UpperFormat>,
    /// `ro`: the mount is read-only even with an upper.
    pub read_only: bool,
    /// `nosuid`, `nodev`, `noexec`, as fuse-overlayfs hands them to the
    /// kernel (containers-storage's `mountopt` default is `nodev`).
    pub flags: MountFlags,
    /// Options strata has no use for, to warn about.
    pub ignored: Vec<String>,
}

/// Options fuse-overlayfs takes that need nothing from strata: its work
/// directory (strata copies up through temporary names in the upper
/// itself), and tuning knobs of its own (strata's threads and caches are
/// its own).
const HARMLESS: [&str; 9] = [
    "workdir",
    "noatime",
    "allow_other",
    "default_permissions",
    "threaded",
    "fast_ino",
    "writeback",
    "timeout",
    "noacl",
];

pub fn parse(args: &[String]) -> Result<OverlayArgs> {
    parse_in(args, &std::env::current_dir()?)
}

/// [`parse`] with relative paths taken against `cwd`.
fn parse_in(args: &[String], cwd: &Path) -> Result<OverlayArgs> {
    let mut out = OverlayArgs::default();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => {
                let Some(opts) = it.next() else {
                    bail!("-o needs a value")
                };
                options(&mut out, opts, cwd)?;
            }
            o if o.starts_with("-o") => options(&mut out, &o[2..], cwd)?,
            "-f" => out.foreground = true,
            "-d" | "--debug" => out.foreground = true,
            o if o.starts_with('-') => out.ignored.push(o.to_string()),
            _ => positional.push(a.clone()),
        }
    }
    out.mountpoint = match positional.as_slice() {
        [m] | [_, m] => cwd.join(m),
        _ => {
            bail!("usage: fuse-overlayfs [SOURCE] MOUNTPOINT -o lowerdir=A:B,upperdir=U,workdir=W")
        }
    };
    if out.lowers.is_empty() {
        bail!("no lowerdir given: -o lowerdir=A[:B...]");
    }
    Ok(out)
}

/// Splits `s` at unescaped `sep`; a backslash keeps the next character
/// (dropping the backslash when `unescape`).
fn split_escaped(s: &str, sep: char, unescape: bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if !unescape {
                cur.push(c);
            }
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts.retain(|p| !p.is_empty());
    parts
}

/// A path option's value: escapes removed, relative to `cwd`.
fn path_value(value: &str, cwd: &Path) -> PathBuf {
    let unescaped: String = split_escaped(value, '\0', true).concat();
    cwd.join(unescaped)
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    match value.parse() {
        Ok(n) => Ok(n),
        Err(_) => bail!("fuse-overlayfs option {key}={value}: not a number"),
    }
}

fn flag(key: &str, value: &str) -> Result<bool> {
    Ok(number::<u32>(key, value)? != 0)
}

fn options(out: &mut OverlayArgs, opts: &str, cwd: &Path) -> Result<()> {
    for opt in split_escaped(opts, ',', false) {
        let (key, value) = opt.split_once('=').unwrap_or((&opt, ""));
        let v = &mut out.view;
        match key {
            "lowerdir" => out.lowers.extend(
                split_escaped(value, ':', false)
                    .iter()
                    .map(|l| path_value(l, cwd)),
            ),
            "upperdir" => out.upper = Some(path_value(value, cwd)),
            "uidmapping" => {
                v.uids.ranges = IdMap::parse_ranges(value).map_err(anyhow::Error::msg)?
            }
            "gidmapping" => {
                v.gids.ranges = IdMap::parse_ranges(value).map_err(anyhow::Error::msg)?
            }
            "squash_to_root" => {
                v.uids.squash = Some(v.uids.squash.unwrap_or(0));
                v.gids.squash = Some(v.gids.squash.unwrap_or(0));
            }
            // Higher precedence than squash_to_root, in either order.
            "squash_to_uid" => v.uids.squash = Some(number(key, value)?),
            "squash_to_gid" => v.gids.squash = Some(number(key, value)?),
            "static_nlink" => v.static_nlink = true,
            "noxattrs" => v.xattrs = !flag(key, value)?,
            "fsync" => v.fsync = flag(key, value)?,
            "volatile" => v.fsync = false,
            "xattr_permissions" => match value {
                "0" => out.upper_format = None,
                "2" => out.upper_format = Some(UpperFormat::Rootless),
                // 1 keeps them in a privileged xattr of fuse-overlayfs's
                // own, which nothing else reads.
                _ => out.ignored.push(opt.to_string()),
            },
            // The kernel flags, the last of each pair winning, as mount(8).
            "ro" | "rw" => out.read_only = key == "ro",
            "nosuid" | "suid" => out.flags.nosuid = key == "nosuid",
            "nodev" | "dev" => out.flags.nodev = key == "nodev",
            "noexec" | "exec" => out.flags.noexec = key == "noexec",
            k if HARMLESS.contains(&k) => {}
            _ => out.ignored.push(opt.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn paths(a: &[&str]) -> Vec<PathBuf> {
        a.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn kernel_flags_are_kept_the_last_of_each_pair_winning() {
        let a = parse_in(
            &strings(&[
                "/m",
                "-o",
                "lowerdir=/a,nosuid,suid,nodev,ro",
                "-o",
                "noexec,rw,ro",
            ]),
            Path::new("/"),
        )
        .unwrap();
        assert!(a.read_only);
        let want = MountFlags {
            nosuid: false,
            nodev: true,
            noexec: true,
        };
        assert_eq!(a.flags, want);
        assert!(a.ignored.is_empty(), "{:?}", a.ignored);
    }

    #[test]
    fn containers_storage_style_arguments_are_understood() {
        let a = parse_in(
            &strings(&[
                "overlay",
                "/m",
                "-o",
                "lowerdir=/a:/b,upperdir=/u,workdir=/w,context=x",
            ]),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(a.lowers, paths(&["/a", "/b"]));
        assert_eq!(a.upper, Some(PathBuf::from("/u")));
        assert_eq!(a.mountpoint, PathBuf::from("/m"));
        assert_eq!(a.ignored, strings(&["context=x"]));
        assert!(!a.foreground);
    }

    #[test]
    fn relative_and_escaped_paths_are_resolved() {
        let a = parse_in(
            &strings(&[
                "-o",
                r"lowerdir=l/AB:/x\:y:l/C\,D,upperdir=../u\:1",
                "merged",
            ]),
            Path::new("/s/overlay"),
        )
        .unwrap();
        assert_eq!(
            a.lowers,
            paths(&["/s/overlay/l/AB", "/x:y", "/s/overlay/l/C,D"])
        );
        assert_eq!(a.upper, Some(PathBuf::from("/s/overlay/../u:1")));
        assert_eq!(a.mountpoint, PathBuf::from("/s/overlay/merged"));
    }

    #[test]
    fn id_and_attribute_options_shape_the_view() {
        let a = parse_in(
            &strings(&[
                "/m",
                "-o",
                "lowerdir=/a,uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1",
                "-o",
                "squash_to_root,squash_to_gid=5,static_nlink,noxattrs=1,volatile",
            ]),
            Path::new("/"),
        )
        .unwrap();
        let v = &a.view;
        assert_eq!(v.uids.ranges.len(), 2);
        assert_eq!((v.uids.squash, v.gids.squash), (Some(0), Some(5)));
        assert!(v.static_nlink && !v.xattrs && !v.fsync);
        assert!(a.ignored.is_empty());
        let a = parse_in(
            &strings(&["/m", "-o", "lowerdir=/a,xattr_permissions=2"]),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(a.upper_format, Some(UpperFormat::Rootless));
        let bad = parse_in(
            &strings(&["/m", "-o", "lowerdir=/a,uidmapping=0:1"]),
            Path::new("/"),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn a_mountpoint_and_a_lowerdir_are_required() {
        assert!(parse(&strings(&["-o", "lowerdir=/a"])).is_err());
        assert!(parse(&strings(&["/m", "-o", "upperdir=/u"])).is_err());
        let a = parse(&strings(&["-f", "/m", "-olowerdir=/a"])).unwrap();
        assert!(a.foreground && a.upper.is_none());
    }
}
