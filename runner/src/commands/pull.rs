//! `strata pull [--platform OS/ARCH[/VARIANT]] [-q] NAME[:TAG|@DIGEST]`,
//! and the pull `run` does for an image it does not have. Output is
//! docker's, one plain line per step.

use super::Ctx;
use crate::cli::{PullArgs, PullPolicy};
use crate::registry::client::{Client, StatusError};
use crate::registry::image_store;
use crate::registry::manifest::Platform;
use crate::registry::pull::{self, LayerEvent};
use anyhow::{anyhow, Result};
use layerdb::reference::RemoteReference;
use layerdb::{ImageRecord, Ingest};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

pub fn run(ctx: &Ctx, args: PullArgs) -> Result<i32> {
    let reference = RemoteReference::parse(&args.name)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let progress = if args.quiet {
        Progress::Quiet
    } else {
        Progress::Stdout
    };
    if args.all_tags {
        return pull_all_tags(ctx, &args.name, reference, &platform, progress);
    }
    pull_image(ctx, &reference, &platform, progress)?;
    outln!("{}", full_name(&reference))?;
    Ok(0)
}

/// `pull --all-tags NAME`: every tag the registry lists, one pull each,
/// then the repository's full name, as docker prints it.
fn pull_all_tags(
    ctx: &Ctx,
    name: &str,
    reference: RemoteReference,
    platform: &Platform,
    progress: Progress,
) -> Result<i32> {
    let after_path = name.rsplit('/').next().unwrap_or(name);
    if after_path.contains([':', '@']) {
        anyhow::bail!("tag can't be used with --all-tags/-a");
    }
    let client = Client::for_repository(&reference)?;
    let tags =
        pull::list_tags(&client, &reference).map_err(|e| translate_pull_error(e, &reference))?;
    for tag in tags {
        let tagged = RemoteReference {
            tag: Some(tag),
            ..reference.clone()
        };
        pull_image(ctx, &tagged, platform, progress)?;
    }
    outln!("{}/{}", reference.domain, reference.path)?;
    Ok(0)
}

/// Where pull progress goes: nowhere (`-q`), stdout (`pull`) or stderr
/// (the pull `run` does, whose stdout is the container's).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Quiet,
    Stdout,
    Stderr,
}

impl Progress {
    fn writer(self) -> Box<dyn Write + Send> {
        match self {
            Progress::Quiet => Box::new(std::io::sink()),
            Progress::Stdout => Box::new(std::io::stdout()),
            Progress::Stderr => Box::new(std::io::stderr()),
        }
    }

    fn is_terminal(self) -> bool {
        match self {
            Progress::Quiet => false,
            Progress::Stdout => std::io::stdout().is_terminal(),
            Progress::Stderr => std::io::stderr().is_terminal(),
        }
    }
}

/// docker's live lines on a terminal: one per layer, `Waiting`,
/// `Downloading [===>   ] 1.2MiB/3.4MiB`, `Pull complete`.
struct LayerBars {
    _multi: indicatif::MultiProgress,
    bars: Vec<indicatif::ProgressBar>,
}

impl LayerBars {
    fn new(progress: Progress, shorts: &[String]) -> LayerBars {
        let target = if progress == Progress::Stdout {
            indicatif::ProgressDrawTarget::stdout()
        } else {
            indicatif::ProgressDrawTarget::stderr()
        };
        let multi = indicatif::MultiProgress::with_draw_target(target);
        let bars = shorts
            .iter()
            .map(|short| {
                let bar = multi.add(indicatif::ProgressBar::new(0));
                bar.set_style(Self::text());
                bar.set_prefix(short.clone());
                bar.set_message("Waiting");
                bar
            })
            .collect();
        LayerBars {
            _multi: multi,
            bars,
        }
    }

    fn text() -> indicatif::ProgressStyle {
        indicatif::ProgressStyle::with_template("{prefix}: {msg}").expect("the template is valid")
    }

    fn update(&self, i: usize, event: LayerEvent) {
        let bar = &self.bars[i];
        match event {
            LayerEvent::AlreadyExists => bar.finish_with_message("Already exists"),
            LayerEvent::Started => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix}: {msg} [{bar:50}] {bytes}/{total_bytes}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                bar.set_message("Downloading");
            }
            LayerEvent::Downloading { done, total } => {
                bar.set_length(total);
                bar.set_position(done);
            }
            LayerEvent::Complete => {
                bar.set_style(Self::text());
                bar.finish_with_message("Pull complete");
            }
        }
    }
}

/// docker's last line: the full name, `docker.io/library/busybox:latest`.
fn full_name(reference: &RemoteReference) -> String {
    match (&reference.digest, &reference.tag) {
        (Some(d), _) => format!("{}/{}@{d}", reference.domain, reference.path),
        (None, Some(t)) => format!("{}/{}:{t}", reference.domain, reference.path),
        (None, None) => format!("{}/{}", reference.domain, reference.path),
    }
}

/// The familiar `busybox:latest` or `busybox@sha256:...`.
pub fn familiar_string(reference: &RemoteReference) -> String {
    let name = reference.familiar_name();
    match (&reference.digest, &reference.tag) {
        (Some(d), _) => format!("{name}@{d}"),
        (None, Some(t)) => format!("{name}:{t}"),
        (None, None) => name,
    }
}

