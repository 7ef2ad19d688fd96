//! `verity-fuse status` against `veritysetup status` on real mappings in the VM (kernel-vm): the same files
//! opened by `veritysetup open`, by `verity-fuse open --backend kernel` and by `--backend fuse` must print the
//! same fields, in the same order, with the same values. Devices are compared by what they read: a loop
//! device's line and its `loop:` line (its backing file) count as one value, the backing file, which is what
//! the FUSE backend names directly. veritysetup 2.6.1 prints no `FEC loop:` line (it looks the backing file up
//! from a `--fec-device` option, which `status` is not given); its FEC loop device is resolved through the
//! loop devices' backing files in `/sys/block` listed beside its status.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::support::{bytes, field, ok, verity_fuse};

const BLOCK: usize = 4096;
const BLOCKS: usize = 300;

/// One way of opening the same files.
struct Case {
    id: &'static str,
    /// Files and flags, as both tools take them.
    args: &'static str,
}

const CASES: &[Case] = &[
    Case {
        id: "fec",
        args: "--fec-device parity.fec --fec-roots 4 --fec-offset 8192 --ignore-zero-blocks \
               --check-at-most-once data.img NAME data.verity ROOT",
    },
    Case {
        id: "inside",
        args: "--hash-offset 1228800 --restart-on-corruption inside.img NAME inside.img ROOT_INSIDE",
    },
];

/// The `name: value` fields of a status output after its first line, with each `X loop:` line folded into
/// the `X device:` before it and any loop device left without one resolved through `loops` (loop device to
/// backing file), and the first line's verdict (`is active.`).
fn fields(output: &str, loops: &HashMap<String, String>) -> (String, Vec<(String, String)>) {
    let mut lines = output.lines();
    let first = lines.next().unwrap_or_default();
    let verdict = first.split_once(" is ").map_or(first, |(_, v)| v).to_owned();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match name.strip_suffix(" loop") {
            Some(device) => {
                let last = fields.last_mut().expect("a device line before its loop line");
                assert_eq!(
                    last.0,
                    format!("{device} device"),
                    "loop line after its device: {output}"
                );
                last.1 = value;
            }
            None => {
                let value = match name.ends_with(" device") {
                    true => loops.get(&value).cloned().unwrap_or(value),
                    false => value,
                };
                fields.push((name.to_owned(), value));
            }
        }
    }
    (verdict, fields)
}

