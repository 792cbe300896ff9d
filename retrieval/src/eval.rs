//! The evaluation harness: every user who bought something on both sides of a time split,
//! scored against their purchases after it, with a full ranking over the whole catalog.
//!
//! For each method and K: Recall@K, NDCG@K and HR@K against the distinct items bought after
//! the split; the same on items new to the user (items bought before the split are taken
//! out of the ranking and of the truth; users with no new item are left out of those
//! means); catalog coverage (distinct items in anyone's top K ÷ catalog size); category
//! diversity of the top K (mean distinct categories and mean entropy in bits).

use std::collections::{BTreeSet, HashMap, HashSet};

use recgpt_data::ItemIx;
use serde::{Deserialize, Serialize};

use crate::baselines::Scorer;
use crate::interactions::{Interactions, UserItems};
use crate::metrics::{category_entropy, hit, ndcg, recall, top_k};
use crate::tower::{ItemFeatures, TowerError, TowerModel};

/// Metrics of one method at one K.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AtK {
    pub k: usize,
    pub recall: f64,
    pub ndcg: f64,
    pub hr: f64,
    pub recall_new: f64,
    pub ndcg_new: f64,
    pub hr_new: f64,
    pub coverage: f64,
    pub distinct_categories: f64,
    pub category_entropy: f64,
}

/// One method's row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodReport {
    pub method: String,
    pub at: Vec<AtK>,
}

/// The evaluation users and what they bought.
#[derive(Debug)]
pub struct EvalSet<'a> {
    /// (training side, test side) of every user present on both sides.
    pub users: Vec<(&'a UserItems, &'a UserItems)>,
}

impl<'a> EvalSet<'a> {
    pub fn new(train: &'a Interactions, test: &'a Interactions) -> Self {
        let users = test
            .users
            .iter()
            .filter_map(|t| train.position(&t.user).map(|p| (&train.users[p], t)))
            .collect();
        Self { users }
    }

    /// Users with at least one item after the split they had not bought before.
    pub fn users_with_new_items(&self) -> usize {
        self.users
            .iter()
            .filter(|(before, after)| after.bought.iter().any(|i| !before.bought.contains(i)))
            .count()
    }
}

/// Which items a ranking may hold and which count as found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Everything is ranked and a repeat purchase counts (Online Retail's reorders); the
    /// `_new` figures then rank without the user's history against the new items.
    #[default]
    Repeats,
    /// Items bought before the split are out of every ranking and of the truth
    /// (MovieLens-style data, where nothing is bought twice): both figure sets are the `_new`
    /// ones.
    ExcludeBought,
}

/// One user's figures at one K: the terms of [`AtK`]'s means.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserAtK {
    pub recall: f64,
    pub ndcg: f64,
    pub hr: f64,
    /// `None` for a user without a new item.
    pub recall_new: Option<f64>,
    pub ndcg_new: Option<f64>,
    pub hr_new: Option<f64>,
    pub distinct_categories: f64,
    pub category_entropy: f64,
}

/// One user's ranking and figures at every K.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEval {
    /// The first max(K) items of the ranking.
    pub top: Vec<ItemIx>,
    pub at: Vec<UserAtK>,
}

/// Scores `scorer` for every user of `set` at every K in `ks`, under `protocol`.
/// `category[i]` is item i's category.
pub fn evaluate_users(
    scorer: &dyn Scorer,
    set: &EvalSet<'_>,
    items: usize,
    category: &[u32],
    ks: &[usize],
    protocol: Protocol,
) -> Vec<UserEval> {
    let kmax = ks.iter().copied().max().unwrap_or(0);
    let mut scores = vec![0f32; items];
    let none = HashSet::new();
    set.users
        .iter()
        .map(|(before, after)| {
            scorer.score(before, &mut scores);
            let history: HashSet<ItemIx> = before.bought.iter().copied().collect();
            let new: HashSet<ItemIx> = after
                .bought
                .iter()
                .copied()
                .filter(|i| !history.contains(i))
                .collect();
            let top_new = if new.is_empty() {
                Vec::new()
            } else {
                top_k(&scores, kmax, &history)
            };
            let (top, truth) = match protocol {
                Protocol::Repeats => (
                    top_k(&scores, kmax, &none),
                    after.bought.iter().copied().collect(),
                ),
                Protocol::ExcludeBought => (top_new.clone(), new.clone()),
            };
            let at = ks
                .iter()
                .map(|&k| {
                    let top = &top[..k.min(top.len())];
                    let top_new = &top_new[..k.min(top_new.len())];
                    let new_figure = |f: fn(&[ItemIx], &HashSet<ItemIx>) -> f64| {
                        (!new.is_empty()).then(|| f(top_new, &new))
                    };
                    let cats: Vec<u32> = top.iter().map(|&i| category[i as usize]).collect();
                    UserAtK {
                        recall: recall(top, &truth),
                        ndcg: ndcg(top, &truth),
                        hr: hit(top, &truth),
                        recall_new: new_figure(recall),
                        ndcg_new: new_figure(ndcg),
                        hr_new: new_figure(hit),
                        distinct_categories: cats.iter().collect::<BTreeSet<_>>().len() as f64,
                        category_entropy: category_entropy(&cats),
                    }
                })
                .collect();
            UserEval { top, at }
        })
        .collect()
}

