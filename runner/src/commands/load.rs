//! `strata load [-i FILE|DIR]`: images from what `save` writes (an OCI
//! image layout with docker's `manifest.json`), from stdin, a tar file or a
//! directory. Layers are re-imported: a layer `save` wrote keeps its diff
//! id, so the image keeps its id; a foreign layer whose tar is not in
//! strata's canonical form gets strata's diff id, and its image a new id.

use super::Ctx;
use crate::cli::LoadArgs;
use anyhow::{bail, Context, Result};
use layerdb::{ImageConfig, Ingest, NewImage, Reference};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// One image found in the layout: its config blob, layer blobs (bottom
/// first) and references.
struct Found {
    config: PathBuf,
    layers: Vec<PathBuf>,
    tags: Vec<String>,
}

pub fn run(ctx: &Ctx, args: LoadArgs) -> Result<i32> {
    let tmp;
    let dir: PathBuf = match args.input.as_deref() {
        Some(p) if p.is_dir() => p.to_path_buf(),
        other => {
            layerdb::store::create_root(&ctx.root)?;
            tmp = tempfile::Builder::new()
                .prefix("load-")
                .tempdir_in(ctx.root.join("tmp"))?;
            let input: Box<dyn std::io::Read> = match other {
                Some(p) => {
                    Box::new(fs::File::open(p).with_context(|| format!("open {}", p.display()))?)
                }
                None => Box::new(std::io::stdin().lock()),
            };
            tar::Archive::new(input)
                .unpack(tmp.path())
                .context("reading the image archive")?;
            tmp.path().to_path_buf()
        }
    };
    let found = find_images(&dir)?;
    if found.is_empty() {
        bail!(
            "no image found in {}: expected manifest.json or index.json",
            dir.display()
        );
    }
    let ingest = Ingest::begin(&ctx.root)?;
    let mut loaded = Vec::new();
    for image in found {
        let mut layers = Vec::new();
        for blob in &image.layers {
            let f = fs::File::open(blob).with_context(|| format!("open {}", blob.display()))?;
            layers.push(ingest.from_tar(&blob.display().to_string(), f, &mut |_| {})?);
        }
        let bytes =
            fs::read(&image.config).with_context(|| format!("open {}", image.config.display()))?;
        let mut config: ImageConfig = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not an OCI image config", image.config.display()))?;
        config.rootfs.diff_ids = layers.iter().map(|l| format!("{:#}", l.diff_id)).collect();
        let tags: Vec<Reference> = image
            .tags
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<_, _>>()?;
        loaded.push((config, layers, tags));
    }
    let store = ctx.store()?;
    for (config, layers, tags) in loaded {
        let record = store.commit_image(NewImage {
            config,
            layers,
            parent: None,
            reference: tags.first().cloned(),
        })?;
        for t in tags.iter().skip(1) {
            store.tag(&record.id, t)?;
        }
        if tags.is_empty() {
            println!("Loaded image ID: {:#}", record.id);
        }
        for t in &tags {
            println!("Loaded image: {t}");
        }
    }
    Ok(0)
}

fn blob(dir: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest}"))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = fs::read(path).with_context(|| format!("open {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))
}

fn find_images(dir: &Path) -> Result<Vec<Found>> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if dir.join("manifest.json").exists() {
        let manifest = read_json(&dir.join("manifest.json"))?;
        return manifest
            .as_array()
            .context("manifest.json is not a list")?
            .iter()
            .map(|m| {
                Ok(Found {
                    config: dir.join(
                        m["Config"]
                            .as_str()
                            .context("manifest.json: an image without Config")?,
                    ),
                    layers: strings(&m["Layers"]).iter().map(|l| dir.join(l)).collect(),
                    tags: strings(&m["RepoTags"]),
                })
            })
            .collect();
    }
    let index = read_json(&dir.join("index.json"))?;
    let mut out = Vec::new();
    for desc in index["manifests"]
        .as_array()
        .context("index.json has no manifests")?
    {
        let manifest = read_json(&blob(
            dir,
            desc["digest"]
                .as_str()
                .context("a manifest without digest")?,
        )?)?;
        let name = desc["annotations"]["io.containerd.image.name"]
            .as_str()
            .map(str::to_string);
        out.push(Found {
            config: blob(
                dir,
                manifest["config"]["digest"]
                    .as_str()
                    .context("a manifest without config")?,
            )?,
            layers: manifest["layers"]
                .as_array()
                .context("a manifest without layers")?
                .iter()
                .map(|l| blob(dir, l["digest"].as_str().unwrap_or_default()))
                .collect::<Result<_>>()?,
            tags: name.into_iter().collect(),
        });
    }
    Ok(out)
}
