//! `recgpt stats explanations`: how much the explanation cache is reused across the stored
//! users, and what it holds, for one prompt version and model.
//!
//! The figures come from the store, not from one run, so they add up every run that
//! wrote to it (a job resumed many times, or shards). A user counts when every explained
//! recommendation of theirs has its (interest key, item) pair in the cache under the version
//! and model; results written under another version or model are left out and counted.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{Explanation, ExplanationStore, StoreError};

/// Cache reuse over the stored users, and the cache's rows, for one version and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheReuse {
    pub prompt_version: String,
    pub model_id: String,
    /// Users counted (every explained recommendation's pair cached under the version).
    pub users: usize,
    /// Stored users left out: a pair not cached under this version and model.
    pub other_users: usize,
    /// Explained recommendations of the users counted: the cache lookups of their runs.
    pub pairs: usize,
    /// Distinct (interest key, item) pairs among them: the generations a run over these users
    /// that starts with an empty cache needs.
    pub distinct: usize,
    /// `1 − distinct ÷ pairs`: the share of lookups served without a generation (the hit rate
    /// of a run over these users in user-id order that starts with an empty cache).
    pub reuse: f64,
    /// `(users, reuse)` over the first 10, 100, 1,000, … users in id order, and all of them.
    pub curve: Vec<(usize, f64)>,
    /// Cache rows under the version and model.
    pub cached: usize,
    /// Rows whose text the model wrote.
    pub model: usize,
    /// Rows whose text is the labelled template (every model answer rejected).
    pub fallback: usize,
    /// Model answers behind the rows (accepted and rejected).
    pub answers: usize,
    /// Rejected answers by rule.
    pub rejected: BTreeMap<String, usize>,
}

impl CacheReuse {
    /// Reads the store: the cache rows under `prompt_version` and `model_id`, then every
    /// stored user in id order.
    pub fn measure(
        store: &dyn ExplanationStore,
        prompt_version: &str,
        model_id: &str,
    ) -> Result<Self, StoreError> {
        let mut s = Self {
            prompt_version: prompt_version.to_string(),
            model_id: model_id.to_string(),
            ..Self::default()
        };
        let mut cached = HashSet::new();
        store.for_each_explanation(prompt_version, model_id, &mut |e: Explanation| {
            s.add_row(&e);
            cached.insert((e.key.interest_key, e.key.item));
        })?;
        let mut seen = HashSet::new();
        let mut next_mark = 10;
        store.for_each_explained_user(&mut |pairs| {
            if !pairs.iter().all(|p| cached.contains(p)) {
                s.other_users += 1;
                return;
            }
            s.users += 1;
            s.pairs += pairs.len();
            seen.extend(pairs);
            if s.users == next_mark {
                s.curve.push((s.users, reuse(s.pairs, seen.len())));
                next_mark *= 10;
            }
        })?;
        s.distinct = seen.len();
        s.reuse = reuse(s.pairs, s.distinct);
        if s.curve.last().map(|&(n, _)| n) != Some(s.users) {
            s.curve.push((s.users, s.reuse));
        }
        Ok(s)
    }

    fn add_row(&mut self, e: &Explanation) {
        self.cached += 1;
        let accepted = match e.source.as_str() {
            "model" => {
                self.model += 1;
                1
            }
            _ => {
                self.fallback += 1;
                0
            }
        };
        self.answers += accepted + e.rejected.len();
        for rule in &e.rejected {
            *self.rejected.entry(rule.clone()).or_default() += 1;
        }
    }
}

/// Share of `pairs` lookups served without a generation when `distinct` pairs were generated.
fn reuse(pairs: usize, distinct: usize) -> f64 {
    match pairs {
        0 => 0.0,
        n => 1.0 - distinct as f64 / n as f64,
    }
}
