//! ECDSA P-256 key pairs: `PREFIX.key` (PKCS#8 PEM, mode 0600, optionally encrypted with a passphrase:
//! PBES2 with PBKDF2-SHA256 and AES-256-CBC, which `openssl pkey` reads) and `PREFIX.pub` (SPKI PEM, the
//! format `cosign verify --key` reads).
//!
//! A private key file readable or writable by group or others is refused before its bytes are used, as
//! ssh does. Parsing is pure ([`parse_private_pem`], [`parse_public_pem`]); the file functions are thin.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand::RngCore;
use verity_fuse::ErrorClass;

/// PBKDF2 iterations for an encrypted private key.
const PBKDF2_ROUNDS: u32 = 600_000;

/// The largest key file read.
const KEY_FILE_LIMIT: u64 = 64 << 10;

/// A key that cannot be made, written or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A private key file others can read or write.
    #[error(
        "private key {} has mode {mode:04o}: group and others must have no access (chmod 600 it)",
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a key of the expected format.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file (or `-` for text not read from a file).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is encrypted and no passphrase was given.
    #[error(
        "{} is encrypted: give its passphrase with --passphrase-file or VERITYLAB_PASSPHRASE",
        path.display()
    )]
    PassphraseNeeded {
        /// The file.
        path: PathBuf,
    },
    /// Decryption failed: a wrong passphrase (or a damaged file).
    #[error("{}: cannot decrypt the key: wrong passphrase or damaged file", path.display())]
    Decrypt {
        /// The file.
        path: PathBuf,
    },
    /// `keygen` would replace an existing file.
    #[error("{} exists; refusing to overwrite a key (use --force)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

impl KeyError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::Io,
            Self::Permissions { .. } | Self::Format { .. } | Self::Decrypt { .. } => ErrorClass::BadInput,
            Self::PassphraseNeeded { .. } => ErrorClass::Unavailable,
            Self::Exists { .. } => ErrorClass::Busy,
        }
    }
}

/// A trusted public key and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key.
    pub key: VerifyingKey,
    /// `sha256:<hex>` of its SPKI DER encoding.
    pub fingerprint: String,
    /// The file it was read from.
    pub source: PathBuf,
}

impl PublicKey {
    /// Wraps a verifying key (`source` names where it came from).
    pub fn new(key: VerifyingKey, source: &Path) -> Self {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        Self {
            key,
            fingerprint: crate::oci::Digest::of(&der).to_string(),
            source: source.to_owned(),
        }
    }
}

/// Files written by [`write_pair`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyPairFiles {
    /// `PREFIX.key`.
    pub private: PathBuf,
    /// `PREFIX.pub`.
    pub public: PathBuf,
    /// The public key's fingerprint.
    pub fingerprint: String,
    /// Whether the private key is encrypted.
    pub encrypted: bool,
}

/// A fresh random key.
pub fn generate() -> SigningKey {
    let mut rng = rand::rng();
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        // Fails only for zero or a value past the group order: a chance of about 2^-32; draw again.
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// The PKCS#8 PEM of `key`, encrypted when `passphrase` is given.
pub fn private_pem(key: &SigningKey, passphrase: Option<&[u8]>) -> Result<String, KeyError> {
    let format = |e: &dyn std::fmt::Display| KeyError::Format {
        path: PathBuf::from("-"),
        reason: format!("encoding the private key: {e}"),
    };
    let plain = key.to_pkcs8_der().map_err(|e| format(&e))?;
    let pem = match passphrase {
        None => plain.to_pem("PRIVATE KEY", LineEnding::LF).map_err(|e| format(&e))?,
        Some(passphrase) => {
            let mut rng = rand::rng();
            let mut salt = [0u8; 16];
            let mut iv = [0u8; 16];
            rng.fill_bytes(&mut salt);
            rng.fill_bytes(&mut iv);
            let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ROUNDS, &salt, &iv)
                .map_err(|e| format(&e))?;
            let info = pkcs8::PrivateKeyInfo::try_from(plain.as_bytes()).map_err(|e| format(&e))?;
            info.encrypt_with_params(params, passphrase)
                .map_err(|e| format(&e))?
                .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
                .map_err(|e| format(&e))?
        }
    };
    Ok(pem.as_str().to_owned())
}

