//! Progress of long learned-model work (simulation, training): a bar when
//! stderr is a terminal, otherwise one line every ten seconds (batch jobs
//! and logs), nothing when not asked.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Interval between progress lines when stderr is not a terminal.
const EVERY: Duration = Duration::from_secs(10);

/// A progress display over `total` units.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    total: usize,
    unit: &'static str,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// A display of `total` `unit`s, shown only if `show`.
    pub fn new(show: bool, total: usize, unit: &'static str) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (show && terminal).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}} left) {{msg}}"
                ))
                .expect("valid template"),
            );
            bar
        });
        Self {
            bar,
            lines: show && !terminal,
            total,
            unit,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// `done` units are done; `message` says how it goes (e.g. the loss).
    pub fn set(&mut self, done: usize, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(message.to_string());
        } else if self.lines && (self.last_line.elapsed() >= EVERY || done == self.total) {
            self.last_line = Instant::now();
            let elapsed = self.started.elapsed().as_secs_f64();
            let left = elapsed / done.max(1) as f64 * self.total.saturating_sub(done) as f64;
            eprintln!(
                "rime: {done}/{} {} ({:.0} %), {elapsed:.0} s elapsed, about {left:.0} s left {message}",
                self.total,
                self.unit,
                100.0 * done as f64 / self.total.max(1) as f64
            );
        }
    }

    /// Prints a line above the bar (or to stderr).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.lines => eprintln!("rime: {line}"),
            None => {}
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
