//! Multi-channel retrieval: weighted reciprocal-rank fusion of scorers (Cormack, Clarke and
//! Büttcher 2009). Each channel ranks the catalog; an item's fused score is
//! Σ_c w_c / (k0 + rank_c(item)) over the channels whose first `depth` items hold it, and the
//! channel that gave it most is its label. Each channel contributes `depth` items beyond the
//! user's history, so a ranking that leaves the history out still has `depth` fused items.

use std::collections::{HashMap, HashSet};

use recgpt_data::ItemIx;
use serde::{Deserialize, Serialize};

use crate::baselines::Scorer;
use crate::interactions::UserItems;
use crate::metrics::top_k;

/// Fusion settings. The defaults were chosen on the dev split 2011-10-01 (24 users, the
/// sweep of `recgpt eval llm --sweep`): of the weights with an LLM channel, the one with the
/// best Recall-new@50 whose Recall@50 stays within 0.01 of CF alone (README: The LLM channel
/// against EASE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FusionConfig {
    /// Weight of the collaborative-filtering channel (EASE, or sparse item-kNN on catalogs
    /// above `eval.ease_max_items`).
    pub cf: f32,
    /// Weight of the user-tower channel.
    pub user: f32,
    /// Weight of the LLM-tag channel.
    pub llm: f32,
    /// Items of each channel's ranking that take part, beyond the user's history.
    pub depth: usize,
    /// The rank offset: larger flattens the difference between first and later ranks.
    pub k0: f32,
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self {
            cf: 1.0,
            user: 0.0,
            llm: 0.25,
            depth: 200,
            k0: 60.0,
        }
    }
}

/// An item of a fused list: its fused score and the channel (index into the lists) whose
/// term was largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fused {
    pub item: ItemIx,
    pub score: f32,
    pub channel: usize,
}

/// Weighted reciprocal-rank fusion of ranked lists (best first, each with its weight): an
/// item's score is Σ w / (k0 + rank), rank counted from 1 in each list that holds it. Best
/// first; ties go to the lower item index. Lists of weight 0 add nothing.
pub fn reciprocal_rank(lists: &[(Vec<ItemIx>, f32)], k0: f32) -> Vec<Fused> {
    let mut by_item: HashMap<ItemIx, (f32, f32, usize)> = HashMap::new();
    for (c, (list, weight)) in lists.iter().enumerate() {
        if *weight <= 0.0 {
            continue;
        }
        for (rank, item) in list.iter().enumerate() {
            let term = weight / (k0 + rank as f32 + 1.0);
            let e = by_item.entry(*item).or_insert((0.0, 0.0, c));
            e.0 += term;
            if term > e.1 {
                (e.1, e.2) = (term, c);
            }
        }
    }
    let mut out: Vec<Fused> = by_item
        .into_iter()
        .map(|(item, (score, _, channel))| Fused {
            item,
            score,
            channel,
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    out
}

/// Scorers fused by weighted reciprocal rank.
pub struct Fusion<'a> {
    name: String,
    channels: Vec<(&'a dyn Scorer, f32)>,
    depth: usize,
    k0: f32,
}

impl std::fmt::Debug for Fusion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channels: Vec<(&str, f32)> =
            self.channels.iter().map(|(s, w)| (s.name(), *w)).collect();
        f.debug_struct("Fusion")
            .field("name", &self.name)
            .field("channels", &channels)
            .field("depth", &self.depth)
            .finish()
    }
}

