//! The container's seccomp filter: docker's default profile unless
//! `--security-opt seccomp=unconfined|FILE` says otherwise, compiled with
//! libseccomp for the container's capabilities, architecture and kernel,
//! and loaded as the last step before execve.
//!
//! The rules follow moby's profile semantics: a rule whose action is the
//! default one is redundant and skipped; syscalls this libseccomp does not
//! know are skipped (as runc does), so a profile written for a newer kernel
//! still loads; conditions on the same argument index become one rule each
//! (libseccomp can compare an argument only once per rule), other
//! conditions are ANDed in one rule.

mod cache;
mod default;
mod profile;

use std::collections::HashSet;

use anyhow::{bail, Context as _};
use caps::{Capability, CapsHashSet};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

pub use cache::{dir as cache_dir, program};
pub use profile::Profile;

/// Which filter a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    Unconfined,
    Profile(Box<Profile>),
}

impl Seccomp {
    /// docker's default profile.
    pub fn default_profile() -> Self {
        Seccomp::Profile(Box::new(default::profile()))
    }

    /// A profile in docker's JSON format; checked in full (actions,
    /// operators, architectures) so that a bad one fails at create time.
    pub fn from_json(json: &str) -> anyhow::Result<Self> {
        let profile: Profile =
            serde_json::from_str(json).context("decoding seccomp profile failed")?;
        check(&profile).context("decoding seccomp profile failed")?;
        Ok(Seccomp::Profile(Box::new(profile)))
    }
}

/// The kernel's version as (major, minor).
type KernelVersion = (u32, u32);

/// What a rule's includes and excludes are checked against.
struct Container<'a> {
    caps: &'a HashSet<String>,
    /// docker's name for the native architecture (`amd64`, `arm64`...).
    arch: &'a str,
    kernel: KernelVersion,
}

/// Compiles `profile` for a container with capabilities `caps`.
pub fn compile(profile: &Profile, caps: &CapsHashSet) -> anyhow::Result<ScmpFilterContext> {
    let cap_names: HashSet<String> = caps.iter().map(Capability::to_string).collect();
    let native = ScmpArch::native();
    let container = Container {
        caps: &cap_names,
        arch: docker_arch_name(native),
        kernel: kernel_version()?,
    };
    let default_action = action(
        &profile.default_action,
        profile.default_errno_ret.unwrap_or(libc::EPERM as u32),
    )?;
    let mut filter = ScmpFilterContext::new(default_action).context("seccomp_init")?;
    // docker sets no_new_privs only when asked (--security-opt
    // no-new-privileges); libseccomp would set it on every load.
    filter
        .set_ctl_nnp(false)
        .context("seccomp: no_new_privs attribute")?;
    for arch in architectures(profile, native)? {
        if !filter.is_arch_present(arch).unwrap_or(false) {
            filter
                .add_arch(arch)
                .with_context(|| format!("seccomp: add architecture {arch:?}"))?;
        }
    }
    for rule in &profile.syscalls {
        if !applies(rule, &container)? {
            continue;
        }
        let errno = rule
            .errno_ret
            .or(profile.default_errno_ret)
            .unwrap_or(libc::EPERM as u32);
        let rule_action = action(&rule.action, errno)?;
        if rule_action == default_action {
            continue;
        }
        let conditions = rule
            .args
            .iter()
            .map(|arg| comparison(arg.index, &arg.op, arg.value, arg.value_two))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for name in rule.all_names() {
            // Unknown to this libseccomp (a newer syscall): skipped.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            add_rule(&mut filter, rule_action, syscall, &rule.args, &conditions)
                .with_context(|| format!("seccomp: rule for {name}"))?;
        }
    }
    Ok(filter)
}

