//! The batch job (`recgpt run`): every selected user through compress → interests + tags →
//! retrieve → explain, stored per user in the results store.
//!
//! Four workers connected by bounded channels (tokio's `mpsc`, used from blocking threads:
//! every stage is CPU-bound or calls the blocking LLM backend):
//!
//! ```text
//! prepare ──▶ reason (LLM) ──▶ retrieve ──▶ explain (LLM) + store
//! ```
//!
//! - `prepare` reads histories in user-id order, keeps the selected users of this shard,
//!   compresses each into its narrative and fingerprints it; users whose stored result has the
//!   same fingerprint are skipped (unless `--force`). A stored result whose reasoning
//!   fingerprint still matches (only the explain rules, retrieval or the towers changed) gives
//!   its interests and tags to the new result: `reason` passes such a user straight on.
//! - `reason` waits for a full group (`job.group_users`) and runs the interests and tags
//!   conversations of the whole group in the backend's batches.
//! - `retrieve` embeds tags and searches the index while the LLM works on the next group.
//! - `explain` takes a whole group as `reason` made it, explains all its (interest, item) pairs
//!   in one call (full batches of pairs) and stores each user's result in its own transaction.
//!
//! The two LLM stages take turns on the one backend (a lock), so the model is never asked to
//! run two batches on the same cores at once. Each channel holds at most `job.queue_groups`
//! groups, so memory does not grow with the number of users.
//!
//! Safe to kill at any moment: a user's result is one SQLite transaction, written after its
//! explanations; a rerun skips the users already stored with the same fingerprint and redoes
//! the rest. A stop (`stop`, set by SIGINT / SIGTERM) ends sooner: no new user, the group the
//! model is on and the groups already reasoned finish, the users queued for `reason` are
//! counted `interrupted`. A user that fails (a backend error after retries, or no parsable
//! interests answer) is recorded with its reason and the job goes on; `--retry-failed` reruns
//! those.

mod progress;
mod workers;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Instant;

use recgpt_data::{DataError, Store, TimeWindow};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::compress::Compressor;
use crate::config::{JobConfig, GROUP_BATCHES};
use crate::explain::keys::InterestKeys;
use crate::explain::{ExplainCounts, StoreError};
use crate::llm::{LlmBackend, TokenCount, TokenUse};
use crate::recommend::Recommender;
use crate::results::{Failure, ResultsError};
pub use progress::{Counter, Counts, LogProgress, Progress};
use workers::Workers;

/// One of `count` disjoint parts of the user base, by a stable hash of the user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `i/N` with `0 <= i < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?}: expected i/N, e.g. 0/4"))?;
        let parse = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("shard {s:?}: {x:?} is not a number"))
        };
        let (index, count) = (parse(i)?, parse(n)?);
        if count == 0 || index >= count {
            return Err(format!("shard {s:?}: need 0 <= i < N"));
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether `user` belongs to this shard (FNV-1a of the id, modulo the count).
    pub fn contains(&self, user: &str) -> bool {
        crate::hash::fnv1a([user.as_bytes()]) % u64::from(self.count) == u64::from(self.index)
    }
}

/// Which users a run covers (before sharding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every user with an event in the window.
    All,
    /// The first `n` such users in user-id order.
    First(usize),
    /// These users.
    Users(Vec<String>),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub selection: Selection,
    pub shard: Option<Shard>,
    /// Recompute users whose stored result is current.
    pub force: bool,
    /// Rerun only the users recorded as failed.
    pub retry_failed: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobSummary {
    pub shard: Option<Shard>,
    /// Users selected (of this shard).
    pub selected: usize,
    /// Results computed and stored in this run.
    pub done: usize,
    /// Stored results with an unchanged fingerprint (or, with `--retry-failed`, users that
    /// had not failed).
    pub skipped: usize,
    /// Users that failed in this run.
    pub failed: usize,
    /// Users whose stored interests and tags were kept instead of reasoned again: their
    /// inputs changed only after reasoning (explain rules, retrieval, the towers).
    pub reasoning_reused: usize,
    /// Users that failed in an earlier run with the same inputs (not retried).
    pub failed_before: usize,
    /// Listed users with no event in the window.
    pub no_history: usize,
    /// Users queued but not started when a stop was asked for (SIGINT / SIGTERM): left for
    /// the next run.
    pub interrupted: usize,
    pub seconds: f64,
    /// Users done per minute of wall time.
    pub users_per_min: f64,
    /// Busy seconds of each stage's worker: `prepare`, `reason`, `retrieve`, `explain`.
    pub stage_seconds: HashMap<String, f64>,
    /// Seconds the LLM was busy (reason + explain batches).
    pub llm_seconds: f64,
    /// Tokens of every LLM stage (reason and explain; `explain.tokens` is the latter).
    pub tokens: TokenUse,
    /// Generated tokens per second of LLM time.
    pub generated_per_s: f64,
    pub explain: ExplainCounts,
    /// This run's failures.
    pub failures: Vec<Failure>,
    /// Peak resident memory of the process, MiB (`VmHWM`).
    pub peak_rss_mib: f64,
}

