//! Root-hash signatures made by the real `openssl smime` (the form the kernel takes), checked by our
//! emulation of the kernel's check: the library decision per case, the `open` command's refusals and exit
//! code, `status` naming the signer, and untrusted bytes that never panic.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use verity_fuse::signature::{self, KernelErrno, Keyring, SignatureError};

use crate::support::{bytes, field, ok, tool, verity_fuse};

/// A test PKI: an RSA 2048 and an ECDSA P-256 self-signed certificate (keyUsage digitalSignature) and a
/// third, untrusted P-256 certificate, made by openssl in `dir`.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    openssl: PathBuf,
}

/// One row of the signature semantics: a signature file (or none), whether signatures are required, and
/// whether the kernel accepts the open.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) signature: Option<PathBuf>,
    pub(crate) require: bool,
    pub(crate) accepted: bool,
}

impl Pki {
    /// Makes the keys and certificates with `openssl` in `dir`.
    pub(crate) fn new(dir: &Path, openssl: PathBuf) -> Pki {
        let pki = Pki {
            dir: dir.to_owned(),
            openssl,
        };
        for (name, key) in [
            ("rsa", &["-newkey", "rsa:2048"][..]),
            ("ec", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"][..]),
            (
                "other",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"][..],
            ),
        ] {
            let subject = format!("/CN=veritylab test {name}");
            let (keyout, out) = (format!("{name}.key"), format!("{name}.crt"));
            let mut args = vec!["req", "-x509", "-nodes", "-sha256", "-days", "3650", "-subj", &subject];
            args.extend_from_slice(key);
            args.extend([
                "-keyout",
                &keyout,
                "-out",
                &out,
                "-addext",
                "keyUsage=critical,digitalSignature",
            ]);
            pki.openssl(&args);
        }
        pki
    }

    fn openssl(&self, args: &[&str]) {
        ok(tool(&self.openssl, &self.dir, args), &format!("openssl {args:?}"));
    }

    /// Signs the file `content` with key `key` as the kernel wants (`-nocerts -noattr`), or with openssl's
    /// default signed attributes (content type, signing time, S/MIME capabilities, message digest).
    pub(crate) fn sign(&self, key: &str, content: &str, out: &str, attributes: bool) -> PathBuf {
        let flags: &[&str] = if attributes {
            &["-nocerts"]
        } else {
            &["-nocerts", "-noattr"]
        };
        self.sign_with(key, content, out, flags)
    }

    /// `openssl smime -sign` of `content` with key `key` and these `flags`.
    pub(crate) fn sign_with(&self, key: &str, content: &str, out: &str, flags: &[&str]) -> PathBuf {
        let (inkey, signer) = (format!("{key}.key"), format!("{key}.crt"));
        let mut args = vec!["smime", "-sign", "-binary", "-in", content];
        args.extend_from_slice(flags);
        args.extend([
            "-inkey", &inkey, "-signer", &signer, "-md", "sha256", "-outform", "der", "-out", out,
        ]);
        self.openssl(&args);
        self.dir.join(out)
    }

    /// The keyring the kernel would hold: the RSA and the P-256 certificate, not `other`.
    pub(crate) fn trusted(&self) -> Vec<PathBuf> {
        vec![self.dir.join("rsa.crt"), self.dir.join("ec.crt")]
    }

    /// Writes every case's signature for root hash `root_hex` and returns the rows.
    pub(crate) fn cases(&self, root_hex: &str) -> Vec<Case> {
        let write = |name: &str, bytes: &[u8]| std::fs::write(self.dir.join(name), bytes).unwrap();
        write("root.hex", root_hex.as_bytes());
        let binary: Vec<u8> = (0..root_hex.len() / 2)
            .map(|i| u8::from_str_radix(&root_hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        write("root.bin", &binary);
        let mut other_root = binary.clone();
        other_root[0] ^= 1;
        write("other-root.hex", verity_fuse::hex::encode(&other_root).as_bytes());
        let good_ec = self.sign("ec", "root.hex", "ec.p7s", false);
        let ec = std::fs::read(&good_ec).unwrap();
        write("truncated.p7s", &ec[..ec.len() - 10]);
        let case = |name, signature: Option<PathBuf>, require, accepted| Case {
            name,
            signature,
            require,
            accepted,
        };
        vec![
            case(
                "good RSA 2048",
                Some(self.sign("rsa", "root.hex", "rsa.p7s", false)),
                false,
                true,
            ),
            case("good ECDSA P-256", Some(good_ec), false, true),
            case(
                "good ECDSA, signatures required",
                Some(self.dir.join("ec.p7s")),
                true,
                true,
            ),
            case(
                "another key's",
                Some(self.sign("other", "root.hex", "other.p7s", false)),
                false,
                false,
            ),
            case(
                "over the binary digest",
                Some(self.sign("ec", "root.bin", "binary.p7s", false)),
                false,
                false,
            ),
            case(
                "over another root hash",
                Some(self.sign("rsa", "other-root.hex", "other-root.p7s", false)),
                false,
                false,
            ),
            case("truncated DER", Some(self.dir.join("truncated.p7s")), false, false),
            case(
                "signed attributes (openssl's default set)",
                Some(self.sign("ec", "root.hex", "attrs.p7s", true)),
                false,
                false,
            ),
            case(
                "signed attributes without S/MIME capabilities",
                Some(self.sign_with("rsa", "root.hex", "attrs-nosmimecap.p7s", &["-nocerts", "-nosmimecap"])),
                false,
                true,
            ),
            case(
                "signer's certificate included",
                Some(self.sign_with("ec", "root.hex", "with-cert.p7s", &["-noattr"])),
                false,
                true,
            ),
            case(
                "another key's, its certificate included",
                Some(self.sign_with("other", "root.hex", "other-with-cert.p7s", &["-noattr"])),
                false,
                false,
            ),
            case("none, not required", None, false, true),
            case("none, required", None, true, false),
        ]
    }
}

fn keyring(pki: &Pki) -> Keyring {
    let mut keyring = Keyring::empty();
    for path in pki.trusted() {
        for cert in signature::parse_certificates(&std::fs::read(path).unwrap()).unwrap() {
            keyring.push(cert);
        }
    }
    keyring
}

fn decide(case: &Case, root_hex: &str, keyring: &Keyring) -> Result<Option<signature::Signer>, SignatureError> {
    let bytes = case.signature.as_ref().map(|p| std::fs::read(p).unwrap());
    signature::verify_root_hash_signature(root_hex, bytes.as_deref(), keyring, case.require)
}

const ROOT: &str = "4e2b4e3bd6d0bd2ee5d7a7ac3bb1b39ac8e4a7d1b0fb5fa1c7d70c5cbd0d4f0a";

#[test]
fn openssl_signatures_get_the_kernels_decision_row_by_row() {
    let openssl = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), openssl);
    let keyring = keyring(&pki);
    for case in pki.cases(ROOT) {
        let decision = decide(&case, ROOT, &keyring);
        assert_eq!(decision.is_ok(), case.accepted, "{}: {decision:?}", case.name);
    }
}

#[test]
fn each_refusal_carries_the_kernels_error_number_and_each_acceptance_its_signer() {
    let openssl = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), openssl);
    let keyring = keyring(&pki);
    let cases = pki.cases(ROOT);
    let by_name = |name: &str| decide(cases.iter().find(|c| c.name == name).unwrap(), ROOT, &keyring);
    let errno = |name: &str| by_name(name).unwrap_err().errno();
    assert_eq!(errno("another key's"), KernelErrno::Enokey);
    assert_eq!(errno("none, required"), KernelErrno::Enokey);
    assert_eq!(errno("over the binary digest"), KernelErrno::Ekeyrejected);
    assert_eq!(errno("over another root hash"), KernelErrno::Ekeyrejected);
    assert_eq!(errno("truncated DER"), KernelErrno::Ebadmsg);
    assert_eq!(
        errno("signed attributes (openssl's default set)"),
        KernelErrno::Ekeyrejected
    );
    assert_eq!(errno("another key's, its certificate included"), KernelErrno::Enokey);
    let rsa = by_name("good RSA 2048").unwrap().unwrap();
    assert_eq!(rsa.subject, "CN=veritylab test rsa");
    let der = std::fs::read(dir.path().join("rsa.crt")).unwrap();
    let pem = String::from_utf8(der).unwrap();
    let fingerprint = ok(
        tool(
            &testkit::find_tool("openssl").unwrap(),
            dir.path(),
            &["x509", "-in", "rsa.crt", "-noout", "-fingerprint", "-sha256"],
        ),
        "openssl x509",
    );
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let expected = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(rsa.fingerprint, expected);
    assert_eq!(
        by_name("good ECDSA P-256").unwrap().unwrap().subject,
        "CN=veritylab test ec"
    );
    assert_eq!(by_name("none, not required").unwrap(), None);
    assert!(matches!(
        decide(
            cases.iter().find(|c| c.name == "good RSA 2048").unwrap(),
            ROOT,
            &Keyring::empty()
        ),
        Err(SignatureError::NoTrustedKey { .. })
    ));
}

