//! Root-hash signatures as the kernel checks them (`CONFIG_DM_VERITY_VERIFY_ROOTHASH_SIG`).
//!
//! A dm-verity table may name a `user` key holding a detached PKCS#7 (CMS) `SignedData` over the root hash
//! exactly as the table spells it: lowercase ASCII hex, no newline. The kernel parses it, digests that text,
//! and accepts it only when a signer's key is in a trusted keyring and its signature verifies. This module
//! makes the same decision in userspace, over a [`Keyring`] of X.509 certificates we trust:
//!
//! 1. [`verify_root_hash_signature`] parses the message ([`parse`], never panicking on untrusted bytes): a
//!    `ContentInfo` of type `signedData`, version 1 (PKCS#7) or 3 (CMS), detached `id-data` content, at least
//!    one signer, every signer with signed attributes or none.
//! 2. Each signer's digest is SHA-256 of the hex text; with signed attributes, their `messageDigest` must equal
//!    it and the signature covers the attributes' DER `SET OF` instead. The kernel accepts signed attributes,
//!    but rejects S/MIME capabilities and Microsoft's Authenticode attributes outside Authenticode, so a
//!    plain `openssl smime -sign` (which adds S/MIME capabilities) is rejected, and one with `-nosmimecap`
//!    is not.
//! 3. Each signer is looked up in the keyring by issuer and serial number only (the kernel's direct-key
//!    lookup; certificates inside the message are not a trust path here). A signer with no trusted key is
//!    skipped; a trusted key whose signature does not verify rejects the whole message; none trusted refuses.
//!
//! Keys: RSA (PKCS#1 v1.5, signer algorithm `rsaEncryption`) and ECDSA P-256 (`ecdsa-with-SHA*`), digest
//! SHA-256 only: other digests the kernel would accept (SHA-1, SHA-384, SHA-512, ...) are refused here as
//! unsupported. Each refusal carries the error number the kernel returns ([`KernelErrno`]).

use std::fmt;
use std::path::{Path, PathBuf};

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;

use crate::class::ErrorClass;
use crate::hex;

/// The largest payload of a kernel `user` key (`user_preparse`), so the largest signature the kernel can take.
pub const MAX_SIGNATURE_LEN: usize = 32767;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `ecdsa-with-SHA1` .. `ecdsa-with-SHA512` (1.2.840.10045.4.1 and 4.3.1-4): the kernel takes any of them
/// as "ecdsa" and uses the signer's digest algorithm.
const ECDSA_WITH: [ObjectIdentifier; 5] = [
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.1"),
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.1"),
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3"),
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4"),
];
const ATTR_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ATTR_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// Signed attributes the kernel allows only in Authenticode (`msIndirectData`) messages: S/MIME capabilities
/// (which `openssl smime` adds unless told `-noattr` or `-nosmimecap`), Microsoft's SpOpusInfo and
/// StatementType. Any of them rejects a root-hash signature.
const AUTHENTICODE_ONLY_ATTRS: [ObjectIdentifier; 3] = [
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.15"),
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.12"),
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.11"),
];

/// The error number the kernel returns for a refusal, as `dmsetup`/`veritysetup` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KernelErrno {
    /// No trusted key for any signer, or no signature where one is required.
    Enokey,
    /// A trusted key's signature (or the message digest attribute) does not match.
    Ekeyrejected,
    /// The message is not valid DER or lacks required parts.
    Ebadmsg,
    /// The message is well formed but inconsistent (attached content, mixed signers, too large a key).
    Einval,
    /// An algorithm this checker does not implement.
    Enopkg,
}

impl KernelErrno {
    /// The C library's text for the number, as `dmsetup` prints it.
    pub fn strerror(self) -> &'static str {
        match self {
            Self::Enokey => "Required key not available",
            Self::Ekeyrejected => "Key was rejected by service",
            Self::Ebadmsg => "Bad message",
            Self::Einval => "Invalid argument",
            Self::Enopkg => "Package not installed",
        }
    }
}

impl fmt::Display for KernelErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.strerror())
    }
}

