//! One sequence's sampling under its grammar.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

/// One sequence's sampling: the sampler chain, and the grammar checked lazily. Checking the
/// grammar against the whole vocabulary (49k tokens for SmolLM2, 152k for Qwen2.5) at every
/// step costs more than the model's forward pass, so the chain samples first and only a token
/// the grammar rejects sends the step through the grammar over the full distribution and the
/// chain again (llama.cpp's own common sampler does the same).
pub(super) struct SeqSampler {
    pub(super) grammar: Option<LlamaSampler>,
    pub(super) chain: LlamaSampler,
    /// Steps whose token the grammar rejected (sampled again over the whole vocabulary).
    pub(super) rejected: usize,
}

impl SeqSampler {
    pub(super) fn sample(&mut self, ctx: &LlamaContext<'_>, row: i32) -> LlamaToken {
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
