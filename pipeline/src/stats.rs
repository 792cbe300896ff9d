//! `recgpt stats narratives`: how well compression fits histories into the budget, compared
//! with the uncompressed history, and how much of what users buy next their narrative already
//! mentions (retention).

use std::collections::HashSet;

use chrono::{Datelike, Months, NaiveDate};
use recgpt_data::{BehaviorKind, DataError, History, ItemIx, Store, TimeWindow, Timestamp};
use serde::Serialize;

use crate::compress::{CompressConfig, Compressor, Summarised};
use crate::llm::TokenCount;

/// Fit rate and token percentiles of a set of texts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenStats {
    pub fit_rate: f64,
    pub p50: usize,
    pub p95: usize,
    pub max: usize,
    pub mean: f64,
}

impl TokenStats {
    fn of(mut tokens: Vec<usize>, budget: usize) -> Self {
        tokens.sort_unstable();
        let n = tokens.len().max(1);
        Self {
            fit_rate: tokens.iter().filter(|&&t| t <= budget).count() as f64 / n as f64,
            p50: percentile(&tokens, 0.50),
            p95: percentile(&tokens, 0.95),
            max: tokens.last().copied().unwrap_or(0),
            mean: tokens.iter().sum::<usize>() as f64 / n as f64,
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[usize], p: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Share of users' next purchases already mentioned before a split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retention {
    pub split: NaiveDate,
    /// Users with events before the split and purchases after it.
    pub users: u64,
    /// Mean over users of the share of their post-split purchased items that the pre-split
    /// narrative mentions.
    pub narrative: f64,
    /// The same share over all (user, item) pairs.
    pub narrative_pairs: f64,
    /// Upper bound: the share found anywhere in the pre-split history.
    pub history: f64,
    pub history_pairs: f64,
}

/// The report of `recgpt stats narratives`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NarrativeStats {
    pub budget: usize,
    pub as_of: NaiveDate,
    pub until: Option<Timestamp>,
    pub users: u64,
    pub events: u64,
    /// The whole compressed history, before anything is dropped to fit: its fit rate is the
    /// share of users whose compressed history fits the budget as is.
    pub compressed: TokenStats,
    /// One line per event, for comparison.
    pub uncompressed: TokenStats,
    /// The narratives as served, after dropping to fit (every one within the budget).
    pub narratives: TokenStats,
    pub users_with_drops: u64,
    pub events_dropped: u64,
    pub low_signal_events_dropped: u64,
    /// Share of users whose narrative cut no reliable event (summarised repeats and coarser
    /// time buckets still mention everything): fit without cutting.
    pub uncut: f64,
    /// Users whose narrative summarised repeats or coarsened time to fit.
    pub users_summarised: u64,
    pub retention: Retention,
    /// Retention by decile of history length (events before the split), shortest first.
    pub retention_by_decile: Vec<DecileRetention>,
}

/// Retention of the users in one decile of history length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecileRetention {
    /// 1 (shortest histories) to 10.
    pub decile: usize,
    pub users: usize,
    /// Fewest and most events before the split in the decile.
    pub events_min: usize,
    pub events_max: usize,
    /// Mean share of next purchases the narrative mentions, and its bound (the whole history).
    pub narrative: f64,
    pub history: f64,
}

/// Deciles of `(history length, narrative share, history share)` per user, by length.
fn deciles(mut users: Vec<(usize, f64, f64)>) -> Vec<DecileRetention> {
    users.sort_by_key(|u| u.0);
    let n = users.len();
    (0..10)
        .filter_map(|d| {
            let part = &users[d * n / 10..(d + 1) * n / 10];
            if part.is_empty() {
                return None;
            }
            let len = part.len() as f64;
            Some(DecileRetention {
                decile: d + 1,
                users: part.len(),
                events_min: part[0].0,
                events_max: part[part.len() - 1].0,
                narrative: part.iter().map(|u| u.1).sum::<f64>() / len,
                history: part.iter().map(|u| u.2).sum::<f64>() / len,
            })
        })
        .collect()
}

/// The default split for retention: the first day of the month before the last visible
/// event's month (2011-11-01 for Online Retail).
pub fn default_split(store: &Store, window: &TimeWindow) -> NaiveDate {
    let last = window
        .until
        .map_or(store.manifest().last_event, |u| Timestamp(u.0 - 1))
        .date();
    last.with_day(1).expect("day 1") - Months::new(1)
}