fn add_rule(
    filter: &mut ScmpFilterContext,
    action: ScmpAction,
    syscall: ScmpSyscall,
    args: &[profile::Arg],
    conditions: &[ScmpArgCompare],
) -> anyhow::Result<()> {
    let mut indexes: Vec<u32> = args.iter().map(|arg| arg.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    if indexes.len() == args.len() {
        filter.add_rule_conditional(action, syscall, conditions)?;
    } else {
        for condition in conditions {
            filter.add_rule_conditional(action, syscall, std::slice::from_ref(condition))?;
        }
    }
    Ok(())
}

/// Checks what compile would refuse, without libseccomp state: actions,
/// operators, architectures, kernel versions.
fn check(profile: &Profile) -> anyhow::Result<()> {
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        bail!("both architectures and archMap specified");
    }
    action(&profile.default_action, libc::EPERM as u32)?;
    for arch in profile
        .architectures
        .iter()
        .chain(profile.arch_map.iter().flat_map(|map| {
            std::iter::once(&map.architecture).chain(map.sub_architectures.iter().flatten())
        }))
    {
        arch.parse::<ScmpArch>()
            .map_err(|_| anyhow::anyhow!("unknown architecture {arch:?}"))?;
    }
    for rule in &profile.syscalls {
        action(&rule.action, libc::EPERM as u32)?;
        for arg in &rule.args {
            comparison(arg.index, &arg.op, arg.value, arg.value_two)?;
        }
        for version in [&rule.includes.min_kernel, &rule.excludes.min_kernel]
            .into_iter()
            .flatten()
        {
            parse_kernel_version(version)?;
        }
    }
    Ok(())
}

/// The native architecture and, from the arch map, the ones it runs too.
fn architectures(profile: &Profile, native: ScmpArch) -> anyhow::Result<Vec<ScmpArch>> {
    let mut arches = Vec::new();
    for name in &profile.architectures {
        arches.push(parse_arch(name)?);
    }
    for map in &profile.arch_map {
        if parse_arch(&map.architecture)? != native {
            continue;
        }
        arches.push(native);
        for sub in map.sub_architectures.iter().flatten() {
            arches.push(parse_arch(sub)?);
        }
    }
    Ok(arches)
}

fn parse_arch(name: &str) -> anyhow::Result<ScmpArch> {
    name.parse()
        .map_err(|_| anyhow::anyhow!("unknown architecture {name:?}"))
}

/// Whether the rule's includes all hold and none of its excludes does.
fn applies(rule: &profile::Rule, container: &Container<'_>) -> anyhow::Result<bool> {
    let includes = &rule.includes;
    let included = includes.caps.iter().all(|cap| container.caps.contains(cap))
        && (includes.arches.is_empty() || includes.arches.iter().any(|a| a == container.arch))
        && match &includes.min_kernel {
            Some(version) => container.kernel >= parse_kernel_version(version)?,
            None => true,
        };
    let excludes = &rule.excludes;
    let excluded = excludes.caps.iter().any(|cap| container.caps.contains(cap))
        || excludes.arches.iter().any(|a| a == container.arch)
        || match &excludes.min_kernel {
            Some(version) => container.kernel >= parse_kernel_version(version)?,
            None => false,
        };
    Ok(included && !excluded)
}

/// An action by its libseccomp name; `errno` for ERRNO (and TRACE's message).
fn action(name: &str, errno: u32) -> anyhow::Result<ScmpAction> {
    let value = i32::try_from(errno).with_context(|| format!("errno {errno} out of range"))?;
    ScmpAction::from_str(name, Some(value)).map_err(|_| anyhow::anyhow!("unknown action {name:?}"))
}

fn comparison(index: u32, op: &str, value: u64, value_two: u64) -> anyhow::Result<ScmpArgCompare> {
    if index > 5 {
        bail!("syscall argument index {index} out of range (0-5)");
    }
    let (op, datum) = match op {
        "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(value), value_two),
        other => (
            other
                .parse::<ScmpCompareOp>()
                .map_err(|_| anyhow::anyhow!("unknown comparison operator {other:?}"))?,
            value,
        ),
    };
    Ok(ScmpArgCompare::new(index, op, datum))
}

/// docker compares a rule's arches with Go's name for the machine.
fn docker_arch_name(arch: ScmpArch) -> &'static str {
    match arch {
        ScmpArch::X8664 => "amd64",
        ScmpArch::X86 => "x86",
        ScmpArch::X32 => "x32",
        ScmpArch::Arm => "arm",
        ScmpArch::Aarch64 => "arm64",
        ScmpArch::Ppc64Le => "ppc64le",
        ScmpArch::Ppc64 => "ppc64",
        ScmpArch::S390 => "s390",
        ScmpArch::S390X => "s390x",
        ScmpArch::Riscv64 => "riscv64",
        ScmpArch::Loongarch64 => "loong64",
        ScmpArch::Mips64 => "mips64",
        ScmpArch::Mipsel64 => "mips64le",
        _ => "unknown",
    }
}

