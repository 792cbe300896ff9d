//! The inspector: its JSON routes in process over the chain's stored results and the store, and
//! its pages (`/ui/`) in a real browser: the distribution's Chromium, driven over WebDriver by
//! its chromedriver, against the real binary serving the chain's home (real users, real model
//! output) and the evaluation report of the real split. Screenshots of the pages are written to
//! `$RECGPT_SCREENSHOTS` when set.

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fantoccini::{Client, ClientBuilder, Locator};
use recgpt::serve::{router, AppState};
use recgpt_data::Store;
use recgpt_pipeline::results::ResultStore;

use crate::explain::{chain, config};
use crate::serve::{app, call, get, runtime, Server};

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let bin = std::env::var("RECGPT_CHROMEDRIVER").unwrap_or("/usr/bin/chromedriver".into());
        assert!(
            Path::new(&bin).is_file(),
            "no chromedriver at {bin}: `make test` installs Debian's chromium and chromium-driver \
             (scripts/setup.sh browser); RECGPT_CHROMEDRIVER names another"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let chromium = std::env::var("RECGPT_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1366,1100",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {"binary": chromium, "args": args}
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

const WAIT: Duration = Duration::from_secs(60);

async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

async fn screenshot(client: &Client, dir: &Path, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
    std::fs::write(dir.join(name), png).unwrap();
}

#[test]
fn the_inspector_shows_a_users_chain_in_a_real_browser() {
    let chain = chain();
    crate::retrieval::eval_report().save(&chain.home).unwrap();
    let server = Server::start(&chain.home, &["--no-generate"], &[]);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let shots: PathBuf = std::env::var_os("RECGPT_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile.path().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    // the user with the most interests, and a recommendation of theirs with an explanation
    let user = chain
        .results
        .iter()
        .max_by_key(|r| r.interests.interests.len())
        .unwrap();
    assert!(
        !user.interests.interests.is_empty(),
        "a user with interests"
    );
    let (rank, rec) = user
        .recommendations
        .iter()
        .enumerate()
        .find(|(_, r)| r.explanation.is_some())
        .expect("an explained recommendation");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = browser(&driver, profile.path()).await;
        let base = &server.base;

        // the start page: the job's summary and the stored users, most active first
        client.goto(&format!("{base}/ui/")).await.unwrap();
        wait_for(&client, "#users tbody a").await;
        let stored = chain.results.len().to_string();
        let done = wait_for(&client, "#users-done").await.text().await.unwrap();
        assert!(
            done.parse::<usize>().unwrap() >= chain.results.len(),
            "{done} of {stored}"
        );
        let listed = texts(&client, "#users tbody a").await;
        assert!(listed.contains(&user.user), "{listed:?}");
        screenshot(&client, &shots, "ui-home.png").await;

        // open the user: the narrative, the interests, the tags grouped under them
        client
            .find(Locator::LinkText(&user.user))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let id = wait_for(&client, "#user-id").await.text().await.unwrap();
        assert_eq!(id, user.user);
        let names = texts(&client, ".interest h3").await;
        for interest in &user.interests.interests {
            assert!(
                names.iter().any(|n| n.starts_with(&interest.name)),
                "interest {:?} not shown in {names:?}",
                interest.name
            );
        }
        let tags = texts(&client, ".interest .tag").await;
        assert_eq!(tags.len(), user.tags.tags.len(), "every tag shown once");
        // an interest with evidence highlights it in the narrative when clicked
        let with_evidence = user
            .interests
            .interests
            .iter()
            .position(|i| !i.evidence.is_empty());
        if let Some(i) = with_evidence {
            client
                .find(Locator::Css(&format!(".interest[data-index=\"{i}\"]")))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let marked = texts(&client, "mark.evidence.active").await;
            assert!(!marked.is_empty(), "interest {i}'s evidence highlighted");
        }

        // follow a recommendation to its explanation
        let rows = client
            .find_all(Locator::Css("#recommendations tbody tr"))
            .await
            .unwrap();
        assert_eq!(rows.len(), user.recommendations.len());
        assert!(rows[rank].text().await.unwrap().contains(&rec.title));
        rows[rank].click().await.unwrap();
        let text = wait_for(&client, "#explanation-text")
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(Some(text.as_str()), rec.explanation.as_deref());
        screenshot(&client, &shots, "ui-user.png").await;

        // the evaluation page: the methods table and both charts, one line per method
        client.goto(&format!("{base}/ui/eval")).await.unwrap();
        wait_for(&client, "#methods tbody tr").await;
        let methods = crate::retrieval::eval_report().methods.len();
        let rows = texts(&client, "#methods tbody tr").await;
        assert_eq!(
            rows.len(),
            methods * crate::retrieval::eval_report().ks.len()
        );
        assert!(rows.iter().any(|r| r.starts_with("EASE")), "{rows:?}");
        for chart in ["#chart-recall", "#chart-recall-new"] {
            let lines = client
                .find_all(Locator::Css(&format!("{chart} polyline")))
                .await
                .unwrap();
            assert_eq!(lines.len(), methods, "{chart}");
        }
        screenshot(&client, &shots, "ui-eval.png").await;

        // a bad id in the URL: the API's error code, as a page
        for (path, code) in [
            ("/ui/users/no-such-user", "unknown_user"),
            ("/ui/users/bad!id", "invalid_id"),
        ] {
            client.goto(&format!("{base}{path}")).await.unwrap();
            let shown = wait_for(&client, "#error-code").await.text().await.unwrap();
            assert_eq!(shown, code, "{path}");
        }
        client.close().await.unwrap();
    });

    // and the pages' statuses are the API's
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for (path, status) in [
        ("/ui/", 200),
        ("/ui/users/no-such-user", 404),
        ("/ui/users/bad!id", 400),
        ("/ui/nothing-here", 404),
    ] {
        let got = agent
            .get(format!("{}{path}", server.base))
            .call()
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(got, status, "{path}");
    }
}

/// The inspector's JSON routes over the chain's home: stored users by activity, the job's
/// summary, a user's whole chain as stored, the newest evaluation report, and the API's errors.
#[test]
fn the_inspector_routes_serve_the_whole_chain() {
    let chain = chain();
    let path = crate::retrieval::eval_report().save(&chain.home).unwrap();
    let (app, state) = app(false);
    let store = Store::open(&chain.home).unwrap();
    runtime().block_on(async {
        let stored = state.results.users().unwrap();
        let (status, body) = call(&app, get("/v1/users?limit=1")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["total"], stored.len());
        let events = |u: &str| {
            store
                .history(u, &store.window(None, None))
                .unwrap()
                .events
                .len()
        };
        let most = stored.iter().map(|u| events(u)).max().unwrap();
        assert_eq!(body["users"].as_array().unwrap().len(), 1);
        assert_eq!(body["users"][0]["events"], most, "most active first");
        let (status, body) = call(&app, get("/v1/users?limit=0")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query"))
        );

        let (status, summary) = call(&app, get("/v1/summary")).await;
        assert_eq!(status, StatusCode::OK, "{summary}");
        assert_eq!(summary["users"], stored.len());
        let by_version: u64 = summary["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["users"].as_u64().unwrap())
            .sum();
        assert_eq!(
            by_version,
            stored.len() as u64,
            "every stored user under some version"
        );
        assert!(
            summary["explanation_cache"]["prompt_version"].is_string(),
            "{summary}"
        );

        let user = &chain.results[0];
        let (status, c) = call(&app, get(&format!("/v1/users/{}/chain", user.user))).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        let narrative = c["narrative"]["text"].as_str().expect("a narrative");
        assert!(
            narrative.starts_with(&format!("Behaviour history as of {}", user.as_of)),
            "{narrative}"
        );
        let interests = c["interests"].as_array().unwrap();
        assert_eq!(interests.len(), user.interests.interests.len());
        for (got, want) in interests.iter().zip(&user.interests.interests) {
            assert_eq!(got["name"], want.name.as_str());
            assert_eq!(got["description_source"], want.description_source.as_str());
            let items: Vec<&str> = got["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["item_id"].as_str().unwrap())
                .collect();
            let want_items: Vec<&str> = want.evidence.iter().map(|e| e.item.as_str()).collect();
            assert_eq!(items, want_items);
            for e in got["evidence"].as_array().unwrap() {
                // evidence is validated against the narrative the model read (same budget here)
                let text = e["narrative_text"].as_str().unwrap();
                assert!(
                    narrative.contains(text),
                    "evidence {text:?} not in the narrative"
                );
            }
        }
        let tags: Vec<(&str, &str)> = c["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["tag"].as_str().unwrap(), t["source"].as_str().unwrap()))
            .collect();
        let want_tags: Vec<(&str, &str)> = user
            .tags
            .tags
            .iter()
            .map(|t| (t.tag.as_str(), t.source.as_str()))
            .collect();
        assert_eq!(tags, want_tags);
        let recs = c["recommendations"].as_array().unwrap();
        assert_eq!(recs.len(), user.recommendations.len());
        for (got, want) in recs.iter().zip(&user.recommendations) {
            assert_eq!(got["item_id"], want.item.as_str());
            assert_eq!(got["channel"], want.channel.as_str());
            assert_eq!(got["explanation"].as_str(), want.explanation.as_deref());
        }
        // what was bought after the chain's day (the next test checks it against the store)
        let after = c["after"].as_array().unwrap();
        assert_eq!(c["after_items"], after.len());
        assert!(after
            .iter()
            .all(|p| p["first"].as_str().unwrap() >= user.as_of.as_str()));

        for (uri, status, code) in [
            (
                "/v1/users/no-such-user/chain",
                StatusCode::NOT_FOUND,
                "unknown_user",
            ),
            (
                "/v1/users/bad%20id/chain",
                StatusCode::BAD_REQUEST,
                "invalid_id",
            ),
        ] {
            let (got, body) = call(&app, get(uri)).await;
            assert_eq!(
                (got, body["error"]["code"].as_str()),
                (status, Some(code)),
                "{uri}"
            );
        }

        let (status, e) = call(&app, get("/v1/eval")).await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(
            e["retrieval"]["file"],
            path.file_name().unwrap().to_str().unwrap()
        );
        assert_eq!(
            e["retrieval"]["report"]["methods"]
                .as_array()
                .unwrap()
                .len(),
            6
        );
    });
}

/// A chain computed as of a split day: the narrative stops there and the purchases after it
/// are what the store holds, each marked when it was recommended.
#[test]
fn a_chain_as_of_a_split_lists_what_the_user_bought_next() {
    let chain = chain();
    let home = crate::common::temp_home();
    std::os::unix::fs::symlink(Store::path_in(&chain.home), Store::path_in(&home)).unwrap();
    let mut user = chain.results[0].clone();
    user.as_of = crate::retrieval::SPLIT.to_string();
    ResultStore::open(&home).unwrap().put_user(&user).unwrap();
    let state = Arc::new(AppState::open(&home, config(), None, None).unwrap());
    let app = router(state.clone());
    let store = Store::open(&home).unwrap();
    let split = recgpt_data::Timestamp::from_date(
        recgpt_data::parse_date(crate::retrieval::SPLIT).unwrap(),
    );
    let catalog = store.catalog();
    let want: HashSet<&str> = store
        .history(&user.user, &store.window(None, None))
        .unwrap()
        .events
        .iter()
        .filter(|e| e.at >= split && e.kind == recgpt_data::BehaviorKind::Purchase)
        .filter_map(|e| e.item.map(|ix| catalog.get(ix).id.as_str()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    assert!(
        !want.is_empty(),
        "user {} bought after the split",
        user.user
    );
    runtime().block_on(async {
        let (status, c) = call(&app, get(&format!("/v1/users/{}/chain", user.user))).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        assert!(c["narrative"]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "Behaviour history as of {}",
                crate::retrieval::SPLIT
            )));
        let after: HashSet<&str> = c["after"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["item_id"].as_str().unwrap())
            .collect();
        assert_eq!(c["after_items"], want.len());
        assert_eq!(after, want);
        let recommended: HashSet<&str> = user
            .recommendations
            .iter()
            .map(|r| r.item.as_str())
            .collect();
        for p in c["after"].as_array().unwrap() {
            assert!(p["first"].as_str().unwrap() >= crate::retrieval::SPLIT);
            assert_eq!(
                p["recommended"],
                recommended.contains(p["item_id"].as_str().unwrap())
            );
        }
        assert_eq!(
            c["after_recommended"],
            want.intersection(&recommended).count()
        );
        for r in c["recommendations"].as_array().unwrap() {
            assert_eq!(
                r["bought_after"],
                want.contains(r["item_id"].as_str().unwrap())
            );
        }
    });
}
