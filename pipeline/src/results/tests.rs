use super::*;
use rusqlite::{params, Connection};

/// A fresh store of one kind, opened as often as a test needs (each handle stands for another
/// process).
enum Fixture {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Fixture {
    fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A scratch database named after the test on the server of `RECGPT_TEST_POSTGRES`
    /// (`make test` starts one).
    fn postgres(test: &str) -> Self {
        let url = scratch_database(&test_postgres(), &format!("recgpt_unit_{test}"))
            .unwrap_or_else(|e| panic!("scratch database: {e}"));
        Self::Postgres(url)
    }

    fn open(&self) -> ResultStore {
        match self {
            Self::Sqlite(home) => ResultStore::open(home.path()).unwrap(),
            Self::Postgres(url) => ResultStore::connect(url).unwrap(),
        }
    }
}

/// The admin URL of the PostgreSQL server the tests may create databases on.
pub(crate) fn test_postgres() -> String {
    std::env::var("RECGPT_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "RECGPT_TEST_POSTGRES is unset: run `make test` (it starts a throwaway PostgreSQL \
             cluster) or point it at a server where the tests may create databases"
        )
    })
}

/// Each test body below runs on both stores, as `on_sqlite::NAME` and `on_postgres::NAME`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test]
            fn $name() {
                super::$name(&super::Fixture::sqlite())
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $name() {
                super::$name(&super::Fixture::postgres(stringify!($name)))
            })*
        }
    };
}

on_both_stores!(
    first_writer_wins_and_keys_separate_versions,
    a_stored_result_clears_the_users_failure,
    cache_reuse_counts_repeated_pairs_and_leaves_other_versions_out,
    every_write_of_a_user_changes_its_revision,
    a_visit_that_fails_stops_the_scan,
);

fn explanation(text: &str) -> Explanation {
    Explanation {
        key: ExplanationKey {
            interest_key: "vintage teacup".into(),
            item: "22423".into(),
            prompt_version: "explain@1".into(),
            model_id: "m".into(),
        },
        interest: "Vintage teacups".into(),
        text: text.into(),
        source: "model".into(),
        rejected: vec![],
    }
}

fn first_writer_wins_and_keys_separate_versions(fixture: &Fixture) {
    let store = fixture.open();
    let first = explanation("A regency cake stand for your vintage tea parties.");
    assert_eq!(store.put_explanation(&first).unwrap(), first);
    let second = explanation("Another text.");
    assert_eq!(store.put_explanation(&second).unwrap(), first);
    let mut other = second.clone();
    other.key.prompt_version = "explain@2".into();
    assert_eq!(store.put_explanation(&other).unwrap(), other);
    assert_eq!(store.counts().unwrap().explanations, 2);

    // a second handle (another process in production) reads the same rows
    let again = fixture.open();
    assert_eq!(again.explanation(&first.key).unwrap(), Some(first));
    store
        .put_interest_key("vintage teacup", &[0.5, -1.0])
        .unwrap();
    assert_eq!(
        again.interest_keys().unwrap(),
        vec![("vintage teacup".to_string(), vec![0.5, -1.0])]
    );
    assert_eq!(again.user("12347").unwrap(), None);
}

fn a_stored_result_clears_the_users_failure(fixture: &Fixture) {
    let store = fixture.open();
    let failure = Failure {
        user: "12347".into(),
        fingerprint: "f1".into(),
        stage: "reason".into(),
        reason: "llama.cpp: out of memory".into(),
    };
    store.put_failure(&failure).unwrap();
    assert_eq!(store.failures().unwrap(), vec![failure.clone()]);
    assert_eq!(store.failure("12347").unwrap(), Some(failure));
    let result = UserResult::empty("12347", "f2");
    store.put_user(&result).unwrap();
    assert!(store.failures().unwrap().is_empty());
    assert_eq!(store.failure("12347").unwrap(), None);
    assert_eq!(store.fingerprint("12347").unwrap().as_deref(), Some("f2"));
    assert_eq!(store.fingerprint("12348").unwrap(), None);
    let mut seen = Vec::new();
    store
        .for_each_user(|r| {
            seen.push(r);
            Ok::<_, ResultsError>(())
        })
        .unwrap();
    assert_eq!(seen, vec![result]);
}

