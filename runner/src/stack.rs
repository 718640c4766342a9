//! The paths a container's files live at, and the ones a commit leaves
//! out.

use crate::container_id::ContainerId;
use layerdb::{ContainerDir, ContainerRecord};
use std::path::{Path, PathBuf};

/// Where a container's files are: the directory and upper layerdb's
/// [`ContainerDir`] places, and the runtime files the runner keeps there.
pub struct ContainerPaths {
    pub dir: PathBuf,
    upper: PathBuf,
}

impl ContainerPaths {
    pub fn new(root: &Path, id: &ContainerId) -> ContainerPaths {
        ContainerPaths::at(root, id.as_str())
    }
    /// The paths of a recorded container (its id was checked when it was
    /// made).
    pub fn of(root: &Path, rec: &ContainerRecord) -> ContainerPaths {
        ContainerPaths::at(root, &rec.id)
    }
    fn at(root: &Path, id: &str) -> ContainerPaths {
        let store_dir = ContainerDir::new(root, id);
        ContainerPaths {
            dir: store_dir.path().to_path_buf(),
            upper: store_dir.upper(),
        }
    }
    pub fn upper(&self) -> PathBuf {
        self.upper.clone()
    }
    /// The merged tree the monitor mounts and the container pivots into.
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    /// The run state the monitor records (see run_state.rs).
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    /// The container's start turn: locked (flock) while a `run`, `start`
    /// or `restart` starts the container, a `cp` copies into it stopped,
    /// or `rm` or a prune removes it, so that those take turns.
    pub fn start_lock(&self) -> PathBuf {
        self.dir.join("start.lock")
    }

    /// Present once `stop`, `kill` or `rm -f` signalled the container, until
    /// a start by hand: its restart policy no longer applies (docker's
    /// "manually stopped").
    pub fn stopped_by_hand(&self) -> PathBuf {
        self.dir.join("stopped-by-hand")
    }

    /// How many times the restart policy started the container since it
    /// was last started by hand (decimal).
    pub fn restart_count(&self) -> PathBuf {
        self.dir.join("restart-count")
    }

    /// Present while the restart policy's keeper waits to start the
    /// exited container again: `ps` and `inspect` show it restarting.
    pub fn restart_pending(&self) -> PathBuf {
        self.dir.join("restart-pending")
    }

    /// The container's health, as its health prober last found it.
    pub fn health(&self) -> PathBuf {
        self.dir.join("health.json")
    }

    /// Locked (flock) by the one process that probes the container's
    /// health (`strata __health`).
    pub fn health_lock(&self) -> PathBuf {
        self.dir.join("health.lock")
    }

    /// Locked (flock) by the one process that carries out the container's
    /// restart policy (`strata __keep`).
    pub fn keeper_lock(&self) -> PathBuf {
        self.dir.join("keeper.lock")
    }

    /// Present while `restart` stops the container: an `--rm` container's
    /// monitor then leaves it for the start that follows, as docker's
    /// restart does.
    pub fn restarting(&self) -> PathBuf {
        self.dir.join("restarting")
    }
}

/// Paths a commit or diff never includes: files strata bind-mounts into
/// every container, as docker leaves them out.
pub fn is_runtime_path(path: &[u8], rec: &ContainerRecord) -> bool {
    const MOUNTED: [&[u8]; 3] = [b"etc/hosts", b"etc/hostname", b"etc/resolv.conf"];
    MOUNTED.contains(&path)
        || rec.mounts.iter().any(|m| {
            let target = m.target.trim_start_matches('/').as_bytes();
            path == target || (path.starts_with(target) && path.get(target.len()) == Some(&b'/'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_files_are_in_the_directory_layerdb_places() {
        let root = Path::new("/store");
        let id = ContainerId::random();
        let paths = ContainerPaths::new(root, &id);
        let dir = ContainerDir::new(root, id.as_str());
        assert_eq!(paths.dir, dir.path());
        assert_eq!(paths.upper(), dir.upper());
        for file in [paths.merged(), paths.state(), paths.log(), dir.record()] {
            assert_eq!(file.parent(), Some(dir.path()), "{}", file.display());
        }
    }
}
