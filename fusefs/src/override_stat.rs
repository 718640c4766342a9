//! Container metadata kept in host xattrs, so no host chown/mknod is needed
//! and an unprivileged server keeps root-owned files and device nodes.
//!
//! `user.containers.override_stat` follows the containers/storage and
//! fuse-overlayfs convention: `uid:gid:mode[:type]`, decimal ids, octal
//! permission bits (suid/sgid/sticky included), type one of `file`, `dir`,
//! `symlink`, `pipe`, `socket`, `block-MAJ-MIN`, `char-MAJ-MIN`. Without a
//! type the host file's own type stands. strata always writes the type.
//!
//! The container's own xattrs on upper files are stored under
//! `user.strata.x.<name>` (so `security.capability` or `trusted.*` need no
//! privilege on the host); strata's bookkeeping (`user.strata.*`,
//! `user.containers.*`, `*.overlay.*`) is never shown to the container.

use layerdb::Kind;

/// The xattr holding a host file's container owner, mode and type in a rootless
/// upper (fuse-overlayfs's name, so both read each other's uppers).
pub const OVERRIDE_STAT: &[u8] = b"user.containers.override_stat";
/// Stable inode number a copied-up file had in its lower layer (decimal).
pub const STRATA_INO: &[u8] = b"user.strata.ino";
/// Prefix under which a container xattr is stored on an upper file.
pub const CONTAINER_XATTR_PREFIX: &[u8] = b"user.strata.x.";

/// Owner, permission bits and type of a file as the container sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverrideStat {
    /// The owner uid the container sees.
    pub uid: u32,
    /// The owner gid the container sees.
    pub gid: u32,
    /// `0o7777` bits.
    pub mode: u32,
    /// `None` when the xattr carries no type: the host type stands.
    pub kind: Option<Kind>,
    /// Device major and minor numbers, for character and block devices.
    pub rdev: (u32, u32),
}

impl OverrideStat {
    /// The xattr's value, in fuse-overlayfs's `uid:gid:mode[:type]` text
    /// form (type `file`, `dir`, `symlink`, `pipe`, `socket`,
    /// `char-MAJOR-MINOR` or `block-MAJOR-MINOR`).
    pub fn format(&self) -> Vec<u8> {
        let ty = match self.kind {
            None => String::new(),
            Some(Kind::Dir) => ":dir".into(),
            Some(Kind::Symlink) => ":symlink".into(),
            Some(Kind::Fifo) => ":pipe".into(),
            Some(Kind::Socket) => ":socket".into(),
            Some(Kind::BlockDev) => format!(":block-{}-{}", self.rdev.0, self.rdev.1),
            Some(Kind::CharDev) | Some(Kind::Whiteout) => {
                format!(":char-{}-{}", self.rdev.0, self.rdev.1)
            }
            Some(Kind::Regular) | Some(Kind::Hardlink) => ":file".into(),
        };
        format!("{}:{}:0{:o}{}", self.uid, self.gid, self.mode & 0o7777, ty).into_bytes()
    }

    /// The record an open host file carries, if it has one that parses.
    pub fn of_file(file: &std::fs::File) -> std::io::Result<Option<OverrideStat>> {
        Ok(crate::xattr::get_fd(file, OVERRIDE_STAT)?.and_then(|v| OverrideStat::parse(&v)))
    }

