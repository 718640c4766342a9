//! `strata save [-o DIR] IMAGE`: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/`) plus docker's `manifest.json`. Layers are
//! uncompressed tars, each blob's digest its diff id: the tars the image's
//! config names (another tool's, kept byte for byte), else the canonical
//! ones under a config that names those.
//! Without -o the layout is written as a tar to stdout.

use super::Ctx;
use crate::cli::SaveArgs;
use anyhow::{bail, Context, Result};
use layerdb::{Digest, Store};
use serde_json::json;
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::Path;

pub fn run(ctx: &Ctx, args: SaveArgs) -> Result<i32> {
    // Only reads, through a reader: the writer lock must not be held while
    // the tar goes to stdout (a reader that stops reading holds it up
    // without bound). The pin keeps the layers from gc meanwhile.
    let store = ctx.reader()?;
    let image = store.resolve_image(&args.image)?;
    let _pin = layerdb::Pin::new(&ctx.root, &image.layers)?;
    match &args.output {
        Some(dir) => write_layout(&store, &image, &args.image, dir)?,
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let tmp = tempfile::Builder::new()
                .prefix("save-")
                .tempdir_in(store.root().join("tmp"))?;
            write_layout(&store, &image, &args.image, tmp.path())?;
            let mut tar = tar::Builder::new(std::io::stdout().lock());
            tar.mode(tar::HeaderMode::Deterministic);
            tar.append_dir_all(".", tmp.path())?;
            tar.into_inner()?.flush()?;
        }
    }
    Ok(0)
}

fn write_blob(blobs: &Path, bytes: &[u8]) -> Result<Digest> {
    let d = Digest::of(bytes);
    fs::write(blobs.join(d.hex()), bytes)?;
    Ok(d)
}

fn write_layout(store: &Store, image: &layerdb::ImageRecord, name: &str, dir: &Path) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("create {}", blobs.display()))?;
    let outgoing = store.outgoing(image)?;
    let mut layers = Vec::new();
    for (stored, diff_id) in &outgoing.layers {
        let path = blobs.join(diff_id.hex());
        let mut f = fs::File::create(&path)?;
        if let Err(e) = store.write_layer_tar_as(stored, diff_id, &mut f) {
            // No blob under a name its bytes do not hash to.
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(e.into());
        }
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("{diff_id:#}"),
            "size": f.metadata()?.len(),
        }));
    }
    let config_json = &outgoing.config_json;
    let config = write_blob(&blobs, config_json)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("{config:#}"), "size": config_json.len() },
        "layers": layers,
    }))?;
    let manifest_digest = write_blob(&blobs, &manifest)?;
    // The name's tag, when the name is one of the image's tags: saved by
    // id (or by a digest), docker records no name.
    let tag = layerdb::Reference::parse(name)
        .ok()
        .map(|r| r.to_string())
        .filter(|r| store.tags_of(&image.id).is_ok_and(|tags| tags.contains(r)));
    let mut desc = json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("{manifest_digest:#}"), "size": manifest.len() });
    if let Some(t) = &tag {
        desc["annotations"] = json!({ "io.containerd.image.name": t, "org.opencontainers.image.ref.name": t.rsplit(':').next() });
    }
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": [desc] }))?,
    )?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let docker = json!([{
        "Config": format!("blobs/sha256/{}", config.hex()),
        "RepoTags": tag.into_iter().collect::<Vec<_>>(),
        "Layers": outgoing.layers.iter().map(|(_, d)| format!("blobs/sha256/{}", d.hex())).collect::<Vec<_>>(),
    }]);
    fs::write(dir.join("manifest.json"), serde_json::to_vec(&docker)?)?;
    Ok(())
}
