//! End-to-end tests on the real Online Retail data and the real model's tokenizer.
//!
//! The data file comes from `RECGPT_DATA` (set by `make test`) or from
//! `../shared/data/online-retail/online_retail.csv.gz` beside the repository; the model from
//! `RECGPT_MODEL` or the default cache path (`make model` fetches it). Missing files fail the
//! tests with a message saying how to get them: nothing here is skipped.

mod cli;
mod common;
mod compress;
mod embed;
mod explain;
mod hosts;
mod import;
mod interests;
mod job;
mod judge;
mod llm;
#[cfg(feature = "mistralrs")]
mod mistralrs;
mod openai;
mod prompts;
mod quality;
mod retrieval;
mod serve;
mod tags;
mod ui;
