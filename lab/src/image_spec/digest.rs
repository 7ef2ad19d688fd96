//! Content digests (`sha256:<64 hex>`) and checking bytes against a descriptor's digest and size.
//!
//! Only sha256 is accepted: it is what every registry and layout writes, and refusing the rest keeps a
//! descriptor from naming a weaker algorithm.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};
use verity_fuse::ErrorClass;

/// A sha256 content digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a digest string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// An algorithm other than sha256.
    #[error("digest {digest:?}: algorithm {algorithm:?} is not supported (only sha256)")]
    Algorithm {
        /// The digest as written.
        digest: String,
        /// Its algorithm part.
        algorithm: String,
    },
    /// Not `ALGORITHM:HEX`, or not 64 lower-case hex digits.
    #[error("digest {digest:?} is not sha256:<64 lower-case hex digits>")]
    Malformed {
        /// The digest as written.
        digest: String,
    },
}

impl DigestError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Bytes that are not what their descriptor promised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The content hashes to something else.
    #[error("content of {expected} hashes to {found}")]
    DigestMismatch {
        /// The digest the descriptor (or reference) promised.
        expected: Digest,
        /// The digest of the bytes received.
        found: Digest,
    },
    /// The content has another length.
    #[error("content of {digest} is {found} bytes, its descriptor says {expected}")]
    SizeMismatch {
        /// The digest of the content.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Size received (for a stream that ran over, the bytes read before stopping).
        found: u64,
    },
    /// The descriptor's size exceeds what we accept for this kind of content.
    #[error("{digest} is {size} bytes, over the limit of {limit} bytes for {what}")]
    TooLarge {
        /// The digest of the content.
        digest: Digest,
        /// Size claimed or seen.
        size: u64,
        /// The limit.
        limit: u64,
        /// What kind of content (`manifest`, `blob`).
        what: &'static str,
    },
}

impl VerifyError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::VerificationFailed
    }
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest whose raw bytes are `bytes` (a sha256 computed while streaming elsewhere).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> String {
        verity_fuse::hex::encode(&self.0)
    }

    /// `sha256:` and the first 12 hex digits, for progress labels.
    pub fn short(&self) -> String {
        format!("sha256:{}", &self.hex()[..12])
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks `bytes` against this digest and `size`.
    pub fn verify(&self, size: u64, bytes: &[u8]) -> Result<(), VerifyError> {
        if bytes.len() as u64 != size {
            return Err(VerifyError::SizeMismatch {
                digest: *self,
                expected: size,
                found: bytes.len() as u64,
            });
        }
        let found = Digest::of(bytes);
        if found != *self {
            return Err(VerifyError::DigestMismatch { expected: *self, found });
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Self, DigestError> {
        let malformed = || DigestError::Malformed {
            digest: text.to_owned(),
        };
        let (algorithm, hex) = text.split_once(':').ok_or_else(malformed)?;
        if algorithm != "sha256" {
            return Err(DigestError::Algorithm {
                digest: text.to_owned(),
                algorithm: algorithm.to_owned(),
            });
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(malformed());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|_| malformed())?;
            out[i] = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
        }
        Ok(Self(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes and counts what passes through it and refuses to read past `limit` bytes.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`; reading more than `limit` bytes fails with `InvalidData`.
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
            limit,
        }
    }

    /// Bytes read so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Reads the rest of the stream (within the limit), then checks digest and size.
    pub(crate) fn finish(mut self, expected: &Digest, size: u64) -> io::Result<Result<(), VerifyError>> {
        io::copy(&mut self, &mut io::sink())?;
        if self.read != size {
            return Ok(Err(VerifyError::SizeMismatch {
                digest: *expected,
                expected: size,
                found: self.read,
            }));
        }
        let found = Digest(self.hasher.finalize().into());
        Ok(if found == *expected {
            Ok(())
        } else {
            Err(VerifyError::DigestMismatch {
                expected: *expected,
                found,
            })
        })
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte past the limit so an over-long stream is noticed rather than cut silently.
        let room = (self.limit + 1).saturating_sub(self.read);
        if room == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "content runs past its declared size",
            ));
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("content runs past its declared size of {} bytes", self.limit),
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_refuse_other_algorithms() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!(matches!(
            "sha512:00".parse::<Digest>(),
            Err(DigestError::Algorithm { .. })
        ));
        assert!(matches!(
            "sha256:AB".parse::<Digest>(),
            Err(DigestError::Malformed { .. })
        ));
        let upper = d.to_string().to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(upper.parse::<Digest>(), Err(DigestError::Malformed { .. })));
    }

    #[test]
    fn verify_checks_size_then_digest() {
        let d = Digest::of(b"abc");
        assert_eq!(d.verify(3, b"abc"), Ok(()));
        assert!(matches!(
            d.verify(4, b"abc"),
            Err(VerifyError::SizeMismatch { found: 3, .. })
        ));
        assert!(matches!(d.verify(3, b"abd"), Err(VerifyError::DigestMismatch { .. })));
    }

    #[test]
    fn hashing_reader_catches_short_long_and_changed_streams() {
        let d = Digest::of(b"hello");
        let ok = HashingReader::new(&b"hello"[..], 5).finish(&d, 5).unwrap();
        assert_eq!(ok, Ok(()));
        let short = HashingReader::new(&b"hell"[..], 5).finish(&d, 5).unwrap();
        assert!(matches!(short, Err(VerifyError::SizeMismatch { found: 4, .. })));
        assert!(HashingReader::new(&b"hello!"[..], 5).finish(&d, 5).is_err());
        let changed = HashingReader::new(&b"jello"[..], 5).finish(&d, 5).unwrap();
        assert!(matches!(changed, Err(VerifyError::DigestMismatch { .. })));
    }
}
