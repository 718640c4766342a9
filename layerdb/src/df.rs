//! `system df`: what the store's content would take unshared, against what
//! it takes on disk.

use crate::error::Result;
use crate::store::{logical_bytes, Store};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What `strata system df` reports: counts of each kind of record and the bytes
/// of the chunk files they share.
#[derive(Debug, Default)]
pub struct DiskUsage {
    /// Images in the index.
    pub images: u64,
    /// Layers in the index.
    pub layers: u64,
    /// Containers in the index.
    pub containers: u64,
    /// File content of every layer, each file counted in full.
    pub logical_bytes: u64,
    /// Disk blocks of chunk files.
    pub chunk_bytes: u64,
    /// Files in the chunk directory.
    pub chunk_files: u64,
    /// Disk blocks of the index (inline small files live there).
    pub index_bytes: u64,
}

impl DiskUsage {
    /// Bytes the store takes on disk: chunk files plus the index.
    pub fn stored_bytes(&self) -> u64 {
        self.chunk_bytes + self.index_bytes
    }
}

impl Store {
    /// Counts the store's records and adds up the disk blocks of its chunk
    /// files and index. Reads every layer's entries: slow on a large store.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let mut du = DiskUsage {
            images: self.image_count()?,
            containers: self.containers()?.len() as u64,
            ..Default::default()
        };
        for layer in self.layers()? {
            du.layers += 1;
            du.logical_bytes += logical_bytes(&self.layer_entries(&layer)?);
        }
        for (path, _) in self.chunks().list()? {
            du.chunk_files += 1;
            du.chunk_bytes += blocks(&path);
        }
        du.index_bytes = tree_blocks(&self.root().join("db"));
        Ok(du)
    }
}

fn blocks(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

fn tree_blocks(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|f| blocks(&f.path())).sum())
        .unwrap_or(0)
}
