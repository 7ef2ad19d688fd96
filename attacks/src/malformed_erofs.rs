//! `malformed-erofs`: a crafted EROFS image, with a correct tree and local metadata of its own, handed to the
//! reader: an attack on the filesystem parser rather than on the data.
//!
//! The crafting works on the on-disk format directly: the superblock at byte 1024 (`root_nid` at +14,
//! `blocks` at +36, `meta_blkaddr` at +40, block size `1 << blkszbits` at +12), inodes at
//! `meta_blkaddr * block + nid * 32` (compact 32 bytes or extended 64, by bit 0 of `i_format`;
//! `i_xattr_icount` at +2, `i_size` at +8, the data block address at +16, the data layout in bits 1..3),
//! directory entries of 12 bytes (`nameoff` at +8).

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage};

const SUPERBLOCK: usize = 1024;
const FLAT_INLINE: u16 = 2;

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct MalformedErofs {
    field: String,
    layer: Option<usize>,
    crafted: Option<usize>,
}

impl MalformedErofs {
    /// From the scenario's parameters (`field`).
    pub(crate) fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            field: params.string("field").unwrap_or("dirent-nameoff").to_owned(),
            layer: params.layer(),
            crafted: None,
        })
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), AttackError> {
    b.get_mut(at..at.saturating_add(bytes.len()))
        .ok_or_else(|| AttackError::env(format!("offset {at} is outside the image")))?
        .copy_from_slice(bytes);
    Ok(())
}

/// Malforms `field` of the EROFS image `image`; returns what was changed.
pub(crate) fn malform(image: &mut [u8], field: &str) -> Result<String, AttackError> {
    let bad = || AttackError::env("the layer is not an EROFS image this attack understands");
    let bits = image.get(SUPERBLOCK + 12).copied().ok_or_else(bad)?;
    let block = 1usize
        .checked_shl(u32::from(bits))
        .filter(|b| (512..=65536).contains(b))
        .ok_or_else(bad)?;
    let root_nid = u16_at(image, SUPERBLOCK + 14).ok_or_else(bad)?;
    let meta = u32_at(image, SUPERBLOCK + 40).ok_or_else(bad)? as usize;
    let inode = meta
        .checked_mul(block)
        .and_then(|m| m.checked_add(usize::from(root_nid) * 32))
        .ok_or_else(bad)?;
    let format = u16_at(image, inode).ok_or_else(bad)?;
    let extended = format & 1 == 1;
    let inode_size = if extended { 64 } else { 32 };
    match field {
        "root-nid" => {
            put(image, SUPERBLOCK + 14, &0xfff0u16.to_le_bytes())?;
            Ok("superblock root_nid set to 0xfff0 (past the metadata)".to_owned())
        }
        "superblock-blocks" => {
            put(image, SUPERBLOCK + 36, &1u32.to_le_bytes())?;
            Ok("superblock blocks set to 1 (smaller than the image)".to_owned())
        }
        "inode-size" => {
            if extended {
                put(image, inode + 8, &u64::MAX.to_le_bytes())?;
            } else {
                put(image, inode + 8, &u32::MAX.to_le_bytes())?;
            }
            Ok(format!("root inode (nid {root_nid}) i_size set to the maximum"))
        }
        "xattr-count" => {
            put(image, inode + 2, &0xffffu16.to_le_bytes())?;
            Ok(format!("root inode (nid {root_nid}) i_xattr_icount set to 0xffff"))
        }
        _ => {
            let icount = usize::from(u16_at(image, inode + 2).ok_or_else(bad)?);
            let xattrs = if icount == 0 { 0 } else { 12 + (icount - 1) * 4 };
            let layout = (format >> 1) & 7;
            let dirents = if layout == FLAT_INLINE && u32_at(image, inode + 8).is_some_and(|s| s as usize <= block) {
                inode + inode_size + xattrs
            } else {
                (u32_at(image, inode + 16).ok_or_else(bad)? as usize)
                    .checked_mul(block)
                    .ok_or_else(bad)?
            };
            put(image, dirents + 8, &0xfff0u16.to_le_bytes())?;
            Ok(format!(
                "root directory's first entry (at byte {dirents}) nameoff set to 0xfff0, outside its block"
            ))
        }
    }
}

impl Attack for MalformedErofs {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let all =
            std::fs::read(&layer.erofs).map_err(|e| AttackError::env(format!("{}: {e}", layer.erofs.display())))?;
        let size = usize::try_from(layer.data_size).map_err(AttackError::env)?;
        let mut image = all
            .get(..size)
            .ok_or_else(|| AttackError::env("the layer file is truncated"))?
            .to_vec();
        let what = malform(&mut image, &self.field)?;
        let crafted = crate::steps::build_tree(env, &image)?;
        std::fs::copy(&crafted.erofs, &layer.erofs)
            .map_err(|e| AttackError::env(format!("copying over {}: {e}", layer.erofs.display())))?;
        env.rewrite_local_metadata(index, &crafted)?;
        self.crafted = Some(index);
        Ok(format!(
            "layer {index}: {what}; new tree and local metadata (root hash {})",
            crafted.root_hash
        ))
    }

    /// The attacker wants the crafted structures accepted: the container's rootfs served over the crafted layer.
    /// The runner has just read the whole rootfs: a reader that refused the layer has already blocked the cell.
    fn observe(&mut self, _env: &mut dyn Env) -> Result<Effect, AttackError> {
        Ok(match self.crafted {
            Some(index) => Effect::Seen(format!(
                "the container's rootfs includes the crafted layer {index} ({})",
                self.field
            )),
            None => Effect::Unobservable("no layer was crafted".to_owned()),
        })
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "malformed-erofs",
    summary: "hand the EROFS reader a crafted image with consistent verity metadata",
    params: &[opt(
        "field",
        ParamType::Choice(&[
            "dirent-nameoff",
            "inode-size",
            "root-nid",
            "xattr-count",
            "superblock-blocks",
        ]),
        "which structure is malformed (default: dirent-nameoff)",
    )],
    create: |params| Ok(Box::new(MalformedErofs::new(params)?)),
};
