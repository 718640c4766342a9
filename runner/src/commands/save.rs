//! `strata save [-o FILE] [--format F] IMAGE...`: the images as an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/`) plus
//! docker's `manifest.json`, so that docker, podman and skopeo each load
//! it. Layers are uncompressed tars, each blob's digest its diff id: the
//! tars the image's config names (another tool's, kept byte for byte),
//! else the canonical ones under a config that names those. A layer two
//! images share is written once.
//!
//! As docker's: a tar on stdout, or in FILE with `-o` (written aside and
//! renamed into place, so a failed save leaves no half file). podman's
//! `--format oci-dir` writes the layout into a directory instead (a new
//! one made aside and renamed into place too: in the store's scratch where
//! the rename can come from there, so a killed save leaves nothing).

use super::Ctx;
use crate::cli::SaveArgs;
use anyhow::{bail, Context, Result};
use layerdb::{Digest, ImageRecord, Store};
use serde_json::{json, Value};
use std::fs;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

pub fn run(ctx: &Ctx, args: SaveArgs) -> Result<i32> {
    let directory = match args.format.as_deref() {
        None | Some("docker-archive" | "oci-archive") => false,
        Some("oci-dir") => true,
        Some(other) => bail!(
            "unsupported format {other:?}: docker-archive, oci-archive (both the same tar) or oci-dir"
        ),
    };
    // Only reads, through a reader: the writer lock must not be held while
    // the tar goes to stdout (a reader that stops reading holds it up
    // without bound). The pins keep the layers from gc meanwhile.
    let store = ctx.reader()?;
    let mut images = Vec::new();
    let mut pins = Vec::new();
    for name in &args.images {
        let image = store.resolve_image(name)?;
        pins.push(layerdb::Pin::new(&ctx.root, &image.layers)?);
        images.push((name.as_str(), image));
    }
    match (&args.output, directory) {
        (Some(dir), true) if dir.exists() => write_layout(&store, &images, dir)?,
        // A new directory appears whole or not at all: made aside, then
        // renamed into place.
        (Some(dir), true) => {
            let made = new_dir_aside(ctx, dir)?;
            write_layout(&store, &images, made.path())?;
            fs::set_permissions(made.path(), fs::Permissions::from_mode(0o755))?;
            fs::rename(made.path(), dir).with_context(|| format!("write {}", dir.display()))?;
        }
        (None, true) => bail!("--format oci-dir needs -o DIRECTORY"),
        (Some(file), false) => {
            let mut out = crate::output_file::Output::open(file)?;
            write_tar(&layout(ctx, &store, &images)?, &mut out.writer())?;
            out.finish()?;
        }
        (None, false) => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let dir = layout(ctx, &store, &images)?;
            write_tar(&dir, &mut crate::output_file::stdout())?;
        }
    }
    Ok(0)
}

/// Where a new `-o` directory is made before it is renamed into place:
/// in the store's scratch, which `gc` empties of a save killed before its
/// end, where that is on the same mount (a rename crosses no mount, a
/// bind mount of the same filesystem included, and a store on a read-only
/// mount has none of its own); else beside the directory, where a killed
/// save leaves it.
fn new_dir_aside(ctx: &Ctx, dir: &Path) -> Result<tempfile::TempDir> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let parent = parent_of(dir);
    let mount = |p: &Path| {
        statx(CWD, p, AtFlags::empty(), StatxFlags::MNT_ID)
            .ok()
            .filter(|s| StatxFlags::from_bits_retain(s.stx_mask).contains(StatxFlags::MNT_ID))
            .map(|s| s.stx_mnt_id)
    };
    let scratch = ctx.root.join("tmp");
    if mount(&scratch).is_some() && mount(&scratch) == mount(parent) {
        return ctx.scratch_dir("save");
    }
    tempfile::Builder::new()
        .prefix(".strata-save-")
        .tempdir_in(parent)
        .with_context(|| format!("create a directory beside {}", dir.display()))
}

/// The directory `path` is in.
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The layout of a tar, made in a scratch directory of the store's, which
/// `gc` removes once a save killed (or ended by a closed pipe) before it
/// could is gone; for a store on a read-only or full filesystem, in the
/// system's temporary directory (a full store disk stopped the save to
/// another that would free it, found by a review).
fn layout(ctx: &Ctx, store: &Store, images: &[(&str, ImageRecord)]) -> Result<tempfile::TempDir> {
    let written = |dir: Result<tempfile::TempDir>| {
        let dir = dir?;
        write_layout(store, images, dir.path())?;
        Ok(dir)
    };
    let elsewhere = || written(tempfile::tempdir().context("create a temporary directory"));
    let read_only = nix::sys::statvfs::statvfs(store.root())
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    if read_only {
        return elsewhere();
    }
    match written(ctx.scratch_dir("save")) {
        Err(e) if super::ran_out_of_space(&e) => elsewhere(),
        made => made,
    }
}

/// The layout made in `dir`, as a tar on `out`.
fn write_tar(dir: &tempfile::TempDir, out: &mut dyn Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(".", dir.path())?;
    tar.into_inner()?.flush()?;
    Ok(())
}

fn write_blob(blobs: &OutDir, bytes: &[u8]) -> Result<Digest> {
    let d = Digest::of(bytes);
    blobs.write(&d.hex(), bytes)?;
    Ok(d)
}

/// A directory the layout goes into, written by descriptor: no name in
/// it is followed as a link. An existing `-o` directory may belong to
/// someone else than the (root) caller, who may have planted links there
/// (`index.json -> /etc/shadow`, a dangling `blobs/sha256/<layer>`):
/// writes through them replaced or made root's files elsewhere. Each
/// file is made under a new name and renamed over its own, which replaces
/// a link rather than following it.
struct OutDir {
    fd: rustix::fd::OwnedFd,
    shown: std::path::PathBuf,
}

