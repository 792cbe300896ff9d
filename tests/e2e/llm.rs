//! The llama.cpp backend with the real model.

use std::sync::OnceLock;

use recgpt_pipeline::llm::{
    ChatMessage, Finish, GenerateRequest, LlamaCppBackend, LlamaCppConfig, LlmBackend,
};
use serde_json::json;

use crate::common::model_file;

pub fn llm() -> &'static LlamaCppBackend {
    static LLM: OnceLock<LlamaCppBackend> = OnceLock::new();
    LLM.get_or_init(|| {
        LlamaCppBackend::load(
            &model_file(),
            LlamaCppConfig {
                context: 2048,
                batch: 4,
                ..LlamaCppConfig::default()
            },
        )
        .expect("load model")
    })
}

fn request(question: &str, seed: u32) -> GenerateRequest {
    GenerateRequest {
        messages: vec![
            ChatMessage::system("You answer shopping questions with JSON. Keep answers short and concrete. Name product kinds, not brands."),
            ChatMessage::user(question),
        ],
        grammar: None,
        repeat_penalty: 1.0,
        schema: Some(json!({
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}
            },
            "required": ["items"],
            "additionalProperties": false
        })),
        max_tokens: 64,
        temperature: 0.7,
        seed,
    }
}

#[test]
fn the_configured_model_id_is_the_loaded_backends() {
    let config = recgpt_pipeline::llm::LlmConfig {
        model: model_file(),
        ..Default::default()
    };
    assert_eq!(config.model_id().as_deref(), Some(llm().model_id()));
}

#[test]
fn batched_schema_constrained_generation_parses_and_is_deterministic() {
    let _turn = crate::common::model_turn();
    let requests = [
        request(
            "Which three things does someone who bought tea cups need next?",
            1,
        ),
        request("Which three things go with a picnic basket?", 2),
        request("Name three Christmas decorations.", 3),
    ];
    let first = llm().generate(&requests).unwrap();
    assert_eq!(first.len(), 3);
    for g in &first {
        assert_eq!(g.finish, Finish::Stop, "{g:?}");
        let v: serde_json::Value =
            serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {}", g.text));
        let items = v["items"].as_array().unwrap();
        assert!((1..=3).contains(&items.len()), "{}", g.text);
    }
    // the shared system prompt was evaluated once
    assert!(first[1].shared_prompt_tokens > 16, "{:?}", first[1]);
    assert_eq!(first[0].shared_prompt_tokens, 0);
    let again = llm().generate(&requests).unwrap();
    assert_eq!(
        first, again,
        "same input, model and seed give the same output"
    );
    eprintln!("{:#?}", first);
}

/// A request's answer does not depend on what else is in its batch (nor on prefix sharing), so
/// a user's output is reproducible however a batch job groups users.
#[test]
fn answers_do_not_depend_on_batch_composition() {
    let _turn = crate::common::model_turn();
    let a = request("Which three things go with a picnic basket?", 2);
    let b = request("Name three Christmas decorations.", 3);
    let c = request("What do bakers buy?", 4);
    let batched = llm().generate(&[a.clone(), b.clone(), c]).unwrap();
    let alone = llm().generate(std::slice::from_ref(&b)).unwrap();
    assert_eq!(batched[1].text, alone[0].text);
    let other_batch = llm().generate(&[b, a]).unwrap();
    assert_eq!(batched[1].text, other_batch[0].text);
    assert_eq!(batched[0].text, other_batch[1].text);
}

