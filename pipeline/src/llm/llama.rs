//! llama.cpp in-process ([`LlamaCppBackend`]).
//!
//! A call to [`LlmBackend::generate`] decodes its requests in one context of `batch` KV
//! sequences (slots; `kv_unified(false)`: each sequence attends over its own cells only), with
//! continuous batching: a slot whose answer is done takes the next request at once, so the
//! batch stays full while requests remain. A request entering a slot keeps the longest prefix
//! of its prompt already cached (system prompt, instructions, a user's narrative), from its
//! own slot or copied from another, and evaluates only the rest. Each sequence samples with
//! its own seeded sampler chain, behind a grammar compiled from the request's JSON schema.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

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
const MIN_SHARED_PREFIX: usize = 16;

/// The fewest answer tokens a follow-up turn is started with when its context runs short.
const FOLLOW_UP_MIN_ROOM: usize = 128;

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

/// What one KV sequence of a run is doing.
enum Slot {
    Free,
    Busy(Box<Decoding>),
    /// Holds a first answer's conversation until its unit's follow-ups are decided.
    Waiting,
}

/// A turn being decoded in a slot.
struct Decoding {
    request: usize,
    /// A follow-up turn (else the first).
    second: bool,
    sampler: SeqSampler,
    /// The token to feed at the next step.
    next: LlamaToken,
    prompt_tokens: usize,
    reused: usize,
    max_tokens: usize,
    output: Vec<u8>,
    generated: usize,
}

/// A turn about to enter `slot`: a first turn as requested, or a follow-up's conversation.
struct Entry<'r> {
    slot: usize,
    request: usize,
    second: bool,
    turn: Cow<'r, GenerateRequest>,
    prompt: Vec<LlamaToken>,
}

/// Which turn each slot decodes, what waits, and the answers so far, for one
/// [`LlamaCppBackend::decode_all`] call.
struct Schedule<'r> {
    requests: &'r [GenerateRequest],
    prompts: Vec<Vec<LlamaToken>>,
    units: Vec<Range<usize>>,
    unit_of: Vec<usize>,
    /// First answers each unit still waits for.
    unit_left: Vec<usize>,
    slots: Vec<Slot>,
    slot_of: Vec<usize>,
    /// Requests whose first turn has entered a slot (they enter in order).
    queued: usize,
    /// Follow-up turns decided, waiting to enter their slot: (request, conversation).
    continuing: Vec<(usize, GenerateRequest)>,
    firsts: Vec<Option<Generation>>,
    seconds: Vec<Option<Generation>>,
    /// Steps whose token the grammar rejected.
    grammar_rejected: usize,
}

impl<'r> Schedule<'r> {
    fn new(
        requests: &'r [GenerateRequest],
        prompts: Vec<Vec<LlamaToken>>,
        units: Vec<Range<usize>>,
        slots: usize,
    ) -> Self {
        let n = requests.len();
        let mut unit_of = vec![0; n];
        for (u, range) in units.iter().enumerate() {
            range.clone().for_each(|i| unit_of[i] = u);
        }
        Self {
            requests,
            prompts,
            unit_left: units.iter().map(|r| r.len()).collect(),
            units,
            unit_of,
            slots: (0..slots).map(|_| Slot::Free).collect(),
            slot_of: vec![0; n],
            queued: 0,
            continuing: Vec::new(),
            firsts: vec![None; n],
            seconds: vec![None; n],
            grammar_rejected: 0,
        }
    }

