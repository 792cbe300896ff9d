//! The OpenAI-compatible backend against a real server on loopback: llama.cpp's `llama-server`
//! (built by `scripts/setup.sh server`, which `make test` runs) serving the real model.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use recgpt_pipeline::llm::{
    ChatMessage, GenerateRequest, LlmBackend, LlmError, OpenAiBackend, OpenAiConfig,
};
use serde_json::json;

use crate::common::model_file;

/// A `llama-server` child process serving the real model, killed on drop.
struct LlamaServer {
    child: Child,
    url: String,
}

impl LlamaServer {
    fn start(parallel: usize) -> Self {
        let bin = crate::common::llama_server_bin();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&bin)
            .arg("--model")
            .arg(model_file())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // each slot holds as much as an in-process sequence (`LlamaCppConfig::default`):
            // a user's interests answer and tags turn share the conversation
            .args(["--ctx-size", &(3072 * parallel).to_string()])
            .args(["--parallel", &parallel.to_string(), "--threads", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama-server");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}/v1"),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let health = self.url.replace("/v1", "/health");
        let started = Instant::now();
        loop {
            if let Ok(r) = ureq::get(&health).call() {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "llama-server did not become ready at {health}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn backend(&self, concurrency: usize) -> OpenAiBackend {
        OpenAiBackend::connect(OpenAiConfig {
            url: self.url.clone(),
            concurrency,
            ..OpenAiConfig::default()
        })
        .expect("connect")
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(question: &str, seed: u32) -> GenerateRequest {
    GenerateRequest {
        messages: vec![
            ChatMessage::system(
                "You answer shopping questions with JSON. Name product kinds, not brands.",
            ),
            ChatMessage::user(question),
        ],
        grammar: None,
        repeat_penalty: 1.0,
        schema: Some(json!({
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "string", "maxLength": 40},
                                      "minItems": 2, "maxItems": 4}},
            "required": ["items"],
        })),
        max_tokens: 200,
        temperature: 0.6,
        seed,
    }
}

#[test]
fn answers_follow_the_schema_and_the_same_seed_gives_the_same_answer() {
    let _turn = crate::common::model_turn();
    let server = LlamaServer::start(2);
    let llm = server.backend(2);
    assert!(llm.model_id().starts_with("openai:"), "{}", llm.model_id());
    let questions = [
        "Name kitchen items for a tea party.",
        "Name three Christmas decorations.",
        "What goes with a picnic basket?",
    ];
    let requests: Vec<_> = questions.iter().map(|q| request(q, 7)).collect();
    let answers = llm.generate(&requests).unwrap();
    assert_eq!(answers.len(), 3);
    for (q, a) in questions.iter().zip(&answers) {
        let v: serde_json::Value =
            serde_json::from_str(&a.text).unwrap_or_else(|e| panic!("{q}: {e}: {}", a.text));
        let items = v["items"].as_array().expect("items");
        assert!((2..=4).contains(&items.len()), "{q}: {}", a.text);
        assert!(a.prompt_tokens > 20 && a.generated_tokens > 0, "{a:?}");
    }
    // answers come back in request order: asking the first question again alone, one request
    // at a time, gives the same text
    let again = server.backend(1).generate(&requests[..1]).unwrap();
    assert_eq!(again[0].text, answers[0].text);
    let other_seed = llm.generate(&[request(questions[0], 8)]).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&other_seed[0].text).is_ok());
}

#[test]
fn interests_and_tags_of_a_real_user_through_the_server() {
    let _turn = crate::common::model_turn();
    let server = LlamaServer::start(4);
    crate::tags::stages_work_with(&server.backend(4));
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let err = OpenAiBackend::connect(OpenAiConfig {
        url: format!("http://127.0.0.1:{port}/v1"),
        retries: 1,
        ..OpenAiConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, LlmError::Server(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{port}/v1/models")),
        "{err}"
    );
}