/// Why a root-hash signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No signature was given and signatures are required (`require_signatures=1`).
    #[error("no root hash signature, and signatures are required")]
    Required,
    /// The signature is larger than a kernel `user` key may hold.
    #[error("the signature is {len} bytes, more than the kernel's {MAX_SIGNATURE_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The bytes are not a PKCS#7 `SignedData` the kernel parses.
    #[error("not a PKCS#7 signature: {reason}")]
    Malformed {
        /// What is wrong, for a human.
        reason: String,
    },
    /// The message carries the content instead of being detached.
    #[error("the PKCS#7 message carries its content; a root hash signature is detached")]
    NotDetached,
    /// The message is well formed but not usable as the kernel requires.
    #[error("inconsistent PKCS#7 message: {reason}")]
    Inconsistent {
        /// What is wrong, for a human.
        reason: String,
    },
    /// An algorithm the checker does not implement.
    #[error("unsupported {what}: {oid}")]
    Unsupported {
        /// Which field.
        what: &'static str,
        /// The algorithm's OID.
        oid: String,
    },
    /// The signed content is not `id-data` (the kernel rejects such a message for a root hash).
    #[error("the signed content type {oid} is not id-data")]
    WrongContentType {
        /// The content type's OID.
        oid: String,
    },
    /// A signed attribute the kernel permits only in Authenticode messages.
    #[error("signed attribute {oid} is allowed only in Authenticode signatures")]
    AuthenticodeOnlyAttribute {
        /// The attribute's OID.
        oid: String,
    },
    /// A signed attribute the kernel reads appears twice or with several values.
    #[error("signed attribute {oid} is repeated or multi-valued")]
    RepeatedAttribute {
        /// The attribute's OID.
        oid: String,
    },
    /// The signed `messageDigest` attribute is not the digest of the root hash text.
    #[error("the signed message digest is not that of the root hash {root_hash}")]
    MessageDigestMismatch {
        /// The root hash checked.
        root_hash: String,
    },
    /// A trusted certificate's key did not verify the signature.
    #[error("the signature by {subject} does not verify over the root hash {root_hash}")]
    BadSignature {
        /// The trusted certificate's subject.
        subject: String,
        /// The root hash checked.
        root_hash: String,
    },
    /// No signer's key is in the keyring.
    #[error("no signer is in the keyring ({signers})")]
    NoTrustedKey {
        /// The signers, as issuer and serial number.
        signers: String,
    },
}

impl SignatureError {
    /// What kind of failure this is: the root hash is not vouched for by a trusted key.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::NotTrusted
    }

    /// The error number the kernel returns in the same case.
    pub fn errno(&self) -> KernelErrno {
        match self {
            Self::Required | Self::NoTrustedKey { .. } => KernelErrno::Enokey,
            Self::WrongContentType { .. }
            | Self::AuthenticodeOnlyAttribute { .. }
            | Self::RepeatedAttribute { .. }
            | Self::MessageDigestMismatch { .. }
            | Self::BadSignature { .. } => KernelErrno::Ekeyrejected,
            Self::Malformed { .. } => KernelErrno::Ebadmsg,
            Self::TooLarge { .. } | Self::NotDetached | Self::Inconsistent { .. } => KernelErrno::Einval,
            Self::Unsupported { .. } => KernelErrno::Enopkg,
        }
    }
}

/// Why a keyring could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// A file or directory could not be read.
    #[error("reading keyring {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not an X.509 certificate (PEM or DER).
    #[error("keyring {path}: not an X.509 certificate: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate's key is of a type the checker does not implement.
    #[error("keyring {path}: unsupported public key in {subject}: {what}")]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// Which key type.
        what: String,
    },
}

impl KeyringError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Read { .. } => ErrorClass::Io,
            Self::Certificate { .. } | Self::UnsupportedKey { .. } => ErrorClass::BadInput,
        }
    }
}

#[derive(Clone)]
enum PublicKey {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// A certificate in the keyring: its identity for the signer lookup and its key.
#[derive(Clone)]
pub struct TrustedCertificate {
    issuer: Vec<u8>,
    serial: Vec<u8>,
    key: PublicKey,
    signer: Signer,
}

impl fmt::Debug for TrustedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedCertificate")
            .field("signer", &self.signer)
            .finish()
    }
}