/// The SPKI PEM of a public key.
pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// Parses a PKCS#8 PEM private key (`PRIVATE KEY`, or `ENCRYPTED PRIVATE KEY` with `passphrase`).
/// `path` only names the source in errors.
pub fn parse_private_pem(text: &str, passphrase: Option<&[u8]>, path: &Path) -> Result<SigningKey, KeyError> {
    let format = |reason: String| KeyError::Format {
        path: path.to_owned(),
        reason,
    };
    match pem_label(text) {
        Some("PRIVATE KEY") => {
            SigningKey::from_pkcs8_pem(text).map_err(|e| format(format!("not a PKCS#8 P-256 private key: {e}")))
        }
        Some("ENCRYPTED PRIVATE KEY") => {
            let passphrase = passphrase.ok_or_else(|| KeyError::PassphraseNeeded { path: path.to_owned() })?;
            SigningKey::from_pkcs8_encrypted_pem(text, passphrase).map_err(|e| match e {
                pkcs8::Error::EncryptedPrivateKey(_) => KeyError::Decrypt { path: path.to_owned() },
                e => format(format!("not an encrypted PKCS#8 P-256 private key: {e}")),
            })
        }
        Some("EC PRIVATE KEY") => Err(format(
            "a SEC1 \"EC PRIVATE KEY\", not PKCS#8: convert it with `openssl pkcs8 -topk8`".to_owned(),
        )),
        Some("ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY") => Err(format(
            "cosign's own encrypted key format is not supported: use `veritylab keygen` or a PKCS#8 key".to_owned(),
        )),
        Some(other) => Err(format(format!("a PEM {other:?}, not a private key"))),
        None => Err(format("not a PEM file".to_owned())),
    }
}

/// Parses an SPKI PEM public key (`PUBLIC KEY`) of curve P-256. `path` only names the source in errors.
pub fn parse_public_pem(text: &str, path: &Path) -> Result<PublicKey, KeyError> {
    let format = |reason: String| KeyError::Format {
        path: path.to_owned(),
        reason,
    };
    match pem_label(text) {
        Some("PUBLIC KEY") => VerifyingKey::from_public_key_pem(text)
            .map(|key| PublicKey::new(key, path))
            .map_err(|e| format(format!("not an SPKI P-256 public key: {e}"))),
        Some(other) => Err(format(format!("a PEM {other:?}, not a PUBLIC KEY"))),
        None => Err(format("not a PEM file".to_owned())),
    }
}

/// The label of the first PEM block in `text`.
fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

