//! `recgpt eval llm`: the LLM quality loop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use recgpt_data::Store;
use recgpt_pipeline::compress::Compressor;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::embed::Embedder;
use recgpt_pipeline::interests::ThemeIndex;
use recgpt_pipeline::llm::{check_gguf, GgufTokenizer, TokenCounter};
use recgpt_pipeline::model::default_embedder_dir;
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::quality::{
    LlmEval, LlmEvalReport, LlmFloors, ModelRow, SplitUsers, TagScorer, LONG_HISTORY_ITEMS,
    MANY_INTERESTS,
};
use recgpt_pipeline::reason::Reasoner;
use recgpt_pipeline::reports;
use recgpt_pipeline::retrieval::{self, Prepared};
use recgpt_retrieval::eval::Protocol;
use recgpt_retrieval::tower::TowerModel;

use super::{print_json, Overrides, DEFAULT_SAMPLE_SEED};
use crate::{EmbedderArgs, EvalArgs, EvalCommand};

/// Which users: `users` of those who bought on both sides of `split`, by `seed`; how their
/// rankings are scored, and where reasoning is cached.
#[derive(Debug, Clone)]
pub struct Sample {
    pub split: NaiveDate,
    pub users: usize,
    pub seed: u64,
    pub protocol: Protocol,
    pub sweep: bool,
    /// The folder of cached answers (none: reason for every user).
    pub cache: Option<PathBuf>,
}

/// The eval's default folder of cached answers in `home`.
fn default_cache(home: &Path) -> PathBuf {
    reports::dir(home).join("reasoned")
}

/// The loop for each of `models` in turn (the configured model when empty) on the same
/// sample; with more than one, a comparison table of the models follows their reports.
pub fn eval_llm(
    home: &Path,
    config: &Config,
    models: &[PathBuf],
    sample: &Sample,
    floors: Option<&Path>,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    // bad input fails before anything is loaded, trained or written
    let floors: Option<LlmFloors> = super::read_floors(floors)?;
    let models: Vec<PathBuf> = match models {
        [] => vec![config.llm.model.clone()],
        some => some.to_vec(),
    };
    for model in &models {
        check_gguf(model)?;
    }
    let (store, split, users) = read_sample(home, config, sample)?;

    let embedder = Embedder::load(
        &embedder
            .embedder
            .clone()
            .unwrap_or_else(default_embedder_dir),
    )?;
    let prepared = Prepared::load(home, &store, config, &embedder)?;
    let tower = split_tower(home, &store, &prepared, config, sample.split)?;
    let dir = reports::dir(home);
    std::fs::create_dir_all(&dir)?;

    let mut reports = Vec::new();
    for model in &models {
        let mut config = config.clone();
        config.llm.model = model.clone();
        let report = eval_model(
            &config, &store, &split, &users, sample, &embedder, &prepared, &tower,
        )?;
        let path = dir.join(report_name(sample, &report, model));
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
        if !json {
            print!("{}", table(&report));
            if let Some(channels) = &report.channels {
                print!("{}", recgpt_pipeline::channels::table(channels));
            }
            println!("written: {}", path.display());
        }
        reports.push(report);
    }
    let threads = config.llm.backend.threads_used();
    let rows: Vec<ModelRow> = reports.iter().map(|r| ModelRow::of(r, threads)).collect();
    if json {
        match reports.as_slice() {
            [one] => print_json(one)?,
            all => print_json(&serde_json::json!({ "models": rows, "reports": all }))?,
        }
    } else if reports.len() > 1 {
        print!("{}", models_table(&rows));
    }
    let broken: Vec<String> = floors
        .map(|f| reports.iter().flat_map(|r| f.broken(r)).collect())
        .unwrap_or_default();
    for b in &broken {
        eprintln!("FLOOR {b}");
    }
    anyhow::ensure!(
        broken.is_empty(),
        "eval llm: {} floor(s) broken",
        broken.len()
    );
    Ok(())
}

