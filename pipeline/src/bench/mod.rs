//! Benchmarks behind `recgpt bench`: each prints a table whose figures are ratios against a
//! reference measured in the same run.

pub mod cf;
mod compress;
pub mod llm;
pub mod retrieval;

pub use compress::{compress_bench, BenchRow, CompressBench};