/// Computes the statistics over every user with events in `window`.
pub fn narrative_stats<T: TokenCount>(
    store: &Store,
    compressor: &Compressor<'_, T>,
    window: &TimeWindow,
    split: NaiveDate,
) -> Result<NarrativeStats, DataError> {
    let budget = compressor.config().budget;
    let unbounded = Compressor::new(
        store.catalog(),
        CompressConfig {
            budget: usize::MAX,
            ..compressor.config().clone()
        },
        compressor.counter(),
    );
    let (mut compressed, mut raw, mut served) = (Vec::new(), Vec::new(), Vec::new());
    let (mut users, mut events, mut with_drops, mut dropped, mut low) = (0u64, 0u64, 0, 0, 0);
    let (mut uncut, mut summarised) = (0u64, 0u64);
    let mut per_user: Vec<(usize, f64, f64)> = Vec::new();
    let mut ret = RetentionSums::default();
    let split_window = TimeWindow {
        until: Some(Timestamp::from_date(split)),
        as_of: split,
    };
    store.for_each_history(window, |history: History| {
        let narrative = compressor.compress(&history, window);
        users += 1;
        events += narrative.events;
        served.push(narrative.tokens);
        compressed.push(unbounded.compress(&history, window).tokens);
        raw.push(compressor.raw_tokens(&history));
        if !narrative.dropped.is_empty() {
            with_drops += 1;
        }
        uncut += u64::from(narrative.uncut());
        summarised += u64::from(narrative.summarised != Summarised::default());
        dropped += narrative.dropped.events;
        low += narrative.dropped.low_signal_events;

        let cut = history
            .events
            .partition_point(|e| e.at < split_window.until.unwrap());
        let after: HashSet<ItemIx> = history.events[cut..]
            .iter()
            .filter(|e| e.kind == BehaviorKind::Purchase)
            .filter_map(|e| e.item)
            .collect();
        if cut > 0 && !after.is_empty() {
            let before = History {
                user: history.user.clone(),
                events: history.events[..cut].to_vec(),
            };
            let seen: HashSet<ItemIx> = before.events.iter().filter_map(|e| e.item).collect();
            let mentioned = compressor.compress(&before, &split_window).items;
            let (n, h) = ret.add(
                &after,
                |ix| mentioned.binary_search(&ix).is_ok(),
                |ix| seen.contains(&ix),
            );
            per_user.push((cut, n, h));
        }
        Ok::<_, DataError>(())
    })?;
    Ok(NarrativeStats {
        budget,
        as_of: window.as_of,
        until: window.until,
        users,
        events,
        compressed: TokenStats::of(compressed, budget),
        uncompressed: TokenStats::of(raw, budget),
        narratives: TokenStats::of(served, budget),
        users_with_drops: with_drops,
        events_dropped: dropped,
        low_signal_events_dropped: low,
        uncut: uncut as f64 / users.max(1) as f64,
        users_summarised: summarised,
        retention: ret.finish(split),
        retention_by_decile: deciles(per_user),
    })
}

#[derive(Default)]
struct RetentionSums {
    users: u64,
    narrative_share: f64,
    history_share: f64,
    pairs: u64,
    narrative_pairs: u64,
    history_pairs: u64,
}

impl RetentionSums {
    fn add(
        &mut self,
        targets: &HashSet<ItemIx>,
        in_narrative: impl Fn(ItemIx) -> bool,
        in_history: impl Fn(ItemIx) -> bool,
    ) -> (f64, f64) {
        let n = targets.iter().filter(|&&ix| in_narrative(ix)).count() as u64;
        let h = targets.iter().filter(|&&ix| in_history(ix)).count() as u64;
        let len = targets.len() as u64;
        let shares = (n as f64 / len as f64, h as f64 / len as f64);
        self.users += 1;
        self.narrative_share += shares.0;
        self.history_share += shares.1;
        self.pairs += len;
        self.narrative_pairs += n;
        self.history_pairs += h;
        shares
    }

    fn finish(self, split: NaiveDate) -> Retention {
        let div = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
        Retention {
            split,
            users: self.users,
            narrative: div(self.narrative_share, self.users),
            narrative_pairs: div(self.narrative_pairs as f64, self.pairs),
            history: div(self.history_share, self.users),
            history_pairs: div(self.history_pairs as f64, self.pairs),
        }
    }
}

/// A user's activity in a window: events, first and last day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserActivity {
    pub user: String,
    pub events: usize,
    pub first: String,
    pub last: String,
}

/// Every user with an event in `window`, most active first (ties in user-id order).
pub fn activity(store: &Store, window: &TimeWindow) -> Result<Vec<UserActivity>, DataError> {
    let mut rows = Vec::new();
    store.for_each_history(window, |h: History| {
        rows.push(UserActivity {
            events: h.events.len(),
            first: h.events[0].at.to_string(),
            last: h.events[h.events.len() - 1].at.to_string(),
            user: h.user,
        });
        Ok::<_, DataError>(())
    })?;
    rows.sort_by(|a, b| b.events.cmp(&a.events).then(a.user.cmp(&b.user)));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<usize> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.95), 95);
        assert_eq!(percentile(&[7], 0.95), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        let s = TokenStats::of(vec![10, 30, 20], 20);
        // 20 users of lengths 1..=20: two per decile, shortest first
        let d = deciles((1..=20).rev().map(|n| (n, 0.5, 1.0)).collect());
        assert_eq!(d.len(), 10);
        assert_eq!((d[0].events_min, d[0].events_max, d[0].users), (1, 2, 2));
        assert_eq!((d[9].events_min, d[9].events_max), (19, 20));
        assert!(d.iter().all(|d| d.narrative == 0.5 && d.history == 1.0));
        assert!(
            deciles(vec![(3, 0.0, 0.0)]).len() == 1,
            "one user: one decile"
        );
        assert!((s.fit_rate - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((s.p50, s.max), (20, 30));
    }
}
