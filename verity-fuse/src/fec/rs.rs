//! Reed-Solomon over GF(2^8) with the parameters dm-verity fixes: field polynomial
//! x^8 + x^4 + x^3 + x^2 + 1 (0x11d), primitive element α = 2, generator roots α^0 … α^(roots-1) (first
//! consecutive root 0, root step 1), codewords of 255 symbols: `255 - roots` message symbols, then `roots`
//! parity symbols.
//!
//! A codeword's symbol at array index `i` is the coefficient of x^(254-i), so the message comes first and the
//! parity last, as the kernel's `decode_rs8` and cryptsetup's encoder lay them out. Encoding divides the
//! message polynomial (times x^roots) by the generator; decoding computes syndromes, finds the error locator
//! with Berlekamp-Massey (seeded with the erasure locator when erasure positions are known), its roots by
//! Chien search and the magnitudes by Forney's formula.

/// Symbols per codeword.
pub(crate) const N: usize = 255;

const FIELD_POLY: u16 = 0x11d;

/// Log and antilog tables of GF(256).
struct Field {
    exp: [u8; 512],
    log: [u8; 256],
}

const fn field() -> Field {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= FIELD_POLY;
        }
        i += 1;
    }
    exp[510] = exp[0];
    exp[511] = exp[1];
    Field { exp, log }
}

static GF: Field = field();

/// a · b in GF(256).
fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        GF.exp[GF.log[a as usize] as usize + GF.log[b as usize] as usize]
    }
}

/// a / b in GF(256); `b` is never zero where this is called.
fn div(a: u8, b: u8) -> u8 {
    if a == 0 {
        0
    } else {
        GF.exp[GF.log[a as usize] as usize + 255 - GF.log[b as usize] as usize]
    }
}

/// α^e for any exponent.
fn alpha_pow(e: usize) -> u8 {
    GF.exp[e % 255]
}

/// p(x) at x, coefficients lowest degree first.
fn eval_low_first(p: &[u8], x: u8) -> u8 {
    p.iter().rev().fold(0, |acc, &c| mul(acc, x) ^ c)
}

/// Why a codeword could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DecodeError {
    /// More errors and erasures than the parity can correct (2·errors + erasures > roots), as far as the
    /// decoder can tell.
    #[error("more corrupted symbols than the parity can correct")]
    Uncorrectable,
}

/// An encoder and decoder for one number of parity symbols (`roots`, 2 to 24 as dm-verity allows, though the
/// code works for any 1 to 254).
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    roots: usize,
    /// Multiplication tables by the generator's coefficients: `by_gen[j][x] = x · g_(roots-1-j)`, where
    /// g(x) = x^roots + Σ g_k x^k.
    by_gen: Vec<[u8; 256]>,
    /// Multiplication tables by the generator's roots: `by_root[j][x] = x · α^j`, for the syndromes.
    by_root: Vec<[u8; 256]>,
}

impl Codec {
    /// A codec with `roots` parity symbols per codeword.
    ///
    /// # Panics
    /// If `roots` is 0 or more than 254 (callers validate the range first).
    pub(crate) fn new(roots: usize) -> Self {
        assert!((1..N).contains(&roots), "roots must be 1..=254");
        // g(x) = Π_{i<roots} (x - α^i), coefficients lowest degree first.
        let mut g = vec![1u8];
        for i in 0..roots {
            let root = alpha_pow(i);
            let mut next = vec![0u8; g.len() + 1];
            for (k, &c) in g.iter().enumerate() {
                next[k + 1] ^= c;
                next[k] ^= mul(c, root);
            }
            g = next;
        }
        let by_gen = (0..roots)
            .map(|j| {
                let coefficient = g[roots - 1 - j];
                let mut table = [0u8; 256];
                for (x, slot) in table.iter_mut().enumerate() {
                    *slot = mul(x as u8, coefficient);
                }
                table
            })
            .collect();
        let by_root = (0..roots)
            .map(|j| {
                let mut table = [0u8; 256];
                for (x, slot) in table.iter_mut().enumerate() {
                    *slot = mul(x as u8, alpha_pow(j));
                }
                table
            })
            .collect();
        Self { roots, by_gen, by_root }
    }

