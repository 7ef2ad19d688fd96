//! Verifying a stored image against keys and a [`Policy`], producing either a [`VerifiedImage`] (the
//! per-layer root hashes and tree parameters the mount pipeline may trust) or the [`Report`] of every check
//! with typed [`SignatureFinding`]s.
//!
//! Checks, in order: the reference (by digest when the policy asks: tag TOCTOU), the policy rule and keys,
//! the manifest, the signature (cosign: over the exact stored payload bytes, which must name this manifest
//! digest and repository; delivery-kit: the embedded signature over its payload), the root-hash annotation
//! of every layer, the build timestamp against the rule's minimum (rollback), each local tree's root hash
//! against the signed one, each local layer's data and tree re-hashed top-down against the signed root hash
//! (in parallel across layers, when asked: [`DataCheck`]), and that every layer comes from this one signed
//! manifest (mix-and-match). Nothing is trusted unless every check passes or is skipped by policy.
//!
//! Trust is carried as types: a [`VerifiedImage`] (private fields, made only here) names the exact manifest
//! digest and ordered layers that were verified, and each layer's [`SignedRootHash`] exists only when the
//! image's own signature verified with a trusted key. The mount takes that value and never looks the image up
//! again by name; the `hardened` profile accepts nothing but signed root hashes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::annotate::{self, AnnotationError, AnnotationKeys, LayerVerity};
use super::cosign::{self, SignatureError};
use super::image::{SignError, read_image};
use super::kernel_annotation::{self, LayerSignature, LayerSignatureError};
use super::keys::PublicKey;
use super::policy::{Policy, Requirements};
use super::timestamp::BuildTimestamp;
use super::{ImageName, Scheme, delivery_kit, remote};
use crate::convert::{self, VerityLayout};
use crate::oci::Digest;
use crate::oci::client::ClientOptions;
use crate::oci::manifest::{Descriptor, ImageManifest};
use crate::oci::reference::ReferenceError;
use crate::root_hash::RootHash;
use crate::store::{Store, StoreError};
use verity_fuse::ErrorClass;
use verity_fuse::error::BlockRef;
use verity_fuse::source::FileSource;
use verity_fuse::{Geometry, Placement};

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The policy ([`Policy::default`] without a file).
    pub policy: Policy,
    /// Keys trusted in addition to the policy's (`--key`).
    pub keys: Vec<PublicKey>,
    /// The signature scheme.
    pub scheme: Scheme,
    /// The root-hash annotation key, when not the scheme's default.
    pub root_hash_key: Option<String>,
    /// Fetch cosign signatures missing from the store from the image's registry with these settings.
    pub registry: Option<ClientOptions>,
    /// The namespace of the pod the image is for, which decides the rules selected by namespace; `None`
    /// (not known) applies every rule that could apply in some namespace ([`Policy::applied`]).
    pub namespace: Option<String>,
    /// Whether to compare the local conversions (records, then data when [`Self::data`] asks) with the signed
    /// values; `false` for a caller that re-verifies the layers at rest against the signed root hashes itself.
    pub local: bool,
    /// Whether to re-hash each local layer's data and tree against the signed root hash.
    pub data: DataCheck,
}

/// Whether [`verify_image`] re-hashes the local layers (data and tree, top-down, as `veritysetup verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCheck {
    /// Hash every converted layer, at most this many layers at a time.
    Hash {
        /// Layers hashed at the same time (at least 1).
        threads: usize,
    },
    /// Skip it, for this reason (said in the report).
    Skip(&'static str),
}

impl DataCheck {
    /// Hash with one thread per core, at most 4.
    pub fn parallel() -> Self {
        DataCheck::Hash {
            threads: verity_fuse::tree::default_threads().clamp(1, 4),
        }
    }
}

impl VerifyOptions {
    /// Options for `keys` under `policy`, with the policy's scheme and annotation key (else cosign and the
    /// default key) and no registry access.
    pub fn new(policy: Policy, keys: Vec<PublicKey>) -> Self {
        Self {
            scheme: policy.scheme.unwrap_or(Scheme::Cosign),
            root_hash_key: policy.root_hash_annotation.clone(),
            policy,
            keys,
            registry: None,
            namespace: None,
            local: true,
            data: DataCheck::Skip("not asked for (a mount's verified devices check every block they read)"),
        }
    }
}

/// Which check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    /// Tag or digest reference.
    Reference,
    /// The applied policy rules and their key sets.
    Policy,
    /// The stored manifest.
    Manifest,
    /// The signature.
    Signature,
    /// Root-hash annotations on every layer.
    RootHashes,
    /// The build timestamp and rollback floor.
    BuildTimestamp,
    /// Local trees against the signed root hashes.
    LocalTrees,
    /// Local layer data and trees re-hashed against the signed root hashes.
    LocalData,
    /// All layers from one signed manifest.
    SingleSignedManifest,
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckName::Reference => "reference",
            CheckName::Policy => "policy",
            CheckName::Manifest => "manifest",
            CheckName::Signature => "signature",
            CheckName::RootHashes => "root-hashes",
            CheckName::BuildTimestamp => "build-timestamp",
            CheckName::LocalTrees => "local-trees",
            CheckName::LocalData => "local-data",
            CheckName::SingleSignedManifest => "single-signed-manifest",
        })
    }
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It held.
    Passed,
    /// It failed: see the findings.
    Failed,
    /// It did not apply (the detail says why).
    Skipped,
}

