//! Scoring a list of tags against a user's next purchases: tag hit rate@k through the tag
//! tower, tag HR@N by category; the popular baselines.

use std::collections::{BTreeMap, HashSet};

use recgpt_data::ItemIx;
use recgpt_retrieval::embed::{Embedder, DIM};
use recgpt_retrieval::interactions::{Interactions, UserItems};
use recgpt_retrieval::metrics::top_k;
use recgpt_retrieval::tower::TowerModel;
use serde::{Deserialize, Serialize};

use super::*;

/// One user's score for one list of tags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TagScore {
    pub tags: usize,
    /// Share of the next items some tag retrieves in its top k.
    pub hit_rate: f64,
    /// The same over items new to the user (`None` without any).
    pub hit_rate_new: Option<f64>,
    /// Whether the first next item's category is among the first N tags' categories.
    pub hr_at_n: bool,
}

/// Scores lists of tags through a trained three-tower model.
pub struct TagScorer<'a> {
    pub model: &'a TowerModel,
    pub embedder: &'a Embedder,
    pub prepared: &'a Prepared,
    /// Items per tag.
    pub k: usize,
    /// Tags whose categories count in HR@N.
    pub n: usize,
}

impl std::fmt::Debug for TagScorer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagScorer")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

/// Tags as text embeddings (or already embedded).
#[derive(Debug)]
pub enum TagTexts<'t> {
    Texts(&'t [String]),
    Embedded(Vec<[f32; DIM]>),
}

impl TagScorer<'_> {
    /// The score of `tags` for a user who bought `before` and then `after`.
    pub fn score(
        &self,
        tags: TagTexts<'_>,
        before: &UserItems,
        after: &UserItems,
    ) -> Result<TagScore, QualityError> {
        let embedded = match tags {
            TagTexts::Texts(texts) => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                self.embedder.embed(&refs)?
            }
            TagTexts::Embedded(v) => v,
        };
        let vectors = self.model.tag_vectors(&embedded)?;
        let none = HashSet::new();
        let mut scores = vec![0f32; self.model.item_vectors.len()];
        let mut found: HashSet<ItemIx> = HashSet::new();
        for v in &vectors {
            for (s, item) in scores.iter_mut().zip(&self.model.item_vectors) {
                *s = item.iter().zip(v).map(|(a, b)| a * b).sum();
            }
            found.extend(top_k(&scores, self.k, &none));
        }
        let share = |items: &[ItemIx]| -> f64 {
            items.iter().filter(|i| found.contains(i)).count() as f64 / items.len().max(1) as f64
        };
        let history: HashSet<ItemIx> = before.bought.iter().copied().collect();
        let new: Vec<ItemIx> = after
            .bought
            .iter()
            .copied()
            .filter(|i| !history.contains(i))
            .collect();
        // `bought` is most recent first: the first item after the split is the last one
        let next_category = after
            .bought
            .last()
            .map(|&i| self.prepared.features.category[i as usize]);
        let categories: HashSet<u32> = embedded
            .iter()
            .take(self.n)
            .map(|e| self.prepared.categories.nearest(e) as u32)
            .collect();
        Ok(TagScore {
            tags: embedded.len(),
            hit_rate: share(&after.bought),
            hit_rate_new: (!new.is_empty()).then(|| share(&new)),
            hr_at_n: next_category.is_some_and(|c| categories.contains(&c)),
        })
    }
}

/// The `n` title tags bought most before the split (each purchase of an item counts its core
/// title tag once), as tag ids of `prepared.item_tags`.
pub fn popular_tags(prepared: &Prepared, before: &Interactions, n: usize) -> Vec<u32> {
    most_bought(before, n, |i| {
        prepared.item_tags.of_item[i as usize].last().copied()
    })
}

/// The `n` categories bought most before the split.
pub fn popular_categories(prepared: &Prepared, before: &Interactions, n: usize) -> HashSet<u32> {
    most_bought(before, n, |i| Some(prepared.features.category[i as usize]))
        .into_iter()
        .collect()
}

/// The `n` keys (`key_of` an item) bought most, most first (ties by key).
fn most_bought(
    before: &Interactions,
    n: usize,
    key_of: impl Fn(ItemIx) -> Option<u32>,
) -> Vec<u32> {
    let mut count: BTreeMap<u32, u32> = BTreeMap::new();
    for &i in before.users.iter().flat_map(|u| &u.bought) {
        if let Some(key) = key_of(i) {
            *count.entry(key).or_default() += 1;
        }
    }
    let mut ranked: Vec<(u32, u32)> = count.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.into_iter().take(n).map(|(key, _)| key).collect()
}