/// Scores `scorer` on `set` at every K in `ks`: the means of [`evaluate_users`] (the `_new`
/// ones over users with a new item), and catalog coverage.
pub fn evaluate(
    scorer: &dyn Scorer,
    set: &EvalSet<'_>,
    items: usize,
    category: &[u32],
    ks: &[usize],
) -> MethodReport {
    let users = evaluate_users(scorer, set, items, category, ks, Protocol::Repeats);
    let n = users.len().max(1) as f64;
    let at = ks
        .iter()
        .enumerate()
        .map(|(x, &k)| {
            let mean =
                |f: &dyn Fn(&UserAtK) -> f64| users.iter().map(|u| f(&u.at[x])).sum::<f64>() / n;
            let new: Vec<&UserAtK> = users
                .iter()
                .map(|u| &u.at[x])
                .filter(|a| a.recall_new.is_some())
                .collect();
            let mean_new = |f: &dyn Fn(&UserAtK) -> Option<f64>| {
                crate::metrics::mean(new.iter().filter_map(|a| f(a)))
            };
            let seen: HashSet<ItemIx> = users
                .iter()
                .flat_map(|u| u.top[..k.min(u.top.len())].iter().copied())
                .collect();
            AtK {
                k,
                recall: mean(&|a| a.recall),
                ndcg: mean(&|a| a.ndcg),
                hr: mean(&|a| a.hr),
                recall_new: mean_new(&|a| a.recall_new),
                ndcg_new: mean_new(&|a| a.ndcg_new),
                hr_new: mean_new(&|a| a.hr_new),
                coverage: seen.len() as f64 / items.max(1) as f64,
                distinct_categories: mean(&|a| a.distinct_categories),
                category_entropy: mean(&|a| a.category_entropy),
            }
        })
        .collect();
    MethodReport {
        method: scorer.name().to_string(),
        at,
    }
}

/// Tag HR@N (RecGPT's tag metric): the share of users the category of whose next item (the
/// first one bought after the split) is among the categories of their first N tags.
/// `tag_categories` maps a user to the categories of their tags, in tag order.
pub fn tag_hit_rate(
    set: &EvalSet<'_>,
    tag_categories: &HashMap<String, Vec<u32>>,
    category: &[u32],
    n: usize,
) -> (f64, usize) {
    let mut hits = 0usize;
    let mut users = 0usize;
    for (_, after) in &set.users {
        let Some(cats) = tag_categories.get(&after.user) else {
            continue;
        };
        // `bought` is most recent first: the first item after the split is the last one
        let Some(&next) = after.bought.last() else {
            continue;
        };
        users += 1;
        let cats: HashSet<u32> = cats.iter().take(n).copied().collect();
        hits += usize::from(cats.contains(&category[next as usize]));
    }
    (hits as f64 / users.max(1) as f64, users)
}

/// The user tower alone (two-tower collaborative filtering): score = h_user · v_item.
#[derive(Debug)]
pub struct UserTower<'m> {
    model: &'m TowerModel,
    users: HashMap<String, Vec<f32>>,
}

impl<'m> UserTower<'m> {
    pub fn new(
        model: &'m TowerModel,
        set: &EvalSet<'_>,
        features: &ItemFeatures,
    ) -> Result<Self, TowerError> {
        let mut users = HashMap::new();
        for (before, _) in &set.users {
            users.insert(before.user.clone(), model.user_vector(before, features)?);
        }
        Ok(Self { model, users })
    }
}

