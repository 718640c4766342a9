//! A container's privileges: the options recorded at create time
//! ([`SecurityOptions`], as given) resolved into what its processes get
//! at every start and exec ([`Security`]).
//!
//! `--security-opt` takes docker's values: `seccomp=unconfined`,
//! `seccomp=PROFILE.json` (read when the container is created, kept in its
//! record), `no-new-privileges[=true|false]` (also with `:`), and
//! `apparmor=`/`label=`, accepted without effect as on a host with neither
//! AppArmor nor SELinux.

use anyhow::{bail, Context as _};
use caps::CapsHashSet;
pub use layerdb::SecurityOptions;

use super::capabilities;
use super::seccomp::{self, Seccomp};

/// What a container process runs with.
#[derive(Debug, Clone)]
pub struct Security {
    pub capabilities: CapsHashSet,
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
}

/// One `--security-opt`, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Opt<'a> {
    SeccompUnconfined,
    SeccompFile(&'a str),
    NoNewPrivileges(bool),
    /// apparmor= or label=: no effect here.
    Ignored,
}

/// docker's split: `key=value`, else `key:value`, else the bare
/// `no-new-privileges`.
fn parse_opt(opt: &str) -> anyhow::Result<Opt<'_>> {
    let invalid = || anyhow::anyhow!("invalid --security-opt: {opt:?}");
    let (key, value) = match opt.split_once('=').or_else(|| opt.split_once(':')) {
        Some(pair) => pair,
        None if opt == "no-new-privileges" => return Ok(Opt::NoNewPrivileges(true)),
        None => return Err(invalid()),
    };
    match (key, value) {
        ("seccomp", "unconfined") => Ok(Opt::SeccompUnconfined),
        ("seccomp", "") => Err(invalid()),
        ("seccomp", path) => Ok(Opt::SeccompFile(path)),
        ("no-new-privileges", "true") => Ok(Opt::NoNewPrivileges(true)),
        ("no-new-privileges", "false") => Ok(Opt::NoNewPrivileges(false)),
        ("apparmor" | "label", _) => Ok(Opt::Ignored),
        _ => Err(invalid()),
    }
}

/// The record's options from the run/create flags: names and values
/// checked, a seccomp profile file read and checked. Errors are docker's.
pub fn options_from_flags(
    cap_add: &[String],
    cap_drop: &[String],
    privileged: bool,
    security_opt: &[String],
) -> anyhow::Result<SecurityOptions> {
    capabilities::check(cap_add, cap_drop)?;
    let mut seccomp_profile = None;
    for opt in security_opt {
        if let Opt::SeccompFile(path) = parse_opt(opt)? {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("opening seccomp profile ({path}) failed"))?;
            seccomp_profile = Some(json);
        }
    }
    let options = SecurityOptions {
        cap_add: cap_add.to_vec(),
        cap_drop: cap_drop.to_vec(),
        privileged,
        security_opt: security_opt.to_vec(),
        seccomp_profile,
        read_only_rootfs: false,
    };
    if options.seccomp_profile.is_some() {
        // A profile of the user's: compiled now, so that what libseccomp
        // refuses fails the create, not a later start (and is cached).
        Prepared::new(&options)?;
    } else {
        Security::resolve(&options)?;
    }
    Ok(options)
}

/// A container process's privileges, ready before it is forked: the
/// process itself then only applies them (no JSON, no libseccomp).
#[derive(Debug)]
pub struct Prepared {
    pub capabilities: CapsHashSet,
    pub no_new_privileges: bool,
    /// The seccomp program (BPF instructions); `None`: unconfined.
    pub filter: Option<Vec<u8>>,
}

impl Prepared {
    /// Resolves the options and compiles (or finds in the cache) the
    /// seccomp program.
    pub fn new(options: &SecurityOptions) -> anyhow::Result<Prepared> {
        let security = Security::resolve(options)?;
        let filter = match &security.seccomp {
            Seccomp::Unconfined => None,
            Seccomp::Profile(profile) => {
                let cache = crate::runtime::base_dir()
                    .ok()
                    .map(|base| seccomp::cache_dir(&base));
                Some(seccomp::program(
                    cache.as_deref(),
                    profile,
                    &security.capabilities,
                )?)
            }
        };
        Ok(Prepared {
            capabilities: security.capabilities,
            no_new_privileges: security.no_new_privileges,
            filter,
        })
    }
}

