//! `strata rmi` (`image rm`): untags and deletes images.

use super::Ctx;
use crate::cli::RmiArgs;
use anyhow::Result;
use layerdb::{Removal, StoreError};

pub fn remove(ctx: &Ctx, args: RmiArgs) -> Result<i32> {
    let store = ctx.store_to_delete()?;
    let mut failed = false;
    for name in &args.images {
        match store.remove_image(name, args.force) {
            Ok(done) => {
                for d in done {
                    match d {
                        Removal::Untagged(r) => outln!("Untagged: {r}")?,
                        Removal::Deleted(id) => outln!("Deleted: {id:#}")?,
                    }
                }
            }
            Err(e) => {
                // docker's `rmi -f` of an image that is not there says so
                // and succeeds; every other failure is reported and fails.
                failed |= !(args.force && matches!(e, StoreError::NoSuchImage(_)));
                eprintln!("Error: {}", crate::error_text::describe(&e.into()));
            }
        }
    }
    Ok(if failed { 125 } else { 0 })
}
