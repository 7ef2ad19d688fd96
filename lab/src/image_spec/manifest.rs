//! Descriptors, image manifests, indexes and platforms: small serde structures over the JSON, parsed from
//! untrusted bytes without panicking. Unknown fields are ignored; the fields we use are required.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::media::{self, ManifestKind};
use verity_fuse::ErrorClass;

/// The annotation an image layout uses for a tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Content size in bytes.
    pub size: u64,
    /// Target platform (in an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A platform (`os/architecture[/variant]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture in Go's naming (`amd64`, `arm64`).
    pub architecture: String,
    /// Variant (`v8`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// Media type, when the document states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (or a Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// Media type, when the document states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest-like document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An image manifest.
    Image(ImageManifest),
    /// An index.
    Index(Index),
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A media type we do not read.
    #[error("manifest {digest}: unsupported media type {media_type:?}")]
    UnknownMediaType {
        /// The manifest's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// The JSON does not parse into the structure its media type promises.
    #[error("manifest {digest} ({media_type}): {source}")]
    Json {
        /// The manifest's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// `schemaVersion` is not 2.
    #[error("manifest {digest}: schemaVersion {version}, expected 2")]
    SchemaVersion {
        /// The manifest's digest.
        digest: Digest,
        /// The version found.
        version: u32,
    },
    /// The document's own `mediaType` disagrees with the one it was served or described as.
    #[error("manifest {digest}: served as {outer:?} but says it is {inner:?}")]
    MediaTypeConflict {
        /// The manifest's digest.
        digest: Digest,
        /// Media type from the descriptor or Content-Type.
        outer: String,
        /// Media type in the document.
        inner: String,
    },
    /// A layer of a media type that is not a filesystem tar.
    #[error("manifest {digest}: layer {layer} has unsupported media type {media_type:?}")]
    UnknownLayerType {
        /// The manifest's digest.
        digest: Digest,
        /// The layer's digest.
        layer: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A config of a media type that is not an image config.
    #[error("manifest {digest}: config {config} has unsupported media type {media_type:?}")]
    UnknownConfigType {
        /// The manifest's digest.
        digest: Digest,
        /// The config's digest.
        config: Digest,
        /// Its media type.
        media_type: String,
    },
    /// No manifest in an index is for the wanted platform.
    #[error("index {digest} has no manifest for {wanted} (it has: {available})")]
    NoMatchingPlatform {
        /// The index's digest.
        digest: Digest,
        /// The platform asked for.
        wanted: String,
        /// The platforms it offers, comma separated.
        available: String,
    },
}

impl ManifestError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Reads the `mediaType` field of a JSON document, if it has one (used when a server gives no usable
/// Content-Type).
pub fn embedded_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

/// Parses `bytes` (already checked against `digest`) as a manifest of `media_type`, and checks that every
/// layer and the config are of types we convert.
pub fn parse(digest: &Digest, media_type: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let json_error = |source| ManifestError::Json {
        digest: *digest,
        media_type: media_type.to_owned(),
        source,
    };
    let kind = media::manifest_kind(media_type).ok_or_else(|| ManifestError::UnknownMediaType {
        digest: *digest,
        media_type: media_type.to_owned(),
    })?;
    let (version, embedded, manifest) = match kind {
        ManifestKind::Image => {
            let m: ImageManifest = serde_json::from_slice(bytes).map_err(json_error)?;
            check_image(digest, &m)?;
            (m.schema_version, m.media_type.clone(), Manifest::Image(m))
        }
        ManifestKind::Index => {
            let m: Index = serde_json::from_slice(bytes).map_err(json_error)?;
            (m.schema_version, m.media_type.clone(), Manifest::Index(m))
        }
    };
    if version != 2 {
        return Err(ManifestError::SchemaVersion {
            digest: *digest,
            version,
        });
    }
    if let Some(inner) = embedded
        && inner != media_type
    {
        return Err(ManifestError::MediaTypeConflict {
            digest: *digest,
            outer: media_type.to_owned(),
            inner,
        });
    }
    Ok(manifest)
}

fn check_image(digest: &Digest, m: &ImageManifest) -> Result<(), ManifestError> {
    if !media::is_image_config(&m.config.media_type) {
        return Err(ManifestError::UnknownConfigType {
            digest: *digest,
            config: m.config.digest,
            media_type: m.config.media_type.clone(),
        });
    }
    for layer in &m.layers {
        if media::layer_compression(&layer.media_type).is_none() {
            return Err(ManifestError::UnknownLayerType {
                digest: *digest,
                layer: layer.digest,
                media_type: layer.media_type.clone(),
            });
        }
    }
    Ok(())
}

impl Platform {
    /// The platform this program runs on, in Go's naming.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Whether a descriptor's platform satisfies this one (a wanted variant must match; none means any).
    pub fn matches(&self, offered: &Platform) -> bool {
        self.os == offered.os
            && self.architecture == offered.architecture
            && (self.variant.is_none() || self.variant == offered.variant)
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let ok = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(format!("platform {text:?} is not OS/ARCH[/VARIANT]")),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Index {
    /// The first image manifest for `platform` (in index order, as containerd and skopeo pick).
    pub fn select(&self, digest: &Digest, platform: &Platform) -> Result<&Descriptor, ManifestError> {
        self.manifests
            .iter()
            .find(|d| {
                media::manifest_kind(&d.media_type) == Some(ManifestKind::Image)
                    && d.platform.as_ref().is_some_and(|p| platform.matches(p))
            })
            .ok_or_else(|| ManifestError::NoMatchingPlatform {
                digest: *digest,
                wanted: platform.to_string(),
                available: self
                    .manifests
                    .iter()
                    .map(|d| {
                        d.platform
                            .as_ref()
                            .map_or_else(|| "none".to_owned(), Platform::to_string)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(layer_type: &str) -> Vec<u8> {
        let d = Digest::of(b"x");
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{d}","size":1}},
            "layers":[{{"mediaType":"{layer_type}","digest":"{d}","size":1}}],"extra":true}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG
        )
        .into_bytes()
    }

    #[test]
    fn image_manifests_parse_and_check_layer_types() {
        let bytes = manifest_json("application/vnd.oci.image.layer.v1.tar+gzip");
        let d = Digest::of(&bytes);
        let Manifest::Image(m) = parse(&d, media::OCI_MANIFEST, &bytes).unwrap() else {
            panic!("not an image")
        };
        assert_eq!(m.layers.len(), 1);
        let bytes = manifest_json("application/vnd.example.weird");
        assert!(matches!(
            parse(&d, media::OCI_MANIFEST, &bytes),
            Err(ManifestError::UnknownLayerType { .. })
        ));
    }

    #[test]
    fn unknown_or_conflicting_media_types_are_refused() {
        let bytes = manifest_json("application/vnd.oci.image.layer.v1.tar");
        let d = Digest::of(&bytes);
        assert!(matches!(
            parse(&d, "application/vnd.docker.distribution.manifest.v1+prettyjws", &bytes),
            Err(ManifestError::UnknownMediaType { .. })
        ));
        assert!(matches!(
            parse(&d, media::DOCKER_MANIFEST, &bytes),
            Err(ManifestError::MediaTypeConflict { .. })
        ));
        assert!(matches!(
            parse(&d, media::OCI_INDEX, b"[1,2"),
            Err(ManifestError::Json { .. })
        ));
        assert_eq!(embedded_media_type(&bytes).as_deref(), Some(media::OCI_MANIFEST));
    }

    #[test]
    fn index_selection_follows_the_platform() {
        let d = Digest::of(b"m");
        let entry = |arch: &str| Descriptor {
            media_type: media::OCI_MANIFEST.to_owned(),
            digest: d,
            size: 1,
            platform: Some(format!("linux/{arch}").parse().unwrap()),
            annotations: BTreeMap::new(),
        };
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![entry("arm64"), entry("amd64")],
            annotations: BTreeMap::new(),
        };
        let amd = "linux/amd64".parse().unwrap();
        assert_eq!(index.select(&d, &amd).unwrap().platform, Some(amd));
        let err = index.select(&d, &"linux/s390x".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("linux/arm64, linux/amd64"), "{err}");
        assert!("linux".parse::<Platform>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let d = Digest::of(&bytes);
            let _ = parse(&d, media::OCI_MANIFEST, &bytes);
            let _ = parse(&d, media::OCI_INDEX, &bytes);
        }
    }
}
