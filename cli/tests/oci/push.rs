//! `push`: from the store and from image layouts (indexes included) to the real registry and to layouts,
//! read back by skopeo, umoci and our pull; the command line with `--json` and `--plain-http`.

use std::fs;
use std::path::Path;
use std::process::Command;

use veritylab::oci::Digest;
use veritylab::oci::PullError;
use veritylab::oci::RegistryError;
use veritylab::oci::reference::LayoutRef;
use veritylab::oci::{self, PushDestination, PushError, PushOptions, PushSource};
use veritylab::store::Store;

use super::support::{
    Registry, Seeded, add_index, layout_manifest_digest, plain_http, pull, run, seeded_registry, snapshot,
};
use super::upload::registry_ref;

fn options() -> PushOptions {
    let mut options = PushOptions::default();
    options.client.plain_http = true;
    options
}

fn layout_source(dir: &Path, tag: &str) -> PushSource {
    PushSource::Layout(LayoutRef {
        dir: dir.to_owned(),
        tag: Some(tag.to_owned()),
        digest: None,
    })
}

/// Asserts that `repo:tag` does not exist in `registry`: pulling it fails with the registry's own answer that
/// the tag's manifest is not there (404), not with any other error, and adds nothing to `store`.
fn assert_tag_absent(store: &Store, registry: &Registry, repo: &str, tag: &str) {
    let before = snapshot(store.root());
    match pull(store, &format!("{}/{repo}:{tag}", registry.host()), &plain_http()) {
        Err(PullError::Registry(RegistryError::NotFound { url })) => {
            assert!(url.ends_with(&format!("/v2/{repo}/manifests/{tag}")), "{url}");
        }
        Err(other) => panic!("{repo}:{tag}: expected the registry's not-found, got: {other}"),
        Ok(report) => panic!("{repo}:{tag} exists: {}", report.manifest),
    }
    assert_eq!(snapshot(store.root()), before);
}

