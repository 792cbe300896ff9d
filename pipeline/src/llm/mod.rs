//! The LLM layer: one small trait, [`LlmBackend`], and its backends.
//!
//! - [`LlamaCppBackend`]: llama.cpp in-process (the default): the GGUF's own chat template,
//!   many sequences decoded in one batch, JSON-schema-constrained decoding (schema → GBNF),
//!   seeded sampling, and a shared prompt prefix evaluated once per batch.
//! - [`GgufTokenizer`] / [`TokenCounter`]: exact token counts with the model's vocabulary.

mod chat;
mod llama;
pub mod quantize;
mod tokenizer;

use serde::{Deserialize, Serialize};

pub use chat::ChatTemplate;
pub use llama::{LlamaCppBackend, LlamaCppConfig};
pub use tokenizer::{backend, GgufTokenizer, TokenCount, TokenCounter, TokenizerError};

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
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.seed.to_le_bytes().iter().chain(user.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
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
    pub max_tokens: usize,
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
}

/// A follow-up turn: messages appended after the first answer, and its decoding settings
/// (temperature and seed stay those of the first turn).
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub messages: Vec<ChatMessage>,
    pub schema: Option<serde_json::Value>,
    pub max_tokens: usize,
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
    /// answers to `requests[offset..offset + answers.len()]` (a batch, or all) and returns, per
    /// answer, an optional next turn; each is decoded after its conversation so far (request
    /// messages, the answer, the follow-up messages). Backends that keep state reuse the
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
                r.max_tokens = f.max_tokens;
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
