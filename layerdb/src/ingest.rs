//! Writing new content: chunks go to disk before the index knows them, so
//! an ingest holds `<root>/gc.lock` shared from its first chunk until its
//! image is committed. `gc` takes that lock exclusively, and so can never
//! delete the chunks of a layer that is about to be committed.

use crate::chunk::ChunkDir;
use crate::error::{IoContext, Result, StoreError};
use crate::layer::{LayerBuilder, PendingLayer};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Ingest {
    chunks: ChunkDir,
    _gc_lock: File,
}

impl Ingest {
    pub fn begin(root: &Path) -> Result<Ingest> {
        crate::store::create_root(root)?;
        let lock = flock(
            &root.join("gc.lock"),
            libc::LOCK_SH,
            Duration::from_secs(600),
        )?;
        Ok(Ingest {
            chunks: ChunkDir::new(root.join("chunks")),
            _gc_lock: lock,
        })
    }

    pub fn builder(&self, source: &str) -> LayerBuilder {
        LayerBuilder::new(self.chunks.clone(), source)
    }

    pub fn from_tar(
        &self,
        source: &str,
        input: impl Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PendingLayer> {
        crate::import::from_tar(self.chunks.clone(), source, input, progress)
    }

    pub fn from_dir(&self, dir: &Path, progress: &mut dyn FnMut(u64)) -> Result<PendingLayer> {
        crate::import::from_dir(self.chunks.clone(), dir, progress)
    }
}

/// Takes a flock, waiting at most `limit`.
pub(crate) fn flock(path: &PathBuf, how: i32, limit: Duration) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)?;
    let deadline = Instant::now() + limit;
    loop {
        // SAFETY: flock only reads the descriptor, which `f` keeps open.
        if unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).at(path);
        }
        if Instant::now() >= deadline {
            return Err(StoreError::Busy(path.clone()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
