//! mistral.rs in-process ([`MistralRsBackend`], cargo feature `mistralrs`; add
//! `mistralrs-cuda` for the GPU): the same GGUF, loaded fully offline from its directory
//! (`TokenSource::None`, tokenizer and chat template from the GGUF), JSON schemas enforced by
//! llguidance, requests scheduled together by mistral.rs's own continuous batching.
//!
//! mistral.rs has no per-request seed: at temperature 0 decoding is greedy and reproducible;
//! above it answers vary from run to run.

use std::path::Path;

use mistralrs::{
    Constraint, GgufModelBuilder, Model, RequestBuilder, TextMessageRole, TokenSource,
};

use super::{
    ChatMessage, Finish, GenerateRequest, Generation, LlmBackend, LlmError, MistralRsConfig,
    TokenizerError,
};

/// mistral.rs in-process.
pub struct MistralRsBackend {
    model: Model,
    runtime: tokio::runtime::Runtime,
    model_id: String,
}

impl std::fmt::Debug for MistralRsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MistralRsBackend")
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

impl MistralRsBackend {
    pub fn load(path: &Path, config: &MistralRsConfig) -> Result<Self, LlmError> {
        if !path.is_file() {
            return Err(TokenizerError::Missing {
                path: path.to_path_buf(),
            }
            .into());
        }
        let load_err = |message: String| TokenizerError::Load {
            path: path.to_path_buf(),
            message,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let mut builder = GgufModelBuilder::new(dir.to_string_lossy(), vec![file])
            .with_token_source(TokenSource::None)
            .with_max_num_seqs(config.batch.max(1));
        if config.force_cpu {
            builder = builder.with_force_cpu();
        }
        let model = runtime
            .block_on(builder.build())
            .map_err(|e| load_err(format!("{e:#}")))?;
        Ok(Self {
            model,
            runtime,
            model_id: super::mistralrs_model_id(path),
        })
    }

    fn request(request: &GenerateRequest) -> RequestBuilder {
        let mut builder = RequestBuilder::new();
        for ChatMessage { role, content } in &request.messages {
            let role = match role.as_str() {
                "system" => TextMessageRole::System,
                "assistant" => TextMessageRole::Assistant,
                _ => TextMessageRole::User,
            };
            builder = builder.add_message(role, content);
        }
        builder = builder.set_sampler_max_len(request.max_tokens);
        // greedy is top-k 1: mistral.rs 0.8.1's deterministic sampler under an llguidance
        // constraint did not finish a 80-token answer in minutes on CPU
        builder = if request.temperature > 0.0 {
            builder
                .set_sampler_temperature(f64::from(request.temperature))
                .set_sampler_topk(40)
        } else {
            builder.set_sampler_temperature(1.0).set_sampler_topk(1)
        };
        if let Some(schema) = &request.schema {
            // llguidance lets JSON take any whitespace by default, and a small model can fill
            // its whole budget with it; compact separators as llama.cpp's grammar has them
            let mut schema = schema.clone();
            if let Some(object) = schema.as_object_mut() {
                object.entry("x-guidance").or_insert(serde_json::json!({
                    "whitespace_flexible": false,
                    "item_separator": ", ",
                    "key_separator": ": ",
                }));
            }
            builder = builder.set_constraint(Constraint::JsonSchema(schema));
        }
        builder
    }
}

impl LlmBackend for MistralRsBackend {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Sends every request at once; mistral.rs schedules them in batches of `batch`.
    fn generate(&self, requests: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
        let answers = self.runtime.block_on(futures::future::join_all(
            requests
                .iter()
                .map(|r| self.model.send_chat_request(Self::request(r))),
        ));
        answers
            .into_iter()
            .zip(requests)
            .map(|(answer, request)| {
                let answer = answer.map_err(|e| LlmError::Backend(format!("mistral.rs: {e}")))?;
                let choice = answer
                    .choices
                    .first()
                    .ok_or_else(|| LlmError::Backend("mistral.rs: no choice".into()))?;
                let text = choice.message.content.clone().unwrap_or_default();
                // mistral.rs 0.8 reports "length" when llguidance ends the answer because the
                // schema's grammar is complete; a complete JSON document was not cut short
                let complete = request.schema.is_some()
                    && serde_json::from_str::<serde_json::Value>(&text).is_ok();
                Ok(Generation {
                    finish: if choice.finish_reason == "length" && !complete {
                        Finish::Length
                    } else {
                        Finish::Stop
                    },
                    text,
                    prompt_tokens: answer.usage.prompt_tokens,
                    shared_prompt_tokens: 0,
                    generated_tokens: answer.usage.completion_tokens,
                })
            })
            .collect()
    }
}
