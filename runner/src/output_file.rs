//! `-o FILE` of `save` and `export`: where their tar goes.
//!
//! A new or regular FILE is written aside and renamed into place, as
//! docker's client writes it: a failed run leaves no half file. Aside is
//! an unnamed file in FILE's directory (`O_TMPFILE`) where the filesystem
//! makes one, so that a run killed before its end leaves nothing there
//! either; it gets a name only once written. A device,
//! fifo or socket (`-o /dev/null`) is written in place: renaming over it
//! would replace the host's node with a file. A symlink is followed only
//! when it is the caller's own (`/dev/stdout` is root's); another user's,
//! planted in a directory they own, is replaced rather than written
//! through, so root's save cannot be steered onto a file of root's.

use anyhow::{bail, Context as _, Result};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Whether `meta` (of a name, not followed) is a link the caller owns:
/// one to follow to the place it names (`-o /dev/stdout`).
pub fn is_own_link(meta: &fs::Metadata) -> bool {
    meta.file_type().is_symlink() && meta.uid() == nix::unistd::geteuid().as_raw()
}

pub enum Output {
    /// Renamed onto `path` once written.
    Aside {
        file: tempfile::NamedTempFile,
        path: PathBuf,
    },
    /// An unnamed file in `path`'s directory, linked in once written.
    Unnamed {
        file: File,
        path: PathBuf,
    },
    InPlace {
        file: File,
        path: PathBuf,
    },
}

impl Output {
    pub fn open(path: &Path) -> Result<Output> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Output::aside(path),
            Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
        };
        let kind = meta.file_type();
        if is_own_link(&meta) {
            let file = File::create(path).with_context(|| format!("open {}", path.display()))?;
            return Ok(Output::in_place(file, path));
        }
        if kind.is_file() || kind.is_symlink() {
            return Output::aside(path);
        }
        if kind.is_dir() {
            bail!("{} is a directory", path.display());
        }
        // A device, fifo or socket.
        let file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        Ok(Output::in_place(file, path))
    }

    fn in_place(file: File, path: &Path) -> Output {
        Output::InPlace {
            file,
            path: path.to_path_buf(),
        }
    }

    fn aside(path: &Path) -> Result<Output> {
        let parent = parent_of(path);
        // 0600, as docker's client makes it (and a named temporary file).
        let unnamed = fs::OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(parent);
        match unnamed {
            Ok(file) => {
                return Ok(Output::Unnamed {
                    file,
                    path: path.to_path_buf(),
                })
            }
            // A filesystem without unnamed files (EOPNOTSUPP; EISDIR from
            // a kernel that predates them) gets a named one.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("create a file in {}", parent.display()))
            }
        }
        let file = tempfile::Builder::new()
            .prefix(".strata-output-")
            .tempfile_in(parent)
            .with_context(|| format!("create a file in {}", parent.display()))?;
        Ok(Output::Aside {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The file to write, its errors naming `path`.
    pub fn writer(&mut self) -> Named<&mut File> {
        let (file, path) = match self {
            Output::Aside { file, path } => (file.as_file_mut(), path),
            Output::Unnamed { file, path } | Output::InPlace { file, path } => (file, path),
        };
        Named {
            inner: file,
            name: path.display().to_string(),
        }
    }

    /// Everything written: the file is synced and renamed into place.
    pub fn finish(self) -> Result<()> {
        match self {
            Output::Aside { file, path } => {
                let write = || format!("write {}", path.display());
                file.as_file().sync_all().with_context(write)?;
                file.persist(&path).with_context(write)?;
            }
            Output::Unnamed { file, path } => {
                let write = || format!("write {}", path.display());
                file.sync_all().with_context(write)?;
                link_into_place(&file, &path).with_context(write)?;
            }
            Output::InPlace { mut file, path } => file
                .flush()
                .with_context(|| format!("write {}", path.display()))?,
        }
        Ok(())
    }
}

/// A writer whose errors name what it writes to: a full disk under
/// `save` or `export` said only "No space left on device (os error 28)".
/// The error's kind stays, for the callers that tell a full disk by it.
pub struct Named<W> {
    inner: W,
    name: String,
}

/// Standard output, as a [`Named`] writer; not locked, so that a thread
/// of its own may write it (`export`'s walk).
pub fn stdout() -> Named<std::io::Stdout> {
    Named {
        inner: std::io::stdout(),
        name: "standard output".into(),
    }
}

impl<W> Named<W> {
    fn named(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(e.kind(), format!("write {}: {e}", self.name))
    }
}

impl<W: Write> Write for Named<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.named(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.named(e))
    }
}

/// Gives the unnamed `file` the name `path`, replacing what is there. A
/// link cannot replace a name, so the file is linked under a free name
/// beside it and renamed over `path`: a kill between the two leaves that
/// name, for a moment instead of for the whole run.
fn link_into_place(file: &File, path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // Through /proc, which needs no CAP_DAC_READ_SEARCH (AT_EMPTY_PATH does).
    let proc = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let parent = parent_of(path);
    let mut tries = 0;
    let aside = loop {
        let name = parent.join(format!(".strata-output-{:016x}", rand::random::<u64>()));
        let (cwd, follow) = (rustix::fs::CWD, rustix::fs::AtFlags::SYMLINK_FOLLOW);
        match rustix::fs::linkat(cwd, &proc, cwd, &name, follow) {
            Ok(()) => break name,
            Err(rustix::io::Errno::EXIST) if tries < 100 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    };
    fs::rename(&aside, path).inspect_err(|_| {
        let _ = fs::remove_file(&aside);
    })
}

/// The directory `path` is named in.
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
