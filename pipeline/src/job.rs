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

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use recgpt_data::{DataError, History, Store, TimeWindow};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::compress::{Compressor, Narrative};
use crate::explain::keys::InterestKeys;
use crate::explain::ExplainCounts;
use crate::llm::{LlmBackend, TokenCount};
use crate::reason::TokenUse;
use crate::reason::UserReasoning;
use crate::recommend::{Fingerprints, Recommender, Retrieved};
use crate::results::{Failure, ResultsError};

/// Settings of the batch job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    /// Users whose LLM requests are decoded together; 0 fills [`GROUP_BATCHES`] of the
    /// backend's batches (sequences × 4 ÷ interest rounds, at least 1).
    pub group_users: usize,
    /// Groups each channel between two stages holds.
    pub queue_groups: usize,
    /// Attempts per user when the backend fails (a failed group is retried user by user).
    pub attempts: usize,
    /// Seconds between progress log lines when stderr is not a terminal.
    pub log_every_s: u64,
}

/// Backend batches of conversations a default group holds. A group's call ends with a tail
/// in which the slots of finished conversations stay idle; with more conversations than
/// slots, the slots refill while the group lasts and the tail is a smaller share of the call.
/// On the first 24 users (2 cores, `scripts/quick.toml`), one group of 24 instead of three
/// of 8 kept 6.8 instead of 5.2 of the 8 slots busy in the reason stage on average and cut
/// the job's time by 9% (338 to 309 s).
pub const GROUP_BATCHES: usize = 4;

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            group_users: 0,
            queue_groups: 2,
            attempts: 2,
            log_every_s: 30,
        }
    }
}

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
    #[error("unknown user(s): {}", .0.join(", "))]
    UnknownUsers(Vec<String>),
    #[error("a job worker panicked")]
    Panicked,
    /// A worker's neighbour ended early (it reports the real error).
    #[error("a job stage ended early")]
    Closed,
}

/// A user ready for the LLM.
struct Work {
    history: History,
    narrative: Narrative,
    fingerprints: Fingerprints,
    /// The stored interests and tags, when their inputs are unchanged.
    reasoning: Option<UserReasoning>,
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
    let capacity = group * config.queue_groups.max(1);
    let inputs = recommender.inputs(llm.model_id());
    let mut keys =
        InterestKeys::load(results, recommender.config.explain.key_similarity).map_err(|e| {
            ResultsError {
                path: results.path().to_path_buf(),
                message: e.to_string(),
            }
        })?;

    let tally = Mutex::new(JobSummary::default());
    let llm_turn = Mutex::new(());
    let progress = Progress::new(config.log_every_s);
    let (to_reason, mut reason_in) = mpsc::channel::<Work>(capacity);
    // after `reason`, whole groups travel together: `explain` then batches a group's pairs
    let groups = config.queue_groups.max(1);
    let (to_retrieve, mut retrieve_in) = mpsc::channel::<Vec<(Work, UserReasoning)>>(groups);
    let (to_explain, mut explain_in) = mpsc::channel::<Vec<Retrieved>>(groups);

    let fail = |user: &str, fingerprint: &str, stage: &str, reason: String| {
        let failure = Failure {
            user: user.to_string(),
            fingerprint: fingerprint.to_string(),
            stage: stage.to_string(),
            reason,
        };
        tracing::warn!(user, stage, reason = %failure.reason, "user failed");
        let stored = results.put_failure(&failure);
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        t.failed += 1;
        t.failures.push(failure);
        progress.add(3, 1);
        stored
    };
    let busy = |stage: &str, since: Instant| {
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        *t.stage_seconds.entry(stage.to_string()).or_default() += since.elapsed().as_secs_f64();
    };
    // a lone user gets `config.attempts`; a group one (its users are then retried one by one)
    let attempts = |users: usize| {
        if users == 1 {
            config.attempts.max(1)
        } else {
            1
        }
    };

