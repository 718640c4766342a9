//! Images: an OCI image config (whose sha256 is the image id) plus what the
//! store keeps beside it: the local parent and the layers' diff ids.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The runtime part of an OCI image config (`config` in the JSON), named and
/// shaped as docker writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<serde_json::Value>,
    #[serde(
        rename = "Volumes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
}

/// The `{}` value of ExposedPorts and Volumes maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// The OCI image config document. Its exact serialized bytes are stored and
/// hashed: the image id is sha256 of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    #[serde(default)]
    pub config: RunConfig,
    /// RFC 3339 UTC time with nanoseconds.
    pub created: String,
    #[serde(default)]
    pub history: Vec<History>,
    pub os: String,
    pub rootfs: RootFs,
}

impl ImageConfig {
    pub fn new(created: String, diff_ids: &[Digest]) -> ImageConfig {
        ImageConfig {
            architecture: host_architecture().to_string(),
            author: String::new(),
            config: RunConfig::default(),
            created,
            history: Vec::new(),
            os: "linux".to_string(),
            rootfs: RootFs {
                kind: "layers".to_string(),
                diff_ids: diff_ids.iter().map(|d| format!("{d:#}")).collect(),
            },
        }
    }

    /// The canonical bytes: compact JSON, fields in declaration order.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an ImageConfig always serializes")
    }

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

/// What the store keeps per image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// sha256 of `config_json`.
    pub id: Digest,
    /// The config exactly as hashed.
    pub config_json: Vec<u8>,
    /// Layers bottom to top (the config's rootfs.diff_ids, parsed).
    pub layers: Vec<Digest>,
    /// The image this one was committed from, if it is in this store.
    pub parent: Option<Digest>,
}

impl ImageRecord {
    pub fn config(&self) -> ImageConfig {
        serde_json::from_slice(&self.config_json)
            .expect("stored config was valid JSON when written")
    }
}
