//! The inspector's JSON routes: everything the `/ui/` pages show comes from here, served, cached
//! and authorised like every other answer.
//!
//! - `GET /v1/users?limit=50&offset=0`: the users with stored results, most active first.
//! - `GET /v1/summary`: what the batch job stored: users done and failed, the explanation
//!   cache's reuse, the models and prompt versions behind the results.
//! - `GET /v1/users/{user_id}/chain`: one user's whole chain: the narrative (recomputed from the
//!   event store under this server's `[compress]` settings), interests with their evidence,
//!   tags, recommendations with their explanations' cache rows, and what the user bought after
//!   the day the chain was computed as of, when the store has it.
//! - `GET /v1/eval`: the newest retrieval evaluation and LLM quality-loop reports under the data
//!   home's `eval/`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use recgpt_data::{BehaviorKind, TimeWindow};
use recgpt_pipeline::compress::Compressor;
use recgpt_pipeline::explain::{reuse::CacheReuse, ExplanationKey, ExplanationStore};
use recgpt_pipeline::llm::{GgufTokenizer, TokenCounter};
use recgpt_pipeline::results::{ResultsError, UserResult};
use recgpt_pipeline::stats::{activity, UserActivity};
use recgpt_pipeline::{judge, reports};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{check_id, RecommendationOut};
use super::error::ErrorBody;
use super::{ApiError, AppState};

/// Most users one `GET /v1/users` returns.
pub const MAX_USERS_PAGE: usize = 1000;
/// Most later purchases a chain lists (the most recent first).
pub const MAX_AFTER: usize = 200;

