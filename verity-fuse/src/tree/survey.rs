//! Every corrupted block of a tree and its data, not only the first: the report of `verity-fuse verify`.
//!
//! The walk is [`check()`](super::check())'s, top-down, but it does not stop at a difference. Each level is
//! hashed whole and compared, hash block by hash block, with the digests its parent holds. A child whose
//! digest differs is named; a child of a hash block that is itself corrupted (or lies under one) has nothing
//! trusted to be compared with, so it is counted as unchecked instead of being named or passed. The first
//! finding is always the error [`check()`](super::check()) returns.

use crate::ReadAt;
use crate::error::{BlockRef, Device, VerityError};
use crate::hash::Digest;
use crate::params::Geometry;
use crate::tree::{LevelJob, hash_level, read_stored, top};

/// One corrupted block found by [`survey()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The block's digest is not the one its (trusted) parent or the root hash holds.
    Mismatch {
        /// The corrupted block.
        block: BlockRef,
        /// The digest the tree or root hash expects.
        expected: Digest,
        /// The digest of the block as read.
        found: Digest,
    },
    /// A trusted hash block has non-zero bytes where no digest goes.
    NonZeroPadding {
        /// Tree level of the hash block, 0 = leaves.
        level: usize,
        /// Absolute hash-block number.
        block: u64,
        /// Byte offset of the first such byte inside the block.
        offset: usize,
    },
}

impl Finding {
    /// The block the finding names.
    pub fn block(&self) -> BlockRef {
        match self {
            Self::Mismatch { block, .. } => *block,
            Self::NonZeroPadding { level, block, .. } => BlockRef::Hash {
                level: *level,
                block: *block,
            },
        }
    }

    /// Byte position of the block on its device (the data device for data blocks, the hash device for hash
    /// blocks), as veritysetup's "Verification failed at position" counts it.
    pub fn position(&self, geometry: &Geometry) -> u64 {
        match self {
            Self::Mismatch {
                block: BlockRef::Data { block },
                ..
            } => block * geometry.data_block_size() as u64,
            Self::Mismatch {
                block: BlockRef::Hash { block, .. },
                ..
            }
            | Self::NonZeroPadding { block, .. } => block * geometry.hash_block_size() as u64,
        }
    }

    /// The same failure as the error [`check()`](super::check()) returns.
    pub fn to_error(&self) -> VerityError {
        match self {
            Self::Mismatch { block, expected, found } => VerityError::HashMismatch {
                block: *block,
                expected: Box::new(*expected),
                found: Box::new(*found),
            },
            Self::NonZeroPadding { block, offset, .. } => VerityError::NonZeroPadding {
                block: *block,
                offset: *offset,
            },
        }
    }
}

/// What [`survey()`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Every corrupted block, top-down: the top block, then each level from the top, then the data, each in
    /// block order.
    pub findings: Vec<Finding>,
    /// Blocks (hash and data) under a corrupted hash block: their expected digests are not trusted, so they
    /// were neither named nor passed.
    pub unchecked: u64,
    /// Data blocks among [`Survey::unchecked`].
    pub unchecked_data: u64,
}

impl Survey {
    /// Whether the data and tree are those of the root hash.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// The first finding as the error [`check()`](super::check()) returns, or `Ok` when clean.
    pub fn result(&self) -> Result<(), VerityError> {
        self.findings.first().map_or(Ok(()), |f| Err(f.to_error()))
    }
}

