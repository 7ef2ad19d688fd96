//! Reading a dm-verity table line back: the fields `verity-fuse status` prints as `veritysetup status` does.
//!
//! A device's record keeps the table it loaded (for the FUSE backend, the line the kernel would load with
//! the files as devices), written by [`super::kernel::table_line_with`]; [`Table::parse`] is its inverse, for
//! lines of that shape and for those `dmsetup table` prints.

use crate::class::ErrorClass;
use crate::hash::Digest;

/// The fields of a dm-verity table line:
///
/// `<start> <sectors> verity <version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
/// <num_data_blocks> <hash_start_block> <algorithm> <root_digest> <salt or -> [<#opt> <opt>...]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Length of the mapping in 512-byte sectors.
    pub sectors: u64,
    /// Hash type (format version): 0 or 1.
    pub version: u32,
    /// The data device as the line names it (a path or `major:minor`).
    pub data_device: String,
    /// The hash device as the line names it.
    pub hash_device: String,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// First block of the tree on the hash device, in hash blocks (past the superblock, if any).
    pub hash_start_block: u64,
    /// The hash algorithm's name.
    pub algorithm: String,
    /// The root hash (hex in the line).
    pub root_hash: Digest,
    /// The salt, hex, or `-` for none.
    pub salt: String,
    /// Mode flags (`ignore_corruption`, `check_at_most_once`, ...), in table order.
    pub flags: Vec<String>,
    /// Forward error correction, when the line has it.
    pub fec: Option<TableFec>,
    /// The description of the key holding the root-hash signature, when the line names one.
    pub signature_key: Option<String>,
}

/// The FEC arguments of a table line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFec {
    /// The FEC device as the line names it.
    pub device: String,
    /// Blocks covered by parity (`fec_blocks`).
    pub blocks: u64,
    /// Where the parity starts, in data blocks (`fec_start`).
    pub start: u64,
    /// Parity bytes per codeword (`fec_roots`).
    pub roots: u32,
}