/// What the inspector's routes compute once and keep.
#[derive(Default)]
pub struct Inspector {
    /// Every user of the event store, most active first (the store does not change while a
    /// server runs).
    activity: OnceLock<Result<Vec<UserActivity>, String>>,
    /// The tokenizer the narratives are counted with; `None` when the model file cannot be read.
    counter: OnceLock<Option<TokenCounter<GgufTokenizer>>>,
    /// The summary and the results store's revision it was computed at.
    summary: Mutex<Option<(i64, Arc<SummaryOut>)>>,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector").finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserRowOut {
    pub user_id: String,
    /// Events in the store.
    pub events: usize,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsersOut {
    /// Users with stored results.
    pub total: usize,
    pub users: Vec<UserRowOut>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UsersQuery {
    /// 1 to 1000, default 50.
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// The models and prompt versions behind the stored results, and how many users each.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionsOut {
    pub model_id: String,
    pub interests_prompt: String,
    pub tags_prompt: String,
    pub as_of: String,
    pub users: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SummaryOut {
    /// The results store's revision the summary was computed at.
    pub revision: i64,
    pub users: u64,
    pub failed: u64,
    pub failed_by_stage: BTreeMap<String, usize>,
    pub interest_keys: u64,
    pub explanations: u64,
    pub versions: Vec<VersionsOut>,
    /// Reuse of the explanation cache under this server's prompt version and model (see
    /// `recgpt stats explanations`); absent when the server does not know its model.
    #[schema(value_type = Option<Object>)]
    pub explanation_cache: Option<CacheReuse>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NarrativeOut {
    /// `time (behaviours) | items` lines, newest first, after a header line.
    pub text: String,
    pub tokens: usize,
    pub budget: usize,
    pub events: u64,
    pub events_kept: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvidenceOut {
    pub item_id: String,
    pub title: String,
    /// What the model wrote.
    pub text: String,
    /// How the narrative names the item (find it there).
    pub narrative_text: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainInterestOut {
    pub name: String,
    /// The explanation cache's key of the interest.
    pub key: Option<String>,
    pub description: String,
    /// `model` or `template`.
    pub description_source: String,
    pub evidence: Vec<EvidenceOut>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagOut {
    pub tag: String,
    pub interest: String,
    /// `model` or `fallback`.
    pub source: String,
    pub category: Option<String>,
    pub rationale: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainRecommendationOut {
    #[serde(flatten)]
    pub recommendation: RecommendationOut,
    /// The explanation's cache row holds a judge's verdict: `pass` (the judge graded the
    /// stored answer), `template` (every answer failed); absent when no judge graded it.
    pub judge: Option<String>,
    /// Why earlier answers for the pair were rejected (`judge:POINT` for the judge's).
    pub rejected: Vec<String>,
    /// The user bought the item after the chain's day.
    pub bought_after: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchaseOut {
    pub item_id: String,
    pub title: String,
    /// The first day it was bought after the chain's day.
    pub first: String,
    pub times: usize,
    /// Among the user's stored recommendations.
    pub recommended: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainOut {
    pub user_id: String,
    pub as_of: String,
    pub model_id: String,
    pub interests_prompt: String,
    pub tags_prompt: String,
    /// `None` when this server cannot count tokens (no readable model file).
    pub narrative: Option<NarrativeOut>,
    pub interests: Vec<ChainInterestOut>,
    pub tags: Vec<TagOut>,
    pub recommendations: Vec<ChainRecommendationOut>,
    /// Purchases after `as_of`, by first day, newest first (at most 200).
    pub after: Vec<PurchaseOut>,
    /// Distinct items bought after `as_of`, and those among the recommendations.
    pub after_items: usize,
    pub after_recommended: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportOut {
    /// The report's file under the data home's `eval/`.
    pub file: String,
    /// As written by `recgpt eval` (an LLM report without its per-user rows).
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvalOut {
    /// The newest `recgpt eval --split …` report.
    pub retrieval: Option<ReportOut>,
    /// The newest `recgpt eval llm …` report.
    pub llm: Option<ReportOut>,
}

impl AppState {
    /// Every user of the event store, most active first. Blocking (once).
    fn activity(&self) -> Result<&[UserActivity], ApiError> {
        let rows = self.inspector.activity.get_or_init(|| {
            let window = self.store.window(None, None);
            activity(&self.store, &window).map_err(|e| e.to_string())
        });
        rows.as_deref().map_err(ApiError::internal)
    }

    /// The stored users, most active first. Blocking.
    fn stored_users(&self, offset: usize, limit: usize) -> Result<UsersOut, ApiError> {
        let stored: HashSet<String> = self
            .results
            .users()
            .map_err(ApiError::internal)?
            .into_iter()
            .collect();
        let rows = self.activity()?;
        let users = rows
            .iter()
            .filter(|r| stored.contains(&r.user))
            .skip(offset)
            .take(limit)
            .map(|r| UserRowOut {
                user_id: r.user.clone(),
                events: r.events,
                first: r.first.clone(),
                last: r.last.clone(),
            })
            .collect();
        Ok(UsersOut {
            total: stored.len(),
            users,
        })
    }

    /// The summary at the store's current revision (recomputed only when it changed). Blocking.
    fn summary(&self) -> Result<Arc<SummaryOut>, ApiError> {
        let revision = self.results.max_revision().map_err(ApiError::internal)?;
        if let Some((r, s)) = &*self.inspector.summary.lock().expect("not poisoned") {
            if *r == revision {
                return Ok(s.clone());
            }
        }
        let counts = self.results.counts().map_err(ApiError::internal)?;
        let mut failed_by_stage = BTreeMap::new();
        for f in self.results.failures().map_err(ApiError::internal)? {
            *failed_by_stage.entry(f.stage).or_insert(0) += 1;
        }
        let mut versions: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
        self.results
            .for_each_user(|r: UserResult| {
                let key = (
                    r.interests.model_id,
                    r.interests.prompt_version,
                    r.tags.prompt_version,
                    r.as_of,
                );
                *versions.entry(key).or_insert(0) += 1;
                Ok::<_, ResultsError>(())
            })
            .map_err(ApiError::internal)?;
        let model_id = match &self.generator {
            Some(g) => Some(g.llm.model_id().to_string()),
            None => self.config.llm.model_id(),
        };
        let explanation_cache = match model_id {
            Some(model) => Some(
                CacheReuse::measure(
                    &self.results,
                    &judge::explanation_version(&self.config),
                    &model,
                )
                .map_err(ApiError::internal)?,
            ),
            None => None,
        };
        let mut versions: Vec<VersionsOut> = versions
            .into_iter()
            .map(
                |((model_id, interests_prompt, tags_prompt, as_of), users)| VersionsOut {
                    model_id,
                    interests_prompt,
                    tags_prompt,
                    as_of,
                    users,
                },
            )
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.users));
        let summary = Arc::new(SummaryOut {
            revision,
            users: counts.users,
            failed: counts.failures,
            failed_by_stage,
            interest_keys: counts.interest_keys,
            explanations: counts.explanations,
            versions,
            explanation_cache,
        });
        *self.inspector.summary.lock().expect("not poisoned") = Some((revision, summary.clone()));
        Ok(summary)
    }

    /// One user's whole chain around their stored result. Blocking.
    fn chain(&self, stored: &UserResult) -> Result<ChainOut, ApiError> {
        let catalog = self.catalog();
        let as_of = recgpt_data::parse_date(&stored.as_of).map_err(ApiError::internal)?;
        let last = self.store.manifest().last_event;
        let history = self
            .store
            .history(&stored.user, &TimeWindow::resolve(None, None, last))
            .map_err(ApiError::internal)?;
        let window = TimeWindow::resolve(Some(as_of), Some(as_of), last);
        let before = recgpt_data::History {
            user: history.user.clone(),
            events: history
                .events
                .iter()
                .filter(|e| window.contains(e.at))
                .cloned()
                .collect(),
        };
        let counter = self.inspector.counter.get_or_init(|| {
            recgpt_pipeline::llm::GgufTokenizer::load(&self.config.llm.model)
                .map(TokenCounter::new)
                .map_err(|e| tracing::warn!("no narratives in /v1/users/…/chain: {e}"))
                .ok()
        });
        let compressor = counter
            .as_ref()
            .map(|c| Compressor::new(catalog, self.config.compress.clone(), c));
        let narrative = compressor.as_ref().map(|c| {
            let n = c.compress(&before, &window);
            NarrativeOut {
                text: n.text,
                tokens: n.tokens,
                budget: n.budget,
                events: n.events,
                events_kept: n.events_kept,
            }
        });

        let interests = stored
            .interests
            .interests
            .iter()
            .enumerate()
            .map(|(i, interest)| ChainInterestOut {
                name: interest.name.clone(),
                key: stored.interest_keys.get(i).cloned(),
                description: interest.description.clone(),
                description_source: interest.description_source.clone(),
                evidence: interest
                    .evidence
                    .iter()
                    .map(|e| {
                        let ix = catalog.ix(&e.item);
                        EvidenceOut {
                            item_id: e.item.clone(),
                            title: ix
                                .map(|ix| catalog.get(ix).title.clone())
                                .unwrap_or_default(),
                            text: e.text.clone(),
                            narrative_text: ix
                                .zip(compressor.as_ref())
                                .zip(narrative.as_ref())
                                .map(|((ix, c), n)| {
                                    recgpt_pipeline::compress::name_in(
                                        &n.text,
                                        c.texts().compact(ix),
                                    )
                                    .to_string()
                                }),
                        }
                    })
                    .collect(),
            })
            .collect();
        let tags = stored
            .tags
            .tags
            .iter()
            .map(|t| TagOut {
                tag: t.tag.clone(),
                interest: t.interest.clone(),
                source: t.source.clone(),
                category: t.category.clone(),
                rationale: t.rationale.clone(),
            })
            .collect();

        // what was bought after the chain's day: item → (first day, times)
        let mut after: HashMap<&str, (recgpt_data::Timestamp, usize)> = HashMap::new();
        for e in history.events.iter().filter(|e| !window.contains(e.at)) {
            if let (BehaviorKind::Purchase, Some(ix)) = (e.kind, e.item) {
                // events are oldest first: the first one seen is the first day
                after
                    .entry(catalog.get(ix).id.as_str())
                    .or_insert((e.at, 0))
                    .1 += 1;
            }
        }
        let recommended: HashSet<&str> = stored
            .recommendations
            .iter()
            .map(|r| r.item.as_str())
            .collect();

        let version = judge::explanation_version(&self.config);
        let judged = judge::Verifier::id_of(&self.config).is_some();
        let mut recommendations = Vec::with_capacity(stored.recommendations.len());
        for r in &stored.recommendations {
            let row = match &r.interest_key {
                Some(key) => self
                    .results
                    .explanation(&ExplanationKey {
                        interest_key: key.clone(),
                        item: r.item.clone(),
                        prompt_version: version.clone(),
                        model_id: stored.interests.model_id.clone(),
                    })
                    .map_err(ApiError::internal)?,
                None => None,
            };
            let judge = row
                .as_ref()
                .filter(|_| judged)
                .map(|e| match e.source.as_str() {
                    "model" => "pass".to_string(),
                    _ => "template".to_string(),
                });
            recommendations.push(ChainRecommendationOut {
                recommendation: RecommendationOut::from(r),
                judge,
                rejected: row.map(|e| e.rejected).unwrap_or_default(),
                bought_after: after.contains_key(r.item.as_str()),
            });
        }
        let after_items = after.len();
        let after_recommended = after.keys().filter(|i| recommended.contains(*i)).count();
        let mut after: Vec<PurchaseOut> = after
            .into_iter()
            .map(|(item, (first, times))| PurchaseOut {
                item_id: item.to_string(),
                title: catalog
                    .ix(item)
                    .map(|ix| catalog.get(ix).title.clone())
                    .unwrap_or_default(),
                first: first.to_string(),
                times,
                recommended: recommended.contains(item),
            })
            .collect();
        after.sort_by(|a, b| b.first.cmp(&a.first).then(a.item_id.cmp(&b.item_id)));
        after.truncate(MAX_AFTER);

        Ok(ChainOut {
            user_id: stored.user.clone(),
            as_of: stored.as_of.clone(),
            model_id: stored.interests.model_id.clone(),
            interests_prompt: stored.interests.prompt_version.clone(),
            tags_prompt: stored.tags.prompt_version.clone(),
            narrative,
            interests,
            tags,
            recommendations,
            after,
            after_items,
            after_recommended,
        })
    }

    /// The newest reports. Blocking.
    fn eval_reports(&self) -> Result<EvalOut, ApiError> {
        let read = |prefix: &str| -> Result<Option<ReportOut>, ApiError> {
            let Some(path) = reports::newest(&self.home, prefix).map_err(ApiError::internal)?
            else {
                return Ok(None);
            };
            let bytes = std::fs::read(&path).map_err(ApiError::internal)?;
            let mut report: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
            if let Some(o) = report.as_object_mut() {
                o.remove("per_user");
            }
            Ok(Some(ReportOut {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                report,
            }))
        };
        Ok(EvalOut {
            retrieval: read(reports::RETRIEVAL)?,
            llm: read(reports::LLM)?,
        })
    }
}

/// The users with stored results, most active first.
#[utoipa::path(
    get,
    path = "/v1/users",
    params(UsersQuery),
    responses(
        (status = 200, body = UsersOut),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    )
)]
pub async fn users(
    State(state): State<Arc<AppState>>,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> Result<Json<UsersOut>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_USERS_PAGE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1 to {MAX_USERS_PAGE}"),
        ));
    }
    let offset = query.offset.unwrap_or(0);
    state
        .blocking(move |state| state.stored_users(offset, limit))
        .await
        .map(Json)
}

/// What the batch job stored.
#[utoipa::path(get, path = "/v1/summary", responses((status = 200, body = SummaryOut)))]
pub async fn summary(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Arc<SummaryOut>>, ApiError> {
    state.blocking(|state| state.summary()).await.map(Json)
}

/// One user's whole chain.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/chain",
    params(("user_id" = String, Path, description = "user id")),
    responses(
        (status = 200, body = ChainOut),
        (status = 400, body = ErrorBody, description = "invalid_id"),
        (status = 404, body = ErrorBody, description = "unknown_user, not_computed"),
    )
)]
pub async fn chain(
    State(state): State<Arc<AppState>>,
    user: Result<Path<String>, PathRejection>,
) -> Result<Json<ChainOut>, ApiError> {
    let Path(user) = user.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    check_id("user_id", &user)?;
    let served = state.user_result(user).await?;
    state
        .blocking(move |state| state.chain(&served.result))
        .await
        .map(Json)
}

/// The newest evaluation reports.
#[utoipa::path(get, path = "/v1/eval", responses((status = 200, body = EvalOut)))]
pub async fn eval(State(state): State<Arc<AppState>>) -> Result<Json<EvalOut>, ApiError> {
    state.blocking(|state| state.eval_reports()).await.map(Json)
}
