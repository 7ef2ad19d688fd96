//! The trust chain from the signature check to the mount and the checks at rest, against a root attacker on
//! the node: the mount takes exactly the verified manifest (a tag moved after verification changes nothing),
//! `hardened` never takes an unsigned image whatever the policy says, `verify` re-hashes the layer data
//! against the signed root hash, and `check` pins the signed root hashes rather than the node's records.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use veritylab::convert::{self, LayerConversion, VerityLayout};
use veritylab::mount::{self, Trust};
use veritylab::oci::Digest;
use veritylab::oci::manifest::REF_NAME;
use veritylab::profile::{Backend, Profile};
use veritylab::sign::Policy;
use veritylab::sign::cosign;
use veritylab::sign::keys;
use veritylab::store::Store;
use veritylab::watch::PinSource;
use veritylab::watch::{self, WatchConfig, Watcher};

use super::support::{REPO, layers, manifest_json, options, signed_store, store_image, store_manifest, verified};
use veritylab::sign::Scheme;

fn name() -> String {
    format!("{REPO}:v1")
}

fn veritylab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn layer_digests() -> Vec<Digest> {
    layers("v1").iter().map(|l| Digest::of(l)).collect()
}

/// The signed store of [`signed_store`] with the trusted public key written beside it.
fn signed_on_disk(dir: &Path) -> (Store, PathBuf, PathBuf) {
    let store_dir = dir.join("store");
    let (store, key, _, _) = signed_store(&store_dir, Scheme::Cosign);
    let public = dir.join("trusted.pub");
    fs::write(&public, keys::public_pem(key.verifying_key())).unwrap();
    (store, store_dir, public)
}

fn permissive_policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.toml");
    fs::write(
        &path,
        "[[repository]]\npattern = \"registry.example/lab/*\"\nrequire_signature = false\n",
    )
    .unwrap();
    path
}

fn strip_signature(store: &Store) {
    let signed = store.lookup(&name()).unwrap().digest;
    let path = store.root().join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let tag = format!("{REPO}:{}", cosign::signature_tag(&signed));
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["annotations"][REF_NAME] != tag);
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

fn flip(path: &Path, offset: u64) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], offset).unwrap();
}

#[test]
fn a_tag_moved_between_verification_and_mount_changes_nothing_mounted() {
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, _) = signed_store(&work.path().join("store"), Scheme::Cosign);
    let image = verified(&store, &name(), &options(Policy::default(), &public, Scheme::Cosign));
    let signed_layers: Vec<String> = image.layers().iter().map(|l| l.digest().to_string()).collect();
    let verified_manifest = image.manifest().digest;

    // The attacker moves the tag to an unsigned manifest of the same signed layers, base layer on top.
    let mut reordered = manifest_json(&store, &name());
    reordered["layers"].as_array_mut().unwrap().reverse();
    let moved = store_manifest(&store, &name(), &serde_json::to_vec(&reordered).unwrap());
    assert_ne!(moved, verified_manifest);

    let target = work.path().join("rootfs");
    fs::create_dir_all(&target).unwrap();
    let plan = mount::prepare(
        &store,
        &Trust::Verified(Box::new(image)),
        &target,
        Profile::Hardened,
        Backend::Emulated,
    )
    .unwrap();
    assert_eq!(plan.manifest, verified_manifest, "the plan is of the verified manifest");
    assert_eq!(plan.signature.as_ref().map(|s| s.manifest), Some(verified_manifest));
    let planned: Vec<String> = plan
        .layers
        .iter()
        .take(signed_layers.len())
        .map(|l| l.name.clone())
        .collect();
    assert_eq!(planned, signed_layers, "the verified layers, in the verified order");
    let record = mount::mount(&store, &plan, Path::new("/nonexistent")).unwrap();
    assert_eq!(record.manifest, verified_manifest);
    mount::umount(&store, &record.target).unwrap();
}

#[test]
fn hardened_refuses_an_image_a_permissive_policy_lets_through_unsigned() {
    let work = tempfile::tempdir().unwrap();
    let (store, store_dir, public) = signed_on_disk(work.path());
    strip_signature(&store);
    let policy = permissive_policy(work.path());
    let store_arg = store_dir.to_str().unwrap();
    let (public, policy) = (public.to_str().unwrap(), policy.to_str().unwrap());

    let verify = veritylab(&[
        "verify",
        &name(),
        "--key",
        public,
        "--policy",
        policy,
        "--offline",
        "--store",
        store_arg,
    ]);
    let shown = text(&verify);
    assert!(
        !shown.contains("come from the signed manifest"),
        "an unsigned image is never described as signed:\n{shown}"
    );
    assert!(shown.contains("NOT SIGNED"), "{shown}");

    let target = work.path().join("rootfs");
    fs::create_dir_all(&target).unwrap();
    let mounted = veritylab(&[
        "mount",
        &name(),
        target.to_str().unwrap(),
        "--profile",
        "hardened",
        "--backend",
        "emulated",
        "--key",
        public,
        "--policy",
        policy,
        "--store",
        store_arg,
    ]);
    assert_eq!(mounted.status.code(), Some(3), "{}", text(&mounted));
    assert!(text(&mounted).contains("requires a signature"), "{}", text(&mounted));
}