fn cached(key: &str, item: &str, version: &str, source: &str, rejected: &[&str]) -> Explanation {
    Explanation {
        key: ExplanationKey {
            interest_key: key.into(),
            item: item.into(),
            prompt_version: version.into(),
            model_id: "m".into(),
        },
        interest: key.into(),
        text: "You like it.".into(),
        source: source.into(),
        rejected: rejected.iter().map(|r| r.to_string()).collect(),
    }
}

fn explained_user(id: &str, pairs: &[(&str, &str)]) -> UserResult {
    let mut r = UserResult::empty(id, "f");
    r.recommendations = pairs
        .iter()
        .map(|(key, item)| Recommendation {
            item: item.to_string(),
            title: String::new(),
            category: None,
            score: 0.0,
            tag: None,
            channel: "llm".into(),
            interest: Some(key.to_string()),
            interest_key: Some(key.to_string()),
            explanation: Some("You like it.".into()),
            explanation_source: Some("model".into()),
        })
        .collect();
    r
}

fn cache_reuse_counts_repeated_pairs_and_leaves_other_versions_out(fixture: &Fixture) {
    let store = fixture.open();
    for e in [
        cached("tea", "1", "v2", "model", &[]),
        cached("tea", "2", "v2", "fallback", &["too_long", "ungrounded"]),
        cached("mugs", "1", "v2", "model", &["too_long"]),
        cached("old", "9", "v1", "model", &[]),
    ] {
        store.put_explanation(&e).expect("put explanation");
    }
    store
        .put_user(&explained_user("a", &[("tea", "1"), ("tea", "2")]))
        .expect("put a");
    store
        .put_user(&explained_user("b", &[("tea", "1"), ("mugs", "1")]))
        .expect("put b");
    store
        .put_user(&explained_user("c", &[("old", "9")]))
        .expect("put c");

    let s = recgpt_explain::reuse::CacheReuse::measure(&store, "v2", "m").expect("measure");
    assert_eq!((s.users, s.other_users), (2, 1));
    assert_eq!((s.pairs, s.distinct), (4, 3));
    assert!((s.reuse - 0.25).abs() < 1e-9);
    assert_eq!(s.curve, vec![(2, s.reuse)]);
    assert_eq!((s.cached, s.model, s.fallback, s.answers), (3, 2, 1, 5));
    assert_eq!(s.rejected.get("too_long"), Some(&2));
    assert_eq!(s.rejected.get("ungrounded"), Some(&1));
}

/// A user's revision, as a follower of the store sees it.
fn revision(store: &ResultStore, user: &str) -> Option<i64> {
    let changes = store.changes_since(-1).unwrap();
    changes.into_iter().find(|(u, _)| u == user).map(|(_, r)| r)
}

fn every_write_of_a_user_changes_its_revision(fixture: &Fixture) {
    let store = fixture.open();
    assert_eq!(revision(&store, "12347"), None);
    let result = UserResult::empty("12347", "f1");
    store.put_user(&result).unwrap();
    let first = revision(&store, "12347").unwrap();
    // the same row written again (a forced rerun) is a new revision too
    store.put_user(&result).unwrap();
    let second = revision(&store, "12347").unwrap();
    assert_ne!(first, second);
    let stored = store.user_revision("12347").unwrap().unwrap();
    assert_eq!((stored.revision, stored.result), (second, result));
    // revisions follow the write order across rows
    store.put_user(&UserResult::empty("13018", "f1")).unwrap();
    store.put_user(&UserResult::empty("12347", "f2")).unwrap();
    let third = revision(&store, "13018").unwrap();
    let fourth = revision(&store, "12347").unwrap();
    assert!(
        second < third && third < fourth,
        "{second} {third} {fourth}"
    );
    assert_eq!(store.max_revision().unwrap(), fourth);
    assert_eq!(
        store.changes_since(second).unwrap(),
        vec![("13018".to_string(), third), ("12347".to_string(), fourth)]
    );
    assert!(store.changes_since(fourth).unwrap().is_empty());
}

