//! `strata rename`: a container's new name.

use super::Ctx;
use anyhow::{bail, Result};

pub fn rename(ctx: &Ctx, container: &str, new_name: &str) -> Result<i32> {
    if !crate::names::is_valid_name(new_name) {
        bail!("{}", crate::names::invalid_name_message(new_name));
    }
    let store = ctx.store()?;
    let rec = store.container(container)?;
    store.rename_container(&rec, new_name)?;
    Ok(0)
}