/// `eval/llm-SPLIT-hH-nN-seedS-MODEL.json`: one report per sample and model.
fn report_name(sample: &Sample, report: &LlmEvalReport, model: &Path) -> String {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{}{}-h{}-n{}-seed{}-{stem}.json",
        reports::LLM,
        sample.split,
        report.horizon_days,
        sample.users,
        sample.seed
    )
}

/// One model's run of the loop on the sample.
#[allow(clippy::too_many_arguments)]
fn eval_model(
    config: &Config,
    store: &Store,
    split: &SplitUsers,
    users: &[String],
    sample: &Sample,
    embedder: &Embedder,
    prepared: &Prepared,
    tower: &TowerModel,
) -> Result<LlmEvalReport> {
    let counter = TokenCounter::new(GgufTokenizer::load(&config.llm.model)?);
    let compressor = Compressor::new(store.catalog(), config.compress.clone(), &counter);
    let prompts = Prompts::new();
    let themes = ThemeIndex::of(compressor.texts());
    let reasoner = Reasoner::new(
        &prompts,
        store.catalog(),
        compressor.texts(),
        &themes,
        config,
    )
    .with_categories(embedder, &prepared.categories);
    // collaborative filtering on the purchases before the split, for tags.neighbourhood
    let cf = (config.tags.neighbourhood > 0)
        .then(|| retrieval::cf_channel(&split.before, store.catalog().len(), config));
    let reasoner = match &cf {
        Some(cf) => reasoner.with_neighbourhood(cf.as_ref()),
        None => reasoner,
    };
    let llm = config.llm.load()?;
    let rounds = config.interests.rounds.max(1);
    let eval = LlmEval {
        store,
        split,
        compressor: &compressor,
        reasoner: &reasoner,
        scorer: TagScorer {
            model: tower,
            embedder,
            prepared,
            k: config.eval.tag_k,
            n: config.eval.tag_hr_n,
        },
        tags: config.tags.target,
        chunk: (config.llm.backend.batch() / rounds).max(1),
        config,
        cache: sample.cache.clone(),
        protocol: sample.protocol,
        sweep: sample.sweep,
    };
    let bar = ProgressBar::new(users.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("eval llm [{bar:30}] {pos}/{len} users {elapsed} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let report = eval.run(llm.as_ref(), users, sample.seed, &mut |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    Ok(report)
}

/// Fails as `eval_llm` would on a model file that is not a GGUF, a split date outside the
/// data or a sample larger than the users on both sides, before anything else runs.
pub fn check_sample(home: &Path, config: &Config, sample: &Sample) -> Result<()> {
    check_gguf(&config.llm.model)?;
    read_sample(home, config, sample).map(|_| ())
}

/// The store, the users on both sides of the split and the sample of them.
fn read_sample(
    home: &Path,
    config: &Config,
    sample: &Sample,
) -> Result<(Store, SplitUsers, Vec<String>)> {
    let store = Store::open(home)?;
    let split = SplitUsers::read(&store, sample.split, config.eval.horizon_days)?;
    let users = split.sample(sample.users, sample.seed)?;
    Ok((store, split, users))
}

/// The three-tower model trained on purchases before `split`: kept in `eval/tower-SPLIT/` and
/// reused while the store, the settings and the split are the same.
fn split_tower(
    home: &Path,
    store: &Store,
    prepared: &Prepared,
    config: &Config,
    split: NaiveDate,
) -> Result<TowerModel> {
    let dir = reports::dir(home).join(format!("tower-{split}"));
    if let Ok(model) = TowerModel::load(&dir, &prepared.features) {
        let m = &model.meta;
        if m.until.as_deref() == Some(split.to_string().as_str())
            && m.store_fingerprint == store.manifest().fingerprint
            && m.config == config.tower
        {
            return Ok(model);
        }
    }
    eprintln!("eval llm: training the three-tower model on purchases before {split}");
    let (model, _, _) = retrieval::train(store, prepared, config, Some(split), &mut |_| {})?;
    model
        .save(&dir)
        .with_context(|| format!("saving the model to {}", dir.display()))?;
    Ok(model)
}

/// The models side by side (Markdown).
pub fn models_table(rows: &[ModelRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| model | interests (median) | users with >= {LONG_HISTORY_ITEMS} items and >= {MANY_INTERESTS} interests | model-written descriptions | model share of tags (min / median, users < 0.6) | hit@k `llm` | new@k | HR@N | LLM channel R@50 / Rnew@50 | generated tokens per user | users/min | CPU-min per user | hit@k per CPU-min |"
    );
    let _ = writeln!(out, "|{}", " --- |".repeat(13));
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} of {} | {:.0}% | {:.2} / {:.2}, {} | {:.3} | {:.3} | {:.3} | {} / {} | {:.0} | {:.2} | {} | {} |",
            r.model,
            r.interests_median,
            r.long_history_users_with_many_interests,
            r.long_history_users,
            100.0 * r.model_description_share,
            r.model_share.min,
            r.model_share.median,
            r.users_below_60_percent,
            r.hit_rate,
            r.hit_rate_new,
            r.hr_at_n,
            opt(r.channel_recall_50, 3),
            opt(r.channel_recall_new_50, 3),
            r.generated_tokens_per_user,
            r.users_per_minute,
            opt(r.cpu_minutes_per_user, 2),
            opt(r.hit_rate_per_cpu_minute, 3),
        );
    }
    out
}

