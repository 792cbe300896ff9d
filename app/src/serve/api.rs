//! The handlers, their request and response types, and the OpenAPI document built from them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{body_too_large, ErrorBody, ErrorDetail};
use super::{inspect, ApiError, AppState};
use recgpt_pipeline::results::{Recommendation, UserResult};

/// Longest id accepted.
pub const MAX_ID_BYTES: usize = 64;

/// Ids are 1 to 64 characters of letters, digits, `-`, `_` and `.`; anything else is 400
/// `invalid_id` before any lookup.
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            format!("{field} must be 1 to {MAX_ID_BYTES} letters, digits, '-', '_' or '.'"),
        ))
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InterestOut {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecommendationOut {
    pub item_id: String,
    pub title: String,
    pub category: Option<String>,
    pub score: f32,
    /// The tag whose query retrieved the item (none: no tag query did).
    pub tag: Option<String>,
    /// The retrieval channel the item came from: `cf` (collaborative filtering), `user` (the
    /// user tower) or `llm` (the LLM's tags).
    pub channel: String,
    /// The interest behind the item.
    pub interest: Option<String>,
    pub explanation: Option<String>,
    /// `model` or `fallback` (the labelled template).
    pub explanation_source: Option<String>,
}

impl From<&Recommendation> for RecommendationOut {
    fn from(r: &Recommendation) -> Self {
        Self {
            item_id: r.item.clone(),
            title: r.title.clone(),
            category: r.category.clone(),
            score: r.score,
            tag: r.tag.clone(),
            channel: r.channel.clone(),
            interest: r.interest.clone(),
            explanation: r.explanation.clone(),
            explanation_source: r.explanation_source.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecommendationsOut {
    pub user_id: String,
    /// The day the recommendations were computed as of.
    pub as_of: String,
    pub interests: Vec<InterestOut>,
    pub recommendations: Vec<RecommendationOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExplanationOut {
    pub user_id: String,
    pub item_id: String,
    pub interest: String,
    pub explanation: String,
    /// `model` or `fallback`.
    pub source: String,
    /// False when generated for this request.
    pub cached: bool,
}

impl ExplanationOut {
    pub fn new(
        user_id: &str,
        item_id: &str,
        interest: &str,
        explanation: String,
        source: String,
        cached: bool,
    ) -> Self {
        Self {
            user_id: user_id.to_string(),
            item_id: item_id.to_string(),
            interest: interest.to_string(),
            explanation,
            source,
            cached,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RecommendationsQuery {
    /// Items to return (1 to `[serve] max_k`, default `[serve] default_k`).
    pub k: Option<usize>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PairQuery {
    pub user_id: Option<String>,
    pub item_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairIn {
    pub user_id: String,
    pub item_id: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// At most `[serve] max_batch` pairs.
    pub pairs: Vec<PairIn>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    pub user_id: String,
    pub item_id: String,
    pub explanation: Option<ExplanationOut>,
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchOut {
    /// One per pair, in request order.
    pub results: Vec<BatchItem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthOut {
    pub status: String,
    pub users: u64,
    pub explanations: u64,
    /// The model that generates missing explanations, when on.
    pub model: Option<String>,
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}

/// A user's stored recommendations with their explanations.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/recommendations",
    params(("user_id" = String, Path, description = "user id"), RecommendationsQuery),
    responses(
        (status = 200, body = RecommendationsOut),
        (status = 400, body = ErrorBody, description = "invalid_id, invalid_query"),
        (status = 404, body = ErrorBody, description = "unknown_user, not_computed"),
    )
)]
pub async fn recommendations(
    State(state): State<Arc<AppState>>,
    user: Result<Path<String>, PathRejection>,
    query: Result<Query<RecommendationsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(user) = user.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    let Query(query) = query.map_err(query_error)?;
    let serve = &state.config.serve;
    let k = query.k.unwrap_or(serve.default_k);
    if k == 0 || k > serve.max_k {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("k must be 1 to {}", serve.max_k),
        ));
    }
    let served = state.user_result(user).await?;
    let body = served.recommendations_body(k);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A user's recommendations response rendered once: the JSON up to the recommendations array
/// and each recommendation's JSON, so the answer for any `k` is a concatenation, byte for byte
/// what serialising [`RecommendationsOut`] with the first `k` gives.
#[derive(Debug)]
pub struct RenderedRecommendations {
    head: String,
    items: Vec<String>,
}

impl RenderedRecommendations {
    pub fn new(result: &UserResult) -> Self {
        let out = RecommendationsOut {
            user_id: result.user.clone(),
            as_of: result.as_of.clone(),
            interests: result
                .interests
                .interests
                .iter()
                .map(|i| InterestOut {
                    name: i.name.clone(),
                    description: i.description.clone(),
                })
                .collect(),
            recommendations: Vec::new(),
        };
        let whole = serde_json::to_string(&out).expect("serialisable");
        let head = whole
            .strip_suffix("]}")
            .expect("the recommendations array closes the object")
            .to_string();
        let items = result
            .recommendations
            .iter()
            .map(|r| serde_json::to_string(&RecommendationOut::from(r)).expect("serialisable"))
            .collect();
        Self { head, items }
    }

    /// The body with the first `k` recommendations.
    pub fn body(&self, k: usize) -> String {
        let items = &self.items[..k.min(self.items.len())];
        let mut body = String::with_capacity(
            self.head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 2,
        );
        body.push_str(&self.head);
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            body.push_str(item);
        }
        body.push_str("]}");
        body
    }
}

/// The explanation for one (user, item) pair; generated on a cache miss when the server has a
/// model (bounded: 503 `busy` with `Retry-After` beyond the queue).
#[utoipa::path(
    get,
    path = "/v1/explanations",
    params(PairQuery),
    responses(
        (status = 200, body = ExplanationOut),
        (status = 400, body = ErrorBody, description = "invalid_id, invalid_query"),
        (status = 404, body = ErrorBody, description = "unknown_user, unknown_item, not_computed, no_link, not_cached"),
        (status = 503, body = ErrorBody, description = "busy (with Retry-After), timeout, generation_failed"),
    )
)]
pub async fn explanation(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PairQuery>, QueryRejection>,
) -> Result<Json<ExplanationOut>, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    let (Some(user), Some(item)) = (query.user_id, query.item_id) else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "user_id and item_id are required",
        ));
    };
    let mut out = state.explanations(vec![(user, item)]).await;
    out.remove(0).map(Json)
}

/// Many pairs at once (at most `[serve] max_batch`); each result holds its explanation or its
/// error.
#[utoipa::path(
    post,
    path = "/v1/explanations:batch",
    request_body = BatchIn,
    responses(
        (status = 200, body = BatchOut),
        (status = 400, body = ErrorBody, description = "invalid_body"),
        (status = 413, body = ErrorBody, description = "body_too_large, batch_too_large"),
    )
)]
pub async fn explanations_batch(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchOut>, ApiError> {
    let serve = &state.config.serve;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large(serve.max_body_bytes)
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })?;
    let batch: BatchIn = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("{e}")))?;
    if batch.pairs.len() > serve.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "{} pairs; at most {} per request",
                batch.pairs.len(),
                serve.max_batch
            ),
        ));
    }
    let pairs: Vec<(String, String)> = batch
        .pairs
        .into_iter()
        .map(|p| (p.user_id, p.item_id))
        .collect();
    let answers = state.explanations(pairs.clone()).await;
    Ok(Json(BatchOut {
        results: pairs
            .into_iter()
            .zip(answers)
            .map(|((user_id, item_id), a)| {
                let (explanation, error) = match a {
                    Ok(e) => (Some(e), None),
                    Err(e) => (None, Some(e.detail())),
                };
                BatchItem {
                    user_id,
                    item_id,
                    explanation,
                    error,
                }
            })
            .collect(),
    }))
}

