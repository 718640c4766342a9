//! Images: an OCI image config (whose sha256 is the image id) plus what the
//! store keeps beside it: the local parent and the layers' diff ids.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The runtime part of an OCI image config (`config` in the JSON), named and
/// shaped as docker writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The user the process runs as: `user`, `uid`, `user:group` or
    /// `uid:gid`; empty for root.
    #[serde(
        rename = "User",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub user: String,
    /// Ports the image declares, as `PORT/PROTO` keys (`80/tcp`); informative
    /// only.
    #[serde(
        rename = "ExposedPorts",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// The process environment, `KEY=VALUE` each.
    #[serde(
        rename = "Env",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// The program that `cmd` (or the run arguments) are given to; empty for
    /// none.
    #[serde(
        rename = "Entrypoint",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub entrypoint: Vec<String>,
    /// The default command, or the entrypoint's default arguments.
    #[serde(
        rename = "Cmd",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cmd: Vec<String>,
    /// Docker's health check, kept as given and not run.
    #[serde(
        rename = "Healthcheck",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<serde_json::Value>,
    /// Container paths the image declares as volumes; kept, not mounted.
    #[serde(
        rename = "Volumes",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Empty>,
    /// The process's working directory (absolute); empty for `/`.
    #[serde(
        rename = "WorkingDir",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    /// Free-form labels.
    #[serde(
        rename = "Labels",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Dockerfile `ONBUILD` instructions, kept as given.
    #[serde(
        rename = "OnBuild",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    /// The signal `stop` sends first (`SIGTERM` when empty), by name or number.
    #[serde(
        rename = "StopSignal",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    /// Dockerfile `SHELL`: what shell-form RUN, CMD and ENTRYPOINT run
    /// under (`/bin/sh -c` when empty); a child image's build starts
    /// from it.
    #[serde(
        rename = "Shell",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub shell: Vec<String>,
}

/// The `{}` value of ExposedPorts and Volumes maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// One step of the image's history, as `strata history` shows it; steps with
/// `empty_layer` made no layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When the step ran, RFC 3339.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub created: String,
    /// The command or instruction that made the step.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub created_by: String,
    /// Who made it (`commit --author`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub author: String,
    /// A free-form comment (`commit -m`, `import -m`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub comment: String,
    /// The step changed only the config and added no layer.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub empty_layer: bool,
}

/// The config's list of layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The layers' diff ids (`sha256:<hex>`), bottom first.
    pub diff_ids: Vec<String>,
}

impl RootFs {
    /// The list naming `diff_ids`, bottom first.
    pub fn of(diff_ids: &[Digest]) -> RootFs {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: diff_ids.iter().map(|d| format!("{d:#}")).collect(),
        }
    }
}

/// The OCI image config document. Its exact serialized bytes are stored and
/// hashed: the image id is sha256 of them.
///
/// Only `rootfs` is required when reading one: docker loads configs
/// without `created`, `architecture`, `os` or history, and writes `null`
/// for empty lists (`"Entrypoint": null`). Written, every field but
/// `author` is present, as before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The OCI architecture name (`amd64`, `arm64`...).
    #[serde(default, deserialize_with = "null_as_default")]
    pub architecture: String,
    /// Who made the image, if said.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub author: String,
    /// How a container of this image runs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: RunConfig,
    /// RFC 3339 UTC time with nanoseconds.
    #[serde(default, deserialize_with = "null_as_default")]
    pub created: String,
    /// One record per build step, oldest first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub history: Vec<History>,
    /// Always `linux` for images strata makes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub os: String,
    /// The image's layers.
    pub rootfs: RootFs,
}

/// Reads `null` as the type's default (docker's configs write empty lists
/// and maps as `null`).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageConfig {
    /// A config made at `created` (RFC 3339), for this machine's
    /// architecture, with an empty run config, history and layer list
    /// (`Store::commit_image` fills that in).
    pub fn new(created: String) -> ImageConfig {
        ImageConfig {
            architecture: host_architecture().to_string(),
            author: String::new(),
            config: RunConfig::default(),
            created,
            history: Vec::new(),
            os: "linux".to_string(),
            rootfs: RootFs::of(&[]),
        }
    }

    /// The canonical bytes: compact JSON, fields in declaration order.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an ImageConfig always serializes")
    }

    /// The layers' diff ids parsed; an error names the first that is not a
    /// sha256 digest.
    pub fn diff_ids(&self) -> Result<Vec<Digest>, crate::digest::BadDigest> {
        self.rootfs.diff_ids.iter().map(|s| s.parse()).collect()
    }
}

/// The OCI name of the machine's architecture.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// An image to add with its config bytes kept exactly as they came (from
/// `load` or a registry), so its id is the one every other tool shows.
/// The config's `rootfs.diff_ids` name the layers as they were read; the
/// store keeps each layer under the diff id of its canonical tar, which
/// for a layer another tool wrote may differ: `layers` says, position by
/// position, the store's layer for each diff id of the config.
pub struct ExactImage {
    /// The config bytes as read; the image id is their sha256.
    pub config_json: Vec<u8>,
    /// The store's layers, bottom first, one per `rootfs.diff_ids` entry.
    pub layers: Vec<Digest>,
    /// Layers of `layers` that are not in the store yet.
    pub new_layers: Vec<crate::layer::PendingLayer>,
    /// The local image it was committed from, if any.
    pub parent: Option<Digest>,
    /// The name to tag it with, if any.
    pub reference: Option<crate::reference::Reference>,
    /// The repository's manifest digest the image came by (a pull).
    pub repo_digest: Option<crate::reference::DigestReference>,
}

/// What the store keeps per image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// sha256 of `config_json`.
    pub id: Digest,
    /// The config exactly as hashed.
    pub config_json: Vec<u8>,
    /// The store's layers bottom to top: the config's rootfs.diff_ids,
    /// except where a loaded layer is kept under its canonical diff id
    /// (see `ExactImage`).
    pub layers: Vec<Digest>,
    /// The image this one was committed from, if it is in this store.
    pub parent: Option<Digest>,
}

impl ImageRecord {
    /// The parsed config. The bytes were parsed before they were stored, so
    /// this panics only on a damaged index.
    pub fn config(&self) -> ImageConfig {
        serde_json::from_slice(&self.config_json)
            .expect("stored config was valid JSON when written")
    }
}