/// A line that is not a dm-verity table line of the shape [`Table::parse`] reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dm-verity table line ({reason}): {line:?}")]
pub struct TableError {
    /// The line.
    pub line: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl TableError {
    /// What kind of failure this is: always bad input.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Optional arguments followed by one value; every other optional argument is a flag.
const VALUED: &[&str] = &[
    "use_fec_from_device",
    "fec_blocks",
    "fec_start",
    "fec_roots",
    "root_hash_sig_key_desc",
];

impl Table {
    /// Parses `line`; fails on a line of another target, a missing field, a bad number, an option count
    /// that disagrees with the options, or FEC arguments given only in part.
    pub fn parse(line: &str) -> Result<Table, TableError> {
        let line = line.trim();
        let err = |reason| TableError {
            line: line.to_owned(),
            reason,
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 13 {
            return Err(err("too few fields"));
        }
        if f[2] != "verity" {
            return Err(err("the target is not verity"));
        }
        let number = |s: &str| s.parse::<u64>().map_err(|_| err("a number field is not a number"));
        let small = |s: &str| s.parse::<u32>().map_err(|_| err("a number field is not a number"));
        let args: &[&str] = match f.get(13) {
            None => &[],
            Some(count) => {
                let rest = &f[14..];
                if usize::try_from(number(count)?).ok() != Some(rest.len()) {
                    return Err(err("the option count disagrees with the options"));
                }
                rest
            }
        };
        let mut flags = Vec::new();
        let mut valued: Vec<(&str, &str)> = Vec::new();
        let mut i = 0;
        while i < args.len() {
            match VALUED.iter().find(|name| **name == args[i]) {
                Some(name) => {
                    let value = args.get(i + 1).ok_or(err("an option lacks its value"))?;
                    valued.push((name, value));
                    i += 2;
                }
                None => {
                    flags.push(args[i].to_owned());
                    i += 1;
                }
            }
        }
        let value = |name: &str| valued.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let fec = match (
            value("use_fec_from_device"),
            value("fec_blocks"),
            value("fec_start"),
            value("fec_roots"),
        ) {
            (None, None, None, None) => None,
            (Some(device), Some(blocks), Some(start), Some(roots)) => Some(TableFec {
                device: device.to_owned(),
                blocks: number(blocks)?,
                start: number(start)?,
                roots: small(roots)?,
            }),
            _ => return Err(err("FEC arguments given only in part")),
        };
        Ok(Table {
            sectors: number(f[1])?,
            version: small(f[3])?,
            data_device: f[4].to_owned(),
            hash_device: f[5].to_owned(),
            data_block_size: small(f[6])?,
            hash_block_size: small(f[7])?,
            data_blocks: number(f[8])?,
            hash_start_block: number(f[9])?,
            algorithm: f[10].to_owned(),
            root_hash: crate::hex::decode("root hash", f[11])
                .ok()
                .and_then(|bytes| Digest::from_slice(&bytes))
                .ok_or(err("the root hash is not a hex digest"))?,
            salt: f[12].to_owned(),
            flags,
            fec,
            signature_key: value("root_hash_sig_key_desc").map(str::to_owned),
        })
    }

    /// Where the tree starts on the hash device, in bytes (the superblock, if any, lies just before).
    pub fn hash_offset_bytes(&self) -> u64 {
        self.hash_start_block * u64::from(self.hash_block_size)
    }
}

impl TableFec {
    /// Where the parity starts on the FEC device, in bytes.
    pub fn offset_bytes(&self, table: &Table) -> u64 {
        self.start * u64::from(table.data_block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::kernel::{TableExtras, table_line_with};
    use crate::device::{CorruptionMode, Options};
    use crate::fec::FecParams;
    use crate::hash::Digest;
    use crate::params::{Geometry, Placement, VerityParams};

    #[test]
    fn parses_back_the_lines_we_write() {
        let g = Geometry::new(VerityParams::new(1000, vec![0xab]), Placement::with_superblock(40960)).unwrap();
        let root = Digest::from_slice(&[0x22; 32]).unwrap();
        let fec = FecParams {
            roots: 2,
            blocks: 1009,
            offset: 40960,
        };
        let options = Options {
            on_corruption: CorruptionMode::Restart,
            check_at_most_once: true,
            ..Options::default()
        };
        for (fec, key) in [(None, None), (Some(("/f.fec", &fec)), Some("verity-fuse:x"))] {
            let line = table_line_with(
                &g,
                "/d.img",
                "/d.img",
                &root,
                &options,
                TableExtras {
                    fec,
                    signature_key: key,
                },
            );
            let t = Table::parse(&line).unwrap();
            assert_eq!(
                (
                    t.sectors,
                    t.version,
                    t.data_block_size,
                    t.hash_block_size,
                    t.data_blocks
                ),
                (8000, 1, 4096, 4096, 1000)
            );
            assert_eq!(
                t.hash_offset_bytes(),
                40960 + 4096,
                "the tree starts past the superblock"
            );
            assert_eq!((t.algorithm.as_str(), t.salt.as_str()), ("sha256", "ab"));
            assert_eq!(t.root_hash, root);
            assert_eq!(t.flags, ["restart_on_corruption", "check_at_most_once"]);
            assert_eq!(t.signature_key.as_deref(), key);
            match fec {
                None => assert_eq!(t.fec, None),
                Some(_) => {
                    let f = t.fec.clone().unwrap();
                    assert_eq!((f.device.as_str(), f.blocks, f.start, f.roots), ("/f.fec", 1009, 10, 2));
                    assert_eq!(f.offset_bytes(&t), 40960);
                }
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_verity_line() {
        let root = "11".repeat(32);
        let good = format!("0 8 verity 1 7:0 7:1 4096 4096 1 1 sha256 {root} -");
        assert!(Table::parse(&good).is_ok());
        for bad in [
            String::new(),
            good.replace("verity", "linear"),
            good.replace(" 4096 4096", " x 4096"),
            format!("{good} 2 ignore_corruption"),
            format!("{good} 1 use_fec_from_device"),
            format!("{good} 4 use_fec_from_device 7:2 fec_roots 2"),
        ] {
            let e = Table::parse(&bad).unwrap_err();
            assert_eq!(e.class(), ErrorClass::BadInput, "{bad}: {e}");
        }
    }
}
