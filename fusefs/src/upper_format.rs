//! The two ways the upper directory can record the container's tree.
//!
//! - [`UpperFormat::Kernel`], when the server may chown and mknod (root,
//!   also root of a user namespace as rootless podman runs its mount
//!   program): kernel overlayfs's own format, so kernel overlayfs,
//!   fuse-overlayfs and containers-storage read the upper as strata
//!   showed it. Host files have the container's owners, modes and types
//!   (symlinks are symlinks, devices are devices), xattrs keep their own
//!   names, a whiteout is a 0/0 character device with the deleted name, an
//!   opaque directory has `trusted.overlay.opaque=y` (`user.overlay.` in a
//!   user namespace, where `trusted.` is out of reach, as the kernel's
//!   `userxattr` option reads it), and a directory renamed with lower
//!   content has `trusted.overlay.redirect` (`user.overlay.redirect`).
//! - [`UpperFormat::Rootless`], when it may not: fuse-overlayfs's rootless
//!   format (see [`crate::override_stat`] and [`crate::whiteout`]): plain
//!   files and directories owned by the server, the container's owner,
//!   mode and type in `user.containers.override_stat`, container xattrs
//!   under `user.strata.x.`, whiteouts as `.wh.` files; opaque and
//!   redirect markers as `user.overlay.opaque` and `user.overlay.redirect`.
//!
//! Readers ([`crate::dir_lower`]) understand both, also mixed in one upper.

use crate::override_stat::{host_xattr_name, STRATA_INO};

/// Where the overlay markers of a [`UpperFormat::Kernel`] upper live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerNamespace {
    /// `trusted.overlay.*`: the kernel's default, needs CAP_SYS_ADMIN in the
    /// host.
    Trusted,
    /// `user.overlay.*`: the kernel's `userxattr` option, in a user namespace.
    User,
}

/// How the upper directory records the container's tree (see the module
/// documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpperFormat {
    /// Kernel overlayfs's format, with its markers in this namespace.
    Kernel(MarkerNamespace),
    /// fuse-overlayfs's rootless format: metadata in `user.` xattrs.
    Rootless,
}

/// The stable inode number of a copied-up file in a kernel-format upper:
/// under the overlay prefix, which kernel overlayfs hides from listings
/// (`user.strata.ino` would show there as the container's own xattr).
const KERNEL_INO_TRUSTED: &[u8] = b"trusted.overlay.strata.ino";
const KERNEL_INO_USER: &[u8] = b"user.overlay.strata.ino";

/// Every name a stable inode number may be recorded under.
pub const INO_XATTRS: [&[u8]; 3] = [STRATA_INO, KERNEL_INO_TRUSTED, KERNEL_INO_USER];

/// Links a copied-up file has that the upper cannot hold: names of its
/// lower inode the container had deleted before the copy-up. They still
/// count, as kernel overlayfs's index counts them (decimal).
pub const NLINK_XATTRS: [&[u8]; 3] = [
    b"user.strata.nlink",
    b"trusted.overlay.strata.nlink",
    b"user.overlay.strata.nlink",
];

/// True when this process is in the initial user namespace, where
/// `trusted.*` xattrs are within root's reach.
fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f == ["0", "0", "4294967295"]
    })
}

impl UpperFormat {
    /// The format a server of this process's privileges writes.
    pub fn detect() -> UpperFormat {
        if !nix::unistd::geteuid().is_root() {
            return UpperFormat::Rootless;
        }
        if in_initial_user_namespace() {
            UpperFormat::Kernel(MarkerNamespace::Trusted)
        } else {
            UpperFormat::Kernel(MarkerNamespace::User)
        }
    }

    /// The format of an upper its owner reads back from the host, outside
    /// any user namespace (strata's own containers and mounts, whose
    /// commit and diff read the upper directly): the kernel's as real
    /// root; the rootless one otherwise, since files a server in a user
    /// namespace chowned to mapped ids are neither readable by the host
    /// user nor mappable back. [`UpperFormat::detect`] suits a server whose
    /// readers share its namespace (podman's mount_program).
    pub fn for_host_owner() -> UpperFormat {
        if nix::unistd::geteuid().is_root() && in_initial_user_namespace() {
            UpperFormat::Kernel(MarkerNamespace::Trusted)
        } else {
            UpperFormat::Rootless
        }
    }

    /// Whether this is kernel overlayfs's format.
    pub fn is_kernel(self) -> bool {
        matches!(self, UpperFormat::Kernel(_))
    }

    /// The xattr marking an opaque directory.
    pub fn opaque_xattr(self) -> &'static [u8] {
        match self {
            UpperFormat::Kernel(MarkerNamespace::Trusted) => b"trusted.overlay.opaque",
            _ => b"user.overlay.opaque",
        }
    }

    /// The xattr recording where a renamed directory's lower content is
    /// (kernel overlayfs's `redirect_dir`; see [`crate::whiteout`]).
    pub fn redirect_xattr(self) -> &'static [u8] {
        match self {
            UpperFormat::Kernel(MarkerNamespace::Trusted) => b"trusted.overlay.redirect",
            _ => b"user.overlay.redirect",
        }
    }

    /// The xattr recording a copied-up file's stable inode number.
    pub fn ino_xattr(self) -> &'static [u8] {
        match self {
            UpperFormat::Kernel(MarkerNamespace::Trusted) => KERNEL_INO_TRUSTED,
            UpperFormat::Kernel(MarkerNamespace::User) => KERNEL_INO_USER,
            UpperFormat::Rootless => STRATA_INO,
        }
    }

    /// The xattr recording links the upper cannot hold (see
    /// [`NLINK_XATTRS`]).
    pub fn nlink_xattr(self) -> &'static [u8] {
        match self {
            UpperFormat::Kernel(MarkerNamespace::Trusted) => NLINK_XATTRS[1],
            UpperFormat::Kernel(MarkerNamespace::User) => NLINK_XATTRS[2],
            UpperFormat::Rootless => NLINK_XATTRS[0],
        }
    }

    /// Marks a kernel-format upper's root as given the image root's owner
    /// and mode.
    pub fn root_marker(self) -> &'static [u8] {
        match self {
            UpperFormat::Kernel(MarkerNamespace::Trusted) => b"trusted.overlay.strata.root",
            _ => b"user.overlay.strata.root",
        }
    }

    /// The host name of the container's xattr `name`.
    pub fn host_xattr(self, name: &[u8]) -> Vec<u8> {
        match self {
            UpperFormat::Kernel(_) => name.to_vec(),
            UpperFormat::Rootless => host_xattr_name(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::override_stat::is_private_xattr;

    #[test]
    fn kernel_format_bookkeeping_is_hidden_from_the_container_and_kernel_overlayfs() {
        for ns in [MarkerNamespace::Trusted, MarkerNamespace::User] {
            let f = UpperFormat::Kernel(ns);
            assert!(is_private_xattr(f.ino_xattr()));
            assert!(is_private_xattr(f.opaque_xattr()));
            assert!(is_private_xattr(f.redirect_xattr()));
            assert_eq!(f.host_xattr(b"user.k"), b"user.k");
        }
        assert_eq!(
            UpperFormat::Rootless.host_xattr(b"user.k"),
            b"user.strata.x.user.k"
        );
    }
}
