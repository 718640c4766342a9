//! `-u` resolution against the container's /etc/passwd and /etc/group,
//! following runc's `GetExecUser` rules as docker users see them.

use super::exit::StartError;

/// The credentials and home directory a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: every /etc/group entry that lists the user.
    pub groups: Vec<u32>,
    pub home: String,
}

/// One side of `user[:group]`: a name or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Name(String),
    Id(u32),
}

impl Who {
    fn parse(text: &str) -> Self {
        text.parse()
            .map_or_else(|_| Self::Name(text.to_owned()), Self::Id)
    }
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [name, _, uid, gid, _, home, ..] => Some(PasswdEntry {
                    name: (*name).to_owned(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                    home: (*home).to_owned(),
                }),
                _ => None,
            }
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [name, _, gid, members, ..] => Some(GroupEntry {
                    name: (*name).to_owned(),
                    gid: gid.parse().ok()?,
                    members: members
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// Resolves `spec` ("" means root) with the text of /etc/passwd and
/// /etc/group (empty when the image has none). A name must exist; a number
/// need not (it then runs with gid 0 and HOME=/, as in docker).
/// The most of /etc/passwd or /etc/group read.
const ACCOUNTS_BYTES: u64 = 16 << 20;

/// An account file of the container's tree (/etc/passwd, /etc/group),
/// read only where it is a regular file, opened without waiting on a
/// fifo (a container that made one would hold `exec` or a COPY until it
/// wrote), at most ACCOUNTS_BYTES of it; empty otherwise. `follow`: its
/// links followed (the caller is in the tree's root, so they stay in
/// it), never through a magic link: the process reading it still holds the strata
/// command's descriptors (its stdout's file, the container's log), and
/// `/etc/passwd -> /proc/self/fd/N` read such a host file as the
/// container's accounts (found by a review as an attacker).
pub fn read_account_file(path: &str, follow: bool) -> String {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::io::Read as _;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let opened = match follow {
        true => rustix::fs::openat2(
            rustix::fs::CWD,
            path,
            flags,
            Mode::empty(),
            ResolveFlags::NO_MAGICLINKS,
        ),
        false => rustix::fs::open(path, flags | OFlags::NOFOLLOW, Mode::empty()),
    };
    let Ok(file) = opened.map(std::fs::File::from) else {
        return String::new();
    };
    if !file.metadata().is_ok_and(|md| md.is_file()) {
        return String::new();
    }
    let mut text = String::new();
    let _ = file.take(ACCOUNTS_BYTES).read_to_string(&mut text);
    text
}

pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Ids, StartError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let user = if user_part.is_empty() {
        Who::Id(0)
    } else {
        Who::parse(user_part)
    };
    let entry = find_user(&users, &user)?;
    // A name without an entry was refused by find_user, so only a number
    // can be missing from passwd.
    let uid = match (entry, &user) {
        (Some(entry), _) => entry.uid,
        (None, Who::Id(uid)) => *uid,
        (None, Who::Name(_)) => 0,
    };
    let gid = match group_part {
        Some(group) => find_group(&groups, &Who::parse(group))?,
        None => entry.map_or(0, |entry| entry.gid),
    };
    let supplementary = entry.map_or_else(Vec::new, |entry| member_gids(&groups, &entry.name));
    Ok(Ids {
        uid,
        gid,
        groups: supplementary,
        home: entry.map_or_else(|| "/".to_owned(), |entry| entry.home.clone()),
    })
}

fn find_user<'a>(
    users: &'a [PasswdEntry],
    who: &Who,
) -> Result<Option<&'a PasswdEntry>, StartError> {
    match who {
        Who::Id(uid) => Ok(users.iter().find(|entry| entry.uid == *uid)),
        Who::Name(name) => users
            .iter()
            .find(|entry| entry.name == *name)
            .map(Some)
            .ok_or_else(|| {
                StartError::other(format!(
                    "unable to find user {name}: no matching entries in passwd file"
                ))
            }),
    }
}

