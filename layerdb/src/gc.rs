//! Garbage collection: drops layers no image uses (and no live mount pins),
//! then chunk files no layer references, leftover temporary files and
//! container directories without a record.
//!
//! Lock order: `gc.lock` before the writer lock (`lock`), always. An ingest
//! holds `gc.lock` shared from its first chunk and then takes the writer
//! lock to commit; gc took the writer lock first and then waited for
//! `gc.lock` exclusively, so an import and a gc each waited for the lock
//! the other held until one gave up ("store is busy").

use crate::container::{valid_container_id, ContainerDir};
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::keys;
use crate::store::Store;
use rocksdb::WriteBatch;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `strata gc` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Layers no image (nor a live mount's pin) referenced, removed from the
    /// index.
    pub layers_removed: u64,
    /// Chunk files no remaining layer references.
    pub chunks_removed: u64,
    /// Bytes of those chunk files and of the files in the container
    /// directories removed (their lengths, not their blocks).
    pub bytes_freed: u64,
    /// Leftover directories removed: dead readers' secondary-instance dirs and
    /// dirs of containers without a record.
    pub dirs_removed: u64,
}

/// Collects the store's garbage. Works on a full disk (see reserve.rs).
pub fn collect(root: &Path) -> Result<GcReport> {
    // Before `gc.lock` is made.
    crate::store::create_root_for_writing(root)?;
    // No ingest may be between writing chunks and committing them.
    let _lock = crate::lock::take(
        &root.join("gc.lock"),
        crate::lock::Mode::Exclusive,
        Duration::from_secs(600),
        "imports and commits in progress to finish",
    )?;
    Store::open_to_delete(root)?.collect_garbage()
}