/// Something wrong with the image, typed so scenarios can match on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SignatureFinding {
    /// Named by tag while the policy wants a digest.
    #[error("{name} is a tag reference; the policy requires pulling by digest (tag TOCTOU)")]
    TagReference {
        /// The image name.
        name: String,
    },
    /// A signature is required and no key is trusted.
    #[error("no trusted key: give --key or list trusted_keys in the policy")]
    NoTrustedKeys,
    /// The policy refuses the image whatever it carries.
    #[error("the policy refuses this image ({rule})")]
    Refused {
        /// The rule that refuses it.
        rule: String,
    },
    /// The stored manifest cannot be used.
    #[error("the manifest is unusable: {reason}")]
    ManifestUnusable {
        /// Why.
        reason: String,
    },
    /// Fewer distinct keys of one applied rule signed the manifest than that rule needs (N of M).
    #[error("signed by {verified} distinct key(s) trusted by rule {rule:?}, which needs {needed}")]
    TooFewSigners {
        /// The rule whose key set is not met ([`crate::sign::Rule::label`]).
        rule: String,
        /// Distinct trusted keys whose signature verified.
        verified: usize,
        /// How many the rule needs.
        needed: usize,
    },
    /// No signature where the scheme puts it (stripped, or never signed).
    #[error("no signature: {expected} not found")]
    SignatureMissing {
        /// Where it was looked for.
        expected: String,
    },
    /// The signature could not be fetched from the registry.
    #[error("fetching the signature from the registry: {reason}")]
    SignatureFetch {
        /// Why.
        reason: String,
    },
    /// The signature is malformed or made with an untrusted key.
    #[error("{error}")]
    BadSignature {
        /// The payload it signs (cosign), if any.
        payload: Option<Digest>,
        /// What is wrong.
        error: SignatureError,
    },
    /// The payload does not parse as simple signing.
    #[error("the signed payload is malformed: {reason}")]
    PayloadMalformed {
        /// Why.
        reason: String,
    },
    /// The payload's type is not an image signature.
    #[error("the signed payload's type is {found:?}, not {:?}", cosign::PAYLOAD_TYPE)]
    PayloadType {
        /// The type found.
        found: String,
    },
    /// The payload signs another manifest.
    #[error("the signature is for manifest {signed}, but the image used is {used}")]
    PayloadDigest {
        /// The digest in the payload.
        signed: String,
        /// The manifest being verified.
        used: Digest,
    },
    /// The payload signs another repository.
    #[error("the signature is for repository {signed:?}, but the image is in {expected:?}")]
    PayloadIdentity {
        /// The repository in the payload.
        signed: String,
        /// The image's repository.
        expected: String,
    },
    /// A layer's root-hash annotations are missing or malformed.
    #[error(transparent)]
    Annotation(AnnotationError),
    /// The manifest has no build timestamp.
    #[error("the manifest has no {key} annotation")]
    TimestampMissing {
        /// The annotation.
        key: String,
    },
    /// The build timestamp does not parse.
    #[error("the manifest's {key}={value:?} is not a timestamp")]
    TimestampMalformed {
        /// The annotation.
        key: String,
        /// Its value.
        value: String,
    },
    /// Built before the policy's floor.
    #[error("built {built}, before the policy's minimum {minimum} for this repository (rollback)")]
    Rollback {
        /// The image's build timestamp.
        built: BuildTimestamp,
        /// The floor.
        minimum: BuildTimestamp,
    },
    /// A local tree's root hash differs from the signed one.
    #[error("layer {layer}: local {layout} tree has root hash {local}, the signed manifest says {signed}")]
    RootHashMismatch {
        /// The layer.
        layer: Digest,
        /// The layout of the local conversion.
        layout: VerityLayout,
        /// The signed root hash.
        signed: RootHash,
        /// The local one (boxed: a finding is returned as an error and stays small).
        local: Box<RootHash>,
    },
    /// A local tree was built with other parameters than the signed ones.
    #[error("layer {layer}: local {layout} tree has {field} {local}, the signed manifest says {signed}")]
    ParamsMismatch {
        /// The layer.
        layer: Digest,
        /// The layout of the local conversion.
        layout: VerityLayout,
        /// Which parameter.
        field: String,
        /// The signed value.
        signed: String,
        /// The local value.
        local: String,
    },
    /// A local layer's data or tree does not hash to the signed root hash.
    #[error("layer {layer}: local {layout} layer: {error}")]
    LayerData {
        /// The layer.
        layer: Digest,
        /// The layout of the local conversion.
        layout: VerityLayout,
        /// The block that changed, when the check got that far.
        block: Option<BlockRef>,
        /// What failed.
        error: String,
    },
    /// The manifest is unsigned but its layers come from other signed manifests.
    #[error("layers assembled from other signed manifests ({}), not one signed manifest (mix-and-match)", sources.iter().map(|s| format!("{} from {}", s.layer, s.manifest)).collect::<Vec<_>>().join(", "))]
    MixAndMatch {
        /// Where each layer is signed.
        sources: Vec<LayerSource>,
    },
}

