//! The job's four workers ([`Workers::prepare`], [`Workers::reason`], [`Workers::retrieve`],
//! [`Workers::explain`]), each run on its own thread by [`super::run`] and connected by
//! bounded channels, and what they share: the tally, the LLM's turn, the failure record.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use recgpt_data::{History, Store, TimeWindow};
use tokio::sync::mpsc;

use super::{Counter, JobError, JobOptions, JobSummary, Progress, Selection};
use crate::compress::{Compressor, Narrative};
use crate::config::JobConfig;
use crate::explain::keys::InterestKeys;
use crate::explain::ExplainCounts;
use crate::llm::{LlmBackend, TokenCount, TokenUse};
use crate::reason::UserReasoning;
use crate::recommend::{Fingerprints, Recommender, Retrieved, RunInputs};
use crate::results::{Failure, ResultStore, ResultsError};

/// A user ready for the LLM.
pub(super) struct Work {
    history: History,
    narrative: Narrative,
    fingerprints: Fingerprints,
    /// The stored interests and tags, when their inputs are unchanged.
    reasoning: Option<UserReasoning>,
}

/// A group of reasoned users on its way to retrieval.
pub(super) type Reasoned = Vec<(Work, UserReasoning)>;

/// What the workers of one run share.
pub(super) struct Workers<'a, T: TokenCount + Sync> {
    pub recommender: &'a Recommender<'a>,
    pub llm: &'a dyn LlmBackend,
    pub store: &'a Store,
    pub window: &'a TimeWindow,
    pub compressor: &'a Compressor<'a, T>,
    pub config: &'a JobConfig,
    pub options: &'a JobOptions,
    pub progress: &'a dyn Progress,
    pub stop: &'a AtomicBool,
    /// What every user's fingerprint depends on besides the narrative.
    pub inputs: RunInputs,
    /// Users per LLM group.
    pub group: usize,
    pub tally: Mutex<JobSummary>,
    /// The one backend, taken in turns by `reason` and `explain`.
    pub llm_turn: Mutex<()>,
}

