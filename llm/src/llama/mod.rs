//! llama.cpp in-process ([`LlamaCppBackend`]).
//!
//! A call to [`LlmBackend::generate`] decodes its requests in one context of `batch` KV
//! sequences (slots; `kv_unified(false)`: each sequence attends over its own cells only), with
//! continuous batching: a slot whose answer is done takes the next request at once, so the
//! batch stays full while requests remain. A request entering a slot keeps the longest prefix
//! of its prompt already cached (system prompt, instructions, a user's narrative), from its
//! own slot or copied from another, and evaluates only the rest. Each sequence samples with
//! its own seeded sampler chain, behind a grammar compiled from the request's JSON schema.

use std::num::NonZeroU32;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

mod kv;
mod sampler;
mod schedule;

use kv::{common_prefix, prefix_groups, Run, RunStats};
use sampler::SeqSampler;
use schedule::Schedule;

use super::model_id;
use super::{
    backend, ChatMessage, ChatTemplate, FollowUpFn, GenerateRequest, Generation, LlmBackend,
    LlmError, TokenizerError,
};

/// Configuration of the llama.cpp backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlamaCppConfig {
    /// Context tokens per sequence (prompt + answer).
    pub context: u32,
    /// Sequences decoded together.
    pub batch: usize,
    /// Tokens per llama.cpp decode call.
    pub n_batch: u32,
    /// CPU threads; 0 uses every core.
    pub threads: usize,
}

impl LlamaCppConfig {
    /// The CPU threads decoding runs on: `threads`, or every core for 0.
    pub fn threads_used(&self) -> usize {
        match self.threads {
            0 => all_cores(),
            n => n,
        }
    }
}

/// The cores this process may run on.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for LlamaCppConfig {
    fn default() -> Self {
        Self {
            context: 3072,
            batch: 8,
            n_batch: 512,
            threads: 0,
        }
    }
}

/// Shorter shared prefixes are not worth a KV copy.
pub(super) const MIN_SHARED_PREFIX: usize = 16;

/// The fewest answer tokens a follow-up turn is started with when its context runs short.
pub(super) const FOLLOW_UP_MIN_ROOM: usize = 128;

/// llama.cpp in-process.
#[derive(Debug)]
pub struct LlamaCppBackend {
    model: LlamaModel,
    template: ChatTemplate,
    config: LlamaCppConfig,
    model_id: String,
}

