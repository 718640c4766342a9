//! Pulling one image: the manifest (through an index to the platform's
//! manifest), the config, then each missing layer streamed from the
//! registry through its digest check and decompressor into the store's
//! ingest, three at a time. Nothing touches the index until every blob has
//! been checked; the caller commits.

use super::client::Client;
use super::manifest::{self, Compression, Document, Platform};
use anyhow::{bail, Context, Result};
use layerdb::import::Framing;
use layerdb::oci::VerifiedReader;
use layerdb::reference::RemoteReference;
use layerdb::{Digest, Ingest, PendingLayer};
use oci_spec::image::{Descriptor, ImageManifest};
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Layers downloaded at once, as docker's default.
const PARALLEL_LAYERS: usize = 3;
/// Largest image config read; the descriptor's size is checked first and
/// the download may not exceed it.
const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// What the registry says the image is.
pub struct Plan {
    /// The digest of the document the reference named (the index for a
    /// multi-platform image): what `Digest:` shows and RepoDigests keep.
    pub digest: Digest,
    pub manifest: ImageManifest,
    /// The config exactly as served; its sha256 is the image id.
    pub config_json: Vec<u8>,
    /// `rootfs.diff_ids`, one per manifest layer.
    pub diff_ids: Vec<Digest>,
}

impl Plan {
    pub fn image_id(&self) -> Digest {
        Digest::of(&self.config_json)
    }
}

/// A layer's progress, for the caller's output.
pub enum LayerEvent {
    AlreadyExists,
    Started,
    /// Bytes of the blob received so far, of its size.
    Downloading {
        done: u64,
        total: u64,
    },
    Complete,
}

/// Tells `report` how many bytes passed, as they pass.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    report: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.report)(self.done);
        Ok(n)
    }
}

fn scope(reference: &RemoteReference) -> String {
    format!("repository:{}:pull", reference.path)
}

/// `sha256:<hex>` as a store digest; other algorithms are refused.
pub fn sha256_of(digest: &str) -> Result<Digest> {
    Ok(layerdb::oci::parse_sha256("digest", digest)?)
}

/// Pages of a tag list followed at most: a registry answering pages
/// without end (or a page naming itself next) must not hold a pull for
/// good. Docker Hub pages 100 tags, so this is a million tags.
const MAX_TAG_PAGES: usize = 10_000;

/// Distinct tags taken at most: each page may be megabytes of new tags,
/// and the list is held in memory (a registry answering 4 MB pages of
/// fresh tags grew a pull by 5 MB a page). No one pulls more images at
/// once.
const MAX_TAGS: usize = 100_000;

/// The repository's tags (`/v2/<name>/tags/list`), following the
/// registry's `Link: <...>; rel="next"` pages, in the order it gives them,
/// each once. Each is checked against docker's tag grammar before anything
/// is pulled: a tag is the registry's word, and becomes a local name.
pub fn list_tags(client: &Client, reference: &RemoteReference) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct TagList {
        #[serde(default)]
        tags: Option<Vec<String>>,
    }
    let scope = scope(reference);
    let mut tags = Vec::new();
    let mut listed = std::collections::HashSet::new();
    let mut next = Some(format!("/v2/{}/tags/list", reference.path));
    // Pages by their digest: a `Link` may be 64 KiB long, and ten thousand
    // of them kept whole were 640 MB.
    let mut seen = std::collections::HashSet::new();
    while let Some(path) = next.take() {
        if seen.len() == MAX_TAG_PAGES || !seen.insert(Digest::of(path.as_bytes())) {
            bail!(
                "{}: the registry's tag list does not end (page {} again, or over {MAX_TAG_PAGES} pages)",
                reference.path,
                layerdb::escape::escape(&path)
            );
        }
        let response = Client::expect_ok(client.get(&path, &scope, &[])?)?;
        next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_page);
        let body = Client::read_document(response)?;
        let page: TagList = serde_json::from_slice(&body)
            .with_context(|| format!("{path}: the registry's tag list is not JSON"))?;
        for tag in page.tags.unwrap_or_default() {
            if !layerdb::reference::valid_tag(&tag) {
                bail!(
                    "{}: the registry listed an invalid tag \"{}\"",
                    reference.path,
                    layerdb::escape::escape(&tag)
                );
            }
            if listed.insert(tag.clone()) {
                if tags.len() == MAX_TAGS {
                    bail!(
                        "{}: the registry lists over {MAX_TAGS} tags",
                        reference.path
                    );
                }
                tags.push(tag);
            }
        }
    }
    Ok(tags)
}

