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
use recgpt_data::{DataError, Store};
use recgpt_retrieval::embed::{EmbedError, DIM};
use recgpt_retrieval::tower::TowerError;
use serde::{Deserialize, Serialize};

use recgpt_retrieval::eval::{EvalSet, Protocol};

use crate::channels::{self, ChannelReport, Comparison};
use crate::compress::Compressor;
use crate::config::Config;
use crate::llm::{LlmBackend, TokenCount};
use crate::reason::{Reasoner, StageError, UserReasoning};
use crate::recommend::reasoning_inputs;
use crate::retrieval::Prepared;

mod report;
mod sample;
mod score;

pub use report::*;
pub use sample::SplitUsers;
pub use score::*;

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

/// An entry of the reasoning cache (entries written before costs were kept have none).
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    #[serde(flatten)]
    reasoning: UserReasoning,
    #[serde(default)]
    cost: Option<Cost>,
}

/// The sample's interests and tags, and what they cost.
struct Reasoned {
    users: Vec<UserReasoning>,
    /// Per user, when known (cache entries written before costs were kept have none).
    costs: Vec<Option<Cost>>,
    cached_users: usize,
    seconds: f64,
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
    /// Interests and tags of `sample` from their histories before the split: from the cache
    /// (validated again under this run's tags settings) or from the model, in chunks.
    fn reason(
        &self,
        llm: &dyn LlmBackend,
        sample: &[String],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Reasoned, QualityError> {
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
        Ok(Reasoned {
            users: reasoned,
            costs,
            cached_users,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Each user's scores for every method, and how many users' first next item is in a
    /// popular category.
    fn score_users(
        &self,
        reasoned: &[UserReasoning],
    ) -> Result<(Vec<UserRow>, usize), QualityError> {
        let prepared = self.scorer.prepared;
        let popular: Vec<[f32; DIM]> = popular_tags(prepared, &self.split.before, self.tags)
            .into_iter()
            .map(|t| prepared.tag_vectors[t as usize])
            .collect();
        let top_categories = popular_categories(prepared, &self.split.before, self.scorer.n);
        let mut popular_category_hits = 0usize;
        let mut rows = Vec::new();
        for r in reasoned {
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
        Ok((rows, popular_category_hits))
    }

    /// The stages' figures over the sample: model share, interests, descriptions, answers,
    /// rejections, catalog words, speed and tokens (over the users with a known cost).
    fn stage_figures(
        &self,
        rows: &[UserRow],
        reasoned: &[UserReasoning],
        costs: &[Option<Cost>],
        cached_users: usize,
        seconds: f64,
    ) -> StageFigures {
        let words = catalog_words(self.compressor);
        let timed: Vec<Cost> = costs.iter().flatten().copied().collect();
        let per_timed_user =
            |f: fn(&Cost) -> f64| -> f64 { recgpt_retrieval::metrics::mean(timed.iter().map(f)) };
        StageFigures {
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
        }
    }

    /// Interests and tags of `sample` from their histories before the split, scored.
    /// `progress(done)` after each chunk of users.
    pub fn run(
        &self,
        llm: &dyn LlmBackend,
        sample: &[String],
        seed: u64,
        progress: &mut dyn FnMut(usize),
    ) -> Result<LlmEvalReport, QualityError> {
        let Reasoned {
            users: reasoned,
            costs,
            cached_users,
            seconds,
        } = self.reason(llm, sample, progress)?;
        let (rows, popular_category_hits) = self.score_users(&reasoned)?;
        let prepared = self.scorer.prepared;
        let methods = METHODS
            .iter()
            .map(|m| {
                let scores: Vec<TagScore> = rows.iter().map(|r| r.scores[*m]).collect();
                MethodRow::of(m, &scores)
            })
            .collect();
        let users = rows.len().max(1) as f64;
        let stages = self.stage_figures(&rows, &reasoned, &costs, cached_users, seconds);
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