#[test]
fn status_prints_veritysetups_fields_on_both_backends() {
    const TEST: &str = "status_vm::status_prints_veritysetups_fields";
    let tools = ["veritysetup", "dmsetup", "losetup", "fusermount3"];
    let (_, vm) = match kernel_vm::test_vm(kernel_vm::Series::Bookworm, false, &tools) {
        Ok(ready) => ready,
        Err(reason) => return testkit::skip(TEST, &reason),
    };
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(BLOCKS * BLOCK, 31);
    std::fs::write(dir.path().join("data.img"), &data).unwrap();
    let out = ok(
        verity_fuse(
            dir.path(),
            &[
                "format",
                "--salt",
                "5a175a17",
                "--fec-device",
                "parity.fec",
                "--fec-roots",
                "4",
                "--fec-offset",
                "8192",
                "data.img",
                "data.verity",
            ],
        ),
        "format with FEC",
    );
    let root = field(&out, "Root hash");
    // The tree inside the data file, past the data: the layout of containerd's EROFS snapshotter.
    std::fs::write(dir.path().join("inside.img"), &data).unwrap();
    let out = ok(
        verity_fuse(
            dir.path(),
            &[
                "format",
                "--salt",
                "-",
                "--hash-offset",
                "1228800",
                "inside.img",
                "inside.img",
            ],
        ),
        "format inside the data file",
    );
    let root_inside = field(&out, "Root hash");

    let mut script = String::from("mkdir -p /run/vf\n");
    for case in CASES {
        let args = |name: &str| {
            case.args
                .replace("NAME", name)
                .replace("ROOT_INSIDE", &root_inside)
                .replace("ROOT", &root)
        };
        writeln!(
            script,
            "veritysetup open {theirs} >/tmp/open.err 2>&1; mark open:v-{id} $? $(cat /tmp/open.err)\n\
             section status:v-{id}\nveritysetup status v-{id}\n\
             section loops:v-{id}\nfor d in /sys/block/loop*; do [ -f $d/loop/backing_file ] && echo /dev/${{d##*/}} $(cat $d/loop/backing_file); done\nveritysetup close v-{id}\n\
             for backend in kernel fuse; do\n\
               n=${{backend%${{backend#?}}}}-{id}\n\
               verity-fuse open --dir /run/vf --backend $backend {ours} >/dev/null 2>/tmp/open.err; \
             mark open:$n $? $(cat /tmp/open.err)\n\
               section status:$n\n  verity-fuse status --dir /run/vf $n\n\
               section json:$n\n  verity-fuse status --dir /run/vf --json $n\n\
               section close:$n\n  verity-fuse close --dir /run/vf $n\n\
             done",
            id = case.id,
            theirs = args(&format!("v-{}", case.id)),
            ours = args("$n"),
        )
        .unwrap();
    }
    script.push_str("exit 0\n");

    let mut vm = vm
        .binary_at(env!("CARGO_BIN_EXE_verity-fuse"))
        .script(&script)
        .timeout(Duration::from_secs(200));
    for name in ["data.img", "data.verity", "parity.fec", "inside.img"] {
        vm = vm.file(name, std::fs::read(dir.path().join(name)).unwrap());
    }
    let out = vm.run().unwrap_or_else(|e| panic!("VM run failed: {e}"));
    assert_eq!(out.exit_code, 0, "script failed:\n{}", out.console_tail());

    for case in CASES {
        let section = |label: &str| {
            out.section(&format!("status:{label}-{}", case.id))
                .unwrap_or_else(|| panic!("no status of {label}-{}:\n{}", case.id, out.script_output))
        };
        for label in ["v", "k", "f"] {
            let open = out.mark(&format!("open:{label}-{}", case.id)).unwrap_or("?");
            assert!(open.starts_with('0'), "{label}-{} did not open: {open}", case.id);
        }
        let theirs = section("v");
        eprintln!("veritysetup status ({}):\n{theirs}", case.id);
        let loops: HashMap<String, String> = out
            .section(&format!("loops:v-{}", case.id))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (device, file) = l.trim().split_once(char::is_whitespace)?;
                Some((device.to_owned(), file.trim().to_owned()))
            })
            .collect();
        let (verdict, expected) = fields(theirs, &loops);
        assert!(expected.len() >= 13, "veritysetup printed its fields: {theirs}");
        for label in ["k", "f"] {
            let ours = section(label);
            eprintln!("verity-fuse status ({label}-{}):\n{ours}", case.id);
            let (our_verdict, got) = fields(ours, &HashMap::new());
            assert_eq!(our_verdict, verdict, "{label}-{}: first line", case.id);
            assert_eq!(
                &got[..expected.len().min(got.len())],
                &expected[..],
                "{label}-{}: veritysetup's fields, in its order and with its values",
                case.id
            );
            assert_eq!(
                got.get(expected.len()).map(|f| f.0.as_str()),
                Some("backend"),
                "{label}-{}: our own fields follow veritysetup's",
                case.id
            );
            let json: serde_json::Value = serde_json::from_str(
                out.section(&format!("json:{label}-{}", case.id))
                    .expect("a JSON status"),
            )
            .expect("--json prints JSON");
            assert_eq!(
                json["root_hash"].as_str(),
                expected.iter().find(|f| f.0 == "root hash").map(|f| f.1.as_str())
            );
        }
    }
}