/// Errors that stop the job (a user's own failure does not).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("explanation store: {0}")]
    Store(#[from] StoreError),
    #[error("unknown user(s): {}", .0.join(", "))]
    UnknownUsers(Vec<String>),
    #[error("a job worker panicked")]
    Panicked,
    /// A worker's neighbour ended early (it reports the real error).
    #[error("a job stage ended early")]
    Closed,
}

/// Runs the job. `stop` ends it early and cleanly (no new users; groups in flight finish).
#[allow(clippy::too_many_arguments)]
pub fn run<T: TokenCount + Sync>(
    recommender: &Recommender<'_>,
    llm: &dyn LlmBackend,
    store: &Store,
    window: &TimeWindow,
    compressor: &Compressor<'_, T>,
    config: &JobConfig,
    options: &JobOptions,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<JobSummary, JobError> {
    let started = Instant::now();
    if let Selection::Users(users) = &options.selection {
        let mut unknown = Vec::new();
        for u in users {
            if !store.has_user(u)? {
                unknown.push(u.clone());
            }
        }
        if !unknown.is_empty() {
            return Err(JobError::UnknownUsers(unknown));
        }
    }
    let results = recommender.results;
    let rounds = recommender.config.interests.rounds.max(1);
    let group = match config.group_users {
        0 => (GROUP_BATCHES * recommender.config.llm.backend.batch() / rounds).max(1),
        n => n,
    };
    let keys = InterestKeys::load(results, recommender.config.explain.key_similarity)?;
    let workers = Workers {
        recommender,
        llm,
        store,
        window,
        compressor,
        config,
        options,
        progress,
        stop,
        inputs: recommender.inputs(llm.model_id()),
        group,
        tally: Mutex::new(JobSummary::default()),
        llm_turn: Mutex::new(()),
    };
    let (to_reason, reason_in) = mpsc::channel(group * config.queue_groups.max(1));
    // after `reason`, whole groups travel together: `explain` then batches a group's pairs
    let groups = config.queue_groups.max(1);
    let (to_retrieve, retrieve_in) = mpsc::channel(groups);
    let (to_explain, explain_in) = mpsc::channel(groups);

    // a worker drops its sender when it ends, and the next one then ends too
    let outcome: Result<(), JobError> = std::thread::scope(|scope| {
        let w = &workers;
        let handles = [
            scope.spawn(move || w.prepare(to_reason)),
            scope.spawn(move || w.reason(reason_in, to_retrieve)),
            scope.spawn(move || w.retrieve(retrieve_in, to_explain)),
            scope.spawn(move || w.explain(explain_in, keys)),
        ];
        // the real error, not a neighbour's closed channel
        let mut errors: Vec<JobError> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or(Err(JobError::Panicked)).err())
            .collect();
        errors.sort_by_key(|e| matches!(e, JobError::Closed));
        errors.into_iter().next().map_or(Ok(()), Err)
    });
    progress.finish();
    outcome?;

    let mut summary = workers
        .tally
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    summary.shard = options.shard;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.users_per_min = summary.done as f64 * 60.0 / summary.seconds.max(1e-9);
    summary.generated_per_s = summary.tokens.generated as f64 / summary.llm_seconds.max(1e-9);
    summary.peak_rss_mib = peak_rss_mib().unwrap_or(0.0);
    Ok(summary)
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::workers::recv_group;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shards_parse_and_reject_nonsense() {
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        assert!("a/2".parse::<Shard>().is_err());
    }

    proptest! {
        #[test]
        fn every_user_is_in_exactly_one_shard(user in "[0-9A-Za-z]{1,12}", count in 1u32..16) {
            let owners = (0..count)
                .filter(|&index| Shard { index, count }.contains(&user))
                .count();
            prop_assert_eq!(owners, 1);
        }
    }

    #[test]
    fn groups_fill_until_the_channel_closes() {
        let (tx, mut rx) = mpsc::channel(8);
        for i in 0..5 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(recv_group(&mut rx, 2), Some(vec![0, 1]));
        assert_eq!(recv_group(&mut rx, 2), Some(vec![2, 3]));
        drop(tx);
        assert_eq!(recv_group(&mut rx, 4), Some(vec![4]));
        assert_eq!(recv_group(&mut rx, 4), None);
    }

    #[test]
    fn peak_memory_is_read() {
        assert!(peak_rss_mib().unwrap() > 1.0);
    }
}
