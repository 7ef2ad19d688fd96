//! Root hashes in the manifest: writing each converted layer's dm-verity root hash and tree parameters into
//! its layer descriptor's annotations (plus a build timestamp on the manifest), and reading them back.
//!
//! The annotated manifest keeps every other field of the original document, so config and layer digests are
//! unchanged: it is the same image under a new manifest digest. Both directions are pure functions over the
//! manifest bytes or the parsed manifest.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use verity_fuse::hash::Algorithm;
use verity_fuse::params::{HashType, VerityParams};

use super::Scheme;
use super::timestamp::BuildTimestamp;
use crate::convert::{LayerConversion, LayerFec};
use crate::oci::Digest;
use crate::oci::manifest::ImageManifest;
use crate::root_hash::RootHash;
use verity_fuse::ErrorClass;

/// The delivery-kit scheme's layer annotation with the root hash.
pub const DELIVERY_KIT_ROOT_HASH: &str = "io.deckhouse.delivery-kit.dm-verity-root-hash";
/// The delivery-kit scheme's manifest annotation with the build timestamp (seconds since the epoch).
pub const DELIVERY_KIT_BUILD_TIMESTAMP: &str = "io.deckhouse.delivery-kit.build-timestamp";

/// Default layer annotation carrying the root hash (hex).
pub const ROOT_HASH: &str = "org.veritylab.dm-verity.root-hash";
/// Layer annotation: the salt (hex, empty for none).
pub const SALT: &str = "org.veritylab.dm-verity.salt";
/// Layer annotation: the data block size in bytes.
pub const DATA_BLOCK_SIZE: &str = "org.veritylab.dm-verity.data-block-size";
/// Layer annotation: the hash block size in bytes.
pub const HASH_BLOCK_SIZE: &str = "org.veritylab.dm-verity.hash-block-size";
/// Layer annotation: the hash algorithm (`sha256`).
pub const HASH_ALGORITHM: &str = "org.veritylab.dm-verity.hash-algorithm";
/// Layer annotation: the hash type (`1` normal, `0` Chrome OS).
pub const HASH_TYPE: &str = "org.veritylab.dm-verity.hash-type";
/// Layer annotation: the number of data blocks the tree covers (the EROFS size / data block size).
pub const DATA_BLOCKS: &str = "org.veritylab.dm-verity.data-blocks";
/// Layer annotation: forward error correction parity roots per codeword, when the layer has parity.
pub const FEC_ROOTS: &str = "org.veritylab.dm-verity.fec-roots";
/// Layer annotation: the blocks the parity covers (data blocks, then the tree's), when the layer has parity.
pub const FEC_BLOCKS: &str = "org.veritylab.dm-verity.fec-blocks";
/// Manifest annotation: when the image was signed for verity (RFC 3339 UTC).
pub const BUILD_TIMESTAMP: &str = "org.veritylab.build-timestamp";

/// The annotation names a scheme uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnotationKeys {
    /// Layer annotation with the root hash.
    pub root_hash: String,
    /// Manifest annotation with the build timestamp.
    pub build_timestamp: String,
    /// Whether the timestamp is written as decimal seconds (delivery-kit) rather than RFC 3339.
    pub timestamp_in_seconds: bool,
}

impl AnnotationKeys {
    /// The keys of `scheme`, with the root-hash key replaced when `root_hash` is given.
    pub fn for_scheme(scheme: Scheme, root_hash: Option<&str>) -> Self {
        let (default_root, build_timestamp, timestamp_in_seconds) = match scheme {
            Scheme::Cosign => (ROOT_HASH, BUILD_TIMESTAMP, false),
            Scheme::DeliveryKit => (DELIVERY_KIT_ROOT_HASH, DELIVERY_KIT_BUILD_TIMESTAMP, true),
        };
        Self {
            root_hash: root_hash.unwrap_or(default_root).to_owned(),
            build_timestamp: build_timestamp.to_owned(),
            timestamp_in_seconds,
        }
    }
}

