//! `strata rmi` (`image rm`): untags and deletes images.

use super::Ctx;
use crate::cli::RmiArgs;
use anyhow::Result;
use layerdb::Removal;

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
