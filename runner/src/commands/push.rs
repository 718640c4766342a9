//! `strata push [-q] [--compression-format gzip|zstd] NAME[:TAG]`:
//! docker's output, one plain line per step.

use super::Ctx;
use crate::cli::PushArgs;
use crate::registry::client::Client;
use crate::registry::push::{self, PushEvent};
use anyhow::Result;
use layerdb::reference::RemoteReference;

pub fn run(ctx: &Ctx, args: PushArgs) -> Result<i32> {
    let reference = RemoteReference::parse(&args.name)?;
    // Reading the image needs no writer lock: an upload may take long.
    let store = ctx.reader()?;
    let image = store.resolve_image(&args.name)?;
    let say = |line: String| -> Result<()> {
        if !args.quiet {
            outln!("{line}")?;
        }
        Ok(())
    };
    say(format!(
        "The push refers to repository [{}/{}]",
        reference.domain, reference.path
    ))?;
    // Layers another tool wrote go out as it wrote them where the store
    // kept how; otherwise as canonical tars, under a config naming those.
    let outgoing = store.outgoing(&image)?;
    if outgoing.rewritten() {
        eprintln!(
            "strata: {} has layers the store cannot write as their config names them; pushed in canonical form, the image gets id {:#}",
            args.name,
            layerdb::Digest::of(&outgoing.config_json)
        );
    }
    let client = Client::for_repository(&reference)?;
    let target = push::Target {
        client: &client,
        reference: &reference,
        compression: args.compression_format,
        tmp_dir: &ctx.root.join("tmp"),
    };
    let pushed = push::push_image(&target, &store, &outgoing, &|i, event| {
        let what = match event {
            PushEvent::Preparing => "Preparing".to_string(),
            PushEvent::AlreadyExists => "Layer already exists".to_string(),
            PushEvent::Mounted(from) => format!("Mounted from {from}"),
            PushEvent::Pushed => "Pushed".to_string(),
        };
        // Progress: a line that cannot be written does not stop the
        // push; the digest line after it reports the failure.
        let _ = say(format!("{}: {what}", image.layers[i].short()));
    })?;
    let rewritten = outgoing.rewritten();
    drop(outgoing);
    drop(store);
    let store = ctx.store()?;
    let compression = args.compression_format.name();
    let blobs: Vec<_> = pushed
        .blobs
        .into_iter()
        .map(|(diff_id, blob)| (diff_id, compression, blob))
        .collect();
    store.remember_compressed_blobs(&blobs)?;
    // docker remembers what the registry now calls the image; a config
    // rewritten for the push names another image, not this one.
    if !rewritten {
        store.add_repo_digest(&image.id, &reference.local_digest(pushed.digest))?;
    }
    say(format!(
        "{}: digest: {:#} size: {}",
        reference.tag.as_deref().unwrap_or("latest"),
        pushed.digest,
        pushed.size
    ))?;
    if args.quiet {
        outln!(
            "{}/{}:{}",
            reference.domain,
            reference.path,
            reference.tag.as_deref().unwrap_or("latest")
        )?;
    }
    Ok(0)
}
