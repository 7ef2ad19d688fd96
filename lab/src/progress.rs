//! Progress of long operations (pull, convert, push, image build), reported to a callback as
//! [`Event`]s: step lines, and byte counts for each layer being fetched, converted or uploaded.
//!
//! The library only reports; the `veritylab` command draws the events as progress bars on a terminal
//! (`cli`), and a caller that wants nothing passes `&|_| {}`.

use std::fmt;
use std::io::{self, Read};

/// One thing a long operation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A step worth one line (`resolved REF to sha256:...`).
    Step(&'a str),
    /// A byte-counted task starts (a layer to fetch, convert or upload).
    Start {
        /// What it is.
        label: &'a str,
        /// Its size in bytes.
        total: u64,
    },
    /// This many more bytes of the current task are done.
    Advance(u64),
    /// The current task is done.
    Finish,
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Step(line) => f.write_str(line),
            Event::Start { label, total } => write!(f, "{label} ({total} bytes)"),
            Event::Advance(bytes) => write!(f, "+{bytes} bytes"),
            Event::Finish => f.write_str("done"),
        }
    }
}

/// A reader that reports every read as [`Event::Advance`].
pub struct Reader<'p, R> {
    inner: R,
    progress: &'p dyn Fn(Event<'_>),
}

impl<'p, R: Read> Reader<'p, R> {
    /// Wraps `inner`.
    pub fn new(inner: R, progress: &'p dyn Fn(Event<'_>)) -> Self {
        Self { inner, progress }
    }
}

impl<R: Read> Read for Reader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            (self.progress)(Event::Advance(n as u64));
        }
        Ok(n)
    }
}

/// Runs `task` between [`Event::Start`] and [`Event::Finish`] (also when it fails, so a bar never stays
/// open).
pub fn task<T>(progress: &dyn Fn(Event<'_>), label: &str, total: u64, task: impl FnOnce() -> T) -> T {
    progress(Event::Start { label, total });
    let out = task();
    progress(Event::Finish);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn readers_report_every_byte_between_start_and_finish() {
        let seen = RefCell::new(Vec::new());
        let record = |e: Event<'_>| seen.borrow_mut().push(e.to_string());
        let copied = task(&record, "layer", 10, || {
            io::copy(&mut Reader::new(&b"0123456789"[..], &record), &mut io::sink()).unwrap()
        });
        assert_eq!(copied, 10);
        let seen = seen.into_inner();
        assert_eq!(seen.first().map(String::as_str), Some("layer (10 bytes)"));
        assert_eq!(seen.last().map(String::as_str), Some("done"));
        let advanced: u64 = seen
            .iter()
            .filter_map(|s| s.strip_prefix('+')?.strip_suffix(" bytes")?.parse::<u64>().ok())
            .sum();
        assert_eq!(advanced, 10);
    }
}