    let outcome: Result<(), JobError> = std::thread::scope(|scope| {
        // prepare: select, compress, fingerprint, skip
        let prepare = scope.spawn(|| -> Result<(), JobError> {
            let to_reason = to_reason; // dropped when done: the next stage then ends
            let mut visit = |history: History| -> Result<(), JobError> {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let user = history.user.clone();
                if options.shard.is_some_and(|s| !s.contains(&user)) {
                    return Ok(());
                }
                let t0 = Instant::now();
                let narrative = compressor.compress(&history, window);
                let fps = inputs.fingerprints(&narrative);
                let fp = &fps.result;
                busy("prepare", t0);
                // one primary-key lookup each, so start-up and memory do not grow with the store
                let failed = results.failure(&user)?.map(|f| f.fingerprint);
                let stored = match options.retry_failed || options.force {
                    true => None,
                    false => results.fingerprint(&user)?,
                };
                let skip = {
                    let mut s = tally.lock().unwrap_or_else(|p| p.into_inner());
                    s.selected += 1;
                    if options.retry_failed {
                        s.skipped += usize::from(failed.is_none());
                        failed.is_none()
                    } else if stored.as_ref() == Some(fp) {
                        s.skipped += 1;
                        true
                    } else if !options.force && failed.as_ref() == Some(fp) {
                        s.failed_before += 1;
                        true
                    } else {
                        false
                    }
                };
                if skip {
                    return Ok(());
                }
                // a stored result of other inputs may still hold this narrative's reasoning
                let reasoning = match stored {
                    Some(_) => results
                        .user(&user)?
                        .filter(|r| r.reasoning_fingerprint == fps.reasoning)
                        .map(|r| UserReasoning {
                            interests: r.interests,
                            tags: r.tags,
                        }),
                    None => None,
                };
                progress.add(0, 1);
                let work = Work {
                    history,
                    narrative,
                    fingerprints: fps,
                    reasoning,
                };
                // a closed channel means a later stage ended (an error): stop reading
                to_reason.blocking_send(work).map_err(|_| JobError::Closed)
            };
            match &options.selection {
                Selection::All => store.for_each_history(window, &mut visit),
                Selection::First(n) => {
                    let mut left = *n;
                    let mut first = |h: History| {
                        if left == 0 {
                            return Ok(());
                        }
                        left -= 1;
                        visit(h)
                    };
                    store.for_each_history(window, &mut first)
                }
                Selection::Users(users) => {
                    let mut seen = HashSet::new();
                    for user in users.iter().filter(|u| seen.insert(u.as_str())) {
                        let history = store.history(user, window)?;
                        if history.events.is_empty() {
                            tally.lock().unwrap_or_else(|p| p.into_inner()).no_history += 1;
                            continue;
                        }
                        visit(history)?;
                    }
                    Ok(())
                }
            }
        });

        // reason: full groups through interests + tags
        let reason = scope.spawn(|| -> Result<(), JobError> {
            let to_retrieve = to_retrieve;
            while let Some(batch) = recv_group(&mut reason_in, group) {
                if stop.load(Ordering::Relaxed) {
                    // stopping: the groups already reasoned finish, queued users wait
                    tally.lock().unwrap_or_else(|p| p.into_inner()).interrupted += batch.len();
                    continue;
                }
                // users whose reasoning was kept go straight on
                let (kept, batch): (Vec<Work>, Vec<Work>) =
                    batch.into_iter().partition(|w| w.reasoning.is_some());
                let mut reasoned: Vec<(Work, UserReasoning)> = kept
                    .into_iter()
                    .filter_map(|mut w| w.reasoning.take().map(|r| (w, r)))
                    .collect();
                progress.add(1, reasoned.len() as u64);
                tally
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .reasoning_reused += reasoned.len();
                let mut pending = if batch.is_empty() {
                    vec![]
                } else {
                    vec![batch]
                };
                while let Some(works) = pending.pop() {
                    let users: Vec<_> = works.iter().map(|w| (&w.history, &w.narrative)).collect();
                    let outcome = on_llm(
                        &llm_turn,
                        attempts(works.len()),
                        |t0| llm_time(&tally, "reason", t0),
                        || recommender.reasoner.run(llm, &users),
                    );
                    match outcome {
                        Ok((reasoning, tokens)) => {
                            add_tokens(&tally, tokens);
                            for (work, r) in works.into_iter().zip(reasoning) {
                                if r.interests.counts.answers > 0
                                    && r.interests.counts.unparsable == r.interests.counts.answers
                                {
                                    let reason = format!(
                                        "invalid output: none of {} interests answers parsed",
                                        r.interests.counts.answers
                                    );
                                    fail(
                                        &work.history.user,
                                        &work.fingerprints.result,
                                        "reason",
                                        reason,
                                    )?;
                                    continue;
                                }
                                progress.add(1, 1);
                                reasoned.push((work, r));
                            }
                        }
                        Err(_) if works.len() > 1 => {
                            pending.extend(works.into_iter().rev().map(|w| vec![w]));
                        }
                        Err(e) => {
                            let w = &works[0];
                            let reason = e.map_or_else(String::new, |e| e.to_string());
                            fail(&w.history.user, &w.fingerprints.result, "reason", reason)?;
                        }
                    }
                }
                if !reasoned.is_empty() && to_retrieve.blocking_send(reasoned).is_err() {
                    return Err(JobError::Closed);
                }
            }
            Ok(())
        });

        // retrieve: towers + index, overlapping the LLM
        let retrieve = scope.spawn(|| -> Result<(), JobError> {
            let to_explain = to_explain;
            while let Some(batch) = retrieve_in.blocking_recv() {
                let mut retrieved = Vec::with_capacity(batch.len());
                for (work, reasoning) in batch {
                    let t0 = Instant::now();
                    let found = recommender.retrieve(&work.history, &work.narrative, &reasoning);
                    busy("retrieve", t0);
                    match found {
                        Ok(found) => {
                            progress.add(2, 1);
                            retrieved.push(Retrieved {
                                user: work.history.user,
                                as_of: work.narrative.as_of,
                                fingerprints: work.fingerprints,
                                reasoning,
                                found,
                            });
                        }
                        Err(e) => fail(
                            &work.history.user,
                            &work.fingerprints.result,
                            "retrieve",
                            e.to_string(),
                        )?,
                    }
                }
                if !retrieved.is_empty() && to_explain.blocking_send(retrieved).is_err() {
                    return Err(JobError::Closed);
                }
            }
            Ok(())
        });

        // explain + store: a group's pairs in one call
        let explain = scope.spawn(|| -> Result<(), JobError> {
            while let Some(batch) = explain_in.blocking_recv() {
                let mut pending = vec![batch];
                while let Some(users) = pending.pop() {
                    let single = users.len() == 1;
                    let outcome = on_llm(
                        &llm_turn,
                        attempts(users.len()),
                        |t0| llm_time(&tally, "explain", t0),
                        || recommender.explain(llm, &mut keys, users.clone()),
                    );
                    match outcome {
                        Ok((out, counts)) => {
                            add_explain(&tally, &counts);
                            for result in &out {
                                results.put_user(result)?;
                                tally.lock().unwrap_or_else(|p| p.into_inner()).done += 1;
                                progress.add(3, 1);
                            }
                        }
                        Err(_) if !single => {
                            pending.extend(users.into_iter().rev().map(|u| vec![u]));
                        }
                        Err(e) => {
                            let u = &users[0];
                            let reason = e.map_or_else(String::new, |e| e.to_string());
                            fail(&u.user, &u.fingerprints.result, "explain", reason)?;
                        }
                    }
                }
            }
            Ok(())
        });

        // the real error, not a neighbour's closed channel
        let mut errors: Vec<JobError> = [prepare, reason, retrieve, explain]
            .into_iter()
            .filter_map(|h| h.join().unwrap_or(Err(JobError::Panicked)).err())
            .collect();
        errors.sort_by_key(|e| matches!(e, JobError::Closed));
        errors.into_iter().next().map_or(Ok(()), Err)
    });
    progress.finish();
    outcome?;

