//! Property tests: the manifest, index, digest and reference parsers never panic on arbitrary bytes or on
//! JSON shaped like a manifest, and what parses survives a round trip (the invariants of the `oci_manifest`
//! fuzz target, run here on every test run).

use proptest::prelude::*;
use veritylab::oci::manifest::{self, Manifest, Platform};
use veritylab::oci::{Digest, media, reference};

const MEDIA_TYPES: [&str; 5] = [
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_LIST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The checks of the fuzz target: nothing panics; a parsed document and a parsed reference round-trip.
fn check(media_type: &str, doc: &[u8]) {
    let digest = Digest::of(doc);
    let _ = manifest::embedded_media_type(doc);
    if let Ok(parsed) = manifest::parse(&digest, media_type, doc) {
        let again = match &parsed {
            Manifest::Image(image) => serde_json::to_vec(image).unwrap(),
            Manifest::Index(index) => serde_json::to_vec(index).unwrap(),
        };
        let reparsed = manifest::parse(&Digest::of(&again), media_type, &again).unwrap();
        assert_eq!(parsed, reparsed);
        if let Manifest::Index(index) = &parsed {
            for platform in ["linux/amd64", "linux/arm64/v8", "windows/amd64"] {
                let _ = index.select(&digest, &platform.parse::<Platform>().unwrap());
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
}

/// Small JSON values whose keys and strings come from the manifest vocabulary, so generated documents get
/// past the first checks and into the structure.
fn manifest_like() -> impl Strategy<Value = serde_json::Value> {
    let digest = Digest::of(b"x").to_string();
    let words = prop::sample::select(vec![
        media::OCI_MANIFEST.to_owned(),
        media::OCI_INDEX.to_owned(),
        media::OCI_CONFIG.to_owned(),
        media::DOCKER_MANIFEST.to_owned(),
        "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
        "application/x-unknown".to_owned(),
        digest,
        "sha256:00".to_owned(),
        "linux".to_owned(),
        "amd64".to_owned(),
        String::new(),
    ]);
    let keys = prop::sample::select(vec![
        "schemaVersion",
        "mediaType",
        "config",
        "layers",
        "manifests",
        "digest",
        "size",
        "platform",
        "os",
        "architecture",
        "variant",
        "annotations",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        prop_oneof![Just(2i64), Just(1), Just(-1), Just(i64::MAX), any::<i64>()].prop_map(serde_json::Value::from),
        words.prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone().prop_map(str::to_owned), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_any_parser(pick in 0usize..MEDIA_TYPES.len(), doc in prop::collection::vec(any::<u8>(), 0..400)) {
        check(MEDIA_TYPES[pick], &doc);
    }

    #[test]
    fn manifest_shaped_json_parses_or_fails_cleanly_and_round_trips(pick in 0usize..MEDIA_TYPES.len(), value in manifest_like()) {
        check(MEDIA_TYPES[pick], &serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn reference_shaped_text_round_trips(
        prefix in prop::sample::select(vec!["", "oci:", "oci-archive:", "127.0.0.1:5000/", "localhost/", "[::1]:5000/", "docker.io/"]),
        body in "[a-z0-9._/:@-]{0,40}",
        digest in prop::option::of(Just(Digest::of(b"x").to_string())),
    ) {
        let mut text = format!("{prefix}{body}");
        if let Some(d) = digest {
            text.push('@');
            text.push_str(&d);
        }
        check(media::OCI_MANIFEST, text.as_bytes());
    }
}
