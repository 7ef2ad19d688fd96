//! Differential tests: real kernel dm-verity against our FUSE device, inside one VM (kernel-vm).
//!
//! One image (a zero block, random blocks, and a tail past `data_blocks` that no device may reach) and its
//! tree (512-byte hash blocks, so the 20 data blocks hang off two leaves under one top block) are tampered
//! with in every way [`Tampering`] lists. Each tampering is opened under each mode twice, with
//! `verity-fuse open --backend kernel` and with `--backend fuse`, on the same files in the same boot. Every
//! block of the data file is read through each device with `O_DIRECT` and recorded as the digest of its
//! bytes, its error, or end-of-device; with the device size and the `V`/`C` status. Kernel and FUSE must
//! agree on all of it, except the differences listed in [`KNOWN_DIFFERENCES`] with their reason.
//!
//! The verdicts become a Markdown table (tampering × mode × kernel × FUSE) kept as an insta snapshot, which
//! is the doc (`docs/differential.md` copies it). The same boot checks that `open --backend kernel` loads
//! the `dmsetup table` line `veritysetup open` loads, for every option set veritysetup 2.6.1 has.

use std::fmt::Write as _;
use std::time::Duration;

use kernel_vm::VmOutput;
use sha2::{Digest as _, Sha256};
use verity_fuse::backend::kernel::parse_status;
use verity_fuse::params::{Geometry, Placement, VerityParams};

use crate::support::{bytes, field, ok, verity_fuse};

const BLOCK: usize = 4096;
/// Hash blocks of 512 bytes hold 16 digests: data blocks 0–15 hang off leaf 0, 16–19 off leaf 1.
const HASH_BLOCK: u32 = 512;
/// Blocks the tree covers (`format --data-blocks`).
const DATA_BLOCKS: usize = 20;
/// Blocks in the data file: two more than the tree covers, the unverified tail.
const FILE_BLOCKS: usize = 22;
/// Blocks read through each device: the covered ones and the first one past them, which must read as
/// end-of-device. (Reads further out say nothing: busybox `dd` cannot seek a block device past its end and
/// falls back to reading its way there from block 0.)
const READ_BLOCKS: usize = DATA_BLOCKS + 1;
/// The all-zero data block.
const ZERO_BLOCK: usize = 1;
/// The data block whose byte is flipped (and, for `AfterFirstRead`, changed after it was read once).
const FLIPPED_BLOCK: usize = 5;
/// The data block whose digest is flipped in leaf 1 of the tree.
const LEAF_DIGEST_OF: u64 = 17;
const SALT: &str = "5a175a17";
/// Where the FUSE devices' registry lives in the VM.
const VF: &str = r#"vf() { cmd=$1; shift; verity-fuse "$cmd" --dir /run/vf "$@"; }"#;

/// What is done to the image, the tree or the root hash before the device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tampering {
    None,
    DataByte,
    ZeroBlockByte,
    HashByte,
    WrongRoot,
    PastDataBlocks,
    AfterFirstRead,
}

impl Tampering {
    const ALL: [Self; 7] = [
        Self::None,
        Self::DataByte,
        Self::ZeroBlockByte,
        Self::HashByte,
        Self::WrongRoot,
        Self::PastDataBlocks,
        Self::AfterFirstRead,
    ];

    /// Short name, used in device names and marks.
    fn id(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::DataByte => "data",
            Self::ZeroBlockByte => "zero",
            Self::HashByte => "hash",
            Self::WrongRoot => "root",
            Self::PastDataBlocks => "tail",
            Self::AfterFirstRead => "after",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::DataByte => "data block 5: one byte flipped",
            Self::ZeroBlockByte => "zero data block 1: one byte set",
            Self::HashByte => "leaf hash block: byte of block 17's digest flipped",
            Self::WrongRoot => "wrong root hash (one bit)",
            Self::PastDataBlocks => "blocks 20–21, past `data_blocks`, rewritten",
            Self::AfterFirstRead => "block 5 read, then flipped, caches dropped, read again",
        }
    }

    /// The data file and the hash file the device is opened on.
    fn files(self) -> (&'static str, &'static str) {
        match self {
            Self::None | Self::WrongRoot => ("good.img", "good.verity"),
            Self::DataByte => ("data.img", "good.verity"),
            Self::ZeroBlockByte => ("zero.img", "good.verity"),
            Self::HashByte => ("good.img", "leaf.verity"),
            Self::PastDataBlocks => ("tail.img", "good.verity"),
            Self::AfterFirstRead => ("live.img", "good.verity"),
        }
    }
}