impl Store {
    /// The collection itself; the caller holds `gc.lock` exclusively.
    fn collect_garbage(&self) -> Result<GcReport> {
        let mut report = GcReport::default();

        let mut keep: HashSet<Digest> = match crate::pins::live_pins(self.root()) {
            Some(pinned) => pinned.into_iter().collect(),
            None => self.layers()?.into_iter().map(|l| l.diff_id).collect(),
        };
        self.for_each_image(|image, _| {
            keep.extend(image.layers);
            Ok(())
        })?;
        let mut batch = WriteBatch::default();
        let mut referenced: HashSet<Digest> = HashSet::new();
        let mut removed_ranges = Vec::new();
        for layer in self.layers()? {
            if keep.contains(&layer.diff_id) {
                for (_, e) in self.layer_entries(&layer)? {
                    referenced.extend(e.chunks().iter().map(|c| c.digest));
                }
            } else {
                let range = (
                    keys::entries_of_layer(layer.seq),
                    keys::entries_of_layer(layer.seq + 1),
                );
                batch.delete_range(&range.0, &range.1);
                removed_ranges.push(range);
                batch.delete(keys::layer(&layer.diff_id));
                for (key, _) in self.db().scan(&keys::compressed_blobs_of(&layer.diff_id))? {
                    batch.delete(key);
                }
                // The layer's tars as other tools wrote them, and the
                // blobs those were pushed as (named by their own digest).
                for (key, _) in self.db().scan(&keys::tar_splits_of(&layer.diff_id))? {
                    if let Some(named) = keys::tar_split_original(&key) {
                        for (blob, _) in self.db().scan(&keys::compressed_blobs_of(&named))? {
                            batch.delete(blob);
                        }
                    }
                    batch.delete(key);
                }
                report.layers_removed += 1;
            }
        }
        // Entries a commit wrote before a crash stopped it short of the
        // layer's record (see `Store::write_entries`).
        let uncommitted = (
            keys::entries_of_layer(self.next_seq()?),
            vec![keys::ENTRY + 1],
        );
        let orphans = self.db().any_between(&uncommitted.0, &uncommitted.1)?;
        if orphans {
            batch.delete_range(&uncommitted.0, &uncommitted.1);
        }
        // The verdicts of the chunk files removed below (and of any whose
        // file went before): written before the unlinks, as the layers.
        for digest in crate::chunk::verdicts::stored(self.db())? {
            if !referenced.contains(&digest) {
                crate::chunk::verdicts::drop_verdict(&mut batch, &digest);
            }
        }
        self.db().write(batch)?;

        for (path, digest) in self.chunks().list()? {
            if digest.is_some_and(|d| referenced.contains(&d)) {
                continue;
            }
            report.bytes_freed += fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.chunks().remove_path(&path)?;
            report.chunks_removed += 1;
        }
        // The removed layers' entries out of the tables, or every later
        // command still reads their keys' index (see `Db::compact_range`);
        // after the unlinks, which make room for the new tables. One
        // compaction over them all: one per layer would rewrite a table
        // holding many of them as many times.
        let span = removed_ranges.iter().map(|r| &r.0).min();
        if let (Some(from), Some(to)) = (span, removed_ranges.iter().map(|r| &r.1).max()) {
            self.db().compact_range(from, to);
        }
        // On its own: with the removed layers' span, it would stretch the
        // compaction to the end of every layer's entries.
        if orphans {
            self.db().compact_range(&uncommitted.0, &uncommitted.1);
        }

        let storage = crate::storage::of(self.root());
        // What processes that died left in tmp/: a directory named
        // `KIND-PID-UNIQUE` is process PID's (a mount server's secondary
        // instance; a copy's, an export's or a build's scratch directory),
        // removed once PID is gone. Other names are left alone.
        let tmp = self.root().join("tmp");
        for d in fs::read_dir(&tmp).at(&tmp)?.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            let pid = name
                .split_once('-')
                .filter(|(kind, _)| {
                    !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase())
                })
                .and_then(|(_, rest)| rest.split('-').next()?.parse().ok());
            if pid.is_some_and(|p| !crate::pins::process_alive(p)) {
                let _ = storage.remove_dir_all(&d.path());
                report.dirs_removed += 1;
            }
        }

        // A container being made has its directory before its record: the
        // containers lock keeps it from looking like an orphan here. The
        // orphans are removed after the lock is let go (a big upper takes
        // long, and every `run` waits for the lock): none can gain a
        // record meanwhile, as a new container's directory must not exist.
        let orphans: Vec<PathBuf> = {
            let _containers = crate::container_records::lock(self.root())?;
            let (good, damaged) = self.containers_and_damaged()?;
            let ids: HashSet<String> = good
                .into_iter()
                .map(|c| c.id)
                .chain(damaged.into_iter().map(|(id, _)| id))
                .collect();
            let dir = self.root().join(ContainerDir::PARENT);
            fs::read_dir(&dir)
                .at(&dir)?
                .flatten()
                .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|d| {
                    d.file_name()
                        .to_str()
                        .is_some_and(|n| valid_container_id(n) && !ids.contains(n))
                })
                .map(|d| d.path())
                .collect()
        };
        for orphan in orphans {
            // A container whose `rm` was killed keeps its upper here, out
            // of `ps -a`: what its removal frees counts.
            report.bytes_freed += bytes_under(&orphan);
            storage.remove_dir_all(&orphan).at(&orphan)?;
            report.dirs_removed += 1;
        }
        Ok(report)
    }
}

/// The lengths of the files under `dir`, symlinks not followed.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                _ => total += entry.metadata().map_or(0, |m| m.len()),
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, Kind};

    #[test]
    fn entries_a_crashed_commit_left_past_the_last_layer_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let past_the_last = |store: &Store| {
            let from = keys::entries_of_layer(store.next_seq().unwrap());
            store.db().any_between(&from, &[keys::ENTRY + 1]).unwrap()
        };
        let store = Store::open(&root).unwrap();
        let seq = store.next_seq().unwrap();
        let left = vec![(b"left".to_vec(), Entry::new(Kind::Dir, 0o755))];
        store.write_entries(seq, left).unwrap();
        assert!(past_the_last(&store));
        drop(store);
        collect(&root).unwrap();
        assert!(!past_the_last(&Store::open(&root).unwrap()));
    }
}
