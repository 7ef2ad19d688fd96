//! SHA-256 over several messages of equal length at once, in safe code, for the multi-lane engines.
//!
//! A dm-verity block digest is `H(prefix ‖ block ‖ suffix)`: a type-1 tree's salt is the prefix, a type-0
//! tree's salt the suffix. [`Prefix`] absorbs the whole 64-byte chunks of the prefix once per tree and keeps
//! the bytes left over. [`digest`] then hashes `N` blocks of the same length through an engine's compressor
//! (a function that runs the SHA-256 compression over `N` equal runs of whole chunks, one per lane):
//!
//! 1. the first chunk of each lane (the prefix's leftover bytes, then the block's first bytes) is assembled
//!    in a small buffer;
//! 2. the whole chunks that follow are compressed straight out of the caller's blocks, without a copy;
//! 3. the last bytes of the block, the suffix, the padding and the bit length are assembled in a buffer and
//!    compressed.
//!
//! Every lane has the same length, so every lane's chunks line up and the compressor never sees a partial one.

use sha2::digest::generic_array::GenericArray;

/// SHA-256 chunk size in bytes.
pub(crate) const CHUNK: usize = 64;

/// The SHA-256 initial hash value (FIPS 180-4, 5.3.3).
pub(crate) const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The SHA-256 round constants (FIPS 180-4, 4.2.2).
pub(crate) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// Longest suffix [`digest`] takes: the largest salt a dm-verity superblock holds.
pub(crate) const MAX_SUFFIX: usize = 256;

/// Room for the last, assembled chunks of a lane: a partial chunk of prefix and block, the suffix, and at
/// most a chunk of padding and length.
const TAIL: usize = 2 * CHUNK + MAX_SUFFIX + CHUNK;

/// A SHA-256 state that has absorbed the whole chunks of a prefix, and the bytes of it left over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prefix {
    state: [u32; 8],
    rest: [u8; CHUNK],
    rest_len: usize,
    /// Bytes of the prefix absorbed into `state`.
    absorbed: u64,
}

impl Prefix {
    /// The state after `prefix`, compressed with the portable code.
    pub(crate) fn new(prefix: &[u8]) -> Self {
        let whole = prefix.len() - prefix.len() % CHUNK;
        let mut state = IV;
        compress_portable(&mut state, &prefix[..whole]);
        let mut rest = [0u8; CHUNK];
        rest[..prefix.len() - whole].copy_from_slice(&prefix[whole..]);
        Self {
            state,
            rest,
            rest_len: prefix.len() - whole,
            absorbed: whole as u64,
        }
    }
}

/// Runs the SHA-256 compression over the whole chunks of `bytes` with the portable code.
pub(crate) fn compress_portable(state: &mut [u32; 8], bytes: &[u8]) {
    debug_assert!(bytes.len().is_multiple_of(CHUNK));
    let chunks: Vec<GenericArray<u8, _>> = bytes
        .chunks_exact(CHUNK)
        .map(|c| *GenericArray::from_slice(c))
        .collect();
    sha2::compress256(state, &chunks);
}

/// The digests `H(prefix ‖ block ‖ suffix)` of `N` blocks of the same length, through `compress`, which runs
/// the compression function over `N` runs of whole chunks of the same length, lane `i`'s run into
/// `state[i]`. Panics unless the blocks have the same length and the suffix is at most [`MAX_SUFFIX`] bytes.
pub(crate) fn digest<const N: usize>(
    compress: impl Fn(&mut [[u32; 8]; N], [&[u8]; N]),
    prefix: &Prefix,
    blocks: [&[u8]; N],
    suffix: &[u8],
) -> [[u8; 32]; N] {
    let len = blocks[0].len();
    assert!(
        blocks.iter().all(|b| b.len() == len),
        "lanes need blocks of equal length"
    );
    assert!(suffix.len() <= MAX_SUFFIX, "suffix longer than a salt");
    let mut state = [prefix.state; N];
    let rest = &prefix.rest[..prefix.rest_len];
    // Bytes of each block consumed by the head chunk, and whether the prefix's rest is still to be absorbed.
    let mut at = 0;
    let mut rest_pending = !rest.is_empty();
    if rest_pending && len >= CHUNK - rest.len() {
        let take = CHUNK - rest.len();
        let mut head = [[0u8; CHUNK]; N];
        for (h, b) in head.iter_mut().zip(&blocks) {
            h[..rest.len()].copy_from_slice(rest);
            h[rest.len()..].copy_from_slice(&b[..take]);
        }
        compress(&mut state, std::array::from_fn(|i| &head[i][..]));
        at = take;
        rest_pending = false;
    }
    if !rest_pending {
        let body = (len - at) - (len - at) % CHUNK;
        if body > 0 {
            compress(&mut state, blocks.map(|b| &b[at..at + body]));
            at += body;
        }
    }
    let pending_rest: &[u8] = if rest_pending { rest } else { &[] };
    let message_len = prefix.absorbed + (prefix.rest_len + len + suffix.len()) as u64;
    let open = pending_rest.len() + (len - at) + suffix.len();
    // The padding: 0x80, zeros up to 8 bytes short of a chunk boundary, then the length in bits.
    let padded = (open + 1 + 8).next_multiple_of(CHUNK);
    let mut tail = [[0u8; TAIL]; N];
    for (t, b) in tail.iter_mut().zip(&blocks) {
        let mut w = 0;
        for part in [pending_rest, &b[at..], suffix] {
            t[w..w + part.len()].copy_from_slice(part);
            w += part.len();
        }
        t[w] = 0x80;
        t[padded - 8..padded].copy_from_slice(&(message_len * 8).to_be_bytes());
    }
    compress(&mut state, std::array::from_fn(|i| &tail[i][..padded]));
    state.map(|words| {
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(words) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest as _, Sha256};

    use super::*;

    /// A compressor of `N` lanes made of the portable one, to test the driver alone.
    fn portable<const N: usize>(state: &mut [[u32; 8]; N], runs: [&[u8]; N]) {
        for (s, run) in state.iter_mut().zip(runs) {
            compress_portable(s, run);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any prefix, block length and suffix give the digests of `sha2`.
        #[test]
        fn driver_matches_sha2(
            prefix in proptest::collection::vec(any::<u8>(), 0..300),
            len in 0usize..700,
            suffix in proptest::collection::vec(any::<u8>(), 0..=MAX_SUFFIX),
            seed in any::<u8>(),
        ) {
            let blocks: Vec<Vec<u8>> = (0..3u8).map(|i| vec![seed ^ i; len]).collect();
            let p = Prefix::new(&prefix);
            let out = digest(portable::<3>, &p, std::array::from_fn(|i| &blocks[i][..]), &suffix);
            for (d, b) in out.iter().zip(&blocks) {
                let want = Sha256::digest([&prefix[..], b, &suffix].concat());
                prop_assert_eq!(&d[..], want.as_slice());
            }
        }
    }
}