    let mut summary = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.shard = options.shard;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.users_per_min = summary.done as f64 * 60.0 / summary.seconds.max(1e-9);
    summary.generated_per_s = summary.tokens.generated as f64 / summary.llm_seconds.max(1e-9);
    summary.peak_rss_mib = peak_rss_mib().unwrap_or(0.0);
    Ok(summary)
}

/// A full group of `n` items, fewer when the channel closes first; `None` once it is closed
/// and empty.
fn recv_group<T>(rx: &mut mpsc::Receiver<T>, n: usize) -> Option<Vec<T>> {
    let mut out = vec![rx.blocking_recv()?];
    while out.len() < n {
        match rx.blocking_recv() {
            Some(x) => out.push(x),
            None => break,
        }
    }
    Some(out)
}

/// Calls an LLM stage on its turn of the backend, up to `attempts` times; `timed` gets each
/// call's start.
fn on_llm<T, E: std::fmt::Display>(
    turn: &Mutex<()>,
    attempts: usize,
    mut timed: impl FnMut(Instant),
    mut call: impl FnMut() -> Result<T, E>,
) -> Result<T, Option<E>> {
    let mut last = None;
    for _ in 0..attempts {
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let t0 = Instant::now();
        let r = call();
        timed(t0);
        match r {
            Ok(x) => return Ok(x),
            Err(e) => {
                tracing::warn!(error = %e, "LLM stage failed");
                last = Some(e);
            }
        }
    }
    Err(last)
}

