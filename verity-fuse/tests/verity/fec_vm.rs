//! FEC differential in the VM: kernel dm-verity with `use_fec_from_device` against our FUSE device with the
//! same parity, on one grid of damage (kernel-vm, as in `differential`).
//!
//! One image of 600 blocks is formatted with 4 parity roots (606 covered blocks in 3 rounds: blocks `n`,
//! `n + 3`, … share codewords). Each row damages the data or the tree, opens the damaged files with
//! `verity-fuse open --fec-device --backend kernel` and `--backend fuse` in the same boot, reads the damaged
//! blocks and their neighbours with `O_DIRECT`, and records each block as the digest of its bytes or its
//! error, with the `V`/`C` status. Kernel and FUSE must agree on every read, and on the status letter except
//! where [`KNOWN_DIFFERENCES`] says why not; the kernel's FEC log lines (rate-limited: counts, not blocks) and
//! our counters are shown beside them.

use std::fmt::Write as _;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use verity_fuse::backend::kernel::parse_status;

use crate::support::{bytes, field, ok, verity_fuse};

const BLOCK: usize = 4096;
const BLOCKS: usize = 600;
const ROOTS: u32 = 4;
/// Rounds of codewords: ceil((600 data + 6 tree blocks) / (255 - 4)).
const ROUNDS: usize = 3;
const SALT: &str = "fec0fec0";

/// Rows whose status letter may differ, with the reason. Reads must agree on every row.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "tree",
    "the kernel repairs the leaf, but while decoding its round it looks up the digests of the round's data \
     blocks, some of which hang off that same leaf; those nested lookups recurse into FEC until the depth \
     limit, fail, and mark the device `C` (logged as \"metadata block 3 is corrupted\") although every read \
     succeeds; we stop nested repairs earlier and record no corruption, since none was served",
)];

/// One row of the grid: what is damaged, and which blocks are read.
struct Row {
    id: &'static str,
    what: &'static str,
    /// The data file and hash file the row opens.
    data: &'static str,
    hash: &'static str,
    read: Vec<usize>,
}

fn rows() -> Vec<Row> {
    let round = |first: usize, n: usize| (0..n).map(|i| first + i * ROUNDS).collect::<Vec<_>>();
    let with_neighbours = |blocks: Vec<usize>| {
        let mut all: Vec<usize> = blocks
            .iter()
            .flat_map(|&b| [b.saturating_sub(1), b, b + 1])
            .filter(|&b| b < BLOCKS)
            .collect();
        all.sort();
        all.dedup();
        all
    };
    vec![
        Row {
            id: "bytes",
            what: "3 bytes of block 10",
            data: "bytes.img",
            hash: "good.verity",
            read: with_neighbours(vec![10]),
        },
        Row {
            id: "block",
            what: "all of block 10",
            data: "block.img",
            hash: "good.verity",
            read: with_neighbours(vec![10]),
        },
        Row {
            id: "run",
            what: "a run: blocks 100–107 (8 blocks, at most 3 per round)",
            data: "run.img",
            hash: "good.verity",
            read: with_neighbours((100..108).collect()),
        },
        Row {
            id: "tree",
            what: "hash block 3, the leaf of blocks 128–255",
            data: "good.img",
            hash: "leaf.verity",
            read: vec![127, 128, 200, 255, 256],
        },
        Row {
            id: "erasures",
            what: "blocks 10, 13, 16 (3 in one round: more than 4 roots correct blind, fewer than they \
                   correct as erasures)",
            data: "erasures.img",
            hash: "good.verity",
            read: with_neighbours(round(10, 3)),
        },
        Row {
            id: "beyond",
            what: "blocks 10, 13, 16, 19, 22 (5 in one round: beyond 4 roots)",
            data: "beyond.img",
            hash: "good.verity",
            read: with_neighbours(round(10, 5)),
        },
    ]
}

