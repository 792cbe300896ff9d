//! The HTTP endpoint (`recgpt serve`) over the chain's stored results: the router in-process
//! (stored recommendations, clear errors, on-demand explanations, fuzzed paths) and the real
//! binary over HTTP, with the real model on real users of the real data. The follower of a
//! job's writes and the binary also run on a PostgreSQL results store (`--store`).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use recgpt::serve::{router, AppState};
use recgpt_data::Store;
use recgpt_pipeline::results::{ResultStore, UserResult};
use tower::ServiceExt;

use crate::common::model_turn;
use crate::explain::{chain, config, USERS};
use crate::llm::llm;
use crate::retrieval::prepared;

/// The router over the chain's home, in process.
pub(crate) fn app(generate: bool) -> (axum::Router, Arc<AppState>) {
    app_on(generate, None)
}

/// The router over the chain's home with its results in the store at `store` (default: the
/// home's SQLite file).
fn app_on(generate: bool, store: Option<String>) -> (axum::Router, Arc<AppState>) {
    let mut config = config();
    config.store.url = store;
    config.serve.generate = generate;
    config.serve.max_batch = 4;
    let llm: Option<Arc<dyn recgpt_pipeline::llm::LlmBackend>> =
        generate.then(|| Arc::new(llm()) as Arc<dyn recgpt_pipeline::llm::LlmBackend>);
    let state = Arc::new(AppState::open(&chain().home, config, llm, None).unwrap());
    (router(state.clone()), state)
}

pub(crate) async fn call(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, serde_json::Value) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, value)
}

pub(crate) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn router_serves_stored_recommendations_and_clear_errors() {
    router_serves_stored_recommendations(None);
}

/// The same over a PostgreSQL store holding the chain's results.
#[test]
fn router_serves_stored_recommendations_and_clear_errors_from_postgres() {
    let url = crate::common::scratch_postgres("router_serves");
    let store = ResultStore::connect(&url).unwrap();
    for r in &chain().results {
        store.put_user(r).unwrap();
    }
    router_serves_stored_recommendations(Some(url));
}

