//! The mistral.rs backend with the real model (`make test-mistralrs`; cargo feature
//! `mistralrs`): the same stage checks as every other backend, and greedy determinism.

use recgpt_pipeline::llm::{
    ChatMessage, GenerateRequest, LlmBackend, MistralRsBackend, MistralRsConfig,
};
use serde_json::json;

use crate::common::model_file;

fn backend() -> MistralRsBackend {
    MistralRsBackend::load(&model_file(), &MistralRsConfig::default()).expect("load model")
}

#[test]
fn schema_constrained_answers_parse_and_greedy_decoding_repeats() {
    let _turn = crate::common::model_turn();
    let llm = backend();
    assert!(
        llm.model_id().starts_with("mistralrs:"),
        "{}",
        llm.model_id()
    );
    let request = GenerateRequest {
        messages: vec![
            ChatMessage::system("You answer shopping questions with JSON."),
            ChatMessage::user("Name three Christmas decorations."),
        ],
        grammar: None,
        repeat_penalty: 1.0,
        schema: Some(json!({
            "type": "object",
            // bounded like every schema of the stages: the grammar itself ends the answer
            "properties": {"items": {"type": "array",
                                      "items": {"type": "string", "minLength": 3, "maxLength": 30},
                                      "minItems": 2, "maxItems": 4}},
            "required": ["items"],
        })),
        max_tokens: 80,
        temperature: 0.0,
        seed: 1,
    };
    // one call after the other: two identical requests sent at once never finished (mistral.rs
    // 0.8.1 on CPU kept decoding for over ten minutes)
    let first = llm.generate(std::slice::from_ref(&request)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&first[0].text).expect(&first[0].text);
    assert!(v["items"].as_array().is_some_and(|a| a.len() >= 2), "{v}");
    assert!(first[0].generated_tokens <= 80, "{:?}", first[0]);
    let again = llm.generate(&[request]).unwrap();
    assert_eq!(first[0].text, again[0].text);
}

#[test]
fn interests_and_tags_of_a_real_user() {
    let _turn = crate::common::model_turn();
    crate::tags::stages_work_with(&backend());
}