    /// The turns to enter now: decided follow-ups into their own slots, then the next first
    /// turns into free slots.
    fn entering(&mut self, backend: &LlamaCppBackend) -> Result<Vec<Entry<'r>>, LlmError> {
        let mut entering = Vec::new();
        for (request, mut turn) in std::mem::take(&mut self.continuing) {
            let prompt = backend.prompt_tokens(&turn)?;
            turn.max_tokens = backend.follow_up_room(&prompt, turn.max_tokens)?;
            entering.push(Entry {
                slot: self.slot_of[request],
                request,
                second: true,
                turn: Cow::Owned(turn),
                prompt,
            });
        }
        for slot in 0..self.slots.len() {
            if self.queued < self.requests.len() && matches!(self.slots[slot], Slot::Free) {
                let request = self.queued;
                self.queued += 1;
                self.slot_of[request] = slot;
                entering.push(Entry {
                    slot,
                    request,
                    second: false,
                    turn: Cow::Borrowed(&self.requests[request]),
                    // a first turn enters once
                    prompt: std::mem::take(&mut self.prompts[request]),
                });
            }
        }
        Ok(entering)
    }

    /// `entry` has entered its slot with `reused` prompt tokens from the cache.
    fn start(
        &mut self,
        backend: &LlamaCppBackend,
        entry: Entry<'_>,
        reused: usize,
    ) -> Result<(), LlmError> {
        self.slots[entry.slot] = Slot::Busy(Box::new(Decoding {
            request: entry.request,
            second: entry.second,
            sampler: backend.sampler(&entry.turn)?,
            next: entry.prompt[entry.prompt.len() - 1],
            prompt_tokens: entry.prompt.len(),
            reused,
            max_tokens: entry.turn.max_tokens,
            output: Vec::new(),
            generated: 0,
        }));
        Ok(())
    }

    /// The token each busy slot feeds at the next step, by slot.
    fn inputs(&self) -> Vec<(usize, LlamaToken)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| match s {
                Slot::Busy(d) => Some((slot, d.next)),
                _ => None,
            })
            .collect()
    }

    /// Samples `slot`'s next token from logits row `row`; its answer when that ends the turn
    /// (the slot is then free).
    fn sample(
        &mut self,
        backend: &LlamaCppBackend,
        ctx: &LlamaContext<'_>,
        slot: usize,
        row: usize,
    ) -> Option<(usize, bool, Generation)> {
        let Slot::Busy(d) = &mut self.slots[slot] else {
            unreachable!("only busy slots decode")
        };
        let vocab = backend.model.vocab();
        let sampled = d.sampler.sample(ctx, row as i32);
        let finish = if vocab.is_eog(sampled) {
            Finish::Stop
        } else {
            d.generated += 1;
            d.output
                .extend_from_slice(&vocab.token_to_piece(sampled, false, None));
            d.next = sampled;
            if d.generated < d.max_tokens {
                return None;
            }
            Finish::Length
        };
        let Slot::Busy(d) = std::mem::replace(&mut self.slots[slot], Slot::Free) else {
            unreachable!("checked above")
        };
        self.grammar_rejected += d.sampler.rejected;
        let generation = Generation {
            text: String::from_utf8_lossy(&d.output).into_owned(),
            finish,
            prompt_tokens: d.prompt_tokens,
            shared_prompt_tokens: d.reused,
            generated_tokens: d.generated,
        };
        Some((d.request, d.second, generation))
    }

    /// Records an answer. A first answer, with follow-ups asked for, holds its slot until its
    /// unit's answers are all in; then `follow_up` decides the unit's next turns, and slots
    /// without one are freed.
    fn answered(
        &mut self,
        slot: usize,
        (request, second, generation): (usize, bool, Generation),
        follow_up: &mut Option<&mut FollowUpFn<'_>>,
    ) {
        if second {
            self.seconds[request] = Some(generation);
            return;
        }
        self.firsts[request] = Some(generation);
        let Some(follow_up) = follow_up.as_mut() else {
            return;
        };
        self.slots[slot] = Slot::Waiting;
        let u = self.unit_of[request];
        self.unit_left[u] -= 1;
        if self.unit_left[u] > 0 {
            return;
        }
        let range = self.units[u].clone();
        let answers: Vec<Generation> = range
            .clone()
            .map(|j| self.firsts[j].clone().expect("the unit's answers are in"))
            .collect();
        let mut turns = follow_up(range.start, &answers);
        turns.resize(range.len(), None); // a missing decision ends the conversation
        for ((j, turn), answer) in range.zip(turns).zip(answers) {
            match turn {
                Some(f) => {
                    let mut next = self.requests[j].clone();
                    next.messages.push(ChatMessage::assistant(answer.text));
                    next.messages.extend(f.messages);
                    next.schema = f.schema;
                    next.grammar = f.grammar;
                    next.repeat_penalty = f.repeat_penalty;
                    next.max_tokens = f.max_tokens;
                    self.continuing.push((j, next));
                }
                None => self.slots[self.slot_of[j]] = Slot::Free,
            }
        }
    }

    /// Every request's answers, in order.
    fn answers(self) -> Vec<(Generation, Option<Generation>)> {
        self.firsts
            .into_iter()
            .zip(self.seconds)
            .map(|(first, second)| (first.expect("every request is answered"), second))
            .collect()
    }
}

