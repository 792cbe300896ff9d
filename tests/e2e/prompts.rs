//! Golden prompts: every template rendered for real users (`prompts/cases/golden.json`) and
//! compared with committed snapshots (`tests/e2e/snapshots/`), so any change to a template, to
//! compression or to theme mining shows up as a reviewed diff (`cargo insta review`).

use recgpt_pipeline::explain::{ExplainConfig, Explainer, Pair};
use recgpt_pipeline::interests::{
    Evidence, Interest, InterestCounts, InterestMiner, InterestsConfig, ThemeIndex, UserInterests,
};
use recgpt_pipeline::llm::{ChatMessage, Sampling};
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::tags::{Part, TagPredictor, TagsConfig};
use serde::Deserialize;

use crate::common::real_store;

#[derive(Deserialize)]
struct Case {
    user: String,
    budget: usize,
    #[serde(default)]
    until: Option<String>,
}

fn show(messages: &[ChatMessage]) -> String {
    messages
        .iter()
        .map(|m| format!("[{}]\n{}", m.role, m.content))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn golden_prompts_render_as_snapshotted() {
    let cases: Vec<Case> =
        serde_json::from_str(include_str!("../../prompts/cases/golden.json")).unwrap();
    let store = real_store();
    let prompts = Prompts::new();
    for case in cases {
        let until = case
            .until
            .as_deref()
            .map(|d| recgpt_data::parse_date(d).unwrap());
        let window = store.window(until, None);
        let compressor = crate::common::compressor(&store, case.budget);
        let themes = ThemeIndex::of(compressor.texts());
        let miner = InterestMiner {
            prompts: &prompts,
            catalog: store.catalog(),
            texts: compressor.texts(),
            themes: &themes,
            config: InterestsConfig::default(),
            sampling: Sampling::default(),
        };
        let history = store.history(&case.user, &window).unwrap();
        let narrative = compressor.compress(&history, &window);
        let requests = miner.requests(&narrative).unwrap();
        let schemas: Vec<String> = requests
            .iter()
            .map(|r| r.schema.as_ref().unwrap().to_string())
            .collect();
        insta::assert_snapshot!(
            format!("interests_{}", case.user),
            format!(
                "{}\n\n[schema of round 1]\n{}",
                show(&requests[0].messages),
                schemas[0]
            )
        );

        // the tags turn for the user's top themes as interests (no model involved)
        let user_themes = miner.user_themes(&narrative);
        let interests = UserInterests {
            user: case.user.clone(),
            interests: user_themes
                .iter()
                .take(3)
                .map(|t| Interest {
                    name: t.phrase.clone(),
                    description: format!("Buys {} items.", t.phrase),
                    description_source: "template".into(),
                    evidence: vec![Evidence {
                        text: compressor.texts().compact(t.items[0]).to_string(),
                        item: store.catalog().get(t.items[0]).id.clone(),
                    }],
                })
                .collect(),
            counts: InterestCounts::default(),
            prompt_version: String::new(),
            model_id: String::new(),
            seed: 0,
            raw: Vec::new(),
        };
        let predictor = TagPredictor {
            prompts: &prompts,
            catalog: store.catalog(),
            texts: compressor.texts(),
            config: TagsConfig::default(),
            categories: None,
            vocabulary: None,
            neighbourhood: None,
        };
        let turn = predictor
            .follow_up(&interests, &history, window.as_of, Part::WHOLE)
            .unwrap()
            .unwrap();
        insta::assert_snapshot!(
            format!("tags_{}", case.user),
            format!(
                "{}\n\n[schema]\n{}",
                show(&turn.messages),
                turn.schema.unwrap()
            )
        );

        // the explain turn for the top theme and one of its items
        let explainer = Explainer::new(
            &prompts,
            store.catalog(),
            compressor.texts(),
            None,
            &ExplainConfig::default(),
            Sampling::default(),
        );
        let top = &user_themes[0];
        let pair = Pair {
            interest: top.phrase.clone(),
            description: format!("Buys {} items.", top.phrase),
            key: top.phrase.to_lowercase(),
            item: top.items[0],
        };
        let request = explainer.request(&pair, 0).unwrap();
        insta::assert_snapshot!(
            format!("explain_{}", case.user),
            format!(
                "{}\n\n[schema]\n{}",
                show(&request.messages),
                request.schema.unwrap()
            )
        );
    }
}
