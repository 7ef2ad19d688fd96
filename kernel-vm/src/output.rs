//! Reading the serial console: the script's output, exit status, named sections and marks, between the
//! markers `/init` prints (see [`crate::initramfs`]).

use std::time::Duration;

use crate::initramfs::{BEGIN, DMESG, END, EXIT, INIT_FAILED, MARK, SECTION};

/// How many console lines an error shows.
pub const TAIL_LINES: usize = 30;

/// What a finished VM run reported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmOutput {
    /// The script's exit status (the status of its last command, or what it passed to `exit`).
    pub exit_code: i32,
    /// Everything the script printed (stdout and stderr interleaved), without the harness's markers.
    pub script_output: String,
    /// Named sections, in order: the lines after each `section NAME` up to the next section or the end of
    /// the script's output.
    pub sections: Vec<(String, String)>,
    /// `mark NAME VALUE` lines, in order, as `(NAME, VALUE)`.
    pub marks: Vec<(String, String)>,
    /// The kernel log (`dmesg`) after the script ran.
    pub dmesg: String,
    /// The whole serial console, carriage returns removed.
    pub console: String,
    /// Wall-clock time from starting qemu to its exit. Host time: nothing inside the emulated VM is a
    /// performance figure.
    pub elapsed: Duration,
    /// Size of the initramfs the VM booted, in bytes.
    pub initramfs_bytes: usize,
}

impl VmOutput {
    /// The text of the first section called `name`.
    pub fn section(&self, name: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, text)| text.as_str())
    }

    /// The value of the first mark called `name`.
    pub fn mark(&self, name: &str) -> Option<&str> {
        self.marks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The last [`TAIL_LINES`] console lines.
    pub fn console_tail(&self) -> String {
        tail(&self.console)
    }
}

/// The last [`TAIL_LINES`] lines of `console`.
pub(crate) fn tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// The kernel's panic line (`Kernel panic - not syncing: ...`), if the console has one; it is often above
/// the last lines because the stack trace follows it.
pub(crate) fn panic_line(console: &str) -> Option<&str> {
    console
        .lines()
        .find(|line| line.contains("Kernel panic"))
        .map(str::trim)
}

/// How a console transcript ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The script ran and its status was printed.
    Finished(ParsedScript),
    /// A setup step of `/init` failed.
    InitFailed(String),
    /// The script never started or its status is missing.
    Incomplete(&'static str),
}

/// The script's part of a console transcript.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParsedScript {
    pub(crate) exit_code: i32,
    pub(crate) script_output: String,
    pub(crate) sections: Vec<(String, String)>,
    pub(crate) marks: Vec<(String, String)>,
    pub(crate) dmesg: String,
}

/// Removes carriage returns (the serial console ends lines with `\r\n`).
pub(crate) fn clean(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace('\r', "")
}

/// Splits a cleaned console transcript at the markers.
pub(crate) fn parse(console: &str) -> Parsed {
    let lines: Vec<&str> = console.lines().collect();
    let failed = lines.iter().find_map(|l| l.strip_prefix(INIT_FAILED));
    let Some(begin) = lines.iter().position(|l| *l == BEGIN) else {
        return match failed {
            Some(step) => Parsed::InitFailed(step.trim().to_owned()),
            None => Parsed::Incomplete("the script never started"),
        };
    };
    let Some(dmesg_at) = lines.iter().rposition(|l| *l == DMESG).filter(|&at| at > begin) else {
        return Parsed::Incomplete("the script did not finish");
    };
    let status_line = dmesg_at.checked_sub(1).filter(|&at| at > begin);
    let Some((exit_at, exit_code)) = status_line.and_then(|at| {
        let code = lines[at].strip_prefix(EXIT)?.trim().parse().ok()?;
        Some((at, code))
    }) else {
        return Parsed::Incomplete("no exit status before the kernel log");
    };
    let end = lines
        .iter()
        .rposition(|l| *l == END)
        .filter(|&at| at > dmesg_at)
        .unwrap_or(lines.len());
    let script = &lines[begin + 1..exit_at];
    let mut sections: Vec<(String, String)> = Vec::new();
    let mut marks = Vec::new();
    let mut output = String::new();
    for line in script {
        if let Some(name) = line.strip_prefix(SECTION) {
            sections.push((name.trim().to_owned(), String::new()));
            continue;
        }
        if let Some(mark) = line.strip_prefix(MARK) {
            let (name, value) = mark.trim().split_once(' ').unwrap_or((mark.trim(), ""));
            marks.push((name.to_owned(), value.trim().to_owned()));
            continue;
        }
        output.push_str(line);
        output.push('\n');
        if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    Parsed::Finished(ParsedScript {
        exit_code,
        script_output: output,
        sections,
        marks,
        dmesg: lines[dmesg_at + 1..end].join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sections_and_marks() {
        let console = "boot noise\nVMTEST-BEGIN\nfirst\nVMTEST-SECTION table\n0 8 verity\nVMTEST-MARK read ok\n\
                       VMTEST-SECTION status\nverified\nVMTEST-EXIT 3\nVMTEST-DMESG\n[0.1] hello\nVMTEST-END\n";
        let Parsed::Finished(script) = parse(console) else {
            panic!("not finished")
        };
        assert_eq!(script.exit_code, 3);
        assert_eq!(script.script_output, "first\n0 8 verity\nverified\n");
        assert_eq!(
            script.sections,
            [
                ("table".into(), "0 8 verity\n".into()),
                ("status".into(), "verified\n".into())
            ]
        );
        assert_eq!(script.marks, [("read".into(), "ok".into())]);
        assert_eq!(script.dmesg, "[0.1] hello");
    }

    #[test]
    fn incomplete_runs_say_where_they_stopped() {
        assert_eq!(parse("Kernel panic\n"), Parsed::Incomplete("the script never started"));
        assert_eq!(
            parse("VMTEST-BEGIN\nsleeping\n"),
            Parsed::Incomplete("the script did not finish")
        );
        assert_eq!(
            parse("VMTEST-INIT-FAILED insmod dm_mod\n"),
            Parsed::InitFailed("insmod dm_mod".into())
        );
    }

    #[test]
    fn finds_the_panic_line() {
        let console =
            "[ 1.0] sysrq: Trigger a crash\n[ 1.1] Kernel panic - not syncing: sysrq triggered crash\n[ 1.2] CPU: 0\n";
        assert_eq!(
            panic_line(console),
            Some("[ 1.1] Kernel panic - not syncing: sysrq triggered crash")
        );
        assert_eq!(panic_line("fine\n"), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let console: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = tail(&console);
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.ends_with("line 99"));
    }

    #[test]
    fn clean_drops_carriage_returns() {
        assert_eq!(clean(b"a\r\nb\r\n"), "a\nb\n");
    }
}
