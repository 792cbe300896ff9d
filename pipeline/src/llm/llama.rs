//! llama.cpp in-process ([`LlamaCppBackend`]).
//!
//! A call to [`LlmBackend::generate`] decodes up to `batch` requests together in one context,
//! one KV sequence each (`kv_unified(false)`: each sequence attends over its own cells only).
//! The longest token prefix shared by every prompt of the batch (system prompt, instructions)
//! is evaluated once and copied to the other sequences. Each sequence samples with its own
//! seeded sampler chain, behind a grammar compiled from the request's JSON schema.

use std::num::NonZeroU32;
use std::path::Path;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use super::model_id;
use super::{
    backend, ChatMessage, ChatTemplate, Finish, FollowUpFn, GenerateRequest, Generation,
    LlmBackend, LlmError, TokenizerError,
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
const MIN_SHARED_PREFIX: usize = 16;

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
        let n = match self.config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        n as i32
    }

    fn sampler(&self, request: &GenerateRequest) -> Result<SeqSampler, LlmError> {
        let grammar = match &request.schema {
            Some(schema) => {
                let gbnf = compact_json_grammar(
                    &llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                        .map_err(|e| LlmError::Grammar(e.to_string()))?,
                );
                Some(
                    LlamaSampler::grammar(&self.model, &gbnf, "root")
                        .map_err(|e| LlmError::Grammar(e.to_string()))?,
                )
            }
            None => None,
        };
        let chain = if request.temperature > 0.0 {
            LlamaSampler::chain_simple([
                LlamaSampler::top_k(40),
                LlamaSampler::temp(request.temperature),
                LlamaSampler::dist(request.seed),
            ])
        } else {
            LlamaSampler::greedy()
        };
        Ok(SeqSampler { grammar, chain })
    }

    /// Splits requests into batches of at most `batch`, keeping runs of prompts that share a
    /// long prefix (one user's rounds) in one batch where they fit, so the prefix is read once.
    fn chunks(
        &self,
        requests: &[GenerateRequest],
    ) -> Result<Vec<std::ops::Range<usize>>, LlmError> {
        let batch = self.config.batch.max(1);
        let prompts = requests
            .iter()
            .map(|r| self.prompt_tokens(r))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = if prompts.len() > 1 {
            common_prefix(&prompts)
        } else {
            0
        };
        let groups = prefix_groups(&prompts, shared);
        // units: each group, and every prompt outside a group, in order
        let mut units = Vec::new();
        let mut next = 0;
        for g in &groups {
            units.extend((next..g.start).map(|i| i..i + 1));
            units.push(g.start..g.end);
            next = g.end;
        }
        units.extend((next..prompts.len()).map(|i| i..i + 1));
        let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
        for unit in units {
            match chunks.last_mut() {
                Some(last) if last.len() + unit.len() <= batch => last.end = unit.end,
                _ => {
                    let mut start = unit.start;
                    while unit.end - start > batch {
                        chunks.push(start..start + batch);
                        start += batch;
                    }
                    chunks.push(start..unit.end);
                }
            }
        }
        Ok(chunks)
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

    /// Runs one batch: first turns, then the follow-up turns `follow_up` asks for, each in the
    /// sequence of its first turn so that the KV cache of the conversation so far is reused.
    fn run_batch(
        &self,
        requests: &[GenerateRequest],
        offset: usize,
        follow_up: &mut FollowUpFn<'_>,
    ) -> Result<Vec<(Generation, Option<Generation>)>, LlmError> {
        let n = requests.len();
        let prompts = requests
            .iter()
            .map(|r| self.prompt_tokens(r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut run = Run {
            backend: self,
            ctx: self.context(n)?,
            kv: vec![Vec::new(); n],
        };

        // Prefixes are evaluated once and copied (a copy between sequences takes a whole KV
        // stream, so a sequence is copied exactly when it holds the prefix): first the prefix
        // every prompt shares (system prompt, instructions), then the longer prefix shared by
        // each run of consecutive prompts (the rounds of one user share their narrative).
        // Every sequence keeps at least its last prompt token to decode with logits.
        let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
        let shared = if n > 1 { common_prefix(&prompts) } else { 0 };
        let shared = if shared >= MIN_SHARED_PREFIX {
            shared.min(shortest - 1)
        } else {
            0
        };
        if shared > 0 {
            run.prefill(&[(0, &prompts[0][..shared])])?;
            for seq in 1..n {
                run.copy(0, seq)?;
            }
        }
        let groups = prefix_groups(&prompts, shared);
        let leaders: Vec<(usize, &[LlamaToken])> = groups
            .iter()
            .map(|g| (g.start, &prompts[g.start][shared..g.prefix]))
            .collect();
        run.prefill(&leaders)?;
        for g in &groups {
            for seq in g.start + 1..g.end {
                run.copy(g.start, seq)?;
            }
        }
        let reused: Vec<usize> = (0..n)
            .map(|seq| {
                let group = groups.iter().find(|g| (g.start..g.end).contains(&seq));
                match group {
                    Some(g) if seq != g.start => g.prefix,
                    _ if seq != 0 => shared,
                    _ => 0,
                }
            })
            .collect();
        let turns: Vec<Turn> = requests
            .iter()
            .zip(prompts)
            .enumerate()
            .map(|(seq, (r, prompt))| Turn {
                seq,
                prompt,
                request: r.clone(),
            })
            .collect();
        let mut firsts = run.generate(&turns)?;
        for (g, reused) in firsts.iter_mut().zip(reused) {
            g.shared_prompt_tokens = reused;
        }

        let mut seconds: Vec<Option<Generation>> = vec![None; n];
        let mut next_turns = Vec::new();
        for (seq, turn) in follow_up(offset, &firsts).into_iter().enumerate() {
            if let Some(f) = turn {
                let first = &firsts[seq];
                let mut request = requests[seq].clone();
                request
                    .messages
                    .push(ChatMessage::assistant(first.text.clone()));
                request.messages.extend(f.messages);
                request.schema = f.schema;
                request.max_tokens = f.max_tokens;
                let prompt = self.prompt_tokens(&request)?;
                next_turns.push(Turn {
                    seq,
                    prompt,
                    request,
                });
            }
        }
        if !next_turns.is_empty() {
            for (turn, g) in next_turns.iter().zip(run.generate(&next_turns)?) {
                seconds[turn.seq] = Some(g);
            }
        }
        Ok(firsts.into_iter().zip(seconds).collect())
    }
}

/// One turn to decode in a sequence.
struct Turn {
    seq: usize,
    prompt: Vec<LlamaToken>,
    request: GenerateRequest,
}

/// One sequence's sampling: the sampler chain, and the grammar checked lazily. Checking the
/// grammar against the whole 49k-token vocabulary at every step costs more than the model's
/// forward pass, so the chain samples first and only a token the grammar rejects sends the
/// step through the grammar over the full distribution and the chain again (llama.cpp's own
/// common sampler does the same).
struct SeqSampler {
    grammar: Option<LlamaSampler>,
    chain: LlamaSampler,
}

impl SeqSampler {
    fn sample(&mut self, ctx: &LlamaContext<'_>, row: i32) -> LlamaToken {
        let mut candidates = ctx.token_data_array_ith(row);
        candidates.apply_sampler(&mut self.chain);
        let mut token = candidates
            .selected_token()
            .expect("the chain selects a token");
        if let Some(grammar) = &mut self.grammar {
            let mut single =
                LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
            single.apply_sampler(grammar);
            if single.data[0].logit() == f32::NEG_INFINITY {
                let mut full = ctx.token_data_array_ith(row);
                full.apply_sampler(grammar);
                full.apply_sampler(&mut self.chain);
                token = full.selected_token().expect("the grammar allows a token");
            }
            grammar.accept(token);
        }
        self.chain.accept(token);
        token
    }
}

/// A context being decoded, and the tokens each sequence's KV cache holds.
struct Run<'a> {
    backend: &'a LlamaCppBackend,
    ctx: LlamaContext<'a>,
    kv: Vec<Vec<LlamaToken>>,
}

impl Run<'_> {
    /// Copies sequence `from`'s whole KV stream to `to` (applied at the next decode).
    fn copy(&mut self, from: usize, to: usize) -> Result<(), LlmError> {
        self.ctx
            .kv_cache_seq_cp(from as i32, to as i32, None, None)
            .map_err(backend_err)?;
        self.kv[to] = self.kv[from].clone();
        Ok(())
    }

    /// Appends tokens to sequences without computing logits, packed into decode calls.
    fn prefill(&mut self, parts: &[(usize, &[LlamaToken])]) -> Result<(), LlmError> {
        let n_batch = self.backend.config.n_batch as usize;
        let tokens: Vec<(usize, i32, LlamaToken)> = parts
            .iter()
            .flat_map(|&(seq, tokens)| {
                let start = self.kv[seq].len();
                tokens
                    .iter()
                    .enumerate()
                    .map(move |(i, t)| (seq, (start + i) as i32, *t))
            })
            .collect();
        let mut batch = LlamaBatch::new(n_batch, self.kv.len() as i32);
        for chunk in tokens.chunks(n_batch) {
            batch.clear();
            for &(seq, pos, token) in chunk {
                batch
                    .add(token, pos, &[seq as i32], false)
                    .map_err(backend_err)?;
            }
            self.ctx.decode(&mut batch).map_err(backend_err)?;
        }
        for &(seq, tokens) in parts {
            self.kv[seq].extend_from_slice(tokens);
        }
        Ok(())
    }

    /// Decodes `turns` together: reuses each sequence's cached tokens up to where the new
    /// prompt diverges, prefills the rest, then samples one token per live sequence per call.
    fn generate(&mut self, turns: &[Turn]) -> Result<Vec<Generation>, LlmError> {
        let context = self.backend.config.context as usize;
        let mut reused = Vec::with_capacity(turns.len());
        for t in turns {
            if t.prompt.is_empty() || t.prompt.len() + t.request.max_tokens > context {
                return Err(LlmError::ContextOverflow {
                    prompt: t.prompt.len(),
                    max_tokens: t.request.max_tokens,
                    context,
                });
            }
            let keep =
                common_prefix(&[t.prompt.clone(), self.kv[t.seq].clone()]).min(t.prompt.len() - 1);
            if keep < self.kv[t.seq].len() {
                self.ctx
                    .kv_cache_seq_rm(t.seq as i32, Some(keep as u32), None)
                    .map_err(|e| LlmError::Backend(e.to_string()))?;
                self.kv[t.seq].truncate(keep);
            }
            reused.push(keep);
        }
        let parts: Vec<(usize, &[LlamaToken])> = turns
            .iter()
            .zip(&reused)
            .map(|(t, &keep)| (t.seq, &t.prompt[keep..t.prompt.len() - 1]))
            .collect();
        self.prefill(&parts)?;

        let mut samplers = turns
            .iter()
            .map(|t| self.backend.sampler(&t.request))
            .collect::<Result<Vec<_>, _>>()?;
        let vocab = self.backend.model.vocab();
        let mut outputs: Vec<Vec<u8>> = vec![Vec::new(); turns.len()];
        let mut generated = vec![0usize; turns.len()];
        let mut finish = vec![Finish::Stop; turns.len()];
        let mut next: Vec<(usize, LlamaToken)> = turns
            .iter()
            .enumerate()
            .map(|(i, t)| (i, t.prompt[t.prompt.len() - 1]))
            .collect();
        let mut batch = LlamaBatch::new(turns.len().max(1), self.kv.len() as i32);
        while !next.is_empty() {
            batch.clear();
            for &(i, token) in &next {
                let seq = turns[i].seq;
                batch
                    .add(token, self.kv[seq].len() as i32, &[seq as i32], true)
                    .map_err(backend_err)?;
            }
            self.ctx.decode(&mut batch).map_err(backend_err)?;
            let live = std::mem::take(&mut next);
            for (row, (i, token)) in live.into_iter().enumerate() {
                self.kv[turns[i].seq].push(token);
                let sampled = samplers[i].sample(&self.ctx, row as i32);
                if vocab.is_eog(sampled) {
                    continue;
                }
                generated[i] += 1;
                outputs[i].extend_from_slice(&vocab.token_to_piece(sampled, false, None));
                if generated[i] >= turns[i].request.max_tokens {
                    finish[i] = Finish::Length;
                    continue;
                }
                next.push((i, sampled));
            }
        }
        Ok(turns
            .iter()
            .enumerate()
            .map(|(i, t)| Generation {
                text: String::from_utf8_lossy(&outputs[i]).into_owned(),
                finish: finish[i],
                prompt_tokens: t.prompt.len(),
                shared_prompt_tokens: reused[i],
                generated_tokens: generated[i],
            })
            .collect())
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
            .generate_with_follow_up(requests, &mut |_, answers| vec![None; answers.len()])?
            .into_iter()
            .map(|(first, _)| first)
            .collect())
    }

    fn generate_with_follow_up(
        &self,
        requests: &[GenerateRequest],
        follow_up: &mut FollowUpFn<'_>,
    ) -> Result<Vec<(Generation, Option<Generation>)>, LlmError> {
        let mut out = Vec::with_capacity(requests.len());
        for range in self.chunks(requests)? {
            let offset = range.start;
            out.extend(self.run_batch(&requests[range], offset, follow_up)?);
        }
        Ok(out)
    }
}

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

