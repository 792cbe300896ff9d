//! Per-user retrieval: one index query per tag (h = β·h_user + (1−β)·h_tag) and one for the
//! user alone, all sent as one batch, then merged.
//!
//! Fusion: an item's score is the best score any query gave it (max fusion); the item is
//! credited to that query, so every candidate keeps the tag that produced it (the explain
//! stage picks its interest through it). Ties go to the earlier query (the user query, then
//! tags in the order given). Scores of different queries are comparable because every query
//! and item vector has unit length.

use std::collections::HashMap;

use recgpt_data::ItemIx;
use serde::{Deserialize, Serialize};

use crate::index::{IndexError, SearchFilter, VectorIndex};
use crate::tower::TowerModel;

/// `[retrieve]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrieveConfig {
    /// Candidates per user after fusion.
    pub k: usize,
    /// Results asked of the index per query.
    pub per_query: usize,
    /// Leave out items the user bought in this many days before "now" (0: keep them; repeat
    /// purchases are common in wholesale data).
    pub exclude_bought_days: u32,
}

impl Default for RetrieveConfig {
    fn default() -> Self {
        Self {
            k: 50,
            per_query: 50,
            exclude_bought_days: 0,
        }
    }
}

/// A tag with its tag-tower vector.
#[derive(Debug, Clone, PartialEq)]
pub struct TagQuery {
    pub tag: String,
    pub vector: Vec<f32>,
}

/// A retrieved item and the query that found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub item: ItemIx,
    pub score: f32,
    /// The producing tag; `None` for the user query.
    pub tag: Option<String>,
}

/// The fused candidates of one user, best first.
pub fn retrieve(
    index: &dyn VectorIndex,
    model: &TowerModel,
    user: &[f32],
    tags: &[TagQuery],
    filter: &SearchFilter,
    config: &RetrieveConfig,
) -> Result<Vec<Candidate>, IndexError> {
    let mut queries = vec![user.to_vec()];
    queries.extend(tags.iter().map(|t| model.query(user, &t.vector)));
    let results = index.search(&queries, config.per_query, filter)?;
    let mut best: HashMap<ItemIx, (f32, usize)> = HashMap::new();
    for (q, hits) in results.iter().enumerate() {
        for h in hits {
            let e = best.entry(h.item).or_insert((h.score, q));
            if h.score > e.0 {
                *e = (h.score, q);
            }
        }
    }
    let mut out: Vec<Candidate> = best
        .into_iter()
        .map(|(item, (score, q))| Candidate {
            item,
            score,
            tag: (q > 0).then(|| tags[q - 1].tag.clone()),
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    out.truncate(config.k);
    Ok(out)
}