/// The target of `Link: </v2/x/tags/list?n=2&last=b>; rel="next"`.
fn next_page(link: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    params.contains("rel=\"next\"").then(|| {
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    })
}

/// Fetches the manifest (choosing `platform` from an index) and config.
pub fn resolve(client: &Client, reference: &RemoteReference, platform: &Platform) -> Result<Plan> {
    let scope = scope(reference);
    let wanted = reference.digest.as_deref().map(sha256_of).transpose()?;
    let (bytes, content_type) =
        fetch_manifest(client, reference, &scope, reference.tag_or_digest())?;
    let digest = Digest::of(&bytes);
    if let Some(wanted) = wanted {
        if digest != wanted {
            bail!("manifest {wanted:#}: digest mismatch: the registry served {digest:#}");
        }
    }
    let manifest = match manifest::parse(content_type.as_deref(), &bytes)? {
        Document::Image(m) => *m,
        Document::Index(index) => {
            let entry = manifest::choose(&index, platform)?;
            let entry_digest = sha256_of(entry.digest().as_ref())?;
            let (bytes, content_type) =
                fetch_manifest(client, reference, &scope, &format!("{entry_digest:#}"))?;
            if Digest::of(&bytes) != entry_digest {
                bail!("manifest {entry_digest:#}: digest mismatch");
            }
            match manifest::parse(content_type.as_deref(), &bytes)? {
                Document::Image(m) => *m,
                Document::Index(_) => {
                    bail!("manifest {entry_digest:#} is an index inside an index")
                }
            }
        }
    };
    layerdb::oci::check_depth("the manifest", manifest.layers().len())?;
    let config_json = fetch_config(client, reference, &scope, manifest.config())?;
    let diff_ids = layerdb::oci::config_diff_ids("the image config", &config_json)?;
    if diff_ids.len() != manifest.layers().len() {
        bail!(
            "the manifest has {} layers but the image config names {}",
            manifest.layers().len(),
            diff_ids.len()
        );
    }
    Ok(Plan {
        digest,
        manifest,
        config_json,
        diff_ids,
    })
}

fn fetch_manifest(
    client: &Client,
    reference: &RemoteReference,
    scope: &str,
    tag_or_digest: &str,
) -> Result<(Vec<u8>, Option<String>)> {
    let path = format!("/v2/{}/manifests/{tag_or_digest}", reference.path);
    let response = Client::expect_ok(client.get(&path, scope, manifest::ACCEPTED)?)?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((Client::read_document(response)?, content_type))
}

fn fetch_config(
    client: &Client,
    reference: &RemoteReference,
    scope: &str,
    descriptor: &Descriptor,
) -> Result<Vec<u8>> {
    let digest = sha256_of(descriptor.digest().as_ref())?;
    if descriptor.size() > MAX_CONFIG_BYTES {
        bail!(
            "config {digest:#}: {} bytes is too big for an image config",
            descriptor.size()
        );
    }
    let response = blob(client, reference, scope, &digest)?;
    let reader = VerifiedReader::new(
        Client::document_body(response),
        &format!("config {digest:#}"),
        Some(digest),
        Some(descriptor.size()),
    );
    let bytes = reader.read_all(MAX_CONFIG_BYTES)?;
    Ok(bytes)
}

fn blob(
    client: &Client,
    reference: &RemoteReference,
    scope: &str,
    digest: &Digest,
) -> Result<ureq::http::Response<ureq::Body>> {
    let path = format!("/v2/{}/blobs/{digest:#}", reference.path);
    Client::expect_ok(client.get(&path, scope, &[])?).with_context(|| format!("blob {digest:#}"))
}

/// What [`download_layers`] got for a plan.
pub struct Downloaded {
    /// The store's layer ids for the plan, bottom first.
    pub store_ids: Vec<Digest>,
    /// The layers downloaded and ingested (not committed).
    pub new_layers: Vec<PendingLayer>,
    /// The manifest's layers (by index) whose blobs this pull downloaded
    /// and checked against their digests and diff ids. A layer skipped
    /// because the store has the diff id the config claims was never
    /// checked against its blob: that claim is the registry's word only.
    pub fetched: Vec<usize>,
}

