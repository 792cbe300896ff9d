//! Token counting with the model's own vocabulary.
//!
//! [`GgufTokenizer`] loads only the vocabulary of a GGUF file through llama.cpp and tokenizes
//! exactly as the model will. [`TokenCounter`] makes counting cheap enough to run for every
//! user: GPT-2-style BPE (SmolLM2's) first splits text into pre-tokens with a regex and never
//! merges across them, so a text can be cut at positions that are always pre-token boundaries
//! and the counts of the pieces add up to the count of the whole. The pieces (mostly single
//! words) repeat endlessly across users, so their counts are memoised. The e2e tests check the
//! sum against whole-text tokenization on real narratives.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use rustc_hash::FxHashMap as HashMap;

/// Something that counts tokens exactly.
pub trait TokenCount: Send + Sync {
    fn count_tokens(&self, text: &str) -> usize;
}

/// The process-wide llama.cpp backend. llama.cpp allows one initialisation per process, so
/// every model and test shares this one.
pub fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        LlamaBackend::init().expect("llama.cpp backend initialises once per process")
    })
}

/// Errors loading a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The model file is missing. The caller's fault: run `make model` or pass `--model`.
    #[error("model file {} not found (run `make model`, or pass --model / RECGPT_MODEL)", path.display())]
    Missing { path: PathBuf },
    /// llama.cpp could not read the file. Not retryable: the file is not a usable GGUF.
    #[error("cannot load the vocabulary of {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
}

/// The vocabulary of a GGUF model, loaded without its weights.
#[derive(Debug)]
pub struct GgufTokenizer {
    model: LlamaModel,
    path: PathBuf,
}

impl GgufTokenizer {
    pub fn load(path: &Path) -> Result<Self, TokenizerError> {
        if !path.is_file() {
            return Err(TokenizerError::Missing {
                path: path.to_path_buf(),
            });
        }
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(backend(), path, &params).map_err(|e| {
            TokenizerError::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            model,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Token ids of `text`, without BOS/EOS; special-token text is treated as plain text.
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }
}

impl TokenCount for GgufTokenizer {
    fn count_tokens(&self, text: &str) -> usize {
        self.tokenize(text).len()
    }
}

/// Memoising, piece-wise exact token counter (see the module docs).
#[derive(Debug)]
pub struct TokenCounter<T = GgufTokenizer> {
    inner: T,
    memo: Mutex<HashMap<Box<str>, u32>>,
}

impl<T: TokenCount> TokenCounter<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            memo: Mutex::new(HashMap::default()),
        }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Exact token count of `text`.
    pub fn count(&self, text: &str) -> usize {
        self.count_within(text, usize::MAX)
            .expect("no count exceeds usize::MAX")
    }

    /// Exact token count of `text` when it is at most `limit`, else `None`: counting stops at
    /// the first piece past the limit, so asking whether a long text fits costs what fits.
    pub fn count_within(&self, text: &str, limit: usize) -> Option<usize> {
        let mut memo = self.memo.lock().expect("token memo lock");
        let mut total = 0usize;
        for piece in pieces(text) {
            let n = match memo.get(piece) {
                Some(&n) => n as usize,
                None => {
                    let n = self.inner.count_tokens(piece);
                    memo.insert(piece.into(), n as u32);
                    n
                }
            };
            total += n;
            if total > limit {
                return None;
            }
        }
        Some(total)
    }

    /// Distinct pieces memoised so far.
    pub fn memo_len(&self) -> usize {
        self.memo.lock().expect("token memo lock").len()
    }
}

/// Splits `text` at positions that are pre-token boundaries for GPT-2-style regexes:
/// before a single space that sits between two non-space characters (the space opens the next
/// word), and after a newline that sits between two non-space characters.
pub(crate) fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 1;
    std::iter::from_fn(move || {
        if start >= bytes.len() {
            return None;
        }
        while i + 1 < bytes.len() {
            let (prev, cur, next) = (bytes[i - 1], bytes[i], bytes[i + 1]);
            let at = i;
            i += 1;
            let boundary = (cur == b' ' && !is_space(prev) && !is_space(next))
                || (prev == b'\n' && !is_space(cur) && at >= 2 && !is_space(bytes[at - 2]));
            if boundary && at > start {
                let piece = &text[start..at];
                start = at;
                return Some(piece);
            }
        }
        let piece = &text[start..];
        start = bytes.len();
        Some(piece)
    })
}

/// ASCII white space; multi-byte UTF-8 never contains these bytes, so cuts stay on char
/// boundaries.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_text_and_cut_at_word_starts() {
        let text = "2011-12 (purchase) | white lantern; red  heart\nnext line\n\nend ";
        let parts: Vec<_> = pieces(text).collect();
        assert_eq!(parts.concat(), text);
        assert_eq!(parts[0], "2011-12");
        assert!(parts.contains(&" lantern;"));
        // a double space and a blank line are never cut
        assert!(parts.iter().any(|p| p.contains("  heart")));
        assert!(parts.iter().any(|p| p.contains("\n\n")));
        assert!(parts.contains(&" red  heart\n"));
        assert_eq!(pieces("").count(), 0);
        assert_eq!(pieces("é à").collect::<Vec<_>>(), ["é", " à"]);
    }

    /// Counts bytes: additive over any cut, so the memo must reproduce it exactly.
    struct Bytes;
    impl TokenCount for Bytes {
        fn count_tokens(&self, text: &str) -> usize {
            text.len()
        }
    }

    #[test]
    fn memoised_counts_add_up() {
        let counter = TokenCounter::new(Bytes);
        let text = "a b c a b c\nx y";
        assert_eq!(counter.count(text), text.len());
        assert_eq!(counter.count(text), text.len());
        assert_eq!(counter.memo_len(), 7); // a, " b", " c", " a", " c\n", x, " y"
    }

    #[test]
    fn counting_within_a_limit_is_exact_or_none() {
        let counter = TokenCounter::new(Bytes);
        let text = "one two three four";
        let n = text.len();
        assert_eq!(counter.count_within(text, n), Some(n));
        assert_eq!(counter.count_within(text, n + 5), Some(n));
        assert_eq!(counter.count_within(text, n - 1), None);
        assert_eq!(counter.count_within(text, 0), None);
        assert_eq!(counter.count_within("", 0), Some(0));
        // stopping early leaves the later pieces uncounted
        let fresh = TokenCounter::new(Bytes);
        assert_eq!(fresh.count_within(text, 4), None);
        assert_eq!(fresh.memo_len(), 2); // "one", " two"
    }
}
