//! The batch job (`recgpt run`) as the real binary, with the real model on real users: kills
//! at several points (SIGKILL while the LLM works, an abort in the middle of a result's write,
//! SIGKILL right after results were stored, a SIGTERM stop) and reruns that end where an
//! uninterrupted run ends; the incremental skip; two concurrent shards on one store (and `recgpt stats
//! explanations` adding up both), then a change after reasoning that keeps the interests and
//! tags; a failed user recorded and retried; `recgpt show` and
//! `recgpt export`. The kill/resume and shard tests run on both results stores: the data
//! home's SQLite file and a PostgreSQL database (`[store] url`, on the server `make test`
//! starts).
//!
//! The job runs with short budgets (one interests round, 2 recommendations per user) so that
//! a user costs a few seconds on 2 cores; the full settings run in `make demo`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use recgpt_data::Store;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::results::{ResultStore, UserResult};
use recgpt_pipeline::retrieval;
use recgpt_retrieval::tower::TowerModel;

use crate::common::{model_file, model_turn, real_import, scratch_postgres, temp_home};
use crate::retrieval::{model, prepared};

pub(crate) const CONFIG: &str = "
[compress]
budget = 384
[interests]
rounds = 1
max_tokens = 300
[tags]
target = 6
per_round = 6
max_tokens = 200
[retrieve]
k = 2
[explain]
attempts = 1
[job]
group_users = 2
";

/// A home with the real store, categories, a trained model and its index (no results).
fn base_home() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let home = temp_home();
        std::os::unix::fs::symlink(Store::path_in(&real_import().0), Store::path_in(&home))
            .unwrap();
        prepared().categories.save(&home).unwrap();
        let (tower, _, _) = model();
        tower.save(&TowerModel::dir_in(&home)).unwrap();
        let store = Store::open(&home).unwrap();
        retrieval::build_index(&home, &store, prepared(), tower, &Config::default()).unwrap();
        home
    })
}

/// A fresh home sharing the base's inputs, with its own results store and `config`: the
/// home's SQLite file, or the PostgreSQL database at `store` (`[store] url` in its config).
pub(crate) fn job_home(config: &str, store: Option<String>) -> PathBuf {
    let home = temp_home();
    let base = base_home();
    for name in ["events.redb", "categories.json", "model", "index"] {
        std::os::unix::fs::symlink(base.join(name), home.join(name)).unwrap();
    }
    if let Some(url) = store {
        std::fs::write(
            home.join("store.toml"),
            format!("\n[store]\nurl = {url:?}\n"),
        )
        .unwrap();
    }
    set_config(&home, config);
    home
}

/// Writes the home's configuration: `config` and the home's store.
pub(crate) fn set_config(home: &Path, config: &str) {
    let store = std::fs::read_to_string(home.join("store.toml")).unwrap_or_default();
    std::fs::write(home.join("recgpt.toml"), format!("{config}{store}")).unwrap();
}

/// The home's results store, as its configuration names it.
fn results(home: &Path) -> ResultStore {
    let config = Config::load(None, home).unwrap();
    config.store.open(home).unwrap()
}

pub(crate) fn recgpt(home: &Path, args: &[&str]) -> Command {
    recgpt_via(&[], home, args)
}

/// `recgpt --home HOME ARGS` run through `wrapper` (for example `ip netns exec NS`), with the
/// test environment.
pub(crate) fn recgpt_via(wrapper: &[&str], home: &Path, args: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_recgpt");
    let mut c = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.arg("--home")
        .arg(home)
        .args(args)
        .env("RECGPT_MODEL", model_file())
        .env(
            "RECGPT_EMBEDDER",
            recgpt_pipeline::model::default_embedder_dir(),
        )
        .env("RECGPT_LOG", "warn")
        .env_remove("RECGPT_FAULT")
        .stdin(Stdio::null());
    c
}

