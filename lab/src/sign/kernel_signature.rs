//! The forms the kernel takes for root-hash signatures: a self-signed X.509 certificate for the lab's P-256
//! key (what a kernel keyring, or the UEFI `db` that fills `.platform`, holds) and a detached DER PKCS#7
//! `SignedData` over a root hash (what `veritysetup open --root-hash-signature` hands to the kernel).
//!
//! Both are DER built from `x509-cert` and `cms` types and signed with ECDSA P-256 over SHA-256:
//!
//! - [`self_signed_certificate`]: version 3, random positive serial, subject = issuer = `CN=<name>`, keyUsage
//!   (critical) digitalSignature only, subjectKeyIdentifier, signature `ecdsa-with-SHA256`.
//! - [`root_hash_signature`]: PKCS#7 version 1, detached `id-data` content, the signer's certificate
//!   included (so `openssl cms -verify -CAfile CERT` finds the signer; the kernel still trusts only keys in
//!   its keyrings), one signer named by the certificate's issuer and serial number, digest SHA-256, no signed
//!   attributes, so the signature is over the root hash's lowercase hex text itself, exactly what the kernel
//!   digests.
//!
//! `verity_fuse::signature` checks these bytes as the kernel does; the tests also prove them with
//! `openssl cms -verify` and `openssl x509`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos};
use der::asn1::{BitString, ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode, Encode};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use crate::root_hash::RootHash;

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const ID_CE_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");

/// How long a certificate made here is valid.
pub(crate) const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A certificate or signature that cannot be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelSignatureError {
    /// A value could not be encoded (a name the RFC 4514 parser refuses, a time out of range).
    #[error("encoding the {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The certificate given is not a DER X.509 certificate.
    #[error("not an X.509 certificate: {reason}")]
    Certificate {
        /// Why it failed.
        reason: String,
    },
    /// The certificate is not for this key.
    #[error("the certificate's public key is not the signing key's")]
    KeyMismatch,
    /// A certificate file is not one PEM or DER X.509 certificate.
    #[error("certificate {}: {reason}", path.display())]
    CertificateFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading a file failed.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file exists and replacing it was not asked for.
    #[error("{} exists; refusing to overwrite it (use --force)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

impl KernelSignatureError {
    /// What kind of failure this is.
    pub fn class(&self) -> verity_fuse::ErrorClass {
        use verity_fuse::ErrorClass;
        match self {
            Self::Encode { .. } | Self::Certificate { .. } | Self::KeyMismatch | Self::CertificateFile { .. } => {
                ErrorClass::BadInput
            }
            Self::Io { .. } | Self::Read { .. } => ErrorClass::Io,
            Self::Exists { .. } => ErrorClass::Busy,
        }
    }
}

fn encode(what: &'static str) -> impl Fn(der::Error) -> KernelSignatureError {
    move |e| KernelSignatureError::Encode {
        what,
        reason: e.to_string(),
    }
}

fn ecdsa_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    }
}

/// A self-signed certificate (DER) for `key`, named `CN=<common_name>`, valid from now for `VALIDITY`.
pub fn self_signed_certificate(key: &SigningKey, common_name: &str) -> Result<Vec<u8>, KernelSignatureError> {
    let name = Name::from_str(&format!("CN={common_name}")).map_err(encode("subject name"))?;
    let spki_der = public_key_der(key)?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(encode("public key"))?;
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    // Positive and of full length: the top bit clear, the top byte not zero.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let skid = Sha256::digest(spki.subject_public_key.raw_bytes());
    let extensions = vec![
        Extension {
            extn_id: ID_CE_KEY_USAGE,
            critical: true,
            extn_value: OctetString::new(
                KeyUsage(KeyUsages::DigitalSignature.into())
                    .to_der()
                    .map_err(encode("key usage"))?,
            )
            .map_err(encode("key usage"))?,
        },
        Extension {
            extn_id: ID_CE_SUBJECT_KEY_IDENTIFIER,
            critical: false,
            extn_value: OctetString::new(
                SubjectKeyIdentifier(OctetString::new(&skid[..20]).map_err(encode("key identifier"))?)
                    .to_der()
                    .map_err(encode("key identifier"))?,
            )
            .map_err(encode("key identifier"))?,
        },
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).map_err(encode("serial number"))?,
        signature: ecdsa_sha256(),
        issuer: name.clone(),
        validity: validity_from_now()?,
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(encode("certificate"))?;
    let signature: DerSignature = key.sign(&tbs_der);
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(signature.as_bytes()).map_err(encode("certificate signature"))?,
    };
    cert.to_der().map_err(encode("certificate"))
}

