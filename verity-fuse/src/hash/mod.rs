//! Hash algorithms, the salted block digest of dm-verity, and the SHA-256 engines that compute it.
//!
//! A [`BlockHasher`] holds the algorithm, the hash type and the salt, and computes the digest of one block:
//! `H(salt ‖ block)` for hash type 1, `H(block ‖ salt)` for hash type 0 (Chrome OS). For type 1 the salt is
//! absorbed once and the hash state cloned per block.
//!
//! For sha256, [`BlockHasher::digest_many`] hashes runs of equal-sized blocks (a tree level, the blocks of a
//! read) several at once with an [`Engine`]: sixteen lanes of AVX-512 (`avx512_x16`), eight lanes of AVX2
//! (`avx2_x8`), or two interleaved SHA-NI streams (`sha_ni_x2`); each of those modules holds the only
//! `unsafe` code of its engine, and a value of its engine type exists only once the CPU was probed for the
//! features it needs. The safe driver `lanes` turns whole blocks, salt and padding into equal runs of 64-byte
//! chunks for them. The portable engine is the `sha2` crate one block at a time. Every engine gives the same
//! digests; [`Engine::fastest`] picks one per process from the CPU's features and a short calibration, and
//! [`set_process_engine`] forces one (`verity-fuse --engine`).

#[allow(
    unsafe_code,
    reason = "AVX2 intrinsics, the only unsafe code of the eight-lane engine"
)]
mod avx2_x8;
#[allow(
    unsafe_code,
    reason = "AVX-512 intrinsics, the only unsafe code of the sixteen-lane engine"
)]
mod avx512_x16;
mod engine;
mod lanes;
#[allow(
    unsafe_code,
    reason = "SHA-NI intrinsics, the only unsafe code of the two-way engine"
)]
mod sha_ni_x2;

use std::fmt;
use std::str::FromStr;

use crate::class::ErrorClass;
use engine::Kind;
pub use engine::{Calibration, Engine, EngineChoice, EngineName, EngineUnavailable, set_process_engine};
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

/// Reads the hex [`Digest::to_hex`] writes; text that is not 1 to [`MAX_DIGEST_SIZE`] bytes of hex is an error.
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::hex::decode("digest", &text)
            .ok()
            .filter(|bytes| !bytes.is_empty())
            .and_then(|bytes| Self::from_slice(&bytes))
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a hex digest")))
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
    /// For sha256: the engine that hashes runs of blocks, and the state after the salt of a type-1 tree.
    lanes: Option<(Engine, lanes::Prefix)>,
}

impl BlockHasher {
    /// A hasher for `algorithm`; `salt_first` is true for hash type 1 (`H(salt ‖ block)`). Runs of sha256
    /// blocks go through the process's engine ([`Engine::process`]).
    pub fn new(algorithm: Algorithm, salt: &[u8], salt_first: bool) -> Self {
        let engine = (algorithm == Algorithm::Sha256).then(Engine::process);
        Self::with(algorithm, salt, salt_first, engine.unwrap_or(Engine::PORTABLE))
    }

    /// A hasher for `algorithm` whose runs of sha256 blocks go through `engine`.
    fn with(algorithm: Algorithm, salt: &[u8], salt_first: bool, engine: Engine) -> Self {
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
        let suffix_fits = salt_first || salt.len() <= lanes::MAX_SUFFIX;
        let lanes = (algorithm == Algorithm::Sha256 && suffix_fits).then(|| (engine, lanes::Prefix::new(prefix)));
        Self {
            state,
            salt_after: (!salt_first).then(|| salt.to_vec()),
            digest_size: algorithm.digest_size(),
            lanes,
        }
    }

    /// This hasher with runs of sha256 blocks hashed by `engine`. Other algorithms ignore the engine.
    pub fn with_engine(mut self, engine: Engine) -> Self {
        if let Some((e, _)) = &mut self.lanes {
            *e = engine;
        }
        self
    }

    /// This hasher with every digest computed one block at a time by the portable code, as on a CPU without
    /// SHA extensions or vector units. For tests and benchmarks that compare the two.
    pub fn portable(self) -> Self {
        self.with_engine(Engine::PORTABLE)
    }

