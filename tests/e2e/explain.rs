//! Stage `explain` and the whole chain (interests → tags → retrieval → explanations), with the
//! real model on real users of the real data.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use recgpt_data::{parse_date, Store};
use recgpt_pipeline::config::Config;
use recgpt_pipeline::explain::keys::InterestKeys;
use recgpt_pipeline::explain::validate::{rejection, Facts};
use recgpt_pipeline::explain::{Explainer, Pair};
use recgpt_pipeline::interests::ThemeIndex;
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::reason::Reasoner;
use recgpt_pipeline::recommend::{ChainCounts, Recommender, CHANNELS};
use recgpt_pipeline::results::{ResultStore, UserResult};
use recgpt_pipeline::retrieval;

use crate::common::{compressor, model_turn, real_import, temp_home};
use crate::embed::embedder;
use crate::llm::llm;
use crate::retrieval::{model, prepared, SPLIT};

pub const USERS: [&str; 2] = ["12347", "13018"];
const K: usize = 6;

pub fn config() -> Config {
    let mut config = Config::default();
    config.retrieve.k = K;
    config.compress.budget = 512;
    // one interests round and a short tag list: these tests are about explanations
    config.interests.rounds = 1;
    config.tags.target = 20;
    config.tags.per_round = 10;
    config.tags.max_tokens = 400;
    config
}

/// A data home with the real store, categories, model index and the chain's results for
/// [`USERS`], made once per test process.
pub struct Chain {
    pub home: PathBuf,
    pub results: Vec<UserResult>,
    pub counts: ChainCounts,
}

pub fn chain() -> &'static Chain {
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let home = temp_home();
        std::os::unix::fs::symlink(Store::path_in(&real_import().0), Store::path_in(&home))
            .unwrap();
        prepared().categories.save(&home).unwrap();
        let store = Store::open(&home).unwrap();
        let config = config();
        let (tower, before, _) = model();
        let index = retrieval::build_index(&home, &store, prepared(), tower, &config).unwrap();
        let cf = retrieval::cf_channel(before, tower.item_vectors.len(), &config);
        let results = ResultStore::open(&home).unwrap();
        let mut keys = InterestKeys::load(&results, config.explain.key_similarity).unwrap();
        let compressor = compressor(&store, config.compress.budget);
        let prompts = Prompts::new();
        let themes = ThemeIndex::of(compressor.texts());
        let recommender = Recommender {
            config: &config,
            reasoner: Reasoner::new(
                &prompts,
                store.catalog(),
                compressor.texts(),
                &themes,
                &config,
            )
            .with_categories(embedder(), &prepared().categories),
            explainer: explainer(&store, &prompts, compressor.texts()),
            prepared: prepared(),
            model: tower,
            index: index.as_ref(),
            embedder: embedder(),
            results: &results,
            cf: Some(cf.as_ref()),
        };
        let window = store.window(Some(parse_date(SPLIT).unwrap()), None);
        let (histories, narratives) = crate::common::narrated(&store, &compressor, &window, &USERS);
        let users: Vec<_> = histories.iter().zip(&narratives).collect();
        let _turn = model_turn();
        let (out, counts) = recommender.run(llm(), &mut keys, &users).unwrap();
        Chain {
            home,
            results: out,
            counts,
        }
    })
}

fn explainer<'a>(
    store: &'a Store,
    prompts: &'a Prompts,
    texts: &'a recgpt_data::text::ItemTexts,
) -> Explainer<'a> {
    Explainer::new(
        prompts,
        store.catalog(),
        texts,
        Some(&prepared().categories),
        &config().explain,
        config().llm.sampling,
    )
}

/// The (interest, item) pair of each of the user's recommendations.
fn pairs_of(r: &UserResult, store: &Store) -> Vec<Pair> {
    r.recommendations
        .iter()
        .map(|rec| {
            let p = r
                .interests
                .interests
                .iter()
                .position(|i| Some(&i.name) == rec.interest.as_ref())
                .unwrap();
            Pair {
                interest: r.interests.interests[p].name.clone(),
                description: r.interests.interests[p].description.clone(),
                key: r.interest_keys[p].clone(),
                item: store.catalog().ix(&rec.item).unwrap(),
            }
        })
        .collect()
}

