//! Registry authentication against the real registry's basic auth (htpasswd).

use veritylab::oci::Credentials;
use veritylab::oci::{ClientOptions, RegistryError};
use veritylab::oci::{Digest, PullError};
use veritylab::store::Store;

use super::support::{Registry, Seeded, plain_http, pull, seeded_registry, snapshot, umoci_image};
use super::upload::{client, upload_layout};

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
/// carries a token its `/token` endpoint handed out for a scope covering the request (`pull` for GET and
/// HEAD, `push` for the rest), and forwards authorised requests, body included, to the registry. It
/// records the token queries and every forwarded `METHOD PATH`. Read challenges name their scope, write
/// challenges name none (so the client's own `pull,push` default is exercised too). (Debian ships no token
/// server, and the registry's own token auth needs signed JWTs; the front plays only the token dance, the
/// content still comes from the real registry.)
fn bearer_front(upstream: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let scopes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (front, seen) = (host.clone(), scopes.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let Some(head) = super::support::RequestHead::read(&mut reader) else {
                continue;
            };
            let (method, path) = (head.method.clone(), head.path.clone());
            let header = |name: &str| head.header(name);
            let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let read_only = method == "GET" || method == "HEAD";
            let allowed: &[&str] = if read_only {
                &["Bearer pull", "Bearer push"]
            } else {
                &["Bearer push"]
            };
            if let Some(query) = path.strip_prefix("/token?") {
                seen.lock().unwrap().push(query.to_owned());
                // The push action, after the scope's `:` or a `,` (URL-encoded).
                let push = query.contains("%3Apush") || query.contains("%2Cpush");
                let token = if push { "push" } else { "pull" };
                let body = format!(r#"{{"token":"{token}"}}"#);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            } else if !allowed.contains(&header("authorization").unwrap_or_default().as_str()) {
                let repo = path
                    .strip_prefix("/v2/")
                    .and_then(|p| p.split_once("/manifests/").or_else(|| p.split_once("/blobs/")))
                    .map_or("", |(repo, _)| repo);
                let scope = if read_only {
                    format!(",scope=\"repository:{repo}:pull\"")
                } else {
                    String::new()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{front}/token\",service=\"veritylab-test\"{scope}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            } else {
                seen.lock().unwrap().push(format!("{method} {path}"));
                let mut up = TcpStream::connect(&upstream).unwrap();
                // The front's own host, so upload locations the registry builds point back at the front.
                let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {front}\r\nConnection: close\r\n");
                for name in ["accept", "content-type", "content-length"] {
                    if let Some(value) = header(name) {
                        request.push_str(&format!("{name}: {value}\r\n"));
                    }
                }
                request.push_str("\r\n");
                up.write_all(request.as_bytes()).unwrap();
                up.write_all(&body).unwrap();
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
    let tokens: Vec<&String> = log.iter().filter(|l| !l.starts_with("GET ")).collect();
    assert_eq!(tokens.len(), 1, "one token serves the whole pull: {log:?}");
    assert!(
        tokens[0].contains("scope=repository%3Alab%2Fsmall%3Apull"),
        "{}",
        tokens[0]
    );
    assert!(tokens[0].contains("service=veritylab-test"), "{}", tokens[0]);
    // The tag is resolved once; everything after goes by digest, so a tag moved meanwhile changes nothing.
    let paths: Vec<&String> = log.iter().filter(|l| l.starts_with("GET ")).collect();
    assert_eq!(paths[0], "GET /v2/lab/small/manifests/v1");
    assert_eq!(paths.len(), 4, "manifest, config, two layers: {paths:?}");
    assert!(
        paths[1..]
            .iter()
            .all(|p| p.starts_with("GET /v2/lab/small/blobs/sha256:")),
        "{paths:?}"
    );
}

#[test]
fn uploads_get_a_pull_push_token_through_a_bearer_front() {
    let Some(Seeded { work, registry, layout }) = seeded_registry(
        "oci::auth::uploads_get_a_pull_push_token_through_a_bearer_front",
        "lab/small:v1",
    ) else {
        return;
    };
    let (front, log) = bearer_front(registry.host());
    let mut client = client(&front, "lab/pushed", Default::default());
    let digest = upload_layout(&mut client, &layout, "v1");
    let store = Store::open(&work.path().join("store")).unwrap();
    let report = pull(&store, &format!("{}/lab/pushed:v1", registry.host()), &plain_http()).unwrap();
    assert_eq!(report.manifest, digest);
    let log = log.lock().unwrap();
    let tokens: Vec<&String> = log.iter().filter(|l| l.contains("scope=")).collect();
    assert!(
        tokens
            .iter()
            .any(|t| t.contains("scope=repository%3Alab%2Fpushed%3Apull%2Cpush")),
        "{log:?}"
    );
    let posts = log
        .iter()
        .filter(|l| *l == "POST /v2/lab/pushed/blobs/uploads/")
        .count();
    assert_eq!(posts, 3, "config and two layers, once each: {log:?}");
    assert!(log.iter().any(|l| l == "PUT /v2/lab/pushed/manifests/v1"), "{log:?}");
}

#[test]
fn uploads_with_basic_auth_need_the_credentials() {
    let umoci = testkit::require_tool!("umoci");
    let registry_bin = testkit::require_tool!("docker-registry");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let registry = Registry::start_with_basic_auth(&registry_bin);
    let mut anonymous = client(&registry.host(), "lab/private", Default::default());
    let err = anonymous.put_blob(&Digest::of(b"x"), 1, &b"x"[..]).unwrap_err();
    assert!(matches!(&err, RegistryError::Unauthorized { .. }), "{err}");
    let mut client = client(
        &registry.host(),
        "lab/private",
        ClientOptions {
            credentials: client_credentials(),
            ..Default::default()
        },
    );
    let digest = upload_layout(&mut client, &layout, "v1");
    let mut right = plain_http();
    right.client.credentials = client_credentials();
    let store = Store::open(&work.path().join("store")).unwrap();
    let report = pull(&store, &format!("{}/lab/private:v1", registry.host()), &right).unwrap();
    assert_eq!(report.manifest, digest);
}

fn client_credentials() -> Option<Credentials> {
    Some(Credentials {
        username: "lab".into(),
        password: "secret".into(),
    })
}
