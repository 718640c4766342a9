//! `strata history`: an image's history, one row per step.

use super::Ctx;
use crate::cli::HistoryArgs;
use crate::output::{self, HistoryOptions, ListFormat};
use anyhow::{bail, Result};

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
    out!(
        "{}",
        output::render_history(&rows, &options, crate::clock::now_ns())
    )?;
    Ok(0)
}
