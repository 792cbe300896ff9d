//! What a quality-loop run reports: per-user rows, per-method rows, the stages' figures, the
//! model comparison, and the floors a run is held to.

use std::collections::BTreeMap;

use recgpt_retrieval::interactions::UserItems;
use serde::{Deserialize, Serialize};

use super::*;

/// Summary of a per-user figure: the low end matters as much as the mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub min: f64,
    pub p10: f64,
    pub median: f64,
    pub mean: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        // nearest rank: the smallest value with at least q of the users at or below it
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            min: v[0],
            p10: at(0.1),
            median: at(0.5),
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

/// One method's row: per-user scores summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    pub method: String,
    pub users: usize,
    pub tags_per_user: f64,
    /// Mean over users of [`TagScore::hit_rate`], and its spread.
    pub hit_rate: Spread,
    /// Users none of whose next items a tag retrieves.
    pub users_without_hit: usize,
    /// Mean over users with new items.
    pub hit_rate_new: f64,
    pub users_with_new: usize,
    /// Share of users with a tag HR@N hit.
    pub hr_at_n: f64,
}

impl MethodRow {
    pub fn of(method: &str, scores: &[TagScore]) -> Self {
        let hits: Vec<f64> = scores.iter().map(|s| s.hit_rate).collect();
        let new: Vec<f64> = scores.iter().filter_map(|s| s.hit_rate_new).collect();
        let n = scores.len().max(1) as f64;
        Self {
            method: method.to_string(),
            users: scores.len(),
            tags_per_user: scores.iter().map(|s| s.tags as f64).sum::<f64>() / n,
            hit_rate: Spread::of(&hits),
            users_without_hit: hits.iter().filter(|&&h| h == 0.0).count(),
            hit_rate_new: recgpt_retrieval::metrics::mean(new.iter().copied()),
            users_with_new: new.len(),
            hr_at_n: scores.iter().filter(|s| s.hr_at_n).count() as f64 / n,
        }
    }
}

/// The methods of the report, in table order.
pub const METHODS: [&str; 4] = ["llm", "llm (model tags only)", "title tags", "popular tags"];

/// One user's LLM output and scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub user: String,
    /// Distinct items bought before the split, and in the horizon after it.
    pub items_before: usize,
    pub items_after: usize,
    pub interests: Vec<String>,
    pub model_descriptions: usize,
    /// `tag [source]`, in the user's tag order.
    pub tags: Vec<String>,
    pub model_tags: usize,
    pub model_share: f64,
    /// Interest and tag answers, those not parsed, and those cut off at their token limit.
    pub answers: usize,
    pub unparsable: usize,
    pub cut_off: usize,
    pub rejected: BTreeMap<String, usize>,
    /// Per method of [`METHODS`].
    pub scores: BTreeMap<String, TagScore>,
}

/// Per-user figures of the LLM stages, summarised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageFigures {
    pub model_share: Spread,
    /// Users whose model share is below 0.6 (the target's per-user level).
    pub users_below_60_percent: usize,
    pub interests: Spread,
    pub model_descriptions: Spread,
    pub answers: usize,
    pub unparsable: usize,
    pub cut_off: usize,
    /// Tag rejections by rule, over all users.
    pub rejected: BTreeMap<String, usize>,
    /// Tags (model and fallback) whose every word is a word of the catalog's titles.
    pub tags_with_catalog_words: f64,
    pub seconds: f64,
    /// Users whose interests and tags came from the cache.
    #[serde(default)]
    pub cached_users: usize,
    /// Users whose reasoning cost is known (reasoned in this run, or cached with its cost):
    /// users/min and the tokens per user are theirs.
    #[serde(default)]
    pub timed_users: usize,
    pub users_per_minute: f64,
    pub prompt_tokens_per_user: f64,
    pub evaluated_prompt_tokens_per_user: f64,
    pub generated_tokens_per_user: f64,
}

/// A user's share of what reasoning for their chunk of users cost (the chunk's wall time and
/// tokens divided evenly), kept with the cached reasoning so that a rerun reports it too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub seconds: f64,
    pub prompt_tokens: f64,
    pub evaluated_prompt_tokens: f64,
    pub generated_tokens: f64,
}

