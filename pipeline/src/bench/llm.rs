//! `recgpt bench llm`: the raw backend (prompt tokens/s; generated tokens/s for one sequence
//! and for 8 and 32 sequences in one batch) and the interests + tags stages on real users in
//! the same run: users/min, generated tokens/s inside the stages ÷ the raw batched rate, and
//! the prompt tokens that prefix and conversation reuse saved.

use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::compress::Narrative;
use crate::llm::TokenUse;
use crate::llm::{ChatMessage, GenerateRequest, LlmBackend, LlmError};
use crate::reason::{Reasoner, StageError};

/// One measured pass.
#[derive(Debug, Clone, Serialize)]
pub struct LlmRow {
    pub pass: String,
    pub sequences: usize,
    pub seconds: f64,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Mean context the generated tokens were decoded after (prompt and answer so far).
    pub mean_context: f64,
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
        grammar: None,
        repeat_penalty: 1.0,
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
    let tokens = TokenUse::of(&out);
    let generated_tokens = tokens.generated;
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
        mean_context: tokens.mean_context(),
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
        grammar: None,
        repeat_penalty: 1.0,
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

/// Batched decoding at a context, free of prefill and set-up: `n` sequences answer the same
/// prompts twice, writing 100 characters and then 400; the rate is the extra tokens over the
/// extra time, and the mean context is that of the extra tokens. `context` (a real narrative)
/// goes before each request, as in [`raw_generate_after`].
pub fn raw_decode(
    raw: &dyn LlmBackend,
    n: usize,
    context: Option<&str>,
) -> Result<LlmRow, LlmError> {
    let pass = |chars: usize| -> Result<(f64, TokenUse), LlmError> {
        let requests: Vec<_> = (0..n as u32)
            .map(|s| {
                let mut r = writing(s, chars);
                if let Some(c) = context {
                    r.messages[1].content = format!("{c}\n\n{}", r.messages[1].content);
                }
                r
            })
            .collect();
        let started = Instant::now();
        let out = raw.generate(&requests)?;
        Ok((started.elapsed().as_secs_f64(), TokenUse::of(&out)))
    };
    let (short_s, short) = pass(100)?;
    let (long_s, long) = pass(400)?;
    let extra = long.less(&short);
    let seconds = (long_s - short_s).max(1e-9);
    Ok(LlmRow {
        pass: format!("decode, {n} sequences"),
        sequences: n,
        seconds,
        prompt_tokens: 0,
        generated_tokens: extra.generated,
        mean_context: extra.mean_context(),
        tokens_per_s: extra.generated as f64 / seconds,
    })
}

impl LlmRow {
    /// The tokens the headline rate counts: prompt tokens for a prefill pass (one answer
    /// token a sequence), generated tokens otherwise.
    fn counted(&self) -> usize {
        if self.generated_tokens <= self.sequences {
            self.prompt_tokens
        } else {
            self.generated_tokens
        }
    }

    /// Two measurements of one pass (before and after a long run) as one: their counted
    /// tokens over the time each rate gives them.
    pub fn pooled(&self, other: &LlmRow) -> LlmRow {
        let time = |r: &LlmRow| r.counted() as f64 / r.tokens_per_s.max(1e-9);
        let generated = self.generated_tokens + other.generated_tokens;
        let weight = |r: &LlmRow| r.generated_tokens as f64 / generated.max(1) as f64;
        LlmRow {
            pass: self.pass.clone(),
            sequences: self.sequences,
            seconds: self.seconds + other.seconds,
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            generated_tokens: generated,
            mean_context: self.mean_context * weight(self) + other.mean_context * weight(other),
            tokens_per_s: (self.counted() + other.counted()) as f64
                / (time(self) + time(other)).max(1e-9),
        }
    }
}

/// Seconds per generated token of the raw backend's batched decoding as a function of the
/// context the token attends over: piecewise linear through measured passes, extended past
/// the first and last along their segment. A decoding step's cost grows with the context
/// (attention over every cached token): on 2 cores, 8 sequences took 53, 75, 100 and 121 ms
/// a step after 200, 600, 1,000 and 1,400 tokens, close to a straight line.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeCost {
    /// (mean context, seconds per token), by context.
    points: Vec<(f64, f64)>,
}

impl DecodeCost {
    /// From passes' mean contexts and generated tokens/s.
    pub fn of(rows: &[&LlmRow]) -> Self {
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.tokens_per_s > 0.0)
            .map(|r| (r.mean_context, 1.0 / r.tokens_per_s))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points.dedup_by(|a, b| a.0 == b.0);
        Self { points }
    }

    /// Seconds per token decoded after `context` tokens.
    pub fn per_token(&self, context: f64) -> f64 {
        match self.points.as_slice() {
            [] => 0.0,
            [(_, s)] => *s,
            points => {
                let i = points
                    .windows(2)
                    .position(|w| context <= w[1].0)
                    .unwrap_or(points.len() - 2);
                let ((c0, s0), (c1, s1)) = (points[i], points[i + 1]);
                (s0 + (s1 - s0) * (context - c0) / (c1 - c0)).max(0.0)
            }
        }
    }

    /// The raw backend's seconds for `tokens`: every evaluated prompt token at `prefill_rate`
    /// (tokens/s), every generated token at the cost of its stage's mean context.
    pub fn raw_seconds(&self, tokens: &TokenUse, prefill_rate: f64) -> f64 {
        tokens.evaluated() as f64 / prefill_rate.max(1e-9)
            + tokens.generated as f64 * self.per_token(tokens.mean_context())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(mean_context: f64, tokens_per_s: f64) -> LlmRow {
        LlmRow {
            pass: String::new(),
            sequences: 8,
            seconds: 1.0,
            prompt_tokens: 0,
            generated_tokens: 0,
            mean_context,
            tokens_per_s,
        }
    }

    #[test]
    fn decode_cost_is_interpolated_between_passes_and_extended_past_them() {
        // 10 ms a token after 100 tokens, 20 ms after 600, 25 ms after 1,100
        let rows = [pass(600.0, 50.0), pass(100.0, 100.0), pass(1100.0, 40.0)];
        let cost = DecodeCost::of(&rows.iter().collect::<Vec<_>>());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(cost.per_token(100.0), 0.010));
        assert!(close(cost.per_token(350.0), 0.015));
        assert!(close(cost.per_token(850.0), 0.0225));
        assert!(close(cost.per_token(1600.0), 0.030));
        assert!(close(cost.per_token(0.0), 0.008));
        let tokens = TokenUse {
            prompt: 1000,
            reused: 400,
            generated: 10,
            generated_context: 3500,
        };
        // 600 prompt tokens at 300/s, 10 tokens at the cost after 350
        assert!(close(cost.raw_seconds(&tokens, 300.0), 2.0 + 0.15));
        let one = DecodeCost::of(&[&pass(600.0, 50.0)]);
        assert!(close(one.per_token(5000.0), 0.02));
        // 100 tokens at 50/s and 300 at 100/s: 400 tokens in 5 s
        let (mut a, mut b) = (pass(600.0, 50.0), pass(1000.0, 100.0));
        a.generated_tokens = 100;
        b.generated_tokens = 300;
        let both = a.pooled(&b);
        assert!(close(both.tokens_per_s, 80.0));
        assert!(close(both.mean_context, 900.0));
    }
}
