//! Registry authentication against the real registry's basic auth (htpasswd).

use veritylab::oci::PullError;
use veritylab::oci::auth::Credentials;
use veritylab::oci::registry::RegistryError;
use veritylab::store::Store;

use super::support::{Registry, Seeded, plain_http, pull, seeded_registry, snapshot, umoci_image};

#[test]
fn basic_auth_pulls_with_credentials_and_is_a_clear_401_without() {
    let umoci = testkit::require_tool!("umoci");
    let skopeo = testkit::require_tool!("skopeo");
    let registry_bin = testkit::require_tool!("docker-registry");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let registry = Registry::start_with_basic_auth(&registry_bin);
    registry.push_as(&skopeo, &layout, "v1", "lab/private:v1", Some("lab:secret"));
    let store = Store::open(&work.path().join("store")).unwrap();
    let before = snapshot(store.root());
    let reference = format!("{}/lab/private:v1", registry.host());

    let err = pull(&store, &reference, &plain_http()).unwrap_err();
    assert!(
        matches!(&err, PullError::Registry(RegistryError::Unauthorized { .. })),
        "{err}"
    );
    let mut wrong = plain_http();
    wrong.client.credentials = Some(Credentials {
        username: "lab".into(),
        password: "wrong".into(),
    });
    let err = pull(&store, &reference, &wrong).unwrap_err();
    assert!(
        matches!(&err, PullError::Registry(RegistryError::Unauthorized { detail, .. }) if detail.contains("refused")),
        "{err}"
    );
    assert_eq!(snapshot(store.root()), before);

    let mut right = plain_http();
    right.client.credentials = Some(Credentials {
        username: "lab".into(),
        password: "secret".into(),
    });
    let report = pull(&store, &reference, &right).unwrap();
    assert_eq!(report.layers.len(), 2);
}

/// A bearer-token front for the real registry: it answers 401 with a `Bearer` challenge until a request
/// carries the token its `/token` endpoint hands out, and forwards authorised requests to the registry.
/// It records the token queries and every forwarded path. (Debian ships no token server, and the registry's own token auth needs signed JWTs; the front plays
/// only the token dance, the content still comes from the real registry.)
fn bearer_front(upstream: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let scopes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (front, seen) = (host.clone(), scopes.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let Some(path) = head.first().and_then(|l| l.split(' ').nth(1)).map(str::to_owned) else {
                continue;
            };
            let header = |name: &str| {
                head.iter()
                    .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
                    .map(|(_, v)| v.trim().to_owned())
            };
            if let Some(query) = path.strip_prefix("/token?") {
                seen.lock().unwrap().push(query.to_owned());
                let body = r#"{"token":"T0K"}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            } else if header("authorization").as_deref() != Some("Bearer T0K") {
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{front}/token\",service=\"veritylab-test\",scope=\"repository:lab/small:pull\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            } else {
                seen.lock().unwrap().push(path.clone());
                let mut up = TcpStream::connect(&upstream).unwrap();
                let accept = header("accept").unwrap_or_else(|| "*/*".to_owned());
                write!(
                    up,
                    "GET {path} HTTP/1.1\r\nHost: {upstream}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut response = Vec::new();
                up.read_to_end(&mut response).unwrap();
                let _ = stream.write_all(&response);
            }
        }
    });
    (host, scopes)
}

#[test]
fn bearer_tokens_are_fetched_from_the_challenge_realm_with_its_service_and_scope() {
    let Some(Seeded { work, registry, .. }) = seeded_registry(
        "oci::auth::bearer_tokens_are_fetched_from_the_challenge_realm_with_its_service_and_scope",
        "lab/small:v1",
    ) else {
        return;
    };
    let (front, log) = bearer_front(registry.host());
    let store = Store::open(&work.path().join("store")).unwrap();
    let report = pull(&store, &format!("{front}/lab/small:v1"), &plain_http()).unwrap();
    assert_eq!(report.layers.len(), 2);
    let log = log.lock().unwrap();
    let tokens: Vec<&String> = log.iter().filter(|l| !l.starts_with('/')).collect();
    assert_eq!(tokens.len(), 1, "one token serves the whole pull: {log:?}");
    assert!(
        tokens[0].contains("scope=repository%3Alab%2Fsmall%3Apull"),
        "{}",
        tokens[0]
    );
    assert!(tokens[0].contains("service=veritylab-test"), "{}", tokens[0]);
    // The tag is resolved once; everything after goes by digest, so a tag moved meanwhile changes nothing.
    let paths: Vec<&String> = log.iter().filter(|l| l.starts_with('/')).collect();
    assert_eq!(paths[0], "/v2/lab/small/manifests/v1");
    assert_eq!(paths.len(), 4, "manifest, config, two layers: {paths:?}");
    assert!(
        paths[1..].iter().all(|p| p.starts_with("/v2/lab/small/blobs/sha256:")),
        "{paths:?}"
    );
}
