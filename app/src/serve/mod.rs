//! `recgpt serve`: recommendations with their explanations over HTTP (axum).
//!
//! Routes (see `GET /openapi.json`):
//! - `GET /v1/users/{user_id}/recommendations?k=20`
//! - `GET /v1/explanations?user_id=…&item_id=…`
//! - `POST /v1/explanations:batch` with `{"pairs": [{"user_id": …, "item_id": …}, …]}`
//! - `GET /v1/users`, `GET /v1/users/{user_id}/chain`, `GET /v1/summary`, `GET /v1/eval`: what
//!   the inspector shows (see [`inspect`])
//! - `GET /ui/`, `GET /ui/users/{user_id}`, `GET /ui/eval`: the inspector's pages (see [`ui`])
//! - `GET /healthz`, `GET /metrics` (Prometheus), `GET /openapi.json`
//! - `GET /bench/hello`: a plain hello-world route, the reference of `recgpt bench serve`
//!
//! It reads what `recgpt recommend` (and the batch job) stored in the results store, which a
//! running job may be writing at the same time (SQLite WAL: readers never wait). Store reads
//! run on tokio's blocking threads through the store's pool of read connections, never on an
//! async worker; decoded results of the users read most stay in memory (`[serve] cache_mb`),
//! checked against the stored row's revision on every request. An
//! explanation that is not cached yet is generated on demand when a model is loaded, bounded
//! by `[serve] generate_concurrency` and a queue of `queue` requests that wait at most
//! `queue_timeout_ms`; beyond that the answer is 503 with `Retry-After`.
//!
//! Every error is JSON `{"error": {"code": …, "message": …}}` with a stable code.

mod api;
mod cache;
mod error;
mod inspect;
mod metrics;
mod ui;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use recgpt_data::{Catalog, ItemIx, Store};

pub use api::ApiDoc;
pub use error::ApiError;
use metrics::Metrics;
use recgpt_data::text::ItemTexts;
use recgpt_pipeline::categories::Categories;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::explain::{Explainer, Explanation, ExplanationStore, Pair, Verify};
use recgpt_pipeline::judge::Verifier;
use recgpt_pipeline::llm::LlmBackend;
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::recommend::{self, ItemLink};
use recgpt_pipeline::results::{ResultStore, UserResult};

/// The model and what generating an explanation reads.
pub struct Generator {
    pub llm: Arc<dyn LlmBackend>,
    pub prompts: Prompts,
    pub texts: ItemTexts,
    /// The judge of new explanations (`[judge] explanations`).
    pub verifier: Option<Verifier>,
    permits: tokio::sync::Semaphore,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("model", &self.llm.model_id())
            .finish_non_exhaustive()
    }
}

/// What every handler reads.
#[derive(Debug)]
pub struct AppState {
    /// The data home (evaluation reports are read from its `eval/`).
    pub home: PathBuf,
    pub store: Store,
    pub results: ResultStore,
    pub categories: Option<Categories>,
    pub config: Config,
    /// `None`: cached explanations only.
    pub generator: Option<Generator>,
    /// Required in `x-api-key` (or `Authorization: Bearer …`) when set; `/healthz` is open.
    pub api_key: Option<String>,
    /// The stored results read most, decoded; `None`: no cache.
    users: Option<cache::UserCache>,
    metrics: Metrics,
    inspector: inspect::Inspector,
}