impl TrustedCertificate {
    /// Parses one DER certificate with an RSA or P-256 key.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let cert = Certificate::from_der(der).map_err(|e| CertificateError::Malformed(e.to_string()))?;
        Self::from_certificate(&cert, der)
    }

    fn from_certificate(cert: &Certificate, der: &[u8]) -> Result<Self, CertificateError> {
        let tbs = &cert.tbs_certificate;
        let subject = tbs.subject.to_string();
        let spki = &tbs.subject_public_key_info;
        let bits = spki.subject_public_key.raw_bytes();
        let unsupported = |what: String| CertificateError::UnsupportedKey {
            subject: subject.clone(),
            what,
        };
        let key = if spki.algorithm.oid == RSA_ENCRYPTION {
            use rsa::pkcs1::DecodeRsaPublicKey;
            PublicKey::Rsa(rsa::RsaPublicKey::from_pkcs1_der(bits).map_err(|e| unsupported(format!("RSA key: {e}")))?)
        } else if spki.algorithm.oid == ID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            if curve != Some(PRIME256V1) {
                return Err(unsupported(format!("EC curve {curve:?} (only P-256)")));
            }
            PublicKey::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                    .map_err(|e| unsupported(format!("P-256 point: {e}")))?,
            )
        } else {
            return Err(unsupported(format!("algorithm {}", spki.algorithm.oid)));
        };
        let issuer = tbs
            .issuer
            .to_der()
            .map_err(|e| CertificateError::Malformed(e.to_string()))?;
        Ok(Self {
            issuer,
            serial: tbs.serial_number.as_bytes().to_vec(),
            key,
            signer: Signer {
                subject,
                fingerprint: hex::encode(&Sha256::digest(der)),
            },
        })
    }

    /// Who this certificate names, as reports show it.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }
}

/// Why one certificate is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Not a DER X.509 certificate.
    #[error("{0}")]
    Malformed(String),
    /// A key type the checker does not implement.
    #[error("unsupported public key in {subject}: {what}")]
    UnsupportedKey {
        /// The certificate's subject.
        subject: String,
        /// Which key type.
        what: String,
    },
}

/// The certificate whose key verified a root-hash signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signer {
    /// The certificate's subject (RFC 4514).
    pub subject: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
}

/// The certificates a check trusts, as a kernel keyring holds them. Empty trusts nothing.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    certificates: Vec<TrustedCertificate>,
}

impl Keyring {
    /// A keyring trusting nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds a certificate.
    pub fn push(&mut self, certificate: TrustedCertificate) {
        self.certificates.push(certificate);
    }

    /// The certificates, in the order they were added.
    pub fn certificates(&self) -> &[TrustedCertificate] {
        &self.certificates
    }

    /// Loads a file (one DER certificate, or any number of PEM `CERTIFICATE` blocks) or every regular file of
    /// a directory, in name order. Any unusable file is an error naming it: nothing is trusted by halves.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let read_err = |path: &Path, source| KeyringError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(|e| read_err(path, e))?;
        let mut files = Vec::new();
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).map_err(|e| read_err(path, e))? {
                let entry = entry.map_err(|e| read_err(path, e))?;
                if entry.file_type().map_err(|e| read_err(&entry.path(), e))?.is_file() {
                    files.push(entry.path());
                }
            }
            files.sort();
        } else {
            files.push(path.to_owned());
        }
        let mut keyring = Self::empty();
        for file in files {
            let bytes = std::fs::read(&file).map_err(|e| read_err(&file, e))?;
            for cert in parse_certificates(&bytes).map_err(|e| match e {
                CertificateError::Malformed(reason) => KeyringError::Certificate {
                    path: file.clone(),
                    reason,
                },
                CertificateError::UnsupportedKey { subject, what } => KeyringError::UnsupportedKey {
                    path: file.clone(),
                    subject,
                    what,
                },
            })? {
                keyring.push(cert);
            }
        }
        Ok(keyring)
    }

    fn find(&self, issuer: &[u8], serial: &[u8]) -> Option<&TrustedCertificate> {
        self.certificates
            .iter()
            .find(|c| c.issuer == issuer && c.serial == serial)
    }
}

/// Parses PEM `CERTIFICATE` blocks or, when the bytes are not PEM, one DER certificate.
pub fn parse_certificates(bytes: &[u8]) -> Result<Vec<TrustedCertificate>, CertificateError> {
    if bytes.starts_with(b"-----BEGIN") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let certs = Certificate::load_pem_chain(bytes).map_err(|e| CertificateError::Malformed(e.to_string()))?;
        if certs.is_empty() {
            return Err(CertificateError::Malformed("no CERTIFICATE block".into()));
        }
        certs
            .iter()
            .map(|c| {
                let der = c.to_der().map_err(|e| CertificateError::Malformed(e.to_string()))?;
                TrustedCertificate::from_certificate(c, &der)
            })
            .collect()
    } else {
        Ok(vec![TrustedCertificate::from_der(bytes)?])
    }
}

