//! How the job reports progress: counters of users per stage, behind a small trait the binary
//! implements with bars; [`LogProgress`] writes a log line now and then.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The job's counters of users: queued, then through each stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Queued = 0,
    Reasoned = 1,
    Retrieved = 2,
    Finished = 3,
}

/// Where the job reports its progress: the binary draws bars on a terminal and logs
/// otherwise ([`LogProgress`]).
pub trait Progress: Sync {
    /// `n` more users counted in `counter`.
    fn add(&self, counter: Counter, n: u64);
    /// The run is over.
    fn finish(&self) {}
}

/// Users in each [`Counter`], and how fast they finish.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub users: [u64; 4],
    pub started: Instant,
}

impl Counts {
    pub fn new() -> Self {
        Self {
            users: [0; 4],
            started: Instant::now(),
        }
    }

    pub fn add(&mut self, counter: Counter, n: u64) {
        self.users[counter as usize] += n;
    }

    /// Users finished per minute since the start.
    pub fn per_min(&self) -> f64 {
        let minutes = self.started.elapsed().as_secs_f64() / 60.0;
        self.users[Counter::Finished as usize] as f64 / minutes.max(1e-9)
    }
}

impl Default for Counts {
    fn default() -> Self {
        Self::new()
    }
}

/// Progress as a log line every `every` (`[job] log_every_s`).
#[derive(Debug)]
pub struct LogProgress {
    /// The counts and the last line's time.
    counts: Mutex<(Counts, Instant)>,
    every: Duration,
}

impl LogProgress {
    pub fn new(every_s: u64) -> Self {
        Self {
            counts: Mutex::new((Counts::new(), Instant::now())),
            every: Duration::from_secs(every_s.max(1)),
        }
    }
}

impl Progress for LogProgress {
    fn add(&self, counter: Counter, n: u64) {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (counts, last) = &mut *guard;
        counts.add(counter, n);
        if last.elapsed() >= self.every {
            *last = Instant::now();
            let c = counts.users;
            tracing::info!(
                queued = c[0],
                reasoned = c[1],
                retrieved = c[2],
                finished = c[3],
                users_per_min = format!("{:.2}", counts.per_min()),
                "progress"
            );
        }
    }
}