impl OutDir {
    /// The directory `-o` names, through its link only when the link is
    /// the caller's own (as `output_file` follows one).
    fn open(path: &Path) -> Result<OutDir> {
        use rustix::fs::{Mode, OFlags};
        let own_link =
            fs::symlink_metadata(path).is_ok_and(|m| crate::output_file::is_own_link(&m));
        let follow = match own_link {
            true => OFlags::empty(),
            false => OFlags::NOFOLLOW,
        };
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | follow | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open the directory {}", path.display()))?;
        Ok(OutDir {
            fd,
            shown: path.to_path_buf(),
        })
    }

    /// The directory `name` in it, made if missing; a link is refused.
    fn subdir(&self, name: &str) -> Result<OutDir> {
        use rustix::fs::{Mode, OFlags};
        let shown = self.shown.join(name);
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("create {}", shown.display())),
        }
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open the directory {}", shown.display()))?;
        Ok(OutDir { fd, shown })
    }

    /// Whether `name` is a regular file here (a link is not).
    fn has_file(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.write_with(name, |f| Ok(f.write_all(bytes)?))
    }

    /// `name` written by `fill` under a new name, then renamed over it.
    fn write_with(&self, name: &str, fill: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
        use rustix::fs::{Mode, OFlags};
        let shown = self.shown.join(name);
        let temporary = format!(".strata-save-{name}-{:08x}", rand::random::<u32>());
        let fd = rustix::fs::openat(
            &self.fd,
            temporary.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .with_context(|| format!("create a file in {}", self.shown.display()))?;
        let mut file = fs::File::from(fd);
        let written = fill(&mut file).and_then(|()| {
            rustix::fs::renameat(&self.fd, temporary.as_str(), &self.fd, name)
                .with_context(|| format!("write {}", shown.display()))
        });
        if written.is_err() {
            let _ =
                rustix::fs::unlinkat(&self.fd, temporary.as_str(), rustix::fs::AtFlags::empty());
        }
        written
    }
}

/// Every image's blobs, then `index.json` (a manifest per name, annotated
/// with the name when it is one of the image's tags), `oci-layout` and
/// `manifest.json` (an entry per image, its tags among the names given).
fn write_layout(store: &Store, images: &[(&str, ImageRecord)], dir: &Path) -> Result<()> {
    let dir = OutDir::open(dir)?;
    let blobs = dir.subdir("blobs")?.subdir("sha256")?;
    let mut index: Vec<Value> = Vec::new();
    let mut docker: Vec<(Digest, Value)> = Vec::new();
    for (name, image) in images {
        let (manifest, entry) = write_image(store, image, &blobs)?;
        // The name's tag, when the name is one of the image's tags: saved
        // by id (or by a digest), docker records no name.
        let tag = layerdb::Reference::parse(name)
            .ok()
            .map(|r| r.to_string())
            .filter(|r| store.tags_of(&image.id).is_ok_and(|tags| tags.contains(r)));
        let mut desc = manifest;
        if let Some(t) = &tag {
            desc["annotations"] = json!({ "io.containerd.image.name": t, "org.opencontainers.image.ref.name": t.rsplit(':').next() });
        }
        if !index.contains(&desc) {
            index.push(desc);
        }
        match docker.iter_mut().find(|(id, _)| *id == image.id) {
            Some((_, seen)) => {
                let tags = seen["RepoTags"].as_array_mut().expect("made below");
                if let Some(t) = tag.filter(|t| !tags.iter().any(|x| x == t)) {
                    tags.push(json!(t));
                }
            }
            None => {
                let mut entry = entry;
                entry["RepoTags"] = json!(tag.into_iter().collect::<Vec<_>>());
                docker.push((image.id, entry));
            }
        }
    }
    dir.write(
        "index.json",
        &serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": index }))?,
    )?;
    dir.write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let docker: Vec<Value> = docker.into_iter().map(|(_, entry)| entry).collect();
    dir.write("manifest.json", &serde_json::to_vec(&docker)?)?;
    Ok(())
}

/// One image's layers, config and manifest into `blobs` (a layer already
/// there is not written again): its manifest's descriptor and its
/// `manifest.json` entry without `RepoTags`.
fn write_image(store: &Store, image: &ImageRecord, blobs: &OutDir) -> Result<(Value, Value)> {
    let outgoing = store.outgoing(image)?;
    let mut layers = Vec::new();
    for (stored, diff_id) in &outgoing.layers {
        let name = diff_id.hex();
        // A blob appears whole under its name or not at all: no name
        // holds bytes that do not hash to it.
        if !blobs.has_file(&name) {
            blobs.write_with(&name, |f| Ok(store.write_layer_tar_as(stored, diff_id, f)?))?;
        }
        let size = rustix::fs::statat(
            &blobs.fd,
            name.as_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?
        .st_size;
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("{diff_id:#}"),
            "size": size,
        }));
    }
    let config_json = &outgoing.config_json;
    let config = write_blob(blobs, config_json)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("{config:#}"), "size": config_json.len() },
        "layers": layers,
    }))?;
    let manifest_digest = write_blob(blobs, &manifest)?;
    let desc = json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("{manifest_digest:#}"), "size": manifest.len() });
    let entry = json!({
        "Config": format!("blobs/sha256/{}", config.hex()),
        "Layers": outgoing.layers.iter().map(|(_, d)| format!("blobs/sha256/{}", d.hex())).collect::<Vec<_>>(),
    });
    Ok((desc, entry))
}