impl SignatureFinding {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::ManifestUnusable { .. }
            | Self::PayloadMalformed { .. }
            | Self::PayloadType { .. }
            | Self::TimestampMalformed { .. } => ErrorClass::BadInput,
            Self::SignatureFetch { .. } => ErrorClass::Io,
            Self::Annotation(e) => e.class(),
            Self::RootHashMismatch { .. } | Self::ParamsMismatch { .. } | Self::LayerData { .. } => {
                ErrorClass::VerificationFailed
            }
            Self::TagReference { .. }
            | Self::NoTrustedKeys
            | Self::Refused { .. }
            | Self::SignatureMissing { .. }
            | Self::TooFewSigners { .. }
            | Self::BadSignature { .. }
            | Self::PayloadDigest { .. }
            | Self::PayloadIdentity { .. }
            | Self::TimestampMissing { .. }
            | Self::Rollback { .. }
            | Self::MixAndMatch { .. } => ErrorClass::NotTrusted,
        }
    }
}

/// A layer found in another signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSource {
    /// The layer.
    pub layer: Digest,
    /// The signed manifest carrying it with the same root hash.
    pub manifest: Digest,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Which check.
    pub check: CheckName,
    /// How it ended.
    pub outcome: Outcome,
    /// What was checked, in words.
    pub detail: String,
    /// What failed.
    pub findings: Vec<SignatureFinding>,
}

/// Every check of one verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The image name.
    pub image: String,
    /// Its manifest digest, once read.
    pub manifest: Option<Digest>,
    /// The scheme.
    pub scheme: Scheme,
    /// Every applied policy rule (empty: none applied, the default decided).
    pub rule: Vec<String>,
    /// Whether the image is trusted.
    pub verified: bool,
    /// Whether the image's own signature verified with a trusted key (so its root hashes are signed ones).
    pub signed: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, check: CheckName, outcome: Outcome, detail: impl Into<String>, findings: Vec<SignatureFinding>) {
        self.checks.push(Check {
            check,
            outcome,
            detail: detail.into(),
            findings,
        });
    }

    fn pass(&mut self, check: CheckName, detail: impl Into<String>) {
        self.push(check, Outcome::Passed, detail, Vec::new());
    }

    fn fail(&mut self, check: CheckName, detail: impl Into<String>, findings: Vec<SignatureFinding>) {
        self.push(check, Outcome::Failed, detail, findings);
    }

    fn skip(&mut self, check: CheckName, detail: impl Into<String>) {
        self.push(check, Outcome::Skipped, detail, Vec::new());
    }

    /// Every finding, in check order.
    pub fn findings(&self) -> impl Iterator<Item = &SignatureFinding> {
        self.checks.iter().flat_map(|c| &c.findings)
    }

    /// Whether a check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.outcome == Outcome::Failed)
    }
}

/// A root hash that came from a manifest whose signature verified with a trusted key. Only the verifier makes
/// one (no public constructor, no `Deserialize`): a record or an annotation cannot become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SignedRootHash(RootHash);

impl SignedRootHash {
    /// The root hash.
    pub fn root_hash(&self) -> &RootHash {
        &self.0
    }
}

impl fmt::Display for SignedRootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A layer of a verified image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedLayer {
    descriptor: Descriptor,
    verity: LayerVerity,
    signed_root_hash: Option<SignedRootHash>,
    converted: Vec<VerityLayout>,
    /// The layer's root-hash signature annotation as the verified manifest has it.
    #[serde(skip)]
    root_hash_signature: Option<String>,
}

impl VerifiedLayer {
    /// The layer's descriptor in the verified manifest (without annotations).
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The layer digest.
    pub fn digest(&self) -> Digest {
        self.descriptor.digest
    }

    /// The kernel's root-hash signature the verified manifest carries for this layer, checked
    /// (`kernel_annotation::read_signature`); `None` when it carries none.
    pub fn root_hash_signature(&self) -> Result<Option<LayerSignature>, LayerSignatureError> {
        self.root_hash_signature
            .as_deref()
            .map(|value| kernel_annotation::read_signature(self.digest(), value, &self.verity.root_hash))
            .transpose()
    }

    /// The DER bytes of the kernel root-hash signature the verified manifest carries for this layer, decoded
    /// but not checked (`kernel_annotation::decode_signature`): what the `enforced` profile hands to the
    /// kernel's check, or its emulation, when the layer's device opens. `None` when it carries none.
    pub fn root_hash_signature_der(&self) -> Result<Option<Vec<u8>>, LayerSignatureError> {
        self.root_hash_signature
            .as_deref()
            .map(|value| kernel_annotation::decode_signature(self.digest(), value))
            .transpose()
    }

    /// Root hash and tree parameters as the manifest states them ([`LayerVerity::params`] gives
    /// `verity_fuse::VerityParams`); signed only when [`Self::signed_root_hash`] is `Some`.
    pub fn verity(&self) -> &LayerVerity {
        &self.verity
    }