/// Pulls an image into the store and tags it; progress lines go to
/// `progress`. Nothing is committed unless every blob checked out.
pub fn pull_image(
    ctx: &Ctx,
    reference: &RemoteReference,
    platform: &Platform,
    progress: Progress,
) -> Result<ImageRecord> {
    let out = Mutex::new(progress.writer());
    let say = |line: String| {
        let mut out = out.lock().expect("not poisoned");
        // Progress is best effort: a closed pipe must not fail the pull.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let client = Client::for_repository(reference)?;
    let plan = pull::resolve(&client, reference, platform)
        .map_err(|e| translate_pull_error(e, reference))?;
    say(format!(
        "{}: Pulling from {}",
        reference.tag_or_digest(),
        reference.path
    ));

    let reader = ctx.reader()?;
    let present = reader.image(&plan.image_id())?;
    let known = image_store::known_layers(&reader)?;
    drop(reader);

    let status = match present {
        Some(image) => {
            let store = ctx.store()?;
            if let Some(local) = reference.local() {
                store.tag(&image.id, &local)?;
            }
            store.add_repo_digest(&image.id, &reference.local_digest(plan.digest))?;
            say(format!("Digest: {:#}", plan.digest));
            say(format!(
                "Status: Image is up to date for {}",
                familiar_string(reference)
            ));
            return Ok(image);
        }
        None => "Downloaded newer image",
    };

    let ingest = Ingest::begin(&ctx.root)?;
    let short = |i: usize| -> String {
        let digest = plan.manifest.layers()[i].digest().to_string();
        let hex = digest.split_once(':').map_or(digest.as_str(), |(_, h)| h);
        hex.chars().take(12).collect()
    };
    let bars = progress.is_terminal().then(|| {
        let shorts: Vec<String> = (0..plan.manifest.layers().len()).map(short).collect();
        LayerBars::new(progress, &shorts)
    });
    let pull::Downloaded {
        store_ids,
        new_layers,
        fetched,
    } = pull::download_layers(&client, reference, &plan, &ingest, &known, &|i, event| {
        if let Some(bars) = &bars {
            return bars.update(i, event);
        }
        let what = match event {
            LayerEvent::AlreadyExists => "Already exists",
            LayerEvent::Started => "Pulling fs layer",
            LayerEvent::Downloading { .. } => return,
            LayerEvent::Complete => "Pull complete",
        };
        say(format!("{}: {what}", short(i)));
    })?;
    if let Some(bars) = bars {
        drop(bars);
        // The bars leave the cursor at the end of the last one.
        say(String::new());
    }
    let store = ctx.store()?;
    let image = image_store::commit(
        &store,
        image_store::PulledImage {
            config_json: plan.config_json.clone(),
            layers: store_ids.clone(),
            new_layers,
            reference: reference.local(),
            repo_digest: reference.local_digest(plan.digest),
        },
    )?;
    drop(ingest);
    // Best effort: what is lost is only a mount at a later push.
    let blobs = pull::rewritable_blobs(reference, &plan, &store_ids, &fetched, &store);
    if let Err(e) = store.remember_compressed_blobs(&blobs) {
        log::warn!("remembering the pulled blobs: {e:#}");
    }
    say(format!("Digest: {:#}", plan.digest));
    say(format!(
        "Status: {status} for {}",
        familiar_string(reference)
    ));
    Ok(image)
}

/// docker's wording for a registry's refusal of a manifest.
fn translate_pull_error(e: anyhow::Error, reference: &RemoteReference) -> anyhow::Error {
    let Some(status) = e.downcast_ref::<StatusError>() else {
        return e;
    };
    match status.code.as_deref() {
        Some("MANIFEST_UNKNOWN") => anyhow!(
            "manifest for {} not found: {status}",
            familiar_string(reference)
        ),
        Some("NAME_UNKNOWN") => anyhow!(
            "repository {} not found: {status}",
            reference.familiar_name()
        ),
        Some("DENIED" | "UNAUTHORIZED") => anyhow!(
            "pull access denied for {}, repository does not exist or may require 'strata login': {status}",
            reference.familiar_name()
        ),
        _ => e,
    }
}

/// `run --pull`: pulls the image when the policy says so, with docker's
/// `Unable to find image 'X' locally` first when it is missing, and gives
/// what it pulled. Progress goes to stderr, leaving stdout to the
/// container.
pub fn ensure_image(
    ctx: &Ctx,
    image: &str,
    policy: PullPolicy,
    platform: Option<&Platform>,
) -> Result<Option<ImageRecord>> {
    if policy == PullPolicy::Never {
        return Ok(None);
    }
    // An image id or id prefix is never pulled.
    let Ok(reference) = RemoteReference::parse(image) else {
        return Ok(None);
    };
    if policy == PullPolicy::Missing {
        match ctx.reader()?.resolve_image(image) {
            // One of another platform than asked for is pulled again,
            // as docker does with `--platform`.
            Ok(found) if platform.is_some_and(|p| !matches_platform(&found, p)) => {}
            Ok(_) => return Ok(None),
            // A prefix of several image ids names no image: docker counts
            // it as not found, and pulls the name.
            Err(
                layerdb::StoreError::NoSuchImage(_)
                | layerdb::StoreError::BadReference(_)
                | layerdb::StoreError::AmbiguousPrefix(_),
            ) => {
                eprintln!(
                    "Unable to find image '{}' locally",
                    familiar_string(&reference)
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    let host = Platform::host();
    pull_image(ctx, &reference, platform.unwrap_or(&host), Progress::Stderr).map(Some)
}

/// Whether `image` is of `platform` (its config's os and architecture).
pub fn matches_platform(image: &ImageRecord, platform: &Platform) -> bool {
    let config = image.config();
    config.os == platform.os && config.architecture == platform.architecture
}