    /// The engine runs of blocks go through: [`EngineName::Portable`] for every algorithm but sha256.
    pub fn engine(&self) -> EngineName {
        self.lanes.map_or(EngineName::Portable, |(e, _)| e.name())
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

    /// The salted digests of two blocks, the same as two calls to [`digest`](Self::digest).
    pub fn digest_pair(&self, a: &[u8], b: &[u8]) -> [Digest; 2] {
        let mut out = [Digest::from_slice(&[]).expect("empty fits"); 2];
        self.digest_many([a, b], |i, d| out[i] = d);
        out
    }

    /// The salted digests of `blocks`, handed to `out` in order with each block's index. With sha256, runs of
    /// blocks of equal length are hashed as many at a time as the engine has lanes; the blocks left over go
    /// two at a time through SHA-NI where the CPU has it, then one at a time.
    pub fn digest_many<'a>(&self, blocks: impl IntoIterator<Item = &'a [u8]>, mut out: impl FnMut(usize, Digest)) {
        let Some((engine, prefix)) = &self.lanes else {
            for (i, block) in blocks.into_iter().enumerate() {
                out(i, self.digest(block));
            }
            return;
        };
        let blocks: Vec<&[u8]> = blocks.into_iter().collect();
        let suffix = self.salt_after.as_deref().unwrap_or(&[]);
        let mut done = 0;
        let mut emit = |first: usize, digests: &[[u8; 32]]| {
            for (i, d) in digests.iter().enumerate() {
                out(first + i, Digest::from_slice(d).expect("a sha256 digest fits"));
            }
        };
        match engine.kind() {
            Kind::Avx512X16(e) => done = run(|s, r| e.compress(s, r), prefix, &blocks, suffix, done, &mut emit),
            Kind::Avx2X8(e) => done = run(|s, r| e.compress(s, r), prefix, &blocks, suffix, done, &mut emit),
            Kind::ShaNiX2(_) | Kind::Portable => {}
        }
        if let Some(e) = engine.pair() {
            done = run(|s, r| e.compress(s, r), prefix, &blocks, suffix, done, &mut emit);
        }
        for (i, block) in blocks.iter().enumerate().skip(done) {
            let d = self.digest(block);
            emit(
                i,
                std::slice::from_ref(&d.as_bytes().try_into().expect("a sha256 digest")),
            );
        }
    }
}

