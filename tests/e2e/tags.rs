//! Stages `interests` + `tags` together with the real model on real users.

use std::collections::{BTreeSet, HashSet};

use recgpt_data::text::stems;
use recgpt_data::History;
use recgpt_pipeline::categories::Categories;
use recgpt_pipeline::compress::Narrative;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::interests::validate::whole_sentence;
use recgpt_pipeline::interests::{InterestsConfig, ThemeIndex};
use recgpt_pipeline::llm::TokenUse;
use recgpt_pipeline::llm::{LlamaCppBackend, LlamaCppConfig};
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::reason::{Reasoner, UserReasoning};
use recgpt_pipeline::tags::validate::well_formed;
use recgpt_pipeline::tags::{TagsConfig, UserTags};

use crate::common::real_store;
use crate::llm::llm;

/// Tags of two real users, with the derived item categories: they follow the interests in the
/// same conversation, reach the target, keep at most `max_per_category` in each category, and
/// validate again to the same tags (what `recgpt eval llm` does with cached users).
#[test]
fn tags_follow_interests_in_the_same_conversation_and_reach_the_target() {
    let _turn = crate::common::model_turn();
    let categories = crate::embed::real_categories();
    let users = ["12347", "13018"];
    let (out, tokens, narrative_tokens) =
        reason_with(llm(), &users, Some(categories), &Config::default());
    assert_eq!(out.len(), 2);
    // the tags turns did not read the narratives again
    assert!(tokens.reused > 3 * narrative_tokens, "{tokens:?}");
    for r in &out {
        let names: HashSet<&str> = r
            .interests
            .interests
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert!(!names.is_empty());
        let t = &r.tags;
        assert_eq!(
            t.counts.answers,
            InterestsConfig::default().rounds,
            "one tags turn per round"
        );
        assert_eq!(t.counts.from_model + t.counts.from_fallback, t.tags.len());
        assert!(t.counts.proposed >= t.counts.from_model);
        assert!(
            t.tags.len() >= 40,
            "{}: {} tags {:?}",
            t.user,
            t.tags.len(),
            t.counts
        );
        assert!(t.tags.len() <= TagsConfig::default().target);
        let mut seen = HashSet::new();
        for tag in &t.tags {
            assert!(well_formed(&tag.tag), "{tag:?}");
            assert!(names.contains(tag.interest.as_str()), "{tag:?}");
            assert!(seen.insert(stems(&tag.tag)), "duplicate {tag:?}");
            assert!(tag.source == "model" || tag.source == "fallback");
        }
        assert!(t.prompt_version.starts_with("tags@"));
        at_most_max_per_category(t, categories);
    }
    validated_again(&out, &users, categories);
}

/// Stages `interests` + `tags` on a real user with any backend: what must hold whatever runs
/// the model (used by the OpenAI-compatible and mistral.rs backends' tests), with a 20-tag list
/// (the default list is tested above).
pub fn stages_work_with(llm: &dyn recgpt_pipeline::llm::LlmBackend) -> UserReasoning {
    let mut config = Config::default();
    config.tags.target = 20;
    config.tags.per_round = 10;
    config.tags.max_tokens = 400;
    let (out, tokens, narrative_tokens) = reason_with(llm, &["12347"], None, &config);
    let r = &out[0];
    assert_eq!(r.interests.model_id, llm.model_id());
    let c = &r.interests.counts;
    assert_eq!(c.answers, InterestsConfig::default().rounds, "{c:?}");
    assert!(c.unparsable < c.answers, "some answers parse: {c:?}");
    assert!(!r.interests.interests.is_empty(), "{c:?}");
    for i in &r.interests.interests {
        assert!(!i.evidence.is_empty(), "{i:?}");
    }
    let t = &r.tags;
    // the backend delivered tags the stage could parse; whether the rules keep them is the
    // model's quality (measured by the prompt regression's floors), not the backend's
    assert!(t.counts.unparsable < t.counts.answers, "{:?}", t.counts);
    assert!(t.counts.proposed > 0, "{:?}", t.counts);
    assert_eq!(t.counts.from_model + t.counts.from_fallback, t.tags.len());
    assert!(t.tags.len() >= config.tags.target, "{}", t.tags.len());
    for tag in &t.tags {
        assert!(well_formed(&tag.tag), "{tag:?}");
    }
    assert!(tokens.prompt > narrative_tokens, "{tokens:?}");
    out.into_iter().next().expect("one user")
}

