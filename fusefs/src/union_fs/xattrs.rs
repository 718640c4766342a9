//! Extended attributes of the union's entries: stored in the upper under
//! `user.strata.x.` (see `crate::override_stat`), POSIX ACLs kept in step
//! with the mode (see `crate::acl`), SELinux labels not kept.

use super::{read_guard, Place, UnionFs, Writer};
use crate::acl::{self, Acl};
use crate::error::{FsError, Result};
use crate::ids::NodeId;
use crate::lower::Node;
use crate::override_stat::is_private_xattr;
use crate::upper::{override_of, Upper};
use crate::xattr;
use layerdb::Entry;
use nix::errno::Errno;
use std::sync::atomic::Ordering;

/// SELinux labels are not kept: on a host running SELinux the kernel
/// answers for them from the mount's context (podman mounts container
/// filesystems with `context=`), and docker's layers never carry them (it
/// records only security.capability). Saying "not supported" rather than
/// "no such attribute" lets `ls -l` stop asking after the first file.
const SELINUX_XATTR: &[u8] = b"security.selinux";

pub(super) fn unsupported_xattr(name: &[u8], path: &[u8]) -> Result<()> {
    if name == SELINUX_XATTR {
        return Err(FsError::posix(Errno::EOPNOTSUPP, path));
    }
    Ok(())
}

/// The value of an entry's container xattr `name`.
pub(super) fn xattr_of(e: &Entry, name: &[u8]) -> Option<Vec<u8>> {
    e.xattrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// An entry's xattr names, each NUL-terminated, as listxattr(2) returns
/// them; SELinux labels left out (see [`SELINUX_XATTR`]).
pub(super) fn listing(e: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, _) in &e.xattrs {
        if n == SELINUX_XATTR {
            continue;
        }
        out.extend_from_slice(n);
        out.push(0);
    }
    out
}

impl UnionFs {
    /// The value of the container xattr `name`; ENODATA when the file lacks it,
    /// EOPNOTSUPP for `security.selinux`.
    pub fn getxattr(&self, id: NodeId, name: &[u8]) -> Result<Vec<u8>> {
        let _g = read_guard(&self.tree);
        let path = match self.place(id)? {
            Place::Path(p) => p,
            Place::Orphan(o) => return self.orphan_getxattr(id, &o, name),
        };
        unsupported_xattr(name, &path)?;
        let entry = self.entry_now(id, &path)?;
        xattr_of(&entry, name).ok_or_else(|| FsError::posix(Errno::ENODATA, &path))
    }

    /// Names, each NUL-terminated, as listxattr(2) returns them.
    pub fn listxattr(&self, id: NodeId) -> Result<Vec<u8>> {
        let _g = read_guard(&self.tree);
        let path = match self.place(id)? {
            Place::Path(p) => p,
            Place::Orphan(o) => return self.orphan_listxattr(id, &o),
        };
        Ok(listing(&self.entry_now(id, &path)?))
    }

    /// The entry of node `id` at `path`, for its xattrs: as CREATE made it
    /// while the tree is unchanged since (the kernel asks every file tar
    /// chowns as root for `security.capability`), else resolved. Only a
    /// tree change adds or removes a made file's xattrs: a write drops
    /// capabilities, which a file CREATE made gets only by a setxattr. A
    /// lower file's resolution is kept for the WRITE that follows (see
    /// `crate::last_lower`).
    fn entry_now(&self, id: NodeId, path: &[u8]) -> Result<Entry> {
        let now = self.generation.load(Ordering::Relaxed);
        if let Some((_, made)) = self.node_files.made(id, now) {
            return Ok(made.entry);
        }
        Ok(self.resolve_node(id, path)?.node.entry)
    }

