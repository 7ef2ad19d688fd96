//! Pulls by tag and by digest from umoci layouts and from a real registry fed by skopeo.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use veritylab::oci::Transport;
use veritylab::store::Store;

use super::support::{
    Registry, Seeded, free_port, layout_manifest_digest, plain_http, pull, seeded_registry, umoci_image,
};

#[test]
fn pull_from_an_umoci_layout_by_tag_stores_every_checked_blob_and_tags_it() {
    let umoci = testkit::require_tool!("umoci");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let store = Store::open(&work.path().join("store")).unwrap();
    let report = pull(&store, &format!("oci:{}:v1", layout.display()), &Default::default()).unwrap();
    assert_eq!(report.transport, Transport::OciLayout);
    assert_eq!(report.manifest.to_string(), layout_manifest_digest(&layout, "v1"));
    assert_eq!(report.layers.len(), 2);
    for layer in &report.layers {
        assert_eq!(
            fs::read(store.blob_path(&layer.digest)).unwrap(),
            fs::read(layout.join("blobs/sha256").join(layer.digest.hex())).unwrap()
        );
    }
    assert!(store.has_blob(
        &report.config,
        fs::metadata(store.blob_path(&report.config)).unwrap().len()
    ));
    // By digest (into another store): the same manifest, whether index.json lists it or only blobs/ holds it.
    let digest = layout_manifest_digest(&layout, "v1");
    let other = Store::open(&work.path().join("by-digest")).unwrap();
    let by_digest = pull(
        &other,
        &format!("oci:{}@{digest}", layout.display()),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(by_digest.manifest, report.manifest);
    assert!(by_digest.name.ends_with(&format!("@{digest}")), "{}", by_digest.name);
    let index = fs::read(layout.join("index.json")).unwrap();
    fs::write(layout.join("index.json"), br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
    let unlisted = pull(
        &other,
        &format!("oci:{}@{digest}", layout.display()),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(unlisted.manifest, report.manifest);
    fs::write(layout.join("index.json"), index).unwrap();
    let absent = veritylab::oci::Digest::of(b"no such manifest");
    let err = pull(
        &other,
        &format!("oci:{}@{absent}", layout.display()),
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no manifest"), "{err}");
    let images = store.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].0, report.name);
    assert_eq!(images[0].1.digest, report.manifest);
    // A second pull reuses every blob and keeps one entry.
    let again = pull(&store, &format!("oci:{}:v1", layout.display()), &Default::default()).unwrap();
    assert!(again.layers.iter().all(|l| l.reused));
    assert_eq!(store.images().unwrap().len(), 1);
}

#[test]
fn pull_from_a_real_registry_by_tag_and_by_digest_gives_the_same_manifest() {
    let Some(Seeded { work, layout, registry }) = seeded_registry(
        "oci::pull::pull_from_a_real_registry_by_tag_and_by_digest_gives_the_same_manifest",
        "lab/small:v1",
    ) else {
        return;
    };
    let store = Store::open(&work.path().join("store")).unwrap();
    let by_tag = pull(&store, &format!("{}/lab/small:v1", registry.host()), &plain_http()).unwrap();
    assert_eq!(by_tag.transport, Transport::PlainHttp);
    assert_eq!(by_tag.name, format!("{}/lab/small:v1", registry.host()));
    assert_eq!(by_tag.layers.len(), 2);
    let other = Store::open(&work.path().join("store2")).unwrap();
    let by_digest = pull(
        &other,
        &format!("{}/lab/small@{}", registry.host(), by_tag.manifest),
        &plain_http(),
    )
    .unwrap();
    assert_eq!(by_digest.manifest, by_tag.manifest);
    assert_eq!(
        by_digest.name,
        format!("{}/lab/small@{}", registry.host(), by_tag.manifest)
    );
    assert_eq!(
        by_tag.layers.iter().map(|l| l.digest).collect::<Vec<_>>(),
        by_digest.layers.iter().map(|l| l.digest).collect::<Vec<_>>()
    );
    // skopeo keeps umoci's layer blobs byte for byte, so the registry image has the layout's layers.
    for layer in &by_tag.layers {
        assert!(layout.join("blobs/sha256").join(layer.digest.hex()).is_file());
    }
}

#[test]
fn an_index_resolves_to_the_requested_platform() {
    let umoci = testkit::require_tool!("umoci");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let manifest = layout_manifest_digest(&layout, "v1");
    super::support::add_index(&layout, &manifest, "multi", &["linux/arm64", "linux/amd64"]);
    let store = Store::open(&work.path().join("store")).unwrap();
    let options = veritylab::oci::PullOptions {
        platform: "linux/arm64".parse().unwrap(),
        ..Default::default()
    };
    let report = pull(&store, &format!("oci:{}:multi", layout.display()), &options).unwrap();
    assert_eq!(report.platform.as_deref(), Some("linux/arm64"));
    assert_eq!(report.manifest.to_string(), manifest);
    assert_ne!(report.resolved, report.manifest, "the reference resolved to the index");
}

#[test]
fn pull_from_an_oci_archive_made_by_skopeo() {
    let umoci = testkit::require_tool!("umoci");
    let skopeo = testkit::require_tool!("skopeo");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let archive = work.path().join("image.tar");
    super::support::run(std::process::Command::new(&skopeo).args([
        "copy",
        "--quiet",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci-archive:{}:v1", archive.display()),
    ]));
    let store = Store::open(&work.path().join("store")).unwrap();
    let report = pull(
        &store,
        &format!("oci-archive:{}:v1", archive.display()),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(report.transport, Transport::OciArchive);
    assert_eq!(report.manifest.to_string(), layout_manifest_digest(&layout, "v1"));
    assert_eq!(report.name, format!("oci-archive:{}:v1", archive.display()));
    let leftovers: Vec<_> = fs::read_dir(store.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "the unpacked archive is removed: {leftovers:?}");
}

#[test]
fn the_test_registry_starts_on_another_port_when_its_port_is_taken() {
    let registry_bin = testkit::require_tool!("docker-registry");
    // Another process takes the port between our pick and the registry's bind; it never answers.
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let mut picks = 0;
    let registry = Registry::start_on(&registry_bin, &mut || {
        picks += 1;
        if picks == 1 { taken } else { free_port() }
    });
    assert_ne!(registry.host(), format!("127.0.0.1:{taken}"));
    // The registry itself answers there: the distribution API's version check.
    let mut stream = TcpStream::connect(registry.host()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    assert!(
        read.is_ok() && answer.contains("Docker-Distribution-Api-Version: registry/2.0"),
        "{read:?}: {answer}"
    );
    drop(squatter);
}