/// The differences between hash block `index` of level `parent` as stored and as computed from its children,
/// in byte order: one [`Finding::Mismatch`] per child whose digest differs, and one
/// [`Finding::NonZeroPadding`] at the first differing byte outside the digests.
pub(crate) fn block_findings(
    geometry: &Geometry,
    parent: usize,
    index: u64,
    computed: &[u8],
    stored: &[u8],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let per = geometry.hashes_per_block();
    let children = if parent == 0 {
        geometry.params.data_blocks
    } else {
        geometry.levels[parent - 1].blocks
    };
    let mut padding_seen = false;
    let mut at = 0;
    while at < computed.len() {
        if computed[at] == stored[at] {
            at += 1;
            continue;
        }
        let slot = at / geometry.digest_stride;
        let child = index * per + slot as u64;
        let in_digest = (slot as u64) < per && at % geometry.digest_stride < geometry.digest_size;
        if in_digest && child < children {
            let digest_at = slot * geometry.digest_stride;
            let digest = |bytes: &[u8]| {
                Digest::from_slice(&bytes[digest_at..digest_at + geometry.digest_size]).expect("digest size")
            };
            let block = if parent == 0 {
                BlockRef::Data { block: child }
            } else {
                BlockRef::Hash {
                    level: parent - 1,
                    block: geometry.levels[parent - 1].first_block + child,
                }
            };
            findings.push(Finding::Mismatch {
                block,
                expected: digest(stored),
                found: digest(computed),
            });
            at = digest_at + geometry.digest_stride;
        } else {
            if !padding_seen {
                padding_seen = true;
                findings.push(Finding::NonZeroPadding {
                    level: parent,
                    block: geometry.levels[parent].first_block + index,
                    offset: at,
                });
            }
            at += 1;
        }
    }
    findings
}