/// One signer of a parsed message.
#[derive(Debug, Clone)]
struct ParsedSigner {
    /// Issuer (DER `Name`) and serial number bytes, when the signer is named that way.
    issuer_serial: Option<(Vec<u8>, Vec<u8>)>,
    /// DER `SET OF Attribute` the signature covers, when the signer has signed attributes.
    signed_attrs: Option<Vec<u8>>,
    /// The signed `messageDigest` attribute's value.
    message_digest: Option<Vec<u8>>,
    ecdsa: bool,
    signature: Vec<u8>,
}

/// A parsed root-hash signature: what the kernel's PKCS#7 parser keeps of it.
#[derive(Debug, Clone)]
pub struct ParsedSignature {
    signers: Vec<ParsedSigner>,
}

fn malformed(e: impl fmt::Display) -> SignatureError {
    SignatureError::Malformed { reason: e.to_string() }
}

fn inconsistent(reason: &str) -> SignatureError {
    SignatureError::Inconsistent {
        reason: reason.to_owned(),
    }
}

/// Parses a detached DER PKCS#7 `SignedData` the way the kernel's parser accepts it.
pub fn parse(bytes: &[u8]) -> Result<ParsedSignature, SignatureError> {
    if bytes.len() > MAX_SIGNATURE_LEN {
        return Err(SignatureError::TooLarge { len: bytes.len() });
    }
    let info = ContentInfo::from_der(bytes).map_err(malformed)?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(malformed(format_args!(
            "content type {} is not signedData",
            info.content_type
        )));
    }
    let data: SignedData = info.content.decode_as().map_err(malformed)?;
    let version = data.version as u8;
    if version != 1 && version != 3 {
        return Err(inconsistent("SignedData version is neither 1 (PKCS#7) nor 3 (CMS)"));
    }
    if data.encap_content_info.econtent_type != ID_DATA {
        return Err(SignatureError::WrongContentType {
            oid: data.encap_content_info.econtent_type.to_string(),
        });
    }
    if data.encap_content_info.econtent.is_some() {
        return Err(SignatureError::NotDetached);
    }
    let infos: Vec<&SignerInfo> = data.signer_infos.0.iter().collect();
    if infos.is_empty() {
        return Err(inconsistent("no signer"));
    }
    let with_attrs = infos.iter().filter(|s| s.signed_attrs.is_some()).count();
    if with_attrs != 0 && with_attrs != infos.len() {
        return Err(inconsistent("some signers have signed attributes and some not"));
    }
    let signers = infos
        .into_iter()
        .map(|s| parse_signer(s, version))
        .collect::<Result<_, _>>()?;
    Ok(ParsedSignature { signers })
}

fn parse_signer(s: &SignerInfo, version: u8) -> Result<ParsedSigner, SignatureError> {
    let signer_version = s.version as u8;
    match (signer_version, version) {
        (1, 1) | (3, 3) => {}
        _ => return Err(inconsistent("SignerInfo version does not match the SignedData version")),
    }
    if s.digest_alg.oid != ID_SHA256 {
        return Err(SignatureError::Unsupported {
            what: "digest algorithm",
            oid: s.digest_alg.oid.to_string(),
        });
    }
    let ecdsa = if s.signature_algorithm.oid == RSA_ENCRYPTION {
        false
    } else if ECDSA_WITH.contains(&s.signature_algorithm.oid) {
        true
    } else {
        return Err(SignatureError::Unsupported {
            what: "signature algorithm",
            oid: s.signature_algorithm.oid.to_string(),
        });
    };
    let issuer_serial = match &s.sid {
        SignerIdentifier::IssuerAndSerialNumber(is) => Some((
            is.issuer.to_der().map_err(malformed)?,
            is.serial_number.as_bytes().to_vec(),
        )),
        SignerIdentifier::SubjectKeyIdentifier(_) => None,
    };
    let (signed_attrs, message_digest) = match &s.signed_attrs {
        None => (None, None),
        Some(attrs) => {
            let mut content_type = None;
            let mut digest = None;
            for attr in attrs.iter() {
                if AUTHENTICODE_ONLY_ATTRS.contains(&attr.oid) {
                    return Err(SignatureError::AuthenticodeOnlyAttribute {
                        oid: attr.oid.to_string(),
                    });
                }
                let slot = if attr.oid == ATTR_CONTENT_TYPE {
                    &mut content_type
                } else if attr.oid == ATTR_MESSAGE_DIGEST {
                    &mut digest
                } else {
                    continue;
                };
                if slot.is_some() || attr.values.len() != 1 {
                    return Err(SignatureError::RepeatedAttribute {
                        oid: attr.oid.to_string(),
                    });
                }
                *slot = attr.values.iter().next().cloned();
            }
            let (Some(content_type), Some(digest)) = (content_type, digest) else {
                return Err(malformed("signed attributes without contentType and messageDigest"));
            };
            if content_type.decode_as::<ObjectIdentifier>().map_err(malformed)? != ID_DATA {
                return Err(malformed("the contentType attribute is not id-data"));
            }
            let digest = digest.decode_as::<OctetString>().map_err(malformed)?;
            (
                Some(attrs.to_der().map_err(malformed)?),
                Some(digest.as_bytes().to_vec()),
            )
        }
    };
    Ok(ParsedSigner {
        issuer_serial,
        signed_attrs,
        message_digest,
        ecdsa,
        signature: s.signature.as_bytes().to_vec(),
    })
}

