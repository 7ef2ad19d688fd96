//! Two-way interleaved SHA-256 with the x86 SHA extensions (SHA-NI). This is the one module of the crate
//! allowed `unsafe` code.
//!
//! Each SHA-NI round instruction depends on the result of the one before, so a single message leaves the
//! SHA units waiting on latency most of the time. Two independent messages of the same length, hashed in
//! lockstep with their instructions interleaved, fill those gaps: the multi-buffer approach the Linux kernel
//! takes for dm-verity data blocks.
//!
//! Data flows like this: [`Engine::detect`] probes the CPU once and caches the answer; an [`Engine`] exists
//! only where the compressor can run. [`Lanes`] is a pair of streaming SHA-256 states, in safe code: it
//! buffers partial 64-byte chunks, appends the padding and the length, and hands whole chunks of both
//! messages to [`Engine`], whose `compress` runs the SHA-NI compressor on both at once. Where no engine
//! exists (no SHA-NI, or not x86_64) callers hash with the portable `sha2` crate instead.

#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

/// SHA-256 chunk size in bytes.
const CHUNK: usize = 64;

/// The SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Proof that the SHA-NI compressor runs on this CPU: only [`Engine::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Engine(Probe);

/// What [`Engine::detect`] found; uninhabited where there is no compressor to find.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
struct Probe(());

/// What [`Engine::detect`] found; uninhabited where there is no compressor to find.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug)]
enum Probe {}

