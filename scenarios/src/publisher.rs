//! One publisher identity shared by every cell of a run, for a node whose kernel trusts it.
//!
//! Each cell normally signs with a fresh key, which is right everywhere the node's keyring is the cell's own
//! file. A kernel's keyrings are not: dm-verity and IPE check signatures against the certificates the kernel
//! loaded at boot (the firmware's `db` fills its `.platform` keyring). The `kernel-vm` backend therefore makes
//! one key and certificate before it boots ([`Publisher::create`]), enrolls the certificate in the VM's
//! variable store, and runs the `enforced` cells with `--publisher-key`: every cell then signs its images and
//! root hashes with that key ([`Publisher::load`]), and the kernel backend loads the one IPE policy signed by
//! it. Attackers' keys stay fresh per cell, so "another key" is one the kernel does not trust.

use std::path::{Path, PathBuf};

use p256::ecdsa::SigningKey;
use verity_fuse::ErrorClass;
use veritylab::ipe::{self, IpeError, Policy, PolicyName};
use veritylab::sign::KernelSignatureError;
use veritylab::sign::kernel_signature;
use veritylab::sign::keys::{self, KeyError};

/// The signing key every cell of a run signs with, its certificate, and the IPE policy it signed.
#[derive(Clone)]
pub struct Publisher {
    key: SigningKey,
    certificate: Vec<u8>,
    ipe_policy: Vec<u8>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("certificate_len", &self.certificate.len())
            .finish_non_exhaustive()
    }
}

/// The files [`Publisher::create`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherFiles {
    /// The private key (`PREFIX.key`, mode 0600).
    pub key: PathBuf,
    /// Its certificate (`PREFIX.crt`, PEM): what a kernel's keyring must hold.
    pub certificate: PathBuf,
}

/// A publisher identity that could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublisherError {
    /// The key file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The certificate beside the key.
    #[error(transparent)]
    Certificate(#[from] KernelSignatureError),
    /// Signing the IPE policy.
    #[error(transparent)]
    Policy(#[from] IpeError),
}

impl PublisherError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Key(e) => e.class(),
            Self::Certificate(e) => e.class(),
            Self::Policy(e) => e.class(),
        }
    }
}

impl Publisher {
    /// Writes a fresh key pair and its self-signed certificate as `PREFIX.key`, `PREFIX.pub` and `PREFIX.crt`
    /// (what `veritylab keygen PREFIX` writes).
    pub fn create(prefix: &Path) -> Result<PublisherFiles, PublisherError> {
        let pair = keys::write_pair(prefix, None, false)?;
        let key = keys::load_private(&pair.private, None)?;
        let certificate = kernel_signature::certificate_path(&pair.private);
        kernel_signature::write_certificate(&key, &certificate, false)?;
        Ok(PublisherFiles {
            key: pair.private,
            certificate,
        })
    }

    /// Reads the (unencrypted) key at `key` and the certificate beside it (`KEY.crt`), checked to be that
    /// key's, and signs the default IPE policy with them once, so every cell loads the same policy bytes.
    pub fn load(key: &Path) -> Result<Self, PublisherError> {
        let signing = keys::load_private(key, None)?;
        let path = kernel_signature::certificate_path(key);
        let certificate = kernel_signature::read_certificate(&path)?;
        kernel_signature::check_certificate_key(&signing, &certificate).map_err(|e| {
            KernelSignatureError::CertificateFile {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        let policy = Policy {
            name: PolicyName::parse(ipe::DEFAULT_NAME)?,
            version: ipe::DEFAULT_VERSION,
        };
        let ipe_policy = policy.signed(&signing, &certificate)?;
        Ok(Self {
            key: signing,
            certificate,
            ipe_policy,
        })
    }

    /// The signing key.
    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Its certificate (DER).
    pub(crate) fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// The default IPE policy signed by the key (DER PKCS#7, the form `new_policy` takes).
    pub(crate) fn ipe_policy(&self) -> &[u8] {
        &self.ipe_policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_publisher_loads_with_its_certificate_and_one_signed_policy() {
        let dir = tempfile::tempdir().unwrap();
        let files = Publisher::create(&dir.path().join("publisher")).unwrap();
        assert_eq!(files.certificate, dir.path().join("publisher.crt"));
        let publisher = Publisher::load(&files.key).unwrap();
        kernel_signature::check_certificate_key(publisher.key(), publisher.certificate()).unwrap();
        assert!(!publisher.ipe_policy().is_empty());
        assert!(
            Publisher::create(&dir.path().join("publisher")).is_err(),
            "existing files are kept"
        );
    }

    #[test]
    fn another_keys_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Publisher::create(&dir.path().join("a")).unwrap();
        let second = Publisher::create(&dir.path().join("b")).unwrap();
        std::fs::copy(&second.certificate, &first.certificate).unwrap();
        let err = Publisher::load(&first.key).unwrap_err();
        assert!(matches!(err, PublisherError::Certificate(_)), "{err}");
        assert_eq!(err.class(), ErrorClass::BadInput, "{err}");
    }
}