    /// Parses the xattr value; `None` when it is malformed.
    pub fn parse(value: &[u8]) -> Option<OverrideStat> {
        let text = std::str::from_utf8(value).ok()?;
        let text = text.trim_end_matches('\0');
        let mut parts = text.splitn(4, ':');
        let uid = parts.next()?.parse().ok()?;
        let gid = parts.next()?.parse().ok()?;
        let raw_mode = u32::from_str_radix(parts.next()?, 8).ok()?;
        let mut rdev = (0, 0);
        let kind = match parts.next() {
            None => kind_of_mode(raw_mode),
            Some("file") => Some(Kind::Regular),
            Some("dir") => Some(Kind::Dir),
            Some("symlink") => Some(Kind::Symlink),
            Some("pipe") => Some(Kind::Fifo),
            Some("socket") => Some(Kind::Socket),
            Some(dev) => {
                let (kind, nums) = if let Some(n) = dev.strip_prefix("block-") {
                    (Kind::BlockDev, n)
                } else {
                    (Kind::CharDev, dev.strip_prefix("char-")?)
                };
                let (maj, min) = nums.split_once('-')?;
                rdev = (maj.parse().ok()?, min.parse().ok()?);
                Some(kind)
            }
        };
        Some(OverrideStat {
            uid,
            gid,
            mode: raw_mode & 0o7777,
            kind,
            rdev,
        })
    }
}

/// Some writers put the full `st_mode` (type bits included) in the mode field.
fn kind_of_mode(mode: u32) -> Option<Kind> {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Some(Kind::Regular),
        libc::S_IFDIR => Some(Kind::Dir),
        libc::S_IFLNK => Some(Kind::Symlink),
        libc::S_IFIFO => Some(Kind::Fifo),
        libc::S_IFSOCK => Some(Kind::Socket),
        _ => None,
    }
}

/// True for xattrs that are strata's or overlay's bookkeeping, which the
/// container must never see and a commit must never store.
pub fn is_private_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.strata.")
        || name.starts_with(b"user.containers.")
        || name.starts_with(b"user.overlay.")
        || name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.fuseoverlayfs.")
        // fuse-overlayfs's records of owners and modes with privileges,
        // which it would honour in an upper it is given later.
        || name.starts_with(b"security.fuseoverlayfs.")
        || name.starts_with(b"trusted.fuseoverlayfs.")
}

/// The host xattr name a container xattr is stored under in the upper.
pub fn host_xattr_name(container_name: &[u8]) -> Vec<u8> {
    [CONTAINER_XATTR_PREFIX, container_name].concat()
}

/// The container's view of a host xattr name; `None` for bookkeeping,
/// also when it is stored under the container prefix (a layer written by
/// another tool may carry any name there).
pub fn container_xattr_name(host_name: &[u8]) -> Option<&[u8]> {
    let name = host_name
        .strip_prefix(CONTAINER_XATTR_PREFIX)
        .unwrap_or(host_name);
    (!is_private_xattr(name)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_stat_round_trips_devices_and_special_bits() {
        let s = OverrideStat {
            uid: 0,
            gid: 5,
            mode: 0o4755,
            kind: Some(Kind::CharDev),
            rdev: (1, 3),
        };
        assert_eq!(s.format(), b"0:5:04755:char-1-3");
        assert_eq!(OverrideStat::parse(&s.format()), Some(s));
    }

    #[test]
    fn override_stat_without_type_leaves_the_host_type() {
        let s = OverrideStat::parse(b"1000:1000:0644").expect("valid");
        assert_eq!((s.uid, s.gid, s.mode, s.kind), (1000, 1000, 0o644, None));
        let s = OverrideStat::parse(b"0:0:040755").expect("full st_mode accepted");
        assert_eq!((s.mode, s.kind), (0o755, Some(Kind::Dir)));
        assert_eq!(OverrideStat::parse(b"x:0:0644"), None);
    }

    #[test]
    fn container_xattrs_are_namespaced_and_bookkeeping_is_hidden() {
        let host = host_xattr_name(b"security.capability");
        assert_eq!(
            container_xattr_name(&host),
            Some(&b"security.capability"[..])
        );
        assert_eq!(container_xattr_name(b"user.mine"), Some(&b"user.mine"[..]));
        assert_eq!(container_xattr_name(OVERRIDE_STAT), None);
        assert_eq!(container_xattr_name(b"user.overlay.opaque"), None);
        assert_eq!(container_xattr_name(STRATA_INO), None);
    }
}
