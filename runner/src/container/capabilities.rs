//! The capabilities a container's process keeps: docker's default set of
//! 14, changed by `--cap-add`, `--cap-drop` and `--privileged` with
//! docker's rules (moby's `caps.TweakCapabilities`), then applied as
//! docker asks runc to: the bounding set is the container's set; root gets
//! it as its effective and permitted sets too, another user (`-u`) gets
//! empty ones, as execve would give it; inheritable and ambient are empty.

use std::collections::HashSet;

use anyhow::bail;
use caps::{CapSet, Capability, CapsHashSet};

use super::exit::StartError;

/// Docker's default capabilities (moby's `caps.DefaultCapabilities`).
pub const DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// What `--cap-add`/`--cap-drop` accept for "every capability".
const ALL: &str = "ALL";

/// One `--cap-add`/`--cap-drop` value, normalised as docker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    All,
    One(Capability),
}

/// A name as docker accepts it: any case, with or without `CAP_`, or ALL.
fn parse_name(name: &str) -> anyhow::Result<Named> {
    let upper = name.to_uppercase();
    if upper == ALL {
        return Ok(Named::All);
    }
    let canonical = caps::to_canonical(&upper);
    match canonical.parse::<Capability>() {
        Ok(cap) => Ok(Named::One(cap)),
        Err(_) => bail!("unknown capability: {canonical:?}"),
    }
}

fn parse_names(names: &[String]) -> anyhow::Result<Vec<Named>> {
    names.iter().map(|name| parse_name(name)).collect()
}

/// Checks the names only (for `create`, before anything is made).
pub fn check(cap_add: &[String], cap_drop: &[String]) -> anyhow::Result<()> {
    parse_names(cap_add)?;
    parse_names(cap_drop)?;
    Ok(())
}

/// The container's capability set: everything with `--privileged`; with
/// ALL added, everything but the drops; with ALL dropped, only the adds;
/// else the default set minus the drops plus the adds.
pub fn resolve(
    cap_add: &[String],
    cap_drop: &[String],
    privileged: bool,
) -> anyhow::Result<CapsHashSet> {
    if privileged {
        return Ok(caps::all());
    }
    let add = parse_names(cap_add)?;
    let drop = parse_names(cap_drop)?;
    let dropped = |cap: &Capability| drop.contains(&Named::One(*cap));
    let added = || {
        add.iter().filter_map(|named| match named {
            Named::One(cap) => Some(*cap),
            Named::All => None,
        })
    };
    let set: CapsHashSet = if add.contains(&Named::All) {
        caps::all()
            .into_iter()
            .filter(|cap| !dropped(cap))
            .collect()
    } else if drop.contains(&Named::All) {
        added().collect()
    } else {
        DEFAULT
            .into_iter()
            .filter(|cap| !dropped(cap))
            .chain(added())
            .collect()
    };
    Ok(set)
}

/// Step 1, still as root with every capability: the bounding set becomes
/// `keep` (what this kernel supports of it), ambient is cleared, and the
/// permitted set survives the switch to another user, so that the seccomp
/// filter can still be loaded after it (see [`raise_for_setup`]).
pub fn limit_bounding(keep: &CapsHashSet) -> Result<(), StartError> {
    let error = |what: &str, err: caps::errors::CapsError| {
        StartError::other(format!("capabilities: {what}: {err}"))
    };
    let bounding = caps::read(None, CapSet::Bounding).map_err(|err| error("read bounding", err))?;
    for cap in bounding.difference(keep) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|err| error("drop bounding", err))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|err| error("clear ambient", err))?;
    caps::securebits::set_keepcaps(true).map_err(|err| error("keep across setuid", err))
}

/// Step 2, after the switch to the container's user: the kernel cleared
/// the effective set of a user other than root; we take it back from the
/// permitted set for the last setup steps (loading seccomp needs
/// CAP_SYS_ADMIN unless no_new_privs is set).
pub fn raise_for_setup() -> Result<(), StartError> {
    let error =
        |err: caps::errors::CapsError| StartError::other(format!("capabilities: raise: {err}"));
    caps::securebits::set_keepcaps(false).map_err(error)?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(error)?;
    caps::set(None, CapSet::Effective, &permitted).map_err(error)
}

/// What the process keeps once set up: root keeps `keep` (as far as the
/// bounding set has it) as its effective and permitted sets, another user
/// none, as execve would give it.
pub fn final_set(keep: &CapsHashSet, root: bool) -> Result<CapsHashSet, StartError> {
    if !root {
        return Ok(HashSet::new());
    }
    let bounding = caps::read(None, CapSet::Bounding)
        .map_err(|err| StartError::other(format!("capabilities: read bounding: {err}")))?;
    Ok(keep.intersection(&bounding).copied().collect())
}

/// Step 3, right before execve: the [`final_set`] as effective and
/// permitted, inheritable emptied.
pub fn set_final(kept: &CapsHashSet) -> Result<(), StartError> {
    let error =
        |err: caps::errors::CapsError| StartError::other(format!("capabilities: set: {err}"));
    caps::clear(None, CapSet::Inheritable).map_err(error)?;
    caps::set(None, CapSet::Effective, kept).map_err(error)?;
    caps::set(None, CapSet::Permitted, kept).map_err(error)
}

/// The set as the kernel's bit mask (what /proc/PID/status shows).
#[cfg(test)]
fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |mask, cap| mask | cap.bitmask())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn default_set_is_dockers_mask() {
        let set = resolve(&[], &[], false).expect("no names");
        assert_eq!(mask(&set), 0xa80425fb);
    }

    #[test]
    fn names_are_case_insensitive_with_or_without_cap_prefix() {
        let set = resolve(&strings(&["sys_admin", "CAP_net_admin"]), &[], false).expect("known");
        assert!(set.contains(&Capability::CAP_SYS_ADMIN));
        assert!(set.contains(&Capability::CAP_NET_ADMIN));
        let set = resolve(&[], &strings(&["chown", "Cap_Kill"]), false).expect("known");
        assert!(!set.contains(&Capability::CAP_CHOWN));
        assert!(!set.contains(&Capability::CAP_KILL));
        assert_eq!(set.len(), 12);
    }

    #[test]
    fn dropping_all_keeps_only_the_added_ones() {
        let set = resolve(&strings(&["NET_ADMIN"]), &strings(&["all"]), false).expect("known");
        assert_eq!(set, [Capability::CAP_NET_ADMIN].into_iter().collect());
    }

    #[test]
    fn adding_all_keeps_everything_but_the_drops() {
        let set = resolve(&strings(&["ALL"]), &strings(&["MKNOD"]), false).expect("known");
        assert_eq!(set.len(), caps::all().len() - 1);
        assert!(!set.contains(&Capability::CAP_MKNOD));
    }

    #[test]
    fn privileged_gets_every_capability() {
        let set = resolve(&[], &strings(&["ALL"]), true).expect("known");
        assert_eq!(set, caps::all());
    }

    #[test]
    fn unknown_names_get_dockers_error() {
        let err = resolve(&strings(&["FOO"]), &[], false).expect_err("unknown");
        assert_eq!(err.to_string(), "unknown capability: \"CAP_FOO\"");
        assert!(check(&[], &strings(&["cap_bar"])).is_err());
    }
}