    /// Message symbols per codeword.
    #[cfg(test)]
    fn message_len(&self) -> usize {
        N - self.roots
    }

    /// Feeds one message symbol into a running remainder (`roots` bytes, highest degree first). Feeding the
    /// `255 - roots` message symbols in order, starting from zeroes, leaves the parity in `remainder`.
    #[inline]
    pub(crate) fn feed(&self, remainder: &mut [u8], symbol: u8) {
        let feedback = (symbol ^ remainder[0]) as usize;
        let last = self.roots - 1;
        for j in 0..last {
            remainder[j] = remainder[j + 1] ^ self.by_gen[j][feedback];
        }
        remainder[last] = self.by_gen[last][feedback];
    }

    /// The parity of a whole message (`255 - roots` symbols) into `parity` (`roots` symbols).
    #[cfg(test)]
    fn encode(&self, message: &[u8], parity: &mut [u8]) {
        debug_assert_eq!(message.len(), self.message_len());
        parity.fill(0);
        for &symbol in message {
            self.feed(parity, symbol);
        }
    }

    /// Corrects `codeword` (255 symbols: message then parity) in place, given the array indexes of symbols
    /// known to be wrong (`erasures`, duplicates not allowed). Returns the number of symbols found in error
    /// (erasures included), or an error when the damage is beyond what the parity can correct as far as the
    /// decoder can tell. Damage past the code's capacity can also decode to a different valid codeword:
    /// callers check the result against a digest.
    pub(crate) fn decode(&self, codeword: &mut [u8], erasures: &[usize]) -> Result<usize, DecodeError> {
        debug_assert_eq!(codeword.len(), N);
        let r = self.roots;
        if erasures.len() > r {
            return Err(DecodeError::Uncorrectable);
        }
        let syndromes: Vec<u8> = self
            .by_root
            .iter()
            .map(|by| codeword.iter().fold(0, |acc, &c| by[acc as usize] ^ c))
            .collect();
        if syndromes.iter().all(|&s| s == 0) {
            return Ok(0);
        }
        // Erasure locator Γ(x) = Π (1 - X_e x), X_e = α^(254 - index).
        let mut lambda = vec![1u8];
        for &e in erasures {
            if e >= N {
                return Err(DecodeError::Uncorrectable);
            }
            let x = alpha_pow(N - 1 - e);
            let mut next = vec![0u8; lambda.len() + 1];
            for (k, &c) in lambda.iter().enumerate() {
                next[k] ^= c;
                next[k + 1] ^= mul(c, x);
            }
            lambda = next;
        }
        lambda.resize(r + 1, 0);
        let rho = erasures.len();
        let mut previous = lambda.clone();
        let mut length = rho;
        for k in rho..r {
            let delta = (0..=k.min(r)).fold(0u8, |acc, i| acc ^ mul(lambda[i], syndromes[k - i]));
            previous.rotate_right(1);
            previous[0] = 0;
            if delta == 0 {
                continue;
            }
            let next: Vec<u8> = lambda.iter().zip(&previous).map(|(&l, &b)| l ^ mul(delta, b)).collect();
            if 2 * length <= k + rho {
                length = k + 1 + rho - length;
                previous = lambda.iter().map(|&l| div(l, delta)).collect();
            }
            lambda = next;
        }
        let degree = lambda.iter().rposition(|&c| c != 0).unwrap_or(0);
        if degree == 0 || 2 * (degree - rho.min(degree)) + rho > r {
            return Err(DecodeError::Uncorrectable);
        }
        lambda.truncate(degree + 1);
        // Chien search: index i is in error when Λ(X_i^-1) = 0, X_i^-1 = α^(i + 1).
        let positions: Vec<usize> = (0..N)
            .filter(|&i| eval_low_first(&lambda, alpha_pow(i + 1)) == 0)
            .collect();
        if positions.len() != degree {
            return Err(DecodeError::Uncorrectable);
        }
        // Ω(x) = S(x) Λ(x) mod x^r.
        let mut omega = vec![0u8; r];
        for (i, &l) in lambda.iter().enumerate() {
            for (j, &s) in syndromes.iter().enumerate() {
                if i + j < r {
                    omega[i + j] ^= mul(l, s);
                }
            }
        }
        // Λ'(x): in characteristic 2 only the odd-degree terms survive.
        let derivative: Vec<u8> = (1..lambda.len())
            .map(|i| if i % 2 == 1 { lambda[i] } else { 0 })
            .collect();
        let mut fixes = Vec::with_capacity(positions.len());
        for &i in &positions {
            let x_inverse = alpha_pow(i + 1);
            let denominator = eval_low_first(&derivative, x_inverse);
            if denominator == 0 {
                return Err(DecodeError::Uncorrectable);
            }
            // Forney with first root 0: e = X · Ω(X^-1) / Λ'(X^-1).
            let x = alpha_pow(N - 1 - i);
            let magnitude = mul(x, div(eval_low_first(&omega, x_inverse), denominator));
            fixes.push((i, magnitude));
        }
        for (i, magnitude) in fixes {
            codeword[i] ^= magnitude;
        }
        Ok(positions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codeword(codec: &Codec, message: &[u8]) -> Vec<u8> {
        let mut word = message.to_vec();
        let mut parity = vec![0u8; codec.roots];
        codec.encode(message, &mut parity);
        word.extend_from_slice(&parity);
        word
    }

    #[test]
    fn field_tables_are_consistent() {
        for a in 1..=255u8 {
            assert_eq!(div(mul(a, 7), 7), a);
            assert_eq!(GF.exp[GF.log[a as usize] as usize], a);
        }
        assert_eq!(alpha_pow(8), 0x1d);
    }

    #[test]
    fn codewords_evaluate_to_zero_at_every_generator_root() {
        let codec = Codec::new(8);
        let message: Vec<u8> = (0..codec.message_len()).map(|i| (i * 31 + 7) as u8).collect();
        let word = codeword(&codec, &message);
        for j in 0..8 {
            let x = alpha_pow(j);
            assert_eq!(word.iter().fold(0, |acc, &c| mul(acc, x) ^ c), 0);
        }
    }

    #[test]
    fn a_clean_codeword_decodes_to_itself() {
        let codec = Codec::new(2);
        let mut word = codeword(&codec, &[0xAB; 253]);
        let copy = word.clone();
        assert_eq!(codec.decode(&mut word, &[]), Ok(0));
        assert_eq!(word, copy);
    }

    #[test]
    fn too_many_erasures_are_refused() {
        let codec = Codec::new(2);
        let mut word = codeword(&codec, &[1; 253]);
        assert_eq!(codec.decode(&mut word, &[0, 1, 2]), Err(DecodeError::Uncorrectable));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn errors_and_erasures_within_capacity_are_corrected(
            roots in 2usize..=24,
            seed in any::<u64>(),
            errors in 0usize..=12,
            erasures in 0usize..=24,
        ) {
            let codec = Codec::new(roots);
            let erasures = erasures.min(roots);
            let errors = errors.min((roots - erasures) / 2);
            let mut state = seed | 1;
            let mut next = move || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state };
            let message: Vec<u8> = (0..codec.message_len()).map(|_| next() as u8).collect();
            let clean = codeword(&codec, &message);
            let mut word = clean.clone();
            let mut positions: Vec<usize> = Vec::new();
            while positions.len() < errors + erasures {
                let p = (next() % 255) as usize;
                if !positions.contains(&p) {
                    positions.push(p);
                }
            }
            for &p in &positions {
                word[p] ^= (next() % 255 + 1) as u8;
            }
            let erased = &positions[..erasures];
            let fixed = codec.decode(&mut word, erased).unwrap();
            prop_assert_eq!(&word, &clean);
            prop_assert!(fixed >= errors && fixed <= errors + erasures);
        }
    }
}
