//! `layer-and-tree-replace`: a layer and its tree replaced by a trojaned copy, the new root hash written into
//! the node's local metadata (the [`host-layer-swap`](crate::host_layer_swap) swap, plus the metadata).

use crate::Params;
use crate::catalogue::{AttackSpec, LAYER, TROJAN_CONTENT, TROJAN_PATH};
use crate::host_layer_swap::LayerSwap;

/// `layer-and-tree-replace` from the scenario's parameters (`layer`, `path`, `content`).
pub(crate) fn new(params: &Params) -> LayerSwap {
    LayerSwap::new(SPEC.name, true, params)
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "layer-and-tree-replace",
    summary: "replace a layer and its hash tree with a trojaned copy and its new root hash in local metadata",
    params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    create: |params| Ok(Box::new(new(params))),
};
