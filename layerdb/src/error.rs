//! The store's error type. Each variant names the object involved; the
//! underlying cause, if any, is the `source`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store database at {path}: {source}")]
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