#[test]
fn verify_rehashes_each_layer_against_the_signed_root_hash_and_names_the_block() {
    let work = tempfile::tempdir().unwrap();
    let (store, store_dir, public) = signed_on_disk(work.path());
    let layer = layer_digests()[0];
    let dir = store.layer_dir(&layer, VerityLayout::Containerd.name());
    let args = [
        "verify",
        &name(),
        "--key",
        public.to_str().unwrap(),
        "--offline",
        "--store",
        store_dir.to_str().unwrap(),
    ];
    let clean = veritylab(&args);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(text(&clean).contains("hashed"), "{}", text(&clean));

    flip(&dir.join(convert::LAYER_FILE), 4096 + 7);
    let tampered = veritylab(&args);
    let shown = text(&tampered);
    assert_eq!(tampered.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains(&layer.to_string()) && shown.contains("data block 1"),
        "{shown}"
    );

    let mut no_data = args.to_vec();
    no_data.push("--no-data");
    let skipped = veritylab(&no_data);
    assert!(skipped.status.success(), "{}", text(&skipped));
    assert!(text(&skipped).contains("--no-data"), "{}", text(&skipped));
}

/// Replaces layer 0's containerd conversion with a trojan's, consistently: layer file with its tree, sidecar
/// and `conversion.json` all agree with each other and not with the signature.
fn replace_consistently(store: &Store, work: &Path) {
    let genuine = layer_digests()[0];
    let trojan_store = Store::open(&work.join("trojan")).unwrap();
    store_image(&trojan_store, "trojan:v1", &layers("trojan"));
    let trojan = convert::convert_image(&trojan_store, "trojan:v1", VerityLayout::Containerd, &|_| {})
        .unwrap()
        .layers
        .remove(0)
        .conversion;
    let dir = store.layer_dir(&genuine, VerityLayout::Containerd.name());
    for file in [convert::LAYER_FILE, convert::SIDECAR_FILE] {
        fs::copy(trojan.dir.join(file), dir.join(file)).unwrap();
    }
    let record = LayerConversion {
        layer: genuine,
        dir: dir.clone(),
        ..trojan
    };
    fs::write(
        dir.join(convert::RECORD_FILE),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
}

#[test]
fn check_pins_the_signed_root_hashes_so_a_consistent_replacement_is_found() {
    let work = tempfile::tempdir().unwrap();
    let (store, store_dir, public) = signed_on_disk(work.path());
    replace_consistently(&store, work.path());
    let store_arg = store_dir.to_str().unwrap();

    let local = veritylab(&["check", "--image", &name(), "--store", store_arg]);
    assert!(
        text(&local).contains("conversion.json"),
        "without a key the pins are the node's records, and it says so:\n{}",
        text(&local)
    );

    let signed = veritylab(&[
        "check",
        "--image",
        &name(),
        "--key",
        public.to_str().unwrap(),
        "--store",
        store_arg,
    ]);
    let shown = text(&signed);
    assert_eq!(signed.status.code(), Some(4), "{shown}");
    assert!(shown.contains("signature"), "the pin's source is named:\n{shown}");
}

#[test]
fn a_signed_mount_pins_the_root_hashes_its_plan_took_from_the_signature() {
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, _) = signed_store(&work.path().join("store"), Scheme::Cosign);
    let image = verified(&store, &name(), &options(Policy::default(), &public, Scheme::Cosign));
    let target = work.path().join("rootfs");
    fs::create_dir_all(&target).unwrap();
    let trust = Trust::Verified(Box::new(image));
    let plan = mount::prepare(&store, &trust, &target, Profile::Hardened, Backend::Emulated).unwrap();
    let record = mount::mount(&store, &plan, Path::new("/nonexistent")).unwrap();
    replace_consistently(&store, work.path());

    let pass = |(targets, unchecked): watch::Targets| {
        let config = WatchConfig {
            cpu_budget_percent: None,
            ..WatchConfig::default()
        };
        Watcher::new(targets, unchecked, config).unwrap().pass(1)
    };
    let local = pass(watch::for_images(&store, &[name()]).unwrap());
    assert!(local.clean(), "the node's records agree with the trojan: {local:#?}");
    let pinned = pass(watch::for_plan(&store, &record.plan().unwrap()).unwrap().unwrap());
    assert!(
        !pinned.clean(),
        "pinned to the signed root hashes, the replacement is found"
    );
    assert!(
        pinned
            .layers
            .iter()
            .all(|l| matches!(l.pinned, PinSource::MountPlan { .. })),
        "{pinned:#?}"
    );
    mount::umount(&store, &record.target).unwrap();
}
