//! IPE (Integrity Policy Enforcement, the `ipe` LSM of Linux 6.12+) policies that let a node execute only
//! what comes from dm-verity volumes whose root-hash signature the kernel checked.
//!
//! [`Policy::text`] writes the policy in IPE's line format: a header naming it and its version, a global
//! `DEFAULT action=ALLOW` for the operations this policy leaves alone (module and firmware loads, kexec,
//! policy and certificate loads), `DEFAULT op=EXECUTE action=DENY`, and two rules that allow execution (and
//! `mmap`/`mprotect` with `PROT_EXEC`, which IPE counts as `EXECUTE`) of files on the initramfs
//! (`boot_verified=TRUE`) and on a dm-verity device whose root-hash signature the kernel verified
//! (`dmverity_signature=TRUE`). [`Policy::signed`] wraps that text in a PKCS#7 `SignedData` that carries it
//! (`kernel_signature::pkcs7_signature` with the content attached), the form
//! `/sys/kernel/security/ipe/new_policy` takes; the kernel checks it against its secondary and platform
//! keyrings like a root-hash signature.
//!
//! [`PolicyName::parse`] refuses names the kernel would not load: IPE's parser splits a line into tokens at
//! spaces and tabs and cuts it at `#`, and the name becomes a directory under
//! `/sys/kernel/security/ipe/policies/`, so it cannot hold `/`, be `.` or `..`, or be longer than 255 bytes.
//! We also refuse control characters and anything outside printable ASCII, which the kernel would take but a
//! shell and a log line would garble.

use std::fmt;
use std::path::{Path, PathBuf};

use p256::ecdsa::SigningKey;
use verity_fuse::ErrorClass;

use crate::sign::kernel_signature::{self, Content, KernelSignatureError};
use crate::store::StoreError;

/// The longest policy name: a file name under securityfs.
pub const MAX_NAME_LEN: usize = 255;

/// The name the policy gets when none is given.
pub const DEFAULT_NAME: &str = "veritylab";

/// The version a new policy gets when none is given.
pub const DEFAULT_VERSION: PolicyVersion = PolicyVersion([0, 0, 1]);

/// A policy name the kernel accepts (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyName(String);

impl PolicyName {
    /// Checks `name` against what IPE loads.
    pub fn parse(name: &str) -> Result<Self, IpeError> {
        let bad = |reason: &str| IpeError::BadName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("it is longer than 255 bytes"));
        }
        if name == "." || name == ".." {
            return Err(bad("it is not a directory name securityfs can create"));
        }
        if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(bad(&format!(
                "{c:?} is not printable ASCII (IPE splits tokens at spaces and tabs)"
            )));
        }
        if name.contains('/') {
            return Err(bad("'/' cannot be in the name of a securityfs directory"));
        }
        if name.contains('#') {
            return Err(bad("'#' starts a comment in an IPE policy"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A policy version, `MAJOR.MINOR.REVISION`, each 0 to 65535; the kernel only replaces or activates a policy
/// with one at least as high as the active one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyVersion(pub [u16; 3]);

impl std::str::FromStr for PolicyVersion {
    type Err = IpeError;

    fn from_str(text: &str) -> Result<Self, IpeError> {
        let bad = || IpeError::BadVersion { text: text.to_owned() };
        let mut parts = [0u16; 3];
        let mut fields = text.split('.');
        for part in &mut parts {
            let field = fields.next().ok_or_else(bad)?;
            if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            *part = field.parse().map_err(|_| bad())?;
        }
        if fields.next().is_some() {
            return Err(bad());
        }
        Ok(Self(parts))
    }
}

impl fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor, revision] = self.0;
        write!(f, "{major}.{minor}.{revision}")
    }
}

/// The policy: execute only from the initramfs and from signature-checked dm-verity volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its name (the directory under `/sys/kernel/security/ipe/policies/`).
    pub name: PolicyName,
    /// Its version.
    pub version: PolicyVersion,
}

impl Policy {
    /// The policy in IPE's text format.
    pub fn text(&self) -> String {
        format!(
            "policy_name={} policy_version={}\n\
             DEFAULT action=ALLOW\n\
             DEFAULT op=EXECUTE action=DENY\n\
             op=EXECUTE boot_verified=TRUE action=ALLOW\n\
             op=EXECUTE dmverity_signature=TRUE action=ALLOW\n",
            self.name, self.version
        )
    }

    /// The text signed by `key`, whose certificate (DER) is `certificate`: a DER PKCS#7 carrying the text.
    pub fn signed(&self, key: &SigningKey, certificate: &[u8]) -> Result<Vec<u8>, IpeError> {
        Ok(kernel_signature::pkcs7_signature(
            key,
            certificate,
            self.text().as_bytes(),
            Content::Attached,
        )?)
    }
}

/// The files [`write()`] made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyFiles {
    /// The policy's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The text (`NAME.ipe`).
    pub text: PathBuf,
    /// The signed policy (`NAME.ipe.p7s`), what `new_policy` takes.
    pub signed: PathBuf,
}

