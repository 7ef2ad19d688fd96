//! The 512-byte dm-verity superblock that veritysetup writes at the hash offset.
//!
//! ```text
//! offset size field
//!      0    8 signature "verity\0\0"
//!      8    4 version (1)
//!     12    4 hash_type (0 Chrome OS, 1 normal)
//!     16   16 uuid
//!     32   32 algorithm name, lower case, NUL padded
//!     64    4 data_block_size
//!     68    4 hash_block_size
//!     72    8 data_blocks
//!     80    2 salt_size (at most 256)
//!     82    6 padding
//!     88  256 salt
//!    344  168 padding
//! ```
//!
//! All integers are little-endian. The kernel never reads this block: user space parses it to build the
//! table, so every field is attacker-controlled unless the parameters come from an authenticated source.

use crate::class::ErrorClass;
use crate::hash::Algorithm;
use crate::params::{HashType, MAX_SALT_SIZE, VerityParams};

/// Size of the superblock in bytes.
pub const SIZE: usize = 512;
/// The signature at offset 0.
pub const SIGNATURE: [u8; 8] = *b"verity\0\0";

const OFF_VERSION: usize = 8;
const OFF_HASH_TYPE: usize = 12;
const OFF_UUID: usize = 16;
const OFF_ALGORITHM: usize = 32;
const ALGORITHM_LEN: usize = 32;
const OFF_DATA_BLOCK_SIZE: usize = 64;
const OFF_HASH_BLOCK_SIZE: usize = 68;
const OFF_DATA_BLOCKS: usize = 72;
const OFF_SALT_SIZE: usize = 80;
const OFF_SALT: usize = 88;
const _: () = assert!(OFF_SALT + MAX_SALT_SIZE + 168 == SIZE);
const _: () = assert!(OFF_ALGORITHM + ALGORITHM_LEN == OFF_DATA_BLOCK_SIZE);

/// A parsed superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// The tree parameters it declares.
    pub params: VerityParams,
    /// The 16-byte UUID.
    pub uuid: [u8; 16],
}

/// A superblock that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuperblockError {
    /// Fewer than 512 bytes were available.
    #[error("superblock truncated: {len} of 512 bytes present")]
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// The signature is not `verity\0\0`.
    #[error("no verity superblock: signature is {found:02x?}, not \"verity\\0\\0\"")]
    BadSignature {
        /// The 8 bytes found.
        found: [u8; 8],
    },
    /// The version is not 1.
    #[error("unsupported superblock version {0} (only 1 exists)")]
    UnsupportedVersion(u32),
    /// The hash type is not 0 or 1.
    #[error("unsupported hash type {0} (0 = Chrome OS, 1 = normal)")]
    UnsupportedHashType(u32),
    /// The algorithm field is not a NUL-padded known name.
    #[error("superblock algorithm `{0}` is not supported")]
    UnknownAlgorithm(String),
    /// A block size is not a power of two from 512 to 65536.
    #[error("superblock {field} {value} is not a power of two from 512 to 65536")]
    BlockSize {
        /// Which block size.
        field: &'static str,
        /// The value found.
        value: u32,
    },
    /// The salt size is over 256.
    #[error("superblock salt size {0} is over 256")]
    SaltSize(u16),
    /// Data blocks is zero.
    #[error("superblock declares 0 data blocks")]
    NoDataBlocks,
}

impl SuperblockError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

