//! Sixteen-lane SHA-256 with AVX-512: one message per 32-bit lane of a 512-bit register.
//!
//! SHA-256's rounds are a chain of dependent 32-bit additions, rotations and bit selections; one message keeps
//! a core's vector units mostly idle, but sixteen messages of the same length, one per lane, run the same
//! instruction stream side by side. AVX-512 has a rotate (`vprord`) and a three-input logic instruction
//! (`vpternlogd`) that computes `Ch`, `Maj` and the three-way XORs of the `Σ` functions in one instruction each,
//! so a round costs about 17 vector instructions for sixteen messages.
//!
//! Data flow: [`Engine::detect`] probes the CPU once; an [`Engine`] exists only where the code can run. Its
//! `compress` takes sixteen runs of whole 64-byte chunks (the safe driver in `lanes` assembles the first and
//! last chunks of every message); for each chunk position the sixteen chunks are loaded, byte-swapped, and
//! transposed so that register `t` holds message word `t` of every lane; then the 64 rounds run on all lanes.

#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

use super::lanes::CHUNK;

/// Lanes of this engine.
pub(crate) const LANES: usize = 16;

/// Proof that the AVX-512 compressor runs on this CPU: only [`Engine::detect`] makes one.
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
    /// The AVX-512 engine if this CPU has AVX-512 F and BW; the probe runs once per process.
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            static SUPPORTED: OnceLock<bool> = OnceLock::new();
            SUPPORTED.get_or_init(x16::supported).then_some(Self(Probe(())))
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
            "sixteen-lane SHA-256 needs equal runs of whole chunks"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Engine` exists only when `x16::supported()` returned true on this CPU, so every target
        // feature `x16::compress` is compiled with is present.
        unsafe {
            x16::compress(state, runs)
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.0 {}
    }
}

/// The compressor, compiled for AVX-512 F and BW: calling into it needs a CPU that has them.
#[cfg(target_arch = "x86_64")]
mod x16 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_loadu_si512, _mm512_ror_epi32, _mm512_set1_epi32, _mm512_set4_epi32,
        _mm512_shuffle_epi8, _mm512_shuffle_i32x4, _mm512_srli_epi32, _mm512_ternarylogic_epi32, _mm512_unpackhi_epi32,
        _mm512_unpackhi_epi64, _mm512_unpacklo_epi32, _mm512_unpacklo_epi64,
    };

    use super::super::lanes::K;
    use super::{CHUNK, LANES};

    /// Whether this CPU has every feature [`compress`] is compiled with.
    pub(super) fn supported() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// The 64 bytes of `bytes[at..at + 64]` as one register. Panics if that is out of range.
    #[target_feature(enable = "avx512f")]
    fn load(bytes: &[u8], at: usize) -> __m512i {
        let bytes = &bytes[at..at + CHUNK];
        // SAFETY: `bytes` holds exactly 64 readable bytes, and `_mm512_loadu_si512` has no alignment
        // requirement.
        unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
    }

    /// Transposes a 16×16 matrix of 32-bit words held one row per register.
    #[target_feature(enable = "avx512f")]
    fn transpose(r: [__m512i; 16]) -> [__m512i; 16] {
        // Pairs of rows interleaved word by word, then pairs of those two words at a time: afterwards `b[4i + c]`
        // holds, in its 128-bit lane `k`, rows 4i..4i+4 of column 4k + c.
        let a: [__m512i; 16] = std::array::from_fn(|i| {
            let (x, y) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi32(x, y)
            } else {
                _mm512_unpackhi_epi32(x, y)
            }
        });
        let b: [__m512i; 16] = std::array::from_fn(|i| {
            let (group, c) = (i / 4 * 4, i % 4);
            let (x, y) = (a[group + c / 2], a[group + c / 2 + 2]);
            if c % 2 == 0 {
                _mm512_unpacklo_epi64(x, y)
            } else {
                _mm512_unpackhi_epi64(x, y)
            }
        });
        // Column 4k + c gathers 128-bit lane k of b[c], b[4 + c], b[8 + c] and b[12 + c].
        let mut out = [b[0]; 16];
        for c in 0..4 {
            let low01 = _mm512_shuffle_i32x4::<0x44>(b[c], b[4 + c]);
            let high01 = _mm512_shuffle_i32x4::<0xEE>(b[c], b[4 + c]);
            let low23 = _mm512_shuffle_i32x4::<0x44>(b[8 + c], b[12 + c]);
            let high23 = _mm512_shuffle_i32x4::<0xEE>(b[8 + c], b[12 + c]);
            out[c] = _mm512_shuffle_i32x4::<0x88>(low01, low23);
            out[4 + c] = _mm512_shuffle_i32x4::<0xDD>(low01, low23);
            out[8 + c] = _mm512_shuffle_i32x4::<0x88>(high01, high23);
            out[12 + c] = _mm512_shuffle_i32x4::<0xDD>(high01, high23);
        }
        out
    }

    /// Compresses the whole chunks of `runs[i]` into `state[i]` for the sixteen lanes. Callers pass runs of
    /// equal length, a multiple of 64 bytes. Calling it needs the features [`supported`] checks.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn compress(state: &mut [[u32; 8]; LANES], runs: [&[u8]; LANES]) {
        // Reverses the bytes of each 32-bit word: message words are big-endian.
        let swap = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
        let mut s: [__m512i; 8] = std::array::from_fn(|j| {
            let words: [u32; LANES] = std::array::from_fn(|lane| state[lane][j]);
            // SAFETY: `words` holds 16 `u32`, 64 readable bytes; no alignment is required.
            unsafe { _mm512_loadu_si512(words.as_ptr().cast()) }
        });
        for at in (0..runs[0].len()).step_by(CHUNK) {
            let rows: [__m512i; 16] = std::array::from_fn(|lane| _mm512_shuffle_epi8(load(runs[lane], at), swap));
            let mut w = transpose(rows);
            let saved = s;
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = s;
            // `$x`, opaque to the compiler's reordering of additions (no instruction is emitted).
            macro_rules! fence {
                ($x:expr) => {{
                    let mut x: __m512i = $x;
                    // SAFETY: the assembly is empty: it reads and writes only the register holding `x`,
                    // leaving its value as it was, and touches no memory, stack or flags.
                    unsafe {
                        std::arch::asm!("/* {0} */", inout(zmm_reg) x, options(pure, nomem, nostack, preserves_flags))
                    };
                    x
                }};
            }
            // One round: `d` and `h` take the new values, and the callers rotate the names.
            macro_rules! round {
                ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $t:expr) => {
                    let t: usize = $t;
                    if t >= 16 {
                        let w15 = w[(t + 1) % 16];
                        let w2 = w[(t + 14) % 16];
                        let sigma0 = _mm512_ternarylogic_epi32::<0x96>(
                            _mm512_ror_epi32::<7>(w15),
                            _mm512_ror_epi32::<18>(w15),
                            _mm512_srli_epi32::<3>(w15),
                        );
                        let sigma1 = _mm512_ternarylogic_epi32::<0x96>(
                            _mm512_ror_epi32::<17>(w2),
                            _mm512_ror_epi32::<19>(w2),
                            _mm512_srli_epi32::<10>(w2),
                        );
                        w[t % 16] = _mm512_add_epi32(
                            _mm512_add_epi32(w[t % 16], sigma0),
                            _mm512_add_epi32(w[(t + 9) % 16], sigma1),
                        );
                    }
                    let big_sigma1 = _mm512_ternarylogic_epi32::<0x96>(
                        _mm512_ror_epi32::<6>($e),
                        _mm512_ror_epi32::<11>($e),
                        _mm512_ror_epi32::<25>($e),
                    );
                    let ch = _mm512_ternarylogic_epi32::<0xCA>($e, $f, $g);
                    // `h + K + W` is ready before `e`, `Ch` comes one instruction after `e` and `Σ1` two, so
                    // they are added in that order: the chain from one round's `e` to the next is then a
                    // rotate, a three-way XOR and two additions. Left to itself the compiler adds `Ch` first
                    // and the round constant last, four additions on that chain; the fences keep the order.
                    let hkw = fence!(_mm512_add_epi32($h, _mm512_add_epi32(w[t % 16], _mm512_set1_epi32(K[t] as i32))));
                    let t1 = _mm512_add_epi32(fence!(_mm512_add_epi32(hkw, ch)), big_sigma1);
                    let big_sigma0 = _mm512_ternarylogic_epi32::<0x96>(
                        _mm512_ror_epi32::<2>($a),
                        _mm512_ror_epi32::<13>($a),
                        _mm512_ror_epi32::<22>($a),
                    );
                    let maj = _mm512_ternarylogic_epi32::<0xE8>($a, $b, $c);
                    $d = _mm512_add_epi32($d, t1);
                    $h = _mm512_add_epi32(_mm512_add_epi32(t1, maj), big_sigma0);
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
                *x = _mm512_add_epi32(*x, y);
            }
        }
        for (j, v) in s.into_iter().enumerate() {
            let mut words = [0u32; LANES];
            // SAFETY: `words` holds 16 `u32`, 64 writable bytes; no alignment is required.
            unsafe { std::arch::x86_64::_mm512_storeu_si512(words.as_mut_ptr().cast(), v) };
            for (lane, word) in words.into_iter().enumerate() {
                state[lane][j] = word;
            }
        }
    }
}
