//! `recgpt-pipeline`: the stages of recgpt and what they share.
//!
//! - [`stage::Stage`]: the stage order (compress → interests → tags → retrieve → explain).
//! - [`compress`]: history compression into a narrative that fits a token budget
//!   ([`compress::Compressor`], [`compress::Narrative`]).
//! - [`llm`]: the model's tokenizer ([`llm::GgufTokenizer`]) and the memoised exact counter
//!   ([`llm::TokenCounter`]).
//! - [`stats`]: narrative statistics over all users (fit rate, token percentiles, retention).
//! - [`bench`]: the compression throughput and memory benchmark.
//! - [`model`]: where the model file is found.
//! - [`embed`], [`categories`]: re-exported from `recgpt-retrieval`.
//! - [`retrieval`]: the three-tower model, index and evaluation wired to the store.
//! - [`explain`]: explanations per (interest, item) pair and their cache.
//! - [`recommend`]: the whole chain for a group of users, stored in [`results`].
//! - [`job`]: the batch job over the user base (staged workers, resumable, sharded).
//! - [`serve`]: the HTTP endpoint.

pub mod bench;
pub mod channels;
pub mod compress;
pub mod config;
pub mod explain;
pub mod fault;
pub mod hash;
pub mod interests;
pub mod job;
pub mod llm;
pub mod model;
pub mod prompts;
pub mod quality;
pub mod reason;
pub mod recommend;
pub mod regression;
pub mod results;
pub mod retrieval;
pub mod serve;
pub mod stage;
pub mod stats;
pub mod tags;

pub use recgpt_retrieval::{categories, embed};
