//! The store's error type. Each variant names the object involved; the
//! underlying cause, if any, is the `source` and is not repeated in the
//! message, so that a chain printed with its causes (anyhow's `{:#}`, or
//! [`with_causes`]) says each once.

use std::path::PathBuf;

/// Everything a store operation can fail with. Display names the object (path,
/// image, layer, key); the cause, if any, is only in `source`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system call on a store file failed.
    #[error("{}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the system call answered.
        #[source]
        source: std::io::Error,
    },
    /// RocksDB failed to open, read or write the index.
    #[error("store database at {}", path.display())]
    Db {
        /// The index directory (`<root>/db`).
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// The index's files are not all there (a file lost, cut short, or a
    /// `db/` gone while the store holds chunks): opening it would make a
    /// new, emptier index, and gc would then delete what the lost part
    /// named.
    #[error("the store's index at {} is damaged: {reason}; restore it from a backup, or move the store aside", path.display())]
    IndexDamaged {
        /// The index directory (`<root>/db`).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process held the store's lock past the wait limit; the store
    /// root. Retrying later is the fix.
    #[error("the store at {0} is busy: another strata process held it for too long; try again")]
    Busy(PathBuf),
    /// A command that writes was given a store on a read-only filesystem;
    /// the store root. Commands that only read open it as it is.
    #[error("the store at {0} is on a read-only filesystem: only commands that read work there")]
    ReadOnlyFilesystem(PathBuf),
    /// No image has this reference, id or id prefix (docker's wording).
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// No layer with this diff id is in the store.
    #[error("no such layer: {0:#}")]
    NoSuchLayer(crate::Digest),
    /// No container has this name, id or id prefix (docker's wording).
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// More than one container (or image) id starts with this prefix
    /// (moby's ErrAmbiguousPrefix wording): which one is meant is not
    /// for the store to guess.
    #[error("multiple IDs found with provided prefix: {0}")]
    AmbiguousPrefix(String),
    /// Not a valid `name[:tag]` reference.
    #[error("invalid reference format: {0:?}")]
    BadReference(String),
    /// An imported tar or directory is not a valid layer.
    #[error("{source_name}: {reason}")]
    BadLayer {
        /// The input's name (a file name, `-`, a container).
        source_name: String,
        /// What is wrong, naming the path in the layer.
        reason: String,
    },
    /// A chunk file is absent or its bytes do not hash to its name: the store
    /// is damaged (`strata verify` says where).
    #[error("chunk {digest:#} is missing or corrupt: {reason}")]
    BadChunk {
        /// The chunk's digest.
        digest: crate::Digest,
        /// What is wrong with it (missing, short, wrong hash).
        reason: String,
    },
    /// A new container's name belongs to another container (docker's
    /// message).
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse {
        /// The name asked for.
        name: String,
        /// The id of the container that has it.
        holder: String,
    },
    /// A rename to a name another container has (docker's message).
    #[error("Error when allocating new name: Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name.")]
    RenameTaken {
        /// The name asked for.
        name: String,
        /// The id of the container that has it.
        holder: String,
    },
    /// A rename to the name the container has (docker's message).
    #[error("Renaming a container with the same name as its current name")]
    RenameToSameName,
    /// `rmi` without `--force` of an image a container uses (docker's
    /// message).
    #[error("conflict: {refusal} - image is being used by container {container}")]
    ImageInUse {
        /// What was refused, in docker's words (`unable to delete ...`).
        refusal: String,
        /// The short id of a container using the image.
        container: String,
    },
    /// A write was asked of a store opened without writing; the store root.
    #[error("the store at {0} was opened read-only")]
    ReadOnly(PathBuf),
    /// An index record could not be decoded: the store is damaged or was
    /// written by another version.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The record's key, lossily as text.
        key: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// A directory given as the store root holds files that are not a
    /// store's: the root, and one of them.
    #[error("{} is not a strata store, and it holds other files ({name}): give --root an empty or new directory", root.display())]
    NotAStore {
        /// The directory.
        root: PathBuf,
        /// One of the names in it that is not a store's.
        name: String,
    },
    /// Every generated name tried for a new container was taken.
    #[error("no free generated container name: give one with --name")]
    NoFreeName,
    /// A thread the index needs could not be started: most often the
    /// user's process limit, which counts threads.
    #[error("{}", no_thread_text(.0))]
    NoThread(#[source] std::io::Error),
    /// A command was run by a user who does not own the store (root on a
    /// user's store): what a writer wrote would be theirs, and the owner
    /// locked out of it; and the store's files are the owner's to plant,
    /// which a reader would have followed as root.
    #[error("the store at {} belongs to {owner}: only its owner may use it (run strata as that user)", root.display())]
    OtherOwner {
        /// The store root.
        root: PathBuf,
        /// Its owner's name and uid.
        owner: String,
    },
}

/// What a failed thread start says: EAGAIN is the process limit.
fn no_thread_text(e: &std::io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EAGAIN) {
        "cannot start a thread: the user's process limit (ulimit -u) is reached"
    } else {
        "cannot start a thread"
    }
}

/// Whether `e` says a filesystem had no room for what was asked (no
/// space, or the user's quota). By its kind, which an error wrapped with
/// the path it met (tempfile's) keeps where its errno is gone.
pub fn no_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded)
}

impl StoreError {
    /// Whether the store's filesystem had no room for what was asked (no
    /// space, or the user's quota). RocksDB's errors carry only text: its
    /// message for ENOSPC is strerror's.
    pub fn is_no_space(&self) -> bool {
        const WORDS: [&str; 2] = ["No space left on device", "Disk quota exceeded"];
        match self {
            StoreError::Io { source, .. } => no_space(source),
            StoreError::Db { source, .. } => {
                let text = source.to_string();
                WORDS.iter().any(|w| text.contains(w))
            }
            _ => false,
        }
    }
}

/// A store result; the error defaults to [`StoreError`].
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

    #[test]
    fn an_io_error_shows_only_its_path_and_leaves_the_cause_to_source() {
        let e = Err::<(), _>(std::io::Error::from_raw_os_error(libc::EACCES))
            .at("/store/chunks")
            .unwrap_err();
        // What anyhow's `{:#}` and the runner's chain print: each layer's
        // Display, joined; a Display that embedded its source said it twice.
        assert_eq!(e.to_string(), "/store/chunks");
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("Permission denied (os error 13)"));
    }
}
