//! `strata diff`: a container's change set as A/C/D lines, read from its
//! upper directory.

use super::commit::{change_set, image_of, Paused};
use super::Ctx;
use crate::liveness;
use anyhow::Result;
use fusefs::ChangeKind;
use std::sync::Arc;

pub fn diff(ctx: &Ctx, container: &str) -> Result<i32> {
    // Reading the upper and the layers writes nothing (as in commit).
    let store = Arc::new(ctx.reader()?);
    let rec = liveness::container(&store, container)?;
    let image = image_of(&store, &rec)?;
    let changes = {
        let _paused = Paused::new(ctx, &rec, true)?;
        change_set(&store, &rec, &image)?.0
    };
    for c in changes {
        let letter = match c.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'C',
            ChangeKind::Deleted => 'D',
        };
        outln!("{letter} /{}", String::from_utf8_lossy(&c.path))?;
    }
    Ok(0)
}