/// A mode: the kernel's optional parameter and the `open` flag that asks for it.
struct Mode {
    id: &'static str,
    name: &'static str,
    flag: &'static str,
}

const MODES: [Mode; 4] = [
    Mode {
        id: "eio",
        name: "eio (default)",
        flag: "",
    },
    Mode {
        id: "ign",
        name: "ignore_corruption",
        flag: "--ignore-corruption",
    },
    Mode {
        id: "once",
        name: "check_at_most_once",
        flag: "--check-at-most-once",
    },
    Mode {
        id: "zero",
        name: "ignore_zero_blocks",
        flag: "--ignore-zero-blocks",
    },
];

const BACKENDS: [&str; 2] = ["kernel", "fuse"];

/// Differences between kernel and FUSE verdicts that are intended: (tampering, mode id, reason). Anything
/// else that differs fails the test. Restart and panic modes are not run here (the kernel would reboot or
/// panic the VM; our emulation halts the device instead), so nothing is listed for them.
const KNOWN_DIFFERENCES: &[(Tampering, &str, &str)] = &[];

/// Option sets whose table lines must match veritysetup's: the flags, spelled alike by both tools.
const TABLE_OPTIONS: [&str; 7] = [
    "",
    "--ignore-corruption",
    "--restart-on-corruption",
    "--panic-on-corruption",
    "--ignore-zero-blocks",
    "--check-at-most-once",
    "--ignore-corruption --ignore-zero-blocks --check-at-most-once",
];

/// Options veritysetup 2.6.1 does not have (it has no `--restart-on-error` / `--panic-on-error`); only our
/// kernel backend is asked for them.
const ERROR_MODES: [(&str, &str); 2] = [
    ("--restart-on-error", "restart_on_error"),
    ("--panic-on-error", "panic_on_error"),
];

/// What one read of one block returned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Read {
    /// The SHA-256 of the bytes.
    Bytes(String),
    /// The read failed with this error text (`Input/output error`).
    Error(String),
    /// Zero bytes: past the end of the device.
    End,
}

/// Everything one device showed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    reads: Vec<Read>,
    /// The reads before the tampering, for [`Tampering::AfterFirstRead`].
    first_pass: Option<Vec<Read>>,
    size: u64,
    letter: char,
}