/// Downloads and ingests the plan's layers the store lacks. `known` maps
/// config diff ids to layers the store has; `event` is told about each
/// layer by its index.
pub fn download_layers(
    client: &Client,
    reference: &RemoteReference,
    plan: &Plan,
    ingest: &Ingest,
    known: &HashMap<Digest, Digest>,
    event: &(dyn Fn(usize, LayerEvent) + Sync),
) -> Result<Downloaded> {
    let scope = scope(reference);
    // Each missing diff id once, at the first layer that has it.
    let mut jobs: Vec<usize> = Vec::new();
    for (i, diff_id) in plan.diff_ids.iter().enumerate() {
        if known.contains_key(diff_id) {
            event(i, LayerEvent::AlreadyExists);
        } else if !jobs.iter().any(|&j| plan.diff_ids[j] == *diff_id) {
            jobs.push(i);
        }
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done: Mutex<HashMap<Digest, PendingLayer>> = Mutex::new(HashMap::new());
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.len().min(PARALLEL_LAYERS) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= jobs.len() || failed.load(Ordering::SeqCst) {
                    return;
                }
                let i = jobs[k];
                event(i, LayerEvent::Started);
                let descriptor = &plan.manifest.layers()[i];
                let total = descriptor.size();
                let report = |done: u64| event(i, LayerEvent::Downloading { done, total });
                let fetched = fetch_layer(
                    client,
                    reference,
                    &scope,
                    descriptor,
                    &plan.diff_ids[i],
                    ingest,
                    &report,
                );
                match fetched {
                    Ok(layer) => {
                        done.lock()
                            .expect("not poisoned")
                            .insert(plan.diff_ids[i], layer);
                        event(i, LayerEvent::Complete);
                    }
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        first_error.lock().expect("not poisoned").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let mut done = done.into_inner().expect("not poisoned");
    let mut fetched: HashMap<Digest, Digest> = HashMap::new();
    let mut store_ids = Vec::new();
    let mut new_layers = Vec::new();
    for diff_id in &plan.diff_ids {
        let id = if let Some(id) = known.get(diff_id).or(fetched.get(diff_id)) {
            *id
        } else {
            let layer = done
                .remove(diff_id)
                .expect("every missing layer was fetched or the pull failed");
            fetched.insert(*diff_id, layer.diff_id);
            let id = layer.diff_id;
            new_layers.push(layer);
            id
        };
        store_ids.push(id);
    }
    Ok(Downloaded {
        store_ids,
        new_layers,
        fetched: jobs,
    })
}

/// The blobs a pull fetched (`fetched`, by manifest index) whose tars the
/// store can write again (its canonical tars, or another tool's it kept
/// the way of), compressed: (diff id, compression name, blob), for a later
/// push to find in the registry or mount from this repository. Only
/// blobs this pull checked: a layer it skipped as present is named by a
/// blob nobody compared with it, and remembering that blob would let a
/// registry's manifest choose what a later push of the layer sends.
pub fn rewritable_blobs(
    reference: &RemoteReference,
    plan: &Plan,
    store_ids: &[Digest],
    fetched: &[usize],
    store: &layerdb::Store,
) -> Vec<(Digest, &'static str, layerdb::blob::CompressedBlob)> {
    let repository = format!("{}/{}", reference.domain, reference.path);
    let mut out = Vec::new();
    for &i in fetched {
        let descriptor = &plan.manifest.layers()[i];
        let (named, stored) = (&plan.diff_ids[i], &store_ids[i]);
        let compression = manifest::compression_of(descriptor.media_type())
            .ok()
            .and_then(|c| c.blob_name());
        let digest = sha256_of(descriptor.digest().as_ref()).ok();
        let rewritable = store.can_write_layer_as(stored, named).unwrap_or(false);
        if let (Some(compression), Some(digest), true) = (compression, digest, rewritable) {
            out.push((
                *named,
                compression,
                layerdb::blob::CompressedBlob {
                    digest,
                    size: descriptor.size(),
                    repository: repository.clone(),
                },
            ));
        }
    }
    out
}

/// One layer: the blob checked against its digest as it streams, its
/// decompressed tar against the config's diff id, ingested on the way.
fn fetch_layer(
    client: &Client,
    reference: &RemoteReference,
    scope: &str,
    descriptor: &Descriptor,
    diff_id: &Digest,
    ingest: &Ingest,
    report: &(dyn Fn(u64) + Sync),
) -> Result<PendingLayer> {
    let digest = sha256_of(descriptor.digest().as_ref())?;
    let compression = manifest::compression_of(descriptor.media_type())
        .with_context(|| format!("layer {digest:#}"))?;
    let response = blob(client, reference, scope, &digest)?;
    let what = format!("layer {digest:#}");
    let body = Counting {
        inner: Client::body(response),
        done: 0,
        report,
    };
    let mut compressed = VerifiedReader::new(body, &what, Some(digest), Some(descriptor.size()));
    let (ingested, downloaded) = std::thread::scope(|s| {
        // The download, its digest check and the decompression run on a
        // thread of their own, so that they overlap the ingest's cutting,
        // hashing and chunk writing on the other core.
        let (to_ingest, from_download) = sync_channel(PIPE_DEPTH);
        let what = &what;
        let compressed = &mut compressed;
        let fetch = move || -> Result<()> {
            // Decompressed once, as the media type says. A blob of the
            // plain tar type is read as docker reads it: still compressed
            // if its first bytes say so (the ingest looks).
            let decoded: Box<dyn Read + '_> = match compression {
                Compression::None => Box::new(&mut *compressed),
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                    BufReader::with_capacity(1 << 20, &mut *compressed),
                )),
                Compression::Zstd => Box::new(
                    zstd::stream::read::Decoder::new(&mut *compressed)
                        .with_context(|| format!("{what}: zstd"))?,
                ),
            };
            pump(decoded, &to_ingest);
            Ok(())
        };
        let download = std::thread::Builder::new()
            .name("layer-download".into())
            .spawn_scoped(s, fetch)
            .expect("a thread can be started");
        let piped = Piped {
            from: from_download,
            block: Vec::new(),
            at: 0,
            ended: false,
        };
        // Read with its diff id, so a tar another tool wrote is kept the
        // way it was written and a push gives it back byte for byte.
        let framing = match compression {
            Compression::None => Framing::Sniffed,
            Compression::Gzip | Compression::Zstd => Framing::Tar,
        };
        let ingested = ingest.from_tar_with_diff_id(what, piped, framing, &|_| None);
        let downloaded = download
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("{what}: the download thread panicked")));
        (ingested, downloaded)
    });
    // An error the download met reached the ingest as a read error; one
    // before the first read (the decompressor's setup) only here.
    let (layer, read) = match ingested {
        Ok(done) => done,
        Err(e) => return Err(downloaded.err().unwrap_or_else(|| e.into())),
    };
    downloaded?;
    if read != *diff_id {
        bail!("{what}: the uncompressed tar hashes to {read:#}, the image config says {diff_id:#}");
    }
    compressed.finish()?;
    Ok(layer)
}

