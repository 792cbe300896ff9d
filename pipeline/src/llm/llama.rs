//! llama.cpp in-process ([`LlamaCppBackend`]).
//!
//! A call to [`LlmBackend::generate`] decodes up to `batch` requests together in one context,
//! one KV sequence each (`kv_unified(false)`: each sequence attends over its own cells only).
//! The longest token prefix shared by every prompt of the batch (system prompt, instructions)
//! is evaluated once and copied to the other sequences. Each sequence samples with its own
//! seeded sampler chain, behind a grammar compiled from the request's JSON schema.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use super::{
    backend, ChatTemplate, Finish, GenerateRequest, Generation, LlmBackend, LlmError,
    TokenizerError,
};

/// Configuration of the llama.cpp backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlamaCppConfig {
    /// GGUF model file.
    pub model: PathBuf,
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
            model: crate::model::default_model_path(),
            context: 4096,
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
    pub fn load(config: LlamaCppConfig) -> Result<Self, LlmError> {
        let path = &config.model;
        if !path.is_file() {
            return Err(TokenizerError::Missing { path: path.clone() }.into());
        }
        let model = LlamaModel::load_from_file(backend(), path, &LlamaModelParams::default())
            .map_err(|e| TokenizerError::Load {
                path: path.clone(),
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

    fn sampler(&self, request: &GenerateRequest) -> Result<LlamaSampler, LlmError> {
        let mut chain = Vec::new();
        if let Some(schema) = &request.schema {
            let gbnf = llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                .map_err(|e| LlmError::Grammar(e.to_string()))?;
            chain.push(
                LlamaSampler::grammar(&self.model, &gbnf, "root")
                    .map_err(|e| LlmError::Grammar(e.to_string()))?,
            );
        }
        if request.temperature > 0.0 {
            chain.push(LlamaSampler::top_k(40));
            chain.push(LlamaSampler::temp(request.temperature));
            chain.push(LlamaSampler::dist(request.seed));
        } else {
            chain.push(LlamaSampler::greedy());
        }
        Ok(LlamaSampler::chain_simple(chain))
    }

    fn generate_batch(&self, requests: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
        let n = requests.len();
        let per_seq = self.config.context as usize;
        let prompts = requests
            .iter()
            .map(|r| self.prompt_tokens(r))
            .collect::<Result<Vec<_>, _>>()?;
        for (prompt, request) in prompts.iter().zip(requests) {
            if prompt.len() + request.max_tokens > per_seq || prompt.is_empty() {
                return Err(LlmError::ContextOverflow {
                    prompt: prompt.len(),
                    max_tokens: request.max_tokens,
                    context: per_seq,
                });
            }
        }
        let mut samplers = requests
            .iter()
            .map(|r| self.sampler(r))
            .collect::<Result<Vec<_>, _>>()?;

        let threads = self.threads();
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new((per_seq * n) as u32))
            .with_n_seq_max(n as u32)
            .with_n_batch(self.config.n_batch)
            .with_n_ubatch(self.config.n_batch)
            .with_kv_unified(false)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let mut ctx = self
            .model
            .new_context(backend(), params)
            .map_err(|e| LlmError::Backend(e.to_string()))?;

        // 1. the prefix every prompt shares, once (each sequence keeps at least its last token)
        let shared = if n > 1 { common_prefix(&prompts) } else { 0 };
        let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
        let shared = if shared >= MIN_SHARED_PREFIX {
            shared.min(shortest - 1)
        } else {
            0
        };
        let n_batch = self.config.n_batch as usize;
        let mut batch = LlamaBatch::new(n_batch.max(n), n as i32);
        let err = |e: &dyn std::fmt::Display| LlmError::Backend(e.to_string());
        if shared > 0 {
            for (chunk_start, chunk) in prompts[0][..shared].chunks(n_batch).enumerate() {
                batch.clear();
                for (i, token) in chunk.iter().enumerate() {
                    let pos = (chunk_start * n_batch + i) as i32;
                    batch.add(*token, pos, &[0], false).map_err(|e| err(&e))?;
                }
                ctx.decode(&mut batch).map_err(|e| err(&e))?;
            }
            for seq in 1..n {
                ctx.kv_cache_seq_cp(0, seq as i32, None, None)
                    .map_err(|e| err(&e))?;
            }
        }

        // 2. the rest of every prompt but its last token, packed into decode calls
        let rest: Vec<(i32, i32, LlamaToken)> = prompts
            .iter()
            .enumerate()
            .flat_map(|(seq, p)| {
                (shared..p.len() - 1).map(move |pos| (seq as i32, pos as i32, p[pos]))
            })
            .collect();
        for chunk in rest.chunks(n_batch) {
            batch.clear();
            for &(seq, pos, token) in chunk {
                batch.add(token, pos, &[seq], false).map_err(|e| err(&e))?;
            }
            ctx.decode(&mut batch).map_err(|e| err(&e))?;
        }

        // 3. every prompt's last token in one call, then one token per live sequence per call
        let mut outputs: Vec<Vec<u8>> = vec![Vec::new(); n];
        let mut generated = vec![0usize; n];
        let mut finish: Vec<Option<Finish>> = vec![None; n];
        let mut next: Vec<(usize, LlamaToken, i32)> = prompts
            .iter()
            .enumerate()
            .map(|(seq, p)| (seq, p[p.len() - 1], (p.len() - 1) as i32))
            .collect();
        let vocab = self.model.vocab();
        while !next.is_empty() {
            batch.clear();
            for &(seq, token, pos) in &next {
                batch
                    .add(token, pos, &[seq as i32], true)
                    .map_err(|e| err(&e))?;
            }
            ctx.decode(&mut batch).map_err(|e| err(&e))?;
            let live = std::mem::take(&mut next);
            for (i, (seq, _, pos)) in live.into_iter().enumerate() {
                let token = samplers[seq].sample(&ctx, i as i32);
                if vocab.is_eog(token) {
                    finish[seq] = Some(Finish::Stop);
                    continue;
                }
                generated[seq] += 1;
                outputs[seq].extend_from_slice(&vocab.token_to_piece(token, false, None));
                if generated[seq] >= requests[seq].max_tokens {
                    finish[seq] = Some(Finish::Length);
                    continue;
                }
                next.push((seq, token, pos + 1));
            }
        }
        Ok((0..n)
            .map(|seq| Generation {
                text: String::from_utf8_lossy(&outputs[seq]).into_owned(),
                finish: finish[seq].unwrap_or(Finish::Stop),
                prompt_tokens: prompts[seq].len(),
                shared_prompt_tokens: if seq == 0 { 0 } else { shared },
                generated_tokens: generated[seq],
            })
            .collect())
    }
}

impl LlmBackend for LlamaCppBackend {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn generate(&self, requests: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
        let mut out = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(self.config.batch.max(1)) {
            out.extend(self.generate_batch(chunk)?);
        }
        Ok(out)
    }
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

/// `file name (size in bytes)`: stable for one file, different for another quantisation.
fn model_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    format!("{name} ({size} bytes)")
}