impl Engine {
    /// The SHA-NI engine if this CPU has SHA-NI, SSSE3 and SSE4.1; the probe runs once per process.
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            static SUPPORTED: OnceLock<bool> = OnceLock::new();
            SUPPORTED.get_or_init(ni::supported).then_some(Self(Probe(())))
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    /// Runs the compression function over the whole 64-byte chunks of `a` into `state[0]` and of `b` into
    /// `state[1]`. Panics unless both have the same length, a multiple of 64.
    fn compress(self, state: &mut [[u32; 8]; 2], a: &[u8], b: &[u8]) {
        assert!(
            a.len() == b.len() && a.len().is_multiple_of(CHUNK),
            "two-way SHA-256 needs equal runs of whole chunks"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Engine` exists only when `ni::supported()` returned true on this CPU, so every target
        // feature `ni::compress2` is compiled with is present.
        unsafe {
            ni::compress2(state, a, b)
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.0 {}
    }
}

/// Two SHA-256 computations fed in lockstep with byte runs of equal length.
#[derive(Clone, Copy)]
pub(crate) struct Lanes {
    engine: Engine,
    state: [[u32; 8]; 2],
    buf: [[u8; CHUNK]; 2],
    /// Bytes of each `buf` in use (the same for both lanes).
    fill: usize,
    /// Bytes absorbed so far by each lane.
    len: u64,
}

impl Lanes {
    /// Two fresh SHA-256 computations.
    pub(crate) fn new(engine: Engine) -> Self {
        Self {
            engine,
            state: [IV; 2],
            buf: [[0; CHUNK]; 2],
            fill: 0,
            len: 0,
        }
    }

    /// Appends `a` to the first message and `b` to the second. Panics unless they have the same length.
    pub(crate) fn update(&mut self, mut a: &[u8], mut b: &[u8]) {
        assert_eq!(a.len(), b.len(), "two-way SHA-256 needs messages of equal length");
        self.len += a.len() as u64;
        if self.fill > 0 {
            let take = (CHUNK - self.fill).min(a.len());
            let range = self.fill..self.fill + take;
            self.buf[0][range.clone()].copy_from_slice(&a[..take]);
            self.buf[1][range].copy_from_slice(&b[..take]);
            self.fill += take;
            (a, b) = (&a[take..], &b[take..]);
            if self.fill < CHUNK {
                return;
            }
            self.engine.compress(&mut self.state, &self.buf[0], &self.buf[1]);
            self.fill = 0;
        }
        let whole = a.len() - a.len() % CHUNK;
        self.engine.compress(&mut self.state, &a[..whole], &b[..whole]);
        let rest = a.len() - whole;
        self.buf[0][..rest].copy_from_slice(&a[whole..]);
        self.buf[1][..rest].copy_from_slice(&b[whole..]);
        self.fill = rest;
    }

    /// Pads both messages and returns their digests.
    pub(crate) fn finish(mut self) -> [[u8; 32]; 2] {
        let bits = (self.len * 8).to_be_bytes();
        let mut pad = [0u8; CHUNK + 8];
        pad[0] = 0x80;
        // The padding ends 8 bytes short of a chunk boundary, leaving room for the length.
        let zeros_to = if self.fill < CHUNK - 8 {
            CHUNK - 8
        } else {
            2 * CHUNK - 8
        };
        let pad_len = zeros_to - self.fill;
        pad[pad_len..pad_len + 8].copy_from_slice(&bits);
        let pad = &pad[..pad_len + 8];
        self.update(pad, pad);
        debug_assert_eq!(self.fill, 0);
        self.state.map(|words| {
            let mut out = [0u8; 32];
            for (bytes, word) in out.chunks_exact_mut(4).zip(words) {
                bytes.copy_from_slice(&word.to_be_bytes());
            }
            out
        })
    }
}

/// The SHA-NI compressor, compiled for the SHA target features: calling into it needs a CPU that has them.
#[cfg(target_arch = "x86_64")]
mod ni {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
        _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi8, _mm_shuffle_epi32,
        _mm_storeu_si128,
    };

    use super::CHUNK;

    /// The SHA-256 round constants (FIPS 180-4, 4.2.2).
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// Whether this CPU has every feature [`compress2`] is compiled with.
    pub(super) fn supported() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// Loads 16 bytes from `bytes[at..at + 16]`. Panics if that is out of range.
    #[target_feature(enable = "sse2")]
    fn load(bytes: &[u8], at: usize) -> __m128i {
        let bytes = &bytes[at..at + 16];
        // SAFETY: `bytes` holds exactly 16 readable bytes, and `_mm_loadu_si128` has no alignment requirement.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    /// The round constants `K[4 * group..4 * group + 4]` as one vector.
    #[target_feature(enable = "sse2")]
    fn k(group: usize) -> __m128i {
        let words = &K[4 * group..4 * group + 4];
        // SAFETY: `words` holds 4 `u32`, 16 readable bytes, and `_mm_loadu_si128` has no alignment requirement.
        unsafe { _mm_loadu_si128(words.as_ptr().cast()) }
    }

    /// Moves a state from `[a, b, c, d, e, f, g, h]` into the `(ABEF, CDGH)` register pair SHA-NI works on.
    #[target_feature(enable = "sse2,ssse3,sse4.1")]
    fn to_registers(state: &[u32; 8]) -> (__m128i, __m128i) {
        // SAFETY: `state` holds 8 `u32`, so each half is 16 readable bytes; no alignment is required.
        let (abcd, efgh) = unsafe {
            (
                _mm_loadu_si128(state.as_ptr().cast()),
                _mm_loadu_si128(state[4..].as_ptr().cast()),
            )
        };
        let badc = _mm_shuffle_epi32::<0xB1>(abcd);
        let hgfe = _mm_shuffle_epi32::<0x1B>(efgh);
        (_mm_alignr_epi8::<8>(badc, hgfe), _mm_blend_epi16::<0xF0>(hgfe, badc))
    }

    /// The inverse of [`to_registers`].
    #[target_feature(enable = "sse2,ssse3,sse4.1")]
    fn from_registers(abef: __m128i, cdgh: __m128i, state: &mut [u32; 8]) {
        let feba = _mm_shuffle_epi32::<0x1B>(abef);
        let dchg = _mm_shuffle_epi32::<0xB1>(cdgh);
        let abcd = _mm_blend_epi16::<0xF0>(feba, dchg);
        let efgh = _mm_alignr_epi8::<8>(dchg, feba);
        // SAFETY: `state` holds 8 `u32`, so each half is 16 writable bytes; no alignment is required.
        unsafe {
            _mm_storeu_si128(state.as_mut_ptr().cast(), abcd);
            _mm_storeu_si128(state[4..].as_mut_ptr().cast(), efgh);
        }
    }

    /// Compresses the whole chunks of `a` into `state[0]` and those of `b` into `state[1]`, the instructions
    /// of the two streams interleaved so that one runs while the other waits on latency. Callers pass runs of
    /// equal length (the zip stops at the shorter). Calling it needs the features [`supported`] checks.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) fn compress2(state: &mut [[u32; 8]; 2], a: &[u8], b: &[u8]) {
        // Reverses the bytes of each 32-bit word: message words are big-endian.
        let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let (mut abef_a, mut cdgh_a) = to_registers(&state[0]);
        let (mut abef_b, mut cdgh_b) = to_registers(&state[1]);
        for (ca, cb) in a.chunks_exact(CHUNK).zip(b.chunks_exact(CHUNK)) {
            let (saved_abef_a, saved_cdgh_a, saved_abef_b, saved_cdgh_b) = (abef_a, cdgh_a, abef_b, cdgh_b);
            // Message schedule: `wa[i % 4]` holds words 4i..4i+4 of the first message, `wb` of the second.
            let mut wa = [0, 16, 32, 48].map(|at| _mm_shuffle_epi8(load(ca, at), swap));
            let mut wb = [0, 16, 32, 48].map(|at| _mm_shuffle_epi8(load(cb, at), swap));
            // Four rounds on both streams with message words `w[$i]`.
            macro_rules! four_rounds {
                ($group:expr, $i:expr) => {
                    let k = k($group);
                    let (mut ma, mut mb) = (_mm_add_epi32(wa[$i], k), _mm_add_epi32(wb[$i], k));
                    cdgh_a = _mm_sha256rnds2_epu32(cdgh_a, abef_a, ma);
                    cdgh_b = _mm_sha256rnds2_epu32(cdgh_b, abef_b, mb);
                    (ma, mb) = (_mm_shuffle_epi32::<0x0E>(ma), _mm_shuffle_epi32::<0x0E>(mb));
                    abef_a = _mm_sha256rnds2_epu32(abef_a, cdgh_a, ma);
                    abef_b = _mm_sha256rnds2_epu32(abef_b, cdgh_b, mb);
                };
            }
            // The next four schedule words, replacing the oldest (`w[$i]`, words t-16..t-12).
            macro_rules! schedule {
                ($w:ident, $i:expr, $i1:expr, $i2:expr, $i3:expr) => {
                    let sum = _mm_add_epi32(
                        _mm_sha256msg1_epu32($w[$i], $w[$i1]),
                        _mm_alignr_epi8::<4>($w[$i3], $w[$i2]),
                    );
                    $w[$i] = _mm_sha256msg2_epu32(sum, $w[$i3]);
                };
            }
            macro_rules! group {
                ($group:expr, $i:expr, $i1:expr, $i2:expr, $i3:expr) => {
                    schedule!(wa, $i, $i1, $i2, $i3);
                    schedule!(wb, $i, $i1, $i2, $i3);
                    four_rounds!($group, $i);
                };
            }
            four_rounds!(0, 0);
            four_rounds!(1, 1);
            four_rounds!(2, 2);
            four_rounds!(3, 3);
            group!(4, 0, 1, 2, 3);
            group!(5, 1, 2, 3, 0);
            group!(6, 2, 3, 0, 1);
            group!(7, 3, 0, 1, 2);
            group!(8, 0, 1, 2, 3);
            group!(9, 1, 2, 3, 0);
            group!(10, 2, 3, 0, 1);
            group!(11, 3, 0, 1, 2);
            group!(12, 0, 1, 2, 3);
            group!(13, 1, 2, 3, 0);
            group!(14, 2, 3, 0, 1);
            group!(15, 3, 0, 1, 2);
            abef_a = _mm_add_epi32(abef_a, saved_abef_a);
            cdgh_a = _mm_add_epi32(cdgh_a, saved_cdgh_a);
            abef_b = _mm_add_epi32(abef_b, saved_abef_b);
            cdgh_b = _mm_add_epi32(cdgh_b, saved_cdgh_b);
        }
        from_registers(abef_a, cdgh_a, &mut state[0]);
        from_registers(abef_b, cdgh_b, &mut state[1]);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest as _, Sha256};

    use super::*;

    /// The engine, or `None` with the test reported as skipped.
    fn engine(test: &str) -> Option<Engine> {
        let engine = Engine::detect();
        if engine.is_none() {
            testkit::skip(test, "this CPU lacks SHA-NI, SSSE3 or SSE4.1");
        }
        engine
    }

    /// `message` with the SHA-256 padding and length appended.
    fn padded(message: &[u8]) -> Vec<u8> {
        let mut out = message.to_vec();
        out.push(0x80);
        while out.len() % CHUNK != CHUNK - 8 {
            out.push(0);
        }
        out.extend_from_slice(&(message.len() as u64 * 8).to_be_bytes());
        out
    }

    fn words(hex: &str) -> [u32; 8] {
        std::array::from_fn(|i| u32::from_str_radix(&hex[8 * i..8 * i + 8], 16).unwrap())
    }

    #[test]
    fn fips_180_vectors_through_the_two_way_compressor() {
        let Some(engine) = engine("fips_180_vectors_through_the_two_way_compressor") else {
            return;
        };
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut state = [IV; 2];
        engine.compress(&mut state, &padded(b"abc"), &padded(b""));
        assert_eq!(state, [words(abc), words(empty)]);

        let two_block = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let two_block_digest = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
        let other = [0xa5u8; 56];
        let mut state = [IV; 2];
        engine.compress(&mut state, &padded(&other), &padded(two_block));
        assert_eq!(state[1], words(two_block_digest));
        assert_eq!(state[0], words(&crate::hex::encode(&Sha256::digest(other))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Messages of any length, fed in pieces of any length, give the digests of `sha2`.
        #[test]
        fn lanes_match_sha2_for_any_length_and_split(
            (a, b) in (0usize..1200).prop_flat_map(|n| {
                (proptest::collection::vec(any::<u8>(), n), proptest::collection::vec(any::<u8>(), n))
            }),
            cuts in proptest::collection::vec(0usize..1200, 0..4),
        ) {
            let Some(engine) = engine("lanes_match_sha2_for_any_length_and_split") else {
                return Ok(());
            };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(a.len())).collect();
            cuts.push(0);
            cuts.push(a.len());
            cuts.sort_unstable();
            let mut lanes = Lanes::new(engine);
            for w in cuts.windows(2) {
                lanes.update(&a[w[0]..w[1]], &b[w[0]..w[1]]);
            }
            let [da, db] = lanes.finish();
            prop_assert_eq!(da.to_vec(), Sha256::digest(&a).to_vec());
            prop_assert_eq!(db.to_vec(), Sha256::digest(&b).to_vec());
        }
    }
}
