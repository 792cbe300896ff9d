//! The retrieval channels and their fusion, compared on held-out purchases.
//!
//! RecGPT is one channel of a multi-channel retrieval beside collaborative filtering. The
//! channels here: **CF** (EASE, or sparse item-kNN on a catalog too large for EASE; see
//! [`crate::retrieval::cf_channel`]), the **user tower** alone, and the **LLM tags** through
//! the three-tower model (one query per tag plus the user query, max fusion). Their
//! weighted reciprocal-rank fusion ([`recgpt_retrieval::fusion`]) is the product's list;
//! the fusion without the LLM channel is its ablation.
//!
//! [`compare`] ranks the whole catalog for each user of a sample with each method and reports
//! Recall@20/50, Recall-new@50 (ranked without the user's history, against the new items;
//! users without one are left out), NDCG@10, distinct categories in the top 50, novelty (the
//! mean popularity rank of the top 50, 1 = the most bought item before the split) and users
//! with no hit in the top 50, each method's difference against CF with a paired bootstrap 95%
//! interval, and (on request) a sweep of the fusion weights.

use std::collections::HashMap;

use recgpt_retrieval::baselines::Scorer;
use recgpt_retrieval::eval::{evaluate_users, EvalSet, Protocol, ThreeTower, UserEval, UserTower};
use recgpt_retrieval::fusion::{Fusion, FusionConfig};
use recgpt_retrieval::interactions::Interactions;
use recgpt_retrieval::metrics::{mean, paired_bootstrap, Interval};
use recgpt_retrieval::tower::{TowerError, TowerModel};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::retrieval::{cf_channel, Prepared};

/// The LLM channel's row.
pub const LLM_TAGS: &str = "ThreeTower (LLM tags)";
/// The cut-offs of the comparison.
const KS: [usize; 3] = [10, 20, 50];
/// Bootstrap resamples of each interval.
const RESAMPLES: usize = 2000;

/// One method's figures on the sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelRow {
    pub method: String,
    pub recall_20: f64,
    pub recall_50: f64,
    pub recall_new_50: f64,
    pub ndcg_10: f64,
    pub categories_50: f64,
    pub novelty_50: f64,
    /// Users none of whose next items is in the top 50.
    pub users_at_zero_50: usize,
    /// This method minus CF, per user, with paired bootstrap 95% intervals (`None` on CF's
    /// own row).
    pub vs_cf: Option<VsCf>,
}

/// Differences against the CF channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VsCf {
    pub recall_50: Interval,
    pub recall_new_50: Interval,
    pub ndcg_10: Interval,
    pub categories_50: Interval,
}

/// One point of the fusion-weight sweep (CF's weight fixed at its configured value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub user: f32,
    pub llm: f32,
    pub recall_50: f64,
    pub recall_new_50: f64,
    pub categories_50: f64,
}

/// The comparison of the channels on a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelReport {
    pub protocol: Protocol,
    pub fusion: FusionConfig,
    pub users: usize,
    pub users_with_new_items: usize,
    pub rows: Vec<ChannelRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<SweepRow>,
}

/// The fusion weights tried by the sweep: user tower × LLM tags.
pub const SWEEP_USER: [f32; 3] = [0.0, 0.5, 1.0];
pub const SWEEP_LLM: [f32; 6] = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0];

/// What [`compare`] reads.
pub struct Comparison<'a> {
    pub config: &'a Config,
    pub prepared: &'a Prepared,
    pub model: &'a TowerModel,
    /// Purchases before the split: what CF is fitted on and popularity is counted from.
    pub before: &'a Interactions,
    /// Per user: the tag-tower vectors of their LLM tags.
    pub llm_tags: &'a HashMap<String, Vec<Vec<f32>>>,
    pub protocol: Protocol,
    pub seed: u64,
}

impl std::fmt::Debug for Comparison<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comparison")
            .field("protocol", &self.protocol)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Ranks the catalog for every user of `set` by each channel and fusion, and reports them.
