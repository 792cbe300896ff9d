//! The whole chain for a group of users: interests and tags (the LLM), retrieval with those
//! tags (three towers + vector index), the interest behind each retrieved item, and its
//! explanation; stored per user in the results store.
//!
//! The list is the weighted reciprocal-rank fusion (`[fusion]`) of three channels, each item
//! labelled with the channel whose term was largest ([`CHANNELS`]): `cf`, collaborative
//! filtering on the user's purchases (EASE, or sparse item-kNN on a large catalog); `user`,
//! the user tower's query alone; `llm`, the LLM's tags through the three towers (one query per
//! tag plus the user query, max fusion).
//!
//! The interest behind an item is the interest of the tag whose query retrieved it. An item
//! no tag query found (from the user query or CF alone) takes the user's interest nearest its
//! title (cosine of the MiniLM embeddings of the interest's "name: description" and the
//! item's title), so every item, CF's included, has an interest and an explanation.

use std::collections::HashMap;

use recgpt_data::{History, ItemIx};
use recgpt_retrieval::baselines::Scorer;
use recgpt_retrieval::fusion::reciprocal_rank;
use recgpt_retrieval::index::{IndexError, VectorIndex};
use recgpt_retrieval::interactions::UserItems;
use recgpt_retrieval::metrics::top_k;
use recgpt_retrieval::retrieve::{retrieve, Candidate, RetrieveConfig, TagQuery};
use recgpt_retrieval::tower::{TowerError, TowerModel};
use serde::Serialize;

use crate::compress::Narrative;
use crate::config::Config;
use crate::embed::{cosine, EmbedError, Embedder};
use crate::explain::keys::{InterestKeys, KeyError};
use crate::explain::{ExplainCounts, ExplainError, Explainer, Pair};
use crate::interests::Interest;
use crate::llm::TokenUse;
use crate::prompts::{Prompts, Task};
use crate::reason::{Reasoner, StageError, UserReasoning};
use crate::results::{Recommendation, ResultStore, ResultsError, UserResult};
use crate::retrieval::{recently_bought, Prepared};

mod link;
pub use link::{link, ItemLink};

/// Errors of the chain.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Explain(#[from] ExplainError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Tower(#[from] TowerError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Results(#[from] ResultsError),
}

/// What a call did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainCounts {
    pub users: usize,
    /// Tokens of every LLM stage (reason and explain; `explain.tokens` is the latter).
    pub tokens: TokenUse,
    pub explain: ExplainCounts,
    /// Seconds per stage: `reason` (interests + tags), `retrieve`, `explain`.
    pub seconds: HashMap<String, f64>,
}

/// Everything the chain reads.
pub struct Recommender<'a> {
    pub config: &'a Config,
    pub reasoner: Reasoner<'a>,
    pub explainer: Explainer<'a>,
    pub prepared: &'a Prepared,
    pub model: &'a TowerModel,
    pub index: &'a dyn VectorIndex,
    pub embedder: &'a Embedder,
    pub results: &'a ResultStore,
    /// The collaborative-filtering channel, fitted on the towers' training purchases
    /// ([`crate::retrieval::cf_channel`]); `None` leaves it out of the fusion.
    pub cf: Option<&'a (dyn Scorer + Send + Sync)>,
}

impl std::fmt::Debug for Recommender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommender")
            .field("index", &self.index.kind())
            .field("cf", &self.cf.map(|c| c.name()))
            .finish_non_exhaustive()
    }
}

/// The channels fused into a user's list, as each recommendation names its own.
pub const CHANNELS: [&str; 3] = ["cf", "user", "llm"];

/// A retrieved candidate (its score the fused one; its tag the tag query that found it, if
/// any did), the channel it came from and the index of the interest behind it (`None` when
/// the user has no interest).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub candidate: Candidate,
    pub channel: &'static str,
    pub interest: Option<usize>,
}

/// One user after reasoning and retrieval, ready to be explained.
#[derive(Debug, Clone)]
pub struct Retrieved {
    pub user: String,
    pub as_of: chrono::NaiveDate,
    pub fingerprints: Fingerprints,
    pub reasoning: UserReasoning,
    pub found: Vec<Found>,
}

