//! Fuzz target: the OCI manifest and index parser, platform selection, digests and image references over
//! arbitrary bytes.
//!
//! The first byte picks the media type the document is parsed as (each manifest and index type we accept,
//! and one we refuse); the rest is the document. The same bytes, read as text, are also parsed as a
//! digest and as an image reference.
//!
//! Invariants (any violation is a crash libFuzzer reports):
//! - `manifest::parse`, `embedded_media_type`, `Index::select`, `Digest::from_str` and `reference::parse`
//!   never panic and always return, whatever the bytes.
//! - A document that parses serialises back to JSON that parses to the same value (nothing we keep is lost
//!   or changed on the way).
//! - A reference that parses displays as text that parses to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veritylab::oci::manifest::{self, Manifest, Platform};
use veritylab::oci::{Digest, media, reference};

const MEDIA_TYPES: [&str; 5] = [
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_LIST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, doc)) = data.split_first() else {
        return;
    };
    let media_type = MEDIA_TYPES[usize::from(pick) % MEDIA_TYPES.len()];
    let digest = Digest::of(doc);
    let _ = manifest::embedded_media_type(doc);
    if let Ok(parsed) = manifest::parse(&digest, media_type, doc) {
        let again = match &parsed {
            Manifest::Image(image) => serde_json::to_vec(image),
            Manifest::Index(index) => serde_json::to_vec(index),
        }
        .expect("a parsed manifest serialises");
        let reparsed = manifest::parse(&Digest::of(&again), media_type, &again).expect("its JSON parses again");
        assert_eq!(parsed, reparsed, "the round trip changed the manifest");
        if let Manifest::Index(index) = &parsed {
            for platform in ["linux/amd64", "linux/arm64/v8", "windows/amd64"] {
                let platform: Platform = platform.parse().expect("a valid platform");
                let _ = index.select(&digest, &platform);
            }
        }
    }
    let text = String::from_utf8_lossy(doc);
    let _ = text.parse::<Digest>();
    if let Ok(parsed) = reference::parse(&text) {
        let shown = parsed.to_string();
        assert_eq!(
            reference::parse(&shown).ok(),
            Some(parsed),
            "{text:?} displays as {shown:?}"
        );
    }
});
