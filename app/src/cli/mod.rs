//! Command implementations: parse, call the libraries, print.

mod bench;
mod categories;
mod import;
mod interests;
mod job;
mod judge;
mod narrative;
mod progress;
mod quality;
mod recommend;
mod retrieval;
mod stats;

use anyhow::Result;
use recgpt_data::{Store, TimeWindow};
use recgpt_pipeline::compress::Compressor;
use recgpt_pipeline::config::{BackendConfig, Config};
use recgpt_pipeline::llm::{quantize, GgufTokenizer, LlmBackend, TokenCounter};
use recgpt_pipeline::model;

use crate::{
    Cli, Command, ExportCommand, HistoryArgs, ImportCommand, IndexCommand, LlmArgs, ModelCommand,
    PromptsCommand, StatsCommand,
};

/// The default seed of a user sample (`--sample-seed`).
pub const DEFAULT_SAMPLE_SEED: u64 = 7;

pub fn date(s: &str) -> Result<chrono::NaiveDate, String> {
    recgpt_data::parse_date(s).map_err(|e| e.to_string())
}

pub fn run(cli: Cli) -> Result<()> {
    let home = cli.home.clone().unwrap_or_else(model::default_data_home);
    let mut config = Config::load(cli.config.as_deref(), &home)?;
    if let Some(url) = cli.store.clone() {
        config.store.url = Some(url);
    }
    match cli.command {
        Command::Import(ImportCommand::OnlineRetail { path, append }) => {
            import::online_retail(&home, &path, append, cli.json)
        }
        Command::Import(ImportCommand::Events {
            events,
            catalog,
            append,
        }) => import::generic(&home, &events, &catalog, append, cli.json),
        Command::Narrative { user, history } => narrative::one(
            &home,
            config.with_history(&history),
            &user,
            &history,
            cli.json,
        ),
        Command::Interests { user, history, llm } => interests::interests(
            &home,
            config.with_history(&history).with_llm(&llm),
            &user,
            &history,
            cli.json,
        ),
        Command::Tags { user, history, llm } => interests::tags(
            &home,
            config.with_history(&history).with_llm(&llm),
            &user,
            &history,
            cli.json,
        ),
        Command::Model(ModelCommand::Prepare { model, out }) => prepare_model(&config, model, out),
        Command::Prompts(PromptsCommand::Test {
            update,
            model,
            cases,
        }) => {
            let cases = cases.unwrap_or_else(recgpt_pipeline::regression::cases_dir);
            prompts_test(&home, &config.with_model(model), &cases, update, cli.json)
        }
        Command::Categories { k, embedder } => {
            let mut config = config;
            config.categories.k = k.unwrap_or(config.categories.k);
            categories::build(&home, &config, embedder.as_deref(), cli.json)
        }
        Command::Train {
            until,
            epochs,
            embedder,
        } => {
            let mut config = config;
            config.tower.epochs = epochs.unwrap_or(config.tower.epochs);
            retrieval::train(&home, &config, until, &embedder, cli.json)
        }
        Command::Index(IndexCommand::Build { embedder }) => {
            retrieval::index_build(&home, &config, &embedder, cli.json)
        }
        Command::Retrieve { user, k, embedder } => {
            let mut config = config;
            config.retrieve.k = k.unwrap_or(config.retrieve.k);
            retrieval::retrieve(&home, &config, &user, &embedder, cli.json)
        }
        Command::Eval(args) => quality::eval(&home, config, args, cli.json),
        Command::Run(args) => job::run_command(&home, config, args, cli.json),
        Command::Export(ExportCommand::Recommendations { format, out }) => {
            job::export(&home, &config, format, out.as_deref())
        }
        Command::Show { user, history } => job::show(
            &home,
            config.with_history(&history),
            &user,
            &history,
            cli.json,
        ),
        Command::Recommend {
            users,
            k,
            history,
            llm,
            embedder,
        } => {
            let mut config = config.with_history(&history).with_llm(&llm);
            config.retrieve.k = k.unwrap_or(config.retrieve.k);
            recommend::recommend(&home, config, &users, &history, &embedder, cli.json)
        }
        Command::Serve {
            addr,
            no_generate,
            api_key,
            llm,
        } => {
            let mut config = config.with_llm(&llm);
            config.serve.generate &= !no_generate;
            recommend::serve(&home, config, addr, api_key)
        }
        Command::Judge(args) => judge::judge(&home, &config.with_llm(&args.llm), &args, cli.json),
        Command::Users { limit, history } => narrative::users(&home, limit, &history, cli.json),
        Command::Stats(StatsCommand::Narratives { history, split }) => stats::narratives(
            &home,
            config.with_history(&history),
            &history,
            split,
            cli.json,
        ),
        Command::Stats(StatsCommand::Explanations { model }) => {
            stats::explanations(&home, config.with_model(model), cli.json)
        }
        Command::Bench(command) => {
            bench::run(&home, config, command, cli.config.as_deref(), cli.json)
        }
    }
}