#[test]
fn every_recommendation_has_its_interest_and_a_checked_explanation() {
    let chain = chain();
    let store = Store::open(&chain.home).unwrap();
    let config = config();
    assert_eq!(chain.results.len(), USERS.len());
    let mut from_model = 0;
    for r in &chain.results {
        let interests: Vec<&str> = r
            .interests
            .interests
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert!(
            !interests.is_empty(),
            "{}: {:?}",
            r.user,
            r.interests.counts
        );
        assert_eq!(r.interest_keys.len(), interests.len());
        assert_eq!(r.recommendations.len(), K, "{}", r.user);
        for rec in &r.recommendations {
            let interest = rec
                .interest
                .as_deref()
                .expect("an interest behind every item");
            assert!(interests.contains(&interest), "{rec:?}");
            // an item found by a tag query serves that tag's interest
            if let Some(tag) = &rec.tag {
                let t = r
                    .tags
                    .tags
                    .iter()
                    .find(|t| &t.tag == tag)
                    .expect("a kept tag");
                assert_eq!(t.interest, interest, "{rec:?}");
            }
            let text = rec.explanation.as_deref().expect("an explanation");
            match rec.explanation_source.as_deref() {
                Some("model") => {
                    from_model += 1;
                    let item = store.catalog().get(store.catalog().ix(&rec.item).unwrap());
                    let i = &r.interests.interests
                        [interests.iter().position(|n| *n == interest).unwrap()];
                    let facts = Facts::new(
                        &item.title,
                        rec.category.as_deref(),
                        &i.name,
                        &i.description,
                    );
                    assert_eq!(
                        rejection(
                            text,
                            &item.title,
                            &facts,
                            config.explain.min_words,
                            config.explain.max_words
                        ),
                        None,
                        "{text}"
                    );
                }
                Some("fallback") => {
                    assert!(text.starts_with("Picked for your interest in"), "{text}")
                }
                other => panic!("source {other:?}"),
            }
        }
    }
    // the list fuses the channels, and CF's items (the heaviest channel) are explained too
    let channels: Vec<&str> = chain
        .results
        .iter()
        .flat_map(|r| &r.recommendations)
        .map(|rec| rec.channel.as_str())
        .collect();
    assert!(
        channels.iter().all(|c| CHANNELS.contains(c)),
        "{channels:?}"
    );
    assert!(channels.contains(&"cf"), "{channels:?}");
    let e = &chain.counts.explain;
    assert_eq!(e.requested, USERS.len() * K);
    assert_eq!(e.generated + e.fallbacks + e.hits, e.requested, "{e:?}");
    assert_eq!(from_model, e.generated + shared_hits(chain), "{e:?}");
    // every model answer was either kept or rejected under a named rule, and a pair falls back
    // only after all its answers were rejected
    let rejected: usize = e.rejected.values().sum();
    assert_eq!(e.generations, e.generated + rejected, "{e:?}");
    // explain answers count in the chain's tokens, and the prompts of a batch share the system
    // prompt and the instructions (and those of one interest its line) as a prefix evaluated once
    assert!(e.generations > 0 && e.tokens.generated > 0, "{e:?}");
    assert!(
        chain.counts.tokens.generated > e.tokens.generated,
        "{:?}",
        chain.counts.tokens
    );
    assert!(e.tokens.reused * 3 > e.tokens.prompt, "{e:?}");
    let attempts = config.explain.attempts;
    assert!(
        e.generations >= e.generated + attempts * e.fallbacks,
        "{e:?}"
    );
    assert!(
        e.generations <= attempts * (e.generated + e.fallbacks),
        "{e:?}"
    );
    let stored = ResultStore::open(&chain.home).unwrap();
    assert_eq!(
        stored.user(USERS[0]).unwrap().as_ref(),
        Some(&chain.results[0])
    );
}