    /// The root hash, when the image's own signature verified with a trusted key.
    pub fn signed_root_hash(&self) -> Option<&SignedRootHash> {
        self.signed_root_hash.as_ref()
    }

    /// Local conversions whose tree matches (empty when the layer is not converted yet).
    pub fn converted(&self) -> &[VerityLayout] {
        &self.converted
    }
}

/// The key and payload a signature was checked with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedBy {
    /// The fingerprint of the key that verified.
    pub key: String,
    /// The cosign payload's digest (`None` for delivery-kit).
    pub payload: Option<Digest>,
}

/// An image that passed verification: exactly this manifest digest and these layers, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedImage {
    name: String,
    repository: String,
    manifest: Descriptor,
    config: Descriptor,
    scheme: Scheme,
    signed_by: Option<SignedBy>,
    built: Option<BuildTimestamp>,
    layers: Vec<VerifiedLayer>,
    #[serde(skip)]
    report: Report,
}

impl VerifiedImage {
    /// The name it was verified under (for messages: the mount never looks it up again).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its repository.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The manifest that was verified: mount exactly this digest's layers.
    pub fn manifest(&self) -> &Descriptor {
        &self.manifest
    }

    /// The config's descriptor.
    pub fn config(&self) -> &Descriptor {
        &self.config
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The signature that verified, or `None` when the policy let an image through without its own signature.
    pub fn signed_by(&self) -> Option<&SignedBy> {
        self.signed_by.as_ref()
    }

    /// The build timestamp, when the manifest has one.
    pub fn built(&self) -> Option<BuildTimestamp> {
        self.built
    }

    /// The layers, base first.
    pub fn layers(&self) -> &[VerifiedLayer] {
        &self.layers
    }

    /// Every check.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Each layer with its signed root hash, base first; `None` unless the image's own signature verified.
    pub fn signed_layers(&self) -> Option<Vec<(&VerifiedLayer, &SignedRootHash)>> {
        self.signed_by.as_ref()?;
        self.layers
            .iter()
            .map(|l| l.signed_root_hash.as_ref().map(|root| (l, root)))
            .collect()
    }
}

/// A verification that did not produce a trusted image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A check failed: nothing is trusted. The report lists every check.
    #[error("{} failed: {}", report.image, first_finding(report))]
    Rejected {
        /// The report.
        report: Box<Report>,
    },
    /// The name does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The store failed or does not hold the image.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VerifyError {
    /// What kind of failure this is: for a rejection, verification failed when any finding says so, else the
    /// class of the first finding.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Rejected { report } => {
                let classes: Vec<ErrorClass> = report.findings().map(SignatureFinding::class).collect();
                if classes.contains(&ErrorClass::VerificationFailed) {
                    ErrorClass::VerificationFailed
                } else {
                    classes.first().copied().unwrap_or(ErrorClass::NotTrusted)
                }
            }
            Self::Reference(e) => e.class(),
            Self::Store(e) => e.class(),
        }
    }
}

fn first_finding(report: &Report) -> String {
    let failed = report.checks.iter().filter(|c| c.outcome == Outcome::Failed).count();
    let first = report
        .findings()
        .next()
        .map_or_else(|| "a check failed".to_owned(), ToString::to_string);
    if failed > 1 {
        format!("{first} (and {} more failed checks)", failed - 1)
    } else {
        first
    }
}

