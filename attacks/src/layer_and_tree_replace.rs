//! `layer-and-tree-replace`: a layer and its tree replaced by a trojaned copy, the new root hash written into
//! the node's local metadata (the [`host-layer-swap`](crate::host_layer_swap) swap, plus the metadata).

use crate::Params;
use crate::host_layer_swap::LayerSwap;

/// `layer-and-tree-replace` from the scenario's parameters (`layer`, `path`, `content`).
pub fn new(params: &Params) -> LayerSwap {
    LayerSwap::new("layer-and-tree-replace", true, params)
}