impl<T: TokenCount + Sync> Workers<'_, T> {
    fn results(&self) -> &ResultStore {
        self.recommender.results
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, JobSummary> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a user's failure (stored, counted, logged).
    fn fail(
        &self,
        user: &str,
        fingerprint: &str,
        stage: &str,
        reason: String,
    ) -> Result<(), ResultsError> {
        let failure = Failure {
            user: user.to_string(),
            fingerprint: fingerprint.to_string(),
            stage: stage.to_string(),
            reason,
        };
        tracing::warn!(user, stage, reason = %failure.reason, "user failed");
        let stored = self.results().put_failure(&failure);
        let mut t = self.tally();
        t.failed += 1;
        t.failures.push(failure);
        self.progress.add(Counter::Finished, 1);
        stored
    }

    /// Adds the time since `since` to `stage`'s busy seconds.
    fn busy(&self, stage: &str, since: Instant) {
        *self
            .tally()
            .stage_seconds
            .entry(stage.to_string())
            .or_default() += since.elapsed().as_secs_f64();
    }

    /// Attempts of an LLM call for `users` users: a lone user gets `job.attempts`; a group one
    /// (its users are then retried one by one).
    fn attempts(&self, users: usize) -> usize {
        if users == 1 {
            self.config.attempts.max(1)
        } else {
            1
        }
    }

    /// Adds an LLM call's time to its stage and to the LLM's busy time.
    fn llm_time(&self, stage: &str, t0: Instant) {
        let seconds = t0.elapsed().as_secs_f64();
        let mut t = self.tally();
        *t.stage_seconds.entry(stage.to_string()).or_default() += seconds;
        t.llm_seconds += seconds;
    }

    fn add_tokens(&self, tokens: TokenUse) {
        self.tally().tokens.merge(&tokens);
    }

    fn add_explain(&self, counts: &ExplainCounts) {
        let mut t = self.tally();
        t.tokens.merge(&counts.tokens);
        t.explain.add(counts);
    }

    /// Selects, compresses, fingerprints and skips; sends the users left to `reason`.
    pub fn prepare(&self, to_reason: mpsc::Sender<Work>) -> Result<(), JobError> {
        let mut visit = |history: History| self.prepare_user(history, &to_reason);
        match &self.options.selection {
            Selection::All => self.store.for_each_history(self.window, &mut visit),
            Selection::First(n) => {
                let mut left = *n;
                let mut first = |h: History| {
                    if left == 0 {
                        return Ok(());
                    }
                    left -= 1;
                    visit(h)
                };
                self.store.for_each_history(self.window, &mut first)
            }
            Selection::Users(users) => {
                let mut seen = HashSet::new();
                for user in users.iter().filter(|u| seen.insert(u.as_str())) {
                    let history = self.store.history(user, self.window)?;
                    if history.events.is_empty() {
                        self.tally().no_history += 1;
                        continue;
                    }
                    visit(history)?;
                }
                Ok(())
            }
        }
    }

    fn prepare_user(
        &self,
        history: History,
        to_reason: &mpsc::Sender<Work>,
    ) -> Result<(), JobError> {
        let options = self.options;
        if self.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let user = history.user.clone();
        if options.shard.is_some_and(|s| !s.contains(&user)) {
            return Ok(());
        }
        let t0 = Instant::now();
        let narrative = self.compressor.compress(&history, self.window);
        let fps = self.inputs.fingerprints(&narrative);
        let fp = &fps.result;
        self.busy("prepare", t0);
        // one primary-key lookup each, so start-up and memory do not grow with the store
        let results = self.results();
        let failed = results.failure(&user)?.map(|f| f.fingerprint);
        let stored = match options.retry_failed || options.force {
            true => None,
            false => results.fingerprint(&user)?,
        };
        let skip = {
            let mut s = self.tally();
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
        self.progress.add(Counter::Queued, 1);
        let work = Work {
            history,
            narrative,
            fingerprints: fps,
            reasoning,
        };
        // a closed channel means a later stage ended (an error): stop reading
        to_reason.blocking_send(work).map_err(|_| JobError::Closed)
    }

    /// Full groups through interests and tags; users whose reasoning was kept go straight on.
    pub fn reason(
        &self,
        mut reason_in: mpsc::Receiver<Work>,
        to_retrieve: mpsc::Sender<Reasoned>,
    ) -> Result<(), JobError> {
        while let Some(batch) = recv_group(&mut reason_in, self.group) {
            if self.stop.load(Ordering::Relaxed) {
                // stopping: the groups already reasoned finish, queued users wait
                self.tally().interrupted += batch.len();
                continue;
            }
            let (kept, batch): (Vec<Work>, Vec<Work>) =
                batch.into_iter().partition(|w| w.reasoning.is_some());
            let mut reasoned: Reasoned = kept
                .into_iter()
                .filter_map(|mut w| w.reasoning.take().map(|r| (w, r)))
                .collect();
            self.progress.add(Counter::Reasoned, reasoned.len() as u64);
            self.tally().reasoning_reused += reasoned.len();
            let mut pending = if batch.is_empty() {
                vec![]
            } else {
                vec![batch]
            };
            while let Some(works) = pending.pop() {
                if let Some(split) = self.reason_group(works, &mut reasoned)? {
                    pending.extend(split.into_iter().rev().map(|w| vec![w]));
                }
            }
            if !reasoned.is_empty() && to_retrieve.blocking_send(reasoned).is_err() {
                return Err(JobError::Closed);
            }
        }
        Ok(())
    }

    /// Reasons for one group into `reasoned`; a group call that failed gives its users back,
    /// to be retried one by one.
    fn reason_group(
        &self,
        works: Vec<Work>,
        reasoned: &mut Reasoned,
    ) -> Result<Option<Vec<Work>>, JobError> {
        let users: Vec<_> = works.iter().map(|w| (&w.history, &w.narrative)).collect();
        let outcome = on_llm(
            &self.llm_turn,
            self.attempts(works.len()),
            |t0| self.llm_time("reason", t0),
            || self.recommender.reasoner.run(self.llm, &users),
        );
        match outcome {
            Ok((reasoning, tokens)) => {
                self.add_tokens(tokens);
                for (work, r) in works.into_iter().zip(reasoning) {
                    let counts = &r.interests.counts;
                    if counts.answers > 0 && counts.unparsable == counts.answers {
                        let reason = format!(
                            "invalid output: none of {} interests answers parsed",
                            counts.answers
                        );
                        let (user, fingerprint) = (&work.history.user, &work.fingerprints.result);
                        self.fail(user, fingerprint, "reason", reason)?;
                        continue;
                    }
                    self.progress.add(Counter::Reasoned, 1);
                    reasoned.push((work, r));
                }
                Ok(None)
            }
            Err(_) if works.len() > 1 => Ok(Some(works)),
            Err(e) => {
                let w = &works[0];
                let reason = e.map_or_else(String::new, |e| e.to_string());
                self.fail(&w.history.user, &w.fingerprints.result, "reason", reason)?;
                Ok(None)
            }
        }
    }

    /// Towers and index for each reasoned user, while the LLM works on the next group.
    pub fn retrieve(
        &self,
        mut retrieve_in: mpsc::Receiver<Reasoned>,
        to_explain: mpsc::Sender<Vec<Retrieved>>,
    ) -> Result<(), JobError> {
        while let Some(batch) = retrieve_in.blocking_recv() {
            let mut retrieved = Vec::with_capacity(batch.len());
            for (work, reasoning) in batch {
                let t0 = Instant::now();
                let found = self
                    .recommender
                    .retrieve(&work.history, &work.narrative, &reasoning);
                self.busy("retrieve", t0);
                match found {
                    Ok(found) => {
                        self.progress.add(Counter::Retrieved, 1);
                        retrieved.push(Retrieved {
                            user: work.history.user,
                            as_of: work.narrative.as_of,
                            fingerprints: work.fingerprints,
                            reasoning,
                            found,
                        });
                    }
                    Err(e) => self.fail(
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
    }

    /// Explains a group's pairs in one call and stores each user's result.
    pub fn explain(
        &self,
        mut explain_in: mpsc::Receiver<Vec<Retrieved>>,
        mut keys: InterestKeys,
    ) -> Result<(), JobError> {
        while let Some(batch) = explain_in.blocking_recv() {
            let mut pending = vec![batch];
            while let Some(users) = pending.pop() {
                let single = users.len() == 1;
                let outcome = on_llm(
                    &self.llm_turn,
                    self.attempts(users.len()),
                    |t0| self.llm_time("explain", t0),
                    || self.recommender.explain(self.llm, &mut keys, users.clone()),
                );
                match outcome {
                    Ok((out, counts)) => {
                        self.add_explain(&counts);
                        for result in &out {
                            self.results().put_user(result)?;
                            self.tally().done += 1;
                            self.progress.add(Counter::Finished, 1);
                        }
                    }
                    Err(_) if !single => {
                        pending.extend(users.into_iter().rev().map(|u| vec![u]));
                    }
                    Err(e) => {
                        let u = &users[0];
                        let reason = e.map_or_else(String::new, |e| e.to_string());
                        self.fail(&u.user, &u.fingerprints.result, "explain", reason)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A full group of `n` items, fewer when the channel closes first; `None` once it is closed
/// and empty.
pub(super) fn recv_group<T>(rx: &mut mpsc::Receiver<T>, n: usize) -> Option<Vec<T>> {
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
