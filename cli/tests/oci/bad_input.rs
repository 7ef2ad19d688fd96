//! Bad input: each a clear, typed error, and the store exactly as it was.

use std::fs;
use std::io::Write;

use std::sync::atomic::Ordering;
use veritylab::oci::PullError;

use veritylab::oci::Digest;
use veritylab::oci::RegistryError;
use veritylab::oci::VerifyError;
use veritylab::oci::manifest::ManifestError;
use veritylab::store::{Store, StoreError};

use super::support::{
    Seeded, add_blob_tagged, add_index, canned_server, layout_manifest_digest, plain_http, pull, seeded_registry,
    snapshot, umoci_image,
};

#[test]
fn a_blob_changed_in_the_registry_storage_is_refused_and_nothing_is_stored() {
    let Some(Seeded { work, layout, registry }) = seeded_registry(
        "oci::bad_input::a_blob_changed_in_the_registry_storage_is_refused_and_nothing_is_stored",
        "lab/small:v1",
    ) else {
        return;
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            layout
                .join("blobs/sha256")
                .join(&layout_manifest_digest(&layout, "v1")[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let second_layer = manifest["layers"][1]["digest"].as_str().unwrap()[7..].to_owned();
    let data = registry.blob_data(&second_layer);
    let mut bytes = fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&data, &bytes).unwrap();

    let store = Store::open(&work.path().join("store")).unwrap();
    let before = snapshot(store.root());
    let err = pull(&store, &format!("{}/lab/small:v1", registry.host()), &plain_http()).unwrap_err();
    assert!(
        matches!(&err, PullError::Store(StoreError::Verify(VerifyError::DigestMismatch { expected, .. })) if expected.hex() == second_layer),
        "{err}"
    );
    assert_eq!(
        snapshot(store.root()),
        before,
        "the first layer and the manifest were not stored either"
    );

    // A truncated blob: the registry serves fewer bytes than the descriptor says.
    fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let err = pull(&store, &format!("{}/lab/small:v1", registry.host()), &plain_http()).unwrap_err();
    assert!(
        matches!(
            &err,
            PullError::Store(StoreError::Verify(VerifyError::SizeMismatch { .. }))
                | PullError::Store(StoreError::Read { .. })
        ),
        "{err}"
    );
    assert_eq!(snapshot(store.root()), before);
}

#[test]
fn a_missing_tag_a_missing_repository_and_a_registry_that_is_down_are_clear_errors() {
    let Some(Seeded { work, registry, .. }) = seeded_registry(
        "oci::bad_input::a_missing_tag_a_missing_repository_and_a_registry_that_is_down_are_clear_errors",
        "lab/small:v1",
    ) else {
        return;
    };
    let store = Store::open(&work.path().join("store")).unwrap();
    let before = snapshot(store.root());
    for reference in ["lab/small:nope", "lab/absent:v1"] {
        let err = pull(&store, &format!("{}/{reference}", registry.host()), &plain_http()).unwrap_err();
        assert!(
            matches!(&err, PullError::Registry(RegistryError::NotFound { url }) if url.contains(reference.split(':').next().unwrap())),
            "{err}"
        );
    }
    let host = registry.host();
    drop(registry);
    let err = pull(&store, &format!("{host}/lab/small:v1"), &plain_http()).unwrap_err();
    assert!(
        matches!(&err, PullError::Registry(RegistryError::Transport { .. })),
        "{err}"
    );
    assert_eq!(snapshot(store.root()), before);
}

#[test]
fn unknown_media_types_and_missing_platforms_are_refused_from_a_layout() {
    let umoci = testkit::require_tool!("umoci");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let manifest_digest = layout_manifest_digest(&layout, "v1");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&manifest_digest[7..])).unwrap()).unwrap();
    manifest["layers"][0]["mediaType"] = "application/vnd.example.not-a-layer".into();
    let odd = serde_json::to_vec(&manifest).unwrap();
    add_blob_tagged(&layout, "application/vnd.oci.image.manifest.v1+json", &odd, "odd-layer");
    add_blob_tagged(&layout, "application/vnd.example.unknown+json", b"{}", "odd-manifest");
    add_index(&layout, &manifest_digest, "arm-only", &["linux/arm64"]);
    let mut wrong_size = serde_json::from_slice::<serde_json::Value>(&fs::read(layout.join("index.json")).unwrap())
        .unwrap()["manifests"][0]
        .clone();
    wrong_size["size"] = (wrong_size["size"].as_u64().unwrap() + 1).into();
    wrong_size["annotations"]["org.opencontainers.image.ref.name"] = "wrong-size".into();
    let path = layout.join("index.json");
    let mut top: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    top["manifests"].as_array_mut().unwrap().push(wrong_size);
    fs::File::create(&path)
        .unwrap()
        .write_all(&serde_json::to_vec(&top).unwrap())
        .unwrap();

    let store = Store::open(&work.path().join("store")).unwrap();
    let before = snapshot(store.root());
    let refer = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let amd64 = veritylab::oci::PullOptions {
        platform: "linux/amd64".parse().unwrap(),
        ..Default::default()
    };
    let err = pull(&store, &refer("odd-layer"), &amd64).unwrap_err();
    assert!(
        matches!(&err, PullError::Manifest(ManifestError::UnknownLayerType { .. })),
        "{err}"
    );
    let err = pull(&store, &refer("odd-manifest"), &amd64).unwrap_err();
    assert!(
        matches!(&err, PullError::Manifest(ManifestError::UnknownMediaType { .. })),
        "{err}"
    );
    let err = pull(&store, &refer("arm-only"), &amd64).unwrap_err();
    assert!(
        matches!(&err, PullError::Manifest(ManifestError::NoMatchingPlatform { .. })),
        "{err}"
    );
    let err = pull(&store, &refer("wrong-size"), &amd64).unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
    let err = pull(&store, &refer("no-such-tag"), &amd64).unwrap_err();
    assert!(err.to_string().contains("no manifest tagged"), "{err}");
    assert_eq!(snapshot(store.root()), before);
}

