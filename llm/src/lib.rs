//! The LLM layer: one small trait, [`LlmBackend`], and its backends.
//!
//! - [`LlamaCppBackend`]: llama.cpp in-process (the default): the GGUF's own chat template,
//!   many sequences decoded in one batch, JSON-schema-constrained decoding (schema → GBNF),
//!   seeded sampling, and a shared prompt prefix evaluated once per batch.
//! - [`OpenAiBackend`]: any OpenAI-compatible chat-completions server (llama.cpp's
//!   `llama-server`, vLLM, mistral.rs), JSON schema as `response_format`.
//! - `MistralRsBackend`: mistral.rs in-process (cargo feature `mistralrs`; GPU path).
//! - [`GgufTokenizer`] / [`TokenCounter`]: exact token counts with the model's vocabulary.
//!
//! [`LlmConfig::load`] builds the configured one.

mod chat;
pub mod gbnf;
mod llama;
#[cfg(feature = "mistralrs")]
mod mistralrs;
mod openai;
pub mod quantize;
mod tokenizer;
mod usage;

pub mod model;
pub mod prompts;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use chat::ChatTemplate;
pub use llama::{LlamaCppBackend, LlamaCppConfig};
#[cfg(feature = "mistralrs")]
pub use mistralrs::MistralRsBackend;
pub use openai::{OpenAiBackend, OpenAiConfig};
pub use tokenizer::{backend, GgufTokenizer, TokenCount, TokenCounter, TokenizerError};
pub use usage::{context_sum, TokenUse};

/// The LLM: its GGUF file, which backend runs it, and how to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// GGUF model file: the weights of the in-process backends, and the tokenizer that counts
    /// narrative tokens with every backend (a server must serve the same model).
    pub model: PathBuf,
    pub backend: BackendConfig,
    pub sampling: Sampling,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            model: crate::model::default_model_path(),
            backend: BackendConfig::default(),
            sampling: Sampling::default(),
        }
    }
}

/// The LLM backend, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// llama.cpp in-process.
    LlamaCpp(LlamaCppConfig),
    /// An OpenAI-compatible chat-completions server.
    Openai(OpenAiConfig),
    /// mistral.rs in-process (needs a binary built with the `mistralrs` feature).
    Mistralrs(MistralRsConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self::LlamaCpp(LlamaCppConfig::default())
    }
}

impl BackendConfig {
    /// Requests the backend works on at once (sequences in a batch, requests in flight).
    pub fn batch(&self) -> usize {
        match self {
            Self::LlamaCpp(c) => c.batch,
            Self::Openai(c) => c.concurrency,
            Self::Mistralrs(c) => c.batch,
        }
    }

    /// The CPU threads an in-process backend decodes on (`None` for a server elsewhere).
    pub fn threads_used(&self) -> Option<usize> {
        match self {
            Self::LlamaCpp(c) => Some(c.threads_used()),
            Self::Mistralrs(_) => Some(llama::all_cores()),
            Self::Openai(_) => None,
        }
    }

    pub fn set_batch(&mut self, batch: usize) {
        match self {
            Self::LlamaCpp(c) => c.batch = batch,
            Self::Openai(c) => c.concurrency = batch,
            Self::Mistralrs(c) => c.batch = batch,
        }
    }
}

/// Configuration of the mistral.rs backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MistralRsConfig {
    /// Sequences scheduled together.
    pub batch: usize,
    /// Run on the CPU even when a GPU is there.
    pub force_cpu: bool,
}

impl Default for MistralRsConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            force_cpu: false,
        }
    }
}

impl LlmConfig {
    /// Loads the configured backend (for a server: connects to it).
    pub fn load(&self) -> Result<Box<dyn LlmBackend>, LlmError> {
        if !matches!(self.backend, BackendConfig::Openai(_)) {
            check_gguf(&self.model)?;
        }
        match &self.backend {
            BackendConfig::LlamaCpp(c) => {
                Ok(Box::new(LlamaCppBackend::load(&self.model, c.clone())?))
            }
            BackendConfig::Openai(c) => Ok(Box::new(OpenAiBackend::connect(c.clone())?)),
            #[cfg(feature = "mistralrs")]
            BackendConfig::Mistralrs(c) => Ok(Box::new(MistralRsBackend::load(&self.model, c)?)),
            #[cfg(not(feature = "mistralrs"))]
            BackendConfig::Mistralrs(_) => Err(LlmError::Unavailable(
                "this recgpt was built without the `mistralrs` feature (make build-mistralrs)"
                    .into(),
            )),
        }
    }

