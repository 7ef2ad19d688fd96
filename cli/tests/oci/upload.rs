//! The registry client's upload primitives (`blob_exists`, `put_blob`, `put_manifest`) against the real
//! `docker-registry`: what we upload is read back by skopeo and by our own pull.

use std::fs;
use std::path::Path;
use std::process::Command;

use veritylab::oci::VerifyError;
use veritylab::oci::manifest::{self, Manifest};
use veritylab::oci::media;
use veritylab::oci::reference::RegistryRef;
use veritylab::oci::{Client, ClientOptions, RegistryError};
use veritylab::oci::{Digest, PullError, Reference};
use veritylab::store::Store;

use super::support::{Registry, layout_manifest_digest, plain_http, pull, run, umoci_image};

/// `HOST/REPO` as a registry reference.
pub(super) fn registry_ref(host: &str, repo: &str) -> RegistryRef {
    match format!("{host}/{repo}").parse::<Reference>().unwrap() {
        Reference::Registry(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A plain-HTTP client for `HOST/REPO`.
pub(super) fn client(host: &str, repo: &str, options: ClientOptions) -> Client {
    Client::new(
        &registry_ref(host, repo),
        ClientOptions {
            plain_http: true,
            ..options
        },
    )
    .unwrap()
}

/// Uploads the image `tag` of `layout` (config, layers, then the manifest under `tag`) with our client.
pub(super) fn upload_layout(client: &mut Client, layout: &Path, tag: &str) -> Digest {
    let digest: Digest = layout_manifest_digest(layout, tag).parse().unwrap();
    let blob = |d: &Digest| layout.join("blobs/sha256").join(d.hex());
    let bytes = fs::read(blob(&digest)).unwrap();
    let Manifest::Image(image) = manifest::parse(&digest, media::OCI_MANIFEST, &bytes).unwrap() else {
        panic!("umoci made an index");
    };
    for descriptor in std::iter::once(&image.config).chain(&image.layers) {
        let file = fs::File::open(blob(&descriptor.digest)).unwrap();
        client.put_blob(&descriptor.digest, descriptor.size, file).unwrap();
        assert!(client.blob_exists(&descriptor.digest).unwrap());
    }
    assert_eq!(client.put_manifest(tag, media::OCI_MANIFEST, &bytes).unwrap(), digest);
    digest
}

#[test]
fn uploaded_blobs_and_manifests_are_read_back_by_skopeo_and_by_pull() {
    let umoci = testkit::require_tool!("umoci");
    let skopeo = testkit::require_tool!("skopeo");
    let registry_bin = testkit::require_tool!("docker-registry");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let registry = Registry::start(&registry_bin);
    let mut client = client(&registry.host(), "lab/uploaded", ClientOptions::default());

    let absent = Digest::of(b"never uploaded");
    assert!(!client.blob_exists(&absent).unwrap());
    let digest = upload_layout(&mut client, &layout, "v1");
    // Again: every blob is found and skipped, and the manifest upload is idempotent.
    assert_eq!(upload_layout(&mut client, &layout, "v1"), digest);
    // By digest too.
    let bytes = fs::read(layout.join("blobs/sha256").join(digest.hex())).unwrap();
    assert_eq!(
        client
            .put_manifest(&digest.to_string(), media::OCI_MANIFEST, &bytes)
            .unwrap(),
        digest
    );

    // skopeo (no code of ours) reads the image back, byte for byte.
    let raw = Command::new(&skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/lab/uploaded:v1", registry.host()))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    assert_eq!(raw.stdout, bytes);
    let copy = work.path().join("copy");
    run(Command::new(&skopeo).args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/lab/uploaded:v1", registry.host()),
        &format!("oci:{}:v1", copy.display()),
    ]));
    assert_eq!(layout_manifest_digest(&copy, "v1"), digest.to_string());

    // And our pull, by tag.
    let store = Store::open(&work.path().join("store")).unwrap();
    let report = pull(&store, &format!("{}/lab/uploaded:v1", registry.host()), &plain_http()).unwrap();
    assert_eq!(report.manifest, digest);
    assert_eq!(report.layers.len(), 2);
}

#[test]
fn uploads_that_do_not_match_their_digest_are_refused_and_leave_nothing() {
    let registry_bin = testkit::require_tool!("docker-registry");
    let registry = Registry::start(&registry_bin);
    let mut client = client(&registry.host(), "lab/lies", ClientOptions::default());

    let promised = Digest::of(b"the real bytes");
    let err = client.put_blob(&promised, 14, &b"other bytes!!!"[..]).unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::Verify {
                source: VerifyError::DigestMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    let err = client.put_blob(&promised, 14, &b"the real"[..]).unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::Verify {
                source: VerifyError::SizeMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(!client.blob_exists(&promised).unwrap());

    let manifest = br#"{"schemaVersion":2}"#;
    let err = client
        .put_manifest(&promised.to_string(), media::OCI_MANIFEST, manifest)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::Verify {
                source: VerifyError::DigestMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    // A manifest naming blobs the repository lacks: the registry's own refusal, with its error code.
    let config = Digest::of(b"{}");
    let dangling = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":2}},"layers":[]}}"#,
        media::OCI_MANIFEST,
        media::OCI_CONFIG
    );
    let err = client
        .put_manifest("v1", media::OCI_MANIFEST, dangling.as_bytes())
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Status { status: 400, detail: Some(d), .. } if d.contains("MANIFEST_BLOB_UNKNOWN")),
        "{err}"
    );
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let err = pull(&store, &format!("{}/lab/lies:v1", registry.host()), &plain_http()).unwrap_err();
    assert!(
        matches!(&err, PullError::Registry(RegistryError::NotFound { .. })),
        "{err}"
    );
}