/// From now for [`VALIDITY`], each time as RFC 5280 4.1.2.5 wants it: `UTCTime` through 2049,
/// `GeneralizedTime` after. The kernel's X.509 parser refuses a `GeneralizedTime` before 2050, so a
/// certificate with one never reaches the `.platform` keyring.
fn validity_from_now() -> Result<Validity, KernelSignatureError> {
    let time = |at: std::time::SystemTime| -> Result<Time, KernelSignatureError> {
        match der::asn1::UtcTime::from_system_time(at) {
            Ok(utc) => Ok(Time::UtcTime(utc)),
            Err(_) => Ok(Time::GeneralTime(
                der::asn1::GeneralizedTime::from_system_time(at).map_err(encode("validity"))?,
            )),
        }
    };
    let now = std::time::SystemTime::now();
    Ok(Validity {
        not_before: time(now)?,
        not_after: time(now + VALIDITY)?,
    })
}

/// The PEM (`CERTIFICATE`) of a DER certificate.
pub(crate) fn certificate_pem(der: &[u8]) -> Result<String, KernelSignatureError> {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).map_err(|e| KernelSignatureError::Encode {
        what: "certificate PEM",
        reason: e.to_string(),
    })
}

/// The detached DER PKCS#7 signature the kernel checks for `root`: `key` signs the root hash's lowercase hex
/// text, and the signer is named by `certificate`'s issuer and serial number (which must be `key`'s).
pub fn root_hash_signature(
    key: &SigningKey,
    certificate: &[u8],
    root: &RootHash,
) -> Result<Vec<u8>, KernelSignatureError> {
    pkcs7_signature(key, certificate, root.to_string().as_bytes(), Content::Detached)
}

/// Whether a PKCS#7 message carries the content it signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The content travels apart (a root-hash signature: the kernel has the hex from the table).
    Detached,
    /// The content is inside the message (a signed IPE policy: the kernel reads the policy text from it).
    Attached,
}

/// A DER PKCS#7 `SignedData` over `content` as the kernel's `verify_pkcs7_signature` takes it: version 1,
/// `id-data`, one signer named by `certificate`'s issuer and serial number (which must be `key`'s), SHA-256,
/// no signed attributes, the certificate included.
pub fn pkcs7_signature(
    key: &SigningKey,
    certificate: &[u8],
    content: &[u8],
    form: Content,
) -> Result<Vec<u8>, KernelSignatureError> {
    let cert = check_certificate_key(key, certificate)?;
    let tbs = cert.tbs_certificate.clone();
    let signature: DerSignature = key.sign(content);
    let sha256 = AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    };
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(cms::cert::IssuerAndSerialNumber {
            issuer: tbs.issuer,
            serial_number: tbs.serial_number,
        }),
        digest_alg: sha256.clone(),
        signed_attrs: None,
        signature_algorithm: ecdsa_sha256(),
        signature: OctetString::new(signature.as_bytes()).map_err(encode("signature"))?,
        unsigned_attrs: None,
    };
    let econtent = match form {
        Content::Detached => None,
        Content::Attached => {
            Some(Any::encode_from(&OctetString::new(content).map_err(encode("content"))?).map_err(encode("content"))?)
        }
    };
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256]).map_err(encode("digest algorithms"))?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent,
        },
        certificates: Some(cms::signed_data::CertificateSet(
            SetOfVec::try_from(vec![cms::cert::CertificateChoices::Certificate(cert)])
                .map_err(encode("certificates"))?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(encode("signer"))?),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(encode("signed data"))?,
    }
    .to_der()
    .map_err(encode("content info"))
}

/// The SubjectPublicKeyInfo DER of `key`.
fn public_key_der(key: &SigningKey) -> Result<der::Document, KernelSignatureError> {
    key.verifying_key()
        .to_public_key_der()
        .map_err(|e| KernelSignatureError::Encode {
            what: "public key",
            reason: e.to_string(),
        })
}

