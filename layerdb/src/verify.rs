//! `verify`: re-hash every chunk and resolve every reference. Problems are
//! collected, not stopped at, so one run names every broken object.
//! Unreferenced chunks and layers are not problems: gc reclaims them.
//!
//! Every chunk is hashed whatever verdict the store keeps for it (damage
//! beneath the filesystem keeps a file's fingerprint: this is the tool
//! that finds it). The verdicts are then brought up to date in one batch:
//! each good chunk's recorded with its file's fingerprint, so later cold
//! reads need no hash, and each damaged one's dropped, so mounts hash
//! that chunk again (and fail).
//!
//! A damaged chunk (missing, or not hashing to its name) cannot be rebuilt
//! from the store: its bytes are nowhere else. `--repair` removes the
//! damaged files and names the images that need their content imported
//! again; an import of the same content writes the chunk anew (an import
//! compares every chunk file it finds with the bytes it brings, and
//! replaces one that differs, so it repairs without `--repair` too).

use crate::chunk::verdicts::{self, Verdict};
use crate::digest::Digest;
use crate::entry::Kind;
use crate::error::Result;
use crate::oci_tar::HashingWriter;
use crate::store::Store;
use std::collections::{HashMap, HashSet};

/// What `strata verify` found; the store is sound when `problems` is empty.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Images checked.
    pub images: u64,
    /// Layers checked.
    pub layers: u64,
    /// Distinct chunks re-hashed.
    pub chunks: u64,
    /// One line per broken object, naming it (layer, path, chunk or image).
    pub problems: Vec<String>,
    /// Chunks that are missing or do not hash to their name, with the
    /// layers that use them.
    pub damaged: Vec<(Digest, Vec<Digest>)>,
    /// The chunks found good, with their files' fingerprints: the verdicts
    /// to record ([`Store::record_verdicts`]).
    good: Vec<Verdict>,
}

impl VerifyReport {
    /// Notes that the verdicts could not be recorded (`e`): a warning when
    /// only good ones were to be (they cost later reads a hash), a problem
    /// when a damaged chunk's was to be dropped (mounts would serve it).
    pub fn verdicts_unrecorded(&mut self, e: &dyn std::error::Error) {
        let e = crate::error::with_causes(e);
        if self.damaged.is_empty() {
            log::warn!("chunk verdicts not recorded: {e}");
        } else {
            self.problems.push(format!(
                "the damaged chunks' verdicts were not dropped: {e}"
            ));
        }
    }
}

impl Store {
    /// Re-hashes every chunk every layer uses and checks every image's layers
    /// and every hardlink's target exist; changes only the chunks' verdicts
    /// (opened for writing; one that cannot be written is a warning, or a
    /// problem for a damaged chunk's). Opened for reading it writes
    /// nothing: [`Store::record_verdicts`] of a writer records them after.
    /// An error is one the check could not go on after (the index
    /// unreadable).
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut r = VerifyReport::default();
        let layers: HashMap<Digest, crate::layer::LayerMeta> =
            self.layers()?.into_iter().map(|l| (l.diff_id, l)).collect();
        let mut checked: HashSet<Digest> = HashSet::new();
        let mut damaged: HashMap<Digest, Vec<Digest>> = HashMap::new();
        let mut good: Vec<Verdict> = Vec::new();

        for layer in layers.values() {
            r.layers += 1;
            let entries = self.layer_entries(layer)?;
            let paths: HashSet<&[u8]> = entries.iter().map(|(p, _)| p.as_slice()).collect();
            let mut chunks_ok = true;
            for (path, e) in &entries {
                if e.kind == Kind::Hardlink && !paths.contains(e.link.as_slice()) {
                    r.problems.push(format!(
                        "layer {:#}: hardlink {:?} points to missing {:?}",
                        layer.diff_id,
                        String::from_utf8_lossy(path),
                        String::from_utf8_lossy(&e.link)
                    ));
                }
                for c in e.chunks() {
                    if checked.insert(c.digest) {
                        r.chunks += 1;
                        match self.chunks().check(c) {
                            Ok(print) => good.push((c.digest, print)),
                            Err(err) => {
                                damaged.insert(c.digest, Vec::new());
                                r.problems.push(format!(
                                    "layer {:#}: file {:?}: {err}",
                                    layer.diff_id,
                                    String::from_utf8_lossy(path)
                                ));
                            }
                        }
                    }
                    if let Some(users) = damaged.get_mut(&c.digest) {
                        chunks_ok = false;
                        if users.last() != Some(&layer.diff_id) {
                            users.push(layer.diff_id);
                        }
                    }
                }
            }
            if entries.len() as u64 != layer.entries {
                r.problems.push(format!(
                    "layer {:#}: {} entries, expected {}",
                    layer.diff_id,
                    entries.len(),
                    layer.entries
                ));
            } else if chunks_ok {
                let mut h = HashingWriter::default();
                crate::oci_tar::write(
                    entries.iter().map(|(p, e)| (p.as_slice(), e)),
                    self.chunks(),
                    &mut h,
                )?;
                let actual = h.digest();
                if actual != layer.diff_id {
                    r.problems.push(format!(
                        "layer {:#}: content hashes to {actual:#}",
                        layer.diff_id
                    ));
                }
            }
        }