#[test]
fn open_refuses_as_veritysetup_does_and_status_names_the_signer() {
    let openssl = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), openssl);
    std::fs::write(dir.path().join("data"), bytes(8 * 4096, 3)).unwrap();
    let root = field(
        &ok(verity_fuse(dir.path(), &["format", "data", "hash"]), "format"),
        "Root hash",
    );
    let cases = pki.cases(&root);
    std::fs::create_dir(dir.path().join("keyring")).unwrap();
    for path in pki.trusted() {
        std::fs::copy(&path, dir.path().join("keyring").join(path.file_name().unwrap())).unwrap();
    }
    let devices = dir.path().join("devices");
    let devices = devices.to_str().unwrap();
    for case in cases.iter().filter(|c| !c.accepted) {
        let mut args = vec!["open", "--backend", "fuse", "--dir", devices, "--keyring", "keyring"];
        let signature = case.signature.as_ref().map(|p| p.to_str().unwrap().to_owned());
        if let Some(s) = &signature {
            args.extend(["--root-hash-signature", s]);
        }
        if case.require {
            args.push("--require-signatures");
        }
        args.extend(["data", "dev", "hash", &root]);
        let out = verity_fuse(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{}: {stderr}", case.name);
        assert!(stderr.contains("activation of dev refused"), "{}: {stderr}", case.name);
        if matches!(case.name, "another key's" | "none, required") {
            assert!(stderr.contains("Required key not available"), "{}: {stderr}", case.name);
        }
        assert!(
            !Path::new(devices).join("dev").exists(),
            "{}: nothing left behind",
            case.name
        );
    }
    if !testkit::fuse_available("open_refuses_as_veritysetup_does_and_status_names_the_signer") {
        return;
    }
    let ec = dir.path().join("ec.p7s");
    let ec = ec.to_str().unwrap();
    let open = [
        "open",
        "--backend",
        "fuse",
        "--dir",
        devices,
        "--keyring",
        "keyring",
        "--root-hash-signature",
        ec,
        "--require-signatures",
        "data",
        "dev",
        "hash",
        &root,
    ];
    ok(verity_fuse(dir.path(), &open), "open");
    let status = verity_fuse(dir.path(), &["status", "--dir", devices, "--json", "dev"]);
    let close = verity_fuse(dir.path(), &["close", "--dir", devices, "dev"]);
    let status: serde_json::Value = serde_json::from_str(&ok(status, "status")).unwrap();
    ok(close, "close");
    assert_eq!(status["signature"]["checked"], "keyring");
    assert_eq!(status["signature"]["signer"]["subject"], "CN=veritylab test ec");
    assert_eq!(status["signature"]["signer"]["fingerprint"].as_str().unwrap().len(), 64);
}

