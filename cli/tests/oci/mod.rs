//! OCI: pulls from umoci-made image layouts and from a real `docker-registry` fed by skopeo, layer
//! conversion checked by `veritysetup verify`, and bad input that must leave the store unchanged.

mod auth;
mod bad_input;
mod build;
mod cli;
mod convert;
mod interrupted;
pub(crate) mod kernel;
mod props;
mod pull;
mod push;
pub(crate) mod support;
mod tag_moves;
mod upload;