        let images = self.images()?;
        let ids: HashSet<Digest> = images.iter().map(|(i, _)| i.id).collect();
        for (image, _) in &images {
            r.images += 1;
            if Digest::of(&image.config_json) != image.id {
                r.problems.push(format!(
                    "image {:#}: config does not hash to its id",
                    image.id
                ));
            }
            for d in &image.layers {
                if !layers.contains_key(d) {
                    r.problems
                        .push(format!("image {:#}: layer {d:#} is missing", image.id));
                }
            }
        }
        for (name, id) in self.references()?.into_iter().chain(self.repo_digests()?) {
            if !ids.contains(&id) {
                r.problems
                    .push(format!("reference {name}: image {id:#} is missing"));
            }
        }
        // The records are read now, the index as it was when the check
        // began: a container made since of an image committed since, or
        // one removed since, looked damaged to a verify that raced a build
        // (found by a review). What looks wrong is looked at again, with
        // the index caught up and the record read afresh.
        let (containers, damaged_records) = self.containers_and_damaged()?;
        let mut caught_up = false;
        for c in containers {
            let still_recorded = || self.container(&c.id).is_ok();
            if !ids.contains(&c.image) {
                if !caught_up {
                    self.db().catch_up()?;
                    caught_up = true;
                }
                if self.image(&c.image)?.is_none() && still_recorded() {
                    r.problems.push(format!(
                        "container {}: image {:#} is missing",
                        c.name, c.image
                    ));
                }
            }
            let upper = self.container_dir(&c.id).upper();
            if !upper.is_dir() && still_recorded() {
                r.problems.push(format!(
                    "container {}: upper {} is missing",
                    c.name,
                    upper.display()
                ));
            }
        }
        for (id, reason) in damaged_records {
            r.problems
                .push(format!("container {id}: {reason} (`rm {id}` removes it)"));
        }
        r.damaged = damaged.into_iter().collect();
        r.damaged.sort();
        r.good = good;
        if self.db().is_writer() {
            self.record_verdicts(&mut r);
        }
        Ok(r)
    }

    /// Records the verdicts of the chunks `report` found good and drops
    /// those of the damaged ones, in one batch; a failure is noted in the
    /// report ([`VerifyReport::verdicts_unrecorded`]). The check may have
    /// read through another instance, without the writer lock: a good
    /// chunk whose file changed or went since (gc, an import replacing
    /// it) keeps no verdict.
    pub fn record_verdicts(&self, report: &mut VerifyReport) {
        let still_there: Vec<Verdict> = report
            .good
            .iter()
            .filter(|(digest, print)| {
                verdicts::fingerprint_of(&self.chunks().path_of(digest)) == Some(*print)
            })
            .copied()
            .collect();
        if let Err(e) = self.write_verdicts(&still_there, &report.damaged) {
            report.verdicts_unrecorded(&e);
        }
    }

    fn write_verdicts(&self, good: &[Verdict], damaged: &[(Digest, Vec<Digest>)]) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for (digest, _) in damaged {
            verdicts::drop_verdict(&mut batch, digest);
        }
        // What was hashed is on disk before its verdict is (a chunk an
        // ingest replaced may not be synced yet).
        self.chunks().sync()?;
        verdicts::record(&mut batch, good);
        self.db().write(batch)
    }

    /// Removes the damaged chunk files `report` found; returns the images
    /// (with their tags) whose content must be imported again.
    pub fn remove_damaged_chunks(&self, report: &VerifyReport) -> Result<Vec<String>> {
        let mut layers = HashSet::new();
        for (digest, users) in &report.damaged {
            self.chunks().remove(digest)?;
            layers.extend(users.iter().copied());
        }
        let mut out = Vec::new();
        for (image, tags) in self.images()? {
            if image.layers.iter().any(|l| layers.contains(l)) {
                let names = if tags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", tags.join(", "))
                };
                out.push(format!("{}{names}", image.id.short()));
            }
        }
        Ok(out)
    }
}