impl LlamaCppBackend {
    /// Loads the GGUF file `path`.
    pub fn load(path: &Path, config: LlamaCppConfig) -> Result<Self, LlmError> {
        if !path.is_file() {
            return Err(TokenizerError::Missing {
                path: path.to_path_buf(),
            }
            .into());
        }
        let model = LlamaModel::load_from_file(backend(), path, &LlamaModelParams::default())
            .map_err(|e| TokenizerError::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let source = model
            .meta_val_str("tokenizer.chat_template")
            .map_err(|e| LlmError::Template(format!("the GGUF has no chat template: {e}")))?;
        let template = ChatTemplate::new(&source)?;
        let model_id = model_id(path);
        Ok(Self {
            model,
            template,
            config,
            model_id,
        })
    }

    pub fn config(&self) -> &LlamaCppConfig {
        &self.config
    }

    /// The prompt's tokens (the template's special tokens parsed, no extra BOS).
    pub fn prompt_tokens(&self, request: &GenerateRequest) -> Result<Vec<LlamaToken>, LlmError> {
        let text = self.template.render(&request.messages)?;
        Ok(self.model.vocab().tokenize(text.as_bytes(), false, true))
    }

    fn threads(&self) -> i32 {
        self.config.threads_used() as i32
    }

    fn sampler(&self, request: &GenerateRequest) -> Result<SeqSampler, LlmError> {
        let gbnf = match (&request.grammar, &request.schema) {
            (Some(gbnf), _) => Some(gbnf.clone()),
            (None, Some(schema)) => Some(compact_json_grammar(
                &llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                    .map_err(|e| LlmError::Grammar(e.to_string()))?,
            )),
            (None, None) => None,
        };
        let grammar = match gbnf {
            Some(gbnf) => Some(
                LlamaSampler::grammar(&self.model, &gbnf, "root")
                    .map_err(|e| LlmError::Grammar(e.to_string()))?,
            ),
            None => None,
        };
        let mut steps = Vec::new();
        if request.repeat_penalty != 1.0 {
            // over the answer so far (a fresh sampler per turn never saw the prompt)
            steps.push(LlamaSampler::penalties(
                self.model.n_vocab(),
                REPEAT_WINDOW,
                request.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if request.temperature > 0.0 {
            steps.extend([
                LlamaSampler::top_k(40),
                LlamaSampler::temp(request.temperature),
                LlamaSampler::dist(request.seed),
            ]);
        } else {
            steps.push(LlamaSampler::greedy());
        }
        let chain = LlamaSampler::chain_simple(steps);
        Ok(SeqSampler {
            grammar,
            chain,
            rejected: 0,
        })
    }

    /// Units of consecutive requests whose follow-ups are decided together: each run of
    /// prompts sharing a prefix longer than the one every prompt shares (one user's rounds),
    /// and every other request alone; a unit never holds more than `slots` requests.
    fn units(prompts: &[Vec<LlamaToken>], slots: usize) -> Vec<Range<usize>> {
        // one user's rounds alone share their whole prompt: then that is no common part to
        // look beyond, and the rounds are one unit (not each alone, which would decide each
        // round's follow-up before the user's other answers are in)
        let identical = prompts.iter().all(|p| p == &prompts[0]);
        let shared = if prompts.len() > 1 && !identical {
            common_prefix(prompts)
        } else {
            0
        };
        let mut units = Vec::new();
        let mut next = 0;
        let mut push = |range: Range<usize>| {
            let mut start = range.start;
            while start < range.end {
                let end = (start + slots).min(range.end);
                units.push(start..end);
                start = end;
            }
        };
        for g in prefix_groups(prompts, shared) {
            (next..g.start).for_each(|i| push(i..i + 1));
            push(g.start..g.end);
            next = g.end;
        }
        (next..prompts.len()).for_each(|i| push(i..i + 1));
        units
    }

    fn context(&self, sequences: usize) -> Result<LlamaContext<'_>, LlmError> {
        let threads = self.threads();
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.config.context * sequences as u32))
            .with_n_seq_max(sequences as u32)
            .with_n_batch(self.config.n_batch)
            .with_n_ubatch(self.config.n_batch)
            .with_kv_unified(false)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        self.model
            .new_context(backend(), params)
            .map_err(|e| LlmError::Backend(e.to_string()))
    }

    fn fits(&self, prompt: &[LlamaToken], max_tokens: usize) -> Result<(), LlmError> {
        let context = self.config.context as usize;
        if prompt.is_empty() || prompt.len() + max_tokens > context {
            return Err(LlmError::ContextOverflow {
                prompt: prompt.len(),
                max_tokens,
                context,
            });
        }
        Ok(())
    }

    /// The answer length a follow-up turn gets: what it asks for, or what is left of the
    /// context after its conversation when that is less (its answer may then be cut off and
    /// is counted so), so one long conversation does not fail the whole batch. Less than
    /// [`FOLLOW_UP_MIN_ROOM`] left is an overflow.
    fn follow_up_room(&self, prompt: &[LlamaToken], max_tokens: usize) -> Result<usize, LlmError> {
        let room = (self.config.context as usize).saturating_sub(prompt.len());
        let answer = max_tokens.min(room);
        if prompt.is_empty() || answer < max_tokens.min(FOLLOW_UP_MIN_ROOM) {
            return Err(LlmError::ContextOverflow {
                prompt: prompt.len(),
                max_tokens,
                context: self.config.context as usize,
            });
        }
        if answer < max_tokens {
            tracing::debug!(
                prompt = prompt.len(),
                max_tokens,
                answer,
                "follow-up answer shortened to fit the context"
            );
        }
        Ok(answer)
    }

    /// Decodes every request with continuous batching: up to `batch` sequences (slots) in one
    /// context, a slot taking the next request as soon as its own is answered, so the batch
    /// stays full until the queue runs dry. A request entering a slot reuses the longest
    /// prompt prefix already in the cache (its slot's own, or another slot's, copied) and
    /// prefills only the rest. Follow-up turns continue in the slot of their first turn once
    /// every first answer of their unit (see [`Self::units`]) is in.
    fn decode_all(
        &self,
        requests: &[GenerateRequest],
        mut follow_up: Option<&mut FollowUpFn<'_>>,
    ) -> Result<Vec<(Generation, Option<Generation>)>, LlmError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let prompts = requests
            .iter()
            .map(|r| self.prompt_tokens(r))
            .collect::<Result<Vec<_>, _>>()?;
        for (prompt, request) in prompts.iter().zip(requests) {
            self.fits(prompt, request.max_tokens)?;
        }
        let slots = self.config.batch.max(1).min(requests.len());
        let units = match follow_up {
            Some(_) => Self::units(&prompts, slots),
            None => (0..requests.len()).map(|i| i..i + 1).collect(),
        };
        let mut schedule = Schedule::new(requests, prompts, units, slots);
        let mut run = Run {
            backend: self,
            ctx: self.context(slots)?,
            kv: vec![Vec::new(); slots],
            stats: RunStats::default(),
        };
        run.stats.setup_s = started.elapsed().as_secs_f64();
        loop {
            let t0 = Instant::now();
            let entering = schedule.entering(self)?;
            run.stats.start_s += t0.elapsed().as_secs_f64();
            if !entering.is_empty() {
                let parts: Vec<(usize, &[LlamaToken])> = entering
                    .iter()
                    .map(|e| (e.slot, e.prompt.as_slice()))
                    .collect();
                let reused = run.enter(&parts)?;
                let t0 = Instant::now();
                for (entry, reused) in entering.into_iter().zip(reused) {
                    schedule.start(self, entry, reused)?;
                }
                run.stats.start_s += t0.elapsed().as_secs_f64();
            }
            let inputs = schedule.inputs();
            if inputs.is_empty() {
                break;
            }
            run.step(&inputs)?;
            let t0 = Instant::now();
            for (row, &(slot, _)) in inputs.iter().enumerate() {
                if let Some(generation) = schedule.sample(self, &run.ctx, slot, row) {
                    run.stats.answers += 1;
                    schedule.answered(slot, generation, &mut follow_up);
                }
            }
            run.stats.sample_s += t0.elapsed().as_secs_f64();
        }
        let s = &run.stats;
        tracing::debug!(
            requests = requests.len(),
            slots,
            answers = s.answers,
            setup_s = s.setup_s,
            prefill_tokens = s.prefill_tokens,
            prefill_s = s.prefill_s,
            steps = s.steps,
            mean_live = s.live as f64 / s.steps.max(1) as f64,
            decode_s = s.decode_s,
            start_s = s.start_s,
            sample_s = s.sample_s,
            grammar_rejected = schedule.grammar_rejected,
            total_s = started.elapsed().as_secs_f64(),
            "llama.cpp decoded"
        );
        Ok(schedule.answers())
    }
}

fn backend_err(e: impl std::fmt::Display) -> LlmError {
    LlmError::Backend(e.to_string())
}

impl LlmBackend for LlamaCppBackend {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn generate(&self, requests: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
        Ok(self
            .decode_all(requests, None)?
            .into_iter()
            .map(|(first, _)| first)
            .collect())
    }

    fn generate_with_follow_up(
        &self,
        requests: &[GenerateRequest],
        follow_up: &mut FollowUpFn<'_>,
    ) -> Result<Vec<(Generation, Option<Generation>)>, LlmError> {
        self.decode_all(requests, Some(follow_up))
    }
}

/// Tokens back that the repeat penalty looks at.
pub(super) const REPEAT_WINDOW: i32 = 512;

/// llama.cpp's schema grammars allow up to two newlines and 20 blanks between JSON tokens; a
/// small model spends its answer budget there (or loops). Compact JSON allows one optional
/// space, which also makes answers shorter.
fn compact_json_grammar(gbnf: &str) -> String {
    gbnf.lines()
        .map(|line| {
            if line.starts_with("space ::=") {
                "space ::= \" \"?"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