/// Adds an LLM call's time to its stage and to the LLM's busy time.
fn llm_time(tally: &Mutex<JobSummary>, stage: &str, t0: Instant) {
    let seconds = t0.elapsed().as_secs_f64();
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    *t.stage_seconds.entry(stage.to_string()).or_default() += seconds;
    t.llm_seconds += seconds;
}

fn add_tokens(tally: &Mutex<JobSummary>, tokens: TokenUse) {
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    t.tokens.merge(&tokens);
}

fn add_explain(tally: &Mutex<JobSummary>, counts: &ExplainCounts) {
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    t.tokens.merge(&counts.tokens);
    t.explain.add(counts);
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

/// Progress: one bar per stage on a terminal, else a log line every `every` seconds.
struct Progress {
    bars: Option<(MultiProgress, [ProgressBar; 3])>,
    /// Users queued, reasoned, retrieved, finished; the last log line's time.
    counts: Mutex<([u64; 4], Instant)>,
    every: Duration,
    started: Instant,
}

impl Progress {
    fn new(every_s: u64) -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
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
            (multi, bars)
        });
        Self {
            bars,
            counts: Mutex::new(([0; 4], Instant::now())),
            every: Duration::from_secs(every_s.max(1)),
            started: Instant::now(),
        }
    }

    /// Adds `n` users to counter `i`: 0 queued, 1 reasoned, 2 retrieved, 3 finished.
    fn add(&self, i: usize, n: u64) {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (c, last) = &mut *guard;
        c[i] += n;
        match &self.bars {
            Some((_, bars)) => {
                for (bar, done) in bars.iter().zip(&c[1..]) {
                    bar.set_length(c[0]);
                    bar.set_position(*done);
                }
            }
            None if last.elapsed() >= self.every => {
                *last = Instant::now();
                let minutes = self.started.elapsed().as_secs_f64() / 60.0;
                tracing::info!(
                    queued = c[0],
                    reasoned = c[1],
                    retrieved = c[2],
                    finished = c[3],
                    users_per_min = format!("{:.2}", c[3] as f64 / minutes.max(1e-9)),
                    "progress"
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some((multi, bars)) = &self.bars {
            for b in bars {
                b.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
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
