//! [`RootHash`]: a dm-verity root hash as bytes, parsed from and printed as lower-case hex.
//!
//! Root hashes cross the pipeline (conversion, signature, mount plan, device open) as this type, never as a
//! hex string, so that two spellings of one digest never compare unequal and a malformed one is refused where
//! it is read. Where a root hash came from is a separate matter: one taken from a verified signature is a
//! [`crate::sign::verify::SignedRootHash`], which only the verifier makes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use verity_fuse::Digest;
use verity_fuse::ErrorClass;
use verity_fuse::hash::MAX_DIGEST_SIZE;

/// A dm-verity root hash (the digest of the tree's top block, or of the only data block).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootHash(Digest);

/// Text that is not a root hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a root hash: {reason}")]
pub struct RootHashError {
    /// The text given.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl RootHashError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

impl RootHash {
    /// The root hash of `bytes`; `None` when empty or longer than any supported digest.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() {
            return None;
        }
        Digest::from_slice(bytes).map(Self)
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// As `verity_fuse` takes it.
    pub fn digest(&self) -> Digest {
        self.0
    }
}

impl PartialOrd for RootHash {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RootHash {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl From<Digest> for RootHash {
    fn from(digest: Digest) -> Self {
        Self(digest)
    }
}

impl FromStr for RootHash {
    type Err = RootHashError;

    /// Lower-case hex of 1 to [`MAX_DIGEST_SIZE`] bytes.
    fn from_str(text: &str) -> Result<Self, RootHashError> {
        let error = |reason| RootHashError {
            text: text.to_owned(),
            reason,
        };
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(error("not lower-case hex"));
        }
        let bytes = verity_fuse::hex::decode("root hash", text).map_err(|_| error("not hex"))?;
        if bytes.len() > MAX_DIGEST_SIZE {
            return Err(error("longer than any supported digest"));
        }
        Self::from_bytes(&bytes).ok_or_else(|| error("empty"))
    }
}

impl fmt::Display for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl fmt::Debug for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootHash({})", self.0.to_hex())
    }
}

impl Serialize for RootHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_hex())
    }
}

impl<'de> Deserialize<'de> for RootHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl PartialEq<str> for RootHash {
    fn eq(&self, hex: &str) -> bool {
        hex.parse::<RootHash>().is_ok_and(|other| other == *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lower_case_hex_and_prints_it_back() {
        let hex = "ab".repeat(32);
        let root: RootHash = hex.parse().unwrap();
        assert_eq!(root.to_string(), hex);
        assert_eq!(root.as_bytes(), &[0xab; 32]);
        assert_eq!(serde_json::to_string(&root).unwrap(), format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<RootHash>(&format!("\"{hex}\"")).unwrap(), root);
        assert!(root == *hex.as_str());
    }

    #[test]
    fn refuses_what_is_not_a_digest() {
        for bad in ["", "abc", "AB", "zz", &"00".repeat(MAX_DIGEST_SIZE + 1)] {
            assert!(bad.parse::<RootHash>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<RootHash>("\"xyz\"").is_err());
    }
}
