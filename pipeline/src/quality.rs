//! The LLM quality loop (`recgpt eval llm`): interests and tags for a seeded sample of users,
//! mined from their history before a split, scored against what they bought after it.
//!
//! The truth of a user is the distinct items they bought in the `horizon_days` after the split
//! (a horizon keeps a dev split's truth apart from a later test split's). A list of tags is
//! scored two ways, the same for the LLM's tags and for the baselines:
//! - **tag hit rate@k**: the share of the user's next items that some tag retrieves among its
//!   `k` nearest items through the tag tower alone (the trained three-tower model's tag vector
//!   against every item vector), mean over users; the same on items new to the user;
//! - **tag HR@N** (RecGPT report §3.3): whether the category of the user's first next item is
//!   among the categories of their first N tags (each tag's category: the centroid nearest its
//!   text embedding).
//!
//! Baselines: the title tags of the user's own purchases, most recent first (what the fallback
//! pool and the evaluation's ThreeTower use), and the most popular title tags before the split
//! (the same list for everyone); for HR@N also the N most popular categories.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use recgpt_data::{DataError, ItemIx, Store, Timestamp};
use recgpt_retrieval::embed::{EmbedError, Embedder, DIM};
use recgpt_retrieval::interactions::{Interactions, UserItems};
use recgpt_retrieval::metrics::top_k;
use recgpt_retrieval::tower::{TowerError, TowerModel};
use serde::{Deserialize, Serialize};

use recgpt_retrieval::eval::{EvalSet, Protocol};

use crate::channels::{self, ChannelReport, Comparison};
use crate::compress::Compressor;
use crate::config::Config;
use crate::llm::{LlmBackend, TokenCount};
use crate::reason::{Reasoner, StageError, UserReasoning};
use crate::recommend::reasoning_inputs;
use crate::retrieval::Prepared;

/// Errors of the quality loop.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    /// The split leaves no purchases on one side. The caller's fault.
    #[error("split {split} is outside the data (events from {first} to {last}): no user bought on both sides")]
    SplitOutside {
        split: NaiveDate,
        first: NaiveDate,
        last: NaiveDate,
    },
    /// More users asked for than bought on both sides. The caller's fault.
    #[error("a sample of {asked} users: only {eligible} users bought both before {split} and in the {horizon} days after it")]
    SampleTooLarge {
        asked: usize,
        eligible: usize,
        split: NaiveDate,
        horizon: u32,
    },
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Tower(#[from] TowerError),
    /// The reasoning cache could not be read or written.
    #[error("eval llm cache {0}")]
    Cache(String),
}

/// The users of a split: purchases before it, and in the horizon after it.
#[derive(Debug)]
pub struct SplitUsers {
    pub split: NaiveDate,
    pub horizon_days: u32,
    pub before: Interactions,
    pub after: Interactions,
}

impl SplitUsers {
    pub fn read(store: &Store, split: NaiveDate, horizon_days: u32) -> Result<Self, QualityError> {
        let end = split + chrono::Days::new(horizon_days.into());
        let (before, after) = Interactions::split_until(
            store,
            Some(Timestamp::from_date(split)),
            Some(Timestamp::from_date(end)),
        )?;
        let users = Self {
            split,
            horizon_days,
            before,
            after,
        };
        if users.eligible().is_empty() {
            let m = store.manifest();
            return Err(QualityError::SplitOutside {
                split,
                first: m.first_event.date(),
                last: m.last_event.date(),
            });
        }
        Ok(users)
    }

    /// Users who bought on both sides, in user-id order.
    pub fn eligible(&self) -> Vec<&str> {
        self.after
            .users
            .iter()
            .filter(|u| self.before.position(&u.user).is_some())
            .map(|u| u.user.as_str())
            .collect()
    }