/// Parses `certificate` (DER) and checks that its public key is `key`'s.
pub fn check_certificate_key(key: &SigningKey, certificate: &[u8]) -> Result<Certificate, KernelSignatureError> {
    let cert =
        Certificate::from_der(certificate).map_err(|e| KernelSignatureError::Certificate { reason: e.to_string() })?;
    let ours = public_key_der(key)?;
    let theirs = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(encode("public key"))?;
    if theirs != ours.as_bytes() {
        return Err(KernelSignatureError::KeyMismatch);
    }
    Ok(cert)
}

/// Reads a certificate file (PEM `CERTIFICATE` or DER) and returns its DER, checked to be one X.509
/// certificate.
pub fn read_certificate(path: &Path) -> Result<Vec<u8>, KernelSignatureError> {
    let bad = |reason: String| KernelSignatureError::CertificateFile {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| KernelSignatureError::Read {
        path: path.to_owned(),
        source,
    })?;
    if bytes.len() > MAX_CERTIFICATE_FILE {
        return Err(bad(format!("{} bytes, more than {MAX_CERTIFICATE_FILE}", bytes.len())));
    }
    let der = if bytes.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(&bytes).map_err(|e| bad(e.to_string()))?;
        if label != "CERTIFICATE" {
            return Err(bad(format!("PEM label {label:?}, not CERTIFICATE")));
        }
        der
    } else {
        bytes
    };
    Certificate::from_der(&der).map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    Ok(der)
}

/// The largest certificate file read.
pub(crate) const MAX_CERTIFICATE_FILE: usize = 64 << 10;

/// Writes the PEM certificate of `key` to `path` (refusing to replace a file unless `force`), named after
/// the file's stem; returns the certificate's DER.
pub fn write_certificate(key: &SigningKey, path: &Path, force: bool) -> Result<Vec<u8>, KernelSignatureError> {
    if path.exists() && !force {
        return Err(KernelSignatureError::Exists { path: path.to_owned() });
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let der = self_signed_certificate(key, &format!("veritylab {stem}"))?;
    let pem = certificate_pem(&der)?;
    let io = |source| KernelSignatureError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
    .map_err(io)?;
    std::io::Write::write_all(&mut tmp, pem.as_bytes()).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(der)
}

/// The certificate path beside a key: `lab.key` → `lab.crt`.
pub fn certificate_path(key: &Path) -> PathBuf {
    key.with_extension("crt")
}

#[cfg(test)]
mod tests {
    use super::*;
    use verity_fuse::signature::{Keyring, TrustedCertificate, verify_root_hash_signature};

    #[test]
    fn our_signature_passes_our_emulation_of_the_kernels_check_and_no_other_root_does() {
        let key = crate::sign::keys::generate();
        let cert = self_signed_certificate(&key, "veritylab test").unwrap();
        let root = RootHash::from_bytes(&[0x5a; 32]).unwrap();
        let sig = root_hash_signature(&key, &cert, &root).unwrap();
        let mut keyring = Keyring::empty();
        keyring.push(TrustedCertificate::from_der(&cert).unwrap());
        let signer = verify_root_hash_signature(&root.to_string(), Some(&sig), &keyring, true)
            .unwrap()
            .unwrap();
        assert_eq!(signer.subject, "CN=veritylab test");
        let other = RootHash::from_bytes(&[0x5b; 32]).unwrap();
        assert!(verify_root_hash_signature(&other.to_string(), Some(&sig), &keyring, true).is_err());
        assert!(verify_root_hash_signature(&root.to_string(), Some(&sig), &Keyring::empty(), true).is_err());
    }

    #[test]
    fn certificates_use_utc_time_before_2050_as_the_kernel_requires() {
        let cert =
            Certificate::from_der(&self_signed_certificate(&crate::sign::keys::generate(), "t").unwrap()).unwrap();
        let validity = cert.tbs_certificate.validity;
        assert!(matches!(validity.not_before, Time::UtcTime(_)), "{validity:?}");
        assert!(matches!(validity.not_after, Time::UtcTime(_)), "{validity:?}");
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let key = crate::sign::keys::generate();
        let cert = self_signed_certificate(&crate::sign::keys::generate(), "other").unwrap();
        let root = RootHash::from_bytes(&[1; 32]).unwrap();
        assert!(matches!(
            root_hash_signature(&key, &cert, &root),
            Err(KernelSignatureError::KeyMismatch)
        ));
    }
}