#[test]
fn a_store_made_before_the_schema_had_versions_is_migrated() {
    let home = tempfile::tempdir().unwrap();
    let path = ResultStore::path_in(home.path());
    {
        // the schema as it was before `revision`, with one stored user
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(sqlite::MIGRATIONS[0]).unwrap();
        let json = serde_json::to_string(&UserResult::empty("12347", "f1")).unwrap();
        conn.execute(
            "INSERT INTO users (user, fingerprint, result) VALUES ('12347', 'f1', ?1)",
            params![json],
        )
        .unwrap();
    }
    let store = ResultStore::open(home.path()).unwrap();
    let version: usize = sqlite::Sqlite::open(&path)
        .unwrap()
        .reader()
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, sqlite::MIGRATIONS.len());
    assert_eq!(revision(&store, "12347"), Some(0));
    assert_eq!(store.fingerprint("12347").unwrap().as_deref(), Some("f1"));
    store.put_user(&UserResult::empty("12347", "f2")).unwrap();
    assert_eq!(revision(&store, "12347"), Some(1));
    // opening it again runs nothing twice
    drop(store);
    ResultStore::open(home.path()).unwrap();
}

#[test]
fn readers_do_not_wait_for_an_open_write_transaction() {
    let home = tempfile::tempdir().unwrap();
    ResultStore::open(home.path())
        .unwrap()
        .put_user(&UserResult::empty("12347", "f1"))
        .unwrap();
    let store = sqlite::Sqlite::open(&ResultStore::path_in(home.path())).unwrap();
    // this process's writer in the middle of a transaction that has written but not committed
    let mut writer = store.writer();
    let tx = writer.transaction().unwrap();
    tx.execute("UPDATE users SET fingerprint = 'f2'", [])
        .unwrap();
    // reads go through other connections and see the last committed row
    let fingerprint = |s: &sqlite::Sqlite| s.fingerprint("12347").unwrap();
    assert_eq!(fingerprint(&store).as_deref(), Some("f1"));
    // several readers held at once, each reading the committed row
    let readers: Vec<_> = (0..4).map(|_| store.reader().unwrap()).collect();
    for reader in &readers {
        let fingerprint: String = reader
            .query_row(
                "SELECT fingerprint FROM users WHERE user = '12347'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(fingerprint, "f1");
    }
    drop(readers);
    tx.commit().unwrap();
    drop(writer);
    assert_eq!(fingerprint(&store).as_deref(), Some("f2"));
    // and a reader cannot write
    let write = store.reader().unwrap().execute("DELETE FROM users", []);
    assert!(write.is_err());
}

fn a_visit_that_fails_stops_the_scan(fixture: &Fixture) {
    let store = fixture.open();
    for user in ["a", "b", "c"] {
        store.put_user(&UserResult::empty(user, "f")).unwrap();
    }
    let mut seen = Vec::new();
    let stopped = store.for_each_user(|r| {
        seen.push(r.user.clone());
        if r.user == "b" {
            return Err(ResultsError {
                location: "visit".into(),
                message: "stop".into(),
            });
        }
        Ok(())
    });
    assert_eq!(stopped.unwrap_err().message, "stop");
    assert_eq!(seen, ["a", "b"]);
}

#[test]
fn processes_opening_a_new_postgres_store_together_migrate_it_once() {
    let Fixture::Postgres(url) = Fixture::postgres("migrate_once") else {
        unreachable!()
    };
    let opened: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| ResultStore::connect(&url).map(|_| ())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let versions: Vec<i32> = client
        .query("SELECT version FROM recgpt_schema", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1]);
}

#[test]
fn a_store_url_that_is_not_postgres_is_refused_with_its_reason() {
    let err = ResultStore::connect("mysql://db/recgpt").unwrap_err();
    assert!(err.message.contains("not a PostgreSQL URL"), "{err}");
    // an unreachable server names the URL (without its password) and the cause
    let err = ResultStore::connect("postgres://u:secret@127.0.0.1:1/none").unwrap_err();
    assert_eq!(err.location, "postgres://u@127.0.0.1:1/none");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn a_postgres_store_can_be_dropped_by_an_async_task() {
    let Fixture::Postgres(url) = Fixture::postgres("dropped_async") else {
        unreachable!()
    };
    let store = ResultStore::connect(&url).unwrap();
    // a pooled connection is open
    assert!(store.users().unwrap().is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // (a server's state dropped as it shuts down)
    runtime.block_on(async move { drop(store) });
}
