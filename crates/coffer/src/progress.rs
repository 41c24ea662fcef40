//! Progress of a long wait (`enqueue backup --wait`, `restore start --wait`), on stderr only:
//! an indicatif bar when stderr is a terminal and the output is not `--json`; otherwise plain
//! log lines, one when the state changes and at most one every [`LINE_EVERY`] while counts move.
//!
//! stdout is left to the command's result, so `--json` output stays one parseable object.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Plain lines while counts move: at most one this often.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Where a wait is, drawn or logged.
pub struct Progress {
    what: String,
    unit: &'static str,
    bar: Option<ProgressBar>,
    last: Option<(String, u64, u64)>,
    last_line: Instant,
}

impl Progress {
    /// Progress of `what` (e.g. `backup of org 00D...`) counted in `unit` (`tasks`,
    /// `records`); a bar only on a terminal and without `--json`.
    pub fn new(what: impl Into<String>, unit: &'static str, json: bool) -> Progress {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| bar(unit));
        Progress {
            what: what.into(),
            unit,
            bar,
            last: None,
            last_line: Instant::now(),
        }
    }

    /// The state now, a detail shown beside it (`1200 records`, may be empty), and `done` of
    /// `total` units.
    pub fn update(&mut self, state: &str, detail: &str, done: u64, total: u64) {
        let detail = match detail {
            "" => String::new(),
            d => format!(", {d}"),
        };
        if let Some(bar) = &self.bar {
            match total {
                0 => bar.unset_length(),
                n => bar.set_length(n),
            }
            bar.set_position(done);
            bar.set_message(format!("{} {state}{detail}", self.what));
            return;
        }
        let now = (state.to_owned(), done, total);
        let changed_state = self.last.as_ref().is_none_or(|(s, ..)| s != state);
        let moved = self.last.as_ref() != Some(&now);
        if changed_state || (moved && self.last_line.elapsed() >= LINE_EVERY) {
            tracing::info!(
                "{}: {state}, {done}/{total} {}{detail}",
                self.what,
                self.unit
            );
            self.last_line = Instant::now();
            self.last = Some(now);
        }
    }

    /// Removes the bar (the result is printed next).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    let template = format!("{{spinner}} {{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{elapsed}})");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
