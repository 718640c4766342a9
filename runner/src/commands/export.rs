//! `strata export CONTAINER`: the container's whole tree, flattened, as a
//! tar, read through a private read-only mount of its upper and image.

use super::Ctx;
use crate::cli::ExportArgs;
use crate::liveness;
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::sync::Arc;

pub fn export(ctx: &Ctx, args: ExportArgs) -> Result<i32> {
    // Only reads, through a reader: the writer lock must not be held while
    // the tar goes to its output (a reader that stops reading holds it up
    // without bound). The pin below keeps the layers from gc meanwhile.
    let store = Arc::new(ctx.reader()?);
    let rec = liveness::container(&store, &args.container)?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?)
        }
        None if std::io::stdout().is_terminal() => {
            bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        }
        None => Box::new(std::io::stdout().lock()),
    };
    // A private read-only view of the upper over the image, running or
    // not: it is the same tree the container sees, without its /proc, /sys
    // and /dev mounts, and it works the same for rootless containers.
    let image = store
        .image(&rec.image)?
        .with_context(|| format!("the image of {} is gone", rec.name))?;
    let _pin = layerdb::Pin::new(&ctx.root, &image.layers)?;
    let tmp = tempfile::Builder::new()
        .prefix("export-")
        .tempdir_in(ctx.root.join("tmp"))?;
    let mut opts =
        fusefs::MountOptions::of_image(&store, &image, Some(store.container_dir(&rec.id).upper()))?;
    opts.read_only = true;
    let mount = fusefs::mount(opts, tmp.path())?;
    let tree = tmp.path().to_path_buf();
    write_tree(&tree, &mut out)?;
    out.flush()?;
    // Unmount before the mountpoint's directory is removed.
    drop(mount);
    drop(tmp);
    Ok(0)
}

fn write_tree(tree: &std::path::Path, out: &mut dyn Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", tree)
        .with_context(|| format!("reading {}", tree.display()))?;
    tar.into_inner()?;
    Ok(())
}
