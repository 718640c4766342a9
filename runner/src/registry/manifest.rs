//! Manifests as registries serve them: OCI image manifests and indexes,
//! Docker schema 2 manifests and manifest lists (the same shapes under
//! other media types, read with `oci-spec`'s types); the platform chosen
//! from an index; how each layer is compressed.

use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// The `Accept` list of a manifest request.
pub const ACCEPTED: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// A parsed manifest document.
pub enum Document {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Parses by the `Content-Type` the registry sent, else by the document's
/// own `mediaType`, else by its shape.
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Document> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let peek: Peek = serde_json::from_slice(bytes).context("the manifest is not JSON")?;
    let declared = content_type
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_string())
        .filter(|t| ACCEPTED.contains(&t.as_str()) || t.starts_with(DOCKER_SCHEMA1))
        .or(peek.media_type);
    let is_index = match declared.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(t) if t.starts_with(DOCKER_SCHEMA1) => {
            bail!("Docker schema 1 manifests are not supported (media type {t}); push the image again with a current client")
        }
        Some(other) => bail!("unsupported manifest media type {other}"),
        None => peek.manifests.is_some(),
    };
    Ok(if is_index {
        Document::Index(Box::new(
            ImageIndex::from_reader(bytes).context("not a valid image index")?,
        ))
    } else {
        Document::Image(Box::new(
            ImageManifest::from_reader(bytes).context("not a valid image manifest")?,
        ))
    })
}

/// `os/arch[/variant]`, as `--platform` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The machine strata runs on.
    pub fn host() -> Platform {
        let architecture = layerdb::image::host_architecture().to_string();
        let variant = match architecture.as_str() {
            "arm64" => Some("v8".to_string()),
            _ => None,
        };
        Platform {
            os: "linux".to_string(),
            architecture,
            variant,
        }
    }

    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_lowercase(),
                architecture: normalize_arch(arch),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_lowercase(),
                architecture: normalize_arch(arch),
                variant: Some(variant.to_lowercase()),
            }),
            _ => bail!("invalid platform {s:?}: expected os/arch[/variant], such as linux/amd64"),
        }
    }

    /// containerd's matcher: os and architecture equal; a variant asked
    /// for must match, `arm64` without variant being `v8`.
    fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let default_variant = |arch: &str, v: Option<&str>| -> Option<String> {
            match (arch, v) {
                ("arm64", None) => Some("v8".into()),
                (_, v) => v.map(str::to_lowercase),
            }
        };
        self.os == os
            && self.architecture == normalize_arch(architecture)
            && (self.variant.is_none()
                || default_variant(&self.architecture, self.variant.as_deref())
                    == default_variant(architecture, variant))
    }
}

fn normalize_arch(arch: &str) -> String {
    match arch.to_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        other => other.to_string(),
    }
}

/// The index entry for `platform`.
pub fn choose<'a>(index: &'a ImageIndex, platform: &Platform) -> Result<&'a Descriptor> {
    index
        .manifests()
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                platform.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        })
        .with_context(|| {
            format!("no matching manifest for {platform} in the manifest list entries")
        })
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The name the store remembers pushed or pulled blobs by
    /// (`layerdb::blob`); `None` for an uncompressed blob.
    pub fn blob_name(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// The compression a layer's media type says; unknown types are refused.
pub fn compression_of(media_type: &MediaType) -> Result<Compression> {
    Ok(match media_type {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Compression::None,
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Compression::Gzip,
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Compression::Zstd,
        MediaType::Other(t) => match t.as_str() {
            "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
            other => bail!("unsupported layer media type {other}"),
        },
        other => bail!("unsupported layer media type {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_json(entries: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": DOCKER_MANIFEST,
                    "digest": format!("sha256:{}", format!("{i}").repeat(64)),
                    "size": 100,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": manifests,
        }))
        .unwrap()
    }

    fn chosen(entries: &[(&str, &str, Option<&str>)], platform: &str) -> Option<String> {
        let Document::Index(index) = parse(None, &index_json(entries)).unwrap() else {
            panic!("an index")
        };
        choose(&index, &Platform::parse(platform).unwrap())
            .ok()
            .map(|d| d.digest().to_string()[7..8].to_string())
    }

    #[test]
    fn an_index_entry_is_chosen_by_os_arch_and_variant() {
        let entries = [
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", None),
            ("windows", "amd64", None),
        ];
        assert_eq!(chosen(&entries, "linux/amd64").as_deref(), Some("2"));
        assert_eq!(chosen(&entries, "linux/arm64").as_deref(), Some("1"));
        assert_eq!(chosen(&entries, "linux/arm64/v8").as_deref(), Some("1"));
        assert_eq!(chosen(&entries, "linux/arm/v7").as_deref(), Some("0"));
        assert_eq!(chosen(&entries, "linux/arm/v6"), None);
        assert_eq!(chosen(&entries, "linux/s390x"), None);
        assert_eq!(
            chosen(&[("linux", "arm64", None)], "linux/arm64/v8").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn no_matching_platform_says_which() {
        let Document::Index(index) = parse(None, &index_json(&[("linux", "arm64", None)])).unwrap()
        else {
            panic!("an index")
        };
        let e = choose(&index, &Platform::parse("linux/amd64").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no matching manifest for linux/amd64 in the manifest list entries"
        );
    }

    #[test]
    fn documents_are_told_apart_by_content_type_media_type_or_shape() {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": format!("sha256:{}", "a".repeat(64)), "size": 2},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": format!("sha256:{}", "b".repeat(64)), "size": 3}],
        }))
        .unwrap();
        assert!(matches!(
            parse(Some(DOCKER_MANIFEST), &manifest).unwrap(),
            Document::Image(_)
        ));
        assert!(matches!(
            parse(None, &manifest).unwrap(),
            Document::Image(_)
        ));
        assert!(matches!(
            parse(Some("application/octet-stream"), &index_json(&[])).unwrap(),
            Document::Index(_)
        ));
        let e = parse(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            &manifest,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("schema 1"), "{e}");
    }

    #[test]
    fn layer_media_types_name_their_compression() {
        for (t, c) in [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Compression::None,
            ),
        ] {
            assert_eq!(compression_of(&MediaType::from(t)).unwrap(), c, "{t}");
        }
        let e = compression_of(&MediaType::from("application/x-squashfs")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported layer media type application/x-squashfs"
        );
    }
}