/// Hashes `blocks[from..]` `N` at a time through `compress` while `N` blocks of equal length remain, hands
/// their digests to `emit` with the index of the first, and returns the index of the first block left.
fn run<const N: usize>(
    compress: impl Fn(&mut [[u32; 8]; N], [&[u8]; N]) + Copy,
    prefix: &lanes::Prefix,
    blocks: &[&[u8]],
    suffix: &[u8],
    mut from: usize,
    emit: &mut impl FnMut(usize, &[[u8; 32]]),
) -> usize {
    while let Some(group) = blocks.get(from..from + N) {
        let group: [&[u8]; N] = group.try_into().expect("N blocks");
        if group.iter().any(|b| b.len() != group[0].len()) {
            break;
        }
        emit(from, &lanes::digest(compress, prefix, group, suffix));
        from += N;
    }
    from
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

    /// Every engine this CPU runs, printed once per test run, with those it lacks named; under
    /// `VERITYLAB_REQUIRE_ALL` an engine whose CPU features are present must also have been made.
    fn engines() -> Vec<Engine> {
        let engines = Engine::supported();
        let run: Vec<EngineName> = engines.iter().map(|e| e.name()).collect();
        let missing: Vec<EngineName> = EngineName::ALL.into_iter().filter(|n| !run.contains(n)).collect();
        eprintln!("sha256 engines exercised: {run:?}; not run by this CPU: {missing:?}");
        #[cfg(target_arch = "x86_64")]
        if testkit::require_all() {
            let has = |f: &[bool]| f.iter().all(|&b| b);
            let expected = [
                (
                    EngineName::ShaNiX2,
                    has(&[
                        std::arch::is_x86_feature_detected!("sha"),
                        std::arch::is_x86_feature_detected!("ssse3"),
                        std::arch::is_x86_feature_detected!("sse4.1"),
                    ]),
                ),
                (EngineName::Avx2X8, has(&[std::arch::is_x86_feature_detected!("avx2")])),
                (
                    EngineName::Avx512X16,
                    has(&[
                        std::arch::is_x86_feature_detected!("avx512f"),
                        std::arch::is_x86_feature_detected!("avx512bw"),
                    ]),
                ),
            ];
            for (name, present) in expected {
                assert!(
                    !present || run.contains(&name),
                    "the CPU has {} but engine {name} was not run",
                    name.needs()
                );
            }
        }
        engines
    }

    /// The FIPS 180-4 example messages (one chunk, two chunks, and the million `a`s) and the empty message,
    /// each hashed in a run of 37 blocks through every engine, with an empty salt.
    #[test]
    fn fips_180_vectors_through_every_engine() {
        let vectors: [(Vec<u8>, &str); 4] = [
            (
                b"abc".to_vec(),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                Vec::new(),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".to_vec(),
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
            (
                vec![b'a'; 1_000_000],
                "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
            ),
        ];
        for engine in engines() {
            for salt_first in [true, false] {
                let hasher = BlockHasher::new(Algorithm::Sha256, &[], salt_first).with_engine(engine);
                assert_eq!(hasher.engine(), engine.name());
                for (message, want) in &vectors {
                    let run = vec![&message[..]; 37];
                    let mut seen = 0;
                    hasher.digest_many(run, |i, d| {
                        assert_eq!(d.to_hex(), *want, "{} block {i}", engine.name());
                        seen += 1;
                    });
                    assert_eq!(seen, 37);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every engine gives exactly the digests of `sha2`, in order, for both hash types, any salt, block
        /// lengths of powers of two and of any size, and block counts that are not a multiple of the lanes.
        #[test]
        fn every_engine_matches_sha2(
            salt_len in salt_len(),
            block_len in prop_oneof![(9u32..=13).prop_map(|b| 1usize << b), 0usize..700],
            blocks in 0usize..40,
            salt_first in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let salt = bytes(seed, salt_len);
            let data = bytes(seed ^ 1, blocks * block_len);
            for engine in Engine::supported() {
                let hasher = BlockHasher::new(Algorithm::Sha256, &salt, salt_first).with_engine(engine);
                let mut seen = 0;
                let run: Vec<&[u8]> = (0..blocks).map(|i| &data[i * block_len..][..block_len]).collect();
                hasher.digest_many(run, |i, digest| {
                    assert_eq!(i, seen, "digests come in order");
                    seen += 1;
                    let block = &data[i * block_len..][..block_len];
                    assert_eq!(digest.as_bytes(), oracle(&salt, block, salt_first), "{} block {i}", engine.name());
                });
                prop_assert_eq!(seen, blocks);
            }
        }

        /// Runs that mix block lengths hash as `sha2` does on every engine.
        #[test]
        fn mixed_lengths_match_sha2(
            salt_len in salt_len(),
            lens in proptest::collection::vec(prop_oneof![Just(4096usize), 0usize..700], 0..40),
            salt_first in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let salt = bytes(seed, salt_len);
            let blocks: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &n)| bytes(seed ^ i as u64, n)).collect();
            for engine in Engine::supported() {
                let hasher = BlockHasher::new(Algorithm::Sha256, &salt, salt_first).with_engine(engine);
                let mut seen = 0;
                hasher.digest_many(blocks.iter().map(|b| &b[..]), |i, digest| {
                    assert_eq!(i, seen);
                    seen += 1;
                    assert_eq!(digest.as_bytes(), oracle(&salt, &blocks[i], salt_first), "{}", engine.name());
                });
                prop_assert_eq!(seen, blocks.len());
                if let [a, b, ..] = &blocks[..] {
                    let [da, db] = hasher.digest_pair(a, b);
                    prop_assert_eq!(da.as_bytes(), oracle(&salt, a, salt_first));
                    prop_assert_eq!(db.as_bytes(), oracle(&salt, b, salt_first));
                }
            }
        }
    }

    #[test]
    fn engines_parse_and_unavailable_ones_are_refused_by_name() {
        assert_eq!("auto".parse::<EngineChoice>().unwrap(), EngineChoice::Auto);
        for name in EngineName::ALL {
            assert_eq!(
                name.as_str().parse::<EngineChoice>().unwrap(),
                EngineChoice::Named(name)
            );
            match Engine::choose(EngineChoice::Named(name)) {
                Ok(engine) => assert_eq!(engine.name(), name),
                Err(e) => assert!(e.to_string().contains(name.needs()), "{e}"),
            }
        }
        assert!("sha-ni".parse::<EngineChoice>().is_err());
        assert_eq!(
            Engine::choose(EngineChoice::Named(EngineName::Portable))
                .unwrap()
                .name(),
            EngineName::Portable
        );
    }

    #[test]
    fn calibration_chooses_an_engine_the_cpu_runs_and_only_sha256_uses_it() {
        let calibration = Calibration::get();
        let supported: Vec<EngineName> = Engine::supported().iter().map(|e| e.name()).collect();
        assert!(supported.contains(&calibration.chosen.name()));
        if supported.len() > 1 {
            assert_eq!(calibration.rates.len(), supported.len());
            let best = calibration.rates.iter().map(|r| r.1).fold(0.0, f64::max);
            let chosen = calibration
                .rates
                .iter()
                .find(|r| r.0 == calibration.chosen.name())
                .unwrap();
            assert_eq!(chosen.1, best);
        }
        for alg in [Algorithm::Sha1, Algorithm::Sha512, Algorithm::Blake3] {
            assert_eq!(
                BlockHasher::new(alg, b"salt", true).engine(),
                EngineName::Portable,
                "{alg}"
            );
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
                assert_eq!(portable.engine(), EngineName::Portable);
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