fn find_group(groups: &[GroupEntry], who: &Who) -> Result<u32, StartError> {
    match who {
        Who::Id(gid) => Ok(*gid),
        Who::Name(name) => groups
            .iter()
            .find(|entry| entry.name == *name)
            .map(|entry| entry.gid)
            .ok_or_else(|| {
                StartError::other(format!(
                    "unable to find group {name}: no matching entries in group file"
                ))
            }),
    }
}

fn member_gids(groups: &[GroupEntry], user: &str) -> Vec<u32> {
    let mut gids: Vec<u32> = groups
        .iter()
        .filter(|entry| entry.members.iter().any(|member| member == user))
        .map(|entry| entry.gid)
        .collect();
    gids.dedup();
    gids
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
                          alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
                          broken line\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\nstaff:x:50:bob\n";

    /// The reader of a container's accounts still holds the strata
    /// command's descriptors: a link through /proc/self/fd must not read
    /// the host file behind one, while an ordinary link is followed.
    #[test]
    fn account_files_are_not_read_through_a_magic_link() {
        use std::io::Write as _;
        use std::os::fd::AsRawFd as _;
        let dir = tempfile::tempdir().unwrap();
        let mut host = tempfile::tempfile().unwrap();
        host.write_all(PASSWD.as_bytes()).unwrap();
        let magic = dir.path().join("magic");
        let fd_path = format!("/proc/self/fd/{}", host.as_raw_fd());
        std::os::unix::fs::symlink(&fd_path, &magic).unwrap();
        assert_eq!(read_account_file(magic.to_str().unwrap(), true), "");
        let plain = dir.path().join("passwd");
        std::fs::write(&plain, PASSWD).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&plain, &link).unwrap();
        assert_eq!(read_account_file(link.to_str().unwrap(), true), PASSWD);
        assert_eq!(read_account_file(link.to_str().unwrap(), false), "");
    }

    fn ids(uid: u32, gid: u32, groups: &[u32], home: &str) -> Ids {
        Ids {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.to_owned(),
        }
    }

    #[test]
    fn empty_user_is_root_with_roots_home() {
        assert_eq!(resolve("", PASSWD, GROUP), Ok(ids(0, 0, &[], "/root")));
    }

    #[test]
    fn name_gets_uid_gid_home_and_supplementary_groups() {
        assert_eq!(
            resolve("alice", PASSWD, GROUP),
            Ok(ids(1000, 1000, &[10], "/home/alice"))
        );
    }

    #[test]
    fn numeric_uid_in_passwd_uses_its_entry() {
        assert_eq!(resolve("1", PASSWD, GROUP), Ok(ids(1, 1, &[], "/usr/sbin")));
    }

    #[test]
    fn numeric_uid_not_in_passwd_runs_with_gid_0_and_root_home() {
        assert_eq!(resolve("4242", PASSWD, GROUP), Ok(ids(4242, 0, &[], "/")));
    }

    #[test]
    fn uid_colon_gid_needs_no_files() {
        assert_eq!(resolve("1000:1000", "", ""), Ok(ids(1000, 1000, &[], "/")));
    }

    #[test]
    fn name_colon_group_name_sets_primary_group() {
        assert_eq!(
            resolve("alice:staff", PASSWD, GROUP),
            Ok(ids(1000, 50, &[10], "/home/alice"))
        );
    }

    #[test]
    fn unknown_user_name_is_a_docker_shaped_error() {
        let err = resolve("nobody", PASSWD, GROUP).expect_err("nobody is not in passwd");
        assert_eq!(
            err.msg,
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(err.exit_code(), 125);
    }

    #[test]
    fn unknown_group_name_is_an_error() {
        let err = resolve("alice:nogroup", PASSWD, GROUP).expect_err("no such group");
        assert!(err.msg.contains("unable to find group nogroup"));
    }
}