/// Runs `recgpt run --json ARGS` to the end and returns its summary.
pub(crate) fn run(home: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "run"];
    all.extend(args);
    let out = recgpt(home, &all).output().unwrap();
    assert!(out.status.success(), "recgpt run {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn count(summary: &serde_json::Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

/// Every stored result by user, and the recorded failures' users.
pub(crate) fn stored(home: &Path) -> (BTreeMap<String, UserResult>, BTreeSet<String>) {
    let results = results(home);
    let users = results
        .users()
        .unwrap()
        .into_iter()
        .map(|u| {
            let r = results.user(&u).unwrap().unwrap();
            (u, r)
        })
        .collect();
    let failed = results
        .failures()
        .unwrap()
        .into_iter()
        .map(|f| f.user)
        .collect();
    (users, failed)
}

pub(crate) fn kill(child: &mut Child) {
    // SIGKILL: no handler, no cleanup
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Waits until the home's results store holds at least `n` users.
fn wait_for_users(home: &Path, child: &mut Child, n: u64) {
    let started = Instant::now();
    loop {
        let stored = results(home).counts().map_or(0, |c| c.users);
        if stored >= n {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the job ended ({status}) before storing {n} users");
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "no progress in 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What must not depend on how a run was interrupted: the inputs' fingerprint, the interests
/// and tags, and the recommended items with the interest behind each.
fn chain_of(r: &UserResult) -> serde_json::Value {
    serde_json::json!({
        "fingerprint": r.fingerprint,
        "interests": r.interests,
        "tags": r.tags,
        "items": r.recommendations.iter()
            .map(|x| (x.item.clone(), x.tag.clone(), x.interest.clone(), x.explanation.is_some()))
            .collect::<Vec<_>>(),
    })
}

/// The kill test's configuration: one user per LLM group. A resumed run regroups the users
/// left, and llama.cpp's batched decoding is not bit-identical across batch compositions
/// (float sums in another order), so the comparison holds each user's batch fixed.
pub(crate) fn kill_config() -> String {
    CONFIG.replace("group_users = 2", "group_users = 1")
}

pub(crate) type Stored = (BTreeMap<String, UserResult>, BTreeSet<String>);

/// One uninterrupted run of the kill test's users on the SQLite store (run once, under the
/// caller's model turn): what every interrupted run, on either store, must end at.
pub(crate) fn kill_reference() -> &'static Stored {
    static REFERENCE: OnceLock<Stored> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let users = ["--users", "4"];
        let reference = job_home(&kill_config(), None);
        let first = run(&reference, &users);
        assert_eq!(count(&first, "selected"), 4, "{first}");
        assert_eq!(
            count(&first, "done") + count(&first, "failed"),
            4,
            "{first}"
        );
        assert!(count(&first, "done") >= 2, "{first}");
        let (expected, expected_failed) = stored(&reference);
        assert_eq!(expected.len() as u64, count(&first, "done"));
        assert_eq!(expected_failed.len() as u64, count(&first, "failed"));

        // a rerun with unchanged inputs does nothing
        let again = run(&reference, &users);
        assert_eq!(count(&again, "done"), 0, "{again}");
        assert_eq!(count(&again, "skipped"), count(&first, "done"), "{again}");
        assert_eq!(
            count(&again, "failed_before"),
            count(&first, "failed"),
            "{again}"
        );
        assert_eq!(count(&again["tokens"], "generated"), 0, "no LLM work");
        (expected, expected_failed)
    })
}

fn killed_runs_resume(store: Option<String>) {
    let _turn = model_turn();
    let users = ["--users", "4"];
    let (expected, expected_failed) = kill_reference();

    let home = job_home(&kill_config(), store);
    // 1. SIGKILL while the model works on the first group
    let mut child = recgpt(&home, &["run", "--users", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    kill(&mut child);
    let (after_kill, _) = stored(&home);
    for (user, r) in &after_kill {
        assert_eq!(chain_of(r), chain_of(&expected[user]), "user {user}");
    }

    // 2. abort in the middle of the second write of a run: the row is not visible
    let before = stored(&home).0.len();
    let out = recgpt(&home, &["run", "--users", "4"])
        .env("RECGPT_FAULT", "put_user:2")
        .output()
        .unwrap();
    assert!(!out.status.success(), "aborted: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("aborting at put_user #2"),
        "{}",
        text(&out)
    );
    let (after_abort, _) = stored(&home);
    assert_eq!(after_abort.len(), before + 1, "{:?}", after_abort.keys());

    // 3. SIGKILL right after one more user was stored
    let mut child = recgpt(&home, &["run", "--users", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_users(&home, &mut child, after_abort.len() as u64 + 1);
    kill(&mut child);

    // 4. SIGTERM: the run stops taking users, finishes what the model started and prints its
    // summary; every selected user is accounted for
    let child = recgpt(&home, &["--json", "run", "--users", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "graceful stop: {}", text(&out));
    let stopped: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        count(&stopped, "selected"),
        ["done", "skipped", "failed", "failed_before", "interrupted"]
            .iter()
            .map(|f| count(&stopped, f))
            .sum::<u64>(),
        "{stopped}"
    );

    // 5. a rerun finishes the rest
    let (partial, partial_failed) = stored(&home);
    let last = run(&home, &users);
    assert_eq!(
        count(&last, "skipped") + count(&last, "failed_before"),
        (partial.len() + partial_failed.len()) as u64,
        "{last}"
    );
    let (resumed, resumed_failed) = stored(&home);
    assert_eq!(&resumed_failed, expected_failed);
    assert_eq!(
        resumed.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (user, r) in &resumed {
        assert_eq!(chain_of(r), chain_of(&expected[user]), "user {user}");
    }
    // an (interest, item) pair reads the same explanation wherever it appears
    let mut seen = BTreeMap::new();
    for x in resumed.values().flat_map(|r| &r.recommendations) {
        if let (Some(key), Some(text)) = (&x.interest_key, &x.explanation) {
            let first = seen.entry((key.clone(), x.item.clone())).or_insert(text);
            assert_eq!(*first, text);
        }
    }
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    killed_runs_resume(None);
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result_on_postgres() {
    killed_runs_resume(Some(scratch_postgres("killed_runs_resume")));
}

#[test]
fn two_concurrent_shards_cover_every_user_once() {
    two_concurrent_shards(None, true);
}

/// On PostgreSQL the shards, the reuse statistics and the rerun; the change after reasoning
/// (a store-independent part) runs on SQLite only.
#[test]
fn two_concurrent_shards_cover_every_user_once_on_postgres() {
    two_concurrent_shards(Some(scratch_postgres("two_concurrent_shards")), false);
}

fn two_concurrent_shards(store: Option<String>, change_after_reasoning: bool) {
    let _turn = model_turn();
    let home = job_home(CONFIG, store);
    let shard = |i: &str| {
        recgpt(
            &home,
            &[
                "--json",
                "run",
                "--users",
                "4",
                "--shard",
                i,
                "--threads",
                "1",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (shard("0/2"), shard("1/2"));
    let summaries: Vec<serde_json::Value> = [a, b]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let selected: u64 = summaries.iter().map(|s| count(s, "selected")).sum();
    assert_eq!(selected, 4, "{summaries:?}");
    assert!(summaries.iter().all(|s| count(s, "selected") < 4));
    let finished: u64 = summaries
        .iter()
        .map(|s| count(s, "done") + count(s, "failed"))
        .sum();
    assert_eq!(finished, 4, "{summaries:?}");
    let (users, failed) = stored(&home);
    assert_eq!(users.len() + failed.len(), 4);
    assert!(users.keys().all(|u| !failed.contains(u)));

    // the cache's reuse adds up both processes' users
    let out = recgpt(&home, &["--json", "stats", "explanations"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let reuse: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pairs: Vec<(String, String)> = users
        .values()
        .flat_map(|r| &r.recommendations)
        .filter(|x| x.explanation.is_some())
        .filter_map(|x| Some((x.interest_key.clone()?, x.item.clone())))
        .collect();
    let distinct: BTreeSet<_> = pairs.iter().collect();
    assert_eq!(count(&reuse, "users"), users.len() as u64, "{reuse}");
    assert_eq!(count(&reuse, "other_users"), 0, "{reuse}");
    assert_eq!(count(&reuse, "pairs"), pairs.len() as u64, "{reuse}");
    assert_eq!(count(&reuse, "distinct"), distinct.len() as u64, "{reuse}");
    assert!(count(&reuse, "cached") >= distinct.len() as u64, "{reuse}");
    assert_eq!(
        count(&reuse, "model") + count(&reuse, "fallback"),
        count(&reuse, "cached")
    );

    // the whole user set again, unsharded: nothing left to do
    let all = run(&home, &["--users", "4"]);
    assert_eq!(count(&all, "done"), 0, "{all}");
    assert_eq!(
        count(&all, "skipped") + count(&all, "failed_before"),
        4,
        "{all}"
    );

    if !change_after_reasoning {
        return;
    }
    // a change after reasoning (more recommendations a user): every stored user is redone
    // with its interests and tags kept, so only the explain stage asks the model
    set_config(&home, &CONFIG.replace("k = 2", "k = 3"));
    let redo = run(&home, &["--users", "4"]);
    let n = users.len() as u64;
    assert_eq!(count(&redo, "reasoning_reused"), n, "{redo}");
    assert!(count(&redo, "done") >= n, "{redo}");
    if failed.is_empty() {
        // (a user that failed before is reasoned now)
        assert_eq!(redo["tokens"], redo["explain"]["tokens"], "{redo}");
    }
    if count(&reuse, "pairs") > 0 {
        assert!(count(&redo["explain"], "requested") > count(&reuse, "pairs"));
    }
    let (redone, _) = stored(&home);
    for (user, before) in &users {
        let after = &redone[user];
        assert_eq!(after.interests, before.interests, "user {user}");
        assert_eq!(after.tags, before.tags, "user {user}");
        assert_eq!(after.reasoning_fingerprint, before.reasoning_fingerprint);
        assert_ne!(after.fingerprint, before.fingerprint);
        assert!(after.recommendations.len() >= before.recommendations.len());
    }
}

#[test]
fn a_failed_user_is_recorded_shown_and_retried() {
    let _turn = model_turn();
    // an interests answer of at most 40 tokens is cut off: no answer parses
    let home = job_home(&CONFIG.replace("max_tokens = 300", "max_tokens = 40"), None);
    let user = "12347";
    let first = run(&home, &[user]);
    assert_eq!(count(&first, "failed"), 1, "{first}");
    assert_eq!(first["failures"][0]["stage"], "reason", "{first}");
    let reason = first["failures"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("invalid output"), "{reason}");
    let show = recgpt(&home, &["show", user]).output().unwrap();
    assert!(!show.status.success());
    assert!(
        String::from_utf8_lossy(&show.stderr).contains("--retry-failed"),
        "{}",
        text(&show)
    );
    let again = run(&home, &[user]);
    assert_eq!(
        (count(&again, "failed_before"), count(&again, "done")),
        (1, 0),
        "{again}"
    );

    // a longer answer budget, and --retry-failed reruns exactly the failed user
    set_config(
        &home,
        &CONFIG.replace("max_tokens = 300", "max_tokens = 500"),
    );
    let retried = run(&home, &["--retry-failed", user, "12348"]);
    assert_eq!(
        (count(&retried, "done"), count(&retried, "skipped")),
        (1, 1),
        "{retried}"
    );
    let (users, failed) = stored(&home);
    assert!(failed.is_empty());
    assert_eq!(users.keys().collect::<Vec<_>>(), vec![user]);
    let result = &users[user];
    assert!(!result.interests.interests.is_empty());

    let show = recgpt(&home, &["show", user]).output().unwrap();
    assert!(show.status.success(), "{}", text(&show));
    let shown = String::from_utf8_lossy(&show.stdout);
    for part in [
        "== narrative",
        "== interests",
        "== tags",
        "== recommendations",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    for x in &result.recommendations {
        assert!(shown.contains(&x.item), "{} in {shown}", x.item);
    }

    let out = recgpt(&home, &["export", "recommendations"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<UserResult> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, vec![result.clone()]);
    let csv = home.join("recs.csv");
    let out = recgpt(
        &home,
        &["export", "recommendations", "--format", "csv", "--out"],
    )
    .arg(&csv)
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), result.recommendations.len());
    assert!(rows.iter().all(|r| &r[0] == user));
}