/// Verifies the stored image `name` (see the module docs).
pub fn verify_image(store: &Store, name: &str, options: &VerifyOptions) -> Result<VerifiedImage, VerifyError> {
    let image_name = ImageName::parse(name)?;
    let requirements = options
        .policy
        .requirements(&image_name.repository, options.namespace.as_deref(), &options.keys);
    let mut report = Report {
        image: name.to_owned(),
        manifest: None,
        scheme: options.scheme,
        rule: requirements.rules.clone(),
        verified: false,
        signed: false,
        checks: Vec::new(),
    };
    let reject = |mut report: Report| {
        report.verified = false;
        Err(VerifyError::Rejected {
            report: Box::new(report),
        })
    };

    match (image_name.digest, requirements.require_pull_by_digest) {
        (Some(d), _) => report.pass(CheckName::Reference, format!("named by digest {d}")),
        (None, true) => report.fail(
            CheckName::Reference,
            "the policy requires a digest reference",
            vec![SignatureFinding::TagReference { name: name.to_owned() }],
        ),
        (None, false) => report.pass(
            CheckName::Reference,
            "named by tag (resolved once at pull; the stored digest is what is verified)",
        ),
    }

    let rule = match requirements.rules.as_slice() {
        [] => "no rule matched: the default".to_owned(),
        [one] => format!("rule {one:?}"),
        many => format!("rules {many:?}"),
    };
    if requirements.reject {
        report.fail(
            CheckName::Policy,
            rule.clone(),
            vec![SignatureFinding::Refused { rule }],
        );
    } else if requirements.key_sets.iter().any(|set| set.keys.is_empty()) {
        report.fail(CheckName::Policy, rule, vec![SignatureFinding::NoTrustedKeys]);
    } else {
        let detail = if requirements.require_signature {
            requirements
                .key_sets
                .iter()
                .map(|set| {
                    let keys: Vec<&str> = set.keys.iter().map(|k| k.fingerprint.as_str()).collect();
                    format!("{} of keys {} ({})", set.threshold, keys.join(", "), set.rule)
                })
                .collect::<Vec<_>>()
                .join("; and ")
        } else {
            let keys: Vec<&str> = requirements.keys.iter().map(|k| k.fingerprint.as_str()).collect();
            format!("signature not required, trusted keys {}", keys.join(", "))
        };
        report.pass(CheckName::Policy, format!("{rule}: {detail}"));
    }

    let (descriptor, image) = match read_image(store, name) {
        Ok((descriptor, _, image)) => (descriptor, image),
        Err(SignError::Store(e)) => return Err(e.into()),
        Err(e) => {
            report.fail(
                CheckName::Manifest,
                "reading the stored manifest",
                vec![SignatureFinding::ManifestUnusable { reason: e.to_string() }],
            );
            return reject(report);
        }
    };
    report.manifest = Some(descriptor.digest);
    report.pass(
        CheckName::Manifest,
        format!(
            "{} ({} layers), checked against its digest",
            descriptor.digest,
            image.layers.len()
        ),
    );

    let keys = AnnotationKeys::for_scheme(options.scheme, options.root_hash_key.as_deref());
    let signature = check_signature(store, &image_name, &descriptor, &image, options, &requirements);
    let mut signed_by = None;
    let mut mixed = None;
    match signature {
        Ok(by) => {
            report.pass(CheckName::Signature, signature_detail(options.scheme, &by));
            signed_by = Some(by);
        }
        Err(findings)
            if !requirements.require_signature
                && findings
                    .iter()
                    .all(|f| matches!(f, SignatureFinding::SignatureMissing { .. })) =>
        {
            report.skip(
                CheckName::Signature,
                "unsigned, and the policy does not require a signature",
            );
        }
        Err(findings) => {
            let sources = layer_sources(store, &image_name, &descriptor, &image, &keys, options, &requirements);
            if let (Some(sources), false) = (&sources, options.policy.single_signed_manifest) {
                report.pass(
                    CheckName::Signature,
                    format!(
                        "this manifest is not signed, but every layer and root hash is in a signed manifest ({}); allowed because single_signed_manifest = false",
                        sources.iter().map(|s| s.manifest.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                );
            } else {
                report.fail(CheckName::Signature, format!("{} signature", options.scheme), findings);
            }
            mixed = sources;
        }
    }

    let mut layers = Vec::with_capacity(image.layers.len());
    let mut annotation_findings = Vec::new();
    for (descriptor, result) in image.layers.iter().zip(annotate::read_layers(&image, &keys)) {
        match result {
            Ok(verity) => layers.push(VerifiedLayer {
                descriptor: Descriptor {
                    annotations: Default::default(),
                    ..descriptor.clone()
                },
                signed_root_hash: signed_by.as_ref().map(|_| SignedRootHash(verity.root_hash)),
                verity,
                converted: Vec::new(),
                root_hash_signature: descriptor
                    .annotations
                    .get(kernel_annotation::ROOT_HASH_SIGNATURE)
                    .cloned(),
            }),
            Err(e) => annotation_findings.push(SignatureFinding::Annotation(e)),
        }
    }
    if annotation_findings.is_empty() {
        report.pass(
            CheckName::RootHashes,
            format!("every layer has {} and its tree parameters", keys.root_hash),
        );
    } else {
        report.fail(
            CheckName::RootHashes,
            format!("{} on every layer", keys.root_hash),
            annotation_findings,
        );
    }

    let built = check_timestamp(&mut report, &image, &keys, &requirements);
    if options.local {
        check_local_trees(&mut report, store, &mut layers);
        check_local_data(&mut report, store, &layers, options.data);
    } else {
        let reason = "not asked: the caller re-verifies the layers at rest against the signed root hashes";
        report.skip(CheckName::LocalTrees, reason);
        report.skip(CheckName::LocalData, reason);
    }

    match (&mixed, options.policy.single_signed_manifest) {
        (Some(sources), true) => report.fail(
            CheckName::SingleSignedManifest,
            "every layer from one signed manifest",
            vec![SignatureFinding::MixAndMatch {
                sources: sources.clone(),
            }],
        ),
        (Some(_), false) => report.skip(
            CheckName::SingleSignedManifest,
            "disabled by the policy (single_signed_manifest = false): layers from several signed manifests accepted",
        ),
        (None, _) if signed_by.is_some() => report.pass(
            CheckName::SingleSignedManifest,
            format!(
                "all {} layers and root hashes come from signed manifest {}",
                image.layers.len(),
                descriptor.digest
            ),
        ),
        (None, _) => report.skip(CheckName::SingleSignedManifest, "no signed manifest"),
    }

    if report.failed() {
        return reject(report);
    }
    report.verified = true;
    report.signed = signed_by.is_some();
    Ok(VerifiedImage {
        name: name.to_owned(),
        repository: image_name.repository,
        config: image.config.clone(),
        manifest: descriptor,
        scheme: options.scheme,
        signed_by,
        built,
        layers,
        report,
    })
}

fn signature_detail(scheme: Scheme, by: &SignedBy) -> String {
    match &by.payload {
        Some(payload) => format!("{scheme} signature by key {} over payload {payload}", by.key),
        None => format!("{scheme} signature by key {} over the manifest's fields", by.key),
    }
}

/// Checks the image's own signature in the scheme of `options`.
fn check_signature(
    store: &Store,
    name: &ImageName,
    descriptor: &Descriptor,
    image: &ImageManifest,
    options: &VerifyOptions,
    requirements: &Requirements,
) -> Result<SignedBy, Vec<SignatureFinding>> {
    match options.scheme {
        Scheme::Cosign => check_cosign(store, name, &descriptor.digest, options.registry.as_ref(), requirements),
        Scheme::DeliveryKit => {
            let Some(signature) = delivery_kit::signature(image) else {
                return Err(vec![SignatureFinding::SignatureMissing {
                    expected: format!("manifest annotation {}", delivery_kit::SIGNATURE),
                }]);
            };
            let key = delivery_kit::verify(image, signature, &requirements.keys)
                .map_err(|error| vec![SignatureFinding::BadSignature { payload: None, error }])?;
            // The payload carries one signature: its signer must be in every set, and no set may need more.
            let unmet: Vec<SignatureFinding> = requirements
                .key_sets
                .iter()
                .filter(|set| set.threshold > 1 || !set.keys.iter().any(|k| k.key == key.key))
                .map(|set| SignatureFinding::TooFewSigners {
                    rule: set.rule.clone(),
                    verified: usize::from(set.keys.iter().any(|k| k.key == key.key)),
                    needed: set.threshold,
                })
                .collect();
            if !unmet.is_empty() {
                return Err(unmet);
            }
            Ok(SignedBy {
                key: key.fingerprint.clone(),
                payload: None,
            })
        }
    }
}

fn check_cosign(
    store: &Store,
    name: &ImageName,
    manifest: &Digest,
    registry: Option<&ClientOptions>,
    requirements: &Requirements,
) -> Result<SignedBy, Vec<SignatureFinding>> {
    let load = || {
        cosign::load(store, &name.repository, manifest)
            .map_err(|e| vec![SignatureFinding::SignatureFetch { reason: e.to_string() }])
    };
    let mut signatures = load()?;
    if signatures.is_none()
        && let (Some(options), Some(reference)) = (registry, &name.registry)
    {
        match remote::fetch_signatures(store, reference, manifest, options) {
            Ok(true) => signatures = load()?,
            Ok(false) => {}
            Err(e) => return Err(vec![SignatureFinding::SignatureFetch { reason: e.to_string() }]),
        }
    }
    let Some(signatures) = signatures else {
        return Err(vec![SignatureFinding::SignatureMissing {
            expected: name.with_tag(&cosign::signature_tag(manifest)),
        }]);
    };
    let mut findings = Vec::new();
    // Distinct keys (of any applied rule) whose signature verified over this manifest, with the payload they
    // signed; each stored signature is checked once against the union of the rules' keys.
    let mut signers: Vec<(PublicKey, Digest)> = Vec::new();
    for stored in &signatures {
        let payload = Digest::of(&stored.payload);
        let key = match cosign::verify(&requirements.keys, &stored.payload, &stored.signature) {
            Ok(key) => key,
            Err(error) => {
                findings.push(SignatureFinding::BadSignature {
                    payload: Some(payload),
                    error,
                });
                continue;
            }
        };
        let parsed = match cosign::parse_payload(&stored.payload) {
            Ok(p) => p,
            Err(e) => {
                findings.push(SignatureFinding::PayloadMalformed { reason: e.to_string() });
                continue;
            }
        };
        let critical = parsed.critical;
        if critical.kind != cosign::PAYLOAD_TYPE {
            findings.push(SignatureFinding::PayloadType { found: critical.kind });
        } else if critical.image.docker_manifest_digest != manifest.to_string() {
            findings.push(SignatureFinding::PayloadDigest {
                signed: critical.image.docker_manifest_digest,
                used: *manifest,
            });
        } else if critical.identity.docker_reference != name.repository {
            findings.push(SignatureFinding::PayloadIdentity {
                signed: critical.identity.docker_reference,
                expected: name.repository.clone(),
            });
        } else if !signers.iter().any(|(k, _)| k.key == key.key) {
            signers.push((key.clone(), payload));
        }
    }
    if !signers.is_empty() {
        let signed = |set: &super::policy::KeySet| {
            set.keys
                .iter()
                .filter(|k| signers.iter().any(|(s, _)| s.key == k.key))
                .count()
        };
        let unmet: Vec<SignatureFinding> = requirements
            .key_sets
            .iter()
            .filter(|set| signed(set) < set.threshold)
            .map(|set| SignatureFinding::TooFewSigners {
                rule: set.rule.clone(),
                verified: signed(set),
                needed: set.threshold,
            })
            .collect();
        if unmet.is_empty() {
            let (key, payload) = signers.swap_remove(0);
            return Ok(SignedBy {
                key: key.fingerprint,
                payload: Some(payload),
            });
        }
        findings.extend(unmet);
    }
    if findings.is_empty() {
        findings.push(SignatureFinding::SignatureMissing {
            expected: name.with_tag(&cosign::signature_tag(manifest)),
        });
    }
    Err(findings)
}

/// For an image whose own signature failed: where each layer (with the same root hash) appears in another
/// signed manifest of the store, if every layer does. `None` if some layer is signed nowhere.
fn layer_sources(
    store: &Store,
    name: &ImageName,
    descriptor: &Descriptor,
    image: &ImageManifest,
    keys: &AnnotationKeys,
    options: &VerifyOptions,
    requirements: &Requirements,
) -> Option<Vec<LayerSource>> {
    let wanted: Vec<(Digest, RootHash)> = annotate::read_layers(image, keys)
        .into_iter()
        .map(|r| r.ok().map(|l| (l.layer, l.root_hash)))
        .collect::<Option<_>>()?;
    let mut signed: BTreeMap<(Digest, RootHash), Digest> = BTreeMap::new();
    for (other, _) in store.images().ok()? {
        if other == name.name || cosign::is_signature_name(&other) {
            continue;
        }
        let (Ok(other_name), Ok((other_descriptor, _, other_image))) =
            (ImageName::parse(&other), read_image(store, &other))
        else {
            continue;
        };
        if other_descriptor.digest == descriptor.digest || other_name.repository != name.repository {
            continue;
        }
        let local_only = VerifyOptions {
            registry: None,
            ..options.clone()
        };
        if check_signature(
            store,
            &other_name,
            &other_descriptor,
            &other_image,
            &local_only,
            requirements,
        )
        .is_err()
        {
            continue;
        }
        for layer in annotate::read_layers(&other_image, keys).into_iter().flatten() {
            signed
                .entry((layer.layer, layer.root_hash))
                .or_insert(other_descriptor.digest);
        }
    }
    wanted
        .into_iter()
        .map(|(layer, root)| {
            signed
                .get(&(layer, root))
                .map(|&manifest| LayerSource { layer, manifest })
        })
        .collect()
}

fn check_timestamp(
    report: &mut Report,
    image: &ImageManifest,
    keys: &AnnotationKeys,
    requirements: &Requirements,
) -> Option<BuildTimestamp> {
    let built = match annotate::build_timestamp(image, keys) {
        None => {
            let finding = SignatureFinding::TimestampMissing {
                key: keys.build_timestamp.clone(),
            };
            match requirements.min_build_timestamp {
                Some(_) => report.fail(CheckName::BuildTimestamp, "the policy sets a minimum", vec![finding]),
                None => report.skip(
                    CheckName::BuildTimestamp,
                    format!("no {} annotation and no minimum in the policy", keys.build_timestamp),
                ),
            }
            return None;
        }
        Some(Err(value)) => {
            report.fail(
                CheckName::BuildTimestamp,
                "reading the build timestamp",
                vec![SignatureFinding::TimestampMalformed {
                    key: keys.build_timestamp.clone(),
                    value,
                }],
            );
            return None;
        }
        Some(Ok(built)) => built,
    };
    match requirements.min_build_timestamp {
        Some(minimum) if built < minimum => report.fail(
            CheckName::BuildTimestamp,
            format!("built {built}, minimum {minimum}"),
            vec![SignatureFinding::Rollback { built, minimum }],
        ),
        Some(minimum) => report.pass(CheckName::BuildTimestamp, format!("built {built}, minimum {minimum}")),
        None => report.pass(
            CheckName::BuildTimestamp,
            format!("built {built} (no minimum in the policy)"),
        ),
    }
    Some(built)
}

fn check_local_trees(report: &mut Report, store: &Store, layers: &mut [VerifiedLayer]) {
    let mut findings = Vec::new();
    let mut compared = 0;
    for layer in layers.iter_mut() {
        for layout in [VerityLayout::Containerd, VerityLayout::Separate] {
            let local = match convert::existing(store, &layer.verity.layer, layout) {
                Ok(Some(local)) => local,
                Ok(None) => continue,
                Err(e) => {
                    findings.push(SignatureFinding::ManifestUnusable {
                        reason: format!("local conversion record: {e}"),
                    });
                    continue;
                }
            };
            compared += 1;
            let signed = &layer.verity;
            let block = convert::verity::BLOCK.to_string();
            let differences = [
                ("hash algorithm", &signed.algorithm, &local.hash),
                ("salt", &signed.salt, &local.salt),
                (
                    "data blocks",
                    &signed.data_blocks.to_string(),
                    &local.data_blocks.to_string(),
                ),
                ("data block size", &signed.data_block_size.to_string(), &block),
                ("hash block size", &signed.hash_block_size.to_string(), &block),
                ("hash type", &signed.hash_type.to_string(), &"1".to_owned()),
            ];
            let before = findings.len();
            if signed.root_hash != local.roothash {
                findings.push(SignatureFinding::RootHashMismatch {
                    layer: signed.layer,
                    layout,
                    signed: signed.root_hash,
                    local: Box::new(local.roothash),
                });
            }
            for (field, signed_value, local_value) in differences {
                if signed_value != local_value {
                    findings.push(SignatureFinding::ParamsMismatch {
                        layer: signed.layer,
                        layout,
                        field: field.to_owned(),
                        signed: signed_value.clone(),
                        local: local_value.clone(),
                    });
                }
            }
            if findings.len() == before {
                layer.converted.push(layout);
            }
        }
    }
    match (compared, findings.is_empty()) {
        (0, _) => report.skip(
            CheckName::LocalTrees,
            "no layer is converted yet (run convert, then verify again)",
        ),
        (n, true) => report.pass(
            CheckName::LocalTrees,
            format!("{n} local trees have the signed root hash and parameters"),
        ),
        (n, false) => report.fail(
            CheckName::LocalTrees,
            format!("{n} local trees against the signed root hashes"),
            findings,
        ),
    }
}

/// One local layer to re-hash: its files and the geometry the signed parameters give.
struct DataJob {
    layer: Digest,
    layout: VerityLayout,
    data: std::path::PathBuf,
    hash: std::path::PathBuf,
    geometry: Geometry,
    root: RootHash,
    bytes: u64,
}

fn data_jobs(store: &Store, layers: &[VerifiedLayer]) -> Vec<Result<DataJob, SignatureFinding>> {
    let mut jobs = Vec::new();
    for layer in layers {
        for &layout in &layer.converted {
            let job = convert::existing(store, &layer.verity.layer, layout)
                .map_err(|e| e.to_string())
                .and_then(|local| local.ok_or_else(|| "the conversion record is gone".to_owned()))
                .and_then(|local| {
                    let placement = Placement::with_superblock(local.hashoffset);
                    let geometry = Geometry::new(layer.verity.params(), placement).map_err(|e| e.to_string())?;
                    let data = local.dir.join(convert::LAYER_FILE);
                    let hash = match layout {
                        VerityLayout::Containerd => data.clone(),
                        VerityLayout::Separate => local.dir.join(convert::VERITY_FILE),
                    };
                    Ok(DataJob {
                        layer: layer.verity.layer,
                        layout,
                        data,
                        hash,
                        bytes: geometry.params.data_blocks * u64::from(geometry.params.data_block_size),
                        geometry,
                        root: layer.verity.root_hash,
                    })
                })
                .map_err(|error| SignatureFinding::LayerData {
                    layer: layer.verity.layer,
                    layout,
                    block: None,
                    error,
                });
            jobs.push(job);
        }
    }
    jobs
}

fn hash_layer(job: &DataJob) -> Result<(), SignatureFinding> {
    let finding = |block, error: String| SignatureFinding::LayerData {
        layer: job.layer,
        layout: job.layout,
        block,
        error,
    };
    let open = |path: &std::path::Path| {
        FileSource::open(path).map_err(|e| finding(None, format!("opening {}: {e}", path.display())))
    };
    let (data, hash) = (open(&job.data)?, open(&job.hash)?);
    verity_fuse::tree::check(&data, &hash, &job.geometry, &job.root.digest(), 1).map_err(|e| match &e {
        verity_fuse::VerityError::HashMismatch { block, .. } => finding(Some(*block), e.to_string()),
        _ => finding(None, e.to_string()),
    })
}

/// Re-hashes every converted layer (data and tree, top-down) against its signed root hash, at most `threads`
/// layers at a time.
fn check_local_data(report: &mut Report, store: &Store, layers: &[VerifiedLayer], data: DataCheck) {
    let threads = match data {
        DataCheck::Skip(reason) => {
            report.skip(CheckName::LocalData, format!("layer data not re-hashed: {reason}"));
            return;
        }
        DataCheck::Hash { threads } => threads.max(1),
    };
    let start = Instant::now();
    let mut jobs = Vec::new();
    let mut findings = Vec::new();
    for job in data_jobs(store, layers) {
        match job {
            Ok(job) => jobs.push(job),
            Err(finding) => findings.push(finding),
        }
    }
    if jobs.is_empty() && findings.is_empty() {
        report.skip(
            CheckName::LocalData,
            "no converted layer matches the signed parameters to hash (run convert, then verify again)",
        );
        return;
    }
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::new());
    let workers = threads.min(jobs.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(finding) = hash_layer(job) {
                        found.lock().unwrap_or_else(|e| e.into_inner()).push(finding);
                    }
                }
            });
        }
    });
    findings.extend(found.into_inner().unwrap_or_else(|e| e.into_inner()));
    let bytes: u64 = jobs.iter().map(|j| j.bytes).sum();
    let detail = format!(
        "hashed {} local layer(s), data and tree top-down against the signed root hashes: {:.1} MiB in {:.2} s ({workers} thread(s))",
        jobs.len(),
        bytes as f64 / f64::from(1 << 20),
        start.elapsed().as_secs_f64(),
    );
    if findings.is_empty() {
        report.pass(CheckName::LocalData, detail);
    } else {
        report.fail(CheckName::LocalData, detail, findings);
    }
}
