//! Pushing one image: each layer's canonical tar gzip-compressed once into
//! a private temporary file while hashed, skipped when the registry has
//! the blob already (HEAD), else uploaded (POST for an upload URL, one PUT
//! with the digest); then the config, then an OCI manifest under the tag.
//! The layers pushed are the store's canonical tars, so the config must
//! name those (see `save`'s `saved_config`).

use super::client::{Client, Payload};
use anyhow::{bail, Context, Result};
use layerdb::reference::RemoteReference;
use layerdb::{Digest, ImageRecord, Store};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{Seek, Write};
use std::path::Path;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A layer's progress, for the caller's output.
pub enum PushEvent {
    Preparing,
    AlreadyExists,
    Pushed,
}

/// What the registry now holds under the tag.
pub struct Pushed {
    pub digest: Digest,
    pub size: usize,
}

/// Hashes and counts what is written through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn push_image(
    client: &Client,
    reference: &RemoteReference,
    store: &Store,
    image: &ImageRecord,
    config_json: &[u8],
    tmp_dir: &Path,
    event: &dyn Fn(usize, PushEvent),
) -> Result<Pushed> {
    let Some(tag) = reference
        .tag
        .as_deref()
        .filter(|_| reference.digest.is_none())
    else {
        bail!("cannot push to a digest reference: name a tag");
    };
    let scope = format!("repository:{}:pull,push", reference.path);
    let mut layers = Vec::new();
    for (i, diff_id) in image.layers.iter().enumerate() {
        event(i, PushEvent::Preparing);
        let (file, digest, size) = compress_layer(store, diff_id, tmp_dir)?;
        if has_blob(client, reference, &scope, &digest)? {
            event(i, PushEvent::AlreadyExists);
        } else {
            upload(client, reference, &scope, &digest, &mut || {
                let mut f = file.try_clone()?;
                f.rewind()?;
                Ok(Payload::File(f))
            })
            .with_context(|| format!("layer {diff_id:#}"))?;
            event(i, PushEvent::Pushed);
        }
        layers.push(serde_json::json!({
            "mediaType": OCI_LAYER_GZIP,
            "digest": format!("{digest:#}"),
            "size": size,
        }));
    }
    let config_digest = Digest::of(config_json);
    if !has_blob(client, reference, &scope, &config_digest)? {
        upload(client, reference, &scope, &config_digest, &mut || {
            Ok(Payload::Bytes(config_json.to_vec()))
        })
        .context("the image config")?;
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::manifest::OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": format!("{config_digest:#}"),
            "size": config_json.len(),
        },
        "layers": layers,
    }))
    .expect("a manifest always serializes");
    let path = format!("/v2/{}/manifests/{tag}", reference.path);
    let response = client.send(
        "PUT",
        &path,
        &scope,
        super::manifest::OCI_MANIFEST,
        &mut || Ok(Payload::Bytes(manifest.clone())),
    )?;
    Client::expect_ok(response).context("the manifest")?;
    Ok(Pushed {
        digest: Digest::of(&manifest),
        size: manifest.len(),
    })
}

/// The layer's canonical tar, gzip-compressed into an unnamed temporary
/// file; its digest and size.
fn compress_layer(store: &Store, diff_id: &Digest, tmp_dir: &Path) -> Result<(File, Digest, u64)> {
    let file = tempfile::tempfile_in(tmp_dir)
        .with_context(|| format!("a temporary file in {}", tmp_dir.display()))?;
    let hashing = Hashing {
        inner: std::io::BufWriter::with_capacity(1 << 20, file.try_clone()?),
        hasher: Sha256::new(),
        written: 0,
    };
    let mut gz = flate2::write::GzEncoder::new(hashing, flate2::Compression::fast());
    store.write_layer_tar(diff_id, &mut gz)?;
    let mut hashing = gz.finish().context("compressing a layer")?;
    hashing.flush()?;
    let digest = Digest::from_hasher(hashing.hasher);
    Ok((file, digest, hashing.written))
}

fn has_blob(
    client: &Client,
    reference: &RemoteReference,
    scope: &str,
    digest: &Digest,
) -> Result<bool> {
    let path = format!("/v2/{}/blobs/{digest:#}", reference.path);
    let response = client.head(&path, scope)?;
    match response.status().as_u16() {
        200..=299 => Ok(true),
        404 => Ok(false),
        _ => Err(Client::expect_ok(response)
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("HEAD {path}: unexpected answer"))),
    }
}

/// POST for an upload URL, then one PUT of the whole blob with its digest.
fn upload(
    client: &Client,
    reference: &RemoteReference,
    scope: &str,
    digest: &Digest,
    body: &mut dyn FnMut() -> std::io::Result<Payload>,
) -> Result<()> {
    let start = format!("/v2/{}/blobs/uploads/", reference.path);
    let response = Client::expect_ok(client.send(
        "POST",
        &start,
        scope,
        "application/octet-stream",
        &mut || Ok(Payload::Bytes(Vec::new())),
    )?)?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("the registry gave no upload location")?
        .to_string();
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{separator}digest={digest:#}");
    Client::expect_ok(client.send("PUT", &put, scope, "application/octet-stream", body)?)?;
    Ok(())
}
