//! `strata volume create|ls|inspect|rm|prune`: docker's local volumes
//! (`volumes.rs` keeps them).

use super::Ctx;
use crate::cli::VolumeCommand;
use crate::humanize::{format_rfc3339, human_size};
use crate::{liveness, volumes};
use anyhow::{bail, Result};
use layerdb::ContainerRecord;

pub fn run(ctx: &Ctx, command: VolumeCommand) -> Result<i32> {
    match command {
        VolumeCommand::Create { name } => {
            let name = name.unwrap_or_else(volumes::anonymous_name);
            // A first command on a new store: the store comes first, or
            // its `volumes/` alone made every later command refuse it.
            layerdb::store::create_root_for_writing(&ctx.root)?;
            volumes::ensure(&ctx.root, &name, false)?;
            outln!("{name}")?;
        }
        VolumeCommand::Ls { quiet, filter } => {
            let filters = crate::list_filter::Filters::parse(&filter, &["dangling", "name"])?;
            let dangling = match filters.values("dangling").last().map(String::as_str) {
                None => None,
                Some("true" | "1") => Some(true),
                Some("false" | "0") => Some(false),
                Some(other) => bail!("invalid filter 'dangling={other}'"),
            };
            let in_use = match dangling {
                Some(_) => containers(ctx)?,
                None => Vec::new(),
            };
            let all = volumes::list(&ctx.root)?.into_iter().filter(|v| {
                let unused = volumes::users(&in_use, &v.name).is_empty();
                filters.any("name", |n| v.name.contains(n)) && dangling.is_none_or(|d| d == unused)
            });
            if !quiet {
                outln!("DRIVER    VOLUME NAME")?;
            }
            for v in all {
                match quiet {
                    true => outln!("{}", v.name)?,
                    false => outln!("local     {}", v.name)?,
                }
            }
        }
        VolumeCommand::Inspect { names } => {
            let mut shown = Vec::new();
            for name in &names {
                let Some(v) = volumes::find(&ctx.root, name) else {
                    bail!("get {name}: no such volume");
                };
                let labels = match v.anonymous {
                    true => serde_json::json!({ "com.docker.volume.anonymous": "" }),
                    false => serde_json::Value::Null,
                };
                shown.push(serde_json::json!({
                    "CreatedAt": format_rfc3339(v.created_ns),
                    "Driver": "local",
                    "Labels": labels,
                    "Mountpoint": volumes::data(&ctx.root, &v.name),
                    "Name": v.name,
                    "Options": null,
                    "Scope": "local",
                }));
            }
            outln!("{}", serde_json::to_string_pretty(&shown)?)?;
        }
        VolumeCommand::Rm { force, names } => {
            let store = ctx.reader()?;
            for name in &names {
                if volumes::find(&ctx.root, name).is_none() {
                    if force {
                        continue;
                    }
                    bail!("get {name}: no such volume");
                }
                // Chosen and renamed away under the containers lock, as
                // a prune does (see `remove_unused_volumes`).
                let doomed = {
                    let _held = store.hold_containers()?;
                    let users = volumes::users(&liveness::containers(&store)?, name).join(", ");
                    if !users.is_empty() {
                        bail!("remove {name}: volume is in use - [{users}]");
                    }
                    volumes::take_away(&ctx.root, name)?
                };
                doomed.remove()?;
                outln!("{name}")?;
            }
        }
        VolumeCommand::Prune { all, force } => {
            let what = match all {
                true => "This will remove all local volumes not used by at least one container.",
                false => {
                    "This will remove anonymous local volumes not used by at least one container."
                }
            };
            if !force && !super::prune::confirmed(what)? {
                return Ok(0);
            }
            let (deleted, reclaimed) = super::prune::remove_unused_volumes(&ctx.reader()?, all)?;
            super::prune::print_deleted("Volumes", &deleted)?;
            outln!("Total reclaimed space: {}", human_size(reclaimed))?;
        }
    }
    Ok(0)
}

/// Every container, for what their mounts use.
fn containers(ctx: &Ctx) -> Result<Vec<ContainerRecord>> {
    liveness::containers(&ctx.reader()?)
}
