//! The batch job's progress on a terminal: one bar per stage (reason, retrieve, explain) over
//! the users queued; a log line every `[job] log_every_s` when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use recgpt_pipeline::job::{Counter, Counts, LogProgress, Progress};

/// Bars on a terminal, else log lines.
pub fn job_progress(log_every_s: u64) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(LogProgress::new(log_every_s))
    }
}

struct Bars {
    multi: MultiProgress,
    /// reason, retrieve, explain
    bars: [ProgressBar; 3],
    counts: Mutex<Counts>,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} users {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let bar = |name: &str| {
            let b = multi.add(ProgressBar::new(0));
            b.set_style(style.clone());
            b.set_prefix(name.to_string());
            b
        };
        let bars = [bar("reason"), bar("retrieve"), bar("explain")];
        Self {
            multi,
            bars,
            counts: Mutex::new(Counts::new()),
        }
    }
}

impl Progress for Bars {
    fn add(&self, counter: Counter, n: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.add(counter, n);
        let c = counts.users;
        for (bar, done) in self.bars.iter().zip(&c[1..]) {
            bar.set_length(c[0]);
            bar.set_position(*done);
        }
    }

    fn finish(&self) {
        for b in &self.bars {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}