impl Superblock {
    /// Parses and validates the first 512 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, SuperblockError> {
        let b = bytes
            .get(..SIZE)
            .ok_or(SuperblockError::Truncated { len: bytes.len() })?;
        let signature: [u8; 8] = b[..8].try_into().expect("8 bytes");
        if signature != SIGNATURE {
            return Err(SuperblockError::BadSignature { found: signature });
        }
        let version = u32_at(b, OFF_VERSION);
        if version != 1 {
            return Err(SuperblockError::UnsupportedVersion(version));
        }
        let hash_type_number = u32_at(b, OFF_HASH_TYPE);
        let hash_type =
            HashType::from_number(hash_type_number).ok_or(SuperblockError::UnsupportedHashType(hash_type_number))?;
        let name_field = &b[OFF_ALGORITHM..OFF_ALGORITHM + ALGORITHM_LEN];
        let name_len = name_field.iter().position(|&c| c == 0).unwrap_or(ALGORITHM_LEN);
        let name = String::from_utf8_lossy(&name_field[..name_len]).into_owned();
        let algorithm = name
            .parse::<Algorithm>()
            .map_err(|_| SuperblockError::UnknownAlgorithm(name.clone()))?;
        if name_field[name_len..].iter().any(|&c| c != 0) {
            return Err(SuperblockError::UnknownAlgorithm(name));
        }
        let block_size = |field, off| {
            let value = u32_at(b, off);
            if value.is_power_of_two() && (512..=65536).contains(&value) {
                Ok(value)
            } else {
                Err(SuperblockError::BlockSize { field, value })
            }
        };
        let data_block_size = block_size("data block size", OFF_DATA_BLOCK_SIZE)?;
        let hash_block_size = block_size("hash block size", OFF_HASH_BLOCK_SIZE)?;
        let data_blocks = u64::from_le_bytes(b[OFF_DATA_BLOCKS..OFF_DATA_BLOCKS + 8].try_into().expect("8 bytes"));
        if data_blocks == 0 {
            return Err(SuperblockError::NoDataBlocks);
        }
        let salt_size = u16::from_le_bytes([b[OFF_SALT_SIZE], b[OFF_SALT_SIZE + 1]]);
        if usize::from(salt_size) > MAX_SALT_SIZE {
            return Err(SuperblockError::SaltSize(salt_size));
        }
        Ok(Self {
            params: VerityParams {
                hash_type,
                algorithm,
                data_block_size,
                hash_block_size,
                data_blocks,
                salt: b[OFF_SALT..OFF_SALT + usize::from(salt_size)].to_vec(),
            },
            uuid: b[OFF_UUID..OFF_UUID + 16].try_into().expect("16 bytes"),
        })
    }

    /// The 512 on-disk bytes. The salt must be at most 256 bytes (checked by [`crate::Geometry::new`]).
    pub fn to_bytes(&self) -> [u8; SIZE] {
        let p = &self.params;
        let mut b = [0u8; SIZE];
        b[..8].copy_from_slice(&SIGNATURE);
        b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&1u32.to_le_bytes());
        b[OFF_HASH_TYPE..OFF_HASH_TYPE + 4].copy_from_slice(&p.hash_type.number().to_le_bytes());
        b[OFF_UUID..OFF_UUID + 16].copy_from_slice(&self.uuid);
        let name = p.algorithm.name().as_bytes();
        b[OFF_ALGORITHM..OFF_ALGORITHM + name.len()].copy_from_slice(name);
        b[OFF_DATA_BLOCK_SIZE..OFF_DATA_BLOCK_SIZE + 4].copy_from_slice(&p.data_block_size.to_le_bytes());
        b[OFF_HASH_BLOCK_SIZE..OFF_HASH_BLOCK_SIZE + 4].copy_from_slice(&p.hash_block_size.to_le_bytes());
        b[OFF_DATA_BLOCKS..OFF_DATA_BLOCKS + 8].copy_from_slice(&p.data_blocks.to_le_bytes());
        let salt = &p.salt[..p.salt.len().min(MAX_SALT_SIZE)];
        b[OFF_SALT_SIZE..OFF_SALT_SIZE + 2].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        b[OFF_SALT..OFF_SALT + salt.len()].copy_from_slice(salt);
        b
    }
}

/// Parses a UUID in the usual 8-4-4-4-12 hex form.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] {
        return None;
    }
    crate::hex::decode("uuid", &groups.concat()).ok()?.try_into().ok()
}

/// Formats a UUID in the usual 8-4-4-4-12 hex form.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let h = crate::hex::encode(uuid);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A random (version 4) UUID, as veritysetup generates for every format.
pub fn random_uuid() -> [u8; 16] {
    let mut u: [u8; 16] = rand::random();
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            params: VerityParams::new(1096, vec![0xde, 0xad]),
            uuid: parse_uuid("11111111-2222-3333-4444-555555555555").unwrap(),
        }
    }

    #[test]
    fn round_trips() {
        let sb = sample();
        assert_eq!(Superblock::parse(&sb.to_bytes()).unwrap(), sb);
        assert_eq!(format_uuid(&sb.uuid), "11111111-2222-3333-4444-555555555555");
    }

    #[test]
    fn each_bad_field_is_named() {
        let good = sample().to_bytes();
        let with = |off: usize, bytes: &[u8]| {
            let mut b = good;
            b[off..off + bytes.len()].copy_from_slice(bytes);
            Superblock::parse(&b).unwrap_err()
        };
        assert!(matches!(with(0, b"verixy"), SuperblockError::BadSignature { .. }));
        assert_eq!(with(8, &2u32.to_le_bytes()), SuperblockError::UnsupportedVersion(2));
        assert_eq!(with(12, &7u32.to_le_bytes()), SuperblockError::UnsupportedHashType(7));
        assert_eq!(with(32, b"md5\0\0\0"), SuperblockError::UnknownAlgorithm("md5".into()));
        assert!(matches!(
            with(64, &1000u32.to_le_bytes()),
            SuperblockError::BlockSize {
                field: "data block size",
                ..
            }
        ));
        assert!(matches!(
            with(68, &131072u32.to_le_bytes()),
            SuperblockError::BlockSize {
                field: "hash block size",
                ..
            }
        ));
        assert_eq!(with(72, &0u64.to_le_bytes()), SuperblockError::NoDataBlocks);
        assert_eq!(with(80, &257u16.to_le_bytes()), SuperblockError::SaltSize(257));
        assert_eq!(
            Superblock::parse(&good[..100]).unwrap_err(),
            SuperblockError::Truncated { len: 100 }
        );
    }

    #[test]
    fn uuids_parse_only_in_canonical_form() {
        assert!(parse_uuid("11111111222233334444555555555555").is_none());
        assert!(parse_uuid("1111111-12222-3333-4444-555555555555").is_none());
        assert!(parse_uuid("g1111111-2222-3333-4444-555555555555").is_none());
        let u = random_uuid();
        assert_eq!(parse_uuid(&format_uuid(&u)), Some(u));
    }
}