impl<'a> Fusion<'a> {
    /// Channels with a weight of 0 are left out.
    pub fn new(
        name: impl Into<String>,
        channels: &[(&'a dyn Scorer, f32)],
        depth: usize,
        k0: f32,
    ) -> Self {
        Self {
            name: name.into(),
            channels: channels.iter().copied().filter(|(_, w)| *w > 0.0).collect(),
            depth,
            k0,
        }
    }

    /// Adds every channel's reciprocal-rank terms for `user` to `out` (zeroed first) and
    /// returns, per item that got any, the channel that gave it most.
    pub fn fuse(&self, user: &UserItems, out: &mut [f32]) -> Vec<(ItemIx, usize)> {
        let mut scores = vec![0f32; out.len()];
        let none = HashSet::new();
        let depth = self.depth + user.bought.len();
        let lists: Vec<(Vec<ItemIx>, f32)> = self
            .channels
            .iter()
            .map(|(scorer, weight)| {
                scorer.score(user, &mut scores);
                (top_k(&scores, depth, &none), *weight)
            })
            .collect();
        out.fill(0.0);
        let fused = reciprocal_rank(&lists, self.k0);
        for f in &fused {
            out[f.item as usize] = f.score;
        }
        let mut labels: Vec<(ItemIx, usize)> = fused.iter().map(|f| (f.item, f.channel)).collect();
        labels.sort_unstable();
        labels
    }

    /// The name of channel `c` (as [`Self::fuse`] numbers them).
    pub fn channel(&self, c: usize) -> &str {
        self.channels[c].0.name()
    }
}

impl Scorer for Fusion<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, user: &UserItems, out: &mut [f32]) {
        self.fuse(user, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranks items by a fixed score list.
    struct Fixed(&'static str, Vec<f32>);

    impl Scorer for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn score(&self, _: &UserItems, out: &mut [f32]) {
            out.copy_from_slice(&self.1);
        }
    }

    fn user() -> UserItems {
        UserItems {
            user: "u".into(),
            bought: vec![],
            returned: vec![],
        }
    }

    #[test]
    fn items_ranked_well_by_both_channels_come_first_and_carry_their_label() {
        let a = Fixed("a", vec![5.0, 4.0, 3.0, 0.0, 0.0]);
        let b = Fixed("b", vec![0.0, 4.0, 0.0, 5.0, 3.0]);
        let f = Fusion::new("f", &[(&a, 1.0), (&b, 1.0)], 3, 60.0);
        let mut out = vec![0.0; 5];
        let labels = f.fuse(&user(), &mut out);
        // item 1 is second in both: 2/62 beats 1/61
        assert!(out[1] > out[0] && out[1] > out[3], "{out:?}");
        assert!(out[0] == out[3], "first in one channel each: {out:?}");
        assert_eq!(
            f.channel(labels.iter().find(|(i, _)| *i == 3).unwrap().1),
            "b"
        );
        assert_eq!(
            f.channel(labels.iter().find(|(i, _)| *i == 0).unwrap().1),
            "a"
        );
        // depth 3: item 4 is b's third and a's absent; item 2 is a's third
        assert_eq!(out[2], out[4]);
    }

    #[test]
    fn ranked_lists_fuse_by_reciprocal_rank_with_the_largest_term_as_label() {
        let lists = vec![(vec![7, 3, 5], 1.0), (vec![3, 9], 2.0), (vec![7], 0.0)];
        let fused = reciprocal_rank(&lists, 60.0);
        let items: Vec<ItemIx> = fused.iter().map(|f| f.item).collect();
        // 3: 1/62 + 2/61; 9: 2/62; 7: 1/61 (its weight-0 list adds nothing); 5: 1/63
        assert_eq!(items, vec![3, 9, 7, 5]);
        assert!((fused[0].score - (1.0 / 62.0 + 2.0 / 61.0)).abs() < 1e-6);
        assert_eq!(fused[0].channel, 1);
        assert_eq!(fused[2].channel, 0);
    }

    #[test]
    fn weights_shift_the_list_and_zero_drops_a_channel() {
        let a = Fixed("a", vec![5.0, 0.0]);
        let b = Fixed("b", vec![0.0, 5.0]);
        let mut out = vec![0.0; 2];
        Fusion::new("f", &[(&a, 1.0), (&b, 2.0)], 1, 60.0).score(&user(), &mut out);
        assert!(out[1] > out[0]);
        let only_a = Fusion::new("f", &[(&a, 1.0), (&b, 0.0)], 1, 60.0);
        let labels = only_a.fuse(&user(), &mut out);
        assert_eq!(out[1], 0.0);
        assert_eq!(labels, vec![(0, 0)]);
    }
}
