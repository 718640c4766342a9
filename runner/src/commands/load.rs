//! `strata load [-i FILE|DIR]`: images from an OCI image layout (what
//! `save`, podman and skopeo write; `index.json`) or a docker archive
//! (`manifest.json`), as a directory, a tar file (plain, gzip or zstd) or
//! stdin.
//!
//! Nothing in the input is trusted: every path stays inside it
//! (`layout`), every digest is `sha256:<64 hex>`, every blob is checked
//! against its digest and size as it is read, and each layer's
//! uncompressed tar must hash to the diff id its config names. The image
//! keeps its config bytes exactly, so its id is the one docker and podman
//! show. Everything is read and checked before the first image is
//! committed: a bad input leaves no image and takes over no tag.

mod layout;

use super::Ctx;
use crate::cli::LoadArgs;
use anyhow::{anyhow, bail, Context, Result};
use layerdb::escape::escape;
use layerdb::import::Framing;
use layerdb::oci::{self, VerifiedReader};
use layerdb::{Digest, Entry, ExactImage, Ingest, Kind, PendingLayer, Reference};
use layout::Layout;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::collections::HashMap;

/// Largest JSON document (index, manifest, config) read into memory.
const DOCUMENT_LIMIT: u64 = 32 << 20;
/// Nested indexes followed before giving up.
const INDEX_DEPTH: usize = 8;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// A file of the layout and what it must hash to, when something names
/// its digest.
struct Blob {
    path: String,
    digest: Option<Digest>,
    size: Option<u64>,
}

impl Blob {
    fn of(what: &str, d: &Descriptor) -> Result<Blob> {
        let digest = oci::descriptor_digest(what, d)?;
        Ok(Blob {
            path: format!("blobs/sha256/{}", digest.hex()),
            digest: Some(digest),
            size: Some(d.size()),
        })
    }

    /// A docker `manifest.json` path: checked against its name when the
    /// name is a digest (`blobs/sha256/<hex>`, `<hex>.json`).
    fn at(path: &str) -> Blob {
        let name = path.rsplit('/').next().unwrap_or(path);
        let named = path
            .strip_prefix("blobs/sha256/")
            .or(name.strip_suffix(".json"));
        Blob {
            path: path.to_string(),
            digest: named.and_then(|hex| oci::parse_sha256("", &format!("sha256:{hex}")).ok()),
            size: None,
        }
    }

    fn reader<'a>(
        &self,
        layout: &'a Layout,
    ) -> Result<VerifiedReader<Box<dyn std::io::Read + 'a>>> {
        let what = format!("{:?}", self.path);
        let reader = layout.open_file(&self.path)?;
        Ok(VerifiedReader::new(reader, &what, self.digest, self.size))
    }

    fn read(&self, layout: &Layout) -> Result<Vec<u8>> {
        Ok(self.reader(layout)?.read_all(DOCUMENT_LIMIT)?)
    }
}

/// One image the input holds.
struct Found {
    config: Blob,
    layers: Vec<Blob>,
    names: Vec<Reference>,
}

pub fn run(ctx: &Ctx, args: LoadArgs) -> Result<i32> {
    layerdb::store::create_root_for_writing(&ctx.root)?;
    let layout = Layout::open(args.input.as_deref(), &ctx.root.join("tmp"))?;
    let found = if layout.has("index.json") {
        oci_images(&layout)?
    } else if layout.has("manifest.json") {
        docker_images(&layout)?
    } else {
        bail!("no image found: expected index.json (an OCI layout) or manifest.json (a docker archive)");
    };
    if found.is_empty() {
        bail!(
            "no image for linux/{} in the input",
            layerdb::image::host_architecture()
        );
    }
    // The same image named by several entries (of index.json, or of
    // manifest.json) is read once, under all their names: an input of a
    // few KB naming one image many times made load read it each time.
    let mut images: Vec<Found> = Vec::new();
    let mut seen: std::collections::HashMap<(String, Vec<String>), usize> = Default::default();
    for image in found {
        let key = (
            image.config.path.clone(),
            image.layers.iter().map(|l| l.path.clone()).collect(),
        );
        match seen.get(&key) {
            Some(&at) => images[at].names.extend(image.names),
            None => {
                seen.insert(key, images.len());
                images.push(image);
            }
        }
    }
    // Each name once, in the order first given: a search of the names
    // kept per name merged made 80,000 entries of a 295 KB input take
    // 180 s.
    for image in &mut images {
        let mut once = std::collections::HashSet::new();
        image.names.retain(|name| once.insert(name.to_string()));
    }
    let ingest = Ingest::begin(&ctx.root)?;
    let mut reading = Reading::default();
    let mut loaded = Vec::new();
    for image in &images {
        let layers = read_image(&layout, &ingest, image, &mut reading)?;
        loaded.push((image, layers));
    }
    // Each held layer goes with the first image that uses it, which is
    // committed first.
    let mut held: Vec<Option<PendingLayer>> = reading.held.into_iter().map(Some).collect();
    let store = ctx.store()?;
    // Said once every image is in: a failed write to stdout (a full
    // disk, a closed pipe) then loses no image, only the report.
    let mut said = Vec::new();
    for (image, layers) in loaded {
        // Read again, checked against its digest again, rather than held:
        // a config may be megabytes, and 40 of 31 MiB took 1.4 GB.
        let config_json = image.config.read(&layout)?;
        let names = &image.names;
        let new_layers = layers
            .iter()
            .filter_map(|d| {
                held.iter_mut()
                    .find(|l| l.as_ref().is_some_and(|l| l.diff_id == *d))
                    .and_then(Option::take)
            })
            .collect();
        let record = store.commit_exact_image(ExactImage {
            config_json,
            layers,
            new_layers,
            parent: None,
            reference: names.first().cloned(),
            repo_digest: None,
        })?;
        for name in names.iter().skip(1) {
            store.tag(&record.id, name)?;
        }
        if names.is_empty() {
            said.push(format!("Loaded image ID: {:#}", record.id));
        }
        said.extend(names.iter().map(|name| format!("Loaded image: {name}")));
    }
    for line in said {
        outln!("{line}")?;
    }
    Ok(0)
}

