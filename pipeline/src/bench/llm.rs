//! `recgpt bench llm`: the raw backend (prompt tokens/s; generated tokens/s for one sequence
//! and for 8 and 32 sequences in one batch) and the interests + tags stages on real users in
//! the same run: users/min, generated tokens/s inside the stages ÷ the raw batched rate, and
//! the prompt tokens that prefix and conversation reuse saved.

use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::compress::Narrative;
use crate::llm::{ChatMessage, GenerateRequest, LlmBackend, LlmError};
use crate::reason::{Reasoner, StageError, TokenUse};

/// One measured pass.
#[derive(Debug, Clone, Serialize)]
pub struct LlmRow {
    pub pass: String,
    pub sequences: usize,
    pub seconds: f64,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// The pass's headline rate (prompt tokens/s for prefill, generated tokens/s otherwise).
    pub tokens_per_s: f64,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct LlmBench {
    pub model_id: String,
    pub raw: Vec<LlmRow>,
    pub users: usize,
    pub stage_seconds: f64,
    pub users_per_min: f64,
    pub stage_tokens: TokenUse,
    /// Generated tokens/s inside the stages.
    pub stage_generated_per_s: f64,
    /// `stage_generated_per_s` ÷ the raw rate at the stage's batch size (the closest measured).
    pub stage_vs_raw: f64,
    /// Share of prompt tokens not evaluated again thanks to prefix and conversation reuse.
    pub reused_share: f64,
}

/// A request that makes the model write at least `chars` characters (a JSON string of that
/// minimum length), so generation is measured over a known length, under a grammar as in the
/// stages.
fn writing(seed: u32, chars: usize) -> GenerateRequest {
    GenerateRequest {
        messages: vec![
            ChatMessage::system("You write product descriptions."),
            ChatMessage::user("Describe a hand-painted enamel coffee mug for a shop page."),
        ],
        schema: Some(json!({"type": "string", "minLength": chars, "maxLength": chars + 40})),
        max_tokens: chars,
        temperature: 0.8,
        seed,
    }
}

fn row(
    pass: &str,
    sequences: usize,
    run: impl FnOnce() -> Result<Vec<crate::llm::Generation>, LlmError>,
    prefill: bool,
) -> Result<LlmRow, LlmError> {
    let started = Instant::now();
    let out = run()?;
    let seconds = started.elapsed().as_secs_f64();
    let prompt_tokens: usize = out
        .iter()
        .map(|g| g.prompt_tokens - g.shared_prompt_tokens)
        .sum();
    let generated_tokens: usize = out.iter().map(|g| g.generated_tokens).sum();
    let rate = if prefill {
        prompt_tokens
    } else {
        generated_tokens
    } as f64
        / seconds;
    Ok(LlmRow {
        pass: pass.to_string(),
        sequences,
        seconds,
        prompt_tokens,
        generated_tokens,
        tokens_per_s: rate,
    })
}

/// The raw backend passes: prefill of `prefill_prompt`, then grammar-constrained generation at
/// 1, 8 and 32 sequences.
pub fn raw_passes(raw: &dyn LlmBackend, prefill_prompt: &str) -> Result<Vec<LlmRow>, LlmError> {
    let mut rows = vec![raw_prefill(raw, prefill_prompt)?];
    for n in [1usize, 8, 32] {
        rows.push(raw_generate(raw, n)?);
    }
    Ok(rows)
}

/// Prefill of `prompt` as one user message (one sequence, one answer token).
pub fn raw_prefill(raw: &dyn LlmBackend, prompt: &str) -> Result<LlmRow, LlmError> {
    let prefill = GenerateRequest {
        messages: vec![ChatMessage::user(prompt)],
        schema: None,
        max_tokens: 1,
        temperature: 0.0,
        seed: 0,
    };
    row(
        "prefill (one real narrative)",
        1,
        || raw.generate(std::slice::from_ref(&prefill)),
        true,
    )
}

/// Grammar-constrained generation of `n` sequences in one call (400 characters each).
pub fn raw_generate(raw: &dyn LlmBackend, n: usize) -> Result<LlmRow, LlmError> {
    let requests: Vec<_> = (0..n as u32).map(|s| writing(s, 400)).collect();
    row(
        &format!("generate, {n} sequence(s)"),
        n,
        || raw.generate(&requests),
        false,
    )
}

/// Grammar-constrained generation of `n` sequences (400 characters each) after `context`, a
/// real narrative every prompt starts with (read once, shared): decoding that attends over a
/// long prompt, as the reason stage's does. The rate is generated tokens per second of
/// decoding: the pass's time less its prompt tokens at `prefill_rate`.
pub fn raw_generate_after(
    raw: &dyn LlmBackend,
    n: usize,
    context: &str,
    prefill_rate: f64,
) -> Result<LlmRow, LlmError> {
    let requests: Vec<_> = (0..n as u32)
        .map(|s| {
            let mut r = writing(s, 400);
            r.messages[1].content = format!("{context}\n\n{}", r.messages[1].content);
            r
        })
        .collect();
    let mut row = row(
        &format!("generate after a narrative, {n} sequence(s)"),
        n,
        || raw.generate(&requests),
        false,
    )?;
    let decoding = row.seconds - row.prompt_tokens as f64 / prefill_rate.max(1e-9);
    row.tokens_per_s = row.generated_tokens as f64 / decoding.max(1e-9);
    Ok(row)
}

/// Runs the raw passes on `raw` (a backend whose batch allows 32 sequences) and the stages
/// through `stage_llm` on `users`.
pub fn llm_bench(
    raw: &dyn LlmBackend,
    stage_llm: &dyn LlmBackend,
    stage_batch: usize,
    reasoner: &Reasoner<'_>,
    users: &[(&recgpt_data::History, &Narrative)],
    prefill_prompt: &str,
) -> Result<LlmBench, StageError> {
    let rows = raw_passes(raw, prefill_prompt)?;

    let started = Instant::now();
    let (_, tokens) = reasoner.run(stage_llm, users)?;
    let stage_seconds = started.elapsed().as_secs_f64();
    let stage_generated_per_s = tokens.generated as f64 / stage_seconds;
    let reference = rows
        .iter()
        .skip(1)
        .min_by_key(|r| r.sequences.abs_diff(stage_batch))
        .map_or(1.0, |r| r.tokens_per_s);
    Ok(LlmBench {
        model_id: raw.model_id().to_string(),
        raw: rows,
        users: users.len(),
        stage_seconds,
        users_per_min: users.len() as f64 * 60.0 / stage_seconds,
        stage_tokens: tokens,
        stage_generated_per_s,
        stage_vs_raw: stage_generated_per_s / reference,
        reused_share: tokens.reused as f64 / tokens.prompt.max(1) as f64,
    })
}
