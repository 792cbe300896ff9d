//! `recgpt bench …`: the command glue of every benchmark (the measurements themselves live
//! in `recgpt_pipeline::bench` where they need no terminal or server).

pub mod append;
pub mod job;
pub mod retrieval;
pub mod serve;

use std::path::Path;

use anyhow::Result;
use recgpt_pipeline::bench::compress_bench;
use recgpt_pipeline::config::Config;

use super::{print_json, HistoryContext, Overrides};
use crate::BenchCommand;
use crate::HistoryArgs;

pub fn compress(
    home: &Path,
    config: Config,
    args: &HistoryArgs,
    scales: &[u32],
    json: bool,
) -> Result<()> {
    let ctx = HistoryContext::open(home, config, args)?;
    let scaled_home = home.join("bench-scaled");
    let b = compress_bench(
        &ctx.store,
        &scaled_home,
        &ctx.compressor(),
        &ctx.window,
        scales,
    )?;
    if json {
        return print_json(&b);
    }
    for (scale, seconds) in b.scales.iter().zip(&b.replicate_seconds) {
        println!("scaled copy {scale}x written in {seconds:.1}s");
    }
    println!("budget {} tokens, one thread", b.budget);
    println!(
        "{:<30} {:>9} {:>11} {:>8} {:>12} {:>9} {:>10}",
        "pass", "users", "events", "seconds", "events/s", "÷ read", "peak MiB"
    );
    for r in &b.rows {
        println!(
            "{:<30} {:>9} {:>11} {:>8.2} {:>12.0} {:>9.2} {:>10}",
            r.pass,
            r.users,
            r.events,
            r.seconds,
            r.events_per_s,
            r.time_vs_read,
            r.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
        );
    }
    Ok(())
}

pub fn cf(
    home: &Path,
    config: &Config,
    scales: &[usize],
    users: usize,
    memory_budget_mib: f64,
    json: bool,
) -> Result<()> {
    let store = recgpt_data::Store::open(home)?;
    let (train, _) = recgpt_retrieval::interactions::Interactions::split(&store, None)?;
    let b = recgpt_pipeline::bench::cf::cf_bench(
        &train,
        store.catalog().len(),
        scales,
        config.eval.ease_lambda,
        config.eval.knn_neighbours,
        memory_budget_mib,
        users,
    );
    if json {
        return print_json(&b);
    }
    println!(
        "{:<14} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10} {:>11} {:>9}",
        "method",
        "scale",
        "items",
        "users",
        "fit s",
        "fit ÷ EASE",
        "model MiB",
        "peak MiB",
        "users/s"
    );
    let opt = |x: Option<f64>, p: usize| x.map_or("-".to_string(), |x| format!("{x:.p$}"));
    for r in &b.rows {
        println!(
            "{:<14} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10.0} {:>11} {:>9}",
            r.method,
            r.scale,
            r.items,
            r.users,
            r.fit_seconds
                .map_or(format!("over {:.0} MiB", b.memory_budget_mib), |s| format!(
                    "{s:.2}"
                )),
            opt(r.fit_vs_ease, 2),
            r.model_mib,
            opt(r.peak_rss_mib, 0),
            opt(r.users_per_second, 0),
        );
    }
    Ok(())
}

pub fn llm(
    home: &Path,
    config: Config,
    args: &HistoryArgs,
    users: usize,
    compare: Option<&Path>,
    json: bool,
) -> Result<()> {
    use recgpt_data::{DataError, History};
    use recgpt_pipeline::bench::llm::{llm_bench, raw_passes};
    use recgpt_pipeline::config::BackendConfig;
    use recgpt_pipeline::prompts::Prompts;
    use recgpt_pipeline::reason::Reasoner;

    let ctx = HistoryContext::open(home, config, args)?;
    let stage_llm = ctx.llm()?;
    // raw passes: up to 32 sequences at once, short prompts
    let mut raw_config = ctx.config.llm.clone();
    raw_config.backend.set_batch(32);
    if let BackendConfig::LlamaCpp(c) = &mut raw_config.backend {
        c.context = 1536;
    }
    let raw = raw_config.load()?;
    let compressor = ctx.compressor();
    let (prompts, themes) = (
        Prompts::new(),
        recgpt_pipeline::interests::ThemeIndex::of(compressor.texts()),
    );
    let reasoner = Reasoner::new(
        &prompts,
        ctx.store.catalog(),
        compressor.texts(),
        &themes,
        &ctx.config,
    );
    // the users ranked 100.. by activity: real, mid-sized histories
    let mut all: Vec<History> = Vec::new();
    ctx.store.for_each_history(&ctx.window, |h: History| {
        all.push(h);
        Ok::<_, DataError>(())
    })?;
    all.sort_by(|a, b| {
        b.events
            .len()
            .cmp(&a.events.len())
            .then(a.user.cmp(&b.user))
    });
    let chosen: Vec<History> = all.into_iter().skip(100).take(users).collect();
    let narratives: Vec<_> = chosen
        .iter()
        .map(|h| compressor.compress(h, &ctx.window))
        .collect();
    let pairs: Vec<_> = chosen.iter().zip(&narratives).collect();
    let b = llm_bench(
        raw.as_ref(),
        stage_llm.as_ref(),
        ctx.config.llm.backend.batch(),
        &reasoner,
        &pairs,
        &narratives[0].text,
    )?;
    let compared = match compare {
        Some(path) => {
            let other = recgpt_pipeline::llm::LlmConfig {
                model: path.to_path_buf(),
                ..raw_config.clone()
            }
            .load()?;
            Some((
                other.model_id().to_string(),
                raw_passes(other.as_ref(), &narratives[0].text)?,
            ))
        }
        None => None,
    };
    if json {
        return print_json(&serde_json::json!({"bench": b, "compared": compared}));
    }
    if let Some((id, rows)) = &compared {
        println!("compared: {id} (tokens/s ÷ {} in the same run)", b.model_id);
        for (r, base) in rows.iter().zip(&b.raw) {
            println!(
                "{:<34} {:>5} {:>10.1} tokens/s  {:>5.2}x",
                r.pass,
                r.sequences,
                r.tokens_per_s,
                r.tokens_per_s / base.tokens_per_s
            );
        }
    }
    println!("model {}", b.model_id);
    println!(
        "{:<34} {:>5} {:>8} {:>9} {:>9} {:>10}",
        "raw backend pass", "seqs", "seconds", "prompt", "generated", "tokens/s"
    );
    for r in &b.raw {
        println!(
            "{:<34} {:>5} {:>8.2} {:>9} {:>9} {:>10.1}",
            r.pass, r.sequences, r.seconds, r.prompt_tokens, r.generated_tokens, r.tokens_per_s
        );
    }
    println!(
        "stages interests+tags: {} users in {:.1}s = {:.2} users/min; {} prompt tokens ({:.0}% reused), {} generated = {:.1} tokens/s = {:.2} × raw batched",
        b.users, b.stage_seconds, b.users_per_min, b.stage_tokens.prompt, b.reused_share * 100.0,
        b.stage_tokens.generated, b.stage_generated_per_s, b.stage_vs_raw
    );
    Ok(())
}

