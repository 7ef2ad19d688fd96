//! `unverified-tail`: data appended past the blocks the hash tree covers, then read for through the device.

use crate::catalogue::{AttackSpec, LAYER, ParamType, opt};
use std::io::Write;

use crate::{Attack, AttackError, Effect, Env, Params, Stage};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct UnverifiedTail {
    layer: Option<usize>,
    bytes: u64,
    index: usize,
    data_size: u64,
    read: Option<Vec<u8>>,
}

impl UnverifiedTail {
    /// From the scenario's parameters (`layer`, `bytes`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            bytes: params.integer("bytes").unwrap_or(4096),
            index: 0,
            data_size: 0,
            read: None,
        }
    }
}

impl Attack for UnverifiedTail {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        self.index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(self.index)?;
        self.data_size = layer.data_size;
        let tail = vec![0x41u8; usize::try_from(self.bytes).unwrap_or(4096)];
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&layer.erofs)
            .map_err(|e| AttackError::env(format!("{}: {e}", layer.erofs.display())))?;
        file.write_all(&tail)
            .map_err(|e| AttackError::env(format!("{}: {e}", layer.erofs.display())))?;
        let read = env.read_device(self.index, self.data_size, tail.len())?;
        let done = format!(
            "appended {} bytes to {}; a read at the end of the {}-byte device returned {} bytes",
            self.bytes,
            layer.erofs.display(),
            self.data_size,
            read.len()
        );
        self.read = Some(read);
        Ok(done)
    }

    /// The attacker wants the appended bytes served by the container's device.
    fn observe(&mut self, _env: &mut dyn Env) -> Result<Effect, AttackError> {
        Ok(match &self.read {
            Some(read) if !read.is_empty() && read.iter().all(|&b| b == 0x41) => Effect::Seen(format!(
                "the container's device of layer {} serves the {} appended bytes past byte {}",
                self.index,
                read.len(),
                self.data_size
            )),
            Some(read) => Effect::Genuine(format!(
                "the container's device of layer {} serves {} bytes past byte {}, not the appended ones",
                self.index,
                read.len(),
                self.data_size
            )),
            None => Effect::Unobservable("nothing was read past the device".to_owned()),
        })
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "unverified-tail",
    summary: "append data past the data blocks the hash tree covers and read for it through the verified device",
    params: &[
        LAYER,
        opt("bytes", ParamType::Integer, "bytes appended (default: 4096)"),
    ],
    create: |params| Ok(Box::new(UnverifiedTail::new(params))),
};
