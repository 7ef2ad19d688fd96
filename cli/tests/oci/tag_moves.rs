//! A tag moved between resolve and fetch (tag TOCTOU): a proxy in front of the real registry moves the tag
//! to another image right after it served the tag's manifest. The pull keeps the image it resolved (every
//! later request is by digest), or, when the old image's layers are deleted too, fails clearly with the
//! store unchanged.

use std::fs;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use veritylab::oci::reference::LayoutRef;
use veritylab::oci::{self, BuildReport, PushDestination, PushOptions, PushSource};
use veritylab::oci::{ClientOptions, RegistryError};
use veritylab::oci::{Digest, PullError, media};
use veritylab::store::Store;

use super::support::{Registry, RequestHead, plain_http, pull, snapshot};
use super::upload::{client, registry_ref};

/// A proxy that forwards every request to `upstream` and, after answering one, calls `after(method, path)`
/// before it accepts the next connection (each response closes its connection, so the client's next
/// request waits for the hook). Returns the proxy's host and the `METHOD PATH` log.
fn tapping_proxy(upstream: String, after: impl Fn(&str, &str) + Send + 'static) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else {
                continue;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let Some(head) = RequestHead::read(&mut reader) else {
                continue;
            };
            let accept = head.header("accept").unwrap_or_else(|| "*/*".to_owned());
            let (method, path) = (head.method, head.path);
            seen.lock().unwrap().push(format!("{method} {path}"));
            let mut up = TcpStream::connect(&upstream).unwrap();
            write!(
                up,
                "{method} {path} HTTP/1.1\r\nHost: {upstream}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut response = Vec::new();
            up.read_to_end(&mut response).unwrap();
            let _ = stream.write_all(&response);
            drop(stream);
            after(&method, &path);
        }
    });
    (host, log)
}

/// Builds a one-layer image whose file holds `content` and pushes it to `REPO:TAG` of the registry.
fn build_and_push(work: &Path, registry: &Registry, name: &str, content: &[u8], repo_tag: &str) -> BuildReport {
    let src = work.join(format!("{name}-src"));
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/release"), content).unwrap();
    let out = work.join(format!("{name}-layout"));
    let built = oci::build(&[src], &out, "v1", &Default::default(), &|_| {}).unwrap();
    let mut options = PushOptions::default();
    options.client.plain_http = true;
    let source = PushSource::Layout(LayoutRef {
        dir: out,
        tag: Some("v1".into()),
        digest: None,
    });
    oci::push(
        &source,
        &PushDestination::Registry(registry_ref(&registry.host(), repo_tag)),
        &options,
        &|_| {},
    )
    .unwrap();
    built
}

fn manifest_bytes(work: &Path, name: &str, digest: &Digest) -> Vec<u8> {
    fs::read(
        PathBuf::from(work)
            .join(format!("{name}-layout/blobs/sha256"))
            .join(digest.hex()),
    )
    .unwrap()
}

#[test]
fn a_tag_moved_after_resolve_does_not_change_the_pulled_image() {
    let registry_bin = testkit::require_tool!("docker-registry");
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&registry_bin);
    let original = build_and_push(work.path(), &registry, "original", b"original\n", "lab/moving:v1");
    let attacker = build_and_push(work.path(), &registry, "attacker", b"attacker\n", "lab/moving:other");
    let attacker_manifest = manifest_bytes(work.path(), "attacker", &attacker.manifest);

    let upstream = registry.host();
    let moved = Arc::new(Mutex::new(false));
    let done = moved.clone();
    let (proxy, log) = tapping_proxy(upstream.clone(), move |method, path| {
        if method == "GET" && path == "/v2/lab/moving/manifests/v1" && !*done.lock().unwrap() {
            let mut direct = client(&upstream, "lab/moving", ClientOptions::default());
            direct
                .put_manifest("v1", media::OCI_MANIFEST, &attacker_manifest)
                .unwrap();
            *done.lock().unwrap() = true;
        }
    });

    let store = Store::open(&work.path().join("store")).unwrap();
    let report = pull(&store, &format!("{proxy}/lab/moving:v1"), &plain_http()).unwrap();
    assert!(*moved.lock().unwrap(), "the tag was moved during the pull");
    assert_eq!(
        report.manifest, original.manifest,
        "the image resolved first is the one pulled"
    );
    assert_eq!(report.layers[0].digest, original.layers[0].digest);
    assert_eq!(store.lookup(&report.name).unwrap().digest, original.manifest);
    assert!(!store.has_blob(&attacker.layers[0].digest, attacker.layers[0].size));
    let log = log.lock().unwrap().clone();
    assert_eq!(log[0], "GET /v2/lab/moving/manifests/v1");
    assert!(
        log[1..]
            .iter()
            .all(|l| l.starts_with("GET /v2/lab/moving/blobs/sha256:")),
        "after the one resolve, everything is by digest: {log:?}"
    );

    // The tag really moved: a new pull by tag now gets the other image.
    let other = Store::open(&work.path().join("other")).unwrap();
    let again = pull(&other, &format!("{}/lab/moving:v1", registry.host()), &plain_http()).unwrap();
    assert_eq!(again.manifest, attacker.manifest);
}

#[test]
fn a_tag_moved_and_the_old_layers_deleted_after_resolve_is_a_clear_error_with_the_store_unchanged() {
    let registry_bin = testkit::require_tool!("docker-registry");
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&registry_bin);
    let original = build_and_push(work.path(), &registry, "original", b"original\n", "lab/moving:v1");
    let attacker = build_and_push(work.path(), &registry, "attacker", b"attacker\n", "lab/moving:other");
    let attacker_manifest = manifest_bytes(work.path(), "attacker", &attacker.manifest);
    let old_layer = original.layers[0].digest;

    let upstream = registry.host();
    let (proxy, _log) = tapping_proxy(upstream.clone(), move |method, path| {
        if method == "GET" && path == "/v2/lab/moving/manifests/v1" {
            let mut direct = client(&upstream, "lab/moving", ClientOptions::default());
            direct
                .put_manifest("v1", media::OCI_MANIFEST, &attacker_manifest)
                .unwrap();
            let url = format!("http://{upstream}/v2/lab/moving/blobs/{old_layer}");
            let status = ureq::delete(&url).call().unwrap().status();
            assert_eq!(status, 202, "the registry deleted the old layer");
        }
    });

    let store = Store::open(&work.path().join("store")).unwrap();
    let before = snapshot(store.root());
    let err = pull(&store, &format!("{proxy}/lab/moving:v1"), &plain_http()).unwrap_err();
    assert!(
        matches!(&err, PullError::Registry(RegistryError::NotFound { url }) if url.contains(&old_layer.to_string())),
        "{err}"
    );
    assert_eq!(snapshot(store.root()), before, "nothing of either image was stored");
}