/// A run `start..end` of consecutive prompts sharing `prefix` tokens, more than the batch-wide
/// prefix.
#[derive(Debug, PartialEq)]
struct PrefixGroup {
    start: usize,
    end: usize,
    prefix: usize,
}

fn prefix_groups(prompts: &[Vec<LlamaToken>], shared: usize) -> Vec<PrefixGroup> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < prompts.len() {
        let mut end = start + 1;
        let mut prefix = prompts[start].len().saturating_sub(1);
        while end < prompts.len() {
            let lcp = common_prefix(&[prompts[start].clone(), prompts[end].clone()])
                .min(prompts[end].len().saturating_sub(1))
                .min(prefix);
            if lcp < shared + MIN_SHARED_PREFIX {
                break;
            }
            prefix = lcp;
            end += 1;
        }
        if end - start > 1 {
            groups.push(PrefixGroup { start, end, prefix });
        }
        start = end;
    }
    groups
}

/// Length of the token prefix all prompts share.
fn common_prefix(prompts: &[Vec<LlamaToken>]) -> usize {
    let first = &prompts[0];
    prompts[1..].iter().fold(first.len(), |len, p| {
        first[..len]
            .iter()
            .zip(p)
            .take_while(|(a, b)| a == b)
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&i| LlamaToken(i)).collect()
    }

    #[test]
    fn groups_of_consecutive_prompts_with_a_longer_shared_prefix() {
        let system: Vec<i32> = (0..20).collect();
        let user = |u: i32, tail: i32| {
            let mut t = system.clone();
            t.extend((0..30).map(|i| 1000 * u + i));
            t.push(tail);
            tokens(&t)
        };
        let prompts = vec![
            user(1, 1),
            user(1, 2),
            user(1, 3),
            user(2, 1),
            user(3, 1),
            user(3, 2),
        ];
        assert_eq!(common_prefix(&prompts), 20);
        let groups = prefix_groups(&prompts, 20);
        assert_eq!(
            groups,
            vec![
                PrefixGroup {
                    start: 0,
                    end: 3,
                    prefix: 50
                },
                PrefixGroup {
                    start: 4,
                    end: 6,
                    prefix: 50
                },
            ]
        );
    }
}
