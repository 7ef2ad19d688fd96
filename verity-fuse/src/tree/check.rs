//! Checking a stored tree against its data, top-down, as `veritysetup verify` does.
//!
//! The top block is checked against the root hash, then each level's blocks against the digests their
//! (already checked) parent holds, then the data blocks against the leaves. The first failure therefore names
//! the block that actually changed, not one of its ancestors.
//!
//! [`Checker`] does the same work in steps of a bounded number of hashed blocks, so a caller can pace it (a
//! CPU budget) or stop between steps; [`check()`] runs it to the end in one go.

use super::survey::block_findings;
use crate::ReadAt;
use crate::error::{Device, VerityError};
use crate::hash::{BlockHasher, Digest};
use crate::params::Geometry;
use crate::tree::{LevelJob, hash_level, read_stored, top};

/// Checks that `hash` holds, at the geometry's placement, the tree of `data` with root hash `root`.
pub fn check<D: ReadAt + ?Sized, H: ReadAt + ?Sized>(
    data: &D,
    hash: &H,
    geometry: &Geometry,
    root: &Digest,
    threads: usize,
) -> Result<(), VerityError> {
    let mut checker = Checker::new(data, hash, geometry, root, threads)?;
    while checker.step(u64::MAX)? == Step::Continue {}
    Ok(())
}

/// Whether a [`Checker`] has more to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More blocks remain; call [`Checker::step`] again.
    Continue,
    /// Everything matched: the data and the tree are those of the root hash.
    Done,
}

/// Where a [`Checker`] is.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// The top block (or the single data block) against the root hash.
    Top,
    /// The children of level `parent`, from its hash block `next` on.
    Level { parent: usize, next: u64 },
    /// Finished, or failed.
    Done,
}

/// A top-down tree check done in steps: [`Checker::new`] reads the stored tree (about 1/128 of the data with
/// sha256 and 4 KiB blocks), each [`Checker::step`] hashes at most a given number of blocks (rounded up to
/// whole hash blocks of the level being checked) and compares them. The first error ends the check.
pub struct Checker<'a, D: ReadAt + ?Sized> {
    data: &'a D,
    geometry: &'a Geometry,
    root: Digest,
    hasher: BlockHasher,
    stored: Vec<u8>,
    threads: usize,
    stage: Stage,
    blocks_done: u64,
    bytes_done: u64,
}

impl<'a, D: ReadAt + ?Sized> Checker<'a, D> {
    /// Prepares a check of `data` against the tree stored in `hash` and the root hash `root`; `threads`
    /// threads hash each step.
    pub fn new<H: ReadAt + ?Sized>(
        data: &'a D,
        hash: &H,
        geometry: &'a Geometry,
        root: &Digest,
        threads: usize,
    ) -> Result<Self, VerityError> {
        let stored = read_stored(data, hash, geometry)?;
        Ok(Self {
            data,
            geometry,
            root: *root,
            hasher: geometry.params.hasher(),
            stored,
            threads,
            stage: Stage::Top,
            blocks_done: 0,
            bytes_done: 0,
        })
    }

    /// Blocks (data and hash) a whole check hashes.
    pub fn blocks_total(&self) -> u64 {
        if self.geometry.levels.is_empty() {
            1
        } else {
            self.geometry.params.data_blocks + self.geometry.tree_blocks()
        }
    }

    /// Blocks hashed so far.
    pub fn blocks_done(&self) -> u64 {
        self.blocks_done
    }

