//! `recgpt-pipeline`: the stages of recgpt and the chain that composes them. No HTTP,
//! command-line or terminal code: that is the `recgpt` package's (`app/`).
//!
//! - [`stage::Stage`]: the stage order (compress → interests → tags → retrieve → explain).
//! - [`compress`]: history compression into a narrative that fits a token budget
//!   ([`compress::Compressor`], [`compress::Narrative`]).
//! - [`interests`], [`tags`]: the LLM stages; [`reason`] runs them for a batch of users.
//! - [`retrieval`]: the three-tower model, index and evaluation wired to the store.
//! - [`recommend`]: the whole chain for a group of users, stored in [`results`].
//! - [`job`]: the batch job over the user base (staged workers, resumable, sharded).
//! - [`channels`], [`quality`], [`regression`]: the retrieval channels' comparison, the LLM
//!   quality loop and the prompt regression.
//! - [`judge`]: a second model grading stored outputs against a rubric per stage.
//! - [`stats`], [`bench`]: narrative statistics, users by activity and the benchmarks'
//!   measurements; [`reports`]: where the evaluations' reports are written.
//! - [`config`]: the configuration.
//! - Re-exported: [`llm`], [`prompts`], [`model`] (`recgpt-llm`), [`explain`]
//!   (`recgpt-explain`), [`embed`], [`categories`] (`recgpt-retrieval`), [`hash`]
//!   (`recgpt-data`).

pub mod bench;
pub mod channels;
pub mod compress;
pub mod config;
pub mod fault;
pub mod interests;
pub mod job;
pub mod judge;
pub mod quality;
pub mod reason;
pub mod recommend;
pub mod regression;
pub mod reports;
pub mod results;
pub mod retrieval;
pub mod stage;
pub mod stats;
pub mod tags;

pub use recgpt_data::hash;
pub use recgpt_explain as explain;
pub use recgpt_llm as llm;
pub use recgpt_llm::{model, prompts};
pub use recgpt_retrieval::{categories, embed};
