//! The kernel's forms of trust: `keygen` writes a certificate of the key, and root-hash signatures made with
//! it pass `openssl cms -verify` (the oracle) and verity-fuse's emulation of the kernel's check.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use verity_fuse::signature::{Keyring, parse_certificates, verify_root_hash_signature};
use veritylab::root_hash::RootHash;
use veritylab::sign::{kernel_signature, keys};

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
    let signature = kernel_signature::root_hash_signature(&key, &der, &root).unwrap();
    fs::write(dir.path().join("root.p7s"), &signature).unwrap();
    fs::write(dir.path().join("root.hex"), root.to_string()).unwrap();
    let verify = |content: &str| {
        openssl(
            &tool,
            dir.path(),
            &[
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                "root.p7s",
                "-content",
                content,
                "-CAfile",
                "lab.crt",
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ],
        )
    };
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
