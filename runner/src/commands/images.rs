//! `strata images`, `tag`, `rmi`, `history`.

use super::Ctx;
use crate::cli::{HistoryArgs, ImagesArgs, RmiArgs};
use crate::output::{self, HistoryOptions, ImageRow, ImagesOptions, ListFormat};
use anyhow::{bail, Result};
use layerdb::{Digest, ImageRecord, Reference, Removal, Store};
use std::collections::HashSet;

/// The image's size as docker's classic store reports it: all its layers.
pub fn image_size(store: &Store, image: &ImageRecord) -> Result<u64> {
    let mut size = 0;
    for d in &image.layers {
        size += store.layer(d)?.size;
    }
    Ok(size)
}

fn created_ns(image: &ImageRecord) -> Option<i64> {
    crate::humanize::parse_rfc3339(&image.config().created).ok()
}

pub fn list(ctx: &Ctx, args: ImagesArgs) -> Result<i32> {
    let store = ctx.reader()?;
    let images = store.images()?;
    // docker hides untagged images that are the parent of another
    // (intermediate images) unless -a.
    let parents: HashSet<Digest> = images.iter().filter_map(|(i, _)| i.parent).collect();
    let mut rows = Vec::new();
    for (image, refs) in &images {
        if refs.is_empty() && parents.contains(&image.id) && !args.all {
            continue;
        }
        let size = image_size(&store, image)?;
        let created = created_ns(image);
        let tags: Vec<(String, String)> = if refs.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            refs.iter()
                .map(|r| {
                    let (n, t) = r.rsplit_once(':').expect("stored references carry a tag");
                    (n.to_string(), t.to_string())
                })
                .collect()
        };
        for (repository, tag) in tags {
            if args
                .repository
                .as_deref()
                .is_some_and(|want| want != repository)
            {
                continue;
            }
            rows.push(ImageRow {
                repository,
                tag,
                id: format!("{:#}", image.id),
                created,
                size,
            });
        }
    }
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then(a.repository.cmp(&b.repository))
    });
    let options = ImagesOptions {
        quiet: args.quiet,
        no_trunc: args.no_trunc,
    };
    print!(
        "{}",
        output::render_images(&rows, &options, crate::clock::now_ns())
    );
    Ok(0)
}

pub fn tag(ctx: &Ctx, source: &str, target: &str) -> Result<i32> {
    let target = Reference::parse(target)?;
    let store = ctx.store()?;
    let image = store.resolve_image(source)?;
    store.tag(&image.id, &target)?;
    Ok(0)
}

pub fn remove(ctx: &Ctx, args: RmiArgs) -> Result<i32> {
    let store = ctx.store_to_delete()?;
    let mut failed = None;
    for name in &args.images {
        match store.remove_image(name, args.force) {
            Ok(done) => {
                for d in done {
                    match d {
                        Removal::Untagged(r) => println!("Untagged: {r}"),
                        Removal::Deleted(id) => println!("Deleted: {id:#}"),
                    }
                }
            }
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(0),
    }
}

pub fn history(ctx: &Ctx, args: HistoryArgs) -> Result<i32> {
    let format = match args.format.as_deref() {
        None | Some("") | Some("table") => ListFormat::Table,
        Some("json") => ListFormat::Json,
        Some(other) => bail!("unsupported --format {other:?}: use json or table"),
    };
    let store = ctx.reader()?;
    let image = store.resolve_image(&args.image)?;
    let mut chain = vec![format!("{:#}", image.id)];
    let mut next = image.parent;
    while let Some(id) = next {
        match store.image(&id)? {
            Some(parent) => {
                chain.push(format!("{:#}", parent.id));
                next = parent.parent;
            }
            None => break,
        }
    }
    let mut sizes = Vec::new();
    for d in &image.layers {
        sizes.push(store.layer(d)?.size);
    }
    let rows = output::history_rows(&image.config().history, &chain, &sizes)?;
    let options = HistoryOptions {
        human: args.human,
        no_trunc: args.no_trunc,
        quiet: args.quiet,
        format,
    };
    print!(
        "{}",
        output::render_history(&rows, &options, crate::clock::now_ns())
    );
    Ok(0)
}