/// What the images of one input have read, shared among them: a layer
/// two images use (or one image twice) is read and held once.
#[derive(Default)]
struct Reading<'a> {
    held: Vec<PendingLayer>,
    /// Blobs read already, with what their layer asked of the layers
    /// below it (the directories it does not name) and was told: where a
    /// blob is repeated and would be told the same, it is the same layer,
    /// not read again (an image naming one layer a hundred times took a
    /// second per copy).
    read: Vec<Read<'a>>,
}

struct Read<'a> {
    path: &'a str,
    as_read: Digest,
    layer: Digest,
    asked: Vec<(Vec<u8>, Option<Entry>)>,
}

/// Reads and checks one image: its config, then each layer into the
/// store's chunks, hashed as it streams. Returns its layers; the layers
/// read are held in `reading`.
fn read_image<'a>(
    layout: &Layout,
    ingest: &Ingest,
    image: &'a Found,
    reading: &mut Reading<'a>,
) -> Result<Vec<Digest>> {
    let config_json = image.config.read(layout)?;
    let what = format!("image config {:?}", image.config.path);
    let diff_ids = oci::config_diff_ids(&what, &config_json)?;
    if diff_ids.len() != image.layers.len() {
        bail!(
            "{what} names {} layers, the manifest {}",
            diff_ids.len(),
            image.layers.len()
        );
    }
    oci::check_depth(&what, diff_ids.len())?;
    let mut layers = Vec::new();
    // The image's layers so far, bottom first, as places in
    // `reading.held` (a repeated layer is held once but counts where it
    // is repeated).
    let mut stack: Vec<usize> = Vec::new();
    for (blob, expected) in image.layers.iter().zip(&diff_ids) {
        let held = &reading.held;
        let again = reading.read.iter().find(|r| {
            r.path == blob.path
                && r.as_read == *expected
                && r.asked
                    .iter()
                    .all(|(dir, told)| directory_below(held, &stack, dir) == *told)
        });
        if let Some(again) = again {
            layers.push(again.layer);
            stack.push(held_at(held, &again.layer));
            continue;
        }
        let name = format!("layer {:?}", blob.path);
        let mut reader = blob.reader(layout)?;
        let asked = std::cell::RefCell::new(Vec::new());
        let below = |path: &[u8]| {
            let told = directory_below(held, &stack, path);
            asked.borrow_mut().push((path.to_vec(), told.clone()));
            told
        };
        let (layer, diff_id) =
            ingest.from_tar_with_diff_id(&name, &mut reader, Framing::Sniffed, &below)?;
        reader.finish().with_context(|| name.clone())?;
        if diff_id != *expected {
            bail!("{name}: its tar hashes to {diff_id:#}, the image config says {expected:#}");
        }
        layers.push(layer.diff_id);
        reading.read.push(Read {
            path: &blob.path,
            as_read: diff_id,
            layer: layer.diff_id,
            asked: asked.into_inner(),
        });
        if !reading.held.iter().any(|l| l.diff_id == layer.diff_id) {
            reading.held.push(layer);
        }
        stack.push(held_at(&reading.held, layers.last().expect("pushed above")));
    }
    Ok(layers)
}

/// Where the layer `diff_id` is in `layers`.
fn held_at(layers: &[PendingLayer], diff_id: &Digest) -> usize {
    layers
        .iter()
        .position(|l| l.diff_id == *diff_id)
        .expect("every layer of the stack is held")
}