    /// The model id the configured backend will report, when the configuration alone says it
    /// (a model file; a server's named model), without loading or connecting; `None` for a
    /// server left to pick its first model.
    pub fn model_id(&self) -> Option<String> {
        match &self.backend {
            BackendConfig::LlamaCpp(_) => Some(model_id(&self.model)),
            BackendConfig::Mistralrs(_) => Some(mistralrs_model_id(&self.model)),
            BackendConfig::Openai(c) => (!c.model.is_empty()).then(|| openai_model_id(&c.model)),
        }
    }
}

/// The model id of the mistral.rs backend for the GGUF at `path`.
pub(crate) fn mistralrs_model_id(path: &Path) -> String {
    format!("mistralrs:{}", model_id(path))
}

/// The model id of the OpenAI-compatible backend for the served model `model`.
pub(crate) fn openai_model_id(model: &str) -> String {
    format!("openai:{model}")
}

/// `file name (size in bytes)`: stable for one file, different for another quantisation.
pub(crate) fn model_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    format!("{name} ({size} bytes)")
}

/// Sampling settings shared by every LLM task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// 0 decodes greedily.
    pub temperature: f32,
    /// Base seed; each user's seed is derived from it and the user id, so a user's answer
    /// does not depend on which other users share a batch.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.6,
            seed: 42,
        }
    }
}

impl Sampling {
    /// The seed of one user's requests (FNV-1a of the base seed and the user id).
    pub fn seed_for(&self, user: &str) -> u32 {
        let h = recgpt_data::hash::fnv1a([&self.seed.to_le_bytes()[..], user.as_bytes()]);
        (h ^ (h >> 32)) as u32
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// One generation to run.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub messages: Vec<ChatMessage>,
    /// JSON schema the answer must follow; decoding is constrained so the answer always parses.
    pub schema: Option<serde_json::Value>,
    /// A GBNF grammar that narrows the schema further (every answer it accepts must be valid
    /// under `schema`); backends that take GBNF (llama.cpp) decode under it instead of the
    /// schema's own grammar, the others under the schema alone.
    pub grammar: Option<String>,
    pub max_tokens: usize,
    /// Penalty on tokens already generated in this answer (llama.cpp's repeat penalty; 1.0:
    /// none), so a list does not repeat itself; tokens the grammar forces are still taken.
    pub repeat_penalty: f32,
    /// 0 samples greedily.
    pub temperature: f32,
    pub seed: u32,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// End of generation (or the grammar completed).
    Stop,
    /// `max_tokens` reached: a JSON answer is then incomplete.
    Length,
}

/// The answer to a [`GenerateRequest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Prompt tokens not evaluated again: shared with the batch's other sequences, or already
    /// in this conversation's KV cache.
    pub shared_prompt_tokens: usize,
    pub generated_tokens: usize,
}

/// Errors of the LLM layer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The model could not be loaded. Not retryable.
    #[error(transparent)]
    Load(#[from] TokenizerError),
    /// The chat template is missing or does not render. Not retryable.
    #[error("chat template: {0}")]
    Template(String),
    /// A prompt plus its answer does not fit the context. The caller's fault (shorten the
    /// narrative budget or raise the context size).
    #[error("prompt of {prompt} tokens + {max_tokens} answer tokens exceeds the {context}-token context")]
    ContextOverflow {
        prompt: usize,
        max_tokens: usize,
        context: usize,
    },
    /// The JSON schema could not be turned into a grammar. The caller's fault.
    #[error("grammar: {0}")]
    Grammar(String),
    /// llama.cpp failed while decoding. Retryable (often memory pressure).
    #[error("llama.cpp: {0}")]
    Backend(String),
    /// A server failed to answer, after retries, or answered something unusable.
    #[error("LLM server: {0}")]
    Server(String),
    /// The configured backend is not compiled into this binary. Not retryable.
    #[error("{0}")]
    Unavailable(String),
    /// The model file is missing or not a GGUF file. The caller's fault.
    #[error("model {path}: {reason}")]
    NotGguf { path: PathBuf, reason: String },
}

/// Checks that `path` is a GGUF file (by its magic bytes), so that a wrong `--model` gets a
/// clear error before anything is loaded.
pub fn check_gguf(path: &Path) -> Result<(), LlmError> {
    use std::io::Read;
    let fail = |reason: String| LlmError::NotGguf {
        path: path.to_path_buf(),
        reason,
    };
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| fail(e.to_string()))?;
    if &magic != b"GGUF" {
        return Err(fail("not a GGUF file (no GGUF magic at its start)".into()));
    }
    Ok(())
}

