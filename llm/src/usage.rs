//! Token accounting of LLM answers.

use serde::{Deserialize, Serialize};

use super::Generation;

/// Token accounting of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUse {
    pub prompt: usize,
    /// Prompt tokens not evaluated again (shared prefixes, conversation KV reuse).
    pub reused: usize,
    pub generated: usize,
    /// The context each generated token was decoded after (its prompt and the tokens before
    /// it), summed: a decoding step's cost grows with the context it attends over, so
    /// `generated_context / generated` says at what context length the tokens were made.
    #[serde(default)]
    pub generated_context: u64,
}

impl TokenUse {
    /// Counts one answer.
    pub fn add(&mut self, g: &Generation) {
        self.prompt += g.prompt_tokens;
        self.reused += g.shared_prompt_tokens;
        self.generated += g.generated_tokens;
        self.generated_context += context_sum(g.prompt_tokens, g.generated_tokens);
    }

    /// The tally of `answers`.
    pub fn of(answers: &[Generation]) -> Self {
        let mut tokens = TokenUse::default();
        answers.iter().for_each(|g| tokens.add(g));
        tokens
    }

    /// Mean context length of the generated tokens (0 without any).
    pub fn mean_context(&self) -> f64 {
        self.generated_context as f64 / self.generated.max(1) as f64
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &TokenUse) {
        self.prompt += other.prompt;
        self.reused += other.reused;
        self.generated += other.generated;
        self.generated_context += other.generated_context;
    }

    /// This tally without `part` (a tally it includes).
    pub fn less(&self, part: &TokenUse) -> TokenUse {
        TokenUse {
            prompt: self.prompt.saturating_sub(part.prompt),
            reused: self.reused.saturating_sub(part.reused),
            generated: self.generated.saturating_sub(part.generated),
            generated_context: self
                .generated_context
                .saturating_sub(part.generated_context),
        }
    }

    /// Prompt tokens the backend evaluated (not reused).
    pub fn evaluated(&self) -> usize {
        self.prompt.saturating_sub(self.reused)
    }
}

/// The contexts `generated` tokens after a `prompt`-token prompt were decoded after, summed:
/// `prompt`, `prompt + 1`, … `prompt + generated - 1`.
pub fn context_sum(prompt: usize, generated: usize) -> u64 {
    let (p, g) = (prompt as u64, generated as u64);
    g * p + g * g.saturating_sub(1) / 2
}
