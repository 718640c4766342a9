//! `strata import [-c CHANGE]... [-m MSG] SOURCE [REPO[:TAG]]`

use super::Ctx;
use crate::cli::ImportArgs;
use anyhow::{Context, Result};
use layerdb::{History, ImageConfig, Ingest, NewImage, Reference};
use std::fs::File;
use std::io::IsTerminal;
use std::path::Path;

pub fn run(ctx: &Ctx, args: ImportArgs) -> Result<i32> {
    // Check everything the user typed before any byte is stored.
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let run_config =
        crate::dockerfile::apply_changes(&layerdb::RunConfig::default(), &args.change)?;
    let source = Path::new(&args.source);
    let ingest = Ingest::begin(&ctx.root)?;
    let layer = if args.source == "-" {
        ingest.from_tar("-", std::io::stdin().lock(), &mut |_| {})?
    } else if source.is_dir() {
        ingest.from_dir(source, &mut |_| {})?
    } else {
        let file = File::open(source).with_context(|| format!("open {}", args.source))?;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        let bar = progress_bar(total);
        let layer = ingest.from_tar(&args.source, file, &mut |n| {
            if let Some(b) = &bar {
                b.inc(n)
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        layer?
    };

    let created = crate::humanize::format_rfc3339_nano(crate::clock::now_ns());
    let mut config = ImageConfig::new(created.clone());
    config.config = run_config;
    let comment = match &args.message {
        Some(m) => m.clone(),
        None => format!("Imported from {}", args.source),
    };
    config.history.push(History {
        created,
        comment,
        ..Default::default()
    });

    let opening = std::time::Instant::now();
    let store = ctx.store()?;
    log::debug!("import: index opened in {:?}", opening.elapsed());
    let image = store.commit_image(NewImage {
        config,
        layer: Some(layer),
        parent: None,
        reference,
    })?;
    outln!("{:#}", image.id)?;
    Ok(0)
}

/// A progress bar on a terminal for imports big enough to wait for.
fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    if total < 64 << 20 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "importing {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("the template is valid"),
    );
    Some(bar)
}
