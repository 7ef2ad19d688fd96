//! Progress bars for the command: [`Event`]s drawn with `indicatif` on stderr, one bar per layer being
//! fetched, converted or uploaded, step lines printed above them. Nothing is drawn when stderr is not a
//! terminal or the command prints JSON, so scripts and logs see only the result.

use std::cell::RefCell;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Event;

/// Draws progress events, or ignores them when drawing is off.
pub struct Bars {
    multi: Option<MultiProgress>,
    current: RefCell<Option<ProgressBar>>,
}

impl Bars {
    /// Bars on stderr when it is a terminal and `json` is false; otherwise nothing is drawn.
    pub fn new(json: bool) -> Self {
        let draw = !json && std::io::stderr().is_terminal();
        Self {
            multi: draw.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            current: RefCell::new(None),
        }
    }

    /// Handles one event.
    pub fn report(&self, event: Event<'_>) {
        let Some(multi) = &self.multi else {
            return;
        };
        match event {
            Event::Step(line) => {
                let _ = multi.println(line);
            }
            Event::Start { label, total } => {
                let style = ProgressStyle::with_template(
                    "{msg:40} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
                )
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                let bar = multi.add(ProgressBar::new(total).with_style(style).with_message(label.to_owned()));
                if let Some(old) = self.current.replace(Some(bar)) {
                    old.finish();
                }
            }
            Event::Advance(bytes) => {
                if let Some(bar) = &*self.current.borrow() {
                    bar.inc(bytes);
                }
            }
            Event::Finish => {
                if let Some(bar) = self.current.take() {
                    bar.finish();
                }
            }
        }
    }
}
