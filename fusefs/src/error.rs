//! The one error type of the union core and its errno table.
//!
//! Handlers never panic: every failure becomes an [`FsError`], and the FUSE
//! adapter turns it into an errno with [`FsError::errno`] at the boundary.

use crate::ids::NodeId;
use std::io;

/// Displayable form of a layer path for messages (`/` for the root).
pub fn show(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

/// Every failure of a filesystem operation; [`FsError::errno`] is what the
/// kernel is answered.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A POSIX outcome the caller must see as-is (ENOENT, EEXIST, ENOTEMPTY,
    /// EROFS...). Not a fault of the filesystem.
    #[error("{path}: {errno}")]
    Posix {
        /// The errno to answer.
        errno: nix::errno::Errno,
        /// The union path involved, with a leading `/`.
        path: String,
    },
    /// A host system call on the upper or a directory layer failed.
    #[error("{op} {path}")]
    Io {
        /// The system call or step that failed (`open`, `setxattr`...).
        op: &'static str,
        /// The union path involved, with a leading `/`.
        path: String,
        /// What the host answered; its errno is passed on.
        #[source]
        source: io::Error,
    },
    /// Reading a store layer failed.
    #[error("reading {path} from layer {layer}")]
    Layer {
        /// The layer's diff id.
        layer: String,
        /// The union path involved, with a leading `/`.
        path: String,
        /// The store's error; an I/O errno in it is passed on, else EIO.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// FUSE passthrough's rules refuse the request (see
    /// `crate::passthrough`): answered ETXTBSY, as writing to a running
    /// program is. Not a fault of the filesystem.
    #[error("node {node:#x}: {reason}")]
    Busy {
        /// The node the request named.
        node: NodeId,
        /// What holds the node.
        reason: &'static str,
    },
    /// Our own metadata in the upper could not be understood.
    /// Answered EIO.
    #[error("{path}: {reason} (was the upper directory written by another tool?)")]
    Corrupt {
        /// The union path involved, with a leading `/`.
        path: String,
        /// What could not be understood.
        reason: String,
    },
}

/// A filesystem result; the error defaults to [`FsError`].
pub type Result<T, E = FsError> = std::result::Result<T, E>;

impl FsError {
    /// The POSIX outcome `errno` at the layer path `path` (no leading `/`).
    pub fn posix(errno: nix::errno::Errno, path: &[u8]) -> FsError {
        FsError::Posix {
            errno,
            path: show(path),
        }
    }

    /// A failed host call `op` on the layer path `path`.
    pub fn io(op: &'static str, path: &[u8], source: io::Error) -> FsError {
        FsError::Io {
            op,
            path: show(path),
            source,
        }
    }

    /// The errno a FUSE client sees for this error: the one table.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::Posix { errno, .. } => *errno as i32,
            FsError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FsError::Layer { source, .. } => source
                .downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error)
                .unwrap_or(libc::EIO),
            FsError::Busy { .. } => libc::ETXTBSY,
            FsError::Corrupt { .. } => libc::EIO,
        }
    }

    /// Expected outcomes (a missing name, an existing one, a full disk or
    /// quota the container's own writes caused...) are not worth an error
    /// log line; faults are. The line goes to the terminal or into the
    /// container's own `logs`, where "write: No space left on device" read
    /// as the server breaking.
    pub fn is_fault(&self) -> bool {
        !matches!(self, FsError::Posix { .. } | FsError::Busy { .. })
            && !matches!(
                self.errno(),
                libc::ENOENT
                    | libc::ENOTDIR
                    | libc::ENODATA
                    | libc::ENOSPC
                    | libc::EDQUOT
                    | libc::EFBIG
                    | libc::ENAMETOOLONG
            )
    }

    /// Whether the error says the name does not exist (ENOENT or ENOTDIR).
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno(), libc::ENOENT | libc::ENOTDIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn io_errors_keep_their_errno_and_unknown_faults_become_eio() {
        let e = FsError::io("open", b"a", io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.errno(), libc::EACCES);
        let e = FsError::Corrupt {
            path: show(b"a"),
            reason: "bad".into(),
        };
        assert_eq!(e.errno(), libc::EIO);
        assert_eq!(FsError::posix(Errno::EROFS, b"").errno(), libc::EROFS);
        let e = FsError::Busy {
            node: NodeId::ROOT,
            reason: "held",
        };
        assert_eq!((e.errno(), e.is_fault()), (libc::ETXTBSY, false));
    }

    #[test]
    fn a_full_disk_or_quota_is_an_outcome_not_a_fault() {
        for errno in [libc::ENOSPC, libc::EDQUOT, libc::EFBIG, libc::ENAMETOOLONG] {
            let e = FsError::io("write", b"big", io::Error::from_raw_os_error(errno));
            assert!(!e.is_fault(), "errno {errno} logged as a server fault");
        }
        let e = FsError::io("write", b"big", io::Error::from_raw_os_error(libc::EIO));
        assert!(e.is_fault(), "EIO from the host is a fault");
    }
}
