//! POSIX ACLs, as the kernel leaves them to a FUSE server that asks for
//! `FUSE_POSIX_ACL`: the kernel caches ACLs and checks permissions against
//! them; the server keeps the mode and the access ACL in step (setfacl,
//! chmod) and gives new nodes their parent's default ACL. The rules are the
//! kernel's own (fs/posix_acl.c: equiv_mode, chmod, create_masq), so a
//! strata mount answers as ext4 under kernel overlayfs does.
//!
//! Values are the xattr format the kernel sends: a little-endian u32
//! version (2), then 8-byte entries (u16 tag, u16 perm, u32 id).

use layerdb::Kind;

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A parsed ACL: its entries in the order the value had them (the kernel
/// sends them sorted by tag, so MASK follows GROUP_OBJ).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl(Vec<Entry>);

impl Acl {
    /// `None` for a value that is not an ACL of the known version, has an
    /// unknown tag or permission bit, or lacks USER_OBJ, GROUP_OBJ or OTHER
    /// (the kernel refuses those too).
    pub fn parse(value: &[u8]) -> Option<Acl> {
        let (head, body) = value.split_first_chunk::<4>()?;
        if u32::from_le_bytes(*head) != VERSION || body.len() % 8 != 0 {
            return None;
        }
        let entries: Vec<Entry> = body
            .chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let has = |t| entries.iter().any(|e| e.tag == t);
        let known = entries.iter().all(|e| {
            matches!(e.tag, USER_OBJ | USER | GROUP_OBJ | GROUP | MASK | OTHER)
                && e.perm & !0o7 == 0
        });
        (known && has(USER_OBJ) && has(GROUP_OBJ) && has(OTHER)).then_some(Acl(entries))
    }

    /// The ACL an entry keeps as xattr `name` (ACCESS or DEFAULT).
    pub fn of(e: &layerdb::Entry, name: &[u8]) -> Option<Acl> {
        let (_, v) = e.xattrs.iter().find(|(n, _)| n == name)?;
        Acl::parse(v)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for e in &self.0 {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    /// Whether the mode bits say all the ACL says (no named users or
    /// groups, no mask): then the file keeps no ACL, only its mode.
    fn is_minimal(&self) -> bool {
        self.0
            .iter()
            .all(|e| matches!(e.tag, USER_OBJ | GROUP_OBJ | OTHER))
    }

    /// The entry the mode's group bits stand for: the mask if there is
    /// one, else the owning group.
    fn group_class(&mut self) -> &mut Entry {
        let i = self
            .0
            .iter()
            .position(|e| e.tag == MASK)
            .or_else(|| self.0.iter().position(|e| e.tag == GROUP_OBJ))
            .expect("parse checked GROUP_OBJ");
        &mut self.0[i]
    }

    /// `mode` with its rwx bits taken from the ACL (setfacl); the ACL
    /// itself is to be kept only if it says more than that (`Some`).
    pub fn set_on(self, mode: u32) -> (u32, Option<Acl>) {
        let mut acl = self;
        let mut bits = 0;
        for e in &acl.0 {
            match e.tag {
                USER_OBJ => bits |= u32::from(e.perm) << 6,
                OTHER => bits |= u32::from(e.perm),
                _ => {}
            }
        }
        bits |= u32::from(acl.group_class().perm) << 3;
        let keep = (!acl.is_minimal()).then_some(acl);
        ((mode & !0o777) | bits, keep)
    }

    /// The ACL after chmod to `mode`: the owner, group class and other
    /// entries take the new bits; named entries stay.
    pub fn chmod(mut self, mode: u32) -> Acl {
        for e in &mut self.0 {
            match e.tag {
                USER_OBJ => e.perm = ((mode >> 6) & 0o7) as u16,
                OTHER => e.perm = (mode & 0o7) as u16,
                _ => {}
            }
        }
        self.group_class().perm = ((mode >> 3) & 0o7) as u16;
        self
    }

    /// A new node under a directory whose default ACL is `self`, created
    /// with `mode`: its mode and, unless the mode says it all, its access
    /// ACL (each class limited by the mode asked for). The umask does not
    /// apply when a default ACL does.
    pub fn inherit(&self, mode: u32) -> (u32, Option<Acl>) {
        let mut acl = self.clone();
        let mut bits = mode & 0o777;
        for e in &mut acl.0 {
            match e.tag {
                USER_OBJ => {
                    e.perm &= ((bits >> 6) & 0o7) as u16;
                    bits = (bits & !0o700) | (u32::from(e.perm) << 6);
                }
                OTHER => {
                    e.perm &= (bits & 0o7) as u16;
                    bits = (bits & !0o7) | u32::from(e.perm);
                }
                _ => {}
            }
        }
        let g = acl.group_class();
        g.perm &= ((bits >> 3) & 0o7) as u16;
        bits = (bits & !0o70) | (u32::from(g.perm) << 3);
        let keep = (!acl.is_minimal()).then_some(acl);
        ((mode & !0o777) | bits, keep)
    }
}

/// A new node of `kind` created with `mode` in directory `dir`: under a
/// default ACL its mode and access ACL come from that (and a directory
/// keeps it as its own default); otherwise the umask applies. Symlinks
/// have no ACLs.
pub fn new_entry(dir: &layerdb::Entry, kind: Kind, mode: u32, umask: u32) -> layerdb::Entry {
    let default = (kind != Kind::Symlink)
        .then(|| Acl::of(dir, DEFAULT))
        .flatten();
    let Some(d) = default else {
        return layerdb::Entry::new(kind, mode & !umask);
    };
    let (mode, access) = d.inherit(mode);
    let mut e = layerdb::Entry::new(kind, mode);
    e.xattrs
        .extend(access.map(|a| (ACCESS.to_vec(), a.to_bytes())));
    if kind == Kind::Dir {
        e.xattrs.push((DEFAULT.to_vec(), d.to_bytes()));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl(entries
            .iter()
            .map(|&(tag, perm, id)| Entry { tag, perm, id })
            .collect())
    }

    #[test]
    fn parse_round_trips_and_refuses_bad_values() {
        let a = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 4, 33),
            (GROUP_OBJ, 4, 0),
            (MASK, 4, 0),
            (OTHER, 0, 0),
        ]);
        assert_eq!(Acl::parse(&a.to_bytes()), Some(a.clone()));
        let mut bad_version = a.to_bytes();
        bad_version[0] = 1;
        assert_eq!(Acl::parse(&bad_version), None);
        assert_eq!(Acl::parse(&a.to_bytes()[..11]), None);
        assert_eq!(
            Acl::parse(&acl(&[(USER_OBJ, 6, 0), (OTHER, 0, 0)]).to_bytes()),
            None
        );
        assert_eq!(Acl::parse(b""), None);
    }

    #[test]
    fn setting_an_acl_sets_the_mode_and_a_minimal_one_is_only_a_mode() {
        // setfacl -m u:33:r on a 0644 file: group bits become the mask.
        let a = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 4, 33),
            (GROUP_OBJ, 4, 0),
            (MASK, 5, 0),
            (OTHER, 0, 0),
        ]);
        let (mode, keep) = a.clone().set_on(libc::S_IFREG | 0o4644);
        assert_eq!(mode, libc::S_IFREG | 0o4650);
        assert_eq!(keep, Some(a));
        let minimal = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0), (OTHER, 1, 0)]);
        assert_eq!(minimal.set_on(libc::S_IFREG), (libc::S_IFREG | 0o751, None));
    }

    #[test]
    fn chmod_moves_the_mask_not_the_owning_group() {
        let a = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 7, 33),
            (GROUP_OBJ, 4, 0),
            (MASK, 7, 0),
            (OTHER, 4, 0),
        ]);
        let want = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 33),
            (GROUP_OBJ, 4, 0),
            (MASK, 0, 0),
            (OTHER, 1, 0),
        ]);
        assert_eq!(a.chmod(0o701), want);
        let b = acl(&[(USER_OBJ, 6, 0), (GROUP_OBJ, 4, 0), (OTHER, 4, 0)]);
        assert_eq!(
            b.chmod(0o750),
            acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0), (OTHER, 0, 0)])
        );
    }

    #[test]
    fn a_default_acl_is_inherited_limited_by_the_mode_asked_for() {
        let d = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 33),
            (GROUP_OBJ, 5, 0),
            (MASK, 7, 0),
            (OTHER, 5, 0),
        ]);
        // open(O_CREAT, 0666): no x bits anywhere; the mask keeps rw.
        let (mode, a) = d.inherit(libc::S_IFREG | 0o666);
        assert_eq!(mode, libc::S_IFREG | 0o664);
        let want = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 7, 33),
            (GROUP_OBJ, 5, 0),
            (MASK, 6, 0),
            (OTHER, 4, 0),
        ]);
        assert_eq!(a, Some(want));
        // A minimal default ACL gives a mode and no access ACL.
        let m = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 0, 0), (OTHER, 0, 0)]);
        assert_eq!(
            m.inherit(libc::S_IFDIR | 0o755),
            (libc::S_IFDIR | 0o700, None)
        );
    }
}
