//! Which turn each slot decodes, what waits for a follow-up, and the answers so far.

use std::borrow::Cow;
use std::ops::Range;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;

use super::*;
use crate::{Finish, FollowUpFn, GenerateRequest, Generation, LlmError};

pub(super) enum Slot {
    Free,
    Busy(Box<Decoding>),
    /// Holds a first answer's conversation until its unit's follow-ups are decided.
    Waiting,
}

/// A turn being decoded in a slot.
pub(super) struct Decoding {
    pub(super) request: usize,
    /// A follow-up turn (else the first).
    pub(super) second: bool,
    pub(super) sampler: SeqSampler,
    /// The token to feed at the next step.
    pub(super) next: LlamaToken,
    pub(super) prompt_tokens: usize,
    pub(super) reused: usize,
    pub(super) max_tokens: usize,
    pub(super) output: Vec<u8>,
    pub(super) generated: usize,
}

/// A turn about to enter `slot`: a first turn as requested, or a follow-up's conversation.
pub(super) struct Entry<'r> {
    pub(super) slot: usize,
    pub(super) request: usize,
    pub(super) second: bool,
    pub(super) turn: Cow<'r, GenerateRequest>,
    pub(super) prompt: Vec<LlamaToken>,
}

/// Which turn each slot decodes, what waits, and the answers so far, for one
/// [`LlamaCppBackend::decode_all`] call.
pub(super) struct Schedule<'r> {
    pub(super) requests: &'r [GenerateRequest],
    pub(super) prompts: Vec<Vec<LlamaToken>>,
    pub(super) units: Vec<Range<usize>>,
    pub(super) unit_of: Vec<usize>,
    /// First answers each unit still waits for.
    pub(super) unit_left: Vec<usize>,
    pub(super) slots: Vec<Slot>,
    pub(super) slot_of: Vec<usize>,
    /// Requests whose first turn has entered a slot (they enter in order).
    pub(super) queued: usize,
    /// Follow-up turns decided, waiting to enter their slot: (request, conversation).
    pub(super) continuing: Vec<(usize, GenerateRequest)>,
    pub(super) firsts: Vec<Option<Generation>>,
    pub(super) seconds: Vec<Option<Generation>>,
    /// Steps whose token the grammar rejected.
    pub(super) grammar_rejected: usize,
}

impl<'r> Schedule<'r> {
    pub(super) fn new(
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
    pub(super) fn entering(
        &mut self,
        backend: &LlamaCppBackend,
    ) -> Result<Vec<Entry<'r>>, LlmError> {
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
    pub(super) fn start(
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
    pub(super) fn inputs(&self) -> Vec<(usize, LlamaToken)> {
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
    pub(super) fn sample(
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
    pub(super) fn answered(
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
    pub(super) fn answers(self) -> Vec<(Generation, Option<Generation>)> {
        self.firsts
            .into_iter()
            .zip(self.seconds)
            .map(|(first, second)| (first.expect("every request is answered"), second))
            .collect()
    }
}