struct Fixture {
    files: Vec<(&'static str, Vec<u8>)>,
    root: String,
    pristine: Vec<String>,
}

fn sha256(bytes: &[u8]) -> String {
    verity_fuse::hex::encode(&Sha256::digest(bytes))
}

fn fixture() -> Fixture {
    let good = bytes(BLOCKS * BLOCK, 2024);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.img"), &good).unwrap();
    let out = ok(
        verity_fuse(
            dir.path(),
            &[
                "format",
                "--salt",
                SALT,
                "--fec-device",
                "good.fec",
                "--fec-roots",
                &ROOTS.to_string(),
                "good.img",
                "good.verity",
            ],
        ),
        "format",
    );
    let root = field(&out, "Root hash");
    let tree = std::fs::read(dir.path().join("good.verity")).unwrap();
    let fec = std::fs::read(dir.path().join("good.fec")).unwrap();
    let damaged = |blocks: &[usize]| {
        let mut image = good.clone();
        for &b in blocks {
            image[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&bytes(BLOCK, 7000 + b as u64));
        }
        image
    };
    let mut three_bytes = good.clone();
    for at in [5, 1000, 4000] {
        three_bytes[10 * BLOCK + at] ^= 0xA5;
    }
    let mut leaf = tree.clone();
    // Superblock in block 0, the top block in 1, leaves 2–6.
    leaf[3 * BLOCK..4 * BLOCK].fill(0x5C);
    Fixture {
        files: vec![
            ("good.img", good.clone()),
            ("good.verity", tree),
            ("good.fec", fec),
            ("leaf.verity", leaf),
            ("bytes.img", three_bytes),
            ("block.img", damaged(&[10])),
            ("run.img", damaged(&(100..108).collect::<Vec<_>>())),
            ("erasures.img", damaged(&[10, 13, 16])),
            ("beyond.img", damaged(&[10, 13, 16, 19, 22])),
        ],
        root,
        pristine: good.chunks(BLOCK).map(sha256).collect(),
    }
}

fn script(fixture: &Fixture) -> String {
    let mut s = String::from(
        r#"vf() { cmd=$1; shift; verity-fuse "$cmd" --dir /run/vf "$@"; }
readblocks() {
  label=$1; dev=$2; shift 2
  for i in "$@"; do
    if dd if="$dev" of=/tmp/block bs=4096 skip=$i count=1 iflag=direct 2>/tmp/dd.err; then
      mark "read:$label:$i" ok $(sha256sum /tmp/block)
    else
      mark "read:$label:$i" error "$(tail -n 1 /tmp/dd.err)"
    fi
  done
}
mkdir -p /run/vf
mark kernel $(uname -r)
"#,
    );
    for row in rows() {
        let blocks: Vec<String> = row.read.iter().map(ToString::to_string).collect();
        let blocks = blocks.join(" ");
        for backend in ["kernel", "fuse"] {
            let label = format!("{}-{}", &backend[..1], row.id);
            writeln!(
                s,
                "dmesg -c >/dev/null\n\
                 dev=$(vf open --backend {backend} --fec-device good.fec --fec-roots {ROOTS} {data} {label} \
                 {hash} {root} 2>/tmp/open.err); mark open:{label} $? $(cat /tmp/open.err)\n\
                 readblocks {label} \"$dev\" {blocks}",
                data = row.data,
                hash = row.hash,
                root = fixture.root,
            )
            .unwrap();
            if backend == "kernel" {
                writeln!(
                    s,
                    "mark dm:{label} $(dmsetup status {label})\n\
                     section table:{label}\ndmsetup table {label}\n\
                     mark corrected:{label} $(dmesg | grep -c 'corrected')\n\
                     mark failed:{label} $(dmesg | grep -c 'failed to correct')\n\
                     section dmesg:{label}\ndmesg | grep -i verity"
                )
                .unwrap();
            }
            writeln!(
                s,
                "section status:{label}\nvf status --json {label}\nsection close:{label}\n\
                 vf close {label} 2>&1; mark close:{label} $?"
            )
            .unwrap();
        }
    }
    s.push_str("exit 0\n");
    s
}

/// What one device showed: per block read, the digest or the error; the status letter.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    reads: Vec<(usize, Result<String, String>)>,
    letter: char,
}

fn observed(out: &kernel_vm::VmOutput, label: &str, row: &Row) -> Observed {
    let mark = |name: &str| {
        out.mark(name)
            .unwrap_or_else(|| panic!("no mark {name}:\n{}", out.script_output))
    };
    let open = mark(&format!("open:{label}"));
    assert!(open.starts_with('0'), "open {label} failed: {open}");
    let reads = row
        .read
        .iter()
        .map(|&i| {
            let value = mark(&format!("read:{label}:{i}"));
            let (kind, rest) = value.split_once(' ').unwrap_or((value, ""));
            let read = match kind {
                "ok" => Ok(rest.split_whitespace().next().unwrap_or_default().to_owned()),
                _ => Err(rest.rsplit(": ").next().unwrap_or(rest).to_owned()),
            };
            (i, read)
        })
        .collect();
    let letter = if label.starts_with('k') {
        parse_status(mark(&format!("dm:{label}"))).expect("a verity status line")
    } else {
        let status: serde_json::Value =
            serde_json::from_str(out.section(&format!("status:{label}")).expect("status")).expect("json");
        status["counters"]["letter"]
            .as_str()
            .and_then(|l| l.chars().next())
            .expect("a letter")
    };
    assert_eq!(mark(&format!("close:{label}")), "0", "close {label}");
    Observed { reads, letter }
}