/// The dm-verity facts of one layer as its descriptor's annotations state them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerVerity {
    /// The layer blob's digest.
    pub layer: Digest,
    /// The root hash.
    pub root_hash: RootHash,
    /// The hash algorithm.
    pub algorithm: String,
    /// Bytes per data block.
    pub data_block_size: u32,
    /// Bytes per hash block.
    pub hash_block_size: u32,
    /// Hash type (1 normal, 0 Chrome OS).
    pub hash_type: u32,
    /// The salt (hex).
    pub salt: String,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// The forward error correction the layer's parity was made with, when the descriptor states one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fec: Option<LayerFec>,
}

impl LayerVerity {
    /// The tree parameters, as `verity_fuse` takes them (checked when the annotations were read).
    pub fn params(&self) -> VerityParams {
        VerityParams {
            hash_type: HashType::from_number(self.hash_type).unwrap_or(HashType::Normal),
            algorithm: Algorithm::ALL
                .into_iter()
                .find(|a| a.name() == self.algorithm)
                .unwrap_or(Algorithm::Sha256),
            data_block_size: self.data_block_size,
            hash_block_size: self.hash_block_size,
            data_blocks: self.data_blocks,
            salt: verity_fuse::hex::decode("salt", &self.salt).unwrap_or_default(),
        }
    }
}

/// Why the annotations of a layer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum AnnotationError {
    /// The annotation is absent.
    #[error("layer {layer} has no {key} annotation")]
    Missing {
        /// The layer.
        layer: Digest,
        /// The annotation.
        key: String,
    },
    /// The annotation's value is not usable.
    #[error("layer {layer}: annotation {key}={value:?}: {reason}")]
    Malformed {
        /// The layer.
        layer: Digest,
        /// The annotation.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

impl AnnotationError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Missing { .. } => ErrorClass::NotTrusted,
            Self::Malformed { .. } => ErrorClass::BadInput,
        }
    }
}

/// Why a manifest cannot be annotated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnotateError {
    /// The manifest is not a JSON object with a `layers` array.
    #[error("the manifest is not a JSON object with a layers array")]
    NotAManifest,
    /// The conversions do not match the manifest's layers.
    #[error("layer {index}: the manifest has {manifest}, the conversion is of {converted}")]
    LayerMismatch {
        /// Position of the layer.
        index: usize,
        /// Digest in the manifest.
        manifest: String,
        /// Digest converted.
        converted: Digest,
    },
    /// Not as many conversions as layers.
    #[error("the manifest has {manifest} layers but {converted} conversions were given")]
    LayerCount {
        /// Layers in the manifest.
        manifest: usize,
        /// Conversions given.
        converted: usize,
    },
}

impl AnnotateError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// A copy of `manifest` (JSON bytes) whose layer descriptors carry the root hash and tree parameters of
/// `layers` (in order) and whose annotations carry `built`. Every other field is kept.
pub fn annotate(
    manifest: &[u8],
    layers: &[LayerConversion],
    keys: &AnnotationKeys,
    built: BuildTimestamp,
) -> Result<Vec<u8>, AnnotateError> {
    let mut doc: Value = serde_json::from_slice(manifest).map_err(|_| AnnotateError::NotAManifest)?;
    let descriptors = doc
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or(AnnotateError::NotAManifest)?;
    if descriptors.len() != layers.len() {
        return Err(AnnotateError::LayerCount {
            manifest: descriptors.len(),
            converted: layers.len(),
        });
    }
    for (index, (descriptor, conversion)) in descriptors.iter_mut().zip(layers).enumerate() {
        let digest = descriptor.get("digest").and_then(Value::as_str).unwrap_or_default();
        if digest != conversion.layer.to_string() {
            return Err(AnnotateError::LayerMismatch {
                index,
                manifest: digest.to_owned(),
                converted: conversion.layer,
            });
        }
        let block = crate::convert::verity::BLOCK;
        let values = [
            (keys.root_hash.as_str(), conversion.roothash.to_string()),
            (HASH_ALGORITHM, conversion.hash.clone()),
            (DATA_BLOCK_SIZE, block.to_string()),
            (HASH_BLOCK_SIZE, block.to_string()),
            (HASH_TYPE, "1".to_owned()),
            (SALT, conversion.salt.clone()),
            (DATA_BLOCKS, conversion.data_blocks.to_string()),
        ];
        set_annotations(descriptor, &values).ok_or(AnnotateError::NotAManifest)?;
        if let Some(fec) = conversion.fec {
            let values = [(FEC_ROOTS, fec.roots.to_string()), (FEC_BLOCKS, fec.blocks.to_string())];
            set_annotations(descriptor, &values).ok_or(AnnotateError::NotAManifest)?;
        }
    }
    let stamp = if keys.timestamp_in_seconds {
        built.0.to_string()
    } else {
        built.rfc3339()
    };
    set_annotations(&mut doc, &[(keys.build_timestamp.as_str(), stamp)]).ok_or(AnnotateError::NotAManifest)?;
    Ok(serde_json::to_vec(&doc).unwrap_or_default())
}