fn describe(signer: &ParsedSigner) -> String {
    match &signer.issuer_serial {
        Some((issuer, serial)) => {
            let issuer = x509_cert::name::Name::from_der(issuer)
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".to_owned());
            format!("issuer {issuer}, serial {}", hex::encode(serial))
        }
        None => "a subject key identifier".to_owned(),
    }
}

impl ParsedSignature {
    /// Checks the message over `root_hex` (the root hash as the table spells it) against `keyring`, and
    /// returns the certificate that verified it.
    pub fn verify(&self, root_hex: &str, keyring: &Keyring) -> Result<Signer, SignatureError> {
        let content_digest = Sha256::digest(root_hex.as_bytes());
        // The kernel digests every signer first: a message digest that does not match rejects the message.
        for signer in &self.signers {
            if let Some(md) = &signer.message_digest
                && md.as_slice() != content_digest.as_slice()
            {
                return Err(SignatureError::MessageDigestMismatch {
                    root_hash: root_hex.to_owned(),
                });
            }
        }
        let mut trusted = None;
        for signer in &self.signers {
            let Some(cert) = signer
                .issuer_serial
                .as_ref()
                .and_then(|(issuer, serial)| keyring.find(issuer, serial))
            else {
                continue;
            };
            let digest = match &signer.signed_attrs {
                Some(attrs) => Sha256::digest(attrs),
                None => content_digest,
            };
            let ok = match (&cert.key, signer.ecdsa) {
                (PublicKey::Rsa(key), false) => key
                    .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &signer.signature)
                    .is_ok(),
                (PublicKey::P256(key), true) => {
                    use p256::ecdsa::signature::hazmat::PrehashVerifier;
                    p256::ecdsa::Signature::from_der(&signer.signature)
                        .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok())
                }
                _ => false,
            };
            if !ok {
                return Err(SignatureError::BadSignature {
                    subject: cert.signer.subject.clone(),
                    root_hash: root_hex.to_owned(),
                });
            }
            trusted.get_or_insert_with(|| cert.signer.clone());
        }
        trusted.ok_or_else(|| SignatureError::NoTrustedKey {
            signers: self.signers.iter().map(describe).collect::<Vec<_>>().join("; "),
        })
    }
}

/// The kernel's decision for a table with root hash `root_hex` and signature `signature` (none when the
/// table names no key), with `require_signatures` as the module parameter: `Ok(Some(signer))` when a trusted
/// certificate verified it, `Ok(None)` when unsigned and allowed.
pub fn verify_root_hash_signature(
    root_hex: &str,
    signature: Option<&[u8]>,
    keyring: &Keyring,
    require_signatures: bool,
) -> Result<Option<Signer>, SignatureError> {
    match signature {
        None | Some([]) if require_signatures => Err(SignatureError::Required),
        None | Some([]) => Ok(None),
        Some(bytes) => parse(bytes)?.verify(root_hex, keyring).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_keyring_trusts_nothing_and_no_signature_is_refused_only_when_required() {
        let root = "ab".repeat(32);
        assert_eq!(
            verify_root_hash_signature(&root, None, &Keyring::empty(), false),
            Ok(None)
        );
        let err = verify_root_hash_signature(&root, None, &Keyring::empty(), true).unwrap_err();
        assert_eq!(err.errno(), KernelErrno::Enokey);
        assert_eq!(err.errno().strerror(), "Required key not available");
    }

    #[test]
    fn too_large_a_signature_is_refused_before_parsing() {
        let big = vec![0x30; MAX_SIGNATURE_LEN + 1];
        assert_eq!(parse(&big).unwrap_err(), SignatureError::TooLarge { len: big.len() });
    }
}
