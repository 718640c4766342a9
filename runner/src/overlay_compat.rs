//! fuse-overlayfs's command line, so tools that drive fuse-overlayfs
//! (containers-storage's `mount_program`, mount.fuse3, test suites) can
//! drive strata unchanged: run the strata binary under a name containing
//! `fuse-overlayfs` (a symlink), or as `strata fuse-overlayfs ARGS`.
//!
//! `PROG [SOURCE] MOUNTPOINT -o lowerdir=A:B,upperdir=U,workdir=W[,...]`
//! mounts A over B with upper U and returns once mounted (fuse-overlayfs
//! daemonizes the same way); `-f` serves in the foreground.

use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct OverlayArgs {
    pub lowers: Vec<String>,
    pub upper: Option<PathBuf>,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    /// Options strata has no use for, to warn about.
    pub ignored: Vec<String>,
}

/// Options fuse-overlayfs takes that need nothing from strata: the kernel
/// mount flags it passes through, and its work directory (strata copies up
/// through temporary names in the upper itself).
const HARMLESS: [&str; 8] = [
    "workdir",
    "rw",
    "ro",
    "suid",
    "dev",
    "exec",
    "noatime",
    "allow_other",
];

pub fn parse(args: &[String]) -> Result<OverlayArgs> {
    let mut out = OverlayArgs::default();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => {
                let Some(opts) = it.next() else {
                    bail!("-o needs a value")
                };
                options(&mut out, opts);
            }
            o if o.starts_with("-o") => options(&mut out, &o[2..]),
            "-f" => out.foreground = true,
            "-d" | "--debug" => out.foreground = true,
            o if o.starts_with('-') => out.ignored.push(o.to_string()),
            _ => positional.push(a.clone()),
        }
    }
    out.mountpoint = match positional.as_slice() {
        [m] | [_, m] => PathBuf::from(m),
        _ => {
            bail!("usage: fuse-overlayfs [SOURCE] MOUNTPOINT -o lowerdir=A:B,upperdir=U,workdir=W")
        }
    };
    if out.lowers.is_empty() {
        bail!("no lowerdir given: -o lowerdir=A[:B...]");
    }
    Ok(out)
}

fn options(out: &mut OverlayArgs, opts: &str) {
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
        match key {
            "lowerdir" => out.lowers.extend(
                value
                    .split(':')
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            ),
            "upperdir" => out.upper = Some(PathBuf::from(value)),
            k if HARMLESS.contains(&k) => {}
            _ => out.ignored.push(opt.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn containers_storage_style_arguments_are_understood() {
        let a = parse(&strings(&[
            "overlay",
            "/m",
            "-o",
            "lowerdir=/a:/b,upperdir=/u,workdir=/w,context=x",
        ]))
        .unwrap();
        assert_eq!(a.lowers, strings(&["/a", "/b"]));
        assert_eq!(a.upper, Some(PathBuf::from("/u")));
        assert_eq!(a.mountpoint, PathBuf::from("/m"));
        assert_eq!(a.ignored, strings(&["context=x"]));
        assert!(!a.foreground);
    }

    #[test]
    fn a_mountpoint_and_a_lowerdir_are_required() {
        assert!(parse(&strings(&["-o", "lowerdir=/a"])).is_err());
        assert!(parse(&strings(&["/m", "-o", "upperdir=/u"])).is_err());
        let a = parse(&strings(&["-f", "/m", "-olowerdir=/a"])).unwrap();
        assert!(a.foreground && a.upper.is_none());
    }
}
