//! `recgpt stats explanations`: how much the explanation cache is reused across the stored
//! users, and what it holds, for one prompt version and model.
//!
//! The figures come from the results store, not from one run, so they add up every run that
//! wrote to it (a job resumed many times, or shards). A user counts when every explained
//! recommendation of theirs has its (interest key, item) pair in the cache under the version
//! and model; results written under another version or model are left out and counted.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::results::{Explanation, ResultStore, ResultsError};

/// Cache reuse over the stored users, and the cache's rows, for one version and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
        results: &ResultStore,
        prompt_version: &str,
        model_id: &str,
    ) -> Result<Self, ResultsError> {
        let mut s = Self {
            prompt_version: prompt_version.to_string(),
            model_id: model_id.to_string(),
            ..Self::default()
        };
        let mut cached = HashSet::new();
        results.for_each_explanation(prompt_version, model_id, |e: Explanation| {
            s.add_row(&e);
            cached.insert((e.key.interest_key, e.key.item));
            Ok::<_, ResultsError>(())
        })?;
        let mut seen = HashSet::new();
        let mut next_mark = 10;
        results.for_each_user(|user| {
            let pairs: Vec<(String, String)> = user
                .recommendations
                .iter()
                .filter(|r| r.explanation.is_some())
                .filter_map(|r| Some((r.interest_key.clone()?, r.item.clone())))
                .collect();
            if !pairs.iter().all(|p| cached.contains(p)) {
                s.other_users += 1;
                return Ok::<_, ResultsError>(());
            }
            s.users += 1;
            s.pairs += pairs.len();
            seen.extend(pairs);
            if s.users == next_mark {
                s.curve.push((s.users, reuse(s.pairs, seen.len())));
                next_mark *= 10;
            }
            Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{ExplanationKey, Recommendation, UserResult};

    fn explanation(
        key: &str,
        item: &str,
        version: &str,
        source: &str,
        rejected: &[&str],
    ) -> Explanation {
        Explanation {
            key: ExplanationKey {
                interest_key: key.into(),
                item: item.into(),
                prompt_version: version.into(),
                model_id: "m".into(),
            },
            interest: key.into(),
            text: "You like it.".into(),
            source: source.into(),
            rejected: rejected.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn user(id: &str, pairs: &[(&str, &str)]) -> UserResult {
        let mut r = UserResult::empty(id, "f");
        r.recommendations = pairs
            .iter()
            .map(|(key, item)| Recommendation {
                item: item.to_string(),
                title: String::new(),
                category: None,
                score: 0.0,
                tag: None,
                channel: "llm".into(),
                interest: Some(key.to_string()),
                interest_key: Some(key.to_string()),
                explanation: Some("You like it.".into()),
                explanation_source: Some("model".into()),
            })
            .collect();
        r
    }

    #[test]
    fn repeated_pairs_are_reuse_and_other_versions_are_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ResultStore::open(dir.path()).expect("store");
        for e in [
            explanation("tea", "1", "v2", "model", &[]),
            explanation("tea", "2", "v2", "fallback", &["too_long", "ungrounded"]),
            explanation("mugs", "1", "v2", "model", &["too_long"]),
            explanation("old", "9", "v1", "model", &[]),
        ] {
            store.put_explanation(&e).expect("put explanation");
        }
        store
            .put_user(&user("a", &[("tea", "1"), ("tea", "2")]))
            .expect("put a");
        store
            .put_user(&user("b", &[("tea", "1"), ("mugs", "1")]))
            .expect("put b");
        store.put_user(&user("c", &[("old", "9")])).expect("put c");

        let s = CacheReuse::measure(&store, "v2", "m").expect("measure");
        assert_eq!((s.users, s.other_users), (2, 1));
        assert_eq!((s.pairs, s.distinct), (4, 3));
        assert!((s.reuse - 0.25).abs() < 1e-9);
        assert_eq!(s.curve, vec![(2, s.reuse)]);
        assert_eq!((s.cached, s.model, s.fallback, s.answers), (3, 2, 1, 5));
        assert_eq!(s.rejected.get("too_long"), Some(&2));
        assert_eq!(s.rejected.get("ungrounded"), Some(&1));
    }
}
