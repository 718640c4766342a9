//! The Unix sockets a container's monitor listens on in the container's
//! directory (`pause.sock`, `attach.sock`): bound at a path that fits a
//! socket address however long the store's path is, removed when the
//! monitor is done with them.

use anyhow::Context as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A path for `name` in `dir` that fits a socket address (108 bytes),
/// however long `dir` is: through an open descriptor of the directory,
/// which must stay open while the path is used.
fn short_path(dir: &std::fs::File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

fn open_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(dir).with_context(|| format!("open {}", dir.display()))
}

/// Listens on `name` in `container_dir` (one a killed monitor left is
/// replaced).
pub fn listen(container_dir: &Path, name: &str) -> anyhow::Result<(UnixListener, Guard)> {
    let dir = open_dir(container_dir)?;
    let path = container_dir.join(name);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(short_path(&dir, name))
        .with_context(|| format!("listen on {}", path.display()))?;
    Ok((listener, Guard { path }))
}

/// Connects to the monitor's socket `name` in `container_dir`.
pub fn connect(container_dir: &Path, name: &str) -> anyhow::Result<UnixStream> {
    let dir = open_dir(container_dir)?;
    UnixStream::connect(short_path(&dir, name)).with_context(|| {
        format!(
            "reach the container's monitor at {}",
            container_dir.join(name).display()
        )
    })
}

/// Removes the socket when the monitor is done.
pub struct Guard {
    path: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Each client of `listener`, for ever. A failing accept (the monitor
/// out of descriptors) is retried after a pause: at once, it would spin
/// a core for as long as the failure lasts.
pub fn clients(
    listener: &std::os::unix::net::UnixListener,
) -> impl Iterator<Item = std::os::unix::net::UnixStream> + '_ {
    listener.incoming().filter_map(|client| match client {
        Ok(client) => Some(client),
        Err(_) => {
            std::thread::sleep(std::time::Duration::from_millis(100));
            None
        }
    })
}
