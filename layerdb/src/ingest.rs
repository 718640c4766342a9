//! Writing new content: chunks go to disk before the index knows them, so
//! an ingest holds `<root>/gc.lock` shared from its first chunk until its
//! image is committed. `gc` takes that lock exclusively, and so can never
//! delete the chunks of a layer that is about to be committed.
//!
//! An ingest that ends without a commit (a full disk, a bad archive)
//! removes the chunk files it wrote that nothing references, so a failed
//! import leaves the disk as it found it (see [`Ingest`]'s drop).

use crate::chunk::ChunkDir;
use crate::digest::Digest;
use crate::error::Result;
use crate::layer::{LayerBuilder, PendingLayer};
use crate::store::Store;
use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Images committed by this process, per store root: an ingest that saw
/// one committed since it began leaves its chunks (they are referenced,
/// or gc's).
static COMMITS: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

fn commits(root: &Path) -> u64 {
    let commits = COMMITS.lock().unwrap_or_else(|p| p.into_inner());
    commits
        .iter()
        .find(|(r, _)| r == root)
        .map_or(0, |(_, n)| *n)
}

/// Called by `Store::commit_image` once its batch is written.
pub(crate) fn note_commit(root: &Path) {
    let mut commits = COMMITS.lock().unwrap_or_else(|p| p.into_inner());
    match commits.iter_mut().find(|(r, _)| r == root) {
        Some((_, n)) => *n += 1,
        None => commits.push((root.to_path_buf(), 1)),
    }
}

/// One import or commit in progress: new layers are built through it, and it
/// holds `gc.lock` shared until dropped, so `gc` cannot remove their chunks
/// before the image is committed. Dropped without a commit, it removes the
/// chunk files it wrote that nothing references.
pub struct Ingest {
    root: PathBuf,
    chunks: ChunkDir,
    /// Chunk files this ingest made (not those it found).
    created: Arc<Mutex<Vec<Digest>>>,
    commits_at_begin: u64,
    gc_lock: File,
}

impl Ingest {
    /// Starts an ingest into the store at `root` (made if missing), waiting up
    /// to 10 minutes for a running `gc` to finish.
    pub fn begin(root: &Path) -> Result<Ingest> {
        // Before any chunk file is made.
        crate::store::create_root_for_writing(root)?;
        let lock = crate::lock::take(
            &root.join("gc.lock"),
            crate::lock::Mode::Shared,
            Duration::from_secs(600),
            "strata gc to finish",
        )?;
        let (chunks, created) = ChunkDir::new(root.join("chunks")).recording_new();
        Ok(Ingest {
            root: root.to_path_buf(),
            chunks,
            created,
            commits_at_begin: commits(root),
            gc_lock: lock,
        })
    }

    /// A builder for a layer made entry by entry (commit of a container's
    /// upper); `source` names it in error messages.
    pub fn builder(&self, source: &str) -> LayerBuilder {
        LayerBuilder::new(self.chunks.clone(), source)
    }

    /// Reads an uncompressed layer tar into a new layer; `source` names it in
    /// error messages, `progress` is told how many bytes each read took.
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
    /// layer by); `framing` says whether `input` may still be compressed,
    /// `below` finds directories in the layers beneath it.
    pub fn from_tar_with_diff_id(
        &self,
        source: &str,
        input: impl Read,
        framing: crate::import::Framing,
        below: &dyn Fn(&[u8]) -> Option<crate::Entry>,
    ) -> Result<(PendingLayer, crate::Digest)> {
        crate::import::from_tar_with_diff_id(self.chunks.clone(), source, input, framing, below)
    }

    /// Reads a host directory tree into a new layer; `progress` is told each
    /// regular file's size as it is read.
    pub fn from_dir(&self, dir: &Path, progress: &mut dyn FnMut(u64)) -> Result<PendingLayer> {
        crate::host_dir::from_dir(self.chunks.clone(), dir, progress)
    }

    /// Removes the chunk files this failed ingest made that no layer
    /// references. Only when no other ingest is running (one may have
    /// found one of these chunks and be about to commit a layer using it),
    /// and reading the index without writing, which works on a full disk.
    /// Returns how many were removed and how many are left to `gc`.
    fn remove_unreferenced(&self, created: &[Digest]) -> Result<(usize, usize)> {
        if !crate::lock::try_exclusive(&self.gc_lock) {
            return Ok((0, created.len()));
        }
        let mut referenced = HashSet::new();
        if self.root.join("db/CURRENT").exists() {
            let store = Store::open_without_writing(&self.root)?;
            let ours: HashSet<&Digest> = created.iter().collect();
            for layer in store.layers()? {
                for (_, e) in store.layer_entries(&layer)? {
                    referenced.extend(e.chunks().iter().map(|c| c.digest));
                }
            }
            referenced.retain(|d| ours.contains(d));
        }
        for d in created.iter().filter(|d| !referenced.contains(d)) {
            self.chunks.remove(d)?;
        }
        Ok((created.len() - referenced.len(), 0))
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if commits(&self.root) != self.commits_at_begin {
            return;
        }
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        if created.is_empty() {
            return;
        }
        match self.remove_unreferenced(&created) {
            Ok((_, 0)) => {}
            // Not a warning: the failure is the caller's one line, and gc
            // removes these as it removes any chunk nothing references.
            Ok((_, left)) => log::info!(
                "{left} chunk files of the failed ingest are left for `strata gc` (another import or commit is running)"
            ),
            Err(e) => log::warn!(
                "the chunk files of the failed ingest are left for `strata gc`: {}",
                crate::error::with_causes(&e)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, Kind};

    fn chunk_files(root: &Path) -> usize {
        std::fs::read_dir(root.join("chunks")).unwrap().count()
    }

    fn add_file(ingest: &Ingest, seed: u8) -> PendingLayer {
        let mut b = ingest.builder("test");
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i * 7 + seed as u32) as u8)
            .collect();
        let mut e = Entry::new(Kind::Regular, 0o644);
        e.size = data.len() as u64;
        b.add(b"f".to_vec(), e, Some(&mut &data[..] as &mut dyn Read))
            .unwrap();
        b.finish().unwrap()
    }

    #[test]
    fn a_failed_ingest_removes_the_chunks_it_wrote_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        // One committed layer whose chunks must stay.
        let ingest = Ingest::begin(&root).unwrap();
        let kept = add_file(&ingest, 1);
        let store = Store::open(&root).unwrap();
        let config = crate::image::ImageConfig::new("2024-01-01T00:00:00Z".into());
        store
            .commit_image(crate::store::NewImage {
                config,
                layer: Some(kept),
                parent: None,
                reference: None,
            })
            .unwrap();
        drop(store);
        drop(ingest);
        let committed = chunk_files(&root);
        assert!(committed > 0);
        // An ingest that never commits (its import failed).
        let ingest = Ingest::begin(&root).unwrap();
        add_file(&ingest, 1); // the same content: no new chunk
        add_file(&ingest, 2);
        assert!(chunk_files(&root) > committed);
        drop(ingest);
        assert_eq!(chunk_files(&root), committed);
    }
}