pub fn compare(
    c: &Comparison<'_>,
    set: &EvalSet<'_>,
    sweep: bool,
) -> Result<ChannelReport, TowerError> {
    let items = c.model.item_vectors.len();
    let category = &c.prepared.features.category;
    let fusion = &c.config.fusion;
    let cf = cf_channel(c.before, items, c.config);
    let user = UserTower::new(c.model, set, &c.prepared.features)?;
    let mut title_tags = HashMap::new();
    for (before, _) in &set.users {
        let queries =
            c.prepared
                .user_title_tag_queries(c.model, before, c.config.eval.tags_per_user)?;
        title_tags.insert(
            before.user.clone(),
            queries.into_iter().map(|q| q.vector).collect::<Vec<_>>(),
        );
    }
    let title = ThreeTower::new(
        c.model,
        &user,
        &title_tags,
        "ThreeTower (title tags)".into(),
    );
    let llm = ThreeTower::new(c.model, &user, c.llm_tags, LLM_TAGS.into());
    // as many LLM tags as title tags: max fusion over more queries favours the tag queries
    let first = c.config.eval.tags_per_user;
    let llm_first_tags: HashMap<String, Vec<Vec<f32>>> = c
        .llm_tags
        .iter()
        .map(|(u, t)| (u.clone(), t.iter().take(first).cloned().collect()))
        .collect();
    let llm_first = ThreeTower::new(
        c.model,
        &user,
        &llm_first_tags,
        format!("ThreeTower (first {first} LLM tags)"),
    );
    let fused = |name: &str, user_w: f32, llm_w: f32| {
        Fusion::new(
            name,
            &[
                (cf.as_ref(), fusion.cf),
                (&user as &dyn Scorer, user_w),
                (&llm as &dyn Scorer, llm_w),
            ],
            fusion.depth,
            fusion.k0,
        )
    };
    let without = fused("Fusion without LLM tags", fusion.user, 0.0);
    let with = fused("Fusion", fusion.user, fusion.llm);
    let methods: [&dyn Scorer; 7] = [
        cf.as_ref(),
        &user,
        &title,
        &llm,
        &llm_first,
        &without,
        &with,
    ];

    let popularity = popularity_ranks(c.before, items);
    let run = |s: &dyn Scorer| evaluate_users(s, set, items, category, &KS, c.protocol);
    let base = run(cf.as_ref());
    let base_figures = PerUser::of(&base, &popularity);
    let rows = methods
        .iter()
        .enumerate()
        .map(|(m, s)| match m {
            0 => row(s.name(), &base, None, &popularity, c.seed),
            _ => row(s.name(), &run(*s), Some(&base_figures), &popularity, c.seed),
        })
        .collect();
    let sweep = if sweep {
        SWEEP_USER
            .iter()
            .flat_map(|&u| SWEEP_LLM.iter().map(move |&l| (u, l)))
            .map(|(u, l)| {
                let r = row("", &run(&fused("", u, l)), None, &popularity, c.seed);
                SweepRow {
                    user: u,
                    llm: l,
                    recall_50: r.recall_50,
                    recall_new_50: r.recall_new_50,
                    categories_50: r.categories_50,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ChannelReport {
        protocol: c.protocol,
        fusion: fusion.clone(),
        users: set.users.len(),
        users_with_new_items: set.users_with_new_items(),
        rows,
        sweep,
    })
}

/// Each item's popularity rank before the split (1 = bought by the most users; ties to the
/// lower item).
fn popularity_ranks(before: &Interactions, items: usize) -> Vec<f64> {
    let counts = before.item_counts(items);
    let mut order: Vec<usize> = (0..items).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut rank = vec![0.0; items];
    for (r, i) in order.into_iter().enumerate() {
        rank[i] = (r + 1) as f64;
    }
    rank
}

/// Per-user figures of one method, in the order of [`KS`]: @10, @20, @50.
struct PerUser {
    recall_20: Vec<f64>,
    recall_50: Vec<f64>,
    /// Only users with a new item.
    recall_new_50: Vec<f64>,
    ndcg_10: Vec<f64>,
    categories_50: Vec<f64>,
    novelty_50: Vec<f64>,
}

impl PerUser {
    fn of(users: &[UserEval], popularity: &[f64]) -> Self {
        let at = |k: usize, f: fn(&recgpt_retrieval::eval::UserAtK) -> f64| -> Vec<f64> {
            users.iter().map(|u| f(&u.at[k])).collect()
        };
        Self {
            recall_20: at(1, |a| a.recall),
            recall_50: at(2, |a| a.recall),
            recall_new_50: users.iter().filter_map(|u| u.at[2].recall_new).collect(),
            ndcg_10: at(0, |a| a.ndcg),
            categories_50: at(2, |a| a.distinct_categories),
            novelty_50: users
                .iter()
                .map(|u| {
                    let top = &u.top[..u.top.len().min(50)];
                    top.iter().map(|&i| popularity[i as usize]).sum::<f64>()
                        / top.len().max(1) as f64
                })
                .collect(),
        }
    }
}

fn row(
    method: &str,
    users: &[UserEval],
    cf: Option<&PerUser>,
    popularity: &[f64],
    seed: u64,
) -> ChannelRow {
    let p = PerUser::of(users, popularity);
    let vs_cf = cf.map(|b| {
        let interval = |a: &[f64], b: &[f64]| paired_bootstrap(a, b, RESAMPLES, seed);
        VsCf {
            recall_50: interval(&p.recall_50, &b.recall_50),
            recall_new_50: interval(&p.recall_new_50, &b.recall_new_50),
            ndcg_10: interval(&p.ndcg_10, &b.ndcg_10),
            categories_50: interval(&p.categories_50, &b.categories_50),
        }
    });
    ChannelRow {
        method: method.to_string(),
        recall_20: mean(p.recall_20.iter().copied()),
        recall_50: mean(p.recall_50.iter().copied()),
        recall_new_50: mean(p.recall_new_50.iter().copied()),
        ndcg_10: mean(p.ndcg_10.iter().copied()),
        categories_50: mean(p.categories_50.iter().copied()),
        novelty_50: mean(p.novelty_50.iter().copied()),
        users_at_zero_50: users.iter().filter(|u| u.at[2].hr == 0.0).count(),
        vs_cf,
    }
}

/// The report as a text table.
pub fn table(r: &ChannelReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let f = &r.fusion;
    let _ = writeln!(
        out,
        "channels on {} users ({} with new items), protocol {:?}; fusion: cf {} user {} llm {} (depth {}, k0 {}); [95% paired bootstrap of the difference against CF]",
        r.users, r.users_with_new_items, r.protocol, f.cf, f.user, f.llm, f.depth, f.k0
    );
    let _ = writeln!(
        out,
        "{:<32} {:>7} {:>7} {:>22} {:>8} {:>22} {:>8} {:>7} {:>22} {:>7}",
        "method",
        "R@20",
        "R@50",
        "vs CF",
        "Rnew@50",
        "vs CF",
        "NDCG@10",
        "cats@50",
        "vs CF",
        "novelty"
    );
    let iv = |i: Option<&Interval>| {
        i.map_or(String::new(), |i| {
            format!("{:+.3} [{:+.3},{:+.3}]", i.diff, i.low, i.high)
        })
    };
    for m in &r.rows {
        let v = m.vs_cf.as_ref();
        let _ = writeln!(
            out,
            "{:<32} {:>7.3} {:>7.3} {:>22} {:>8.3} {:>22} {:>8.3} {:>7.1} {:>22} {:>7.0}",
            m.method,
            m.recall_20,
            m.recall_50,
            iv(v.map(|v| &v.recall_50)),
            m.recall_new_50,
            iv(v.map(|v| &v.recall_new_50)),
            m.ndcg_10,
            m.categories_50,
            iv(v.map(|v| &v.categories_50)),
            m.novelty_50,
        );
    }
    if !r.sweep.is_empty() {
        let _ = writeln!(
            out,
            "fusion sweep (cf {}): user  llm   R@50  Rnew@50  cats@50",
            f.cf
        );
        for s in &r.sweep {
            let _ = writeln!(
                out,
                "{:>39.2} {:>4.2} {:>6.3} {:>8.3} {:>8.1}",
                s.user, s.llm, s.recall_50, s.recall_new_50, s.categories_50
            );
        }
    }
    out
}
