//! Stages `interests` + `tags` together with the real model on real users.

use std::collections::HashSet;

use recgpt_pipeline::config::Config;
use recgpt_pipeline::interests::{InterestsConfig, ThemeIndex};
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::reason::Reasoner;
use recgpt_pipeline::tags::validate::{stems, well_formed};
use recgpt_pipeline::tags::TagsConfig;

use crate::common::real_store;
use crate::llm::llm;

#[test]
fn tags_follow_interests_in_the_same_conversation_and_reach_the_target() {
    let store = real_store();
    let window = store.window(None, None);
    let compressor = crate::common::compressor(&store, 512);
    let themes = ThemeIndex::of(compressor.texts());
    let prompts = Prompts::new();
    let reasoner = Reasoner::new(
        &prompts,
        store.catalog(),
        compressor.texts(),
        &themes,
        &Config::default(),
    );
    let users = ["12347", "13018"];
    let histories: Vec<_> = users
        .iter()
        .map(|u| store.history(u, &window).unwrap())
        .collect();
    let narratives: Vec<_> = histories
        .iter()
        .map(|h| compressor.compress(h, &window))
        .collect();
    let pairs: Vec<_> = histories.iter().zip(&narratives).collect();
    let (out, tokens) = reasoner.run(llm(), &pairs).unwrap();
    assert_eq!(out.len(), 2);
    // the tags turns did not read the narratives again
    let narrative_tokens: usize = narratives.iter().map(|n| n.tokens).sum();
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