fn kernel_version() -> anyhow::Result<KernelVersion> {
    let uts = nix::sys::utsname::uname().context("uname")?;
    parse_kernel_version(&uts.release().to_string_lossy())
}

/// "6.18.44-fc" as (6, 18); "4.8" as (4, 8).
fn parse_kernel_version(release: &str) -> anyhow::Result<KernelVersion> {
    let mut parts = release.split(['.', '-', '+']);
    let mut number = || -> Option<u32> { parts.next()?.parse().ok() };
    match (number(), number()) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => bail!("invalid kernel version {release:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_caps() -> CapsHashSet {
        super::super::capabilities::DEFAULT.into_iter().collect()
    }

    #[test]
    fn kernel_versions_compare_by_major_then_minor() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1098").ok(), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.8").ok(), Some((4, 8)));
        assert!(parse_kernel_version("x").is_err());
        assert!((4, 10) > (4, 8));
    }

    #[test]
    fn the_default_profile_compiles_for_the_default_capabilities() {
        let Seccomp::Profile(profile) = Seccomp::default_profile() else {
            unreachable!("the default is a profile");
        };
        compile(&profile, &default_caps()).expect("compiles");
        check(&profile).expect("the default profile is valid");
    }

    #[test]
    fn capability_gated_rules_follow_the_containers_capabilities() {
        let profile = default::profile();
        let caps: HashSet<String> = ["CAP_SYS_ADMIN".to_owned()].into_iter().collect();
        let admin = Container {
            caps: &caps,
            arch: "amd64",
            kernel: (6, 1),
        };
        let none = HashSet::new();
        let plain = Container {
            caps: &none,
            arch: "amd64",
            kernel: (6, 1),
        };
        let mount_rule = |c: &Container<'_>| {
            profile
                .syscalls
                .iter()
                .filter(|rule| rule.all_names().any(|name| name == "mount"))
                .any(|rule| applies(rule, c).expect("valid"))
        };
        assert!(mount_rule(&admin));
        assert!(!mount_rule(&plain));
        let clone3_enosys = |c: &Container<'_>| {
            profile
                .syscalls
                .iter()
                .filter(|rule| rule.errno_ret == Some(libc::ENOSYS as u32))
                .any(|rule| applies(rule, c).expect("valid"))
        };
        assert!(clone3_enosys(&plain));
        assert!(!clone3_enosys(&admin));
    }

    #[test]
    fn ptrace_is_allowed_only_from_kernel_4_8() {
        let profile = default::profile();
        let none = HashSet::new();
        let on = |kernel| {
            let c = Container {
                caps: &none,
                arch: "amd64",
                kernel,
            };
            profile
                .syscalls
                .iter()
                .filter(|rule| rule.all_names().any(|name| name == "ptrace"))
                .any(|rule| applies(rule, &c).expect("valid"))
        };
        assert!(on((4, 8)));
        assert!(!on((4, 4)));
    }

    #[test]
    fn a_json_profile_in_dockers_format_is_read() {
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
            {"name":"chmod","action":"SCMP_ACT_ERRNO",
             "args":[{"index":1,"value":2048,"valueTwo":2048,"op":"SCMP_CMP_MASKED_EQ"}],
             "includes":{"minKernel":"4.8"},"excludes":{"caps":["CAP_FOWNER"]}}]}"#;
        let Seccomp::Profile(profile) = Seccomp::from_json(json).expect("valid") else {
            unreachable!("a file gives a profile");
        };
        assert_eq!(profile.syscalls[0].errno_ret, Some(13));
        assert_eq!(
            profile.syscalls[1].all_names().collect::<Vec<_>>(),
            ["chmod"]
        );
        compile(&profile, &default_caps()).expect("compiles");
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        let bad = |json: &str| format!("{:#}", Seccomp::from_json(json).expect_err("refused"));
        assert!(bad("{").starts_with("decoding seccomp profile failed: "));
        assert!(bad(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).contains("unknown action"));
        assert!(bad(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_SOMETIMES"}]}]}"#
        )
        .contains("unknown comparison operator"));
        assert!(
            bad(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}"#)
                .contains("unknown architecture")
        );
    }
}