fn dot_all(items: &[Vec<f32>], q: &[f32], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(items) {
        *o = v.iter().zip(q).map(|(a, b)| a * b).sum();
    }
}

impl Scorer for UserTower<'_> {
    fn name(&self) -> &str {
        "UserTower"
    }

    fn score(&self, user: &UserItems, out: &mut [f32]) {
        dot_all(&self.model.item_vectors, &self.users[&user.user], out);
    }
}

/// The three-tower model with tags: one query per tag (h = β·h_user + (1−β)·h_tag) plus the
/// user query; an item's score is its best score over the queries (max fusion).
#[derive(Debug)]
pub struct ThreeTower<'m> {
    model: &'m TowerModel,
    name: String,
    /// Per user: the user query first, then one per tag.
    queries: HashMap<String, Vec<Vec<f32>>>,
}

impl<'m> ThreeTower<'m> {
    /// `tags[user]`: tag-tower vectors of the user's tags.
    pub fn new(
        model: &'m TowerModel,
        users: &UserTower<'m>,
        tags: &HashMap<String, Vec<Vec<f32>>>,
        name: String,
    ) -> Self {
        let queries = users
            .users
            .iter()
            .map(|(user, h)| {
                let mut q = vec![h.clone()];
                for t in tags.get(user).into_iter().flatten() {
                    q.push(model.query(h, t));
                }
                (user.clone(), q)
            })
            .collect();
        Self {
            model,
            name,
            queries,
        }
    }
}

impl Scorer for ThreeTower<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, user: &UserItems, out: &mut [f32]) {
        out.fill(f32::MIN);
        let mut s = vec![0f32; out.len()];
        for q in &self.queries[&user.user] {
            dot_all(&self.model.item_vectors, q, &mut s);
            for (o, x) in out.iter_mut().zip(&s) {
                *o = o.max(*x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::{users, MostPopular};

    #[test]
    fn popularity_on_a_tiny_split() {
        let train = users(&[&[0, 1], &[0, 2], &[0]]);
        // u0 buys 3 (new) and 0 (again); u1 buys 1 (new); u2 absent after the split
        let test = Interactions {
            users: vec![
                UserItems {
                    user: "u0".into(),
                    bought: vec![3, 0],
                    returned: vec![],
                },
                UserItems {
                    user: "u1".into(),
                    bought: vec![1],
                    returned: vec![],
                },
            ],
        };
        let set = EvalSet::new(&train, &test);
        assert_eq!(set.users.len(), 2);
        assert_eq!(set.users_with_new_items(), 2);
        let pop = MostPopular::fit(&train, 4);
        let r = evaluate(&pop, &set, 4, &[0, 0, 1, 1], &[1, 2]);
        // ranking for everyone: 0 (3 buyers), then 1 and 2 (1 each; lower index first), 3
        let k1 = &r.at[0];
        assert_eq!(k1.hr, 0.5, "u0 hits item 0 at K=1");
        assert_eq!(k1.recall, 0.25);
        let k2 = &r.at[1];
        assert_eq!(k2.hr, 1.0);
        assert_eq!(k2.recall, (0.5 + 1.0) / 2.0);
        assert_eq!(k2.coverage, 0.5);
        // new items: u0's history {0,1} out → ranks 2, 3: hits 3 at K=2; u1's {0,2} out → 1 first
        assert_eq!(k2.hr_new, 1.0);
        assert_eq!(r.at[0].hr_new, 0.5);
        assert_eq!(k2.distinct_categories, 1.0);
    }

    #[test]
    fn tag_hit_rate_uses_the_first_item_after_the_split() {
        let train = users(&[&[0], &[1]]);
        let test = users(&[&[2, 3], &[1]]);
        let set = EvalSet::new(&train, &test);
        let category = [0, 1, 2, 3];
        let tags = HashMap::from([("u0".to_string(), vec![0, 3]), ("u1".to_string(), vec![2])]);
        // u0's first item after the split is 3 (the last in most-recent-first order): hit
        assert_eq!(tag_hit_rate(&set, &tags, &category, 30), (0.5, 2));
        assert_eq!(tag_hit_rate(&set, &tags, &category, 1), (0.0, 2));
    }
}