/// The report as text tables.
pub fn table(r: &LlmEvalReport) -> String {
    let mut out = String::new();
    let s = &r.stages;
    let _ = writeln!(
        out,
        "split {} (truth: purchases in the {} days after), {} of {} users (sample seed {}), {}",
        r.split, r.horizon_days, r.users, r.eligible_users, r.sample_seed, r.model_id
    );
    let _ = writeln!(out, "prompts: {}", r.prompt_versions.join(", "));
    let _ = writeln!(
        out,
        "{:<22} {:>6} {:>9} {:>7} {:>7} {:>7} {:>8} {:>9} {:>7}",
        "method",
        "tags",
        format!("hit@{}", r.k),
        "min",
        "p10",
        "median",
        "users@0",
        format!("new@{}", r.k),
        format!("HR@{}", r.n),
    );
    for m in &r.methods {
        let _ = writeln!(
            out,
            "{:<22} {:>6.1} {:>9.3} {:>7.3} {:>7.3} {:>7.3} {:>8} {:>9.3} {:>7.3}",
            m.method,
            m.tags_per_user,
            m.hit_rate.mean,
            m.hit_rate.min,
            m.hit_rate.p10,
            m.hit_rate.median,
            m.users_without_hit,
            m.hit_rate_new,
            m.hr_at_n,
        );
    }
    let _ = writeln!(
        out,
        "{:<22} {:>6} {:>9} {:>7} {:>7} {:>7} {:>8} {:>9} {:>7.3}",
        "popular categories", r.n, "", "", "", "", "", "", r.popular_categories_hr_at_n
    );
    let _ = writeln!(
        out,
        "model share of tags: min {:.2} p10 {:.2} median {:.2} mean {:.2} ({} users below 0.6) | tags with catalog words only {:.1}%",
        s.model_share.min, s.model_share.p10, s.model_share.median, s.model_share.mean,
        s.users_below_60_percent, 100.0 * s.tags_with_catalog_words
    );
    let _ = writeln!(
        out,
        "interests per user: min {} median {} | model descriptions: min {} median {} | answers {} ({} unparsable, {} cut off)",
        s.interests.min, s.interests.median, s.model_descriptions.min, s.model_descriptions.median,
        s.answers, s.unparsable, s.cut_off
    );
    let rejected: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(out, "tags rejected: {}", rejected.join(", "));
    if s.timed_users == 0 {
        let _ = writeln!(
            out,
            "interests and tags of every user from eval/reasoned/ entries without their cost: time and tokens not measured (--no-cache)"
        );
    } else {
        let _ = writeln!(
            out,
            "{:.2} users/min; per user {:.0} prompt tokens ({:.0} evaluated), {:.0} generated (over the {} users with a known cost); this run {:.0} s, {} of {} users from the cache",
            s.users_per_minute,
            s.prompt_tokens_per_user,
            s.evaluated_prompt_tokens_per_user,
            s.generated_tokens_per_user,
            s.timed_users,
            s.seconds,
            s.cached_users,
            r.users
        );
    }
    for u in &r.per_user {
        let llm = u.scores.get("llm").map_or(0.0, |s| s.hit_rate);
        let _ = writeln!(
            out,
            "  user {:<6} {:>4} items before, {:>3} after | {:>2} interests ({} model descriptions) | {:>2} model tags of {} | hit@{} {:.3}",
            u.user, u.items_before, u.items_after, u.interests.len(), u.model_descriptions,
            u.model_tags, u.tags.len(), r.k, llm
        );
    }
    out
}

