//! Stages `interests` + `tags` together with the real model on real users.

use std::collections::HashSet;

use recgpt_pipeline::categories::Categories;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::interests::validate::whole_sentence;
use recgpt_pipeline::interests::{InterestsConfig, ThemeIndex};
use recgpt_pipeline::llm::{LlamaCppBackend, LlamaCppConfig};
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::reason::{Reasoner, TokenUse, UserReasoning};
use recgpt_pipeline::tags::validate::{stems, well_formed};
use recgpt_pipeline::tags::TagsConfig;

use crate::common::real_store;
use crate::llm::llm;

#[test]
fn tags_follow_interests_in_the_same_conversation_and_reach_the_target() {
    let _turn = crate::common::model_turn();
    let (out, tokens, narrative_tokens) = reason(llm(), &["12347", "13018"]);
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
    }
}

/// Stages `interests` + `tags` on a real user with any backend: what must hold whatever runs
/// the model (used by the OpenAI-compatible and mistral.rs backends' tests).
pub fn stages_work_with(llm: &dyn recgpt_pipeline::llm::LlmBackend) -> UserReasoning {
    let (out, tokens, narrative_tokens) = reason(llm, &["12347"]);
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
    assert!(
        t.tags.len() >= TagsConfig::default().target,
        "{}",
        t.tags.len()
    );
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

#[test]
fn at_most_two_tags_per_category() {
    let _turn = crate::common::model_turn();
    let categories = crate::embed::real_categories();
    let (out, _, _) = reason_with(llm(), &["13018"], Some(categories));
    let t = &out[0].tags;
    let mut per: std::collections::BTreeMap<&str, usize> = Default::default();
    for tag in &t.tags {
        let c = tag
            .category
            .as_deref()
            .expect("every kept tag has a category");
        *per.entry(c).or_default() += 1;
        assert!(categories.categories.iter().any(|k| k.name == c), "{c}");
    }
    assert!(
        per.values()
            .all(|&n| n <= TagsConfig::default().max_per_category),
        "{per:?}"
    );
    // the limit spreads a user's tags over several categories
    assert!(per.len() * 2 >= t.tags.len() && per.len() >= 5, "{per:?}");
    assert_eq!(t.counts.from_model + t.counts.from_fallback, t.tags.len());
}

/// Interests + tags of real `users` (narratives at budget 512, default config): the outputs, the
/// token use, and the narratives' total tokens.
fn reason(
    llm: &dyn recgpt_pipeline::llm::LlmBackend,
    users: &[&str],
) -> (Vec<UserReasoning>, TokenUse, usize) {
    reason_with(llm, users, None)
}

/// [`reason`], with at most two tags per category of `categories` when given.
fn reason_with(
    llm: &dyn recgpt_pipeline::llm::LlmBackend,
    users: &[&str],
    categories: Option<&Categories>,
) -> (Vec<UserReasoning>, TokenUse, usize) {
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
        &Config::default(),
    );
    if let Some(categories) = categories {
        reasoner = reasoner.with_categories(crate::embed::embedder(), categories);
    }
    let (histories, narratives) = crate::common::narrated(&store, &compressor, &window, users);
    let pairs: Vec<_> = histories.iter().zip(&narratives).collect();
    let (out, tokens) = reasoner.run(llm, &pairs).unwrap();
    (out, tokens, narratives.iter().map(|n| n.tokens).sum())
}
