//! The `enforced` profile's root-hash signature check at device open.
//!
//! A plan for `enforced` carries, for each publisher layer, the kernel root-hash signature its verified
//! manifest holds ([`RootHashSignature`], taken from the signed annotation by [`super::prepare_enforced`]),
//! and the node's trusted certificates (the plan's keyring file or directory, as
//! `verity-fuse open --keyring` takes it). When the backend opens the layer's device:
//!
//! - on a kernel dm-verity mapping, the signature goes to the kernel as a `user` key named in the table
//!   (`root_hash_sig_key_desc`), and the kernel decides against its own keyrings (the secondary keyring and
//!   `.platform`); the layer is then [`LayerTrust::Kernel`];
//! - on our verified devices (fuse and emulated backends, or a kernel backend without device-mapper),
//!   [`check`] makes the kernel's decision in userspace with [`verity_fuse::signature`] against the plan's
//!   keyring, with signatures required, and the layer is [`LayerTrust::Emulated`] with the certificate that
//!   verified it.
//!
//! Either way a publisher layer without a signature, or with one no trusted certificate verifies over the
//! exact root hash the device opens with, is refused and nothing is mounted. The pinned standard-mountpoints
//! layer has no publisher signature (its root hash is compiled into the lab): it opens unsigned, is
//! [`LayerTrust::Unsigned`], and nothing on it may execute.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use verity_fuse::signature::{self, Keyring, KeyringError, SignatureError, Signer};

use crate::root_hash::RootHash;

/// A layer's root-hash signature: the detached DER PKCS#7 the kernel takes (base64 in plans).
#[derive(Clone, PartialEq, Eq)]
pub struct RootHashSignature(Vec<u8>);

impl RootHashSignature {
    /// The signature's DER bytes, as the verified manifest's annotation holds them.
    pub fn from_der(der: Vec<u8>) -> Self {
        Self(der)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for RootHashSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootHashSignature({} bytes)", self.0.len())
    }
}

impl Serialize for RootHashSignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for RootHashSignature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map(Self).map_err(serde::de::Error::custom)
    }
}

/// How a mounted layer's root hash was vouched for at device open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "checked-by")]
pub enum LayerTrust {
    /// The kernel loaded the table with the signature and checked it against its trusted keyrings.
    Kernel,
    /// Our emulation of the kernel's check verified the signature with this trusted certificate.
    Emulated {
        /// The certificate that verified it.
        signer: Signer,
    },
    /// Opened without a signature (the pinned standard-mountpoints layer): nothing on it may execute.
    Unsigned,
}

impl LayerTrust {
    /// True when a trusted certificate vouched for the root hash the device opened with, as IPE's
    /// `dmverity_signature=TRUE` requires.
    pub fn signature_checked(&self) -> bool {
        matches!(self, Self::Kernel | Self::Emulated { .. })
    }
}

/// Why the enforced check refused a layer at device open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignedOpenError {
    /// The node's trusted certificates could not be loaded: nothing is trusted by halves.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The kernel's check (emulated) refused the signature, as `veritysetup open` reports it.
    #[error("activation refused: {}: {source}", source.errno())]
    Refused {
        /// The check's reason, with the kernel's errno.
        #[source]
        source: SignatureError,
    },
}

impl SignedOpenError {
    /// What kind of failure this is: an unusable keyring is the node's configuration error; a refused
    /// signature means the root hash is not vouched for.
    pub fn class(&self) -> verity_fuse::ErrorClass {
        match self {
            Self::Keyring(e) => e.class(),
            Self::Refused { source } => source.class(),
        }
    }
}

/// The emulated kernel check for one layer: `signature` over `root` against the certificates at `keyring`,
/// with signatures required (`dm_verity.require_signatures=1`).
pub(crate) fn check(
    root: &RootHash,
    signature: Option<&RootHashSignature>,
    keyring: &Path,
) -> Result<LayerTrust, SignedOpenError> {
    let keyring = Keyring::load(keyring)?;
    signature::verify_root_hash_signature(&root.to_string(), signature.map(RootHashSignature::der), &keyring, true)
        .map_err(|source| SignedOpenError::Refused { source })?
        .map(|signer| LayerTrust::Emulated { signer })
        .ok_or(SignedOpenError::Refused {
            source: SignatureError::Required,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_signature_is_refused_as_the_kernel_refuses_it_and_an_empty_keyring_trusts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root: RootHash = "ab".repeat(32).parse().unwrap();
        let err = check(&root, None, dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "activation refused: Required key not available: no root hash signature, and signatures are required"
        );
        assert_eq!(err.class(), verity_fuse::ErrorClass::NotTrusted);
        let garbage = RootHashSignature::from_der(vec![0x30, 0x03, 0x02, 0x01]);
        let err = check(&root, Some(&garbage), dir.path()).unwrap_err();
        assert!(matches!(err, SignedOpenError::Refused { .. }), "{err}");
    }

    #[test]
    fn signatures_travel_through_plans_as_base64() {
        let sig = RootHashSignature::from_der(vec![1, 2, 3, 250]);
        let json = serde_json::to_string(&sig).unwrap();
        assert_eq!(json, "\"AQID+g==\"");
        assert_eq!(serde_json::from_str::<RootHashSignature>(&json).unwrap(), sig);
        assert!(serde_json::from_str::<RootHashSignature>("\"not base64!\"").is_err());
    }
}
