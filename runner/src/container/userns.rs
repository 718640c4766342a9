//! Rootless containers: the user namespace that maps the calling user to
//! root in the container.
//!
//! When /etc/subuid and /etc/subgid grant the user ranges (and Debian's
//! `uidmap` package provides the setuid helpers `newuidmap`/`newgidmap`),
//! container ids 1.. map onto those ranges, so an image's other users
//! (apt's `_apt`, daemons) exist and a container can chown to them.
//! Without a range only one id exists: the user, as root.
//!
//! Who does what, and why:
//!
//! ```text
//! launcher (host user ns)        monitor
//!  | fork ----------------------> unshare(NEWUSER); "unshared" ->
//!  | <- reads "unshared"
//!  | writes the maps (newuidmap/newgidmap, or /proc/PID/*_map)
//!  | "mapped" ---------------------> unshare(NEWNS); mounts FUSE in it
//! ```
//!
//! The maps must be written from the parent user namespace: once a process
//! is in the new namespace, setuid-root helpers lose their power there (root
//! is not mapped), so the launcher, which stays outside, writes them.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{pipe2, Pid};

/// Where Debian's `uidmap` package installs its helpers; we look in
/// PATH first.
const HELPER_DIRS: [&str; 2] = ["/usr/bin", "/usr/sbin"];

/// One line of a uid_map/gid_map: `count` ids from `container` on map to
/// `host` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub count: u32,
}

/// How the container's ids map to the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMapping {
    /// Root is the caller; ids 1.. are the subordinate ranges, written by
    /// the setuid helpers.
    Subordinate {
        uids: Vec<IdRange>,
        gids: Vec<IdRange>,
        newuidmap: PathBuf,
        newgidmap: PathBuf,
    },
    /// Only root exists, and it is the caller. An unprivileged process may
    /// write this map itself, after denying setgroups(2).
    SingleId { uid: u32, gid: u32 },
}

/// The user namespace a rootless container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespace {
    pub mapping: IdMapping,
    /// Why the caller got a single id, when it did: shown once per run.
    pub notice: Option<String>,
}

impl UserNamespace {
    /// The namespace for the calling user, or `None` for root (who needs
    /// none: containers run with the host's ids, as docker's do).
    pub fn for_caller() -> anyhow::Result<Option<Self>> {
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            return Ok(None);
        }
        let gid = nix::unistd::getegid();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|user| user.name)
            .unwrap_or_default();
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        let subgid = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
        let helpers = find_helper("newuidmap").zip(find_helper("newgidmap"));
        Ok(Some(plan(
            &name,
            uid.as_raw(),
            gid.as_raw(),
            &subuid,
            &subgid,
            helpers,
        )))
    }

    /// Writes the maps of `pid`, a process that has just unshared its user
    /// namespace. Runs in the parent user namespace.
    fn write_maps(&self, pid: Pid) -> anyhow::Result<()> {
        match &self.mapping {
            IdMapping::Subordinate {
                uids,
                gids,
                newuidmap,
                newgidmap,
            } => {
                run_helper(newuidmap, pid, uids)?;
                run_helper(newgidmap, pid, gids)
            }
            IdMapping::SingleId { uid, gid } => {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                // The kernel refuses an unprivileged gid_map until
                // setgroups is denied (else dropping a group could grant
                // access that a negative ACL entry denies).
                write_proc(&proc.join("setgroups"), "deny")?;
                write_proc(&proc.join("uid_map"), &format!("0 {uid} 1\n"))?;
                write_proc(&proc.join("gid_map"), &format!("0 {gid} 1\n"))
            }
        }
    }
}