/// A `recgpt eval llm` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmEvalReport {
    pub split: String,
    pub horizon_days: u32,
    pub sample_seed: u64,
    pub users: usize,
    /// Users who bought on both sides (the population sampled from).
    pub eligible_users: usize,
    pub model_id: String,
    pub prompt_versions: Vec<String>,
    /// Items per tag in the tag hit rate, and tags in HR@N.
    pub k: usize,
    pub n: usize,
    pub methods: Vec<MethodRow>,
    /// HR@N of the N most popular categories before the split.
    pub popular_categories_hr_at_n: f64,
    pub stages: StageFigures,
    /// The channels and their fusion ranked on the same users (absent in reports from before
    /// it existed).
    #[serde(default)]
    pub channels: Option<ChannelReport>,
    pub per_user: Vec<UserRow>,
}

/// Users with at least this many distinct items before the split are expected to have at
/// least [`MANY_INTERESTS`] interests.
pub const LONG_HISTORY_ITEMS: usize = 50;
pub const MANY_INTERESTS: usize = 10;

/// One model's figures in a comparison of models on the same sample (`recgpt eval llm
/// --model A,B,…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    pub model: String,
    pub users: usize,
    pub interests_median: f64,
    /// Users with at least [`LONG_HISTORY_ITEMS`] items before the split, and those of them
    /// with at least [`MANY_INTERESTS`] interests.
    pub long_history_users: usize,
    pub long_history_users_with_many_interests: usize,
    /// Interests whose description the model wrote (not the template), over all interests.
    pub model_description_share: f64,
    pub model_share: Spread,
    pub users_below_60_percent: usize,
    /// The `llm` row: tag hit@k, on new items, HR@N.
    pub hit_rate: f64,
    pub hit_rate_new: f64,
    pub hr_at_n: f64,
    /// The LLM channel's Recall@50 and Recall-new@50 (when the channels were ranked).
    pub channel_recall_50: Option<f64>,
    pub channel_recall_new_50: Option<f64>,
    pub generated_tokens_per_user: f64,
    pub users_per_minute: f64,
    /// CPU-minutes of reasoning per user: the decoding threads × minutes per user (`None`
    /// for a remote backend or when no user's cost is known).
    pub cpu_minutes_per_user: Option<f64>,
    /// Tag hit@k per CPU-minute per user: quality per unit of compute.
    pub hit_rate_per_cpu_minute: Option<f64>,
}

impl ModelRow {
    /// The row of one report; `threads` as in [`ModelRow::cpu_minutes_per_user`].
    pub fn of(r: &LlmEvalReport, threads: Option<usize>) -> Self {
        let llm = r.methods.iter().find(|m| m.method == METHODS[0]);
        let channel = r
            .channels
            .as_ref()
            .and_then(|c| c.rows.iter().find(|row| row.method == channels::LLM_TAGS));
        let long: Vec<&UserRow> = r
            .per_user
            .iter()
            .filter(|u| u.items_before >= LONG_HISTORY_ITEMS)
            .collect();
        let interests: usize = r.per_user.iter().map(|u| u.interests.len()).sum();
        let described: usize = r.per_user.iter().map(|u| u.model_descriptions).sum();
        let s = &r.stages;
        let cpu_minutes_per_user = match (threads, s.timed_users, s.users_per_minute) {
            (Some(t), n, rate) if n > 0 && rate > 0.0 => Some(t as f64 / rate),
            _ => None,
        };
        let hit_rate = llm.map_or(0.0, |m| m.hit_rate.mean);
        Self {
            model: r.model_id.clone(),
            users: r.users,
            interests_median: s.interests.median,
            long_history_users: long.len(),
            long_history_users_with_many_interests: long
                .iter()
                .filter(|u| u.interests.len() >= MANY_INTERESTS)
                .count(),
            model_description_share: described as f64 / interests.max(1) as f64,
            model_share: s.model_share,
            users_below_60_percent: s.users_below_60_percent,
            hit_rate,
            hit_rate_new: llm.map_or(0.0, |m| m.hit_rate_new),
            hr_at_n: llm.map_or(0.0, |m| m.hr_at_n),
            channel_recall_50: channel.map(|c| c.recall_50),
            channel_recall_new_50: channel.map(|c| c.recall_new_50),
            generated_tokens_per_user: s.generated_tokens_per_user,
            users_per_minute: s.users_per_minute,
            cpu_minutes_per_user,
            hit_rate_per_cpu_minute: cpu_minutes_per_user.map(|m| hit_rate / m),
        }
    }
}