/// Checks `data` against the tree stored in `hash` and the root hash `root` to the end, naming every
/// corrupted block; `threads` threads hash. Errors are only those of reading: a short device or I/O.
pub fn survey<D: ReadAt + ?Sized, H: ReadAt + ?Sized>(
    data: &D,
    hash: &H,
    geometry: &Geometry,
    root: &Digest,
    threads: usize,
) -> Result<Survey, VerityError> {
    let stored = read_stored(data, hash, geometry)?;
    let hasher = geometry.params.hasher();
    let mut survey = Survey::default();
    let (top_block, top_digest) = top(data, &stored, geometry, &hasher)?;
    let top_corrupted = top_digest != *root;
    if top_corrupted {
        survey.findings.push(Finding::Mismatch {
            block: top_block,
            expected: *root,
            found: top_digest,
        });
    }
    let hbs = geometry.hash_block_size();
    let per = geometry.hashes_per_block();
    // Whether each block of the level being compared is untrusted: corrupted or under a corrupted block.
    let mut untrusted = vec![top_corrupted];
    for parent in (0..geometry.levels.len()).rev() {
        let (device, children, block_size, source_offset) = if parent == 0 {
            (Device::Data, geometry.params.data_blocks, geometry.data_block_size(), 0)
        } else {
            (
                Device::Hash,
                geometry.levels[parent - 1].blocks,
                hbs,
                geometry.level_offset_in_tree(parent - 1) as u64,
            )
        };
        let level_blocks = geometry.levels[parent].blocks;
        let mut computed = vec![0u8; level_blocks as usize * hbs];
        let job = LevelJob::new(geometry, &hasher, device, source_offset, block_size, children);
        let source: &dyn ReadAt = if parent == 0 { &data } else { &stored.as_slice() };
        hash_level(source, &job, &mut computed, threads, &|_| {})?;
        let start = geometry.level_offset_in_tree(parent);
        let mut below = if parent == 0 {
            Vec::new()
        } else {
            vec![false; children as usize]
        };
        for (index, bad) in untrusted.iter().enumerate() {
            let first = index as u64 * per;
            let count = children.saturating_sub(first).min(per);
            if *bad {
                survey.unchecked += count;
                if parent == 0 {
                    survey.unchecked_data += count;
                } else {
                    below[first as usize..(first + count) as usize].fill(true);
                }
                continue;
            }
            let range = index * hbs..(index + 1) * hbs;
            let findings = block_findings(
                geometry,
                parent,
                index as u64,
                &computed[range.clone()],
                &stored[start + range.start..start + range.end],
            );
            for finding in findings {
                if let (
                    Finding::Mismatch {
                        block: BlockRef::Hash { block, .. },
                        ..
                    },
                    false,
                ) = (&finding, parent == 0)
                {
                    below[(block - geometry.levels[parent - 1].first_block) as usize] = true;
                }
                survey.findings.push(finding);
            }
        }
        untrusted = below;
    }
    Ok(survey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{check, tests::sample as built};

    fn named(survey: &Survey) -> Vec<BlockRef> {
        survey.findings.iter().map(Finding::block).collect()
    }

    #[test]
    fn names_every_corrupted_data_block_in_order() {
        let (mut data, hash, geometry, root) = built(1000);
        assert!(survey(&data[..], &hash[..], &geometry, &root, 2).unwrap().is_clean());
        for b in [700u64, 5, 300, 301] {
            data[(b * 4096 + 9) as usize] ^= 1;
        }
        let s = survey(&data[..], &hash[..], &geometry, &root, 2).unwrap();
        let blocks: Vec<_> = [5, 300, 301, 700].map(|block| BlockRef::Data { block }).into();
        assert_eq!(named(&s), blocks);
        assert_eq!((s.unchecked, s.unchecked_data), (0, 0));
        let first = check(&data[..], &hash[..], &geometry, &root, 2)
            .unwrap_err()
            .to_string();
        assert_eq!(s.result().unwrap_err().to_string(), first);
        assert_eq!(s.findings[0].position(&geometry), 5 * 4096);
    }

    #[test]
    fn a_corrupted_leaf_is_named_and_its_children_are_unchecked() {
        let (mut data, mut hash, geometry, root) = built(1000);
        // No superblock: the top block is hash block 0, the leaves 1–8; leaf 2 holds data blocks 128–255.
        hash[2 * 4096 + 100] ^= 1;
        data[900 * 4096] ^= 1;
        let s = survey(&data[..], &hash[..], &geometry, &root, 2).unwrap();
        assert_eq!(
            named(&s),
            vec![BlockRef::Hash { level: 0, block: 2 }, BlockRef::Data { block: 900 }]
        );
        assert_eq!((s.unchecked, s.unchecked_data), (128, 128));
        let first = check(&data[..], &hash[..], &geometry, &root, 2)
            .unwrap_err()
            .to_string();
        assert_eq!(s.result().unwrap_err().to_string(), first);
    }

    #[test]
    fn a_corrupted_top_leaves_everything_unchecked() {
        let (data, mut hash, geometry, root) = built(300 * 128 + 5);
        hash[0] ^= 1;
        let s = survey(&data[..], &hash[..], &geometry, &root, 2).unwrap();
        assert_eq!(s.findings.len(), 1);
        assert_eq!(s.unchecked, geometry.tree_blocks() - 1 + geometry.params.data_blocks);
        assert_eq!(s.unchecked_data, geometry.params.data_blocks);
    }

    #[test]
    fn padding_is_named_once_per_block() {
        let (data, mut hash, geometry, _) = built(130);
        // Leaf 2 (hash block 2) holds two digests; bytes past them are padding.
        hash[2 * 4096 + 3000] = 1;
        hash[2 * 4096 + 3001] = 1;
        let rebuilt = geometry.params.hasher();
        let mut top = hash[..4096].to_vec();
        let leaf = rebuilt.digest(&hash[2 * 4096..3 * 4096]);
        top[32..64].copy_from_slice(leaf.as_bytes());
        hash[..4096].copy_from_slice(&top);
        let root = rebuilt.digest(&hash[..4096]);
        let s = survey(&data[..], &hash[..], &geometry, &root, 1).unwrap();
        assert_eq!(
            s.findings,
            vec![Finding::NonZeroPadding {
                level: 0,
                block: 2,
                offset: 3000
            }]
        );
        let first = check(&data[..], &hash[..], &geometry, &root, 1)
            .unwrap_err()
            .to_string();
        assert_eq!(s.result().unwrap_err().to_string(), first);
    }

    #[test]
    fn a_single_block_tree_is_its_data_block() {
        let (mut data, hash, geometry, root) = built(1);
        data[0] ^= 1;
        let s = survey(&data[..], &hash[..], &geometry, &root, 1).unwrap();
        assert_eq!(named(&s), vec![BlockRef::Data { block: 0 }]);
    }
}