/// Bytes handed from a layer's download thread to its ingest at a time,
/// and how many such blocks may wait.
const PIPE_BLOCK: usize = 1 << 20;
const PIPE_DEPTH: usize = 4;

/// Sends what `from` reads, block by block, then an empty block for its
/// end; an error ends it (sent in its turn). Stops when the reader at the
/// other end is gone.
fn pump(mut from: impl Read, to: &SyncSender<std::io::Result<Vec<u8>>>) {
    loop {
        let mut block = vec![0u8; PIPE_BLOCK];
        let mut filled = 0;
        let ended = loop {
            match from.read(&mut block[filled..]) {
                Ok(0) => break Ok(true),
                Ok(n) => {
                    filled += n;
                    if filled == block.len() {
                        break Ok(false);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        block.truncate(filled);
        if !block.is_empty() && to.send(Ok(block)).is_err() {
            return;
        }
        match ended {
            Ok(false) => {}
            Ok(true) => {
                let _ = to.send(Ok(Vec::new()));
                return;
            }
            Err(e) => {
                let _ = to.send(Err(e));
                return;
            }
        }
    }
}

/// The reading end of [`pump`].
struct Piped {
    from: Receiver<std::io::Result<Vec<u8>>>,
    block: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            if self.ended {
                return Ok(0);
            }
            match self.from.recv() {
                Ok(Ok(block)) => {
                    self.ended = block.is_empty();
                    (self.block, self.at) = (block, 0);
                }
                Ok(Err(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                // The download stopped without an end or an error: it
                // failed before its first read (the caller reports why).
                Err(_) => {
                    self.ended = true;
                    return Err(std::io::Error::other("the download stopped"));
                }
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn the_next_page_is_the_link_marked_next() {
        assert_eq!(
            next_page(r#"</v2/x/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(next_page(r#"</v2/x/tags/list>; rel="prev""#), None);
    }
}
