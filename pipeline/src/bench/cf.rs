//! `recgpt bench cf`: the collaborative-filtering channel on catalogs from the real one up to
//! 100k items and more. A scale-s catalog holds s disjoint copies of the real purchases (user u's
//! copy c buys items i + c·items), so co-purchase structure stays real while items and users
//! grow s-fold. Dense EASE runs where its matrices fit the memory budget; sparse item-kNN runs
//! everywhere. Figures are ratios against EASE on the real catalog, measured in the same run.

use std::time::Instant;

use recgpt_retrieval::baselines::{Ease, Scorer, SparseItemKnn};
use recgpt_retrieval::interactions::{Interactions, UserItems};
use serde::Serialize;

use super::compress::{peak_rss_mib, reset_peak_rss};

/// One (method, scale) row.
#[derive(Debug, Clone, Serialize)]
pub struct CfRow {
    pub method: String,
    pub scale: usize,
    pub items: usize,
    pub users: usize,
    /// `None`: not run, its matrices would take more than the budget.
    pub fit_seconds: Option<f64>,
    /// The model's own matrices (dense: items² f32 for B plus f64 for the inverse while
    /// fitting; sparse: the kept (item, cosine) pairs).
    pub model_mib: f64,
    pub peak_rss_mib: Option<f64>,
    pub users_per_second: Option<f64>,
    /// fit_seconds over EASE's on the real catalog.
    pub fit_vs_ease: Option<f64>,
}

/// The bench's rows.
#[derive(Debug, Clone, Serialize)]
pub struct CfBench {
    pub rows: Vec<CfRow>,
    pub memory_budget_mib: f64,
}

/// Replicates `train` `scale` times over disjoint item ranges.
pub fn replicate(train: &Interactions, items: usize, scale: usize) -> Interactions {
    Interactions {
        users: (0..scale)
            .flat_map(|c| {
                train.users.iter().map(move |u| UserItems {
                    user: format!("{}#{c}", u.user),
                    bought: u.bought.iter().map(|&i| i + (c * items) as u32).collect(),
                    returned: Vec::new(),
                })
            })
            .collect(),
    }
}

/// Fits and scores each method at each scale; `score_users` users are scored per row.
pub fn cf_bench(
    train: &Interactions,
    items: usize,
    scales: &[usize],
    lambda: f64,
    neighbours: usize,
    memory_budget_mib: f64,
    score_users: usize,
) -> CfBench {
    let mut rows: Vec<CfRow> = Vec::new();
    for &scale in scales {
        let data = replicate(train, items, scale);
        let n = items * scale;
        let dense_mib = (n * n) as f64 * 12.0 / (1 << 20) as f64;
        for method in ["EASE", "SparseItemKNN"] {
            let mut row = CfRow {
                method: method.into(),
                scale,
                items: n,
                users: data.users.len(),
                fit_seconds: None,
                model_mib: dense_mib,
                peak_rss_mib: None,
                users_per_second: None,
                fit_vs_ease: None,
            };
            if method == "EASE" && dense_mib > memory_budget_mib {
                rows.push(row);
                continue;
            }
            reset_peak_rss();
            let started = Instant::now();
            let scorer: Box<dyn Scorer> = match method {
                "EASE" => Box::new(Ease::fit(&data, n, lambda)),
                _ => {
                    let knn = SparseItemKnn::fit(&data, n, neighbours);
                    row.model_mib = (knn.pairs() * 8) as f64 / (1 << 20) as f64;
                    Box::new(knn)
                }
            };
            row.fit_seconds = Some(started.elapsed().as_secs_f64());
            let mut out = vec![0f32; n];
            let started = Instant::now();
            let users = &data.users[..score_users.min(data.users.len())];
            for u in users {
                scorer.score(u, &mut out);
            }
            row.users_per_second =
                Some(users.len() as f64 / started.elapsed().as_secs_f64().max(1e-9));
            row.peak_rss_mib = peak_rss_mib();
            rows.push(row);
        }
    }
    let reference = rows
        .iter()
        .find(|r| r.method == "EASE" && r.scale == 1)
        .and_then(|r| r.fit_seconds);
    for r in &mut rows {
        r.fit_vs_ease = r.fit_seconds.zip(reference).map(|(a, b)| a / b);
    }
    CfBench {
        rows,
        memory_budget_mib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_disjoint_copies() {
        let train = Interactions {
            users: vec![UserItems {
                user: "a".into(),
                bought: vec![0, 2],
                returned: vec![],
            }],
        };
        let r = replicate(&train, 3, 2);
        assert_eq!(r.users.len(), 2);
        assert_eq!(r.users[1].bought, vec![3, 5]);
        assert_eq!(r.users[1].user, "a#1");
        let b = cf_bench(&train, 3, &[1, 2], 1.0, 5, 1e-9, 10);
        // EASE over the (tiny) budget is listed, not run
        assert!(b
            .rows
            .iter()
            .filter(|r| r.method == "EASE")
            .all(|r| r.fit_seconds.is_none()));
        assert!(b
            .rows
            .iter()
            .filter(|r| r.method != "EASE")
            .all(|r| r.fit_seconds.is_some()));
    }
}
