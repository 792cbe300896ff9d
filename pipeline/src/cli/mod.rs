//! Command implementations: parse, call the libraries, print.

mod bench;
mod import;
mod interests;
mod narrative;
mod stats;

use std::path::PathBuf;

use anyhow::Result;
use recgpt_data::{Store, TimeWindow};
use recgpt_pipeline::compress::{CompressConfig, Compressor};
use recgpt_pipeline::llm::{
    GgufTokenizer, LlamaCppBackend, LlamaCppConfig, Sampling, TokenCounter,
};
use recgpt_pipeline::model;

use crate::{BenchCommand, Cli, Command, HistoryArgs, ImportCommand, LlmArgs, StatsCommand};

pub fn date(s: &str) -> Result<chrono::NaiveDate, String> {
    recgpt_data::parse_date(s).map_err(|e| e.to_string())
}

pub fn run(cli: Cli) -> Result<()> {
    let home = cli.home.clone().unwrap_or_else(model::default_data_home);
    match cli.command {
        Command::Import(ImportCommand::OnlineRetail { path }) => {
            import::online_retail(&home, &path, cli.json)
        }
        Command::Import(ImportCommand::Events { events, catalog }) => {
            import::generic(&home, &events, &catalog, cli.json)
        }
        Command::Narrative { user, history } => narrative::one(&home, &user, &history, cli.json),
        Command::Interests { user, history, llm } => {
            interests::interests(&home, &user, &history, &llm, cli.json)
        }
        Command::Tags { user, history, llm } => {
            interests::tags(&home, &user, &history, &llm, cli.json)
        }
        Command::Users { limit, history } => narrative::users(&home, limit, &history, cli.json),
        Command::Stats(StatsCommand::Narratives { history, split }) => {
            stats::narratives(&home, &history, split, cli.json)
        }
        Command::Bench(BenchCommand::Compress { history, scale }) => {
            bench::compress(&home, &history, &scale, cli.json)
        }
    }
}

/// The store, the time window and a token counter for a history-reading command.
struct HistoryContext {
    store: Store,
    window: TimeWindow,
    counter: TokenCounter,
    config: CompressConfig,
}

impl HistoryContext {
    fn open(home: &std::path::Path, args: &HistoryArgs) -> Result<Self> {
        let store = Store::open(home)?;
        let window = store.window(args.until, args.as_of);
        let counter = TokenCounter::new(GgufTokenizer::load(&Self::model_path(args))?);
        let config = CompressConfig {
            budget: args.budget,
            ..CompressConfig::default()
        };
        Ok(Self {
            store,
            window,
            counter,
            config,
        })
    }

    fn compressor(&self) -> Compressor<'_, GgufTokenizer> {
        Compressor::new(self.store.catalog(), self.config.clone(), &self.counter)
    }

    fn model_path(args: &HistoryArgs) -> PathBuf {
        args.model.clone().unwrap_or_else(model::default_model_path)
    }
}

/// The llama.cpp backend and sampling settings from the command line.
fn llm(history: &HistoryArgs, args: &LlmArgs) -> Result<(LlamaCppBackend, Sampling)> {
    let backend = LlamaCppBackend::load(LlamaCppConfig {
        model: HistoryContext::model_path(history),
        context: args.context,
        batch: args.batch,
        threads: args.threads,
        ..LlamaCppConfig::default()
    })?;
    let sampling = Sampling {
        temperature: args.temperature,
        seed: args.seed,
    };
    Ok((backend, sampling))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