#[test]
fn a_registry_answering_500_is_tried_a_bounded_number_of_times() {
    let (host, requests) = canned_server(|_| {
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    });
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(work.path()).unwrap();
    let before = snapshot(store.root());
    let options = plain_http();
    let err = pull(&store, &format!("{host}/lab/small:v1"), &options).unwrap_err();
    assert!(
        matches!(&err, PullError::Registry(RegistryError::Status { status: 500, .. })),
        "{err}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), options.client.attempts as usize);
    assert_eq!(snapshot(store.root()), before);
}

#[test]
fn a_manifest_that_does_not_match_its_digest_or_its_digest_header_is_refused() {
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let respond = |header: String| {
        move |_: &str| {
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(body);
            response
        }
    };
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(work.path()).unwrap();
    let before = snapshot(store.root());
    let other = Digest::of(b"something else");

    let (host, _) = canned_server(respond(String::new()));
    let err = pull(&store, &format!("{host}/lab/small@{other}"), &plain_http()).unwrap_err();
    assert!(
        matches!(&err, PullError::Registry(RegistryError::Verify { source: VerifyError::DigestMismatch { expected, .. }, .. }) if *expected == other),
        "{err}"
    );
    let (host, _) = canned_server(respond(format!("Docker-Content-Digest: {other}\r\n")));
    let err = pull(&store, &format!("{host}/lab/small:v1"), &plain_http()).unwrap_err();
    assert!(
        matches!(&err, PullError::Registry(RegistryError::ContentDigestHeader { .. })),
        "{err}"
    );
    assert_eq!(snapshot(store.root()), before);
}

#[test]
fn an_archive_with_a_symlink_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("evil.tar");
    let mut builder = tar::Builder::new(fs::File::create(&path).unwrap());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder.append_link(&mut header, "blobs", "/etc").unwrap();
    builder.finish().unwrap();
    drop(builder);
    let store = Store::open(&work.path().join("store")).unwrap();
    let before = snapshot(store.root());
    let err = pull(&store, &format!("oci-archive:{}", path.display()), &Default::default()).unwrap_err();
    assert!(matches!(&err, PullError::Archive { .. }), "{err}");
    assert!(
        err.to_string().contains("neither a directory nor a regular file"),
        "{err}"
    );
    assert_eq!(snapshot(store.root()), before);
}

#[test]
fn an_unknown_layer_type_and_an_index_without_our_platform_are_refused_from_the_registry() {
    let Some(Seeded { work, layout, registry }) = seeded_registry(
        "oci::bad_input::an_unknown_layer_type_and_an_index_without_our_platform_are_refused_from_the_registry",
        "lab/small:v1",
    ) else {
        return;
    };
    let manifest = layout_manifest_digest(&layout, "v1");
    let bytes = fs::read(layout.join("blobs/sha256").join(&manifest[7..])).unwrap();
    // The same blobs under a manifest whose first layer claims a type we do not convert.
    let mut odd: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    odd["layers"][0]["mediaType"] = "application/vnd.example.unknown.layer".into();
    let odd = serde_json::to_vec(&odd).unwrap();
    let mut client = super::upload::client(&registry.host(), "lab/small", Default::default());
    client
        .put_manifest("odd", veritylab::oci::media::OCI_MANIFEST, &odd)
        .unwrap();
    // An index offering only a platform we are not.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": veritylab::oci::media::OCI_INDEX,
        "manifests": [{
            "mediaType": veritylab::oci::media::OCI_MANIFEST,
            "digest": manifest,
            "size": bytes.len(),
            "platform": {"os": "linux", "architecture": "s390x"},
        }],
    });
    client
        .put_manifest(
            "elsewhere",
            veritylab::oci::media::OCI_INDEX,
            &serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();

    let store = Store::open(&work.path().join("store")).unwrap();
    let before = snapshot(store.root());
    let err = pull(&store, &format!("{}/lab/small:odd", registry.host()), &plain_http()).unwrap_err();
    assert!(
        matches!(&err, PullError::Manifest(ManifestError::UnknownLayerType { media_type, .. }) if media_type.contains("example")),
        "{err}"
    );
    let err = pull(
        &store,
        &format!("{}/lab/small:elsewhere", registry.host()),
        &plain_http(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, PullError::Manifest(ManifestError::NoMatchingPlatform { .. })),
        "{err}"
    );
    assert_eq!(snapshot(store.root()), before);
}