/// Decides the mapping from the contents of /etc/subuid and /etc/subgid.
/// `helpers` are newuidmap and newgidmap when installed.
pub fn plan(
    name: &str,
    uid: u32,
    gid: u32,
    subuid: &str,
    subgid: &str,
    helpers: Option<(PathBuf, PathBuf)>,
) -> UserNamespace {
    let owner = uid.to_string();
    let sub_uids = subordinate_ranges(subuid, name, &owner);
    let sub_gids = subordinate_ranges(subgid, name, &owner);
    let single = |why: String| {
        UserNamespace {
        mapping: IdMapping::SingleId { uid, gid },
        notice: Some(format!(
            "{why}: the container has only uid 0 and gid 0 (you); files of other owners show as nobody, and chown or -u to other users fail"
        )),
    }
    };
    let who = if name.is_empty() {
        owner
    } else {
        name.to_owned()
    };
    if sub_uids.is_empty() || sub_gids.is_empty() {
        return single(format!("no range for {who} in /etc/subuid and /etc/subgid"));
    }
    let Some((newuidmap, newgidmap)) = helpers else {
        return single("newuidmap/newgidmap not found (apt-get install uidmap)".to_owned());
    };
    UserNamespace {
        mapping: IdMapping::Subordinate {
            uids: with_root(uid, &sub_uids),
            gids: with_root(gid, &sub_gids),
            newuidmap,
            newgidmap,
        },
        notice: None,
    }
}

/// `(start, count)` ranges granted to the user (by name or by number) in
/// the text of /etc/subuid or /etc/subgid, in file order.
fn subordinate_ranges(text: &str, name: &str, uid: &str) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start: u32 = fields.next()?.parse().ok()?;
            let count: u32 = fields.next()?.parse().ok()?;
            let mine = (!name.is_empty() && owner == name) || owner == uid;
            (mine && count > 0).then_some((start, count))
        })
        .collect()
}

/// Container id 0 is the caller; the ranges follow from 1 on, in order,
/// stopping before container ids would overflow.
fn with_root(own: u32, ranges: &[(u32, u32)]) -> Vec<IdRange> {
    let mut map = vec![IdRange {
        container: 0,
        host: own,
        count: 1,
    }];
    let mut next: u32 = 1;
    for &(host, count) in ranges {
        let count = count.min(u32::MAX - next);
        if count == 0 {
            break;
        }
        map.push(IdRange {
            container: next,
            host,
            count,
        });
        next += count;
    }
    map
}

/// Whether `id` is mapped in a /proc/PID/uid_map or gid_map text.
pub fn map_text_covers(text: &str, id: u32) -> bool {
    text.lines().any(|line| {
        let fields: Vec<u64> = line
            .split_whitespace()
            .filter_map(|field| field.parse().ok())
            .collect();
        matches!(fields.as_slice(), [inside, _, count] if u64::from(id) >= *inside && u64::from(id) - inside < *count)
    })
}

fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(HELPER_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn run_helper(helper: &Path, pid: Pid, map: &[IdRange]) -> anyhow::Result<()> {
    let mut command = Command::new(helper);
    command.arg(pid.to_string());
    let mut shown = format!("{} {pid}", helper.display());
    for range in map {
        for value in [range.container, range.host, range.count] {
            command.arg(value.to_string());
            let _ = write!(shown, " {value}");
        }
    }
    let output = command
        .output()
        .with_context(|| format!("run {}", helper.display()))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}; check your ranges in /etc/subuid and /etc/subgid",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn write_proc(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("write {:?} to {}", text.trim(), path.display()))
}

/// The two pipes between the launcher and the monitor while the maps are
/// written. Made before the fork; each side keeps its ends.
pub struct MapHandshake {
    unshared: (OwnedFd, OwnedFd),
    mapped: (OwnedFd, OwnedFd),
}

/// The monitor's ends.
pub struct MonitorSide {
    unshared: OwnedFd,
    mapped: OwnedFd,
}

/// The launcher's ends.
pub struct LauncherSide {
    unshared: OwnedFd,
    mapped: OwnedFd,
}

impl MapHandshake {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            unshared: pipe2(OFlag::O_CLOEXEC).context("pipe")?,
            mapped: pipe2(OFlag::O_CLOEXEC).context("pipe")?,
        })
    }

    pub fn split(self) -> (MonitorSide, LauncherSide) {
        let (unshared_read, unshared_write) = self.unshared;
        let (mapped_read, mapped_write) = self.mapped;
        (
            MonitorSide {
                unshared: unshared_write,
                mapped: mapped_read,
            },
            LauncherSide {
                unshared: unshared_read,
                mapped: mapped_write,
            },
        )
    }
}

