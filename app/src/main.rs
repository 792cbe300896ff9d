//! The `recgpt` command line: thin glue over the library crates.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// recgpt: an LLM-reasoning recommender in the style of RecGPT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Data home: the event store and stage outputs live here.
    #[arg(long, global = true, env = "RECGPT_HOME")]
    home: Option<PathBuf>,
    /// Configuration file (default: recgpt.toml in the data home, when present).
    #[arg(long, global = true, env = "RECGPT_CONFIG")]
    config: Option<PathBuf>,
    /// Results store: a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE) shared by several
    /// workers and servers (default: config `store.url`, else results.sqlite in the data home).
    #[arg(long, global = true, env = "RECGPT_STORE")]
    store: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import a data set into the event store (replaces the store, or adds to it: --append).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Print one user's compressed narrative and its token count.
    Narrative {
        /// User id.
        user: String,
        #[command(flatten)]
        history: HistoryArgs,
    },
    /// Mine one user's interests with the LLM (narrative → interests, validated).
    Interests {
        /// User id.
        user: String,
        #[command(flatten)]
        history: HistoryArgs,
        #[command(flatten)]
        llm: LlmArgs,
    },
    /// Mine one user's interests, then predict tags from them (validated, with fallback).
    Tags {
        /// User id.
        user: String,
        #[command(flatten)]
        history: HistoryArgs,
        #[command(flatten)]
        llm: LlmArgs,
    },
    /// Model files.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Prompt regression on the golden cases.
    #[command(subcommand)]
    Prompts(PromptsCommand),
    /// List users with their event counts, most active first.
    Users {
        /// How many to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        history: HistoryArgs,
    },
    /// Derive item categories from title embeddings (or take the data set's), write them to
    /// `categories.json` in the data home, and print them.
    Categories {
        /// Number of derived categories (config `categories.k`, default 40).
        #[arg(long)]
        k: Option<usize>,
        /// all-MiniLM-L6-v2 directory (default: the cache's, from `scripts/setup.sh embedder`).
        #[arg(long, env = "RECGPT_EMBEDDER")]
        embedder: Option<PathBuf>,
    },
    /// Train the user / item / tag three-tower model on purchases before --until and write it
    /// to `model/` in the data home.
    Train {
        /// Train on events strictly before this date (default: all).
        #[arg(long, value_parser = cli::date)]
        until: Option<chrono::NaiveDate>,
        /// Epochs (config `tower.epochs`).
        #[arg(long)]
        epochs: Option<usize>,
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
    /// The vector index of the trained model's item vectors.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Retrieve one user's candidate items through the index, one query per tag, with the
    /// tag that produced each.
    Retrieve {
        /// User id.
        user: String,
        /// Candidates (config `retrieve.k`).
        #[arg(long)]
        k: Option<usize>,
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
    /// The batch job: the whole chain for every user (or --users N, or listed users), in
    /// staged workers; resumable (a rerun skips users already done with the same inputs),
    /// sharded with --shard i/N. Prints a summary (--json for JSON).
    Run(RunArgs),
    /// Write stored results out.
    #[command(subcommand)]
    Export(ExportCommand),
    /// One user's whole stored chain: narrative, interests with evidence, tags, and each
    /// recommendation with the tag, interest and explanation behind it.
    Show {
        /// User id.
        user: String,
        #[command(flatten)]
        history: HistoryArgs,
    },
    /// The whole chain for users: interests and tags (LLM), retrieval with those tags, and an
    /// explanation per recommended item (cached per interest and item); stored in
    /// `results.sqlite` in the data home, where `recgpt serve` reads it.
    Recommend {
        /// User ids.
        #[arg(required = true)]
        users: Vec<String>,
        /// Recommendations per user (config `retrieve.k`).
        #[arg(long)]
        k: Option<usize>,
        #[command(flatten)]
        history: HistoryArgs,
        #[command(flatten)]
        llm: LlmArgs,
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
    /// Serve recommendations and explanations over HTTP (see README: HTTP endpoint).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Answer from the cache only: do not load the model to generate missing explanations.
        #[arg(long)]
        no_generate: bool,
        /// Required API key (x-api-key or Authorization: Bearer); none when unset.
        #[arg(long, env = "RECGPT_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        #[command(flatten)]
        llm: LlmArgs,
    },
    /// Train every method on events before --split and score it on the users present on both
    /// sides (full ranking over the catalog); writes `eval/eval-SPLIT.json` and a Recall@K chart.
    /// `recgpt eval llm` scores the LLM's tags instead.
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Eval(EvalArgs),
    /// A second model grades LLM outputs against a rubric per stage (interests: supported by
    /// their evidence, a lasting taste; tags: a product kind that serves the interest;
    /// explanations: relevant, true to the item, clear, safe): a seeded sample of the stored
    /// outputs, or a labelled set (--cases) with its agreement with the labels. Prints pass
    /// rates with 95% intervals, the rules × judge table and the cost per output.
    Judge(JudgeArgs),
    /// Statistics over all users.
    #[command(subcommand)]
    Stats(StatsCommand),
    /// Benchmarks that print a table of ratios against a reference measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

// `recgpt run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Only these users (default: every user with an event in the window).
    users: Vec<String>,
    /// Only the first N users in user-id order.
    #[arg(long = "users", value_name = "N", conflicts_with = "users")]
    first: Option<usize>,
    /// This process's part of the users: i/N (0-based), by a stable hash of the user id.
    #[arg(long)]
    shard: Option<recgpt_pipeline::job::Shard>,
    /// Recompute users whose stored result is current.
    #[arg(long)]
    force: bool,
    /// Rerun only the users recorded as failed.
    #[arg(long, conflicts_with = "force")]
    retry_failed: bool,
    /// Recommendations per user (config `retrieve.k`).
    #[arg(long)]
    k: Option<usize>,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    llm: LlmArgs,
    #[command(flatten)]
    embedder: EmbedderArgs,
}

// `recgpt judge`.
#[derive(Debug, Args)]
struct JudgeArgs {
    /// Stages to judge, comma-separated (default: interests, tags and explanations).
    #[arg(long, value_delimiter = ',')]
    stage: Vec<recgpt_pipeline::judge::Stage>,
    /// Stored outputs judged per stage (a seeded sample).
    #[arg(long, default_value_t = 30)]
    sample: usize,
    /// Seed of the sample.
    #[arg(long, default_value_t = cli::DEFAULT_SAMPLE_SEED)]
    sample_seed: u64,
    /// Labelled cases (JSON lines, e.g. prompts/cases/judge/*.jsonl), comma-separated, judged
    /// instead of stored outputs.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<PathBuf>,
    /// With --cases: the half of the labelled set (dev tunes the rubric; held-out reports).
    #[arg(long, default_value = "all")]
    half: recgpt_pipeline::judge::cases::Half,
    /// The judge's GGUF model (config `judge.model`; default Qwen2.5-Coder-1.5B-Instruct in the
    /// cache, from `scripts/setup.sh qwen 1.5b`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Floors on the judge's agreement with the labels (JSON, e.g.
    /// prompts/cases/judge/floors.json): exit non-zero when one breaks.
    #[arg(long)]
    floors: Option<PathBuf>,
    /// Write the cases (JSON lines, for labelling) to this file instead of judging them.
    #[arg(long)]
    write_cases: Option<PathBuf>,
    /// Explanations (sampled from the store, or read with --cases): answer each pair afresh
    /// this many times with the configuration's model (`[llm] model`, the default model when
    /// unset), keeping every answer with the rules' verdict, those they reject included.
    #[arg(long)]
    regenerate: Option<usize>,
    #[command(flatten)]
    llm: LlmArgs,
}

// `recgpt eval`.
#[derive(Debug, Args)]
struct EvalArgs {
    #[command(subcommand)]
    what: Option<EvalCommand>,
    /// The time split (YYYY-MM-DD).
    #[arg(long, value_parser = cli::date, required = true)]
    split: Option<chrono::NaiveDate>,
    /// Cut-offs (config `eval.ks`).
    #[arg(long, value_delimiter = ',')]
    k: Option<Vec<usize>>,
    /// Epochs of the three-tower model (config `tower.epochs`).
    #[arg(long)]
    epochs: Option<usize>,
    /// Also run the LLM chain (interests and tags, cached per user in `eval/reasoned/`, so
    /// a killed run resumes) for a seeded sample of this many users who bought on both
    /// sides of --split, and rank CF, the towers, the LLM tags, their fusion and the fusion
    /// without the LLM on that sample with paired bootstrap intervals against CF: what
    /// `recgpt eval llm --split … --users N` reports.
    #[arg(long)]
    llm_sample: Option<usize>,
    /// With --llm-sample: rank without the items each user bought before the split and
    /// score against new items only.
    #[arg(long, requires = "llm_sample")]
    exclude_bought: bool,
    #[command(flatten)]
    embedder: EmbedderArgs,
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// The LLM quality loop: interests and tags for a seeded sample of users who bought on both
    /// sides of --split, from their history before it, scored against what they bought in the
    /// --horizon days after it (tag hit rate@k through the tag tower, tag HR@N), next to the
    /// title tags of their purchases and the most popular tags; per-user model share,
    /// interests, descriptions, cut-off answers, tokens and users/min. Writes
    /// `eval/llm-SPLIT-…json`. Tune on a dev split (2011-10-01 for Online Retail), report on
    /// the test split.
    Llm {
        /// The time split (YYYY-MM-DD).
        #[arg(long, value_parser = cli::date)]
        split: chrono::NaiveDate,
        /// Users in the sample.
        #[arg(long, default_value_t = 8)]
        users: usize,
        /// Seed of the sample (a larger sample with the same seed holds the smaller one).
        #[arg(long, default_value_t = cli::DEFAULT_SAMPLE_SEED)]
        sample_seed: u64,
        /// Days after the split whose purchases are the truth (config `eval.horizon_days`).
        #[arg(long)]
        horizon: Option<u32>,
        /// Items retrieved per tag (config `eval.tag_k`).
        #[arg(long)]
        k: Option<usize>,
        /// Epochs of the three-tower model trained before the split (config `tower.epochs`);
        /// the model is kept under `eval/` and reused while the store and settings match.
        #[arg(long)]
        epochs: Option<usize>,
        /// Narrative token budget (config `compress.budget`).
        #[arg(long)]
        budget: Option<usize>,
        /// GGUF model (config `llm.model`); several, comma-separated, run the loop for each
        /// on the same sample and compare them (quality per CPU-minute).
        #[arg(long, env = "RECGPT_MODEL", value_delimiter = ',')]
        model: Vec<PathBuf>,
        /// Quality floors (JSON, e.g. prompts/cases/llm_floors.json): exit non-zero when the
        /// run breaks one.
        #[arg(long)]
        floors: Option<PathBuf>,
        /// Rank with the items each user bought before the split left out, and score against
        /// the new items only (MovieLens-style data, where nothing is bought twice).
        #[arg(long)]
        exclude_bought: bool,
        /// Also sweep the fusion weights (user tower × LLM tags) on the sample: for a dev
        /// split only.
        #[arg(long)]
        sweep: bool,
        /// Reason again for every user instead of reading interests and tags kept in
        /// `eval/reasoned/` from a run with the same model, prompts, settings and narrative.
        #[arg(long)]
        no_cache: bool,
        /// Keep the cached answers in this folder instead of `eval/reasoned/` in the data home
        /// (e.g. a run's answers kept beside its report, so it can be scored again or resumed
        /// on another machine without the model).
        #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
        answers: Option<PathBuf>,
        #[command(flatten)]
        llm: LlmArgs,
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// The UCI Online Retail file (.xlsx as published, or .csv / .csv.gz).
    OnlineRetail {
        path: PathBuf,
        /// Add the file's events to the store instead of replacing it (new items join the
        /// catalog; stored items keep their entries).
        #[arg(long)]
        append: bool,
    },
    /// Any data set in the generic schema (see README): events and catalog, CSV or JSONL.
    Events {
        events: PathBuf,
        #[arg(long)]
        catalog: PathBuf,
        /// Add the events to the store instead of replacing it (new items join the catalog;
        /// stored items keep their entries).
        #[arg(long)]
        append: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// Every stored user's recommendations with interests, tags and explanations.
    Recommendations {
        /// `jsonl` (one user per line) or `csv` (one recommendation per row).
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Output file (default: stdout).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Load the trained model's item vectors with their payload (item, title, category) into
    /// the embedded Qdrant Edge index under the data home (replacing it).
    Build {
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
}

/// Where the text embedder is.
#[derive(Debug, Clone, Args)]
struct EmbedderArgs {
    /// all-MiniLM-L6-v2 directory (default: the cache's, from `scripts/setup.sh embedder`).
    #[arg(long, env = "RECGPT_EMBEDDER")]
    embedder: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum PromptsCommand {
    /// Run the golden cases (prompts/cases) through interests and tags; exit non-zero when an
    /// output changed or a metric broke its floor.
    Test {
        /// Accept the current outputs as the expected ones.
        #[arg(long)]
        update: bool,
        /// GGUF model (default: the configured one).
        #[arg(long, env = "RECGPT_MODEL")]
        model: Option<PathBuf>,
        /// Folder of the golden cases (default: prompts/cases of the source tree).
        #[arg(long, env = "RECGPT_CASES")]
        cases: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Requantise the model to Q8_0 once (faster on x86 CPUs; quality of the source file).
    Prepare {
        /// Source GGUF (default: the configured model).
        #[arg(long, env = "RECGPT_MODEL")]
        model: Option<PathBuf>,
        /// Output (default: the source's name with Q8_0).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum StatsCommand {
    /// Fit rate, token percentiles (compressed vs uncompressed) and retention.
    Narratives {
        #[command(flatten)]
        history: HistoryArgs,
        /// Split date for retention (default: first day of the month before the last
        /// visible event's month).
        #[arg(long, value_parser = cli::date)]
        split: Option<chrono::NaiveDate>,
    },
    /// Explanation cache reuse across the stored users (every run that wrote to the store),
    /// and the cache's rows, for the current explain prompt version and model.
    Explanations {
        /// The LLM whose explanations count (its model id is part of the cache key).
        #[arg(long, env = "RECGPT_MODEL")]
        model: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Raw LLM backend throughput and the interests + tags stages on real users.
    Llm {
        #[command(flatten)]
        history: HistoryArgs,
        #[command(flatten)]
        llm: LlmArgs,
        /// Real users (the most active ones from rank 100 on) run through the stages.
        #[arg(long, default_value_t = 8)]
        users: usize,
        /// Another GGUF (e.g. from `recgpt model prepare`) whose raw passes are measured in the
        /// same run, as ratios to the configured model's.
        #[arg(long)]
        compare: Option<PathBuf>,
    },
    /// The collaborative-filtering channel (dense EASE, sparse item-kNN) on the real purchases
    /// and on catalogs made of disjoint copies of them: fit time, memory, users/s.
    Cf {
        /// Catalog sizes as multiples of the real one (30: about 114k items).
        #[arg(long, value_delimiter = ',', default_values_t = [1, 3, 30])]
        scale: Vec<usize>,
        /// Users scored per row.
        #[arg(long, default_value_t = 500)]
        users: usize,
        /// Dense EASE runs only where its matrices (12 bytes × items²) fit in this many MiB.
        #[arg(long, default_value_t = 8192.0)]
        memory_budget_mib: f64,
    },
    /// Text-embedding throughput on the catalog's titles: padded to the batch's longest
    /// input against the package tokenizer's fixed 128 tokens.
    Embed {
        /// all-MiniLM-L6-v2 directory (default: the cache's).
        #[arg(long, env = "RECGPT_EMBEDDER")]
        embedder: Option<PathBuf>,
        /// Titles embedded per pass (the first N in catalog order; 0: all).
        #[arg(long, default_value_t = 500)]
        limit: usize,
    },
    /// The trained model's Qdrant Edge index against exact search (users/s, recall@10), on
    /// the real catalog and on synthetic catalogs of the same vector distribution.
    Retrieval {
        /// Catalog sizes as multiples of the real one.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 100])]
        scale: Vec<usize>,
        /// HNSW edges per node to build with (one index each; default: config `index.m`).
        #[arg(long, value_delimiter = ',')]
        m: Vec<usize>,
        /// Candidates kept while searching, each tried on every index (default: config
        /// `index.ef`).
        #[arg(long, value_delimiter = ',')]
        ef: Vec<usize>,
        /// Users, each sending one user query and --tags tag queries.
        #[arg(long, default_value_t = 50)]
        users: usize,
        #[arg(long, default_value_t = 50)]
        tags: usize,
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
    /// The batch job on real users: the raw backend and the chain run stage after stage in
    /// this process (references), then `recgpt run` as a child process at each scale (fresh
    /// results each): users/min, where the time goes, LLM tokens/s ÷ the references, peak
    /// memory.
    Job {
        /// Users at scale 1 (the first N in user-id order).
        #[arg(long, default_value_t = 4)]
        users: usize,
        /// Multiples of --users to run the job at.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 10])]
        scale: Vec<usize>,
        /// Recommendations per user (config `retrieve.k`).
        #[arg(long)]
        k: Option<usize>,
        #[command(flatten)]
        history: HistoryArgs,
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
    /// HTTP throughput and latency with wrk on loopback: cached explanation and
    /// recommendation lookups next to a hello-world route of the same server, while a writer
    /// rewrites the other stored users (needs stored results of two users or more:
    /// `recgpt recommend USER USER`).
    Serve {
        /// Seconds per route.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Open connections, one set of rows each.
        #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
        connections: Vec<usize>,
        /// Users the writer rewrites per second (a batch job storing results meanwhile);
        /// 0: no writer.
        #[arg(long, default_value_t = 50)]
        writes_per_s: u32,
        /// Also over a PostgreSQL store: the admin URL of a server where the bench makes a
        /// scratch database (`recgpt_bench_serve`) holding a copy of the stored users.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Incremental import: an Online Retail file split at --since, the part before it
    /// imported, the rest appended (`--append`), against one import of the whole file in the
    /// same run; and the users whose narrative the append changed.
    Append {
        /// The Online Retail CSV / .csv.gz file (default: the data set's file).
        #[arg(long, env = "RECGPT_DATA")]
        data: std::path::PathBuf,
        /// The first day appended (YYYY-MM-DD).
        #[arg(long, default_value = "2011-12-02", value_parser = cli::date)]
        since: chrono::NaiveDate,
    },
    /// Compression throughput and peak memory, on the store and on a scaled copy.
    Compress {
        #[command(flatten)]
        history: HistoryArgs,
        /// Replication factors of the scaled copies (users replicated with new ids).
        #[arg(long, value_delimiter = ',', default_values_t = [10, 100])]
        scale: Vec<u32>,
    },
}

/// What every history-reading command takes.
#[derive(Debug, Clone, Args)]
struct HistoryArgs {
    /// Only events strictly before this date (YYYY-MM-DD).
    #[arg(long, value_parser = cli::date)]
    until: Option<chrono::NaiveDate>,
    /// The date treated as "now" for time buckets (default: the day after the last visible
    /// event).
    #[arg(long, value_parser = cli::date)]
    as_of: Option<chrono::NaiveDate>,
    /// Narrative token budget (config `compress.budget`, default 1024).
    #[arg(long)]
    budget: Option<usize>,
    /// GGUF model whose tokenizer counts tokens.
    #[arg(long, env = "RECGPT_MODEL")]
    model: Option<PathBuf>,
}

/// LLM settings; each overrides the configuration.
#[derive(Debug, Clone, Args)]
struct LlmArgs {
    /// Context tokens per sequence (config `llm.backend.context`).
    #[arg(long)]
    context: Option<u32>,
    /// Sequences decoded together (config `llm.backend.batch`).
    #[arg(long)]
    batch: Option<usize>,
    /// CPU threads, 0 for all cores (config `llm.backend.threads`).
    #[arg(long, env = "RECGPT_THREADS")]
    threads: Option<usize>,
    /// Sampling temperature, 0 for greedy (config `llm.sampling.temperature`).
    #[arg(long)]
    temperature: Option<f32>,
    /// Base seed (config `llm.sampling.seed`).
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    default_sigpipe();
    // Qdrant Edge warns about server feature flags an embedded shard never sets; llama.cpp
    // logs every context it creates at info level: both quiet unless named in RECGPT_LOG
    let default = "warn,qdrant_edge=error";
    let mut filter = std::env::var("RECGPT_LOG").unwrap_or_else(|_| "warn".into());
    for (target, level) in [("qdrant_edge", "error"), ("llama-cpp-2", "warn")] {
        if !filter.contains(target) {
            filter.push_str(&format!(",{target}={level}"));
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ends quietly, as other Unix tools do, when the reader of the output goes away
/// (`recgpt export recommendations | head`): Rust ignores SIGPIPE, so `println!` would panic
/// on the broken pipe instead. Sockets are unaffected: the standard library sends with
/// `MSG_NOSIGNAL`, so the server and the LLM client still get a write error, not the signal.
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: `signal` with `SIG_DFL` only sets the disposition, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the whole command line (unique names, valid defaults), which it
    /// otherwise runs only when a command is parsed.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
