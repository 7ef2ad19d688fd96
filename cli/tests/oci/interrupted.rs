//! An interrupted pull: `veritylab pull` killed (SIGKILL) halfway through a layer leaves only a temporary
//! file, which the next `Store::open` removes; the pull then restarts cleanly.

use std::fs;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use veritylab::oci::{Digest, media};
use veritylab::store::Store;

use super::support::{RequestHead, plain_http, pull};

/// Not a registry: serves one image (manifest, config, one layer) from memory; while `stall` is set, a
/// layer request gets its headers and half its bytes, then nothing (for at most 60 s).
fn stalling_server(stall: Arc<AtomicBool>) -> (String, Digest) {
    let layer: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let (layer_digest, config_digest) = (Digest::of(&layer), Digest::of(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (layer, config, manifest) = (Arc::new(layer), Arc::new(config), Arc::new(manifest));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else {
                continue;
            };
            let (layer, config, manifest, stall) = (layer.clone(), config.clone(), manifest.clone(), stall.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let path = RequestHead::read(&mut reader).map_or_else(|| "/".to_owned(), |head| head.path);
                let (body, content_type): (&[u8], &str) = if path.ends_with("/manifests/v1") {
                    (&manifest, media::OCI_MANIFEST)
                } else if path.ends_with(&config_digest.to_string()) {
                    (&config, "application/octet-stream")
                } else if path.ends_with(&layer_digest.to_string()) {
                    (&layer, "application/octet-stream")
                } else {
                    (b"", "text/plain")
                };
                let status = if body.is_empty() { "404 Not Found" } else { "200 OK" };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if body.len() == layer.len() && stall.load(Ordering::SeqCst) {
                    let _ = stream.write_all(&body[..body.len() / 2]);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while stall.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    return;
                }
                let _ = stream.write_all(body);
            });
        }
    });
    (host, layer_digest)
}

fn temporaries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect()
}

#[test]
fn a_pull_killed_midway_leaves_a_temporary_that_the_next_open_removes() {
    let work = tempfile::tempdir().unwrap();
    let stall = Arc::new(AtomicBool::new(true));
    let (host, layer) = stalling_server(stall.clone());
    let store_dir = work.path().join("store");
    let reference = format!("{host}/lab/slow:v1");

    let mut child = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["pull", &reference, "--plain-http", "--store"])
        .arg(&store_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let blobs = store_dir.join("blobs/sha256");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Three temporaries: the staged manifest and config (kept until the whole image is in) and the layer
    // being read.
    while !(blobs.is_dir() && temporaries(&blobs).len() >= 3) {
        assert!(Instant::now() < deadline, "the pull never started on the layer");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    stall.store(false, Ordering::SeqCst);
    assert!(
        !temporaries(&blobs).is_empty(),
        "the killed pull left its temporary file"
    );
    let index: serde_json::Value = serde_json::from_slice(&fs::read(store_dir.join("index.json")).unwrap()).unwrap();
    assert!(index["manifests"].as_array().unwrap().is_empty(), "and no tag");

    let store = Store::open(&store_dir).unwrap();
    assert_eq!(store.stale_removed(), 3);
    assert!(temporaries(&blobs).is_empty());
    let report = pull(&store, &reference, &plain_http()).unwrap();
    assert_eq!(report.layers[0].digest, layer);
    assert!(
        !report.layers[0].reused,
        "the half layer was not kept as if it were whole"
    );
    assert!(temporaries(&blobs).is_empty());
}