/// `recgpt model prepare`: the model requantised to Q8_0.
fn prepare_model(
    config: &Config,
    model: Option<std::path::PathBuf>,
    out: Option<std::path::PathBuf>,
) -> Result<()> {
    let input = model.unwrap_or_else(|| config.llm.model.clone());
    let output = out.unwrap_or_else(|| quantize::q8_0_path(&input));
    let started = std::time::Instant::now();
    let threads = config.llama_cpp().map_or(0, |c| c.threads);
    quantize::requantize_q8_0(&input, &output, threads)?;
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) / (1 << 20);
    println!(
        "{} ({} MiB) -> {} ({} MiB) in {:.1}s; use it with --model or [llm.backend] model",
        input.display(),
        size(&input),
        output.display(),
        size(&output),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Command-line overrides of the configuration.
trait Overrides: Sized {
    fn with_history(self, args: &HistoryArgs) -> Self;
    fn with_llm(self, args: &LlmArgs) -> Self;
    /// `--model FILE`, when given.
    fn with_model(self, model: Option<std::path::PathBuf>) -> Self;
}

impl Overrides for Config {
    fn with_history(mut self, args: &HistoryArgs) -> Self {
        if let Some(budget) = args.budget {
            self.compress.budget = budget;
        }
        if let Some(model) = &args.model {
            self.llm.model = model.clone();
        }
        self
    }

    fn with_llm(mut self, args: &LlmArgs) -> Self {
        if let Some(batch) = args.batch {
            self.llm.backend.set_batch(batch);
        }
        if let BackendConfig::LlamaCpp(backend) = &mut self.llm.backend {
            backend.context = args.context.unwrap_or(backend.context);
            backend.threads = args.threads.unwrap_or(backend.threads);
        }
        let sampling = &mut self.llm.sampling;
        sampling.temperature = args.temperature.unwrap_or(sampling.temperature);
        sampling.seed = args.seed.unwrap_or(sampling.seed);
        self
    }

    fn with_model(mut self, model: Option<std::path::PathBuf>) -> Self {
        if let Some(model) = model {
            self.llm.model = model;
        }
        self
    }
}

/// The store, the time window and a token counter for a history-reading command.
struct HistoryContext {
    store: Store,
    window: TimeWindow,
    counter: TokenCounter,
    config: Config,
}

impl HistoryContext {
    fn open(home: &std::path::Path, config: Config, args: &HistoryArgs) -> Result<Self> {
        let store = Store::open(home)?;
        let window = store.window(args.until, args.as_of);
        let counter = TokenCounter::new(GgufTokenizer::load(&config.llm.model)?);
        Ok(Self {
            store,
            window,
            counter,
            config,
        })
    }

    fn compressor(&self) -> Compressor<'_, GgufTokenizer> {
        Compressor::new(
            self.store.catalog(),
            self.config.compress.clone(),
            &self.counter,
        )
    }

    /// The configured LLM backend.
    fn llm(&self) -> Result<Box<dyn LlmBackend>> {
        Ok(self.config.llm.load()?)
    }
}

/// `recgpt prompts test`.
fn prompts_test(
    home: &std::path::Path,
    config: &Config,
    cases: &std::path::Path,
    update: bool,
    json: bool,
) -> Result<()> {
    use recgpt_pipeline::regression;
    let store = Store::open(home)?;
    let counter = TokenCounter::new(GgufTokenizer::load(&config.llm.model)?);
    let llm = config.llm.load()?;
    let report = regression::run(&store, &counter, llm.as_ref(), config, cases, update)?;
    if json {
        print_json(&report)?;
    } else {
        println!("{}", serde_json::to_string_pretty(&report.metrics)?);
        for f in &report.floor_failures {
            println!("FLOOR {f}");
        }
        for user in &report.changed {
            println!("{} case {user}", if update { "UPDATED" } else { "CHANGED" });
        }
        println!(
            "{}",
            if report.passed() {
                "prompt regression: passed"
            } else {
                "prompt regression: FAILED"
            }
        );
    }
    anyhow::ensure!(report.passed(), "prompt regression failed");
    Ok(())
}

/// A floors file (JSON), when given; an unreadable or malformed one is an error naming it.
fn read_floors<T: serde::de::DeserializeOwned>(
    path: Option<&std::path::Path>,
) -> Result<Option<T>> {
    use anyhow::Context;
    let Some(path) = path else {
        return Ok(None);
    };
    let context = || format!("floors file {}", path.display());
    let bytes = std::fs::read(path).with_context(context)?;
    Ok(Some(serde_json::from_slice(&bytes).with_context(context)?))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