fn router_serves_stored_recommendations(store: Option<String>) {
    let chain = chain();
    let (app, _) = app_on(false, store);
    runtime().block_on(async {
        let user = &chain.results[0];
        let (status, body) = call(&app, get(&format!("/v1/users/{}/recommendations?k=3", user.user))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let recs = body["recommendations"].as_array().unwrap();
        assert_eq!(recs.len(), 3);
        for (got, stored) in recs.iter().zip(&user.recommendations) {
            assert_eq!(got["item_id"], stored.item.as_str());
            assert_eq!(got["explanation"].as_str(), stored.explanation.as_deref());
            assert_eq!(got["interest"].as_str(), stored.interest.as_deref());
        }

        let item = &user.recommendations[1];
        let (status, body) = call(
            &app,
            get(&format!("/v1/explanations?user_id={}&item_id={}", user.user, item.item)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["explanation"].as_str(), item.explanation.as_deref());
        assert_eq!(body["cached"], true);

        let batch = serde_json::json!({"pairs": [
            {"user_id": user.user, "item_id": item.item},
            {"user_id": "99999999", "item_id": item.item},
        ]});
        let (status, body) = call(&app, post("/v1/explanations:batch", batch.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["results"][0]["explanation"]["explanation"].as_str(), item.explanation.as_deref());
        assert_eq!(body["results"][1]["error"]["code"], "unknown_user");

        // errors: status and stable code
        let long = format!("/v1/explanations?user_id={}", "1".repeat(5000));
        let oversize = serde_json::json!({"pairs": vec![serde_json::json!({"user_id": "12347", "item_id": "22423"}); 5]});
        let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
            (get("/v1/users/99999999/recommendations"), StatusCode::NOT_FOUND, "unknown_user"),
            (get("/v1/users/12346/recommendations"), StatusCode::NOT_FOUND, "not_computed"),
            (get("/v1/users/abc%20def/recommendations"), StatusCode::BAD_REQUEST, "invalid_id"),
            (get(&format!("/v1/users/{}/recommendations?k=0", user.user)), StatusCode::BAD_REQUEST, "invalid_query"),
            (get(&format!("/v1/users/{}/recommendations?k=ten", user.user)), StatusCode::BAD_REQUEST, "invalid_query"),
            (get("/v1/explanations?user_id=12347"), StatusCode::BAD_REQUEST, "invalid_query"),
            (get(&format!("/v1/explanations?user_id={}&item_id=NOPE", user.user)), StatusCode::NOT_FOUND, "unknown_item"),
            (get(&long), StatusCode::URI_TOO_LONG, "uri_too_long"),
            (post("/v1/explanations:batch", "{not json"), StatusCode::BAD_REQUEST, "invalid_body"),
            (post("/v1/explanations:batch", oversize.to_string()), StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"),
            (post("/v1/explanations:batch", "x".repeat(100_000)), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            (get("/v2/nothing"), StatusCode::NOT_FOUND, "not_found"),
            (post("/healthz", ""), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ];
        for (req, want, code) in cases {
            let uri = req.uri().to_string();
            let (status, body) = call(&app, req).await;
            assert_eq!((status, body["error"]["code"].as_str()), (want, Some(code)), "{uri}: {body}");
        }

        let (status, body) = call(&app, get("/healthz")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["users"], USERS.len() as u64);
        let (_, doc) = call(&app, get("/openapi.json")).await;
        assert!(doc["paths"]["/v1/explanations:batch"]["post"].is_object(), "{doc}");
        assert!(doc["paths"]["/v1/users/{user_id}/recommendations"]["get"].is_object());
        let (_, metrics) = call(&app, get("/metrics")).await;
        let metrics = metrics.as_str().unwrap().to_string();
        assert!(
            metrics.contains(r#"recgpt_http_requests_total{route="/v1/users/{user_id}/recommendations",status="404"} 2"#),
            "{metrics}"
        );
    });
}

/// Holds a write transaction open on a results store, as another process's job would, until
/// dropped: on the home's SQLite file, or on the PostgreSQL database at `url`.
struct OpenWrite {
    release: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OpenWrite {
    fn start(home: &std::path::Path, url: Option<String>) -> Self {
        let (held, is_held) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let path = ResultStore::path_in(home);
        let thread = std::thread::spawn(move || match url {
            None => {
                let other = rusqlite::Connection::open(path).unwrap();
                other
                    .execute_batch("BEGIN IMMEDIATE; UPDATE users SET fingerprint = 'x';")
                    .unwrap();
                held.send(()).unwrap();
                let _ = released.recv();
                other.execute_batch("ROLLBACK").unwrap();
            }
            Some(url) => {
                let mut other = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let mut tx = other.transaction().unwrap();
                tx.batch_execute(
                    "LOCK TABLE users IN EXCLUSIVE MODE; UPDATE users SET fingerprint = 'x';",
                )
                .unwrap();
                held.send(()).unwrap();
                let _ = released.recv();
                tx.rollback().unwrap();
            }
        });
        is_held.recv().expect("the write transaction is open");
        Self {
            release,
            thread: Some(thread),
        }
    }
}

impl Drop for OpenWrite {
    fn drop(&mut self) {
        let _ = self.release.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A result a batch job rewrites while the server runs is served as rewritten (the server
/// follows the store's writes and drops its in-memory copy), and the server answers while
/// another process holds a write transaction on the store.
#[test]
fn a_result_rewritten_by_a_job_is_served_as_rewritten() {
    rewritten_results_are_served_as_rewritten(None);
}

#[test]
fn a_result_rewritten_by_a_job_is_served_as_rewritten_from_postgres() {
    rewritten_results_are_served_as_rewritten(Some(crate::common::scratch_postgres(
        "served_as_rewritten",
    )));
}

fn rewritten_results_are_served_as_rewritten(store: Option<String>) {
    let chain = chain();
    let home = crate::common::temp_home();
    std::os::unix::fs::symlink(Store::path_in(&chain.home), Store::path_in(&home)).unwrap();
    let mut config = config();
    config.store.url = store.clone();
    let job = config.store.open(&home).unwrap();
    let mut result = chain.results[0].clone();
    job.put_user(&result).unwrap();
    let state = Arc::new(AppState::open(&home, config, None, None).unwrap());
    let app = router(state);
    let uri = format!("/v1/users/{}/recommendations?k=20", result.user);
    let served = |app: axum::Router, uri: String| async move {
        let (status, body) = call(&app, get(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["item_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let items = |r: &UserResult| -> Vec<String> {
        r.recommendations
            .iter()
            .take(20)
            .map(|x| x.item.clone())
            .collect()
    };
    runtime().block_on(async {
        // twice: the second answer comes from the server's memory
        for _ in 0..2 {
            assert_eq!(served(app.clone(), uri.clone()).await, items(&result));
        }
        result.recommendations.reverse();
        result.recommendations.truncate(3);
        // (the store's calls block: off the async thread, as a job in another process)
        std::thread::scope(|s| s.spawn(|| job.put_user(&result)).join().unwrap()).unwrap();
        // served as rewritten once the server has followed the write ([serve] follow_ms)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while served(app.clone(), uri.clone()).await != items(&result) {
            assert!(
                std::time::Instant::now() < deadline,
                "still the old result after 60 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // another process in the middle of a write: the server still reads the store
        let other = OpenWrite::start(&home, store);
        let (status, body) = call(&app, get("/healthz")).await;
        assert_eq!(
            (status, body["users"].as_u64()),
            (StatusCode::OK, Some(1)),
            "{body}"
        );
        assert_eq!(served(app.clone(), uri.clone()).await, items(&result));
        drop(other);
    });
}

/// An item the user was not recommended but whose category one of their tags has: its
/// explanation is generated on demand, stored, and the next request is a cache hit.
#[test]
fn a_missing_explanation_is_generated_on_demand_and_cached() {
    let chain = chain();
    let store = Store::open(&chain.home).unwrap();
    let user = &chain.results[0];
    let categories = &prepared().categories;
    let recommended: HashSet<&str> = user
        .recommendations
        .iter()
        .map(|r| r.item.as_str())
        .collect();
    let tag_categories: HashSet<&str> = user
        .tags
        .tags
        .iter()
        .filter_map(|t| t.category.as_deref())
        .collect();
    let item = store
        .catalog()
        .items()
        .iter()
        .find(|i| {
            !recommended.contains(i.id.as_str())
                && categories
                    .of_item(&i.id)
                    .is_some_and(|c| tag_categories.contains(categories.name(c)))
        })
        .expect("an item in a category of the user's tags");
    let (app, _) = app(true);
    let _turn = model_turn();
    runtime().block_on(async {
        let uri = format!("/v1/explanations?user_id={}&item_id={}", user.user, item.id);
        let (status, first) = call(&app, get(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["cached"], false);
        assert!(first["explanation"].as_str().unwrap().len() > 10);
        let (status, second) = call(&app, get(&uri)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(second["cached"], true);
        assert_eq!(second["explanation"], first["explanation"]);
        let (_, metrics) = call(&app, get("/metrics")).await;
        let metrics = metrics.as_str().unwrap();
        assert!(
            metrics.contains(r#"recgpt_explanation_cache_total{result="hit"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"recgpt_explanation_cache_total{result="miss"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains("recgpt_explanation_generation_seconds_count 1"),
            "{metrics}"
        );
    });
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("12347".to_string()),
            Just("22423".to_string()),
            "[0-9]{1,12}",
            "[a-zA-Z%._~-]{0,80}",
            "\\PC{0,40}".prop_map(|s| urlencode(&s)),
        ]
    }

    fn urlencode(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn request() -> impl Strategy<Value = (String, String, Vec<u8>)> {
        let path = prop_oneof![
            segment().prop_map(|u| format!("/v1/users/{u}/recommendations")),
            (segment(), segment())
                .prop_map(|(u, i)| format!("/v1/users/{u}/recommendations?k={i}")),
            (segment(), segment())
                .prop_map(|(u, i)| format!("/v1/explanations?user_id={u}&item_id={i}")),
            segment().prop_map(|q| format!("/v1/explanations?{q}")),
            Just("/v1/explanations:batch".to_string()),
            segment().prop_map(|s| format!("/{s}")),
        ];
        let body = prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..200),
            (segment(), segment()).prop_map(|(u, i)| {
                format!(r#"{{"pairs": [{{"user_id": "{u}", "item_id": "{i}"}}]}}"#).into_bytes()
            }),
        ];
        (
            prop_oneof![Just("GET"), Just("POST"), Just("PUT")].prop_map(String::from),
            path,
            body,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Random requests never get a 5xx, and every error is JSON with a code.
        #[test]
        fn random_requests_get_4xx_json_never_5xx((method, uri, body) in request()) {
            static APP: OnceLock<axum::Router> = OnceLock::new();
            let app = APP.get_or_init(|| app(false).0);
            let req = Request::builder().method(method.as_str()).uri(&uri).body(Body::from(body));
            prop_assume!(req.is_ok(), "not a request http can build");
            let (status, value) = runtime().block_on(call(app, req.unwrap()));
            prop_assert!(status.as_u16() < 500, "{method} {uri}: {status} {value}");
            if status.as_u16() >= 400 {
                prop_assert!(value["error"]["code"].is_string(), "{method} {uri}: {status} {value}");
            }
        }
    }
}

/// The real binary on loopback: HTTP answers, the API key, and a graceful stop on SIGTERM.
#[test]
fn the_binary_serves_over_http_and_stops_on_sigterm() {
    the_binary_serves(&[], &chain().results[1]);
}

/// The same from a PostgreSQL store named by `--store`, holding the user's result with its
/// recommendations reversed (so the answer shows which store it came from).
#[test]
fn the_binary_serves_from_postgres() {
    let url = crate::common::scratch_postgres("binary_serves");
    let mut user = chain().results[1].clone();
    user.recommendations.reverse();
    assert_ne!(
        user.recommendations[0].item,
        chain().results[1].recommendations[0].item
    );
    ResultStore::connect(&url).unwrap().put_user(&user).unwrap();
    the_binary_serves(&["--store", &url], &user);
}

/// `recgpt serve` on a free loopback port over `home` (extra arguments and environment added),
/// killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    pub fn start(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let mut child = Command::new(env!("CARGO_BIN_EXE_recgpt"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .env("RECGPT_HOME", home)
            .env("RECGPT_MODEL", crate::common::model_file())
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start recgpt serve");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        // keep draining the server's log so it never blocks on a full pipe
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stderr.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Self { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn the_binary_serves(store: &[&str], user: &UserResult) {
    use std::process::Command;

    let chain = chain();
    let mut args = vec!["--no-generate"];
    args.extend_from_slice(store);
    let mut server = Server::start(&chain.home, &args, &[("RECGPT_API_KEY", "s3cret")]);
    let base = server.base.clone();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str, key: Option<&str>| {
        let mut req = agent.get(format!("{base}{path}"));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let mut response = req.call().expect("an HTTP answer");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.body_mut().read_json().unwrap_or_default();
        (status, body)
    };
    let (status, health) = get("/healthz", None);
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["model"], serde_json::Value::Null, "--no-generate");
    let path = format!("/v1/users/{}/recommendations?k=2", user.user);
    let (status, body) = get(&path, None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = get(&path, Some("wrong"));
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(&path, Some("s3cret"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["recommendations"][0]["item_id"],
        user.recommendations[0].item.as_str()
    );
    assert_eq!(
        body["recommendations"][0]["explanation"].as_str(),
        user.recommendations[0].explanation.as_deref()
    );

    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
}
