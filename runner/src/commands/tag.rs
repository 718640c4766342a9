//! `strata tag`: another reference for an image.

use super::Ctx;
use anyhow::Result;
use layerdb::Reference;

pub fn tag(ctx: &Ctx, source: &str, target: &str) -> Result<i32> {
    let target = Reference::parse(target)?;
    let store = ctx.store()?;
    let image = store.resolve_image(source)?;
    store.tag(&image.id, &target)?;
    Ok(0)
}
