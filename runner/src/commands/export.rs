//! `strata export CONTAINER`: the container's whole tree, flattened, as a
//! tar, read through a private read-only mount of its upper and image.

use super::Ctx;
use crate::cli::ExportArgs;
use crate::liveness;
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Seek, Write};
use std::path::Path;
use std::sync::Arc;

pub fn export(ctx: &Ctx, args: ExportArgs) -> Result<i32> {
    // The tree is served from this process.
    crate::server_faults::keep();
    if nix::unistd::geteuid().is_root() {
        // The tree is mounted for the export: in a namespace of our own
        // it goes with us, even on kill -9.
        crate::container::private_mount_namespace()?;
    }
    // Only reads, through a reader: the writer lock must not be held while
    // the tar goes to its output (a reader that stops reading holds it up
    // without bound). The pin below keeps the layers from gc meanwhile.
    let store = Arc::new(ctx.reader()?);
    let rec = liveness::container(&store, &args.container)?;
    let mut aside = args
        .output
        .as_deref()
        .map(crate::output_file::Output::open)
        .transpose()?;
    let mut out: Box<dyn Write + Send> = match &mut aside {
        Some(output) => Box::new(output.writer()),
        None if std::io::stdout().is_terminal() => {
            bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        }
        None => Box::new(crate::output_file::stdout()),
    };
    // A private read-only view of the upper over the image, running or
    // not: it is the same tree the container sees, without its /proc, /sys
    // and /dev mounts, and it works the same for rootless containers.
    let image = store
        .image(&rec.image)?
        .with_context(|| format!("the image of {} is gone", rec.name))?;
    let _pin = layerdb::Pin::new(&ctx.root, &image.layers)?;
    let tmp = ctx.scratch_dir("export")?;
    let mut opts =
        fusefs::MountOptions::of_image(&store, &image, Some(store.container_dir(&rec.id).upper()))?;
    opts.read_only = true;
    // Walked by this process: over /dev/fuse (see `fusefs::client_thread`).
    opts.io_uring = false;
    let tree = tmp.path().to_path_buf();
    if rec.state.is_running() {
        // Paused while the tree is read (see `commit::Paused`), into a
        // file first: a reader of the output that stops reading must not
        // hold the container paused.
        let mut spooled = tempfile::tempfile_in(tmp.path())?;
        {
            let _paused = super::commit::Paused::new(ctx, &rec, true)?;
            let mount = fusefs::mount(opts, &tree)?;
            write_tree(&tree, &mut std::io::BufWriter::new(&mut spooled))?;
            drop(mount);
        }
        spooled.seek(std::io::SeekFrom::Start(0))?;
        std::io::copy(&mut spooled, &mut out)?;
    } else {
        let mount = fusefs::mount(opts, &tree)?;
        write_tree(&tree, &mut out)?;
        // Unmount before the mountpoint's directory is removed.
        drop(mount);
    }
    out.flush()?;
    drop(out);
    if let Some(output) = aside {
        output.finish()?;
    }
    drop(tmp);
    Ok(0)
}

/// The tree as `export` writes it: entries from the top (`.`), with every
/// xattr the union shows (the container's own), read on a thread apart
/// from the tree's server (`fusefs::client_thread`: this process serves
/// it).
fn write_tree(tree: &Path, out: &mut (dyn Write + Send)) -> Result<()> {
    fusefs::client_thread(|| {
        crate::tree_tar::write(tree, Path::new("."), crate::tree_tar::Xattrs::All, out)
    })?
}