/// Writes `NAME.ipe` and `NAME.ipe.p7s` into `dir`, each through a temporary file and a rename; nothing is
/// written when signing fails.
pub fn write(policy: &Policy, key: &SigningKey, certificate: &[u8], dir: &Path) -> Result<PolicyFiles, IpeError> {
    let signed = policy.signed(key, certificate)?;
    let text_path = dir.join(format!("{}.ipe", policy.name));
    let signed_path = dir.join(format!("{}.ipe.p7s", policy.name));
    crate::store::write_atomically(&text_path, policy.text().as_bytes())?;
    crate::store::write_atomically(&signed_path, &signed)?;
    Ok(PolicyFiles {
        name: policy.name.to_string(),
        version: policy.version.to_string(),
        text: text_path,
        signed: signed_path,
    })
}

/// Where securityfs shows IPE when the kernel has it and securityfs is mounted.
pub const SECURITYFS_IPE: &str = "/sys/kernel/security/ipe";

/// The kernel's IPE interface in securityfs: loading, activating and enforcing a signed policy, and reading
/// which policy is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Securityfs {
    dir: PathBuf,
}

/// A policy the kernel holds, as securityfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadedPolicy {
    /// Its name (its directory under `policies/`).
    pub name: String,
    /// SHA-256 of the signed policy the kernel keeps (`policies/NAME/pkcs7`), lowercase hex.
    pub pkcs7_sha256: String,
}

/// The largest signed policy `read_signed` takes (a signed policy is a few kilobytes).
pub const MAX_SIGNED_POLICY: u64 = 1 << 20;

/// Reads a signed policy file (`NAME.ipe.p7s`) of at most [`MAX_SIGNED_POLICY`] bytes.
pub fn read_signed(path: &Path) -> Result<Vec<u8>, IpeError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(MAX_SIGNED_POLICY + 1).read_to_end(&mut bytes));
    let failed = |reason: String| IpeError::Read {
        path: path.to_owned(),
        reason,
    };
    read.map_err(|e| failed(e.to_string()))?;
    if bytes.len() as u64 > MAX_SIGNED_POLICY {
        return Err(failed(format!("larger than {MAX_SIGNED_POLICY} bytes")));
    }
    Ok(bytes)
}

/// The largest file read back from securityfs (a signed policy is a few kilobytes).
const SECURITYFS_READ_LIMIT: u64 = 1 << 20;

impl Securityfs {
    /// IPE at [`SECURITYFS_IPE`], when this kernel has it (and securityfs is mounted).
    pub fn find() -> Option<Self> {
        Self::at(Path::new(SECURITYFS_IPE))
    }

    /// IPE at `dir`, when `dir` has IPE's files.
    pub fn at(dir: &Path) -> Option<Self> {
        dir.join("new_policy").exists().then(|| Self { dir: dir.to_owned() })
    }

    /// Loads `signed` (a signed policy, as `veritylab ipe policy` writes it) unless the kernel holds the very
    /// same policy already, activates it and turns enforcement on; returns it as the kernel holds it.
    pub fn load_and_activate(&self, signed: &[u8]) -> Result<LoadedPolicy, IpeError> {
        let ours = sha256_hex(signed);
        let loaded = match self.policies()?.into_iter().find(|p| p.pkcs7_sha256 == ours) {
            Some(policy) => policy,
            None => {
                self.write(&self.dir.join("new_policy"), signed)?;
                self.policies()?
                    .into_iter()
                    .find(|p| p.pkcs7_sha256 == ours)
                    .ok_or_else(|| IpeError::Kernel {
                        what: "finding the policy just loaded".to_owned(),
                        reason: "no policy under policies/ holds it".to_owned(),
                    })?
            }
        };
        self.write(&self.dir.join("policies").join(&loaded.name).join("active"), b"1")?;
        self.write(&self.dir.join("enforce"), b"1")?;
        Ok(loaded)
    }

    /// The active policy, if any.
    pub fn active(&self) -> Result<Option<LoadedPolicy>, IpeError> {
        for policy in self.policies()? {
            let active = self.read(&self.dir.join("policies").join(&policy.name).join("active"))?;
            if active.trim_ascii() == b"1" {
                return Ok(Some(policy));
            }
        }
        Ok(None)
    }