/// `recgpt eval llm …`.
fn eval_llm_command(home: &Path, config: Config, command: EvalCommand, json: bool) -> Result<()> {
    let EvalCommand::Llm {
        split,
        users,
        sample_seed,
        horizon,
        k,
        epochs,
        budget,
        model,
        floors,
        exclude_bought,
        sweep,
        no_cache,
        answers,
        llm,
        embedder,
    } = command;
    let mut config = config.with_llm(&llm);
    config.tower.epochs = epochs.unwrap_or(config.tower.epochs);
    config.eval.horizon_days = horizon.unwrap_or(config.eval.horizon_days);
    config.eval.tag_k = k.unwrap_or(config.eval.tag_k);
    config.compress.budget = budget.unwrap_or(config.compress.budget);
    let sample = Sample {
        split,
        users,
        seed: sample_seed,
        protocol: match exclude_bought {
            true => Protocol::ExcludeBought,
            false => Protocol::Repeats,
        },
        sweep,
        cache: match (no_cache, answers) {
            (true, _) => None,
            (false, Some(dir)) => Some(dir),
            (false, None) => Some(default_cache(home)),
        },
    };
    let floors = floors.as_deref();
    eval_llm(home, &config, &model, &sample, floors, &embedder, json)
}

/// `recgpt eval`: the LLM loop with a subcommand, else the retrieval evaluation.
pub fn eval(home: &Path, config: Config, args: EvalArgs, json: bool) -> Result<()> {
    if let Some(command) = args.what {
        return eval_llm_command(home, config, command, json);
    }
    let split = args
        .split
        .expect("clap requires --split without a subcommand");
    eval_command(
        home,
        config,
        split,
        (args.k, args.epochs),
        args.llm_sample.map(|users| (users, args.exclude_bought)),
        &args.embedder,
        json,
    )
}

/// `recgpt eval --split DATE [--k …] [--epochs N] [--llm-sample N [--exclude-bought]]`.
fn eval_command(
    home: &Path,
    config: Config,
    split: NaiveDate,
    (k, epochs): (Option<Vec<usize>>, Option<usize>),
    llm_sample: Option<(usize, bool)>,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    let mut config = config;
    config.tower.epochs = epochs.unwrap_or(config.tower.epochs);
    if let Some(k) = k {
        config.eval.ks = k;
    }
    let sample = llm_sample.map(|(users, exclude_bought)| Sample {
        split,
        users,
        seed: DEFAULT_SAMPLE_SEED,
        protocol: match exclude_bought {
            true => Protocol::ExcludeBought,
            false => Protocol::Repeats,
        },
        sweep: false,
        cache: Some(default_cache(home)),
    });
    // a bad sample fails before the full evaluation runs
    if let Some(sample) = &sample {
        check_sample(home, &config, sample)?;
    }
    super::retrieval::eval(home, &config, split, embedder, json)?;
    match &sample {
        Some(sample) => eval_llm(home, &config, &[], sample, None, embedder, json),
        None => Ok(()),
    }
}