/// Reads a private key file: refused if its mode lets group or others in, then parsed.
pub fn load_private(path: &Path, passphrase: Option<&[u8]>) -> Result<SigningKey, KeyError> {
    let io = |what| {
        move |source| KeyError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let file = File::open(path).map_err(io("opening"))?;
    let mode = file.metadata().map_err(io("reading the mode of"))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let text = read_text(file, path)?;
    parse_private_pem(&text, passphrase, path)
}

/// Reads a public key file.
pub fn load_public(path: &Path) -> Result<PublicKey, KeyError> {
    let file = File::open(path).map_err(|source| KeyError::Io {
        what: "opening",
        path: path.to_owned(),
        source,
    })?;
    let text = read_text(file, path)?;
    parse_public_pem(&text, path)
}

fn read_text(file: File, path: &Path) -> Result<String, KeyError> {
    let mut bytes = Vec::new();
    file.take(KEY_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| KeyError::Io {
            what: "reading",
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > KEY_FILE_LIMIT {
        return Err(KeyError::Format {
            path: path.to_owned(),
            reason: format!("larger than {KEY_FILE_LIMIT} bytes: not a key file"),
        });
    }
    String::from_utf8(bytes).map_err(|_| KeyError::Format {
        path: path.to_owned(),
        reason: "not text: not a PEM file".to_owned(),
    })
}

/// Generates a key pair and writes `PREFIX.key` (mode 0600) and `PREFIX.pub` (0644), each through a
/// temporary file and a rename. Existing files are kept unless `force`.
pub fn write_pair(prefix: &Path, passphrase: Option<&[u8]>, force: bool) -> Result<KeyPairFiles, KeyError> {
    let with_ext = |ext: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    let (private, public) = (with_ext(".key"), with_ext(".pub"));
    if !force {
        for path in [&private, &public] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(KeyError::Exists { path: path.clone() });
            }
        }
    }
    let key = generate();
    let verifying = *key.verifying_key();
    write_file(&private, private_pem(&key, passphrase)?.as_bytes(), 0o600)?;
    write_file(&public, public_pem(&verifying).as_bytes(), 0o644)?;
    Ok(KeyPairFiles {
        private,
        public: public.clone(),
        fingerprint: PublicKey::new(verifying, &public).fingerprint,
        encrypted: passphrase.is_some(),
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |what| {
        move |source| KeyError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The temporary file is created 0600, so the secret is never readable by others, even for a moment.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io("creating a temporary file for"))?;
    tmp.write_all(bytes).map_err(io("writing"))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of"))?;
    tmp.as_file().sync_all().map_err(io("syncing"))?;
    tmp.persist(path).map_err(|e| io("renaming into")(e.error))?;
    Ok(())
}

/// Reads a passphrase: the first line of `file` when given, else `VERITYLAB_PASSPHRASE` when set.
pub fn passphrase(file: Option<&Path>) -> Result<Option<Vec<u8>>, KeyError> {
    if let Some(path) = file {
        let file = File::open(path).map_err(|source| KeyError::Io {
            what: "opening",
            path: path.to_owned(),
            source,
        })?;
        let text = read_text(file, path)?;
        let line = text.lines().next().unwrap_or_default();
        return Ok(Some(line.as_bytes().to_vec()));
    }
    Ok(std::env::var_os("VERITYLAB_PASSPHRASE").map(|v| v.into_encoded_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};

    #[test]
    fn plain_and_encrypted_keys_round_trip() {
        let key = generate();
        let path = Path::new("test.key");
        let plain = private_pem(&key, None).unwrap();
        assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(parse_private_pem(&plain, None, path).unwrap(), key);
        let encrypted = private_pem(&key, Some(b"secret")).unwrap();
        assert!(encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert_eq!(parse_private_pem(&encrypted, Some(b"secret"), path).unwrap(), key);
        assert!(matches!(
            parse_private_pem(&encrypted, None, path),
            Err(KeyError::PassphraseNeeded { .. })
        ));
        assert!(matches!(
            parse_private_pem(&encrypted, Some(b"wrong"), path),
            Err(KeyError::Decrypt { .. })
        ));
        let public = parse_public_pem(&public_pem(key.verifying_key()), path).unwrap();
        let signature: p256::ecdsa::Signature = key.sign(b"payload");
        assert!(public.key.verify(b"payload", &signature).is_ok());
        assert!(public.fingerprint.starts_with("sha256:"));
    }

    #[test]
    fn wrong_formats_are_named() {
        let path = Path::new("x");
        let err = |text: &str| parse_private_pem(text, None, path).unwrap_err().to_string();
        assert!(err("hello").contains("not a PEM"));
        assert!(err("-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n").contains("SEC1"));
        assert!(err("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n").contains("not a private key"));
        assert!(err("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").contains("PKCS#8"));
        let public = parse_public_pem(&private_pem(&generate(), None).unwrap(), path).unwrap_err();
        assert!(public.to_string().contains("not a PUBLIC KEY"), "{public}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(body in "[A-Za-z0-9+/=\n]{0,200}") {
            for label in ["PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "PUBLIC KEY"] {
                let text = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
                let _ = parse_private_pem(&text, Some(b"p"), Path::new("x"));
                let _ = parse_public_pem(&text, Path::new("x"));
            }
        }
    }
}