/// Liveness and what the store holds.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = HealthOut)))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Result<Json<HealthOut>, ApiError> {
    let counts = state
        .blocking(|state| state.results.counts().map_err(ApiError::internal))
        .await?;
    Ok(Json(HealthOut {
        status: "ok".into(),
        users: counts.users,
        explanations: counts.explanations,
        model: state
            .generator
            .as_ref()
            .map(|g| g.llm.model_id().to_string()),
    }))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// A hello-world route: the reference the HTTP benchmark compares the real routes with.
pub async fn hello() -> &'static str {
    "hello"
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// The OpenAPI document of the routes above.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "recgpt", description = "Recommendations with explanations"),
    paths(
        recommendations,
        inspect::users,
        inspect::chain,
        inspect::summary,
        inspect::eval,
        explanation,
        explanations_batch,
        healthz,
        metrics,
        openapi
    ),
    components(schemas(
        RecommendationsOut,
        RecommendationOut,
        InterestOut,
        ExplanationOut,
        BatchIn,
        PairIn,
        BatchOut,
        BatchItem,
        HealthOut,
        inspect::UsersOut,
        inspect::UserRowOut,
        inspect::SummaryOut,
        inspect::VersionsOut,
        inspect::ChainOut,
        inspect::NarrativeOut,
        inspect::ChainInterestOut,
        inspect::EvidenceOut,
        inspect::TagOut,
        inspect::ChainRecommendationOut,
        inspect::PurchaseOut,
        inspect::EvalOut,
        inspect::ReportOut,
        ErrorBody,
        ErrorDetail
    ))
)]
pub struct ApiDoc;