/// Sets string annotations on a JSON object (creating its `annotations` map); `None` if it is not an object.
pub(super) fn set_annotations(object: &mut Value, values: &[(&str, String)]) -> Option<()> {
    let map = object.as_object_mut()?;
    let annotations = map
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    let annotations = annotations.as_object_mut()?;
    for (key, value) in values {
        annotations.insert((*key).to_owned(), Value::String(value.clone()));
    }
    Some(())
}

/// Reads the root hash and tree parameters of every layer; the first problem of each layer is reported.
pub fn read_layers(manifest: &ImageManifest, keys: &AnnotationKeys) -> Vec<Result<LayerVerity, AnnotationError>> {
    manifest
        .layers
        .iter()
        .map(|d| read_layer(d.digest, &d.annotations, keys))
        .collect()
}

fn read_layer(
    layer: Digest,
    annotations: &BTreeMap<String, String>,
    keys: &AnnotationKeys,
) -> Result<LayerVerity, AnnotationError> {
    let get = |key: &str| {
        annotations.get(key).ok_or_else(|| AnnotationError::Missing {
            layer,
            key: key.to_owned(),
        })
    };
    let malformed = |key: &str, value: &str, reason: &str| AnnotationError::Malformed {
        layer,
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let root_hash = get(&keys.root_hash)?;
    let algorithm = get(HASH_ALGORITHM)?;
    let Some(alg) = Algorithm::ALL.into_iter().find(|a| a.name() == algorithm) else {
        return Err(malformed(HASH_ALGORITHM, algorithm, "unknown hash algorithm"));
    };
    let digest_len = alg.digest_size();
    let parsed = match root_hash.parse::<RootHash>() {
        Ok(parsed) if parsed.as_bytes().len() == digest_len => parsed,
        _ => {
            let reason = format!("not {} lower-case hex digits", 2 * digest_len);
            return Err(malformed(&keys.root_hash, root_hash, &reason));
        }
    };
    let number = |key: &str| -> Result<u64, AnnotationError> {
        let value = get(key)?;
        value
            .parse::<u64>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| malformed(key, value, "not a decimal number"))
    };
    let block = |key: &str| -> Result<u32, AnnotationError> {
        let n = number(key)?;
        u32::try_from(n)
            .ok()
            .filter(|n| n.is_power_of_two() && (512..=65536).contains(n))
            .ok_or_else(|| malformed(key, &n.to_string(), "not a power of two from 512 to 65536"))
    };
    let data_block_size = block(DATA_BLOCK_SIZE)?;
    let hash_block_size = block(HASH_BLOCK_SIZE)?;
    let hash_type = number(HASH_TYPE)?;
    let hash_type = u32::try_from(hash_type)
        .ok()
        .filter(|t| HashType::from_number(*t).is_some())
        .ok_or_else(|| malformed(HASH_TYPE, &hash_type.to_string(), "not 0 or 1"))?;
    let salt = get(SALT)?;
    if verity_fuse::hex::decode("salt", salt).is_err() || has_upper(salt) || salt.len() > 512 {
        return Err(malformed(SALT, salt, "not lower-case hex of at most 256 bytes"));
    }
    let data_blocks = number(DATA_BLOCKS)?;
    if data_blocks == 0 {
        return Err(malformed(DATA_BLOCKS, "0", "a tree covers at least one block"));
    }
    let fec = match (
        annotations.contains_key(FEC_ROOTS),
        annotations.contains_key(FEC_BLOCKS),
    ) {
        (false, false) => None,
        _ => {
            let roots = number(FEC_ROOTS)?;
            let (min, max) = (verity_fuse::fec::MIN_ROOTS, verity_fuse::fec::MAX_ROOTS);
            let roots = u32::try_from(roots)
                .ok()
                .filter(|r| (min..=max).contains(r))
                .ok_or_else(|| malformed(FEC_ROOTS, &roots.to_string(), &format!("not from {min} to {max}")))?;
            let blocks = number(FEC_BLOCKS)?;
            if blocks <= data_blocks {
                let reason = "parity covers the data blocks and the tree's";
                return Err(malformed(FEC_BLOCKS, &blocks.to_string(), reason));
            }
            Some(LayerFec { roots, blocks })
        }
    };
    Ok(LayerVerity {
        layer,
        root_hash: parsed,
        algorithm: algorithm.clone(),
        data_block_size,
        hash_block_size,
        hash_type,
        salt: salt.clone(),
        data_blocks,
        fec,
    })
}