#[test]
fn every_truncation_of_a_good_signature_is_refused_without_panicking() {
    let openssl = testkit::require_tool!("openssl");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), openssl);
    let keyring = keyring(&pki);
    pki.cases(ROOT);
    for name in ["rsa.p7s", "ec.p7s", "attrs-nosmimecap.p7s", "with-cert.p7s"] {
        let good = std::fs::read(dir.path().join(name)).unwrap();
        assert!(signature::verify_root_hash_signature(ROOT, Some(&good), &keyring, true).is_ok());
        for len in 1..good.len() {
            let result = signature::verify_root_hash_signature(ROOT, Some(&good[..len]), &keyring, true);
            assert!(result.is_err(), "{name} cut to {len} bytes was accepted");
        }
        for i in 0..good.len() {
            for bit in [0x01, 0x80] {
                let mut flipped = good.clone();
                flipped[i] ^= bit;
                let _ = signature::verify_root_hash_signature(ROOT, Some(&flipped), &keyring, true);
            }
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_are_never_a_signature_and_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut keyring = Keyring::empty();
        let _ = signature::parse_certificates(&data).map(|certs| certs.into_iter().for_each(|c| keyring.push(c)));
        prop_assert!(signature::verify_root_hash_signature(ROOT, Some(&data), &keyring, true).is_err());
    }
}
