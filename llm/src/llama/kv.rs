//! The KV cache of a run's slots: which cached prefix an entering prompt reuses (its own
//! slot's, or another's, copied), prefill and decoding steps.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::*;
use crate::LlmError;

/// Where a run's time went (logged at debug level).
#[derive(Debug, Default)]
pub(super) struct RunStats {
    pub(super) setup_s: f64,
    pub(super) prefill_tokens: usize,
    pub(super) prefill_s: f64,
    /// Decode calls of one token per busy slot, and the busy slots summed over them.
    pub(super) steps: usize,
    pub(super) live: usize,
    pub(super) decode_s: f64,
    /// Turns readied: follow-up prompts tokenized, sampler chains and grammars built.
    pub(super) start_s: f64,
    /// Sampling, and follow-up turns decided.
    pub(super) sample_s: f64,
    pub(super) answers: usize,
}

/// Where a sequence entering a slot takes its cached prefix from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Source {
    /// Its slot's own cache.
    Own,
    /// A slot not entered in this round, as it is.
    Slot(usize),
    /// An earlier entry of this round, once prefilled.
    Entry(usize),
}

/// How an entry gets its cached prefix: `keep` tokens from `source`, in prefill `wave` (0, or
/// one after the wave of the entry it copies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Plan {
    pub(super) source: Source,
    pub(super) keep: usize,
    pub(super) wave: usize,
}

/// For each `(slot, prompt)` entering, the longest prefix of its prompt that is or will be
/// cached: in its own slot, in a slot not entered now (as it is), or in an earlier entry's
/// prompt (once prefilled), the latter two copied only when that saves at least
/// [`MIN_SHARED_PREFIX`] tokens over its own. At most all but the prompt's last token, which
/// is decoded for the first logits (all but the last two when copied). `kv` is what each slot
/// holds.
pub(super) fn plan(kv: &[Vec<LlamaToken>], entries: &[(usize, &[LlamaToken])]) -> Vec<Plan> {
    let entered: Vec<usize> = entries.iter().map(|&(slot, _)| slot).collect();
    let mut plans: Vec<Plan> = Vec::with_capacity(entries.len());
    for &(slot, prompt) in entries {
        let limit = prompt.len() - 1;
        let own = common_len(&kv[slot], prompt).min(limit);
        let mut best = Plan {
            source: Source::Own,
            keep: own,
            wave: 0,
        };
        let others = (0..kv.len())
            .filter(|s| !entered.contains(s))
            .map(|s| (Source::Slot(s), common_len(&kv[s], prompt), 0));
        let earlier = plans.iter().enumerate().map(|(j, p)| {
            let (_, q) = entries[j];
            (
                Source::Entry(j),
                common_len(&q[..q.len() - 1], prompt),
                p.wave + 1,
            )
        });
        // a copy leaves at least one token to prefill, so the stream copy is applied by a
        // prefill call: applied by a decode step with logits, it changed the answers of the
        // sequences being decoded (the source's too)
        for (source, len, wave) in others.chain(earlier) {
            let keep = len.min(limit.saturating_sub(1));
            if keep >= own + MIN_SHARED_PREFIX && keep > best.keep {
                best = Plan { source, keep, wave };
            }
        }
        plans.push(best);
    }
    plans
}

/// A context being decoded, and the tokens each sequence's KV cache holds.
pub(super) struct Run<'a> {
    pub(super) backend: &'a LlamaCppBackend,
    pub(super) ctx: LlamaContext<'a>,
    pub(super) kv: Vec<Vec<LlamaToken>>,
    pub(super) stats: RunStats,
}

