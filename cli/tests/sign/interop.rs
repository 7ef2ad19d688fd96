//! The signature format against independent implementations: `openssl` verifies our DER signature over the
//! exact payload bytes (and we verify its), reads our PKCS#8 keys, encrypted or not; with the
//! `sigstore-interop` feature, the sigstore crate's cosign client fetches our pushed signature from a real
//! registry and verifies it with our public key.

use std::fs;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::SigningKey;
use veritylab::oci::Digest;
use veritylab::sign::cosign;
use veritylab::sign::keys::{self, PublicKey};

/// A fixed key (scalar 1..=32) and manifest digest, so the payload bytes are a known answer.
fn fixed() -> (SigningKey, Digest) {
    let scalar: Vec<u8> = (1..=32).collect();
    let digest = "sha256:5d1c5b9a0e4ae2d1b7a0c6f8e9d3b2a1c0f9e8d7c6b5a4938271605f4e3d2c1b"
        .parse()
        .unwrap();
    (SigningKey::from_slice(&scalar).unwrap(), digest)
}

#[test]
fn openssl_verifies_our_signature_over_the_exact_payload_and_we_verify_its() {
    let openssl = testkit::require_tool!("openssl");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (key, digest) = fixed();
    let payload = cosign::payload("127.0.0.1:5000/lab/demo", &digest);
    assert_eq!(
        payload,
        br#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/lab/demo"},"image":{"docker-manifest-digest":"sha256:5d1c5b9a0e4ae2d1b7a0c6f8e9d3b2a1c0f9e8d7c6b5a4938271605f4e3d2c1b"},"type":"cosign container image signature"},"optional":null}"#
    );
    let signature = cosign::sign(&key, &payload);
    fs::write(dir.join("payload"), &payload).unwrap();
    fs::write(dir.join("sig.der"), STANDARD.decode(&signature).unwrap()).unwrap();
    fs::write(dir.join("key.pub"), keys::public_pem(key.verifying_key())).unwrap();
    let verify = |payload: &str| {
        Command::new(&openssl)
            .args([
                "dgst",
                "-sha256",
                "-verify",
                "key.pub",
                "-signature",
                "sig.der",
                payload,
            ])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let out = verify("payload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
    let mut changed = payload.clone();
    changed[20] ^= 1;
    fs::write(dir.join("changed"), &changed).unwrap();
    assert!(
        !verify("changed").status.success(),
        "one flipped bit fails in openssl too"
    );

    // openssl signs the payload with our (unencrypted) PKCS#8 key; we verify its signature.
    fs::write(dir.join("key.pem"), keys::private_pem(&key, None).unwrap()).unwrap();
    let out = Command::new(&openssl)
        .args(["dgst", "-sha256", "-sign", "key.pem", "-out", "openssl.der", "payload"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs = STANDARD.encode(fs::read(dir.join("openssl.der")).unwrap());
    let trusted = [PublicKey::new(*key.verifying_key(), &dir.join("key.pub"))];
    assert!(cosign::verify(&trusted, &payload, &theirs).is_ok());
}

#[test]
fn openssl_reads_our_private_keys_plain_and_encrypted() {
    let openssl = testkit::require_tool!("openssl");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let plain = keys::write_pair(&dir.join("plain"), None, false).unwrap();
    let encrypted = keys::write_pair(&dir.join("enc"), Some(b"s3cret pass"), false).unwrap();
    fs::write(dir.join("pass"), "s3cret pass\n").unwrap();
    for (files, passin) in [(plain, None), (encrypted, Some("file:pass"))] {
        let mut cmd = Command::new(&openssl);
        cmd.args(["pkey", "-pubout", "-in"])
            .arg(&files.private)
            .current_dir(dir);
        if let Some(passin) = passin {
            cmd.args(["-passin", passin]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            fs::read_to_string(&files.public).unwrap(),
            "openssl derives the same SPKI PEM from the private key"
        );
    }
}

#[cfg(feature = "sigstore-interop")]
#[test]
fn the_sigstore_crate_verifies_our_pushed_cosign_signature() {
    use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraint};
    use sigstore::cosign::{ClientBuilder, CosignCapabilities, verify_constraints};
    use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};
    use veritylab::store::Store;

    use crate::oci::support::{Seeded, plain_http, pull, seeded_registry};

    let Some(Seeded { work, registry, .. }) = seeded_registry(
        "sign::interop::the_sigstore_crate_verifies_our_pushed_cosign_signature",
        "lab/interop:v1",
    ) else {
        return;
    };
    let reference = format!("{}/lab/interop:v1", registry.host());
    let store = Store::open(&work.path().join("store")).unwrap();
    let pulled = pull(&store, &reference, &plain_http()).unwrap();
    let (key, _) = super::support::key_pair();
    let signed = super::support::sign(
        &store,
        &pulled.name,
        &key,
        veritylab::sign::Scheme::Cosign,
        1_800_000_000,
    );
    let Ok(veritylab::oci::Reference::Registry(target)) = reference.parse() else {
        panic!()
    };
    veritylab::sign::push_signed(&store, &target, &signed, &plain_http().client).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = ClientBuilder::default()
            .with_oci_client_config(ClientConfig {
                protocol: ClientProtocol::Http,
                ..Default::default()
            })
            .build()
            .unwrap();
        let image: OciReference = reference.parse().unwrap();
        let layers = client.trusted_signature_layers(&Auth::Anonymous, &image).await.unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(
            layers[0].simple_signing.critical.image.docker_manifest_digest,
            signed.manifest.digest.to_string()
        );
        let ours: Vec<Box<dyn VerificationConstraint>> = vec![Box::new(
            PublicKeyVerifier::try_from(keys::public_pem(key.verifying_key()).as_bytes()).unwrap(),
        )];
        verify_constraints(&layers, ours.iter()).expect("sigstore verifies our signature with our key");
        let stranger: Vec<Box<dyn VerificationConstraint>> = vec![Box::new(
            PublicKeyVerifier::try_from(keys::public_pem(keys::generate().verifying_key()).as_bytes()).unwrap(),
        )];
        assert!(verify_constraints(&layers, stranger.iter()).is_err());
    });
}
