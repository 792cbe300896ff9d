use super::*;

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

#[test]
fn first_writer_wins_and_keys_separate_versions() {
    let home = tempfile::tempdir().unwrap();
    let store = ResultStore::open(home.path()).unwrap();
    let first = explanation("A regency cake stand for your vintage tea parties.");
    assert_eq!(store.put_explanation(&first).unwrap(), first);
    let second = explanation("Another text.");
    assert_eq!(store.put_explanation(&second).unwrap(), first);
    let mut other = second.clone();
    other.key.prompt_version = "explain@2".into();
    assert_eq!(store.put_explanation(&other).unwrap(), other);
    assert_eq!(store.counts().unwrap().explanations, 2);

    // a second handle (another process in production) reads the same rows
    let again = ResultStore::open(home.path()).unwrap();
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

#[test]
fn a_stored_result_clears_the_users_failure() {
    let home = tempfile::tempdir().unwrap();
    let store = ResultStore::open(home.path()).unwrap();
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

#[test]
fn cache_reuse_counts_repeated_pairs_and_leaves_other_versions_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ResultStore::open(dir.path()).expect("store");
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

#[test]
fn every_write_of_a_user_changes_its_revision() {
    let home = tempfile::tempdir().unwrap();
    let store = ResultStore::open(home.path()).unwrap();
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
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        let json = serde_json::to_string(&UserResult::empty("12347", "f1")).unwrap();
        conn.execute(
            "INSERT INTO users (user, fingerprint, result) VALUES ('12347', 'f1', ?1)",
            params![json],
        )
        .unwrap();
    }
    let store = ResultStore::open(home.path()).unwrap();
    let version: usize = store
        .reader()
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len());
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
    let store = ResultStore::open(home.path()).unwrap();
    store.put_user(&UserResult::empty("12347", "f1")).unwrap();
    // this process's writer in the middle of a transaction that has written but not committed
    let mut writer = store.writer();
    let tx = writer.transaction().unwrap();
    tx.execute("UPDATE users SET fingerprint = 'f2'", [])
        .unwrap();
    // reads go through other connections and see the last committed row
    assert_eq!(store.fingerprint("12347").unwrap().as_deref(), Some("f1"));
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
    assert_eq!(store.fingerprint("12347").unwrap().as_deref(), Some("f2"));
    // and a reader cannot write
    let write = store.reader().unwrap().execute("DELETE FROM users", []);
    assert!(write.is_err());
}