/// Floors of a quality-loop run (`recgpt eval llm --floors FILE`): each states the quality
/// wanted, per user where users differ; a run below one fails.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmFloors {
    /// Each user's share of tags written by the model (not the fallback pool).
    pub model_share_min: Option<f64>,
    /// Each user's interests.
    pub interests_min: Option<usize>,
    /// The interests of each user with at least [`LONG_HISTORY_ITEMS`] distinct items before
    /// the split.
    #[serde(default)]
    pub long_history_interests_min: Option<usize>,
    /// Each user's interests with a model-written description.
    pub model_descriptions_min: Option<usize>,
    /// Share of answers (interests and tags) that parse.
    pub parse_rate_min: Option<f64>,
    /// Share of tags whose every word is a catalog word.
    pub catalog_words_min: Option<f64>,
}

impl LlmFloors {
    /// The floors `report` breaks, each with the users below it.
    pub fn broken(&self, report: &LlmEvalReport) -> Vec<String> {
        let mut out = Vec::new();
        let mut per_user = |name: &str, floor: f64, value: &dyn Fn(&UserRow) -> f64| {
            let below: Vec<String> = report
                .per_user
                .iter()
                .filter(|u| value(u) < floor)
                .map(|u| format!("{} ({:.2})", u.user, value(u)))
                .collect();
            if !below.is_empty() {
                out.push(format!("{name} {floor}: users {}", below.join(", ")));
            }
        };
        if let Some(f) = self.model_share_min {
            per_user("model_share_min", f, &|u| u.model_share);
        }
        if let Some(f) = self.interests_min {
            per_user("interests_min", f as f64, &|u| u.interests.len() as f64);
        }
        if let Some(f) = self.long_history_interests_min {
            per_user(
                "long_history_interests_min",
                f as f64,
                &|u| match u.items_before >= LONG_HISTORY_ITEMS {
                    true => u.interests.len() as f64,
                    false => f64::INFINITY,
                },
            );
        }
        if let Some(f) = self.model_descriptions_min {
            per_user("model_descriptions_min", f as f64, &|u| {
                u.model_descriptions as f64
            });
        }
        let s = &report.stages;
        let parse_rate = 1.0 - s.unparsable as f64 / s.answers.max(1) as f64;
        if let Some(f) = self.parse_rate_min.filter(|&f| parse_rate < f) {
            out.push(format!("parse_rate_min {f}: {parse_rate:.3}"));
        }
        if let Some(f) = self
            .catalog_words_min
            .filter(|&f| s.tags_with_catalog_words < f)
        {
            out.push(format!(
                "catalog_words_min {f}: {:.3}",
                s.tags_with_catalog_words
            ));
        }
        out
    }
}

