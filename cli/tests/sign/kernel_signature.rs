//! The kernel's forms of trust: `keygen` writes a certificate of the key, and root-hash signatures made with
//! it pass `openssl cms -verify` (the oracle) and verity-fuse's emulation of the kernel's check.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use verity_fuse::signature::{Keyring, parse_certificates, verify_root_hash_signature};
use veritylab::root_hash::RootHash;
use veritylab::sign::{self, keys};

fn veritylab(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn openssl(openssl: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(openssl).args(args).current_dir(dir).output().unwrap()
}

/// `openssl cms -verify` of the DER message `p7s` against `ca`: over the file `content` when the message is
/// detached (nothing is printed), else printing the content the message carries.
fn cms_verify(openssl_path: &Path, dir: &Path, p7s: &str, content: Option<&str>, ca: &str) -> Output {
    let mut args = vec![
        "cms", "-verify", "-binary", "-inform", "DER", "-in", p7s, "-CAfile", ca, "-purpose", "any",
    ];
    if let Some(content) = content {
        args.extend(["-content", content, "-out", "/dev/null"]);
    }
    openssl(openssl_path, dir, &args)
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn keygen_writes_a_certificate_of_the_key_with_digital_signature_usage() {
    let tool = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    let out = ok(veritylab(dir.path(), &["keygen", "lab", "--json"]), "keygen");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["certificate"], "lab.crt");
    let text = ok(
        openssl(&tool, dir.path(), &["x509", "-in", "lab.crt", "-noout", "-text"]),
        "openssl x509",
    );
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(text.contains("Signature Algorithm: ecdsa-with-SHA256"), "{text}");
    assert!(text.contains("Subject: CN = veritylab lab"), "{text}");
    let public = ok(
        openssl(&tool, dir.path(), &["x509", "-in", "lab.crt", "-noout", "-pubkey"]),
        "openssl x509 -pubkey",
    );
    assert_eq!(public, fs::read_to_string(dir.path().join("lab.pub")).unwrap());
    // openssl verifies the self-signature.
    ok(
        openssl(
            &tool,
            dir.path(),
            &["verify", "-CAfile", "lab.crt", "-purpose", "any", "lab.crt"],
        ),
        "openssl verify",
    );
    let again = veritylab(dir.path(), &["keygen", "lab"]);
    assert!(!again.status.success(), "keygen replaced an existing key pair");
}

#[test]
fn cert_for_makes_the_certificate_of_an_existing_key_and_refuses_to_overwrite() {
    let tool = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    keys::write_pair(&dir.path().join("old"), None, false).unwrap();
    let out = ok(
        veritylab(dir.path(), &["keygen", "--cert-for", "old.key"]),
        "keygen --cert-for",
    );
    assert!(out.contains("old.crt"), "{out}");
    let public = ok(
        openssl(&tool, dir.path(), &["x509", "-in", "old.crt", "-noout", "-pubkey"]),
        "openssl x509 -pubkey",
    );
    assert_eq!(public, fs::read_to_string(dir.path().join("old.pub")).unwrap());
    // An existing certificate is refused like an existing key: exit 5, "already exists".
    let again = veritylab(dir.path(), &["keygen", "--cert-for", "old.key"]);
    assert_eq!(again.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    ok(
        veritylab(dir.path(), &["keygen", "--cert-for", "old.key", "--force"]),
        "keygen --cert-for --force",
    );
}

#[test]
fn root_hash_signatures_pass_openssl_cms_verify_and_the_kernel_emulation() {
    let tool = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    ok(veritylab(dir.path(), &["keygen", "lab"]), "keygen");
    let key = keys::load_private(&dir.path().join("lab.key"), None).unwrap();
    let cert_pem = fs::read(dir.path().join("lab.crt")).unwrap();
    let certs = parse_certificates(&cert_pem).unwrap();
    let root = RootHash::from_bytes(&[0xc3; 32]).unwrap();
    let der = pem_to_der(&cert_pem);
    let signature = sign::root_hash_signature(&key, &der, &root).unwrap();
    fs::write(dir.path().join("root.p7s"), &signature).unwrap();
    fs::write(dir.path().join("root.hex"), root.to_string()).unwrap();
    let verify = |content: &str| cms_verify(&tool, dir.path(), "root.p7s", Some(content), "lab.crt");
    ok(verify("root.hex"), "openssl cms -verify");
    // The signature covers the hex text exactly: a newline after it, or the binary digest, fails.
    fs::write(dir.path().join("root-newline.hex"), format!("{root}\n")).unwrap();
    assert!(!verify("root-newline.hex").status.success());
    fs::write(dir.path().join("root.bin"), root.as_bytes()).unwrap();
    assert!(!verify("root.bin").status.success());
    // The kernel's parser would see exactly this structure: openssl prints it.
    let dump = ok(
        openssl(
            &tool,
            dir.path(),
            &["cms", "-cmsout", "-print", "-inform", "DER", "-in", "root.p7s"],
        ),
        "openssl cms -print",
    );
    let after = |field: &str| {
        let mut lines = dump.lines().skip_while(|l| l.trim() != field);
        lines.nth(1).map(str::trim).unwrap_or_default().to_owned()
    };
    assert_eq!(after("signedAttrs:"), "<ABSENT>", "{dump}");
    assert!(dump.contains("eContent: <ABSENT>"), "{dump}");
    assert!(dump.contains("certificates:"), "{dump}");
    let mut keyring = Keyring::empty();
    certs.into_iter().for_each(|c| keyring.push(c));
    let signer = verify_root_hash_signature(&root.to_string(), Some(&signature), &keyring, true)
        .unwrap()
        .unwrap();
    assert_eq!(signer.subject, "CN=veritylab lab");
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    let (_, der) = der::pem::decode_vec(pem).unwrap();
    der
}

/// Builds a one-layer image of `rootfs` into an OCI layout, pulls it into `store` and signs it with `lab.key`
/// (whose `lab.crt` is beside it); returns `sign --json`.
pub(crate) fn signed_image(dir: &Path, rootfs: &str) -> serde_json::Value {
    let image = format!("oci:{}:v1", dir.join("layout").display());
    let store = dir.join("store");
    let store = store.to_str().unwrap();
    ok(veritylab(dir, &["keygen", "lab"]), "keygen");
    ok(
        veritylab(dir, &["image", "build", rootfs, "--tag", &image]),
        "image build",
    );
    ok(veritylab(dir, &["pull", &image, "--store", store]), "pull");
    let out = ok(
        veritylab(dir, &["sign", &image, "--key", "lab.key", "--store", store, "--json"]),
        "sign",
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn sign_annotates_each_layer_with_the_kernels_root_hash_signature_and_verify_reports_it() {
    let tool = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("rootfs/etc")).unwrap();
    fs::write(dir.path().join("rootfs/etc/greeting"), "hello\n").unwrap();
    let signed = signed_image(dir.path(), "rootfs");
    let layer = &signed["signed"]["layers"][0];
    let root = layer["root_hash"].as_str().unwrap();
    let file = Path::new(layer["root_hash_signature"].as_str().unwrap());
    assert!(file.ends_with("layer.erofs.roothash.p7s"), "{file:?}");
    assert!(file.with_file_name("layer.erofs").exists());
    fs::write(dir.path().join("root.hex"), root).unwrap();
    // The annotation in the signed manifest holds the same bytes as the file beside the layer.
    let store = veritylab::store::Store::open(&dir.path().join("store")).unwrap();
    let name = signed["signed"]["name"].as_str().unwrap();
    let (_, _, manifest) = veritylab::sign::read_image(&store, name).unwrap();
    let annotation = &manifest.layers[0].annotations[veritylab::sign::ROOT_HASH_SIGNATURE];
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, annotation).unwrap();
    assert_eq!(der, fs::read(file).unwrap());
    fs::write(dir.path().join("annotation.p7s"), &der).unwrap();
    for p7s in ["annotation.p7s", file.to_str().unwrap()] {
        ok(
            cms_verify(&tool, dir.path(), p7s, Some("root.hex"), "lab.crt"),
            "openssl cms -verify",
        );
    }
    let text = ok(
        veritylab(dir.path(), &["verify", name, "--key", "lab.pub", "--store", "store"]),
        "verify",
    );
    assert!(
        text.contains("root-hash signature: ") && text.contains("by CN=veritylab lab"),
        "{text}"
    );
    assert!(text.contains("verifies over this root hash"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&ok(
        veritylab(
            dir.path(),
            &["verify", name, "--key", "lab.pub", "--store", "store", "--json"],
        ),
        "verify --json",
    ))
    .unwrap();
    assert_eq!(json["root_hash_signatures"][0]["signer"]["subject"], "CN=veritylab lab");
    assert_eq!(json["root_hash_signatures"][0]["len"], der.len());
}

#[test]
fn sign_refuses_a_certificate_of_another_key_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("rootfs")).unwrap();
    fs::write(dir.path().join("rootfs/f"), "x").unwrap();
    signed_image(dir.path(), "rootfs");
    ok(veritylab(dir.path(), &["keygen", "other"]), "keygen other");
    let image = format!("oci:{}:v1", dir.path().join("layout").display());
    let out = veritylab(
        dir.path(),
        &[
            "sign",
            &image,
            "--key",
            "lab.key",
            "--cert",
            "other.crt",
            "--store",
            "store",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("other.crt") && stderr.contains("not the signing key"),
        "{stderr}"
    );
    fs::write(
        dir.path().join("junk.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = veritylab(
        dir.path(),
        &[
            "sign", &image, "--key", "lab.key", "--cert", "junk.crt", "--store", "store",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.crt"));
}

#[test]
fn ipe_policy_writes_the_text_and_a_pkcs7_that_carries_it_signed() {
    let tool = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    ok(veritylab(dir.path(), &["keygen", "lab"]), "keygen");
    let out = ok(
        veritylab(
            dir.path(),
            &[
                "ipe", "policy", "--cert", "lab.crt", "--key", "lab.key", "--name", "node-1", "--json",
            ],
        ),
        "ipe policy",
    );
    let files: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(files["signed"], "./node-1.ipe.p7s");
    let text = fs::read_to_string(dir.path().join("node-1.ipe")).unwrap();
    assert!(text.starts_with("policy_name=node-1 policy_version=0.0.1\n"), "{text}");
    assert!(text.contains("\nDEFAULT op=EXECUTE action=DENY\n"), "{text}");
    assert!(
        text.contains("\nop=EXECUTE dmverity_signature=TRUE action=ALLOW\n"),
        "{text}"
    );
    // openssl finds the text inside the message and the signature over it good.
    let carried = ok(
        cms_verify(&tool, dir.path(), "node-1.ipe.p7s", None, "lab.crt"),
        "openssl cms -verify (attached)",
    );
    assert_eq!(carried, text);
    let again = veritylab(
        dir.path(),
        &[
            "ipe", "policy", "--cert", "lab.crt", "--key", "lab.key", "--name", "node-1",
        ],
    );
    assert!(
        !again.status.success(),
        "an existing policy was replaced without --force"
    );
    for bad in ["two words", "a/b", "x#y", ".."] {
        let out = veritylab(
            dir.path(),
            &["ipe", "policy", "--cert", "lab.crt", "--key", "lab.key", "--name", bad],
        );
        assert_eq!(out.status.code(), Some(3), "{bad}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("IPE policy name") && stderr.contains(bad), "{stderr}");
    }
    let out = veritylab(
        dir.path(),
        &[
            "ipe",
            "policy",
            "--cert",
            "lab.crt",
            "--key",
            "lab.key",
            "--policy-version",
            "1.2",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
