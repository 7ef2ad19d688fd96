//! Lower-case hexadecimal, as veritysetup prints root hashes and salts.

use crate::class::ErrorClass;
use std::fmt::Write;

/// Why a string is not the hex a field needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// The string has an odd number of digits.
    #[error("{field}: odd number of hex digits ({len})")]
    OddLength {
        /// The field being parsed.
        field: &'static str,
        /// Number of characters given.
        len: usize,
    },
    /// A character is not a hex digit.
    #[error("{field}: `{ch}` at position {position} is not a hex digit")]
    NotHex {
        /// The field being parsed.
        field: &'static str,
        /// The offending character.
        ch: char,
        /// Its position in the string.
        position: usize,
    },
}

impl HexError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Decodes hex (either case) into bytes; `field` names what is parsed in the error.
pub fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, HexError> {
    if !text.len().is_multiple_of(2) {
        return Err(HexError::OddLength { field, len: text.len() });
    }
    let digit = |position: usize, ch: char| {
        ch.to_digit(16)
            .map(|d| d as u8)
            .ok_or(HexError::NotHex { field, ch, position })
    };
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| Ok(digit(2 * i, pair[0])? << 4 | digit(2 * i + 1, pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_bad_characters() {
        assert_eq!(encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(decode("salt", "00ABff").unwrap(), vec![0, 0xab, 0xff]);
        assert_eq!(
            decode("salt", "abc"),
            Err(HexError::OddLength { field: "salt", len: 3 })
        );
        assert_eq!(
            decode("root hash", "0g"),
            Err(HexError::NotHex {
                field: "root hash",
                ch: 'g',
                position: 1
            })
        );
        assert_eq!(decode("x", "").unwrap(), Vec::<u8>::new());
        assert!(decode("x", "é1").is_err());
    }
}
