//! `layer-blocks-rewrite`: several files' data changed in a stored layer, more blocks than its forward error
//! correction can repair.
//!
//! dm-verity's parity interleaves the covered blocks into rounds (block `b` is in round `b % rounds`); with
//! `roots` parity bytes per codeword one round repairs at most `roots / 2` unknown damaged blocks. The
//! attack changes the first data byte of `path` and of each file in `also`; the report says how many of the
//! changed blocks share `path`'s round, since only those compete for the same parity.

use veritylab::convert::{self, VerityLayout};
use veritylab::oci::Digest;

use crate::catalogue::{AttackSpec, LAYER, ParamType, opt, req};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, flip_byte};

/// Bytes per data block of a converted layer.
const BLOCK: u64 = convert::verity::BLOCK;

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct LayerBlocksRewrite {
    layer: Option<usize>,
    path: String,
    also: Vec<String>,
    flipped: Option<u8>,
}

impl LayerBlocksRewrite {
    /// From the scenario's parameters (`layer`, `path`, `also`).
    pub(crate) fn new(params: &Params) -> Result<Self, AttackError> {
        let also: String = params.required("also").unwrap_or_default();
        Ok(Self {
            layer: params.layer(),
            path: params.required("path")?,
            also: also
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            flipped: None,
        })
    }
}

/// Covered blocks per round of codewords: `255 - roots` (parity roots from the layer's conversion record,
/// veritysetup's default of 2 when it has none).
fn rounds(env: &dyn Env, digest: &str, covered: u64) -> u64 {
    let roots = digest
        .parse::<Digest>()
        .ok()
        .and_then(|d| {
            convert::existing(env.store(), &d, VerityLayout::Containerd)
                .ok()
                .flatten()
        })
        .and_then(|c| c.fec)
        .map_or(2, |f| u64::from(f.roots));
    covered.div_ceil(255 - roots).max(1)
}

impl Attack for LayerBlocksRewrite {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let at = crate::steps::file_offset(env, index, &self.path)?;
        let mut others = Vec::with_capacity(self.also.len());
        for path in &self.also {
            others.push(crate::steps::file_offset(env, index, path)?);
        }
        let data_blocks = layer.data_size / BLOCK;
        let file_len = std::fs::metadata(&layer.erofs)
            .map_err(|e| AttackError::env(format!("{}: {e}", layer.erofs.display())))?
            .len();
        let tree_blocks = (file_len.saturating_sub(layer.hash_offset) / BLOCK).saturating_sub(1);
        let rounds = rounds(env, &layer.digest, data_blocks + tree_blocks);
        let (_, new) = flip_byte(&layer.erofs, at)?;
        self.flipped = Some(new);
        for &offset in &others {
            flip_byte(&layer.erofs, offset)?;
        }
        let blocks: Vec<u64> = std::iter::once(at).chain(others).map(|o| o / BLOCK).collect();
        let same_round = blocks.iter().filter(|&&b| b % rounds == blocks[0] % rounds).count();
        Ok(format!(
            "changed the first data byte of {} and {} in {}: data blocks {blocks:?}, {same_round} of them in one \
             FEC round (of {rounds})",
            self.path,
            self.also.join(", "),
            layer.erofs.display(),
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        let detail = format!("the container reads /{} ({} bytes)", self.path, seen.len());
        Ok(match self.flipped {
            Some(new) if seen.first() == Some(&new) => Effect::Seen(format!("{detail}: the changed first byte")),
            Some(_) => Effect::Genuine(format!("{detail}: the genuine first byte")),
            None => Effect::Unobservable("nothing was changed".to_owned()),
        })
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "layer-blocks-rewrite",
    summary: "change the data of several files of a stored layer, more blocks than its parity repairs",
    params: &[
        LAYER,
        req(
            "path",
            ParamType::Path,
            "file whose first byte is changed and then read",
        ),
        opt(
            "also",
            ParamType::String,
            "comma-separated files of the same layer whose first data byte is changed too (default: none)",
        ),
    ],
    create: |params| Ok(Box::new(LayerBlocksRewrite::new(params)?)),
};
