//! Mounts by profile and backend, the mount audit, and teardown.

mod emulated;
mod fuse;
mod kernel;
