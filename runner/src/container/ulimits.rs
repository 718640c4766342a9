//! `--ulimit NAME=SOFT[:HARD]`: resource limits of a container's processes,
//! parsed as docker parses them (go-units' `ParseUlimit`) and set with
//! setrlimit(2) in the process that execs the user's command, for `run`
//! and `exec` alike, before it gives up the capabilities that let it
//! raise a hard limit.

use anyhow::bail;
use layerdb::Ulimit;
use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};

use super::exit::StartError;

/// docker's names, and the limit each sets. Not `as`: go-units left it
/// out ("doesn't seem usable with the way Docker inits a container"), and
/// docker refuses it.
const NAMES: [(&str, Resource); 15] = [
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

fn resource(name: &str) -> Option<Resource> {
    NAMES.iter().find(|(n, _)| *n == name).map(|&(_, r)| r)
}

/// The `--ulimit` flags, a later one of a name replacing an earlier one
/// and sorted by name as docker's are; docker's message for a bad one.
pub fn parse_all(values: &[String]) -> anyhow::Result<Vec<Ulimit>> {
    let mut out: Vec<Ulimit> = Vec::new();
    for value in values {
        let u = parse(value).map_err(|reason| {
            anyhow::anyhow!("invalid argument \"{value}\" for \"--ulimit\" flag: {reason}")
        })?;
        out.retain(|o| o.name != u.name);
        out.push(u);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn parse(value: &str) -> anyhow::Result<Ulimit> {
    let Some((name, limits)) = value.split_once('=') else {
        bail!("invalid ulimit argument: {value}");
    };
    if resource(name).is_none() {
        bail!("invalid ulimit type: {name}");
    }
    let parts: Vec<&str> = limits.split(':').collect();
    if parts.len() > 2 {
        bail!("too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`");
    }
    let number = |s: &str| match s.parse::<i64>() {
        // Below -1 go-units takes it and runc fails at the start: refused
        // here, with the flag.
        Ok(n) if n >= -1 => Ok(n),
        Ok(n) => bail!("invalid ulimit value: {n} (a number, or -1 for no limit)"),
        Err(e)
            if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) =>
        {
            bail!("strconv.ParseInt: parsing \"{s}\": value out of range")
        }
        Err(_) => bail!("strconv.ParseInt: parsing \"{s}\": invalid syntax"),
    };
    // go-units reads the hard limit first.
    let hard = parts.get(1).map(|h| number(h)).transpose()?;
    let soft = number(parts[0])?;
    let hard = hard.unwrap_or(soft);
    match (soft, hard) {
        (-1, h) if h != -1 => bail!(
            "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: {h}"
        ),
        (s, h) if h != -1 && s > h => {
            bail!("ulimit soft limit must be less than or equal to hard limit: {s} > {h}")
        }
        _ => {}
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

fn as_rlim(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(RLIM_INFINITY)
}

/// Sets each limit on this process (which the command execs into). Above
/// the current hard limit needs CAP_SYS_RESOURCE in the host's user
/// namespace: a rootless container gets an error it shows, as runc does.
pub fn apply(ulimits: &[Ulimit]) -> Result<(), StartError> {
    for u in ulimits {
        // parse() let no other name into a record.
        let Some(r) = resource(&u.name) else {
            return Err(StartError::other(format!("unknown ulimit {}", u.name)));
        };
        setrlimit(r, as_rlim(u.soft), as_rlim(u.hard)).map_err(|errno| {
            StartError::from_errno(
                &format!("setting ulimit {}={}:{}", u.name, u.soft, u.hard),
                errno,
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, soft: i64, hard: i64) -> Ulimit {
        Ulimit {
            name: name.into(),
            soft,
            hard,
        }
    }

    #[test]
    fn flags_parse_as_dockers_and_a_later_name_wins() {
        let v = |s: &[&str]| parse_all(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            v(&["nofile=1024:2048"]).unwrap(),
            [one("nofile", 1024, 2048)]
        );
        assert_eq!(v(&["nproc=100"]).unwrap(), [one("nproc", 100, 100)]);
        assert_eq!(v(&["core=-1"]).unwrap(), [one("core", -1, -1)]);
        assert_eq!(v(&["memlock=-1:-1"]).unwrap(), [one("memlock", -1, -1)]);
        assert_eq!(
            v(&["nproc=5", "nofile=1:2", "core=-1", "nofile=3"]).unwrap(),
            [one("core", -1, -1), one("nofile", 3, 3), one("nproc", 5, 5)],
            "a later flag of a name wins; sorted by name"
        );
        assert_eq!(v(&["nofile=5:-1"]).unwrap(), [one("nofile", 5, -1)]);
    }

    #[test]
    fn bad_flags_get_dockers_messages() {
        let err = |s: &str| parse_all(&[s.to_string()]).unwrap_err().to_string();
        let prefix = |s: &str| format!("invalid argument \"{s}\" for \"--ulimit\" flag: ");
        for (flag, reason) in [
            ("nofile", "invalid ulimit argument: nofile"),
            ("files=1", "invalid ulimit type: files"),
            ("as=1000", "invalid ulimit type: as"),
            ("NOFILE=5", "invalid ulimit type: NOFILE"),
            (
                "nofile=1:2:3",
                "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`",
            ),
            (
                "nofile=x",
                "strconv.ParseInt: parsing \"x\": invalid syntax",
            ),
            ("nofile=x:y", "strconv.ParseInt: parsing \"y\": invalid syntax"),
            ("nofile=:5", "strconv.ParseInt: parsing \"\": invalid syntax"),
            (
                "nofile=99999999999999999999",
                "strconv.ParseInt: parsing \"99999999999999999999\": value out of range",
            ),
            (
                "nofile=2048:1024",
                "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024",
            ),
            (
                "nofile=-1:1024",
                "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: 1024",
            ),
        ] {
            assert_eq!(err(flag), prefix(flag) + reason);
        }
        assert!(err("nofile=-5").contains("invalid ulimit value: -5"));
    }
}
