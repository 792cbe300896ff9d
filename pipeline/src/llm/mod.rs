//! The LLM layer. For now: the model's own tokenizer, used to count narrative tokens.

mod tokenizer;

pub use tokenizer::{backend, GgufTokenizer, TokenCount, TokenCounter};