impl MonitorSide {
    /// Monitor: a user namespace of our own, mapped by the launcher, then a
    /// mount namespace owned by it, where the FUSE mount is allowed. The
    /// host's mounts arrive as slaves (the kernel demotes shared mounts
    /// copied into a less privileged namespace), so nothing we mount
    /// propagates back to the host.
    pub fn enter(self) -> anyhow::Result<()> {
        unshare(CloneFlags::CLONE_NEWUSER).context("unshare the user namespace")?;
        File::from(self.unshared)
            .write_all(&[1])
            .context("tell the launcher the user namespace exists")?;
        let mut byte = [0u8; 1];
        let mapped = File::from(self.mapped).read(&mut byte).unwrap_or(0);
        if mapped != 1 {
            bail!("the launcher could not map the user namespace's ids");
        }
        unshare(CloneFlags::CLONE_NEWNS).context("unshare the mount namespace")
    }
}

impl LauncherSide {
    /// Launcher: waits for the monitor's new user namespace and maps it.
    /// On failure the monitor sees the pipe close and gives up.
    pub fn map(self, userns: &UserNamespace, monitor: Pid) -> anyhow::Result<()> {
        let mut byte = [0u8; 1];
        let unshared = File::from(self.unshared).read(&mut byte).unwrap_or(0);
        if unshared != 1 {
            bail!("the container monitor exited before making its user namespace");
        }
        userns.write_maps(monitor)?;
        File::from(self.mapped)
            .write_all(&[1])
            .context("tell the monitor its ids are mapped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBUID: &str = "tests:100000:65536\nalice:165536:65536\n1001:300000:10\nbroken\n";

    fn covers(map: &[IdRange], id: u32) -> bool {
        map.iter()
            .any(|range| id >= range.container && id - range.container < range.count)
    }

    fn helpers() -> Option<(PathBuf, PathBuf)> {
        Some(("/usr/bin/newuidmap".into(), "/usr/bin/newgidmap".into()))
    }

    #[test]
    fn granted_range_maps_root_to_the_user_and_the_rest_to_the_range() {
        let userns = plan("alice", 1000, 1000, SUBUID, SUBUID, helpers());
        assert_eq!(userns.notice, None);
        let IdMapping::Subordinate { uids, .. } = &userns.mapping else {
            panic!("expected subordinate ranges: {userns:?}");
        };
        assert_eq!(
            uids,
            &vec![
                IdRange {
                    container: 0,
                    host: 1000,
                    count: 1
                },
                IdRange {
                    container: 1,
                    host: 165536,
                    count: 65536
                },
            ]
        );
        assert!(covers(uids, 65536));
        assert!(!covers(uids, 65537));
    }

    #[test]
    fn range_is_found_by_numeric_uid_too() {
        let userns = plan("bob", 1001, 1001, SUBUID, SUBUID, helpers());
        assert!(matches!(userns.mapping, IdMapping::Subordinate { .. }));
    }

    #[test]
    fn no_range_gives_a_single_id_and_says_what_that_limits() {
        let userns = plan("carol", 1002, 1002, SUBUID, SUBUID, helpers());
        assert_eq!(
            userns.mapping,
            IdMapping::SingleId {
                uid: 1002,
                gid: 1002
            }
        );
        let notice = userns.notice.expect("a notice");
        assert!(notice.contains("no range for carol"), "{notice}");
        assert!(notice.contains("only uid 0 and gid 0"), "{notice}");
    }

    #[test]
    fn missing_helpers_give_a_single_id_and_name_the_package() {
        let userns = plan("alice", 1000, 1000, SUBUID, SUBUID, None);
        assert!(matches!(userns.mapping, IdMapping::SingleId { .. }));
        assert!(userns.notice.expect("a notice").contains("uidmap"));
    }

    #[test]
    fn proc_map_text_is_read_per_range() {
        let map = "         0       1000          1\n         1     165536      65536\n";
        assert!(map_text_covers(map, 0));
        assert!(map_text_covers(map, 5));
        assert!(!map_text_covers(map, 65537));
        assert!(!map_text_covers("0 1000 1\n", 5));
        assert!(map_text_covers("0 0 4294967295\n", 5));
    }
}