/// `skopeo inspect --raw` of a registry image: the manifest bytes exactly as the registry serves them.
fn raw_manifest(skopeo: &Path, host: &str, repo_tag: &str) -> Vec<u8> {
    let out = Command::new(skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo_tag}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn push_from_the_store_to_the_registry_and_to_a_layout_keeps_every_digest() {
    let Some(Seeded { work, registry, .. }) = seeded_registry(
        "oci::push::push_from_the_store_to_the_registry_and_to_a_layout_keeps_every_digest",
        "lab/small:v1",
    ) else {
        return;
    };
    let skopeo = testkit::find_tool("skopeo").unwrap();
    let umoci = testkit::require_tool!("umoci");
    let store = Store::open(&work.path().join("store")).unwrap();
    let pulled = pull(&store, &format!("{}/lab/small:v1", registry.host()), &plain_http()).unwrap();
    let source = PushSource::Store {
        root: store.root().to_owned(),
        name: pulled.name.clone(),
    };

    let to_registry = PushDestination::Registry(registry_ref(&registry.host(), "lab/copy:v7"));
    let report = oci::push(&source, &to_registry, &options(), &|_| {}).unwrap();
    assert_eq!(report.digest, pulled.manifest);
    assert_eq!(report.blobs.len(), 3);
    assert!(report.blobs.iter().all(|b| !b.skipped), "a new repository has none");
    let raw = raw_manifest(&skopeo, &registry.host(), "lab/copy:v7");
    assert_eq!(Digest::of(&raw), pulled.manifest);
    let again = oci::push(&source, &to_registry, &options(), &|_| {}).unwrap();
    assert!(again.blobs.iter().all(|b| b.skipped));

    let out = work.path().join("out");
    let to_layout = PushDestination::Layout {
        dir: out.clone(),
        tag: "copied".into(),
    };
    let report = oci::push(&source, &to_layout, &options(), &|_| {}).unwrap();
    assert_eq!(report.digest, pulled.manifest);
    assert_eq!(layout_manifest_digest(&out, "copied"), pulled.manifest.to_string());
    assert!(!out.join("layers").exists(), "a plain image layout, no store extras");
    // umoci (no code of ours) unpacks what we wrote.
    run(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:copied", out.display()))
        .arg(work.path().join("bundle")));
    assert_eq!(
        fs::read(work.path().join("bundle/rootfs/etc/hello")).unwrap(),
        b"hello again\n"
    );
    assert!(!work.path().join("bundle/rootfs/etc/gone").exists());
}

#[test]
fn push_of_a_layout_index_copies_the_index_and_its_manifests() {
    let Some(Seeded { work, layout, registry }) = seeded_registry(
        "oci::push::push_of_a_layout_index_copies_the_index_and_its_manifests",
        "lab/small:v1",
    ) else {
        return;
    };
    let skopeo = testkit::find_tool("skopeo").unwrap();
    let manifest = layout_manifest_digest(&layout, "v1");
    let index = add_index(&layout, &manifest, "multi", &["linux/amd64", "linux/arm64"]);
    let destination = PushDestination::Registry(registry_ref(&registry.host(), "lab/multi:v1"));
    let report = oci::push(&layout_source(&layout, "multi"), &destination, &options(), &|_| {}).unwrap();
    assert_eq!(report.digest.to_string(), index);
    assert_eq!(report.manifests.len(), 2);
    let raw = raw_manifest(&skopeo, &registry.host(), "lab/multi:v1");
    assert_eq!(Digest::of(&raw).to_string(), index);

    // A layout whose index lists a manifest it does not hold: refused before the tag is written.
    let missing = Digest::of(b"absent manifest").to_string();
    let partial = add_index(&layout, &manifest, "partial", &["linux/amd64"]);
    let bytes = fs::read(layout.join("blobs/sha256").join(&partial[7..])).unwrap();
    let text = String::from_utf8(bytes).unwrap().replace(&manifest, &missing);
    super::support::add_blob_tagged(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        text.as_bytes(),
        "broken",
    );
    let destination = PushDestination::Registry(registry_ref(&registry.host(), "lab/multi:broken"));
    let err = oci::push(&layout_source(&layout, "broken"), &destination, &options(), &|_| {}).unwrap_err();
    assert!(matches!(&err, PushError::IncompleteIndex { .. }), "{err}");
    let store = Store::open(&work.path().join("store")).unwrap();
    assert_tag_absent(&store, &registry, "lab/multi", "broken");
}

#[test]
fn push_refuses_a_destination_digest_that_is_not_the_image_and_a_changed_source_blob() {
    let Some(Seeded { work, layout, registry }) = seeded_registry(
        "oci::push::push_refuses_a_destination_digest_that_is_not_the_image_and_a_changed_source_blob",
        "lab/small:v1",
    ) else {
        return;
    };
    let other = Digest::of(b"another image");
    let destination = PushDestination::Registry(registry_ref(&registry.host(), &format!("lab/pinned@{other}")));
    let err = oci::push(&layout_source(&layout, "v1"), &destination, &options(), &|_| {}).unwrap_err();
    assert!(matches!(&err, PushError::Verify { .. }), "{err}");

    // A layer changed on disk in the source: the upload is refused and the tag never appears.
    let manifest = layout_manifest_digest(&layout, "v1");
    let bytes = fs::read(layout.join("blobs/sha256").join(&manifest[7..])).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let layer = parsed["layers"][1]["digest"].as_str().unwrap();
    let path = layout.join("blobs/sha256").join(&layer[7..]);
    let mut data = fs::read(&path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 1;
    fs::write(&path, data).unwrap();
    let destination = PushDestination::Registry(registry_ref(&registry.host(), "lab/changed:v1"));
    let err = oci::push(&layout_source(&layout, "v1"), &destination, &options(), &|_| {}).unwrap_err();
    assert!(
        matches!(&err, PushError::Registry(veritylab::oci::RegistryError::Verify { .. })),
        "{err}"
    );
    let store = Store::open(&work.path().join("store")).unwrap();
    assert_tag_absent(&store, &registry, "lab/changed", "v1");
    // The same to a layout destination: no tag, and the changed blob is not there.
    let out = work.path().join("out");
    let to_layout = PushDestination::Layout {
        dir: out.clone(),
        tag: "v1".into(),
    };
    let err = oci::push(&layout_source(&layout, "v1"), &to_layout, &options(), &|_| {}).unwrap_err();
    assert!(matches!(&err, PushError::Store(_)), "{err}");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    assert!(index["manifests"].as_array().unwrap().is_empty());
    assert!(!out.join("blobs/sha256").join(&layer[7..]).exists());
}

#[test]
fn push_from_the_command_line_with_json_and_plain_http() {
    let Some(Seeded { work, layout, registry }) = seeded_registry(
        "oci::push::push_from_the_command_line_with_json_and_plain_http",
        "lab/small:v1",
    ) else {
        return;
    };
    let veritylab = || Command::new(env!("CARGO_BIN_EXE_veritylab"));
    let destination = format!("{}/lab/cli:v1", registry.host());
    let out = veritylab()
        .args([
            "push",
            &format!("oci:{}:v1", layout.display()),
            &destination,
            "--plain-http",
        ])
        .args(["--store"])
        .arg(work.path().join("store"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("plain HTTP"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain HTTP"));
    assert!(
        !work.path().join("store").exists(),
        "a layout source does not touch the store"
    );

    let pulled = run(veritylab()
        .args(["pull", &destination, "--plain-http", "--json", "--store"])
        .arg(work.path().join("store")));
    let pulled: serde_json::Value = serde_json::from_str(&pulled).unwrap();
    let copy = work.path().join("copy");
    let report = run(veritylab()
        .args([
            "push",
            &destination,
            &format!("oci:{}:again", copy.display()),
            "--json",
            "--store",
        ])
        .arg(work.path().join("store")));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["digest"], pulled["manifest"]);
    assert_eq!(report["transport"], "oci-layout");
    assert_eq!(report["blobs"].as_array().unwrap().len(), 3);

    let out = veritylab()
        .args([
            "push",
            "oci:/nonexistent:v1",
            "registry.example.com/a:1",
            "--plain-http",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = veritylab()
        .args(["push", "oci:/nonexistent:v1", &format!("oci:{}", copy.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a tag"));
}
