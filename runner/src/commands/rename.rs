//! `strata rename`: a container's new name.

use super::Ctx;
use anyhow::Result;

pub fn rename(ctx: &Ctx, container: &str, new_name: &str) -> Result<i32> {
    let new_name = crate::names::given_name(new_name)?;
    let store = ctx.store()?;
    let rec = store.container(container)?;
    store.rename_container(&rec, new_name)?;
    Ok(0)
}
