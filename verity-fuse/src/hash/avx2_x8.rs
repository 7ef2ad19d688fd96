//! Eight-lane SHA-256 with AVX2: one message per 32-bit lane of a 256-bit register.
//!
//! The same multi-buffer scheme as the sixteen-lane AVX-512 engine for CPUs without AVX-512 (most AMD before
//! Zen 4, Intel client cores): eight messages of the same length, one per lane, run the same instruction
//! stream side by side. AVX2 has neither a rotate nor a three-input logic instruction, so a rotation is two
//! shifts and an OR and `Ch`/`Maj` take three instructions each: a round costs about 30 vector instructions.
//!
//! Data flow: [`Engine::detect`] probes the CPU once; an [`Engine`] exists only where the code can run. Its
//! `compress` takes eight runs of whole 64-byte chunks (the safe driver in `lanes` assembles the first and last
//! chunks of every message); each chunk is loaded as two halves, byte-swapped, and transposed so that register
//! `t` holds message word `t` of every lane; then the 64 rounds run on all lanes.

#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

use super::lanes::CHUNK;

/// Lanes of this engine.
pub(crate) const LANES: usize = 8;

/// Proof that the AVX2 compressor runs on this CPU: only [`Engine::detect`] makes one.
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
    /// The AVX2 engine if this CPU has AVX2; the probe runs once per process.
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            static SUPPORTED: OnceLock<bool> = OnceLock::new();
            SUPPORTED.get_or_init(x8::supported).then_some(Self(Probe(())))
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    /// Runs the compression function over the whole chunks of `runs[i]` into `state[i]` for every lane.
    /// Panics unless the runs have the same length, a multiple of 64.
    pub(crate) fn compress(self, state: &mut [[u32; 8]; LANES], runs: [&[u8]; LANES]) {
        let len = runs[0].len();
        assert!(
            len.is_multiple_of(CHUNK) && runs.iter().all(|r| r.len() == len),
            "eight-lane SHA-256 needs equal runs of whole chunks"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Engine` exists only when `x8::supported()` returned true on this CPU, so every target
        // feature `x8::compress` is compiled with is present.
        unsafe {
            x8::compress(state, runs)
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.0 {}
    }
}

/// The compressor, compiled for AVX2: calling into it needs a CPU that has it.
#[cfg(target_arch = "x86_64")]
mod x8 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_andnot_si256, _mm256_loadu_si256, _mm256_or_si256,
        _mm256_permute2x128_si256, _mm256_set_epi64x, _mm256_set1_epi32, _mm256_shuffle_epi8, _mm256_slli_epi32,
        _mm256_srli_epi32, _mm256_storeu_si256, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64, _mm256_unpacklo_epi32,
        _mm256_unpacklo_epi64, _mm256_xor_si256,
    };

    use super::super::lanes::K;
    use super::{CHUNK, LANES};

    /// Whether this CPU has every feature [`compress`] is compiled with.
    pub(super) fn supported() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// The 32 bytes of `bytes[at..at + 32]` as one register. Panics if that is out of range.
    #[target_feature(enable = "avx2")]
    fn load(bytes: &[u8], at: usize) -> __m256i {
        let bytes = &bytes[at..at + 32];
        // SAFETY: `bytes` holds exactly 32 readable bytes, and `_mm256_loadu_si256` has no alignment
        // requirement.
        unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
    }

    /// Transposes an 8×8 matrix of 32-bit words held one row per register.
    #[target_feature(enable = "avx2")]
    fn transpose(r: [__m256i; 8]) -> [__m256i; 8] {
        // Pairs of rows interleaved word by word, then pairs of those two words at a time: afterwards `b[4i + c]`
        // holds, in its 128-bit lane `k`, rows 4i..4i+4 of column 4k + c.
        let a: [__m256i; 8] = std::array::from_fn(|i| {
            let (x, y) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_epi32(x, y)
            } else {
                _mm256_unpackhi_epi32(x, y)
            }
        });
        let b: [__m256i; 8] = std::array::from_fn(|i| {
            let (group, c) = (i / 4 * 4, i % 4);
            let (x, y) = (a[group + c / 2], a[group + c / 2 + 2]);
            if c % 2 == 0 {
                _mm256_unpacklo_epi64(x, y)
            } else {
                _mm256_unpackhi_epi64(x, y)
            }
        });
        // Column 4k + c joins 128-bit lane k of b[c] and of b[4 + c].
        std::array::from_fn(|i| {
            let c = i % 4;
            if i < 4 {
                _mm256_permute2x128_si256::<0x20>(b[c], b[4 + c])
            } else {
                _mm256_permute2x128_si256::<0x31>(b[c], b[4 + c])
            }
        })
    }

    /// `x` rotated right by `N` bits in every lane; `L` must be `32 - N`.
    #[target_feature(enable = "avx2")]
    fn ror<const N: i32, const L: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_srli_epi32::<N>(x), _mm256_slli_epi32::<L>(x))
    }

    /// `x ^ y ^ z` in every lane.
    #[target_feature(enable = "avx2")]
    fn xor3(x: __m256i, y: __m256i, z: __m256i) -> __m256i {
        _mm256_xor_si256(_mm256_xor_si256(x, y), z)
    }

    /// Compresses the whole chunks of `runs[i]` into `state[i]` for the eight lanes. Callers pass runs of
    /// equal length, a multiple of 64 bytes. Calling it needs the features [`supported`] checks.
    #[target_feature(enable = "avx2")]
    pub(super) fn compress(state: &mut [[u32; 8]; LANES], runs: [&[u8]; LANES]) {
        // Reverses the bytes of each 32-bit word: message words are big-endian.
        let swap = _mm256_set_epi64x(
            0x0c0d_0e0f_0809_0a0b,
            0x0405_0607_0001_0203,
            0x0c0d_0e0f_0809_0a0b,
            0x0405_0607_0001_0203,
        );
        let mut s: [__m256i; 8] = std::array::from_fn(|j| {
            let words: [u32; LANES] = std::array::from_fn(|lane| state[lane][j]);
            // SAFETY: `words` holds 8 `u32`, 32 readable bytes; no alignment is required.
            unsafe { _mm256_loadu_si256(words.as_ptr().cast()) }
        });
        for at in (0..runs[0].len()).step_by(CHUNK) {
            let low = transpose(std::array::from_fn(|lane| {
                _mm256_shuffle_epi8(load(runs[lane], at), swap)
            }));
            let high = transpose(std::array::from_fn(|lane| {
                _mm256_shuffle_epi8(load(runs[lane], at + 32), swap)
            }));
            let mut w: [__m256i; 16] = std::array::from_fn(|t| if t < 8 { low[t] } else { high[t - 8] });
            let saved = s;
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = s;
            // One round: `d` and `h` take the new values, and the callers rotate the names.
            macro_rules! round {
                ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $t:expr) => {
                    let t: usize = $t;
                    if t >= 16 {
                        let w15 = w[(t + 1) % 16];
                        let w2 = w[(t + 14) % 16];
                        let sigma0 = xor3(
                            ror::<7, 25>(w15),
                            ror::<18, 14>(w15),
                            _mm256_srli_epi32::<3>(w15),
                        );
                        let sigma1 = xor3(
                            ror::<17, 15>(w2),
                            ror::<19, 13>(w2),
                            _mm256_srli_epi32::<10>(w2),
                        );
                        w[t % 16] = _mm256_add_epi32(
                            _mm256_add_epi32(w[t % 16], sigma0),
                            _mm256_add_epi32(w[(t + 9) % 16], sigma1),
                        );
                    }
                    let big_sigma1 = xor3(ror::<6, 26>($e), ror::<11, 21>($e), ror::<25, 7>($e));
                    let ch = _mm256_xor_si256(_mm256_and_si256($e, $f), _mm256_andnot_si256($e, $g));
                    let kw = _mm256_add_epi32(w[t % 16], _mm256_set1_epi32(K[t] as i32));
                    let t1 = _mm256_add_epi32(_mm256_add_epi32($h, kw), _mm256_add_epi32(big_sigma1, ch));
                    let big_sigma0 = xor3(ror::<2, 30>($a), ror::<13, 19>($a), ror::<22, 10>($a));
                    let maj = _mm256_or_si256(
                        _mm256_and_si256($a, $b),
                        _mm256_and_si256($c, _mm256_or_si256($a, $b)),
                    );
                    $d = _mm256_add_epi32($d, t1);
                    $h = _mm256_add_epi32(t1, _mm256_add_epi32(big_sigma0, maj));
                };
            }
            // Eight rounds from round `$t`, the names back where they started. Written out for every `$t` so
            // that each message word index is a constant and the sixteen words stay in registers.
            macro_rules! eight_rounds {
                ($t:literal) => {
                    round!(a, b, c, d, e, f, g, h, $t);
                    round!(h, a, b, c, d, e, f, g, $t + 1);
                    round!(g, h, a, b, c, d, e, f, $t + 2);
                    round!(f, g, h, a, b, c, d, e, $t + 3);
                    round!(e, f, g, h, a, b, c, d, $t + 4);
                    round!(d, e, f, g, h, a, b, c, $t + 5);
                    round!(c, d, e, f, g, h, a, b, $t + 6);
                    round!(b, c, d, e, f, g, h, a, $t + 7);
                };
            }
            eight_rounds!(0);
            eight_rounds!(8);
            eight_rounds!(16);
            eight_rounds!(24);
            eight_rounds!(32);
            eight_rounds!(40);
            eight_rounds!(48);
            eight_rounds!(56);
            s = [a, b, c, d, e, f, g, h];
            for (x, y) in s.iter_mut().zip(saved) {
                *x = _mm256_add_epi32(*x, y);
            }
        }
        for (j, v) in s.into_iter().enumerate() {
            let mut words = [0u32; LANES];
            // SAFETY: `words` holds 8 `u32`, 32 writable bytes; no alignment is required.
            unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), v) };
            for (lane, word) in words.into_iter().enumerate() {
                state[lane][j] = word;
            }
        }
    }
}
