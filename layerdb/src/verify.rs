//! `verify`: re-hash every chunk and resolve every reference. Problems are
//! collected, not stopped at, so one run names every broken object.
//! Unreferenced chunks and layers are not problems: gc reclaims them.

use crate::digest::Digest;
use crate::entry::Kind;
use crate::error::Result;
use crate::oci_tar::HashingWriter;
use crate::store::Store;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub images: u64,
    pub layers: u64,
    pub chunks: u64,
    pub problems: Vec<String>,
}

impl Store {
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut r = VerifyReport::default();
        let layers: HashMap<Digest, crate::layer::LayerMeta> =
            self.layers()?.into_iter().map(|l| (l.diff_id, l)).collect();
        let mut checked: HashSet<Digest> = HashSet::new();

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
                        if let Err(err) = self.chunks().read_verified(c) {
                            chunks_ok = false;
                            r.problems.push(format!(
                                "layer {:#}: file {:?}: {err}",
                                layer.diff_id,
                                String::from_utf8_lossy(path)
                            ));
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
        for (name, id) in self.references()? {
            if !ids.contains(&id) {
                r.problems
                    .push(format!("reference {name}: image {id:#} is missing"));
            }
        }
        for c in self.containers()? {
            if !ids.contains(&c.image) {
                r.problems.push(format!(
                    "container {}: image {:#} is missing",
                    c.name, c.image
                ));
            }
            if !c.upper.is_dir() {
                r.problems.push(format!(
                    "container {}: upper {} is missing",
                    c.name,
                    c.upper.display()
                ));
            }
        }
        Ok(r)
    }
}