fn has_upper(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_uppercase())
}

/// The build timestamp annotation of a manifest: `None` when absent, `Err(value)` when unparsable.
pub fn build_timestamp(manifest: &ImageManifest, keys: &AnnotationKeys) -> Option<Result<BuildTimestamp, String>> {
    let value = manifest.annotations.get(&keys.build_timestamp)?;
    let parsed = if keys.timestamp_in_seconds {
        value
            .parse::<u64>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .map(BuildTimestamp)
    } else {
        BuildTimestamp::parse(value).ok().filter(|_| value.contains('T'))
    };
    Some(parsed.ok_or_else(|| value.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::VerityLayout;
    use crate::oci::manifest::{self, Manifest};
    use crate::oci::media;

    fn conversion(layer: Digest) -> LayerConversion {
        LayerConversion {
            layer,
            layout: VerityLayout::Containerd,
            roothash: "ab".repeat(32).parse().unwrap(),
            hashoffset: 8192,
            erofs_size: 8192,
            data_blocks: 2,
            hash: "sha256".to_owned(),
            salt: "00".repeat(32),
            dir: "/x".into(),
            fec: None,
        }
    }

    fn manifest_bytes(layers: &[Digest]) -> Vec<u8> {
        let layers: Vec<Value> = layers
            .iter()
            .map(|d| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": 3}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": Digest::of(b"c").to_string(), "size": 1},
            "layers": layers,
            "subject": {"kept": true},
        }))
        .unwrap()
    }

    #[test]
    fn annotations_round_trip_and_keep_digests_and_other_fields() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let original = manifest_bytes(&[a, b]);
        let keys = AnnotationKeys::for_scheme(Scheme::Cosign, None);
        let bytes = annotate(&original, &[conversion(a), conversion(b)], &keys, BuildTimestamp(1_000)).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["subject"]["kept"], true);
        let digest = Digest::of(&bytes);
        let Manifest::Image(image) = manifest::parse(&digest, media::OCI_MANIFEST, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(image.layers[1].digest, b);
        assert_eq!(image.config.digest, Digest::of(b"c"));
        let layers: Vec<LayerVerity> = read_layers(&image, &keys).into_iter().map(Result::unwrap).collect();
        assert_eq!(layers[0].root_hash.to_string(), "ab".repeat(32));
        assert_eq!(layers[0].params().data_blocks, 2);
        assert_eq!(layers[0].params().salt, vec![0; 32]);
        assert_eq!(build_timestamp(&image, &keys), Some(Ok(BuildTimestamp(1_000))));
        let custom = AnnotationKeys::for_scheme(Scheme::Cosign, Some("example.com/root"));
        assert!(matches!(
            &read_layers(&image, &custom)[0],
            Err(AnnotationError::Missing { key, .. }) if key == "example.com/root"
        ));
    }

    #[test]
    fn fec_parameters_travel_in_the_annotations_and_bad_ones_name_the_layer() {
        let a = Digest::of(b"a");
        let keys = AnnotationKeys::for_scheme(Scheme::Cosign, None);
        let mut with_fec = conversion(a);
        with_fec.fec = Some(LayerFec { roots: 2, blocks: 3 });
        let bytes = annotate(&manifest_bytes(&[a]), &[with_fec], &keys, BuildTimestamp(0)).unwrap();
        let Manifest::Image(image) = manifest::parse(&Digest::of(&bytes), media::OCI_MANIFEST, &bytes).unwrap() else {
            panic!()
        };
        let layer = read_layers(&image, &keys).remove(0).unwrap();
        assert_eq!(layer.fec, Some(LayerFec { roots: 2, blocks: 3 }));
        let without = annotate(&manifest_bytes(&[a]), &[conversion(a)], &keys, BuildTimestamp(0)).unwrap();
        assert!(
            !String::from_utf8(without).unwrap().contains("fec"),
            "no parity, no FEC annotations"
        );
        for (roots, blocks, key) in [("25", "3", FEC_ROOTS), ("1", "3", FEC_ROOTS), ("2", "2", FEC_BLOCKS)] {
            let mut annotations = image.layers[0].annotations.clone();
            annotations.insert(FEC_ROOTS.to_owned(), roots.to_owned());
            annotations.insert(FEC_BLOCKS.to_owned(), blocks.to_owned());
            let error = read_layer(a, &annotations, &keys).unwrap_err();
            assert!(
                matches!(&error, AnnotationError::Malformed { layer, key: k, .. } if *layer == a && k == key),
                "{error}"
            );
        }
        let mut annotations = image.layers[0].annotations.clone();
        annotations.remove(FEC_BLOCKS);
        assert!(matches!(
            read_layer(a, &annotations, &keys),
            Err(AnnotationError::Missing { key, .. }) if key == FEC_BLOCKS
        ));
    }

    #[test]
    fn conversions_must_match_the_layers() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let keys = AnnotationKeys::for_scheme(Scheme::Cosign, None);
        let original = manifest_bytes(&[a, b]);
        assert!(matches!(
            annotate(&original, &[conversion(a)], &keys, BuildTimestamp(0)),
            Err(AnnotateError::LayerCount { .. })
        ));
        assert!(matches!(
            annotate(&original, &[conversion(b), conversion(a)], &keys, BuildTimestamp(0)),
            Err(AnnotateError::LayerMismatch { index: 0, .. })
        ));
        assert!(matches!(
            annotate(b"[]", &[], &keys, BuildTimestamp(0)),
            Err(AnnotateError::NotAManifest)
        ));
    }

    proptest::proptest! {
        #[test]
        fn reading_arbitrary_annotations_never_panics(
            values in proptest::collection::vec("[0-9a-fA-F]{0,70}|[0-9]{0,25}|sha[0-9]{1,3}|", 7),
        ) {
            let keys = AnnotationKeys::for_scheme(Scheme::Cosign, None);
            let names = [ROOT_HASH, HASH_ALGORITHM, DATA_BLOCK_SIZE, HASH_BLOCK_SIZE, HASH_TYPE, SALT, DATA_BLOCKS];
            let annotations: BTreeMap<String, String> =
                names.iter().map(|n| n.to_string()).zip(values.iter().cloned()).collect();
            let layer = read_layer(Digest::of(b"l"), &annotations, &keys);
            if let Ok(verity) = layer {
                let params = verity.params();
                proptest::prop_assert!(params.data_blocks > 0);
                proptest::prop_assert!(params.data_block_size.is_power_of_two());
            }
        }
    }
}
