//! The store's error type. Each variant names the object involved; the
//! underlying cause, if any, is the `source` and is not repeated in the
//! message, so that a chain printed with its causes (anyhow's `{:#}`, or
//! [`with_causes`]) says each once.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store database at {}", path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("the store at {0} is busy: another strata process held it for too long; try again")]
    Busy(PathBuf),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("no such layer: {0:#}")]
    NoSuchLayer(crate::Digest),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("invalid reference format: {0:?}")]
    BadReference(String),
    #[error("{source_name}: {reason}")]
    BadLayer { source_name: String, reason: String },
    #[error("chunk {digest:#} is missing or corrupt: {reason}")]
    BadChunk {
        digest: crate::Digest,
        reason: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("the store at {0} was opened read-only")]
    ReadOnly(PathBuf),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An error followed by its causes, outermost first, each once: for
/// messages that embed an error in a string of their own.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// Attaches the path to an io::Error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_names_its_path_and_says_its_cause_once() {
        let e: Result<()> =
            Err(std::io::Error::from_raw_os_error(libc::EACCES)).at("/store/db/LOCK");
        let shown = with_causes(&e.unwrap_err());
        assert_eq!(shown.matches("Permission denied").count(), 1, "{shown}");
        assert!(shown.starts_with("/store/db/LOCK: "), "{shown}");
    }
}