impl AppState {
    /// The state over the data home's stores; `llm` enables on-demand generation.
    pub fn open(
        home: &Path,
        config: Config,
        llm: Option<Arc<dyn LlmBackend>>,
        api_key: Option<String>,
    ) -> anyhow::Result<Self> {
        let store = Store::open(home)?;
        let results = config.store.open(home)?;
        let users = cache::UserCache::new(&results, config.serve.cache_mb, config.serve.follow_ms)?;
        let categories = Categories::load(home, &store).ok();
        let generator = match llm.filter(|_| config.serve.generate) {
            Some(llm) => Some(Generator {
                llm,
                prompts: Prompts::new(),
                texts: ItemTexts::new(store.catalog(), &config.compress.key_attributes),
                verifier: Verifier::load(&config)?,
                permits: tokio::sync::Semaphore::new(config.serve.generate_concurrency.max(1)),
                waiting: AtomicUsize::new(0),
            }),
            None => None,
        };
        Ok(Self {
            home: home.to_path_buf(),
            store,
            results,
            categories,
            users,
            config,
            generator,
            api_key: api_key.filter(|k| !k.is_empty()),
            metrics: Metrics::new(),
            inspector: inspect::Inspector::default(),
        })
    }

    fn catalog(&self) -> &Catalog {
        self.store.catalog()
    }