/// The entry for `path` in the topmost layer of `stack` (places in
/// `layers`, bottom first) that names it, if that is a directory.
fn directory_below(layers: &[PendingLayer], stack: &[usize], path: &[u8]) -> Option<Entry> {
    stack
        .iter()
        .rev()
        .map(|&i| &layers[i])
        .find_map(|l| {
            l.entries
                .binary_search_by(|(p, _)| p.as_slice().cmp(path))
                .ok()
                .map(|i| &l.entries[i].1)
        })
        .filter(|e| e.kind == Kind::Dir)
        .cloned()
}

/// The images of an OCI layout: each entry of `index.json` that fits this
/// machine, through nested indexes to its manifest.
fn oci_images(layout: &Layout) -> Result<Vec<Found>> {
    let index_json = Blob::at("index.json").read(layout)?;
    let index: ImageIndex = oci::parse_document("index.json", "image index", &index_json)?;
    let mut found = Vec::new();
    for desc in index.manifests() {
        if desc
            .platform()
            .as_ref()
            .is_some_and(|p| !oci::is_host_platform(p))
        {
            continue;
        }
        let names = oci_names(desc.annotations().as_ref());
        let manifest_desc = resolve(layout, desc, 0)?;
        let blob = Blob::of("a manifest in index.json", &manifest_desc)?;
        let what = format!("manifest {:?}", blob.path);
        let manifest: ImageManifest =
            oci::parse_document(&what, "image manifest", &blob.read(layout)?)?;
        let config = manifest.config();
        let config_type = config.media_type().to_string();
        if !CONFIG_TYPES.contains(&config_type.as_str()) {
            bail!(
                "{what}: config of type {:?} is not a container image",
                escape(&config_type)
            );
        }
        let layers = manifest
            .layers()
            .iter()
            .map(|l| {
                let kind = l.media_type().to_string();
                if !kind.contains(".tar") || kind.contains("encrypted") {
                    bail!("{what}: layer type {:?} is not supported", escape(&kind));
                }
                Blob::of(&what, l)
            })
            .collect::<Result<_>>()?;
        found.push(Found {
            config: Blob::of(&what, config)?,
            layers,
            names,
        });
    }
    Ok(found)
}

/// Follows a descriptor through indexes (picking this machine's platform)
/// to an image manifest.
fn resolve(layout: &Layout, desc: &Descriptor, depth: usize) -> Result<Descriptor> {
    let kind = desc.media_type().to_string();
    match kind.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(desc.clone()),
        OCI_INDEX | DOCKER_LIST if depth < INDEX_DEPTH => {
            let blob = Blob::of("an image index", desc)?;
            let what = format!("index {:?}", blob.path);
            let index: ImageIndex = oci::parse_document(&what, "image index", &blob.read(layout)?)?;
            let picked = oci::pick_for_host(&index).with_context(|| {
                format!(
                    "{what}: no image for linux/{}",
                    layerdb::image::host_architecture()
                )
            })?;
            resolve(layout, picked, depth + 1)
        }
        OCI_INDEX | DOCKER_LIST => bail!("indexes nested more than {INDEX_DEPTH} deep"),
        other => bail!("an index entry of type {:?} is not an image", escape(other)),
    }
}

/// An index entry's names: containerd's full name, else the OCI ref
/// name (podman and skopeo write `name:tag` there; a bare word is a name,
/// as podman reads it).
fn oci_names(annotations: Option<&HashMap<String, String>>) -> Vec<Reference> {
    let Some(a) = annotations else {
        return Vec::new();
    };
    a.get("io.containerd.image.name")
        .or_else(|| a.get("org.opencontainers.image.ref.name"))
        .and_then(|n| familiar(n))
        .into_iter()
        .collect()
}

/// A name as docker shows it, or `None` (with a warning) for one strata
/// cannot hold: the image still loads, by id.
fn familiar(name: &str) -> Option<Reference> {
    match Reference::parse_familiar(name) {
        Ok(r) => Some(r),
        Err(_) => {
            eprintln!("warning: ignoring the image name {:?}", escape(name));
            None
        }
    }
}

#[derive(serde::Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The images of a docker archive's `manifest.json`. A name there that is
/// not one is refused before anything loads, as docker refuses it.
fn docker_images(layout: &Layout) -> Result<Vec<Found>> {
    let json = Blob::at("manifest.json").read(layout)?;
    let list: Vec<DockerManifest> = oci::parse_document("manifest.json", "docker manifest", &json)?;
    list.into_iter()
        .map(|m| {
            let names = m
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|tag| {
                    Reference::parse_familiar(tag).map_err(|err| {
                        anyhow!("manifest.json: invalid image name {:?}: {err}", escape(tag))
                    })
                })
                .collect::<Result<_>>()?;
            Ok(Found {
                config: Blob::at(&m.config),
                layers: m.layers.iter().map(|l| Blob::at(l)).collect(),
                names,
            })
        })
        .collect()
}