    /// Every policy the kernel holds.
    fn policies(&self) -> Result<Vec<LoadedPolicy>, IpeError> {
        let dir = self.dir.join("policies");
        let entries = std::fs::read_dir(&dir).map_err(|e| self.io("listing", &dir, &e))?;
        let mut policies = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io("listing", &dir, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let pkcs7 = self.read(&entry.path().join("pkcs7"))?;
            policies.push(LoadedPolicy {
                name,
                pkcs7_sha256: sha256_hex(&pkcs7),
            });
        }
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(policies)
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>, IpeError> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(SECURITYFS_READ_LIMIT).read_to_end(&mut bytes))
            .map_err(|e| self.io("reading", path, &e))?;
        Ok(bytes)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), IpeError> {
        std::fs::write(path, bytes).map_err(|e| self.io("writing", path, &e))
    }

    fn io(&self, what: &str, path: &Path, e: &std::io::Error) -> IpeError {
        IpeError::Kernel {
            what: format!("{what} {}", path.display()),
            reason: e.to_string(),
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    verity_fuse::hex::encode(&sha2::Sha256::digest(bytes))
}

/// Why a policy cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpeError {
    /// The name is one IPE would refuse.
    #[error("IPE policy name {name:?} is refused: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// The version is not `MAJOR.MINOR.REVISION` of 16-bit numbers.
    #[error("IPE policy version {text:?} is not MAJOR.MINOR.REVISION, each 0 to 65535")]
    BadVersion {
        /// The version given.
        text: String,
    },
    /// The policy cannot be signed (a certificate not of the key, an encoding failure).
    #[error(transparent)]
    Sign(#[from] KernelSignatureError),
    /// A file cannot be written.
    #[error(transparent)]
    Write(#[from] StoreError),
    /// A signed policy file cannot be read.
    #[error("reading the signed IPE policy {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The kernel's IPE interface refused or failed an operation.
    #[error("IPE in securityfs: {what}: {reason}")]
    Kernel {
        /// What was being done.
        what: String,
        /// What the kernel said.
        reason: String,
    },
}

impl IpeError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::BadName { .. } | Self::BadVersion { .. } => ErrorClass::BadInput,
            Self::Sign(e) => e.class(),
            Self::Write(e) => e.class(),
            Self::Kernel { .. } | Self::Read { .. } => ErrorClass::Io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ipe_cannot_load_are_refused() {
        for good in ["veritylab", "node-1_policy.v2", "a", &"x".repeat(255)] {
            assert!(PolicyName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a\tb",
            "a\nb",
            "a/b",
            "a#b",
            "é",
            &"x".repeat(256),
        ] {
            let e = PolicyName::parse(bad).unwrap_err();
            assert_eq!(e.class(), ErrorClass::BadInput);
            assert!(e.to_string().contains("refused"), "{e}");
        }
    }

    #[test]
    fn a_policy_is_loaded_once_activated_and_enforced_through_securityfs_files() {
        let dir = tempfile::tempdir().unwrap();
        let ipe = dir.path();
        std::fs::create_dir_all(ipe.join("policies/other")).unwrap();
        std::fs::write(ipe.join("policies/other/pkcs7"), b"someone else's").unwrap();
        std::fs::write(ipe.join("policies/other/active"), b"1\n").unwrap();
        std::fs::write(ipe.join("new_policy"), b"").unwrap();
        let fs = Securityfs::at(ipe).unwrap();
        assert_eq!(fs.active().unwrap().unwrap().name, "other");
        // The kernel would create the directory from new_policy; this stand-in has it already.
        std::fs::create_dir_all(ipe.join("policies/veritylab")).unwrap();
        std::fs::write(ipe.join("policies/veritylab/pkcs7"), b"ours").unwrap();
        std::fs::write(ipe.join("policies/veritylab/active"), b"0").unwrap();
        let loaded = fs.load_and_activate(b"ours").unwrap();
        assert_eq!(loaded.name, "veritylab");
        assert_eq!(
            std::fs::read(ipe.join("new_policy")).unwrap(),
            b"",
            "already held: not loaded again"
        );
        assert_eq!(std::fs::read(ipe.join("policies/veritylab/active")).unwrap(), b"1");
        assert_eq!(std::fs::read(ipe.join("enforce")).unwrap(), b"1");
        assert!(Securityfs::at(&ipe.join("policies")).is_none());
    }

    #[test]
    fn versions_are_three_sixteen_bit_numbers() {
        assert_eq!("1.2.3".parse::<PolicyVersion>().unwrap(), PolicyVersion([1, 2, 3]));
        assert_eq!(DEFAULT_VERSION.to_string(), "0.0.1");
        for bad in ["1.2", "1.2.3.4", "1..3", "1.2.65536", "+1.2.3", "a.b.c", ""] {
            assert!(bad.parse::<PolicyVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_policy_denies_execution_except_from_the_initramfs_and_signed_dm_verity() {
        let policy = Policy {
            name: PolicyName::parse("lab").unwrap(),
            version: DEFAULT_VERSION,
        };
        let text = policy.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "policy_name=lab policy_version=0.0.1");
        assert!(lines.contains(&"DEFAULT op=EXECUTE action=DENY"));
        assert!(lines.contains(&"op=EXECUTE dmverity_signature=TRUE action=ALLOW"));
        assert!(lines.contains(&"op=EXECUTE boot_verified=TRUE action=ALLOW"));
        assert_eq!(lines.iter().filter(|l| l.contains("action=ALLOW")).count(), 3);
    }
}
