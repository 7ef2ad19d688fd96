//! Two-way interleaved SHA-256 with the x86 SHA extensions (SHA-NI); with the other engines, one of the
//! hash modules allowed `unsafe` code.
//!
//! Each SHA-NI round instruction depends on the result of the one before, so a single message leaves the
//! SHA units waiting on latency most of the time. Two independent messages of the same length, hashed in
//! lockstep with their instructions interleaved, fill those gaps: the multi-buffer approach the Linux kernel
//! takes for dm-verity data blocks.
//!
//! Data flow: [`Engine::detect`] probes the CPU once and caches the answer; an [`Engine`] exists only where
//! the compressor can run. Its `compress` takes two runs of whole 64-byte chunks (the safe driver in `lanes`
//! assembles the first and last chunks of every message) and runs the SHA-NI compressor on both at once.

#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

use super::lanes::CHUNK;

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
    pub(crate) fn compress(self, state: &mut [[u32; 8]; 2], [a, b]: [&[u8]; 2]) {
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

/// The SHA-NI compressor, compiled for the SHA target features: calling into it needs a CPU that has them.
#[cfg(target_arch = "x86_64")]
mod ni {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
        _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi8, _mm_shuffle_epi32,
        _mm_storeu_si128,
    };

    use super::super::lanes::K;
    use super::CHUNK;

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
    use sha2::{Digest as _, Sha256};

    use super::super::lanes::IV;
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
        engine.compress(&mut state, [&padded(b"abc"), &padded(b"")]);
        assert_eq!(state, [words(abc), words(empty)]);

        let two_block = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let two_block_digest = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
        let other = [0xa5u8; 56];
        let mut state = [IV; 2];
        engine.compress(&mut state, [&padded(&other), &padded(two_block)]);
        assert_eq!(state[1], words(two_block_digest));
        assert_eq!(state[0], words(&crate::hex::encode(&Sha256::digest(other))));
    }
}
