//! The real backend: the operations on the filesystem itself.

use super::Storage;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The filesystem itself, as every command uses it.
#[derive(Debug, Default)]
pub struct Real;

impl Storage for Real {
    fn create_dir(&self, dir: &Path, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new().mode(mode).create(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<bool> {
        if dir.is_dir() {
            return Ok(false);
        }
        fs::create_dir_all(dir).map(|()| true)
    }

    /// The bytes go to an unnamed file (O_TMPFILE) that is linked under its
    /// name only when complete, one directory update per file; where the
    /// filesystem has no O_TMPFILE, through a temporary name and a rename.
    fn create_file(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<bool> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let open_unnamed = || {
            OpenOptions::new()
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_TMPFILE)
                .open(dir)
        };
        let unnamed = match open_unnamed() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir)?;
                open_unnamed()
            }
            other => other,
        };
        match unnamed {
            Ok(mut f) => {
                f.write_all(data)?;
                // Without `sync` the ingest's `syncfs` calls (its chunk
                // writers' every 48 MiB, the one before the index commit)
                // write the bytes back, many files at once: starting each
                // file's writeback here (`sync_file_range`) cost an ingest
                // a sixth of its CPU, a block allocation and a device
                // request per chunk file (docs/design.md, "An ingest
                // without a writeback per chunk").
                if sync {
                    f.sync_data()?;
                }
                link_unnamed(&f, path)
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EISDIR)
                ) =>
            {
                if path.exists() {
                    return Ok(false);
                }
                write_renamed(path, data, sync).map(|()| true)
            }
            Err(e) => Err(e),
        }
    }

    fn replace_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        write_renamed(path, data, false)
    }

    fn replace_file_synced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        write_renamed(path, data, true)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn sync_all(&self, path: &Path) -> io::Result<()> {
        let f = File::open(path)?;
        nix::unistd::syncfs(&f).map_err(io::Error::from)
    }

    fn preallocate(&self, path: &Path, len: i64) -> io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mode = nix::fcntl::FallocateFlags::empty();
        if let Err(e) = nix::fcntl::fallocate(&f, mode, 0, len) {
            let _ = fs::remove_file(path);
            return Err(e.into());
        }
        Ok(())
    }

    fn open_lock(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
    }
}

/// Writes `data` under a temporary name beside `path`, then renames it to
/// `path`; the temporary file is removed if anything fails (a full disk
/// leaves nothing).
fn write_renamed(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(data)?;
            if sync {
                f.sync_data()?;
            }
            Ok(())
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Gives an O_TMPFILE file its name; returns false if the name was taken
/// meanwhile (another process stored the same chunk: as good).
fn link_unnamed(f: &File, path: &Path) -> io::Result<bool> {
    use nix::fcntl::{AtFlags, AT_FDCWD};
    use std::os::fd::AsRawFd;
    let from = format!("/proc/self/fd/{}", f.as_raw_fd());
    let linked = nix::unistd::linkat(
        AT_FDCWD,
        from.as_str(),
        AT_FDCWD,
        path,
        AtFlags::AT_SYMLINK_FOLLOW,
    );
    match linked.map_err(io::Error::from) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
