//! Hash algorithms and the salted block digest of dm-verity.
//!
//! A [`BlockHasher`] holds the algorithm, the hash type and the salt, and computes the digest of one block:
//! `H(salt ‖ block)` for hash type 1, `H(block ‖ salt)` for hash type 0 (Chrome OS). For type 1 the salt is
//! absorbed once and the hash state cloned per block.

use std::fmt;
use std::str::FromStr;

use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};

/// Largest digest any supported algorithm produces (sha512).
pub const MAX_DIGEST_SIZE: usize = 64;

/// A hash algorithm usable for the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// SHA-1 (accepted by the kernel; weak, kept for compatibility vectors).
    Sha1,
    /// SHA-256, the default everywhere.
    Sha256,
    /// SHA-512.
    Sha512,
    /// BLAKE3 with 32-byte output. Lab only: the kernel's dm-verity does not accept it.
    Blake3,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 4] = [Self::Sha1, Self::Sha256, Self::Sha512, Self::Blake3];

    /// The name as veritysetup and the superblock spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::Blake3 => "blake3",
        }
    }

    /// Output size in bytes.
    pub fn digest_size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 | Self::Blake3 => 32,
            Self::Sha512 => 64,
        }
    }

    /// Whether kernel dm-verity (and so veritysetup) accepts this algorithm.
    pub fn kernel_supported(self) -> bool {
        !matches!(self, Self::Blake3)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An algorithm name that is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported hash algorithm `{0}` (supported: sha256, sha1, sha512, and lab-only blake3)")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// A digest of at most [`MAX_DIGEST_SIZE`] bytes, compared and printed as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    bytes: [u8; MAX_DIGEST_SIZE],
    len: u8,
}

impl Digest {
    /// A digest holding `bytes`; `None` if longer than [`MAX_DIGEST_SIZE`].
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_DIGEST_SIZE {
            return None;
        }
        let mut d = Self {
            bytes: [0; MAX_DIGEST_SIZE],
            len: bytes.len() as u8,
        };
        d.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(d)
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(self.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// A hash state with the salt of a type-1 tree already absorbed; cloned for every block.
#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "cloned once per block on the hot path: boxing would allocate per block"
)]
enum State {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha512(Sha512),
    Blake3(blake3::Hasher),
}

/// Computes salted block digests for one tree.
#[derive(Clone)]
pub struct BlockHasher {
    state: State,
    salt_after: Option<Vec<u8>>,
    digest_size: usize,
}

impl BlockHasher {
    /// A hasher for `algorithm`; `salt_first` is true for hash type 1 (`H(salt ‖ block)`).
    pub fn new(algorithm: Algorithm, salt: &[u8], salt_first: bool) -> Self {
        let prefix: &[u8] = if salt_first { salt } else { &[] };
        let state = match algorithm {
            Algorithm::Sha1 => State::Sha1(Sha1::new_with_prefix(prefix)),
            Algorithm::Sha256 => State::Sha256(Sha256::new_with_prefix(prefix)),
            Algorithm::Sha512 => State::Sha512(Sha512::new_with_prefix(prefix)),
            Algorithm::Blake3 => {
                let mut h = blake3::Hasher::new();
                h.update(prefix);
                State::Blake3(h)
            }
        };
        Self {
            state,
            salt_after: (!salt_first).then(|| salt.to_vec()),
            digest_size: algorithm.digest_size(),
        }
    }

    /// Size of the digests this hasher produces.
    pub fn digest_size(&self) -> usize {
        self.digest_size
    }

    /// The salted digest of one block.
    pub fn digest(&self, block: &[u8]) -> Digest {
        let tail: &[u8] = self.salt_after.as_deref().unwrap_or(&[]);
        let mut out = [0u8; MAX_DIGEST_SIZE];
        match &self.state {
            State::Sha1(h) => out[..20].copy_from_slice(&h.clone().chain_update(block).chain_update(tail).finalize()),
            State::Sha256(h) => out[..32].copy_from_slice(&h.clone().chain_update(block).chain_update(tail).finalize()),
            State::Sha512(h) => out.copy_from_slice(&h.clone().chain_update(block).chain_update(tail).finalize()),
            State::Blake3(h) => {
                let mut h = h.clone();
                h.update(block);
                h.update(tail);
                out[..32].copy_from_slice(h.finalize().as_bytes());
            }
        }
        Digest {
            bytes: out,
            len: self.digest_size as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_unknown_names_are_refused() {
        assert_eq!("SHA256".parse::<Algorithm>().unwrap(), Algorithm::Sha256);
        assert_eq!("blake3".parse::<Algorithm>().unwrap(), Algorithm::Blake3);
        assert!("md5".parse::<Algorithm>().is_err());
        assert!(!Algorithm::Blake3.kernel_supported());
    }

    #[test]
    fn salt_goes_first_for_type_1_and_last_for_type_0() {
        let block = b"block";
        let t1 = BlockHasher::new(Algorithm::Sha256, b"salt", true).digest(block);
        let t0 = BlockHasher::new(Algorithm::Sha256, b"salt", false).digest(block);
        assert_eq!(t1.as_bytes(), Sha256::digest(b"saltblock").as_slice());
        assert_eq!(t0.as_bytes(), Sha256::digest(b"blocksalt").as_slice());
        let b3 = BlockHasher::new(Algorithm::Blake3, b"s", true).digest(block);
        assert_eq!(b3.as_bytes(), blake3::hash(b"sblock").as_bytes());
    }
}