/// Recommendations whose model explanation was served to a second pair of the same call (the
/// same interest key and item recommended twice).
fn shared_hits(chain: &Chain) -> usize {
    let mut seen = HashSet::new();
    chain
        .results
        .iter()
        .flat_map(|r| &r.recommendations)
        .filter(|rec| rec.explanation_source.as_deref() == Some("model"))
        .filter(|rec| !seen.insert((rec.interest_key.clone(), rec.item.clone())))
        .count()
}

#[test]
fn explaining_the_same_pairs_again_is_all_cache_hits() {
    let chain = chain();
    let store = Store::open(&chain.home).unwrap();
    let results = ResultStore::open(&chain.home).unwrap();
    let prompts = Prompts::new();
    let compressor = compressor(&store, 512);
    let explainer = explainer(&store, &prompts, compressor.texts());
    let r = &chain.results[0];
    let pairs = pairs_of(r, &store);
    let _turn = model_turn();
    let (again, counts) = explainer.explain(llm(), &results, &pairs).unwrap();
    assert_eq!(counts.hits, pairs.len(), "{counts:?}");
    assert_eq!(counts.generations, 0);
    let texts: Vec<&str> = again.iter().map(|e| e.text.as_str()).collect();
    let stored: Vec<&str> = r
        .recommendations
        .iter()
        .map(|x| x.explanation.as_deref().unwrap())
        .collect();
    assert_eq!(texts, stored);
    // equivalent interest names share a key: a re-spelt name resolves to the stored key
    let mut keys = InterestKeys::load(&results, config().explain.key_similarity).unwrap();
    let name = &r.interests.interests[0].name;
    let respelt = format!("  {}S ", name.to_uppercase());
    let resolved = keys
        .resolve(&results, embedder(), &[name, &respelt])
        .unwrap();
    assert_eq!(
        resolved,
        vec![r.interest_keys[0].clone(), r.interest_keys[0].clone()]
    );
}

#[test]
fn grounded_answers_say_only_the_facts_and_reason_words() {
    let chain = chain();
    let store = Store::open(&chain.home).unwrap();
    let prompts = Prompts::new();
    let compressor = compressor(&store, 512);
    let mut config = config().explain;
    config.grounded = true;
    let explainer = Explainer::new(
        &prompts,
        store.catalog(),
        compressor.texts(),
        Some(&prepared().categories),
        &config,
        Config::default().llm.sampling,
    );
    let r = &chain.results[0];
    let mut pairs = pairs_of(r, &store);
    pairs.truncate(3);
    // a store of its own: the grounded answers are generated, not looked up
    let results = ResultStore::open(&temp_home()).unwrap();
    let _turn = model_turn();
    let (out, counts) = explainer.explain(llm(), &results, &pairs).unwrap();
    assert!(counts.generations >= pairs.len(), "{counts:?}");
    // decoded under the grammar: every answer parses, none says what the facts do not
    for rule in ["unparsable", "ungrounded", "length", "unfinished"] {
        assert!(!counts.rejected.contains_key(rule), "{rule}: {counts:?}");
    }
    assert!(
        out[0].key.prompt_version.contains("+grounded"),
        "{:?}",
        out[0].key
    );
    for (e, pair) in out.iter().zip(&pairs) {
        if e.source != "model" {
            continue;
        }
        let facts = format!(
            "{} {} {}",
            compressor.texts().compact(pair.item),
            explainer.category(pair.item).unwrap_or_default(),
            pair.interest
        );
        let known = recgpt_data::text::words(&facts);
        for w in recgpt_data::text::words(&e.text).iter().skip(1) {
            assert!(
                known.contains(w)
                    || recgpt_pipeline::explain::validate::REASON_WORDS.contains(&w.as_str()),
                "{w} in {:?} ({facts})",
                e.text
            );
        }
    }
}
