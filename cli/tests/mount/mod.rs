//! Mounts by profile and backend, the mount audit, and teardown.

mod audit;
mod emulated;
pub(crate) mod fuse;
mod kernel;

use veritylab::mount::Trust;
use veritylab::sign::BuildTimestamp;
use veritylab::sign::Policy;
use veritylab::sign::keys;
use veritylab::sign::{SignOptions, sign_image};
use veritylab::sign::{VerifyOptions, verify_image};
use veritylab::store::Store;

/// Signs the stored image `name` with a new key (cosign, as `veritylab sign` does) and verifies it with that
/// key: the only way to get root hashes the hardened profile takes.
pub(crate) fn signed(store: &Store, name: &str) -> Trust {
    let key = keys::generate();
    let public = keys::PublicKey::new(*key.verifying_key(), std::path::Path::new("test.pub"));
    let options = SignOptions {
        key,
        scheme: veritylab::sign::Scheme::Cosign,
        root_hash_key: None,
        tag: None,
        built: BuildTimestamp(1_800_000_000),
        layout: veritylab::convert::VerityLayout::Containerd,
        kernel_certificate: None,
    };
    sign_image(store, name, &options, &|_| {}).unwrap();
    let verified = verify_image(store, name, &VerifyOptions::new(Policy::default(), vec![public])).unwrap();
    Trust::Verified(Box::new(verified))
}
