//! Every exit code of `verity-fuse`, triggered through the binary, and the README's table equal to the enum.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use verity_fuse::cli::VerityFuseExit;

use crate::support::{bytes, field, ok, verity_fuse};

#[test]
fn the_readme_table_is_the_exit_code_enum() {
    let documented = testkit::readme_exit_codes("verity-fuse exit codes");
    let declared: BTreeMap<u8, (String, String)> = VerityFuseExit::ALL
        .iter()
        .map(|e| (e.code(), (format!("{e:?}"), e.meaning().to_owned())))
        .collect();
    assert_eq!(documented, declared);
    let help = verity_fuse(std::path::Path::new("."), &["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains(&VerityFuseExit::help()));
    let sub = verity_fuse(std::path::Path::new("."), &["verify", "--help"]);
    assert!(String::from_utf8_lossy(&sub.stdout).contains(&VerityFuseExit::help()));
}

#[test]
fn each_exit_code_is_triggered_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("data"), bytes(16 * 4096, 3)).unwrap();
    let code = |args: &[&str]| verity_fuse(d, args).status.code().unwrap();
    let mut seen = BTreeMap::new();

    let formatted = ok(verity_fuse(d, &["format", "--salt", "00", "data", "hash"]), "format");
    let root = field(&formatted, "Root hash");
    seen.insert(code(&["verify", "data", "hash", &root]), VerityFuseExit::Success);
    seen.insert(code(&["frobnicate"]), VerityFuseExit::Invalid);
    seen.insert(code(&["verify", "data", "no-such-hash", &root]), VerityFuseExit::Io);
    let mut data = std::fs::read(d.join("data")).unwrap();
    data[5 * 4096] ^= 1;
    std::fs::write(d.join("data"), &data).unwrap();
    seen.insert(
        code(&["verify", "data", "hash", &root]),
        VerityFuseExit::VerificationFailed,
    );

    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let piped = Command::new(env!("CARGO_BIN_EXE_verity-fuse"))
        .args(["dump", "hash"])
        .current_dir(d)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&piped.stderr),
        "",
        "nothing printed for a closed pipe"
    );
    seen.insert(piped.status.code().unwrap(), VerityFuseExit::BrokenPipe);

    let fuse = testkit::fuse_available("exit_codes::busy");
    if fuse {
        let reg = d.join("run");
        let reg = reg.to_str().unwrap();
        let open = ["open", "--dir", reg, "--backend", "fuse", "data", "dev", "hash", &root];
        ok(verity_fuse(d, &open), "open");
        seen.insert(code(&open), VerityFuseExit::Busy);
        ok(verity_fuse(d, &["close", "--dir", reg, "dev"]), "close");
    }

    for (code, exit) in &seen {
        assert_eq!(*code, i32::from(exit.code()), "{exit:?}");
    }
    let expected = if fuse {
        VerityFuseExit::ALL.len()
    } else {
        VerityFuseExit::ALL.len() - 1
    };
    assert_eq!(seen.len(), expected, "every code triggered: {seen:?}");
}