    /// `n` eligible users, chosen by a seeded hash of their ids (a larger `n` with the same
    /// seed keeps the smaller sample's users), in sample order.
    pub fn sample(&self, n: usize, seed: u64) -> Result<Vec<String>, QualityError> {
        let mut users = self.eligible();
        if n > users.len() {
            return Err(QualityError::SampleTooLarge {
                asked: n,
                eligible: users.len(),
                split: self.split,
                horizon: self.horizon_days,
            });
        }
        let key =
            |u: &str| crate::hash::mix(crate::hash::fnv1a([&seed.to_le_bytes()[..], u.as_bytes()]));
        users.sort_by_key(|u| (key(u), *u));
        Ok(users.into_iter().take(n).map(str::to_string).collect())
    }

    pub fn sides(&self, user: &str) -> Option<(&UserItems, &UserItems)> {
        let b = self.before.position(user)?;
        let a = self.after.position(user)?;
        Some((&self.before.users[b], &self.after.users[a]))
    }
}

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
            hit_rate_new: new.iter().sum::<f64>() / new.len().max(1) as f64,
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

/// An entry of the reasoning cache (entries written before costs were kept have none).
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    #[serde(flatten)]
    reasoning: UserReasoning,
    #[serde(default)]
    cost: Option<Cost>,
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

/// The loop's inputs besides the LLM.
pub struct LlmEval<'a, T: TokenCount> {
    pub store: &'a Store,
    pub split: &'a SplitUsers,
    pub compressor: &'a Compressor<'a, T>,
    pub reasoner: &'a Reasoner<'a>,
    pub scorer: TagScorer<'a>,
    /// Title tags per user in the baselines (the LLM's tag target).
    pub tags: usize,
    /// Users sent to the backend together.
    pub chunk: usize,
    pub config: &'a Config,
    /// Where each user's interests and tags are kept, by a fingerprint of the narrative and of
    /// everything reasoning depends on (model, prompts, settings, store), so a rerun with the
    /// same inputs (a fusion sweep, a larger nested sample) reasons only for new users.
    pub cache: Option<PathBuf>,
    pub protocol: Protocol,
    /// Also sweep the fusion weights.
    pub sweep: bool,
}

impl<T: TokenCount> std::fmt::Debug for LlmEval<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmEval")
            .field("tags", &self.tags)
            .field("chunk", &self.chunk)
            .finish_non_exhaustive()
    }
}