/// One sequence's sampling: the sampler chain, and the grammar checked lazily. Checking the
/// grammar against the whole 49k-token vocabulary at every step costs more than the model's
/// forward pass, so the chain samples first and only a token the grammar rejects sends the
/// step through the grammar over the full distribution and the chain again (llama.cpp's own
/// common sampler does the same).
struct SeqSampler {
    grammar: Option<LlamaSampler>,
    chain: LlamaSampler,
    /// Steps whose token the grammar rejected (sampled again over the whole vocabulary).
    rejected: usize,
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
                self.rejected += 1;
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

/// Where a run's time went (logged at debug level).
#[derive(Debug, Default)]
struct RunStats {
    setup_s: f64,
    prefill_tokens: usize,
    prefill_s: f64,
    /// Decode calls of one token per busy slot, and the busy slots summed over them.
    steps: usize,
    live: usize,
    decode_s: f64,
    /// Turns readied: follow-up prompts tokenized, sampler chains and grammars built.
    start_s: f64,
    /// Sampling, and follow-up turns decided.
    sample_s: f64,
    answers: usize,
}

/// Where a sequence entering a slot takes its cached prefix from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
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
struct Plan {
    source: Source,
    keep: usize,
    wave: usize,
}

/// For each `(slot, prompt)` entering, the longest prefix of its prompt that is or will be
/// cached: in its own slot, in a slot not entered now (as it is), or in an earlier entry's
/// prompt (once prefilled), the latter two copied only when that saves at least
/// [`MIN_SHARED_PREFIX`] tokens over its own. At most all but the prompt's last token, which
/// is decoded for the first logits (all but the last two when copied). `kv` is what each slot
/// holds.
fn plan(kv: &[Vec<LlamaToken>], entries: &[(usize, &[LlamaToken])]) -> Vec<Plan> {
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
struct Run<'a> {
    backend: &'a LlamaCppBackend,
    ctx: LlamaContext<'a>,
    kv: Vec<Vec<LlamaToken>>,
    stats: RunStats,
}

impl Run<'_> {
    /// Replaces sequence `to`'s cache with the first `keep` tokens of `from`'s (the stream
    /// copy is applied at the next decode).
    fn copy(&mut self, from: usize, to: usize, keep: usize) -> Result<(), LlmError> {
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
    fn truncate(&mut self, seq: usize, keep: usize) -> Result<(), LlmError> {
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
    fn enter(&mut self, entries: &[(usize, &[LlamaToken])]) -> Result<Vec<usize>, LlmError> {
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
    fn prefill(&mut self, parts: &[(usize, &[LlamaToken])]) -> Result<(), LlmError> {
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
    fn step(&mut self, inputs: &[(usize, LlamaToken)]) -> Result<(), LlmError> {
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
const REPEAT_WINDOW: i32 = 512;

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
fn common_prefix(prompts: &[Vec<LlamaToken>]) -> usize {
    let first = &prompts[0];
    prompts[1..]
        .iter()
        .fold(first.len(), |len, p| common_len(&first[..len], p))
}

/// Length of the prefix `a` and `b` share.
fn common_len(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
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

    fn prompt(head: &[i32], user: i32, len: i32) -> Vec<LlamaToken> {
        let mut t = head.to_vec();
        t.extend((0..len).map(|i| 1000 * user + i));
        tokens(&t)
    }

    #[test]
    fn entries_copy_the_longest_cached_prefix_in_waves() {
        let system: Vec<i32> = (0..20).collect();
        let a = prompt(&system, 1, 30);
        let a2 = prompt(&system, 1, 30);
        let b = prompt(&system, 2, 30);
        let kv = vec![Vec::new(); 3];
        let plans = plan(&kv, &[(0, &a), (1, &b), (2, &a2)]);
        let keep_all_but_two = a2.len() - 2;
        assert_eq!(
            plans,
            vec![
                Plan {
                    source: Source::Own,
                    keep: 0,
                    wave: 0
                },
                Plan {
                    source: Source::Entry(0),
                    keep: 20,
                    wave: 1
                },
                Plan {
                    source: Source::Entry(0),
                    keep: keep_all_but_two,
                    wave: 1
                },
            ]
        );
    }

    #[test]
    fn a_slot_reuses_its_own_cache_or_an_untouched_slot() {
        let system: Vec<i32> = (0..20).collect();
        let a = prompt(&system, 1, 30);
        let b = prompt(&system, 2, 30);
        // slot 0 holds a's conversation, slot 1 b's; a follow-up of a enters slot 0
        let mut follow = a.clone();
        follow.extend(tokens(&[7, 8, 9]));
        let kv = vec![a.clone(), b.clone(), Vec::new()];
        let plans = plan(&kv, &[(0, &follow), (2, &b)]);
        assert_eq!(
            plans[0],
            Plan {
                source: Source::Own,
                keep: a.len(),
                wave: 0
            }
        );
        // slot 1 is not entered: b's prompt but its last two tokens is copied from it
        assert_eq!(
            plans[1],
            Plan {
                source: Source::Slot(1),
                keep: b.len() - 2,
                wave: 0
            }
        );
        // a shorter gain than MIN_SHARED_PREFIX over the own cache is not worth a copy
        let kv = vec![
            prompt(&system, 3, 5),
            system.iter().map(|&i| LlamaToken(i)).collect(),
            Vec::new(),
        ];
        let c = prompt(&system, 4, 10);
        assert_eq!(
            plan(&kv, &[(0, &c)])[0],
            Plan {
                source: Source::Own,
                keep: 20,
                wave: 0
            }
        );
    }

    #[test]
    fn units_keep_a_users_rounds_together_within_the_slots() {
        let system: Vec<i32> = (0..20).collect();
        let prompts = vec![
            prompt(&system, 1, 30),
            prompt(&system, 1, 30),
            prompt(&system, 1, 30),
            prompt(&system, 2, 30),
            prompt(&system, 3, 30),
            prompt(&system, 3, 30),
        ];
        assert_eq!(LlamaCppBackend::units(&prompts, 8), vec![0..3, 3..4, 4..6]);
        assert_eq!(
            LlamaCppBackend::units(&prompts, 2),
            vec![0..2, 2..3, 3..4, 4..6]
        );
        // one user's rounds alone (a batch of one user) are one unit too
        assert_eq!(LlamaCppBackend::units(&prompts[..3], 8), vec![0..3]);
        assert_eq!(LlamaCppBackend::units(&prompts[..1], 8), vec![0..1]);
    }
}