/// One pass of `recgpt bench embed`.
#[derive(Debug, serde::Serialize)]
struct EmbedRow {
    pass: &'static str,
    texts: usize,
    seconds: f64,
    embeddings_per_s: f64,
    /// embeddings/s ÷ the first (reference) pass's.
    ratio: f64,
}

/// `recgpt bench embed`: embeddings/s of the catalog's first `limit` titles (0: all),
/// batch-longest padding against the package tokenizer's fixed 128 tokens, in the same run.
pub fn embed(home: &Path, embedder: Option<&Path>, limit: usize, json: bool) -> Result<()> {
    use recgpt_pipeline::embed::Embedder;
    use recgpt_pipeline::model::default_embedder_dir;
    let store = recgpt_data::Store::open(home)?;
    let dir = embedder.map_or_else(default_embedder_dir, Path::to_path_buf);
    let items = store.catalog().items();
    let n = if limit == 0 {
        items.len()
    } else {
        limit.min(items.len())
    };
    let titles: Vec<&str> = items[..n].iter().map(|i| i.title.as_str()).collect();
    let mut rows: Vec<EmbedRow> = Vec::new();
    for (pass, fixed) in [
        ("padded to 128 (package tokenizer)", true),
        ("padded to batch longest", false),
    ] {
        let mut e = Embedder::load(&dir)?;
        if fixed {
            e.pad_fixed(128);
        }
        let started = std::time::Instant::now();
        let texts = e.embed(&titles)?.len();
        let seconds = started.elapsed().as_secs_f64();
        let embeddings_per_s = texts as f64 / seconds;
        let reference = rows
            .first()
            .map_or(embeddings_per_s, |r| r.embeddings_per_s);
        rows.push(EmbedRow {
            pass,
            texts,
            seconds,
            embeddings_per_s,
            ratio: embeddings_per_s / reference,
        });
    }
    if json {
        return print_json(&rows);
    }
    println!(
        "{:<36} {:>6} {:>8} {:>12} {:>7}",
        "pass", "texts", "seconds", "embeddings/s", "ratio"
    );
    for r in &rows {
        println!(
            "{:<36} {:>6} {:>8.2} {:>12.1} {:>6.2}x",
            r.pass, r.texts, r.seconds, r.embeddings_per_s, r.ratio
        );
    }
    Ok(())
}

/// `recgpt bench …`.
pub fn run(
    home: &Path,
    config: Config,
    command: BenchCommand,
    config_file: Option<&Path>,
    json: bool,
) -> Result<()> {
    match command {
        BenchCommand::Embed { embedder, limit } => embed(home, embedder.as_deref(), limit, json),
        BenchCommand::Llm {
            history,
            llm: llm_args,
            users,
            compare,
        } => llm(
            home,
            config.with_history(&history).with_llm(&llm_args),
            &history,
            users,
            compare.as_deref(),
            json,
        ),
        BenchCommand::Retrieval {
            scale,
            m,
            ef,
            users,
            tags,
            embedder,
        } => {
            let sweep = recgpt_pipeline::bench::retrieval::Sweep {
                m: if m.is_empty() {
                    vec![config.index.m]
                } else {
                    m
                },
                ef: if ef.is_empty() {
                    vec![config.index.ef]
                } else {
                    ef
                },
            };
            retrieval::run(home, &config, &scale, &sweep, users, tags, &embedder, json)
        }
        BenchCommand::Job {
            users,
            scale,
            k,
            history,
            embedder,
        } => {
            let mut config = config.with_history(&history);
            config.retrieve.k = k.unwrap_or(config.retrieve.k);
            job::run(
                home,
                config,
                config_file,
                users,
                &scale,
                &history,
                &embedder,
                json,
            )
        }
        BenchCommand::Cf {
            scale,
            users,
            memory_budget_mib,
        } => cf(home, &config, &scale, users, memory_budget_mib, json),
        BenchCommand::Serve {
            seconds,
            connections,
            writes_per_s,
            postgres,
        } => serve::run(
            home,
            config,
            seconds,
            &connections,
            writes_per_s,
            postgres.as_deref(),
            json,
        ),
        BenchCommand::Append { data, since } => append::run(home, &config, &data, since, json),
        BenchCommand::Compress { history, scale } => {
            compress(home, config.with_history(&history), &history, &scale, json)
        }
    }
}
