//! Mounts by profile and backend, the mount audit, and teardown.

mod audit;
mod emulated;
mod kernel;
