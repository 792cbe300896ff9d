//! An OpenAI-compatible chat-completions server ([`OpenAiBackend`]): llama.cpp's
//! `llama-server`, vLLM, mistral.rs's server, or a hosted endpoint.
//!
//! Each request is one `POST {url}/chat/completions` with the JSON schema as
//! `response_format: {type: "json_schema", ...}` (the server constrains decoding; the stages
//! validate the answer again), the request's seed and temperature. Up to `concurrency` requests
//! are in flight at once, so a server that batches (all of the above do) decodes them together;
//! a fleet behind a load balancer is one URL. Transport errors, 429 and 5xx answers are retried
//! with exponential backoff; other 4xx answers are the caller's fault and are not.
//!
//! Follow-up turns re-send the conversation (the trait's default); servers with a prompt cache
//! (`llama-server`, vLLM with prefix caching) reuse its KV and report it as cached tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Finish, GenerateRequest, Generation, LlmBackend, LlmError};

/// Configuration of the OpenAI-compatible backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// Base URL of the API, up to and including `/v1`.
    pub url: String,
    /// Model name sent with each request; empty takes the first model the server lists.
    pub model: String,
    /// Name of the environment variable holding the API key, if the server wants one (the key
    /// itself never goes into a config file).
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seconds one request may take.
    pub timeout_s: u64,
    /// Retries of a failed request (transport error, 429, 5xx).
    pub retries: u32,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080/v1".into(),
            model: String::new(),
            api_key_env: None,
            concurrency: 8,
            timeout_s: 300,
            retries: 3,
        }
    }
}

/// A client of an OpenAI-compatible server.
#[derive(Debug)]
pub struct OpenAiBackend {
    config: OpenAiConfig,
    agent: ureq::Agent,
    api_key: Option<String>,
    model: String,
    model_id: String,
}

impl OpenAiBackend {
    /// Connects: lists the server's models (which also checks that it answers) and picks the
    /// configured one, or the first.
    pub fn connect(config: OpenAiConfig) -> Result<Self, LlmError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(config.timeout_s.max(1))))
            .http_status_as_error(false)
            .build()
            .into();
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                LlmError::Server(format!(
                    "environment variable {var} (the API key) is not set"
                ))
            })?),
            None => None,
        };
        let mut backend = Self {
            config,
            agent,
            api_key,
            model: String::new(),
            model_id: String::new(),
        };
        let models = backend.with_retries(|| backend.get("models"))?;
        let listed: Vec<String> = models["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        backend.model = if backend.config.model.is_empty() {
            listed.first().cloned().ok_or_else(|| {
                LlmError::Server(format!("{}/models lists no model", backend.config.url))
            })?
        } else {
            backend.config.model.clone()
        };
        backend.model_id = super::openai_model_id(&backend.model);
        Ok(backend)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.config.url.trim_end_matches('/'))
    }

    fn get(&self, path: &str) -> Result<Value, Attempt> {
        let url = self.endpoint(path);
        let mut request = self.agent.get(&url);
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        read(&url, request.call())
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, Attempt> {
        let url = self.endpoint(path);
        let mut request = self.agent.post(&url);
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        read(&url, request.send_json(body))
    }

    fn with_retries(&self, f: impl Fn() -> Result<Value, Attempt>) -> Result<Value, LlmError> {
        let mut wait = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(Attempt::Retry(message)) if attempt < self.config.retries => {
                    tracing::warn!("{message}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
                Err(Attempt::Retry(message) | Attempt::Fail(message)) => {
                    return Err(LlmError::Server(message))
                }
            }
        }
    }

    /// The request body of one chat completion.
    fn body(&self, request: &GenerateRequest) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
            "stream": false,
        });
        if request.temperature > 0.0 {
            body["top_k"] = json!(40);
        }
        if request.repeat_penalty != 1.0 {
            // llama-server's name; other servers ignore it
            body["repeat_penalty"] = json!(request.repeat_penalty);
        }
        if let Some(schema) = &request.schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "answer", "strict": true, "schema": schema},
            });
        }
        body
    }

    fn complete(&self, request: &GenerateRequest) -> Result<Generation, LlmError> {
        let body = self.body(request);
        let answer = self.with_retries(|| self.post("chat/completions", &body))?;
        parse_completion(&answer)
            .map_err(|e| LlmError::Server(format!("{}: {e}", self.endpoint("chat/completions"))))
    }
}

/// One try's failure: worth retrying or not.
enum Attempt {
    Retry(String),
    Fail(String),
}

fn read(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value, Attempt> {
    let mut response = response.map_err(|e| Attempt::Retry(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| Attempt::Retry(format!("{url}: reading the answer: {e}")))?;
    match status {
        200..=299 => serde_json::from_str(&text)
            .map_err(|e| Attempt::Fail(format!("{url}: the answer is not JSON: {e}"))),
        429 | 500..=599 => Err(Attempt::Retry(format!(
            "{url}: HTTP {status}: {}",
            clip(&text)
        ))),
        _ => Err(Attempt::Fail(format!(
            "{url}: HTTP {status}: {}",
            clip(&text)
        ))),
    }
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(300) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Reads a chat-completion answer.
fn parse_completion(answer: &Value) -> Result<Generation, String> {
    let choice = &answer["choices"][0];
    let text = choice["message"]["content"]
        .as_str()
        .ok_or("the answer has no choices[0].message.content")?
        .to_string();
    let finish = match choice["finish_reason"].as_str() {
        Some("length") => Finish::Length,
        _ => Finish::Stop,
    };
    let usage = &answer["usage"];
    let count = |v: &Value| v.as_u64().unwrap_or(0) as usize;
    Ok(Generation {
        text,
        finish,
        prompt_tokens: count(&usage["prompt_tokens"]),
        shared_prompt_tokens: count(&usage["prompt_tokens_details"]["cached_tokens"]),
        generated_tokens: count(&usage["completion_tokens"]),
    })
}

impl LlmBackend for OpenAiBackend {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Sends the requests with up to `concurrency` in flight; answers in request order.
    fn generate(&self, requests: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
        let next = AtomicUsize::new(0);
        let answers: Mutex<Vec<Option<Result<Generation, LlmError>>>> =
            Mutex::new((0..requests.len()).map(|_| None).collect());
        let workers = self.config.concurrency.clamp(1, requests.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    let answer = self.complete(request);
                    let failed = answer.is_err();
                    answers.lock().expect("no panics hold the lock")[i] = Some(answer);
                    if failed {
                        // stop handing out work; the first error is returned
                        next.store(requests.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        // indexes are handed out in order, so requests left unsent after a failure all come
        // after it: collecting stops at the failure before reaching them
        answers
            .into_inner()
            .expect("no panics hold the lock")
            .into_iter()
            .map(|a| a.expect("unsent requests follow the failure"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_answer_with_usage_and_cached_tokens() {
        let answer = json!({
            "choices": [{"message": {"role": "assistant", "content": "{\"a\":1}"},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 7,
                      "prompt_tokens_details": {"cached_tokens": 100}},
        });
        let g = parse_completion(&answer).unwrap();
        assert_eq!(g.text, "{\"a\":1}");
        assert_eq!(g.finish, Finish::Length);
        assert_eq!(
            (g.prompt_tokens, g.shared_prompt_tokens, g.generated_tokens),
            (120, 100, 7)
        );
        assert!(parse_completion(&json!({"choices": []})).is_err());
    }

    #[test]
    fn long_error_bodies_are_clipped_on_a_char_boundary() {
        let text = "é".repeat(400);
        assert_eq!(clip(&text).chars().count(), 300);
        assert_eq!(clip("short"), "short");
    }
}