#[cfg(test)]
mod rendered_tests {
    use super::*;

    #[test]
    fn a_rendered_response_is_what_serde_writes_for_every_k() {
        let result: UserResult = serde_json::from_value(serde_json::json!({
            "user": "12347", "as_of": "2011-12-10", "fingerprint": "f",
            "interests": {"user": "12347", "interests": [
                {"name": "tea \"time\"", "description": "Tea sets — for afternoons.",
                 "description_source": "model", "evidence": []}],
                "counts": {"proposed": 1, "kept": 1, "ungrounded": 0, "generic": 0, "unrelated": 0,
                           "merged": 0, "descriptions_templated": 0, "evidence": 0,
                           "evidence_hallucinated": 0, "answers": 1, "unparsable": 0,
                           "salvaged": 0, "cut_off": 0},
                "prompt_version": "p", "model_id": "m", "seed": 1, "raw": []},
            "interest_keys": ["tea time"],
            "tags": {"user": "12347", "tags": [], "prompt_version": "p", "model_id": "m", "raw": [],
                     "counts": {"answers": 1, "unparsable": 0, "cut_off": 0, "proposed": 0,
                                "from_model": 0, "from_fallback": 0, "rejected": {}}},
            "recommendations": [
                {"item": "22697", "title": "GREEN REGENCY TEACUP AND SAUCER", "category": "glass / tea",
                 "score": 0.02, "tag": "teacup", "channel": "cf", "interest": "tea \"time\"",
                 "interest_key": "tea time", "explanation": "For your tea\ntime.",
                 "explanation_source": "model"},
                {"item": "84879", "title": "ASSORTED COLOUR BIRD ORNAMENT", "category": null,
                 "score": 0.01, "tag": null, "channel": "user", "interest": null,
                 "interest_key": null, "explanation": null, "explanation_source": null}
            ]
        }))
        .unwrap();
        let rendered = RenderedRecommendations::new(&result);
        for k in [0, 1, 2, 20] {
            let want = RecommendationsOut {
                user_id: result.user.clone(),
                as_of: result.as_of.clone(),
                interests: vec![InterestOut {
                    name: "tea \"time\"".into(),
                    description: "Tea sets — for afternoons.".into(),
                }],
                recommendations: result
                    .recommendations
                    .iter()
                    .take(k)
                    .map(RecommendationOut::from)
                    .collect(),
            };
            assert_eq!(
                rendered.body(k),
                serde_json::to_string(&want).unwrap(),
                "k = {k}"
            );
        }
    }
}