    /// Runs `read` (store reads: blocking calls) on tokio's blocking threads.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || read(&state))
            .await
            .map_err(ApiError::internal)?
    }

    /// The stored result of a user: from memory when cached, else read on a blocking thread.
    async fn user_result(self: &Arc<Self>, user: String) -> Result<Arc<Served>, ApiError> {
        api::check_id("user_id", &user)?;
        if let Some(hit) = self.users.as_ref().and_then(|c| c.get(self, &user)) {
            return Ok(hit);
        }
        self.blocking(move |state| state.read_user(&user)).await
    }

    /// A user's stored result read from the store (and cached): 404 `unknown_user` when the
    /// store has no such user, 404 `not_computed` when nothing was stored for them yet.
    /// Blocking.
    fn read_user(&self, user: &str) -> Result<Arc<Served>, ApiError> {
        let generation = self.users.as_ref().map(|c| c.generation());
        if let Some(stored) = self
            .results
            .user_revision(user)
            .map_err(ApiError::internal)?
        {
            return Ok(match (&self.users, generation) {
                (Some(cache), Some(g)) => cache.insert(stored, g),
                _ => Arc::new(Served::new(stored.result)),
            });
        }
        if self.store.has_user(user).map_err(ApiError::internal)? {
            Err(ApiError::not_found(
                "not_computed",
                format!("no recommendations stored for user {user} yet (run `recgpt recommend` or the batch job)"),
            ))
        } else {
            Err(ApiError::not_found(
                "unknown_user",
                format!("unknown user {user}"),
            ))
        }
    }

    fn item(&self, item: &str) -> Result<ItemIx, ApiError> {
        api::check_id("item_id", item)?;
        self.catalog()
            .ix(item)
            .ok_or_else(|| ApiError::not_found("unknown_item", format!("unknown item {item}")))
    }

    /// The explanations of `(user, item)` pairs. Stored explanations of cached users are
    /// answered in memory; the rest is read on a blocking thread; misses are generated together.
    async fn explanations(self: &Arc<Self>, pairs: Vec<(String, String)>) -> Vec<Answer> {
        // a batch often asks for many items of one user: read each user's result once
        let mut users: HashMap<String, Result<Arc<Served>, ApiError>> = HashMap::new();
        for (user, _) in &pairs {
            if !users.contains_key(user) {
                let cached = self.users.as_ref().and_then(|c| c.get(self, user));
                if let Some(hit) = cached {
                    users.insert(user.clone(), Ok(hit));
                }
            }
        }
        let unread: Vec<String> = pairs
            .iter()
            .map(|(u, _)| u.clone())
            .filter(|u| !users.contains_key(u))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unread.is_empty() {
            let read = self
                .blocking(move |state| {
                    Ok(unread
                        .into_iter()
                        .map(|u| {
                            let r = api::check_id("user_id", &u).and_then(|()| state.read_user(&u));
                            (u, r)
                        })
                        .collect::<Vec<_>>())
                })
                .await;
            match read {
                Ok(read) => users.extend(read),
                Err(e) => return vec![Err(e); pairs.len()],
            }
        }
        let mut out: Vec<Option<Answer>> = vec![None; pairs.len()];
        let mut unlinked: Vec<(usize, Pair)> = Vec::new();
        for (i, (user_id, item_id)) in pairs.iter().enumerate() {
            let linked = match &users[user_id] {
                Ok(user) => self.link(&user.result, item_id),
                Err(e) => Err(e.clone()),
            };
            match linked {
                Ok(Lookup::Found(e)) => out[i] = Some(Ok(e)),
                Ok(Lookup::Miss(pair)) => unlinked.push((i, pair)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let mut misses = Vec::new();
        if !unlinked.is_empty() {
            let asked = pairs.clone();
            let looked_up = self
                .blocking(move |state| {
                    Ok(unlinked
                        .into_iter()
                        .map(|(i, pair)| (i, state.cached(&asked[i].0, &asked[i].1, pair)))
                        .collect::<Vec<_>>())
                })
                .await;
            match looked_up {
                Ok(looked_up) => {
                    for (i, found) in looked_up {
                        match found {
                            Ok(Lookup::Found(e)) => out[i] = Some(Ok(e)),
                            Ok(Lookup::Miss(pair)) => misses.push((i, pair)),
                            Err(e) => out[i] = Some(Err(e)),
                        }
                    }
                }
                Err(e) => return vec![Err(e); pairs.len()],
            }
        }
        if !misses.is_empty() {
            match self
                .generate(misses.iter().map(|(_, p)| p.clone()).collect())
                .await
            {
                Ok(explanations) => {
                    for ((i, _), e) in misses.iter().zip(explanations) {
                        out[*i] = Some(Ok(api::ExplanationOut::new(
                            &pairs[*i].0,
                            &pairs[*i].1,
                            &e.interest,
                            e.text,
                            e.source,
                            false,
                        )));
                    }
                }
                Err(e) => {
                    for (i, _) in &misses {
                        out[*i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.expect("every pair answered"))
            .collect()
    }

    /// The stored explanation when the item is among the user's recommendations, else the pair
    /// to look up (`Lookup::Miss`). In memory.
    fn link(&self, user: &UserResult, item_id: &str) -> Result<Lookup, ApiError> {
        let user_id = user.user.as_str();
        let item = self.item(item_id)?;
        let id = &self.catalog().get(item).id;
        let category = self
            .categories
            .as_ref()
            .and_then(|c| c.of_item(id).map(|k| c.name(k)));
        let link = recommend::link(user, item, id, category).ok_or_else(|| {
            ApiError::not_found(
                "no_link",
                format!("no interest of user {user_id} links them to item {item_id}"),
            )
        })?;
        Ok(match link {
            ItemLink::Stored {
                interest,
                text,
                source,
            } => Lookup::Found(api::ExplanationOut::new(
                user_id, item_id, &interest, text, source, true,
            )),
            ItemLink::Pair(pair) => Lookup::Miss(pair),
        })
    }

    /// A linked pair's explanation from the explanation cache, or the pair to generate.
    /// Blocking.
    fn cached(&self, user_id: &str, item_id: &str, pair: Pair) -> Result<Lookup, ApiError> {
        let Some(g) = &self.generator else {
            return Err(ApiError::not_found(
                "not_cached",
                format!("no explanation cached for user {user_id} and item {item_id}, and this server does not generate"),
            ));
        };
        let key = self.explainer(g).key(&pair, g.llm.model_id());
        match self.results.explanation(&key).map_err(ApiError::internal)? {
            Some(e) => {
                self.metrics.cache(true);
                Ok(Lookup::Found(api::ExplanationOut::new(
                    user_id,
                    item_id,
                    &e.interest,
                    e.text,
                    e.source,
                    true,
                )))
            }
            None => {
                self.metrics.cache(false);
                Ok(Lookup::Miss(pair))
            }
        }
    }

    fn explainer<'a>(&'a self, g: &'a Generator) -> Explainer<'a> {
        Explainer::new(
            &g.prompts,
            self.catalog(),
            &g.texts,
            self.categories.as_ref(),
            &self.config.explain,
            self.config.llm.sampling,
        )
        .with_verifier(g.verifier.as_ref().map(|v| v as &dyn Verify))
    }

    /// Generates `pairs` under the concurrency limit and the bounded queue.
    async fn generate(self: &Arc<Self>, pairs: Vec<Pair>) -> Result<Vec<Explanation>, ApiError> {
        let g = self
            .generator
            .as_ref()
            .expect("misses only with a generator");
        let serve = &self.config.serve;
        let busy = || ApiError::busy(serve.retry_after_s);
        if g.waiting.fetch_add(1, Ordering::SeqCst) >= serve.queue + serve.generate_concurrency {
            g.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let permit = tokio::time::timeout(
            Duration::from_millis(serve.queue_timeout_ms),
            g.permits.acquire(),
        )
        .await;
        let permit = match permit {
            Ok(Ok(p)) => p,
            _ => {
                g.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(busy());
            }
        };
        let state = Arc::clone(self);
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let g = state.generator.as_ref().expect("checked");
            state
                .explainer(g)
                .explain(g.llm.as_ref(), &state.results, &pairs)
                .map(|(e, _)| e)
        })
        .await;
        drop(permit);
        g.waiting.fetch_sub(1, Ordering::SeqCst);
        self.metrics.generation(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(e)) => Err(ApiError::unavailable("generation_failed", e.to_string())),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

/// A user's stored result as the server holds it, with its recommendations response rendered
/// on first use (see [`api::RenderedRecommendations`]).
#[derive(Debug)]
pub struct Served {
    pub result: UserResult,
    rendered: std::sync::OnceLock<api::RenderedRecommendations>,
}

impl Served {
    fn new(result: UserResult) -> Self {
        Self {
            result,
            rendered: std::sync::OnceLock::new(),
        }
    }

    /// The JSON body of `GET /v1/users/{id}/recommendations?k=…`.
    fn recommendations_body(&self, k: usize) -> String {
        self.rendered
            .get_or_init(|| api::RenderedRecommendations::new(&self.result))
            .body(k)
    }
}

/// The explanation of one pair, or why there is none.
type Answer = Result<api::ExplanationOut, ApiError>;

/// The interest linking a user and an item, and the stored explanation when the item is one
/// of the user's recommendations.
enum Lookup {
    Found(api::ExplanationOut),
    Miss(Pair),
}

/// The router over `state`, with every middleware.
pub fn router(state: Arc<AppState>) -> Router {
    let timeout = Duration::from_millis(state.config.serve.request_timeout_ms);
    Router::new()
        .route(
            "/v1/users/{user_id}/recommendations",
            get(api::recommendations),
        )
        .route("/v1/users", get(inspect::users))
        .route("/v1/users/{user_id}/chain", get(inspect::chain))
        .route("/v1/summary", get(inspect::summary))
        .route("/v1/eval", get(inspect::eval))
        .route("/v1/explanations", get(api::explanation))
        .route("/v1/explanations:batch", post(api::explanations_batch))
        .route("/healthz", get(api::healthz))
        .route("/bench/hello", get(api::hello))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(api::openapi))
        .merge(ui::routes())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.serve.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), limits))
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// Request counts and latency by route and status (outermost, so every answer counts).
async fn record(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .request(&route, response.status(), started.elapsed().as_secs_f64());
    response
}

async fn with_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::unavailable("timeout", "the request took too long").into_response(),
    }
}

/// URI length and body size limits, before any handler reads the request.
async fn limits(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let serve = &state.config.serve;
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > serve.max_uri_bytes {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "request URI of {uri_len} bytes; the limit is {}",
                serve.max_uri_bytes
            ),
        )
        .into_response();
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > serve.max_body_bytes) {
        return error::body_too_large(serve.max_body_bytes).into_response();
    }
    next.run(req).await
}

async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" || ui::is_page(req.uri().path()) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        next.run(req).await
    } else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key (x-api-key or Authorization: Bearer)",
        )
        .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the router on `listener` until Ctrl-C or SIGTERM, then finishes the requests in
/// flight.
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