/// The batch job's default model (`model::DEFAULT_MODEL_FILE`, chosen by the quality loop's
/// model comparison; the other tests run the smallest model for speed) on a real user: the
/// stages work with it, and it writes interest descriptions itself, as whole sentences.
#[test]
fn the_default_model_reasons_for_a_real_user() {
    let _turn = crate::common::model_turn();
    let path = recgpt_pipeline::model::default_model_path();
    assert!(
        path.is_file(),
        "the default model is not at {} (run `make model`)",
        path.display()
    );
    let llm = LlamaCppBackend::load(
        &path,
        LlamaCppConfig {
            context: 2048,
            batch: InterestsConfig::default().rounds,
            ..LlamaCppConfig::default()
        },
    )
    .expect("load the default model");
    let r = stages_work_with(&llm);
    let interests = &r.interests.interests;
    let written: Vec<&str> = interests
        .iter()
        .filter(|i| i.description_source == "model")
        .map(|i| i.description.as_str())
        .collect();
    assert!(!written.is_empty(), "{interests:#?}");
    for d in &written {
        assert!(whole_sentence(d), "{d}");
    }
    // user 12347 bought well over 50 items: the rounds describe at least ten of their themes
    assert!(interests.len() >= 10, "{interests:#?}");
}

/// At most `max_per_category` of the user's tags in each category, spread over several.
fn at_most_max_per_category(t: &UserTags, categories: &Categories) {
    let mut per: std::collections::BTreeMap<&str, usize> = Default::default();
    for tag in &t.tags {
        let c = tag
            .category
            .as_deref()
            .expect("every kept tag has a category");
        *per.entry(c).or_default() += 1;
        assert!(categories.categories.iter().any(|k| k.name == c), "{c}");
    }
    let limit = TagsConfig::default().max_per_category;
    assert!(per.values().all(|&n| n <= limit), "{per:?}");
    // the limit spreads a user's tags over several categories
    assert!(
        per.len() * limit >= t.tags.len() && per.len() >= 5,
        "{per:?}"
    );
}

/// The same answers validated again: the same tags under the same limit; under a limit of one,
/// one tag per category; under no limit, what the limit rejected is kept.
fn validated_again(out: &[UserReasoning], users: &[&str], categories: &Categories) {
    let default = TagsConfig::default().max_per_category;
    for limit in [default, 1, 50] {
        let mut config = Config::default();
        config.tags.max_per_category = limit;
        with_reasoner(
            users,
            Some(categories),
            &config,
            |reasoner, histories, narratives| {
                for ((r, history), narrative) in out.iter().zip(histories).zip(narratives) {
                    let t = &r.tags;
                    let again = reasoner
                        .predictor
                        .revalidate(t, &r.interests, history, narrative.as_of)
                        .unwrap();
                    let full = again.counts.rejected.contains_key("category_full");
                    match limit {
                        l if l == default => assert_eq!(&again, t),
                        1 => {
                            let categories_of = |u: &UserTags| -> BTreeSet<Option<String>> {
                                u.tags.iter().map(|x| x.category.clone()).collect()
                            };
                            // (else the limit of one would change nothing)
                            assert!(categories_of(t).len() < t.tags.len(), "{:?}", t.tags);
                            assert_eq!(categories_of(&again).len(), again.tags.len());
                            assert!(again.counts.from_model <= t.counts.from_model);
                        }
                        _ => {
                            assert!(!full, "{:?}", again.counts);
                            assert!(again.counts.from_model >= t.counts.from_model);
                            if t.counts.rejected.contains_key("category_full")
                                && t.counts.from_model < t.tags.len()
                            {
                                assert!(
                                    again.counts.from_model > t.counts.from_model,
                                    "{:?}",
                                    again.counts
                                );
                            }
                        }
                    }
                }
            },
        );
    }
}

/// Interests + tags of real `users` (narratives at budget 512) under `config`, with at most
/// `max_per_category` tags per category of `categories` when given: the outputs, the token use,
/// and the narratives' total tokens.
fn reason_with(
    llm: &dyn recgpt_pipeline::llm::LlmBackend,
    users: &[&str],
    categories: Option<&Categories>,
    config: &Config,
) -> (Vec<UserReasoning>, TokenUse, usize) {
    with_reasoner(
        users,
        categories,
        config,
        |reasoner, histories, narratives| {
            let pairs: Vec<_> = histories.iter().zip(narratives).collect();
            let (out, tokens) = reasoner.run(llm, &pairs).unwrap();
            (out, tokens, narratives.iter().map(|n| n.tokens).sum())
        },
    )
}

/// `f` with a reasoner over the real catalog under `config` (at most `max_per_category` tags
/// per category of `categories` when given) and the histories and narratives (budget 512) of
/// real `users`.
fn with_reasoner<R>(
    users: &[&str],
    categories: Option<&Categories>,
    config: &Config,
    f: impl FnOnce(&Reasoner, &[History], &[Narrative]) -> R,
) -> R {
    let store = real_store();
    let window = store.window(None, None);
    let compressor = crate::common::compressor(&store, 512);
    let themes = ThemeIndex::of(compressor.texts());
    let prompts = Prompts::new();
    let mut reasoner = Reasoner::new(
        &prompts,
        store.catalog(),
        compressor.texts(),
        &themes,
        config,
    );
    if let Some(categories) = categories {
        reasoner = reasoner.with_categories(crate::embed::embedder(), categories);
    }
    let (histories, narratives) = crate::common::narrated(&store, &compressor, &window, users);
    f(&reasoner, &histories, &narratives)
}