impl Security {
    /// What the recorded options give, as docker would: `--privileged`
    /// runs without a seccomp filter whatever else was asked.
    pub fn resolve(options: &SecurityOptions) -> anyhow::Result<Security> {
        let capabilities =
            capabilities::resolve(&options.cap_add, &options.cap_drop, options.privileged)?;
        let mut no_new_privileges = false;
        let mut seccomp = None;
        for opt in &options.security_opt {
            match parse_opt(opt)? {
                Opt::SeccompUnconfined => seccomp = Some(Seccomp::Unconfined),
                Opt::SeccompFile(path) => {
                    let Some(json) = &options.seccomp_profile else {
                        bail!("seccomp profile {path} was not recorded with the container");
                    };
                    seccomp = Some(Seccomp::from_json(json)?);
                }
                Opt::NoNewPrivileges(on) => no_new_privileges = on,
                Opt::Ignored => {}
            }
        }
        let seccomp = if options.privileged {
            Seccomp::Unconfined
        } else {
            seccomp.unwrap_or_else(Seccomp::default_profile)
        };
        Ok(Security {
            capabilities,
            no_new_privileges,
            seccomp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(security_opt: &[&str]) -> SecurityOptions {
        SecurityOptions {
            security_opt: security_opt.iter().map(|s| (*s).to_owned()).collect(),
            ..SecurityOptions::default()
        }
    }

    #[test]
    fn security_opts_take_dockers_spellings() {
        assert_eq!(
            parse_opt("no-new-privileges").ok(),
            Some(Opt::NoNewPrivileges(true))
        );
        assert_eq!(
            parse_opt("no-new-privileges:true").ok(),
            Some(Opt::NoNewPrivileges(true))
        );
        assert_eq!(
            parse_opt("no-new-privileges=false").ok(),
            Some(Opt::NoNewPrivileges(false))
        );
        assert_eq!(
            parse_opt("seccomp=unconfined").ok(),
            Some(Opt::SeccompUnconfined)
        );
        assert_eq!(
            parse_opt("seccomp:unconfined").ok(),
            Some(Opt::SeccompUnconfined)
        );
        assert_eq!(
            parse_opt("seccomp=/p.json").ok(),
            Some(Opt::SeccompFile("/p.json"))
        );
        assert_eq!(parse_opt("apparmor=unconfined").ok(), Some(Opt::Ignored));
        let err = parse_opt("bogus").expect_err("refused");
        assert_eq!(err.to_string(), "invalid --security-opt: \"bogus\"");
        assert!(parse_opt("no-new-privileges=maybe").is_err());
    }

    #[test]
    fn the_default_is_dockers_profile_without_no_new_privs() {
        let security = Security::resolve(&SecurityOptions::default()).expect("valid");
        assert!(matches!(security.seccomp, Seccomp::Profile(_)));
        assert!(!security.no_new_privileges);
        assert_eq!(security.capabilities.len(), 14);
    }

    #[test]
    fn privileged_runs_unconfined_with_every_capability() {
        let options = SecurityOptions {
            privileged: true,
            ..opts(&["no-new-privileges"])
        };
        let security = Security::resolve(&options).expect("valid");
        assert_eq!(security.seccomp, Seccomp::Unconfined);
        assert!(security.no_new_privileges);
        assert_eq!(security.capabilities, caps::all());
    }

    #[test]
    fn a_missing_profile_file_is_named() {
        let err = options_from_flags(&[], &[], false, &["seccomp=/nonexistent.json".to_owned()])
            .expect_err("refused");
        assert!(
            format!("{err:#}").starts_with("opening seccomp profile (/nonexistent.json) failed: ")
        );
    }

    #[test]
    fn unconfined_wins_when_given_last() {
        let security = Security::resolve(&opts(&["seccomp=unconfined"])).expect("valid");
        assert_eq!(security.seccomp, Seccomp::Unconfined);
    }
}
