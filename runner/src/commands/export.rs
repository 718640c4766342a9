//! `strata export CONTAINER`: the container's whole tree, flattened, as a
//! tar, read through a private read-only mount of its upper and image.

use super::Ctx;
use crate::cli::ExportArgs;
use crate::liveness;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{IsTerminal, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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
    let tree = tmp.path().to_path_buf();
    if rec.state.is_running() {
        // Paused while the tree is read (see `commit::Paused`), into a
        // file first: a reader of the output that stops reading must not
        // hold the container paused.
        let mut spooled = tempfile::tempfile_in(ctx.root.join("tmp"))?;
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
    drop(tmp);
    Ok(0)
}

/// Writes `tree` as docker's export does: the root as `.`, every other
/// entry by its path from it, in name order, a file with several names once and its other names as
/// hardlinks to the first, and each entry's xattrs (the container's own:
/// the union shows no other) as PAX `SCHILY.xattr.*` records, which
/// `import` and `load` read back. (`tar::Builder::append_dir_all` wrote
/// each name of a file as a whole copy and no xattrs: file capabilities
/// were lost.)
fn write_tree(tree: &Path, out: &mut dyn Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut first_names: HashMap<u64, PathBuf> = HashMap::new();
    let mut stack = vec![(tree.to_path_buf(), PathBuf::from("."))];
    while let Some((host, name)) = stack.pop() {
        let reading = || format!("reading {}", host.display());
        let md = std::fs::symlink_metadata(&host).with_context(reading)?;
        if md.is_file() && md.nlink() > 1 {
            if let Some(first) = first_names.get(&md.ino()) {
                let mut header = tar::Header::new_gnu();
                header.set_metadata(&md);
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                tar.append_link(&mut header, &name, first)?;
                continue;
            }
            first_names.insert(md.ino(), name.clone());
        }
        let xattrs = container_xattrs(&host).with_context(reading)?;
        if !xattrs.is_empty() {
            let records = xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
            tar.append_pax_extensions(records)?;
        }
        tar.append_path_with_name(&host, &name)
            .with_context(reading)?;
        if md.is_dir() {
            let mut names = std::fs::read_dir(&host)
                .with_context(reading)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<Vec<_>>>()
                .with_context(reading)?;
            names.sort();
            for n in names.into_iter().rev() {
                // Names as the tar writer spells them ("bin", not
                // "./bin"): hardlinks name their targets the same way.
                let inner = match name == Path::new(".") {
                    true => PathBuf::from(&n),
                    false => name.join(&n),
                };
                stack.push((host.join(&n), inner));
            }
        }
    }
    tar.into_inner()?;
    Ok(())
}

/// The xattrs of `host` (not following a symlink) as PAX records.
fn container_xattrs(host: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in xattr::list(host)? {
        if let Some(value) = xattr::get(host, &name)? {
            out.push((format!("SCHILY.xattr.{}", name.to_string_lossy()), value));
        }
    }
    Ok(out)
}