/// A table line with its three device fields (data, hash, FEC) blanked: loop paths as loaded, numbers as
/// printed back.
fn without_devices(table: &str) -> Vec<&str> {
    let fields: Vec<&str> = table.split_whitespace().collect();
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == 4 || i == 5 || (i > 0 && fields[i - 1] == "use_fec_from_device") {
                "DEV"
            } else {
                f
            }
        })
        .collect()
}

fn describe(obs: &Observed, pristine: &[String]) -> String {
    let mut intact = Vec::new();
    let mut eio = Vec::new();
    let mut wrong = Vec::new();
    for (i, read) in &obs.reads {
        match read {
            Ok(d) if *d == pristine[*i] => intact.push(i.to_string()),
            Ok(_) => wrong.push(i.to_string()),
            Err(_) => eio.push(i.to_string()),
        }
    }
    let mut parts = vec![format!("{}", obs.letter)];
    for (what, blocks) in [("repaired/intact", intact), ("EIO", eio), ("WRONG BYTES", wrong)] {
        if !blocks.is_empty() {
            parts.push(format!("{what} {}", blocks.join(",")));
        }
    }
    parts.join(" · ")
}

#[test]
fn kernel_fec_and_fuse_fec_agree_on_every_damage() {
    const TEST: &str = "fec_vm::kernel_fec_and_fuse_fec_agree";
    let tools = ["dmsetup", "losetup", "fusermount3"];
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
    let mut table = format!(
        "kernel {}\n\n\
         | damage | kernel dm-verity | kernel FEC log (corrected / failed) | verity-fuse (FUSE) | FUSE counters \
         (corrected / uncorrectable) | agree |\n|---|---|---|---|---|---|\n",
        out.mark("kernel").unwrap_or("?"),
    );
    let mut disagreements = Vec::new();
    for row in rows() {
        let kernel = observed(&out, &format!("k-{}", row.id), &row);
        let fuse = observed(&out, &format!("f-{}", row.id), &row);
        let table_line = out.section(&format!("table:k-{}", row.id)).unwrap_or_default().trim();
        let kernel_status: serde_json::Value =
            serde_json::from_str(out.section(&format!("status:k-{}", row.id)).expect("status")).expect("json");
        let loaded = kernel_status["table"].as_str().expect("the table we loaded");
        assert_eq!(
            without_devices(loaded),
            without_devices(table_line),
            "the kernel prints back the FEC table we loaded"
        );
        assert!(
            table_line.contains(&format!("fec_roots {ROOTS}")),
            "the kernel's table has FEC: {table_line}"
        );
        let status: serde_json::Value =
            serde_json::from_str(out.section(&format!("status:f-{}", row.id)).expect("status")).expect("json");
        let counters = format!(
            "{} / {}",
            status["counters"]["fec_corrected"], status["counters"]["fec_uncorrectable"]
        );
        let log = format!(
            "{} / {}",
            out.mark(&format!("corrected:k-{}", row.id)).unwrap_or("?"),
            out.mark(&format!("failed:k-{}", row.id)).unwrap_or("?")
        );
        let known = KNOWN_DIFFERENCES
            .iter()
            .find(|(id, _)| *id == row.id)
            .map(|(_, why)| *why);
        let agree = match (kernel == fuse, known) {
            (true, None) => "yes".to_owned(),
            (false, Some(why)) if kernel.reads == fuse.reads => format!("reads yes; status letter: {why}"),
            (true, Some(_)) => {
                disagreements.push(format!("{}: listed as a known difference but they agree", row.what));
                "yes (stale known difference)".to_owned()
            }
            (false, _) => {
                disagreements.push(format!("{}:\n  kernel: {kernel:?}\n  fuse:   {fuse:?}", row.what));
                "**NO**".to_owned()
            }
        };
        writeln!(
            table,
            "| {} | {} | {log} | {} | {counters} | {agree} |",
            row.what,
            describe(&kernel, &fixture.pristine),
            describe(&fuse, &fixture.pristine),
        )
        .unwrap();
    }
    eprintln!("{table}");

    assert!(
        disagreements.is_empty(),
        "kernel and FUSE disagree:\n{}\n\n{table}",
        disagreements.join("\n")
    );
}