    /// Sets the container xattr `name` (copying the file up); `flags` are
    /// setxattr(2)'s XATTR_CREATE and XATTR_REPLACE. strata's own xattrs are
    /// EPERM; an access ACL also sets the mode.
    pub fn setxattr(
        &self,
        id: NodeId,
        name: &[u8],
        value: &[u8],
        flags: i32,
        writer: &Writer,
    ) -> Result<()> {
        let _g = self.change_tree();
        let path = match self.place(id)? {
            Place::Path(p) => p,
            Place::Orphan(o) => return self.orphan_setxattr(id, &o, (name, value), flags),
        };
        let upper = self.writable(&path)?;
        unsupported_xattr(name, &path)?;
        if is_private_xattr(name) {
            return Err(FsError::posix(Errno::EPERM, &path));
        }
        let r = self.layers.copy_up(&path, true)?;
        let exists = r.node.entry.xattrs.iter().any(|(n, _)| n == name);
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(FsError::posix(Errno::EEXIST, &path));
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(FsError::posix(Errno::ENODATA, &path));
        }
        if name == acl::ACCESS {
            return self.set_access_acl(upper, &path, &r.node, value, writer);
        }
        self.set_container_xattr(upper, &path, name, value)
    }

    pub(super) fn set_container_xattr(
        &self,
        upper: &Upper,
        path: &[u8],
        name: &[u8],
        value: &[u8],
    ) -> Result<()> {
        self.layers.invalidate(path);
        xattr::set(
            &upper.host(path),
            &upper.format().host_xattr(name),
            value,
            0,
        )
        .map_err(|e| FsError::io("setxattr", path, e))
    }

    /// setfacl: the mode takes the ACL's owner, group class and other
    /// bits, and an ACL the mode says all of is kept only as the mode. As
    /// the kernel's posix_acl_update_mode does, a writer outside the
    /// file's group (and not root, who holds CAP_FSETID) loses S_ISGID.
    fn set_access_acl(
        &self,
        upper: &Upper,
        path: &[u8],
        node: &Node,
        value: &[u8],
        writer: &Writer,
    ) -> Result<()> {
        let mut e = node.entry.clone();
        let a = Acl::parse(value).ok_or_else(|| FsError::posix(Errno::EINVAL, path))?;
        let (mut mode, keep) = a.set_on(e.mode);
        if mode & libc::S_ISGID != 0 && writer.uid != 0 && !writer.in_group(e.gid) {
            mode &= !libc::S_ISGID;
        }
        e.mode = mode;
        upper.set_owner_mode(
            (path, None),
            e.kind,
            &override_of(&e),
            false,
            node.overridden,
        )?;
        match keep {
            Some(a) => self.set_container_xattr(upper, path, acl::ACCESS, &a.to_bytes()),
            None => self.remove_container_xattr(upper, path, acl::ACCESS),
        }
    }

    /// Removes the container xattr `name`; ENODATA when absent, except for ACLs
    /// (success, as on ext4).
    pub fn removexattr(&self, id: NodeId, name: &[u8]) -> Result<()> {
        let _g = self.change_tree();
        let path = match self.place(id)? {
            Place::Path(p) => p,
            Place::Orphan(o) => return self.orphan_removexattr(id, &o, name),
        };
        let upper = self.writable(&path)?;
        unsupported_xattr(name, &path)?;
        if is_private_xattr(name) {
            return Err(FsError::posix(Errno::EPERM, &path));
        }
        let r = self.layers.get(&path)?;
        if !r.node.entry.xattrs.iter().any(|(n, _)| n == name) {
            // Removing an ACL that is not there succeeds, as on ext4.
            if name == acl::ACCESS || name == acl::DEFAULT {
                return Ok(());
            }
            return Err(FsError::posix(Errno::ENODATA, &path));
        }
        self.layers.copy_up(&path, true)?;
        self.remove_container_xattr(upper, &path, name)
    }

    fn remove_container_xattr(&self, upper: &Upper, path: &[u8], name: &[u8]) -> Result<()> {
        self.layers.invalidate(path);
        let host = upper.host(path);
        xattr::remove(&host, &upper.format().host_xattr(name))
            .and_then(|()| xattr::remove(&host, name))
            .map_err(|e| FsError::io("removexattr", path, e))
    }
}