    /// Bytes hashed so far (data and hash blocks).
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done
    }

    /// Hashes at most `max_blocks` more blocks (at least one hash block's worth of children) and compares
    /// them with the stored digests or the root hash.
    pub fn step(&mut self, max_blocks: u64) -> Result<Step, VerityError> {
        let result = self.advance(max_blocks);
        if !matches!(result, Ok(Step::Continue)) {
            self.stage = Stage::Done;
        }
        result
    }

    fn advance(&mut self, max_blocks: u64) -> Result<Step, VerityError> {
        let geometry = self.geometry;
        let hbs = geometry.hash_block_size();
        match self.stage {
            Stage::Done => Ok(Step::Done),
            Stage::Top => {
                let top = top(self.data, &self.stored, geometry, &self.hasher)?;
                self.blocks_done += 1;
                self.bytes_done += if geometry.levels.is_empty() {
                    geometry.data_block_size() as u64
                } else {
                    hbs as u64
                };
                if top.1 != self.root {
                    return Err(VerityError::HashMismatch {
                        block: top.0,
                        expected: Box::new(self.root),
                        found: Box::new(top.1),
                    });
                }
                if geometry.levels.is_empty() {
                    return Ok(Step::Done);
                }
                self.stage = Stage::Level {
                    parent: geometry.levels.len() - 1,
                    next: 0,
                };
                Ok(Step::Continue)
            }
            Stage::Level { parent, next } => {
                let per = geometry.hashes_per_block();
                let (device, children, block_size) = if parent == 0 {
                    (Device::Data, geometry.params.data_blocks, geometry.data_block_size())
                } else {
                    (Device::Hash, geometry.levels[parent - 1].blocks, hbs)
                };
                let level_blocks = geometry.levels[parent].blocks;
                let take = (max_blocks / per).clamp(1, level_blocks - next);
                let first_child = next * per;
                let count = (children - first_child).min(take * per);
                let source_offset = if parent == 0 {
                    0
                } else {
                    geometry.level_offset_in_tree(parent - 1) as u64
                };
                let start = geometry.level_offset_in_tree(parent) + next as usize * hbs;
                let mut computed = vec![0u8; take as usize * hbs];
                let job = LevelJob::new(
                    geometry,
                    &self.hasher,
                    device,
                    source_offset + first_child * block_size as u64,
                    block_size,
                    count,
                );
                let source: &dyn ReadAt = if parent == 0 {
                    &self.data
                } else {
                    &self.stored.as_slice()
                };
                hash_level(source, &job, &mut computed, self.threads, &|_| {})?;
                self.blocks_done += count;
                self.bytes_done += count * block_size as u64;
                let expected = &self.stored[start..start + computed.len()];
                let differing = computed.chunks(hbs).zip(expected.chunks(hbs)).position(|(a, b)| a != b);
                if let Some(i) = differing {
                    let range = i * hbs..(i + 1) * hbs;
                    let findings = block_findings(
                        geometry,
                        parent,
                        next + i as u64,
                        &computed[range.clone()],
                        &expected[range],
                    );
                    return Err(findings.first().expect("the blocks differ").to_error());
                }
                self.stage = match (next + take < level_blocks, parent) {
                    (true, _) => Stage::Level {
                        parent,
                        next: next + take,
                    },
                    (false, 0) => return Ok(Step::Done),
                    (false, _) => Stage::Level {
                        parent: parent - 1,
                        next: 0,
                    },
                };
                Ok(Step::Continue)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::sample as built;
    use proptest::prelude::*;

    fn stepped(data: &[u8], hash: &[u8], geometry: &Geometry, root: &Digest, max: u64) -> Result<u64, VerityError> {
        let mut checker = Checker::new(data, hash, geometry, root, 1)?;
        let mut steps = 0u64;
        while checker.step(max)? == Step::Continue {
            steps += 1;
            assert!(steps <= checker.blocks_total(), "each step makes progress");
        }
        assert_eq!(checker.blocks_done(), checker.blocks_total());
        Ok(steps)
    }

    #[test]
    fn small_steps_hash_every_block_once_and_make_progress() {
        let (data, hash, geometry, root) = built(300 * 128 + 5);
        assert_eq!(geometry.levels.len(), 3);
        let steps = stepped(&data, &hash, &geometry, &root, 1).unwrap();
        assert_eq!(steps, geometry.tree_blocks(), "one step per hash block plus the top");
        let whole = stepped(&data, &hash, &geometry, &root, u64::MAX).unwrap();
        assert_eq!(whole, geometry.levels.len() as u64);
        for blocks in [1, 2, 128, 129] {
            let (data, hash, geometry, root) = built(blocks);
            stepped(&data, &hash, &geometry, &root, 1).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn stepped_and_whole_checks_name_the_same_block(
            blocks in 1u64..700,
            max in 1u64..1000,
            flip in any::<prop::sample::Index>(),
            in_tree in any::<bool>(),
        ) {
            let (mut data, mut hash, geometry, root) = built(blocks);
            if in_tree && !hash.is_empty() {
                let i = flip.index(hash.len());
                hash[i] ^= 0x40;
            } else {
                let i = flip.index(data.len());
                data[i] ^= 0x40;
            }
            let whole = check(&data[..], &hash[..], &geometry, &root, 2).unwrap_err().to_string();
            let steps = stepped(&data, &hash, &geometry, &root, max).unwrap_err().to_string();
            prop_assert_eq!(whole, steps);
        }
    }
}