/// A follow-up turn: messages appended after the first answer, and its decoding settings
/// (temperature and seed stay those of the first turn).
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub messages: Vec<ChatMessage>,
    pub schema: Option<serde_json::Value>,
    /// See [`GenerateRequest::grammar`].
    pub grammar: Option<String>,
    pub max_tokens: usize,
    /// See [`GenerateRequest::repeat_penalty`].
    pub repeat_penalty: f32,
}

/// Decides follow-up turns from a batch of first answers (see
/// [`LlmBackend::generate_with_follow_up`]).
pub type FollowUpFn<'a> = dyn FnMut(usize, &[Generation]) -> Vec<Option<FollowUp>> + 'a;

/// What a backend can do: generate answers for a batch of requests.
pub trait LlmBackend: Send + Sync {
    /// Identifies the model in stored outputs (file name and size).
    fn model_id(&self) -> &str;

    /// Runs every request; answers are in request order. Backends may decode the requests
    /// together; the same request, model and seed give the same answer.
    fn generate(&self, requests: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError>;

    /// Runs every request, then continues conversations: `follow_up(offset, answers)` gets the
    /// answers to `requests[offset..offset + answers.len()]` and returns, per answer, an
    /// optional next turn; each is decoded after its conversation so far (request messages,
    /// the answer, the follow-up messages). A call covers consecutive requests: all of them
    /// (this default), or, with continuous batching, a run of prompts sharing a long prefix (one
    /// user's rounds) as soon as its answers are in. Backends that keep state reuse the
    /// conversation's KV cache instead of reading it again; this default re-sends it.
    fn generate_with_follow_up(
        &self,
        requests: &[GenerateRequest],
        follow_up: &mut FollowUpFn<'_>,
    ) -> Result<Vec<(Generation, Option<Generation>)>, LlmError> {
        let firsts = self.generate(requests)?;
        let turns = follow_up(0, &firsts);
        let mut seconds = Vec::new();
        let mut index = Vec::new();
        for (i, ((request, first), turn)) in requests.iter().zip(&firsts).zip(turns).enumerate() {
            if let Some(f) = turn {
                let mut r = request.clone();
                r.messages.push(ChatMessage::assistant(first.text.clone()));
                r.messages.extend(f.messages);
                r.schema = f.schema;
                r.grammar = f.grammar;
                r.max_tokens = f.max_tokens;
                r.repeat_penalty = f.repeat_penalty;
                seconds.push(r);
                index.push(i);
            }
        }
        let mut answers: Vec<Option<Generation>> = vec![None; requests.len()];
        for (i, g) in index.into_iter().zip(self.generate(&seconds)?) {
            answers[i] = Some(g);
        }
        Ok(firsts.into_iter().zip(answers).collect())
    }
}

/// A shared backend is a backend (one loaded model serving several owners).
impl<T: LlmBackend + ?Sized> LlmBackend for &T {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }

    fn generate(&self, requests: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
        (**self).generate(requests)
    }

    fn generate_with_follow_up(
        &self,
        requests: &[GenerateRequest],
        follow_up: &mut FollowUpFn<'_>,
    ) -> Result<Vec<(Generation, Option<Generation>)>, LlmError> {
        (**self).generate_with_follow_up(requests, follow_up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_gguf_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, b"<html>not a model</html>").unwrap();
        let err = check_gguf(&path).unwrap_err().to_string();
        assert!(
            err.contains("model.gguf") && err.contains("not a GGUF file"),
            "{err}"
        );
        let err = check_gguf(&dir.path().join("missing.gguf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.gguf"), "{err}");
        std::fs::write(&path, b"GGUF\x03\0\0\0").unwrap();
        check_gguf(&path).unwrap();
    }

    #[test]
    fn a_server_model_id_is_known_only_when_the_configuration_names_the_model() {
        let mut server = OpenAiConfig::default();
        let config = |c: &OpenAiConfig| LlmConfig {
            backend: BackendConfig::Openai(c.clone()),
            ..LlmConfig::default()
        };
        assert_eq!(config(&server).model_id(), None);
        server.model = "smollm2".into();
        assert_eq!(
            config(&server).model_id().as_deref(),
            Some("openai:smollm2")
        );
    }
}