impl Run<'_> {
    /// Replaces sequence `to`'s cache with the first `keep` tokens of `from`'s (the stream
    /// copy is applied at the next decode).
    pub(super) fn copy(&mut self, from: usize, to: usize, keep: usize) -> Result<(), LlmError> {
        self.ctx
            .kv_cache_seq_rm(to as i32, None, None)
            .map_err(backend_err)?;
        self.ctx
            .kv_cache_seq_cp(from as i32, to as i32, None, None)
            .map_err(backend_err)?;
        self.kv[to] = self.kv[from].clone();
        self.truncate(to, keep)
    }

    /// Drops sequence `seq`'s cached tokens from position `keep` on.
    pub(super) fn truncate(&mut self, seq: usize, keep: usize) -> Result<(), LlmError> {
        if keep < self.kv[seq].len() {
            self.ctx
                .kv_cache_seq_rm(seq as i32, Some(keep as u32), None)
                .map_err(backend_err)?;
            self.kv[seq].truncate(keep);
        }
        Ok(())
    }

    /// Readies `(slot, prompt)` entries to decode: each keeps the prefix [`plan`] finds for it
    /// and prefills the rest but the last token, wave by wave. Returns each entry's reused
    /// tokens.
    pub(super) fn enter(
        &mut self,
        entries: &[(usize, &[LlamaToken])],
    ) -> Result<Vec<usize>, LlmError> {
        let plan = plan(&self.kv, entries);
        let waves = plan.iter().map(|p| p.wave).max().unwrap_or(0);
        for wave in 0..=waves {
            let mut parts: Vec<(usize, &[LlamaToken])> = Vec::new();
            for (&(slot, prompt), p) in entries.iter().zip(&plan) {
                if p.wave != wave {
                    continue;
                }
                match p.source {
                    Source::Own => self.truncate(slot, p.keep)?,
                    Source::Slot(from) => self.copy(from, slot, p.keep)?,
                    Source::Entry(j) => self.copy(entries[j].0, slot, p.keep)?,
                }
                parts.push((slot, &prompt[p.keep..prompt.len() - 1]));
            }
            self.prefill(&parts)?;
        }
        Ok(plan.iter().map(|p| p.keep).collect())
    }

    /// Appends tokens to sequences without computing logits, packed into decode calls.
    pub(super) fn prefill(&mut self, parts: &[(usize, &[LlamaToken])]) -> Result<(), LlmError> {
        let started = Instant::now();
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
        self.stats.prefill_tokens += tokens.len();
        self.stats.prefill_s += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Feeds one token to each of `inputs`' sequences, with logits (row `i` for input `i`).
    pub(super) fn step(&mut self, inputs: &[(usize, LlamaToken)]) -> Result<(), LlmError> {
        let started = Instant::now();
        let mut batch = LlamaBatch::new(inputs.len(), self.kv.len() as i32);
        for &(seq, token) in inputs {
            batch
                .add(token, self.kv[seq].len() as i32, &[seq as i32], true)
                .map_err(backend_err)?;
        }
        self.ctx.decode(&mut batch).map_err(backend_err)?;
        for &(seq, token) in inputs {
            self.kv[seq].push(token);
        }
        self.stats.steps += 1;
        self.stats.live += inputs.len();
        self.stats.decode_s += started.elapsed().as_secs_f64();
        Ok(())
    }
}

/// A run `start..end` of consecutive prompts sharing `prefix` tokens, more than the batch-wide
/// prefix.
#[derive(Debug, PartialEq)]
pub(super) struct PrefixGroup {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) prefix: usize,
}

pub(super) fn prefix_groups(prompts: &[Vec<LlamaToken>], shared: usize) -> Vec<PrefixGroup> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < prompts.len() {
        let mut end = start + 1;
        let mut prefix = prompts[start].len().saturating_sub(1);
        while end < prompts.len() {
            let lcp = common_len(&prompts[start], &prompts[end])
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
pub(super) fn common_prefix(prompts: &[Vec<LlamaToken>]) -> usize {
    let first = &prompts[0];
    prompts[1..]
        .iter()
        .fold(first.len(), |len, p| common_len(&first[..len], p))
}

/// Length of the prefix `a` and `b` share.
pub(super) fn common_len(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