impl<T: TokenCount> LlmEval<'_, T> {
    /// Interests and tags of `sample` from their histories before the split, scored.
    /// `progress(done)` after each chunk of users.
    pub fn run(
        &self,
        llm: &dyn LlmBackend,
        sample: &[String],
        seed: u64,
        progress: &mut dyn FnMut(usize),
    ) -> Result<LlmEvalReport, QualityError> {
        let window = self
            .store
            .window(Some(self.split.split), Some(self.split.split));
        let started = Instant::now();
        // keyed by what shapes the answers: cached answers are validated again under the
        // tags' validation settings of this run, so a sweep of those needs no model
        let generation = Config {
            tags: self.config.tags.for_generation(),
            ..self.config.clone()
        };
        let inputs = reasoning_inputs(
            self.reasoner.miner.prompts,
            &generation,
            llm.model_id(),
            &self.store.manifest().fingerprint,
        );
        let mut reasoned: Vec<Option<UserReasoning>> = vec![None; sample.len()];
        let mut costs: Vec<Option<Cost>> = vec![None; sample.len()];
        let mut fresh = Vec::new();
        for (u, user) in sample.iter().enumerate() {
            let history = self.store.history(user, &window)?;
            let narrative = self.compressor.compress(&history, &window);
            let key = format!(
                "{:016x}",
                crate::hash::fnv1a([inputs.as_bytes(), b"\x1f", narrative.text.as_bytes()])
            );
            let cached = self
                .cache
                .as_ref()
                .map(|dir| dir.join(format!("{user}-{key}.json")));
            match cached.as_ref().and_then(|p| std::fs::read(p).ok()) {
                Some(bytes) => {
                    let mut entry: Cached = serde_json::from_slice(&bytes).map_err(|e| {
                        QualityError::Cache(format!(
                            "{}: {e}",
                            cached.as_ref().expect("read").display()
                        ))
                    })?;
                    let r = &mut entry.reasoning;
                    r.tags = self.reasoner.predictor.revalidate(
                        &r.tags,
                        &r.interests,
                        &history,
                        narrative.as_of,
                    )?;
                    reasoned[u] = Some(entry.reasoning);
                    costs[u] = entry.cost;
                }
                None => fresh.push((u, history, narrative, cached)),
            }
        }
        let cached_users = sample.len() - fresh.len();
        progress(cached_users);
        for chunk in fresh.chunks(self.chunk.max(1)) {
            let pairs: Vec<_> = chunk.iter().map(|(_, h, n, _)| (h, n)).collect();
            let chunk_started = Instant::now();
            let (out, used) = self.reasoner.run(llm, &pairs)?;
            let each = chunk.len() as f64;
            let cost = Cost {
                seconds: chunk_started.elapsed().as_secs_f64() / each,
                prompt_tokens: used.prompt as f64 / each,
                evaluated_prompt_tokens: used.evaluated() as f64 / each,
                generated_tokens: used.generated as f64 / each,
            };
            for ((u, _, _, path), reasoning) in chunk.iter().zip(out) {
                costs[*u] = Some(cost);
                let entry = Cached {
                    reasoning,
                    cost: Some(cost),
                };
                if let Some(path) = path {
                    let write = || -> std::io::Result<()> {
                        std::fs::create_dir_all(path.parent().expect("in a folder"))?;
                        let tmp = path.with_extension("tmp");
                        std::fs::write(&tmp, serde_json::to_vec(&entry)?)?;
                        std::fs::rename(&tmp, path)
                    };
                    write().map_err(|e| QualityError::Cache(format!("{}: {e}", path.display())))?;
                }
                reasoned[*u] = Some(entry.reasoning);
            }
            progress(reasoned.iter().filter(|r| r.is_some()).count());
        }
        let reasoned: Vec<UserReasoning> = reasoned
            .into_iter()
            .map(|r| r.expect("every user reasoned"))
            .collect();
        let seconds = started.elapsed().as_secs_f64();

        let prepared = self.scorer.prepared;
        let popular: Vec<[f32; DIM]> = popular_tags(prepared, &self.split.before, self.tags)
            .into_iter()
            .map(|t| prepared.tag_vectors[t as usize])
            .collect();
        let top_categories = popular_categories(prepared, &self.split.before, self.scorer.n);
        let mut popular_category_hits = 0usize;
        let mut rows = Vec::new();
        for r in &reasoned {
            let (before, after) = self
                .split
                .sides(&r.interests.user)
                .expect("sampled users bought on both sides");
            let all: Vec<String> = r.tags.tags.iter().map(|t| t.tag.clone()).collect();
            let model: Vec<String> = r
                .tags
                .tags
                .iter()
                .filter(|t| t.source == "model")
                .map(|t| t.tag.clone())
                .collect();
            let title: Vec<[f32; DIM]> = prepared
                .user_title_tags(before, self.tags)
                .into_iter()
                .map(|t| prepared.tag_vectors[t as usize])
                .collect();
            let lists = [
                TagTexts::Texts(&all),
                TagTexts::Texts(&model),
                TagTexts::Embedded(title),
                TagTexts::Embedded(popular.clone()),
            ];
            let mut scores = BTreeMap::new();
            for (method, tags) in METHODS.iter().zip(lists) {
                scores.insert(method.to_string(), self.scorer.score(tags, before, after)?);
            }
            popular_category_hits += usize::from(after.bought.last().is_some_and(|&i| {
                top_categories.contains(&prepared.features.category[i as usize])
            }));
            rows.push(user_row(r, before, after, scores));
        }
        let methods = METHODS
            .iter()
            .map(|m| {
                let scores: Vec<TagScore> = rows.iter().map(|r| r.scores[*m]).collect();
                MethodRow::of(m, &scores)
            })
            .collect();
        let words = catalog_words(self.compressor);
        let users = rows.len().max(1) as f64;
        let timed: Vec<Cost> = costs.iter().flatten().copied().collect();
        let per_timed_user = |f: fn(&Cost) -> f64| -> f64 {
            timed.iter().map(f).sum::<f64>() / timed.len().max(1) as f64
        };
        let stages = StageFigures {
            model_share: Spread::of(&rows.iter().map(|r| r.model_share).collect::<Vec<_>>()),
            users_below_60_percent: rows.iter().filter(|r| r.model_share < 0.6).count(),
            interests: Spread::of(
                &rows
                    .iter()
                    .map(|r| r.interests.len() as f64)
                    .collect::<Vec<_>>(),
            ),
            model_descriptions: Spread::of(
                &rows
                    .iter()
                    .map(|r| r.model_descriptions as f64)
                    .collect::<Vec<_>>(),
            ),
            answers: rows.iter().map(|r| r.answers).sum(),
            unparsable: rows.iter().map(|r| r.unparsable).sum(),
            cut_off: rows.iter().map(|r| r.cut_off).sum(),
            rejected: rows.iter().fold(BTreeMap::new(), |mut all, r| {
                for (k, v) in &r.rejected {
                    *all.entry(k.clone()).or_default() += v;
                }
                all
            }),
            tags_with_catalog_words: {
                let tags: Vec<&str> = reasoned
                    .iter()
                    .flat_map(|r| r.tags.tags.iter().map(|t| t.tag.as_str()))
                    .collect();
                let known = tags
                    .iter()
                    .filter(|t| t.split(' ').all(|w| words.contains(w)))
                    .count();
                known as f64 / tags.len().max(1) as f64
            },
            seconds,
            cached_users,
            timed_users: timed.len(),
            users_per_minute: match per_timed_user(|c| c.seconds) {
                s if s > 0.0 => 60.0 / s,
                _ => 0.0,
            },
            prompt_tokens_per_user: per_timed_user(|c| c.prompt_tokens),
            evaluated_prompt_tokens_per_user: per_timed_user(|c| c.evaluated_prompt_tokens),
            generated_tokens_per_user: per_timed_user(|c| c.generated_tokens),
        };
        let mut prompt_versions: Vec<String> = reasoned
            .iter()
            .flat_map(|r| {
                [
                    r.interests.prompt_version.clone(),
                    r.tags.prompt_version.clone(),
                ]
            })
            .collect();
        prompt_versions.sort();
        prompt_versions.dedup();

        let model = self.scorer.model;
        let mut llm_tags = HashMap::new();
        for r in &reasoned {
            let texts: Vec<&str> = r.tags.tags.iter().map(|t| t.tag.as_str()).collect();
            let embedded = self.scorer.embedder.embed(&texts)?;
            llm_tags.insert(r.interests.user.clone(), model.tag_vectors(&embedded)?);
        }
        let set = EvalSet {
            users: reasoned
                .iter()
                .map(|r| {
                    self.split
                        .sides(&r.interests.user)
                        .expect("sampled users bought on both sides")
                })
                .collect(),
        };
        let comparison = Comparison {
            config: self.config,
            prepared,
            model,
            before: &self.split.before,
            llm_tags: &llm_tags,
            protocol: self.protocol,
            seed,
        };
        let channels = channels::compare(&comparison, &set, self.sweep)?;
        Ok(LlmEvalReport {
            split: self.split.split.to_string(),
            horizon_days: self.split.horizon_days,
            sample_seed: seed,
            users: rows.len(),
            eligible_users: self.split.eligible().len(),
            model_id: llm.model_id().to_string(),
            prompt_versions,
            k: self.scorer.k,
            n: self.scorer.n,
            methods,
            popular_categories_hr_at_n: popular_category_hits as f64 / users,
            stages,
            channels: Some(channels),
            per_user: rows,
        })
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

/// Every word of the catalog's item texts (lower case, split on white space and the
/// punctuation that separates words in titles).
fn catalog_words<T: TokenCount>(compressor: &Compressor<'_, T>) -> HashSet<String> {
    compressor
        .texts()
        .compacts()
        .flat_map(|t| {
            t.split(|c: char| c.is_whitespace() || "(),;/&+:.!?'\"".contains(c))
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn user_row(
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
