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
