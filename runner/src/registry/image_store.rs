//! Where a pulled image meets the store: which of its layers the store
//! has already, and committing it with its config bytes exactly as the
//! registry served them, so its id is the one docker and podman show.
//!
//! A layer's diff id in a foreign config is the sha256 of the tar as its
//! builder wrote it; the store names the layer by its canonical tar, which
//! differs unless the tar was canonical already. An image kept with its
//! exact config relates the two: `rootfs.diff_ids[i]` is `layers[i]`.

use anyhow::Result;
use layerdb::reference::DigestReference;
use layerdb::{Digest, ImageRecord, PendingLayer, Reference, Store};
use std::collections::HashMap;

/// The store's layer for each diff id a config may name: every layer by
/// its own id, and the layers of images kept with foreign configs by the
/// ids those configs give them.
pub fn known_layers(store: &Store) -> Result<HashMap<Digest, Digest>> {
    let mut known: HashMap<Digest, Digest> = store
        .layers()?
        .into_iter()
        .map(|l| (l.diff_id, l.diff_id))
        .collect();
    store.for_each_image(|image, _| {
        let Ok(config_ids) = image.config().diff_ids() else {
            return Ok(());
        };
        if config_ids.len() == image.layers.len() {
            for (config_id, layer) in config_ids.into_iter().zip(&image.layers) {
                known.entry(config_id).or_insert(*layer);
            }
        }
        Ok(())
    })?;
    Ok(known)
}

/// A pulled image to commit: its config as served, the store's layer ids
/// bottom first, and the layers among them that are new.
pub struct PulledImage {
    pub config_json: Vec<u8>,
    pub layers: Vec<Digest>,
    pub new_layers: Vec<PendingLayer>,
    pub reference: Option<Reference>,
    /// `name@<manifest digest>`: what docker shows as RepoDigests.
    pub repo_digest: DigestReference,
}

/// Commits a pulled image in one atomic write.
pub fn commit(store: &Store, image: PulledImage) -> Result<ImageRecord> {
    Ok(store.commit_exact_image(layerdb::ExactImage {
        config_json: image.config_json,
        layers: image.layers,
        new_layers: image.new_layers,
        parent: None,
        reference: image.reference,
        repo_digest: Some(image.repo_digest),
    })?)
}
