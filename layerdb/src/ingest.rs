//! Writing new content: chunks go to disk before the index knows them, so
//! an ingest holds `<root>/gc.lock` shared from its first chunk until its
//! image is committed. `gc` takes that lock exclusively, and so can never
//! delete the chunks of a layer that is about to be committed.

use crate::chunk::ChunkDir;
use crate::error::Result;
use crate::layer::{LayerBuilder, PendingLayer};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

pub struct Ingest {
    chunks: ChunkDir,
    _gc_lock: File,
}

impl Ingest {
    pub fn begin(root: &Path) -> Result<Ingest> {
        crate::store::create_root(root)?;
        let lock = crate::lock::take(
            &root.join("gc.lock"),
            crate::lock::Mode::Shared,
            Duration::from_secs(600),
            "strata gc to finish",
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

    /// `from_tar` for a layer of an image, also giving the sha256 of the
    /// uncompressed tar as read (the diff id an image config names the
    /// layer by); `below` finds directories in the layers beneath it.
    pub fn from_tar_with_diff_id(
        &self,
        source: &str,
        input: impl Read,
        below: &dyn Fn(&[u8]) -> Option<crate::Entry>,
    ) -> Result<(PendingLayer, crate::Digest)> {
        crate::import::from_tar_with_diff_id(self.chunks.clone(), source, input, below)
    }

    pub fn from_dir(&self, dir: &Path, progress: &mut dyn FnMut(u64)) -> Result<PendingLayer> {
        crate::import::from_dir(self.chunks.clone(), dir, progress)
    }
}
