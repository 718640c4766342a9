//! Extended attributes of a node that lost its last name while the kernel
//! still holds it (see `crate::orphan`): answered from the open upper file
//! (f*xattr), the lower node it was, or its last attributes, as ext4 and
//! kernel overlayfs answer fgetxattr and friends on an unlinked file.

use super::xattrs::{listing, unsupported_xattr, xattr_of};
use super::{SetAttr, UnionFs};
use crate::acl::{self, Acl};
use crate::error::{FsError, Result};
use crate::ids::NodeId;
use crate::orphan::Orphan;
use crate::override_stat::is_private_xattr;
use crate::xattr;
use nix::errno::Errno;
use std::sync::Arc;

const WHAT: &[u8] = b"<unlinked file>";

impl UnionFs {
    pub(super) fn orphan_getxattr(&self, id: NodeId, o: &Orphan, name: &[u8]) -> Result<Vec<u8>> {
        unsupported_xattr(name, WHAT)?;
        xattr_of(&o.node(id.ino())?.entry, name).ok_or_else(|| FsError::posix(Errno::ENODATA, WHAT))
    }

    pub(super) fn orphan_listxattr(&self, id: NodeId, o: &Orphan) -> Result<Vec<u8>> {
        Ok(listing(&o.node(id.ino())?.entry))
    }

    /// The caller holds the tree write lock.
    pub(super) fn orphan_setxattr(
        &self,
        id: NodeId,
        o: &Arc<Orphan>,
        (name, value): (&[u8], &[u8]),
        flags: i32,
    ) -> Result<()> {
        unsupported_xattr(name, WHAT)?;
        if is_private_xattr(name) {
            return Err(FsError::posix(Errno::EPERM, WHAT));
        }
        let o = self.writable_orphan(id, o)?;
        let Orphan::Upper(file) = &*o else {
            return Err(FsError::posix(Errno::ENOENT, WHAT));
        };
        let e = o.node(id.ino())?.entry;
        let exists = xattr_of(&e, name).is_some();
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(FsError::posix(Errno::EEXIST, WHAT));
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(FsError::posix(Errno::ENODATA, WHAT));
        }
        let format = self.layers.upper(WHAT)?.format();
        let mut value = value.to_vec();
        if name == acl::ACCESS {
            // As for a named file: the mode takes what the ACL says, and
            // an ACL the mode says all of is kept only as the mode.
            let a = Acl::parse(&value).ok_or_else(|| FsError::posix(Errno::EINVAL, WHAT))?;
            let (mode, keep) = a.set_on(e.mode);
            let chmod = SetAttr {
                mode: Some(mode),
                ..SetAttr::default()
            };
            o.setattr(id.ino(), &chmod, &self.layers)?;
            match keep {
                Some(a) => value = a.to_bytes(),
                None => return self.orphan_remove_host_xattr(file, name),
            }
        }
        xattr::set_fd(file, &format.host_xattr(name), &value)
            .map_err(|e| FsError::io("fsetxattr", WHAT, e))
    }

    /// The caller holds the tree write lock.
    pub(super) fn orphan_removexattr(
        &self,
        id: NodeId,
        o: &Arc<Orphan>,
        name: &[u8],
    ) -> Result<()> {
        self.writable(WHAT)?;
        unsupported_xattr(name, WHAT)?;
        if xattr_of(&o.node(id.ino())?.entry, name).is_none() {
            // Removing an ACL that is not there succeeds, as on ext4.
            if name == acl::ACCESS || name == acl::DEFAULT {
                return Ok(());
            }
            return Err(FsError::posix(Errno::ENODATA, WHAT));
        }
        let o = self.writable_orphan(id, o)?;
        let Orphan::Upper(file) = &*o else {
            return Err(FsError::posix(Errno::ENOENT, WHAT));
        };
        self.orphan_remove_host_xattr(file, name)
    }

    /// Removes the container xattr `name` from the open upper file, under
    /// the upper format's name and its own (as for a named file).
    fn orphan_remove_host_xattr(&self, file: &std::fs::File, name: &[u8]) -> Result<()> {
        let format = self.layers.upper(WHAT)?.format();
        xattr::remove_fd(file, &format.host_xattr(name))
            .and_then(|()| xattr::remove_fd(file, name))
            .map_err(|e| FsError::io("fremovexattr", WHAT, e))
    }
}