/// Hashes of what every user's result of a run depends on besides the user's narrative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInputs {
    /// Everything: see [`Recommender::shared_inputs`].
    pub shared: String,
    /// What the interests and tags depend on: see [`Recommender::reasoning_inputs`].
    pub reasoning: String,
}

/// A user's two fingerprints: of the whole result, and of its interests and tags alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprints {
    pub result: String,
    pub reasoning: String,
}

impl RunInputs {
    /// The fingerprints of the user with `narrative`.
    pub fn fingerprints(&self, narrative: &Narrative) -> Fingerprints {
        Fingerprints {
            result: fingerprint(narrative, &self.shared),
            reasoning: fingerprint(narrative, &self.reasoning),
        }
    }
}

/// A fingerprint: the narrative and a run's inputs.
fn fingerprint(narrative: &Narrative, inputs: &str) -> String {
    format!(
        "{:016x}",
        crate::hash::fnv1a([narrative.text.as_bytes(), b"\x1f", inputs.as_bytes()])
    )
}

impl Recommender<'_> {
    /// Runs the chain for `users` (histories and their narratives), stores each user's result
    /// and returns them in order.
    pub fn run(
        &self,
        llm: &dyn crate::llm::LlmBackend,
        keys: &mut InterestKeys,
        users: &[(&History, &Narrative)],
    ) -> Result<(Vec<UserResult>, ChainCounts), RecommendError> {
        let mut counts = ChainCounts {
            users: users.len(),
            ..ChainCounts::default()
        };
        let mut clock = std::time::Instant::now();
        let mut lap = |counts: &mut ChainCounts, stage: &str| {
            counts
                .seconds
                .insert(stage.to_string(), clock.elapsed().as_secs_f64());
            clock = std::time::Instant::now();
        };
        let (reasoning, tokens) = self.reasoner.run(llm, users)?;
        counts.tokens = tokens;
        lap(&mut counts, "reason");

        let inputs = self.inputs(llm.model_id());
        let mut retrieved = Vec::with_capacity(users.len());
        for ((history, narrative), reasoning) in users.iter().zip(reasoning) {
            retrieved.push(Retrieved {
                user: history.user.clone(),
                as_of: narrative.as_of,
                fingerprints: inputs.fingerprints(narrative),
                found: self.retrieve(history, narrative, &reasoning)?,
                reasoning,
            });
        }
        lap(&mut counts, "retrieve");

        let (out, explain) = self.explain(llm, keys, retrieved)?;
        counts.tokens.merge(&explain.tokens);
        counts.explain = explain;
        for result in &out {
            self.results.put_user(result)?;
        }
        lap(&mut counts, "explain");
        Ok((out, counts))
    }

    /// Explains every user's candidates (all pairs in one explain call) and assembles the
    /// users' results, in order (not stored).
    pub fn explain(
        &self,
        llm: &dyn crate::llm::LlmBackend,
        keys: &mut InterestKeys,
        users: Vec<Retrieved>,
    ) -> Result<(Vec<UserResult>, ExplainCounts), RecommendError> {
        let names: Vec<&str> = users
            .iter()
            .flat_map(|u| {
                u.reasoning
                    .interests
                    .interests
                    .iter()
                    .map(|i| i.name.as_str())
            })
            .collect();
        let resolved = keys.resolve(self.results, self.embedder, &names)?;
        let key_of: HashMap<String, String> =
            names.iter().map(|n| n.to_string()).zip(resolved).collect();
        let mut pair_list = Vec::new();
        for u in &users {
            for Found {
                candidate: c,
                interest,
                ..
            } in &u.found
            {
                if let Some(i) = interest {
                    let i: &Interest = &u.reasoning.interests.interests[*i];
                    pair_list.push(Pair {
                        interest: i.name.clone(),
                        description: i.description.clone(),
                        key: key_of[&i.name].clone(),
                        item: c.item,
                    });
                }
            }
        }
        let (explanations, counts) = self.explainer.explain(llm, self.results, &pair_list)?;
        let mut explanations = explanations.into_iter();

        let catalog = self.explainer.catalog;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let interests = &u.reasoning.interests.interests;
            let recommendations = u
                .found
                .into_iter()
                .map(|found| {
                    let Found {
                        candidate: c,
                        channel,
                        interest,
                    } = found;
                    let item = catalog.get(c.item);
                    let (interest, interest_key, explanation, explanation_source) = match interest {
                        Some(i) => {
                            let e = explanations.next().expect("one explanation per pair");
                            (
                                Some(interests[i].name.clone()),
                                Some(e.key.interest_key),
                                Some(e.text),
                                Some(e.source),
                            )
                        }
                        None => (None, None, None, None),
                    };
                    Recommendation {
                        item: item.id.clone(),
                        title: item.title.clone(),
                        category: self.explainer.category(c.item).map(str::to_string),
                        score: c.score,
                        tag: c.tag,
                        channel: channel.to_string(),
                        interest,
                        interest_key,
                        explanation,
                        explanation_source,
                    }
                })
                .collect();
            let interest_keys = interests.iter().map(|i| key_of[&i.name].clone()).collect();
            out.push(UserResult {
                user: u.user,
                interest_keys,
                as_of: u.as_of.to_string(),
                fingerprint: u.fingerprints.result,
                reasoning_fingerprint: u.fingerprints.reasoning,
                interests: u.reasoning.interests,
                tags: u.reasoning.tags,
                recommendations,
            });
        }
        Ok((out, counts))
    }

    /// A user's candidates: the fused list of the channels, each item with its channel and
    /// the interest behind it.
    pub fn retrieve(
        &self,
        history: &History,
        narrative: &Narrative,
        r: &UserReasoning,
    ) -> Result<Vec<Found>, RecommendError> {
        let events: Vec<_> = history.events.iter().collect();
        let items = UserItems::from_events(&history.user, &events);
        let user = self.model.user_vector(&items, &self.prepared.features)?;
        let texts: Vec<&str> = r.tags.tags.iter().map(|t| t.tag.as_str()).collect();
        let tag_vectors = self.model.tag_vectors(&self.embedder.embed(&texts)?)?;
        let queries: Vec<TagQuery> = texts
            .iter()
            .zip(tag_vectors)
            .map(|(t, vector)| TagQuery {
                tag: t.to_string(),
                vector,
            })
            .collect();
        let filter = recently_bought(
            history,
            narrative.as_of,
            self.config.retrieve.exclude_bought_days,
        );
        let fusion = &self.config.fusion;
        // each channel's ranking: `depth` items beyond the history, as in the evaluation
        let depth = fusion.depth + items.bought.len();
        let deep = RetrieveConfig {
            k: depth,
            ..self.config.retrieve.clone()
        };
        let llm = retrieve(self.index, self.model, &user, &queries, &filter, &deep)?;
        let user_only: Vec<ItemIx> = if fusion.user > 0.0 {
            let hits = self
                .index
                .search(std::slice::from_ref(&user), depth, &filter)?;
            hits.into_iter().flatten().map(|h| h.item).collect()
        } else {
            Vec::new()
        };
        let cf: Vec<ItemIx> = match self.cf {
            Some(cf) => {
                let mut scores = vec![0f32; self.model.item_vectors.len()];
                cf.score(&items, &mut scores);
                top_k(&scores, depth, &filter.exclude)
            }
            None => Vec::new(),
        };
        let lists = [
            (cf, fusion.cf),
            (user_only, fusion.user),
            (llm.iter().map(|c| c.item).collect(), fusion.llm),
        ];
        let mut fused = reciprocal_rank(&lists, fusion.k0);
        fused.truncate(self.config.retrieve.k);
        let tag_of: HashMap<ItemIx, &str> = llm
            .iter()
            .filter_map(|c| Some((c.item, c.tag.as_deref()?)))
            .collect();

        let interests = &r.interests.interests;
        let by_name: HashMap<&str, usize> = interests
            .iter()
            .enumerate()
            .map(|(i, x)| (x.name.as_str(), i))
            .collect();
        let tag_interest: HashMap<&str, &str> = r
            .tags
            .tags
            .iter()
            .map(|t| (t.tag.as_str(), t.interest.as_str()))
            .collect();
        let through_tag: Vec<Option<usize>> = fused
            .iter()
            .map(|f| {
                tag_of
                    .get(&f.item)
                    .and_then(|t| tag_interest.get(t))
                    .and_then(|name| by_name.get(name).copied())
            })
            .collect();
        // interests are embedded only when an item came without a tag's interest
        let interest_vectors = if through_tag.iter().any(Option::is_none) && !interests.is_empty() {
            let texts: Vec<String> = interests
                .iter()
                .map(|i| format!("{}: {}", i.name, i.description))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.embedder.embed(&refs)?
        } else {
            Vec::new()
        };
        Ok(fused
            .into_iter()
            .zip(through_tag)
            .map(|(f, through_tag)| {
                let interest = through_tag.or_else(|| {
                    let title = &self.prepared.features.titles[f.item as usize];
                    interest_vectors
                        .iter()
                        .enumerate()
                        .max_by(|a, b| cosine(a.1, title).total_cmp(&cosine(b.1, title)))
                        .map(|(i, _)| i)
                });
                Found {
                    candidate: Candidate {
                        item: f.item,
                        score: f.score,
                        tag: tag_of.get(&f.item).map(|t| t.to_string()),
                    },
                    channel: CHANNELS[f.channel],
                    interest,
                }
            })
            .collect())
    }

    /// Both hashes of a run's inputs, for `model_id`.
    pub fn inputs(&self, model_id: &str) -> RunInputs {
        RunInputs {
            shared: self.shared_inputs(model_id),
            reasoning: self.reasoning_inputs(model_id),
        }
    }

    /// Hash of what every user's result depends on besides the narrative: the reasoning's
    /// inputs ([`Recommender::reasoning_inputs`]), the explain prompt and rules versions, the
    /// trained towers, the index, and the configuration sections that shape the rest of a
    /// result (not `[serve]`, `[job]` or the backend's batch and thread settings).
    pub fn shared_inputs(&self, model_id: &str) -> String {
        let c = self.config;
        let meta = &self.model.meta;
        let sections = serde_json::json!({
            "retrieve": c.retrieve,
            "fusion": c.fusion,
            "cf": [
                self.cf.map(|cf| cf.name()),
                c.eval.ease_lambda,
                c.eval.ease_max_items,
                c.eval.knn_neighbours,
            ],
            "explain": c.explain,
            "towers": [&meta.config, &meta.until, &meta.store_fingerprint, &meta.losses],
            "index": [self.index.kind(), self.index.len()],
        });
        hash_parts(&[
            self.reasoning_inputs(model_id),
            self.explainer.version(),
            sections.to_string(),
        ])
    }

    /// Hash of what a user's interests and tags depend on besides the narrative: the interests
    /// and tags prompt versions, the LLM and its sampling, the configuration of compression,
    /// interests, tags and categories, and the event store the catalog comes from (as the
    /// towers were trained on it). A change elsewhere (explain rules, retrieval, the towers)
    /// leaves it as it is, so the job keeps the stored interests and tags and redoes only what
    /// follows them.
    pub fn reasoning_inputs(&self, model_id: &str) -> String {
        reasoning_inputs(
            self.explainer.prompts,
            self.config,
            model_id,
            &self.model.meta.store_fingerprint,
        )
    }
}

/// The version of the code that turns a narrative into interests and tags beyond the prompts
/// and settings (theme mining, how rounds share the themes, the validation rules): raised with
/// any change to it, so that outputs stored or cached under older rules are made again.
pub const REASONING_RULES: &str = "3";

/// [`Recommender::reasoning_inputs`] from its parts (`store`: the event store's fingerprint).
pub fn reasoning_inputs(prompts: &Prompts, c: &Config, model_id: &str, store: &str) -> String {
    let sections = serde_json::json!({
        "compress": c.compress,
        "sampling": c.llm.sampling,
        "interests": c.interests,
        "tags": c.tags,
        "categories": c.categories,
        "store": store,
    });
    hash_parts(&[
        REASONING_RULES.to_string(),
        prompts.version(Task::Interests),
        prompts.version(Task::Tags),
        model_id.to_string(),
        sections.to_string(),
    ])
}

/// FNV-1a of `parts`, each ended by a unit separator, as 16 hex digits.
fn hash_parts(parts: &[String]) -> String {
    let bytes = parts.iter().flat_map(|p| [p.as_bytes(), b"\x1f"]);
    format!("{:016x}", crate::hash::fnv1a(bytes))
}
