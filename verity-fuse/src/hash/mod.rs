//! Hash algorithms and the salted block digest of dm-verity.
//!
//! A [`BlockHasher`] holds the algorithm, the hash type and the salt, and computes the digest of one block:
//! `H(salt ‖ block)` for hash type 1, `H(block ‖ salt)` for hash type 0 (Chrome OS). For type 1 the salt is
//! absorbed once and the hash state cloned per block.
//!
//! For sha256 on CPUs with the x86 SHA extensions, [`BlockHasher::digest_pair`] and
//! [`BlockHasher::digest_many`] hash two blocks at once, interleaved (`sha256x2`, the crate's one module
//! with `unsafe` code); elsewhere, and for the other algorithms, they hash one block at a time with the
//! portable code. Both give the same digests.

#[allow(unsafe_code, reason = "SHA-NI intrinsics; the crate's one module with unsafe code")]
mod sha256x2;

use std::fmt;
use std::str::FromStr;

use crate::class::ErrorClass;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use sha256x2::{Engine, Lanes};

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

impl UnknownAlgorithm {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

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
    /// Two-way sha256 states with the salt of a type-1 tree absorbed, where the CPU runs the two-way path.
    pair: Option<Lanes>,
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
        let pair = (algorithm == Algorithm::Sha256)
            .then(Engine::detect)
            .flatten()
            .map(|engine| {
                let mut lanes = Lanes::new(engine);
                lanes.update(prefix, prefix);
                lanes
            });
        Self {
            state,
            salt_after: (!salt_first).then(|| salt.to_vec()),
            digest_size: algorithm.digest_size(),
            pair,
        }
    }

    /// This hasher without the two-way path: every digest is computed one block at a time by the portable
    /// code, as on a CPU without SHA extensions. For tests and benchmarks that compare the two.
    pub fn portable(mut self) -> Self {
        self.pair = None;
        self
    }

    /// Whether [`digest_pair`](Self::digest_pair) hashes two blocks at once (sha256 on a CPU with SHA-NI).
    pub fn is_two_way(&self) -> bool {
        self.pair.is_some()
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

    /// The salted digests of two blocks, the same as two calls to [`digest`](Self::digest). Blocks of the
    /// same length are hashed together, interleaved, where the CPU allows (see
    /// [`is_two_way`](Self::is_two_way)).
    pub fn digest_pair(&self, a: &[u8], b: &[u8]) -> [Digest; 2] {
        match self.pair {
            Some(mut lanes) if a.len() == b.len() => {
                lanes.update(a, b);
                if let Some(tail) = &self.salt_after {
                    lanes.update(tail, tail);
                }
                lanes
                    .finish()
                    .map(|d| Digest::from_slice(&d).expect("a sha256 digest fits"))
            }
            _ => [self.digest(a), self.digest(b)],
        }
    }

    /// The salted digests of `blocks`, handed to `out` in order with each block's index; consecutive blocks
    /// go through [`digest_pair`](Self::digest_pair) two at a time.
    pub fn digest_many<'a>(&self, blocks: impl IntoIterator<Item = &'a [u8]>, mut out: impl FnMut(usize, Digest)) {
        let mut blocks = blocks.into_iter().enumerate();
        while let Some((i, a)) = blocks.next() {
            match blocks.next() {
                Some((j, b)) => {
                    let [da, db] = self.digest_pair(a, b);
                    out(i, da);
                    out(j, db);
                }
                None => out(i, self.digest(a)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    /// `len` bytes of a deterministic pseudo-random stream picked by `seed`.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        use rand::{RngCore, SeedableRng};
        let mut out = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut out);
        out
    }

    /// The salted sha256 digest of `block`, computed by `sha2` alone.
    fn oracle(salt: &[u8], block: &[u8], salt_first: bool) -> Vec<u8> {
        let message = if salt_first {
            [salt, block].concat()
        } else {
            [block, salt].concat()
        };
        Sha256::digest(message).to_vec()
    }

    /// Salt lengths around the chunk and padding boundaries of SHA-256, and any other up to 256.
    fn salt_len() -> impl Strategy<Value = usize> {
        prop_oneof![
            prop::sample::select(vec![
                0usize, 1, 32, 55, 56, 57, 63, 64, 65, 119, 120, 121, 127, 128, 255, 256
            ]),
            0usize..=256,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// `digest_pair` and `digest_many` give exactly the digests of `sha2`, for both hash types.
        #[test]
        fn two_way_digests_match_sha2(
            salt_len in salt_len(),
            block_bits in 9u32..=16,
            blocks in 0usize..6,
            salt_first in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let block_size = 1usize << block_bits;
            let salt = bytes(seed, salt_len);
            let data = bytes(seed ^ 1, blocks * block_size);
            let hasher = BlockHasher::new(Algorithm::Sha256, &salt, salt_first);
            let mut seen = 0;
            hasher.digest_many(data.chunks_exact(block_size), |i, digest| {
                assert_eq!(i, seen, "digests come in order");
                seen += 1;
                let block = &data[i * block_size..][..block_size];
                assert_eq!(digest.as_bytes(), oracle(&salt, block, salt_first), "block {i}");
            });
            prop_assert_eq!(seen, blocks);
            let (a, b) = (bytes(seed ^ 2, block_size), bytes(seed ^ 3, block_size));
            let [da, db] = hasher.digest_pair(&a, &b);
            prop_assert_eq!(da.as_bytes(), oracle(&salt, &a, salt_first));
            prop_assert_eq!(db.as_bytes(), oracle(&salt, &b, salt_first));
        }

        /// Blocks of any length, and pairs of unequal length, hash as `sha2` does.
        #[test]
        fn odd_lengths_match_sha2(
            salt_len in salt_len(),
            len_a in 0usize..700,
            len_b in 0usize..700,
            salt_first in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let salt = bytes(seed, salt_len);
            let (a, b) = (bytes(seed ^ 2, len_a), bytes(seed ^ 3, len_b));
            let hasher = BlockHasher::new(Algorithm::Sha256, &salt, salt_first);
            for (x, y) in [(&a[..], &b[..]), (&a, &a), (&b, &b)] {
                let [dx, dy] = hasher.digest_pair(x, y);
                prop_assert_eq!(dx.as_bytes(), oracle(&salt, x, salt_first));
                prop_assert_eq!(dy.as_bytes(), oracle(&salt, y, salt_first));
            }
        }
    }

    #[test]
    fn sha256_takes_the_two_way_path_where_the_cpu_has_sha_ni() {
        let hasher = BlockHasher::new(Algorithm::Sha256, b"salt", true);
        if !hasher.is_two_way() {
            testkit::skip(
                "sha256_takes_the_two_way_path_where_the_cpu_has_sha_ni",
                "this CPU lacks SHA-NI, SSSE3 or SSE4.1",
            );
        }
        for alg in [Algorithm::Sha1, Algorithm::Sha512, Algorithm::Blake3] {
            assert!(!BlockHasher::new(alg, b"salt", true).is_two_way(), "{alg}");
        }
    }

    #[test]
    fn forced_portable_path_gives_the_same_digests() {
        let salt = bytes(7, 70);
        let data = bytes(8, 5 * 4096);
        for salt_first in [true, false] {
            for alg in Algorithm::ALL {
                let hasher = BlockHasher::new(alg, &salt, salt_first);
                let portable = hasher.clone().portable();
                assert!(!portable.is_two_way());
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                hasher.digest_many(data.chunks_exact(4096), |_, d| fast.push(d));
                portable.digest_many(data.chunks_exact(4096), |_, d| slow.push(d));
                let single: Vec<Digest> = data.chunks_exact(4096).map(|b| hasher.digest(b)).collect();
                assert_eq!(fast, single, "{alg}");
                assert_eq!(slow, single, "{alg}");
                if alg == Algorithm::Sha256 {
                    assert_eq!(single[0].as_bytes(), oracle(&salt, &data[..4096], salt_first));
                }
            }
        }
    }
}