/// The files of the experiment, built on the host.
struct Fixture {
    files: Vec<(&'static str, Vec<u8>)>,
    root: String,
    wrong_root: String,
    /// Digest of each block of the untampered file.
    pristine: Vec<String>,
}

fn sha256(bytes: &[u8]) -> String {
    verity_fuse::hex::encode(&Sha256::digest(bytes))
}

fn digests(image: &[u8]) -> Vec<String> {
    image.chunks(BLOCK).map(sha256).collect()
}

fn fixture() -> Fixture {
    let mut good = bytes(FILE_BLOCKS * BLOCK, 55);
    good[ZERO_BLOCK * BLOCK..(ZERO_BLOCK + 1) * BLOCK].fill(0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.img"), &good).unwrap();
    let formatted = ok(
        verity_fuse(
            dir.path(),
            &[
                "format",
                "--salt",
                SALT,
                "--hash-block-size",
                &HASH_BLOCK.to_string(),
                "--data-blocks",
                &DATA_BLOCKS.to_string(),
                "good.img",
                "good.verity",
            ],
        ),
        "format",
    );
    let root = field(&formatted, "Root hash");
    let tree = std::fs::read(dir.path().join("good.verity")).unwrap();

    let mut params = VerityParams::new(DATA_BLOCKS as u64, verity_fuse::hex::decode("salt", SALT).unwrap());
    params.hash_block_size = HASH_BLOCK;
    let geometry = Geometry::new(params, Placement::with_superblock(0)).unwrap();
    assert_eq!(
        geometry.levels.len(),
        2,
        "the test wants a leaf level under a top block"
    );
    let (leaf, at) = geometry.digest_position(0, LEAF_DIGEST_OF);
    let mut leaf_tree = tree.clone();
    leaf_tree[leaf as usize * HASH_BLOCK as usize + at + 3] ^= 0x10;

    let flipped = |block: usize, byte: usize, value: u8| {
        let mut image = good.clone();
        image[block * BLOCK + byte] ^= value;
        image
    };
    let mut tail = good.clone();
    tail[DATA_BLOCKS * BLOCK..].iter_mut().for_each(|b| *b = !*b);
    let mut wrong_root = verity_fuse::hex::decode("root", &root).unwrap();
    wrong_root[0] ^= 0x01;
    Fixture {
        files: vec![
            ("data.img", flipped(FLIPPED_BLOCK, 100, 0x01)),
            ("zero.img", flipped(ZERO_BLOCK, 2000, 0x5a)),
            ("tail.img", tail),
            ("leaf.verity", leaf_tree),
            ("good.verity", tree),
            ("good.img", good.clone()),
        ],
        root,
        wrong_root: verity_fuse::hex::encode(&wrong_root),
        pristine: digests(&good),
    }
}

/// The shell that opens one device, reads every block, records size and status, and closes it.
fn case_script(tampering: Tampering, mode: &Mode, backend: &str, fixture: &Fixture) -> String {
    let label = format!("{}-{}-{}", &backend[..1], tampering.id(), mode.id);
    let (data, hash) = tampering.files();
    let root = if tampering == Tampering::WrongRoot {
        &fixture.wrong_root
    } else {
        &fixture.root
    };
    let flag = mode.flag;
    let mut s = String::new();
    if tampering == Tampering::AfterFirstRead {
        writeln!(s, "cp good.img live.img").unwrap();
    }
    writeln!(
        s,
        "dev=$(vf open --backend {backend} {flag} {data} {label} {hash} {root} 2>/tmp/open.err); \
         mark open:{label} $? $(cat /tmp/open.err)"
    )
    .unwrap();
    if tampering == Tampering::AfterFirstRead {
        writeln!(
            s,
            "readall {label}:first \"$dev\"\n\
             dd if=data.img of=live.img bs={BLOCK} skip={FLIPPED_BLOCK} seek={FLIPPED_BLOCK} count=1 \
             conv=notrunc 2>/dev/null\n\
             echo 3 > /proc/sys/vm/drop_caches"
        )
        .unwrap();
    }
    writeln!(s, "readall {label} \"$dev\"\nmark size:{label} $(size \"$dev\")").unwrap();
    if backend == "kernel" {
        writeln!(s, "mark dm:{label} $(dmsetup status {label})").unwrap();
    }
    writeln!(
        s,
        "section status:{label}\nvf status --json {label}\nsection close:{label}\n\
         vf close {label} 2>&1; mark close:{label} $?"
    )
    .unwrap();
    s
}

/// The shell comparing our kernel table line with veritysetup's for each option set, and trying the
/// I/O-error modes veritysetup lacks.
fn table_script(root: &str) -> String {
    let mut s = String::new();
    for (i, flags) in TABLE_OPTIONS.iter().enumerate() {
        writeln!(
            s,
            "vf open --backend kernel {flags} good.img ours{i} good.verity {root} >/dev/null 2>&1; \
             mark topen-ours:{i} $?\n\
             section table-ours:{i}\ndmsetup table ours{i}\nsection tclose-ours:{i}\nvf close ours{i} 2>&1\n\
             veritysetup open {flags} good.img theirs{i} good.verity {root} >/dev/null 2>&1; \
             mark topen-theirs:{i} $?\n\
             section table-theirs:{i}\ndmsetup table theirs{i}\nsection tclose-theirs:{i}\n\
             veritysetup close theirs{i} 2>&1"
        )
        .unwrap();
    }
    for (i, (flag, _)) in ERROR_MODES.iter().enumerate() {
        writeln!(
            s,
            "section errmode:{i}\nvf open --backend kernel {flag} good.img err{i} good.verity {root} 2>&1; \
             mark errmode-open:{i} $?\n\
             section errmode-table:{i}\ndmsetup table err{i} 2>/dev/null && vf close err{i}\n\
             section errmode-left:{i}\nlosetup -a\nls /run/vf\ndmsetup ls | grep -v '^No devices found'"
        )
        .unwrap();
    }
    s
}

fn script(fixture: &Fixture) -> String {
    let mut s = format!(
        r#"{VF}
readall() {{
  i=0
  while [ $i -lt {READ_BLOCKS} ]; do
    if dd if="$2" of=/tmp/block bs={BLOCK} skip=$i count=1 iflag=direct 2>/tmp/dd.err; then
      if [ -s /tmp/block ]; then mark "read:$1:$i" ok $(sha256sum /tmp/block); else mark "read:$1:$i" end; fi
    else
      mark "read:$1:$i" error "$(tail -n 1 /tmp/dd.err)"
    fi
    i=$((i + 1))
  done
}}
size() {{ if [ -b "$1" ]; then blockdev --getsize64 "$1"; else stat -c %s "$1"; fi; }}
mkdir -p /run/vf
mark kernel $(uname -r)
"#
    );
    s.push_str(&table_script(&fixture.root));
    for tampering in Tampering::ALL {
        for mode in &MODES {
            for backend in BACKENDS {
                s.push_str(&case_script(tampering, mode, backend, fixture));
            }
        }
    }
    s.push_str("exit 0\n");
    s
}

/// Reads the marks and sections of one device.
fn observed(out: &VmOutput, label: &str, after: bool) -> Observed {
    let mark = |name: &str| {
        out.mark(name)
            .unwrap_or_else(|| panic!("no mark {name}:\n{}", out.script_output))
    };
    let open = mark(&format!("open:{label}"));
    assert!(open.starts_with('0'), "open {label} failed: {open}");
    let reads = |pass: &str| {
        (0..READ_BLOCKS)
            .map(|i| {
                let value = mark(&format!("read:{pass}:{i}"));
                let (kind, rest) = value.split_once(' ').unwrap_or((value, ""));
                match kind {
                    "ok" => Read::Bytes(rest.split_whitespace().next().unwrap_or_default().to_owned()),
                    "end" => Read::End,
                    _ => Read::Error(rest.rsplit(": ").next().unwrap_or(rest).to_owned()),
                }
            })
            .collect::<Vec<_>>()
    };
    let status: serde_json::Value = serde_json::from_str(
        out.section(&format!("status:{label}"))
            .unwrap_or_else(|| panic!("no status of {label}")),
    )
    .unwrap_or_else(|e| panic!("status of {label}: {e}"));
    let letter = if label.starts_with('k') {
        parse_status(mark(&format!("dm:{label}"))).expect("a verity status line")
    } else {
        status["counters"]["letter"]
            .as_str()
            .and_then(|l| l.chars().next())
            .expect("the FUSE status has a letter")
    };
    let said = if letter == 'V' { "verified" } else { "corrupted" };
    assert_eq!(status["status"], said, "`verity-fuse status` of {label}");
    assert_eq!(mark(&format!("close:{label}")), "0", "close {label}");
    Observed {
        reads: reads(label),
        first_pass: after.then(|| reads(&format!("{label}:first"))),
        size: mark(&format!("size:{label}")).parse().expect("a size"),
        letter,
    }
}

/// `0–3, 5` for `[0, 1, 2, 3, 5]`.
fn ranges(blocks: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        let start = blocks[i];
        while i + 1 < blocks.len() && blocks[i + 1] == blocks[i] + 1 {
            i += 1;
        }
        parts.push(if blocks[i] == start {
            start.to_string()
        } else {
            format!("{start}–{}", blocks[i])
        });
        i += 1;
    }
    parts.join(", ")
}

/// The reads in words, relative to the untampered image and the tampered data file.
fn describe_reads(reads: &[Read], pristine: &[String], tampered: &[String]) -> String {
    let mut failed: Vec<(String, Vec<usize>)> = Vec::new();
    let (mut altered, mut other, mut past_end_readable) = (Vec::new(), Vec::new(), Vec::new());
    for (i, read) in reads.iter().enumerate() {
        match read {
            Read::Bytes(_) if i >= DATA_BLOCKS => past_end_readable.push(i),
            Read::Bytes(d) if *d == pristine[i] => {}
            Read::Bytes(d) if *d == tampered[i] => altered.push(i),
            Read::Bytes(_) => other.push(i),
            Read::End if i >= DATA_BLOCKS => {}
            Read::End => other.push(i),
            Read::Error(e) => match failed.iter_mut().find(|(err, _)| err == e) {
                Some((_, blocks)) => blocks.push(i),
                None => failed.push((e.clone(), vec![i])),
            },
        }
    }
    let mut parts = Vec::new();
    for (error, blocks) in failed {
        let error = if error == "Input/output error" {
            "EIO".to_owned()
        } else {
            error
        };
        parts.push(format!("{error} {}", ranges(&blocks)));
    }
    for (what, blocks) in [
        ("tampered bytes", altered),
        ("unexpected bytes", other),
        ("readable past the end", past_end_readable),
    ] {
        if !blocks.is_empty() {
            parts.push(format!("{what} {}", ranges(&blocks)));
        }
    }
    if parts.is_empty() {
        "all intact".to_owned()
    } else {
        parts.join(", ")
    }
}

fn verdict(obs: &Observed, pristine: &[String], tampered: &[String]) -> String {
    let mut text = format!("{} · {}", obs.letter, describe_reads(&obs.reads, pristine, tampered));
    if let Some(first) = &obs.first_pass {
        text = format!(
            "first read: {}; again: {text}",
            describe_reads(first, pristine, tampered)
        );
    }
    if obs.size != (DATA_BLOCKS * BLOCK) as u64 {
        write!(text, " · size {}", obs.size).unwrap();
    }
    text
}

/// Every field of a table line but the two devices (loop devices differ between mappings).
fn without_devices(table: &str) -> Vec<&str> {
    table
        .split_whitespace()
        .enumerate()
        .filter(|(i, _)| *i != 4 && *i != 5)
        .map(|(_, f)| f)
        .collect()
}

/// The optional parameters of a table line (`1 ignore_corruption`), or `(none)`.
fn optional_parameters(table: &str) -> String {
    let fields: Vec<&str> = table.split_whitespace().collect();
    if fields.len() > 13 {
        format!("`{}`", fields[13..].join(" "))
    } else {
        "(none)".to_owned()
    }
}

/// Checks the table lines and returns their part of the doc.
fn table_lines_doc(out: &VmOutput) -> String {
    let section = |name: &str| {
        out.section(name)
            .unwrap_or_else(|| panic!("no section {name}:\n{}", out.script_output))
            .trim()
    };
    let mark = |name: &str| out.mark(name).unwrap_or_else(|| panic!("no mark {name}"));
    let mut doc = String::from(
        "## Table lines per option set\n\n\
         `verity-fuse open --backend kernel` and `veritysetup open` with the same flags load the same \
         `dmsetup table` line, devices aside.\n\n\
         | flags | optional parameters the kernel shows |\n|---|---|\n",
    );
    for (i, flags) in TABLE_OPTIONS.iter().enumerate() {
        assert_eq!(mark(&format!("topen-ours:{i}")), "0", "open `{flags}`");
        assert_eq!(mark(&format!("topen-theirs:{i}")), "0", "veritysetup open `{flags}`");
        let ours = section(&format!("table-ours:{i}"));
        let theirs = section(&format!("table-theirs:{i}"));
        assert_eq!(
            without_devices(ours),
            without_devices(theirs),
            "flags `{flags}`\nours:   {ours}\ntheirs: {theirs}"
        );
        let flags = if flags.is_empty() {
            "(none)".to_owned()
        } else {
            format!("`{flags}`")
        };
        writeln!(doc, "| {flags} | {} |", optional_parameters(ours)).unwrap();
    }
    for (i, (flag, param)) in ERROR_MODES.iter().enumerate() {
        let left = section(&format!("errmode-left:{i}"));
        assert!(left.is_empty(), "`open {flag}` left behind: {left}");
        let row = if mark(&format!("errmode-open:{i}")) == "0" {
            let table = section(&format!("errmode-table:{i}"));
            assert!(table.ends_with(&format!(" 1 {param}")), "{flag}: {table}");
            format!("`1 {param}` (veritysetup 2.6.1 has no such flag)")
        } else {
            let said = section(&format!("errmode:{i}"));
            assert!(said.contains("dmsetup create"), "{flag} failed otherwise: {said}");
            assert!(
                out.dmesg.contains("Unrecognized verity feature request"),
                "{flag} refused for another reason:\n{}",
                out.dmesg
            );
            format!(
                "refused: this kernel does not know `{param}` (\"Unrecognized verity feature request\"); \
                 veritysetup 2.6.1 has no such flag; `open` fails and leaves nothing behind"
            )
        };
        writeln!(doc, "| `{flag}` | {row} |").unwrap();
    }
    doc
}

#[test]
fn kernel_and_fuse_agree_on_every_tampering_in_every_mode() {
    const TEST: &str = "differential::kernel_and_fuse_agree";
    let tools = ["veritysetup", "dmsetup", "losetup", "fusermount3"];
    let (_, vm) = match kernel_vm::test_vm(kernel_vm::Series::Bookworm, false, &tools) {
        Ok(ready) => ready,
        Err(reason) => return testkit::skip(TEST, &reason),
    };

    let fixture = fixture();
    let mut vm = vm
        .binary_at(env!("CARGO_BIN_EXE_verity-fuse"))
        .script(&script(&fixture))
        .timeout(Duration::from_secs(300));
    for (name, bytes) in &fixture.files {
        vm = vm.file(name, bytes.clone());
    }
    let out = vm.run().unwrap_or_else(|e| panic!("VM run failed: {e}"));
    assert_eq!(out.exit_code, 0, "script failed:\n{}", out.console_tail());
    eprintln!(
        "differential VM: {:?} wall clock on the host (emulated CPU: not a performance figure)",
        out.elapsed
    );

    let tampered_data = |t: Tampering| {
        let name = match t {
            Tampering::AfterFirstRead => "data.img",
            _ => t.files().0,
        };
        fixture
            .files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| digests(bytes))
            .unwrap_or_else(|| fixture.pristine.clone())
    };
    let mut table = String::from(
        "## Kernel dm-verity against the FUSE device\n\n\
         | tampering | mode | kernel dm-verity | verity-fuse (FUSE) | agree |\n|---|---|---|---|---|\n",
    );
    let mut disagreements = Vec::new();
    for tampering in Tampering::ALL {
        let tampered = tampered_data(tampering);
        for mode in &MODES {
            let label = |b: &str| format!("{}-{}-{}", &b[..1], tampering.id(), mode.id);
            let after = tampering == Tampering::AfterFirstRead;
            let kernel = observed(&out, &label("kernel"), after);
            let fuse = observed(&out, &label("fuse"), after);
            let known = KNOWN_DIFFERENCES
                .iter()
                .find(|(t, m, _)| *t == tampering && *m == mode.id)
                .map(|(_, _, reason)| *reason);
            let agree = match (kernel == fuse, known) {
                (true, None) => "yes".to_owned(),
                (false, Some(reason)) => format!("no, intended: {reason}"),
                (true, Some(_)) => {
                    disagreements.push(format!("{tampering:?}/{}: listed as known but they agree", mode.name));
                    "yes (stale known difference)".to_owned()
                }
                (false, None) => {
                    disagreements.push(format!(
                        "{tampering:?}/{}:\n  kernel: {kernel:?}\n  fuse:   {fuse:?}",
                        mode.name
                    ));
                    "**NO**".to_owned()
                }
            };
            writeln!(
                table,
                "| {} | {} | {} | {} | {agree} |",
                tampering.describe(),
                mode.name,
                verdict(&kernel, &fixture.pristine, &tampered),
                verdict(&fuse, &fixture.pristine, &tampered),
            )
            .unwrap();
        }
    }
    table.push_str(
        "\n`V`/`C`: the status after all reads (kernel: `dmsetup status`; FUSE: `verity-fuse status`). \
         Blocks are 4 KiB data blocks 0–19; \"all intact\" means every block read back as formatted. Every \
         device is 81920 bytes (20 blocks) unless a size is shown, and a read of block 20, the first block of \
         the file past `data_blocks`, returns end-of-device unless \"readable past the end\" is shown. Reads \
         use `O_DIRECT`, so the page cache above either device plays no part.\n\n",
    );
    table.push_str(&table_lines_doc(&out));
    assert!(
        disagreements.is_empty(),
        "kernel and FUSE disagree:\n{}\n\n{table}",
        disagreements.join("\n")
    );
    insta::assert_snapshot!("differential_table", table);
}