pub(super) fn user_row(
    r: &UserReasoning,
    before: &UserItems,
    after: &UserItems,
    scores: BTreeMap<String, TagScore>,
) -> UserRow {
    let (i, t) = (&r.interests, &r.tags);
    UserRow {
        user: i.user.clone(),
        items_before: before.bought.len(),
        items_after: after.bought.len(),
        interests: i.interests.iter().map(|x| x.name.clone()).collect(),
        model_descriptions: i
            .interests
            .iter()
            .filter(|x| x.description_source == "model")
            .count(),
        tags: t
            .tags
            .iter()
            .map(|x| format!("{} [{}]", x.tag, x.source))
            .collect(),
        model_tags: t.counts.from_model,
        model_share: t.counts.from_model as f64 / t.tags.len().max(1) as f64,
        answers: i.counts.answers + t.counts.answers,
        unparsable: i.counts.unparsable + t.counts.unparsable,
        cut_off: i.counts.cut_off + t.counts.cut_off,
        rejected: t.counts.rejected.clone(),
        scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_shows_the_low_end() {
        let s = Spread::of(&[0.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(s.min, 0.0);
        assert_eq!(s.p10, 0.0);
        assert_eq!(s.median, 1.0);
        assert!((s.mean - 0.8).abs() < 1e-12);
        assert_eq!(Spread::of(&[]), Spread::default());
        assert_eq!(Spread::of(&[0.3]).p10, 0.3);
    }

    fn report(users: &[(usize, usize, usize)]) -> LlmEvalReport {
        // (items before, interests, model descriptions) per user
        let per_user: Vec<UserRow> = users
            .iter()
            .enumerate()
            .map(|(i, &(items, interests, described))| UserRow {
                user: format!("u{i}"),
                items_before: items,
                items_after: 3,
                interests: (0..interests).map(|j| format!("interest {j}")).collect(),
                model_descriptions: described,
                tags: Vec::new(),
                model_tags: 30,
                model_share: 0.6,
                answers: 6,
                unparsable: 0,
                cut_off: 0,
                rejected: BTreeMap::new(),
                scores: BTreeMap::new(),
            })
            .collect();
        LlmEvalReport {
            split: "2011-10-01".into(),
            horizon_days: 30,
            sample_seed: 7,
            users: per_user.len(),
            eligible_users: 100,
            model_id: "m".into(),
            prompt_versions: Vec::new(),
            k: 10,
            n: 30,
            methods: vec![MethodRow::of(
                METHODS[0],
                &[TagScore {
                    tags: 50,
                    hit_rate: 0.3,
                    hit_rate_new: Some(0.2),
                    hr_at_n: true,
                }],
            )],
            popular_categories_hr_at_n: 1.0,
            stages: StageFigures {
                answers: 6 * users.len(),
                timed_users: users.len(),
                users_per_minute: 0.5,
                tags_with_catalog_words: 1.0,
                ..StageFigures::default()
            },
            channels: None,
            per_user,
        }
    }

    #[test]
    fn the_long_history_floor_counts_only_long_histories() {
        let floors = LlmFloors {
            long_history_interests_min: Some(10),
            ..LlmFloors::default()
        };
        // a short history with 3 interests passes; a long one with 9 does not
        let r = report(&[(20, 3, 3), (60, 12, 12), (50, 9, 9)]);
        let broken = floors.broken(&r);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(broken[0].contains("u2 (9.00)"), "{broken:?}");
        assert!(!broken[0].contains("u0"), "{broken:?}");
        assert!(floors
            .broken(&report(&[(20, 3, 3), (60, 12, 0)]))
            .is_empty());
    }

    #[test]
    fn a_model_row_prices_quality_in_cpu_minutes() {
        let row = ModelRow::of(&report(&[(20, 3, 3), (60, 12, 6), (50, 9, 0)]), Some(2));
        assert_eq!(
            (
                row.long_history_users,
                row.long_history_users_with_many_interests
            ),
            (2, 1)
        );
        assert!((row.model_description_share - 9.0 / 24.0).abs() < 1e-12);
        // 2 threads at 0.5 users/min: 4 CPU-minutes a user
        assert_eq!(row.cpu_minutes_per_user, Some(4.0));
        assert!((row.hit_rate_per_cpu_minute.unwrap() - 0.3 / 4.0).abs() < 1e-12);
        assert_eq!(row.channel_recall_50, None);
        // a remote backend's threads are unknown
        assert_eq!(
            ModelRow::of(&report(&[(20, 3, 3)]), None).cpu_minutes_per_user,
            None
        );
    }

    #[test]
    fn a_method_row_counts_users_at_zero() {
        let score = |hit_rate, new: Option<f64>, hr_at_n| TagScore {
            tags: 50,
            hit_rate,
            hit_rate_new: new,
            hr_at_n,
        };
        let row = MethodRow::of(
            "m",
            &[
                score(0.0, Some(0.0), false),
                score(0.5, None, true),
                score(1.0, Some(0.5), true),
            ],
        );
        assert_eq!(row.users, 3);
        assert_eq!(row.users_without_hit, 1);
        assert_eq!(row.users_with_new, 2);
        assert!((row.hit_rate_new - 0.25).abs() < 1e-12);
        assert!((row.hr_at_n - 2.0 / 3.0).abs() < 1e-12);
        assert!((row.hit_rate.mean - 0.5).abs() < 1e-12);
    }
}