/// More requests than sequences (7 on 4): a slot whose answer is done takes the next request at
/// once (continuous batching) and copies the cached system prompt from another slot instead of
/// reading it again; every answer is still the one its request gets alone. Follow-ups are
/// decided per unit: a run of prompts sharing a long prefix (here two rounds of one question),
/// once all its answers are in, and every other request alone.
#[test]
fn continuous_batching_refills_slots_and_keeps_each_answer() {
    let _turn = crate::common::model_turn();
    let questions = [
        "Which three things go with a picnic basket on a summer day at the beach with the whole family and the dog?",
        "Name three Christmas decorations.",
        "What do bakers buy?",
        "Which three things does someone who bought tea cups need next?",
        "Name three garden tools.",
        "What goes in a lunch bag?",
    ];
    let mut requests: Vec<_> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| request(q, i as u32 + 10))
        .collect();
    requests.insert(1, request(questions[0], 99));
    let batched = llm().generate(&requests).unwrap();
    assert_eq!(batched.len(), requests.len());
    for (r, g) in requests.iter().zip(&batched) {
        let alone = llm().generate(std::slice::from_ref(r)).unwrap();
        assert_eq!(g.text, alone[0].text, "{r:?}");
        assert_eq!(alone[0].shared_prompt_tokens, 0);
    }
    for g in &batched[4..] {
        assert!(g.shared_prompt_tokens > 16, "entered a freed slot: {g:?}");
    }

    let mut calls = Vec::new();
    let out = llm()
        .generate_with_follow_up(&requests, &mut |offset, answers| {
            calls.push((offset, answers.len()));
            vec![None; answers.len()]
        })
        .unwrap();
    assert!(out.iter().all(|(_, second)| second.is_none()));
    calls.sort();
    assert_eq!(calls, vec![(0, 2), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]);
}

/// The follow-up turn continues the same sequence: everything before it is reused from the KV
/// cache, and the result is reproducible. (It need not equal a fresh read of the whole
/// conversation bit for bit: cached cells were computed one token at a time, a fresh read in
/// batches, and the two round differently.)
#[test]
fn follow_up_turns_reuse_the_conversation_kv_cache() {
    let _turn = crate::common::model_turn();
    use recgpt_pipeline::llm::FollowUp;
    let first = request("Which three things go with a picnic basket?", 2);
    let follow = FollowUp {
        messages: vec![ChatMessage::user(
            "Now name three more, for a winter picnic.",
        )],
        schema: first.schema.clone(),
        grammar: None,
        repeat_penalty: 1.0,
        // more than the context holds: a follow-up answers in what is left of it
        max_tokens: 4096,
    };
    let run = || {
        llm()
            .generate_with_follow_up(std::slice::from_ref(&first), &mut |_, answers| {
                vec![Some(follow.clone()); answers.len()]
            })
            .unwrap()
    };
    let out = run();
    let (answer, second) = &out[0];
    let second = second.as_ref().unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&second.text).is_ok(),
        "{}",
        second.text
    );
    assert!(
        second.shared_prompt_tokens >= answer.prompt_tokens,
        "the first prompt is not read again: {second:?}"
    );
    assert_eq!(run(), out, "same conversation, same answers");
}

/// `recgpt model prepare`: the Q8_0 copy loads, has the same vocabulary, and answers under a
/// grammar.
#[test]
fn requantized_model_loads_and_answers() {
    let _turn = crate::common::model_turn();
    use recgpt_pipeline::llm::quantize::requantize_q8_0;
    use recgpt_pipeline::llm::GgufTokenizer;
    let out = crate::common::temp_home().join("model.Q8_0.gguf");
    requantize_q8_0(&model_file(), &out, 0).unwrap();
    assert!(
        std::fs::metadata(&out).unwrap().len() > std::fs::metadata(model_file()).unwrap().len()
    );
    let text = "2011-12-07 (purchase) | woodland charlotte bag; boom box speaker boys";
    assert_eq!(
        GgufTokenizer::load(&out).unwrap().tokenize(text),
        GgufTokenizer::load(&model_file()).unwrap().tokenize(text)
    );
    let q8 = LlamaCppBackend::load(
        &out,
        LlamaCppConfig {
            context: 512,
            batch: 1,
            ..LlamaCppConfig::default()
        },
    )
    .unwrap();
    let answer = q8
        .generate(&[request("Name three Christmas decorations.", 3)])
        .unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&answer[0].text).is_ok(),
        "{}",
        answer[0].text
    );
}
