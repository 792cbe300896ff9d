//! `recgpt run` (the batch job), `recgpt export recommendations` and `recgpt show`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use recgpt_pipeline::config::Config;
use recgpt_pipeline::interests::ThemeIndex;
use recgpt_pipeline::job::{self, JobOptions, JobSummary};
use recgpt_pipeline::results::UserResult;

use super::recommend::ChainInputs;
use super::{print_json, HistoryContext, Overrides};
use crate::{EmbedderArgs, ExportFormat, HistoryArgs, RunArgs};

/// `recgpt run`.
pub fn run_command(home: &Path, config: Config, args: RunArgs, json: bool) -> Result<()> {
    let mut config = config.with_history(&args.history).with_llm(&args.llm);
    config.retrieve.k = args.k.unwrap_or(config.retrieve.k);
    let options = options(
        args.users,
        args.first,
        args.shard,
        args.force,
        args.retry_failed,
    );
    run(home, config, &options, &args.history, &args.embedder, json)
}

/// The job's options from `recgpt run`'s arguments: the listed users, else the first N,
/// else everyone.
fn options(
    users: Vec<String>,
    first: Option<usize>,
    shard: Option<job::Shard>,
    force: bool,
    retry_failed: bool,
) -> JobOptions {
    let selection = match (first, users.is_empty()) {
        (Some(n), _) => job::Selection::First(n),
        (None, true) => job::Selection::All,
        (None, false) => job::Selection::Users(users),
    };
    JobOptions {
        selection,
        shard,
        force,
        retry_failed,
    }
}

fn run(
    home: &Path,
    config: Config,
    options: &JobOptions,
    history: &HistoryArgs,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    // SIGINT / SIGTERM (from the start, loading included): take no new user, finish the
    // group the model is on and the groups already reasoned, print the summary
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let inputs = ChainInputs::open(home, config, history, embedder, true)?;
    let ctx = &inputs.ctx;
    let llm = ctx.llm()?;
    let compressor = ctx.compressor();
    let themes = ThemeIndex::of(compressor.texts());
    let recommender = inputs.recommender(&compressor, &themes);
    let summary = job::run(
        &recommender,
        llm.as_ref(),
        &ctx.store,
        &ctx.window,
        &compressor,
        &ctx.config.job,
        options,
        super::progress::job_progress(ctx.config.job.log_every_s).as_ref(),
        &stop,
    )?;
    if json {
        print_json(&summary)?;
    } else {
        print_summary(&summary, inputs.results.location());
    }
    // failed users do not fail the job: they are recorded, counted and retried on request
    if summary.failed > 0 {
        eprintln!(
            "{} user(s) failed; rerun them with `recgpt run --retry-failed`",
            summary.failed
        );
    }
    Ok(())
}

fn print_summary(s: &JobSummary, store: &str) {
    let shard = s.shard.map_or_else(String::new, |sh| {
        format!(" (shard {}/{})", sh.index, sh.count)
    });
    println!("users{shard}: {} selected", s.selected);
    println!(
        "  {:<14} {:>7}\n  {:<14} {:>7}\n  {:<14} {:>7}\n  {:<14} {:>7}\n  {:<14} {:>7}",
        "done",
        s.done,
        "skipped",
        s.skipped,
        "failed",
        s.failed,
        "failed before",
        s.failed_before,
        "no history",
        s.no_history
    );
    println!(
        "time: {:.1} s wall, {:.2} users/min; busy seconds per stage:",
        s.seconds, s.users_per_min
    );
    for stage in ["prepare", "reason", "retrieve", "explain"] {
        let t = s.stage_seconds.get(stage).copied().unwrap_or(0.0);
        println!(
            "  {:<14} {:>8.1} s {:>5.0}%",
            stage,
            t,
            100.0 * t / s.seconds.max(1e-9)
        );
    }
    println!(
        "LLM: {:.1} s busy; tokens {} prompt ({} reused), {} generated ({:.1}/s of LLM time)",
        s.llm_seconds, s.tokens.prompt, s.tokens.reused, s.tokens.generated, s.generated_per_s
    );
    let e = &s.explain;
    println!(
        "explanations: {} pairs, {} cache hits ({:.0}%), {} generated in {} answers, {} fallbacks",
        e.requested,
        e.hits,
        100.0 * e.hit_rate(),
        e.generated,
        e.generations,
        e.fallbacks
    );
    if e.judged > 0 {
        println!(
            "judge: {} answers graded, {} failed; per graded answer {:.2} s, {:.0} prompt + {:.0} generated tokens",
            e.judged,
            e.judge_failed,
            e.judge_ms as f64 / 1000.0 / e.judged as f64,
            e.judge_tokens.prompt as f64 / e.judged as f64,
            e.judge_tokens.generated as f64 / e.judged as f64
        );
    }
    if s.reasoning_reused > 0 {
        println!(
            "reasoning: {} user(s) kept their stored interests and tags (only later inputs changed)",
            s.reasoning_reused
        );
    }
    if s.interrupted > 0 {
        println!(
            "stopped: {} queued user(s) left for the next run",
            s.interrupted
        );
    }
    for f in &s.failures {
        println!("FAILED {} at {}: {}", f.user, f.stage, f.reason);
    }
    println!(
        "peak memory {:.0} MiB; results in {}",
        s.peak_rss_mib, store
    );
}

pub fn export(
    home: &Path,
    config: &Config,
    format: ExportFormat,
    out: Option<&Path>,
) -> Result<()> {
    let results = config.store.open(home)?;
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut users = 0usize;
    match format {
        ExportFormat::Jsonl => results.for_each_user(|r: UserResult| -> Result<()> {
            serde_json::to_writer(&mut sink, &r)?;
            sink.write_all(b"\n")?;
            users += 1;
            Ok(())
        })?,
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(&mut sink);
            csv.write_record([
                "user",
                "rank",
                "item",
                "title",
                "score",
                "tag",
                "channel",
                "interest",
                "explanation",
                "explanation_source",
            ])?;
            results.for_each_user(|r: UserResult| -> Result<()> {
                for (rank, x) in r.recommendations.iter().enumerate() {
                    csv.write_record([
                        r.user.as_str(),
                        &(rank + 1).to_string(),
                        &x.item,
                        &x.title,
                        &format!("{:.4}", x.score),
                        x.tag.as_deref().unwrap_or(""),
                        &x.channel,
                        x.interest.as_deref().unwrap_or(""),
                        x.explanation.as_deref().unwrap_or(""),
                        x.explanation_source.as_deref().unwrap_or(""),
                    ])?;
                }
                users += 1;
                Ok(())
            })?;
            csv.flush()?;
        }
    }
    sink.flush()?;
    drop(sink);
    if let Some(p) = out {
        eprintln!("{users} users written to {}", p.display());
    }
    Ok(())
}

pub fn show(
    home: &Path,
    config: Config,
    user: &str,
    history: &HistoryArgs,
    json: bool,
) -> Result<()> {
    let results = config.store.open(home)?;
    let Some(r) = results.user(user)? else {
        match results.failure(user)? {
            Some(f) => anyhow::bail!(
                "user {user} failed at {}: {} (rerun with `recgpt run --retry-failed`)",
                f.stage,
                f.reason
            ),
            None => anyhow::bail!("no stored result for user {user}: run `recgpt run {user}`"),
        }
    };
    // the narrative as of the stored date, as the job wrote it
    let mut history = history.clone();
    if history.as_of.is_none() {
        history.as_of = recgpt_data::parse_date(&r.as_of).ok();
    }
    let ctx = HistoryContext::open(home, config, &history)?;
    let events = ctx.store.history(user, &ctx.window)?;
    let narrative = ctx.compressor().compress(&events, &ctx.window);
    if json {
        return print_json(&serde_json::json!({
            "narrative": {"text": narrative.text, "tokens": narrative.tokens},
            "result": r,
        }));
    }
    println!(
        "user {} as of {} (fingerprint {})",
        r.user, r.as_of, r.fingerprint
    );
    println!(
        "\n== narrative ({} tokens, {} events) ==",
        narrative.tokens,
        events.events.len()
    );
    let lines: Vec<&str> = narrative.text.lines().collect();
    for line in lines.iter().take(12) {
        println!("  {line}");
    }
    if lines.len() > 12 {
        println!("  … {} more lines", lines.len() - 12);
    }
    let c = &r.interests.counts;
    println!(
        "\n== interests ({} kept of {} proposed; {} ungrounded, {} generic, {} unrelated, {} merged; {}/{} answers unparsable, {} cut off and salvaged) ==",
        c.kept, c.proposed, c.ungrounded, c.generic, c.unrelated, c.merged, c.unparsable, c.answers,
        c.salvaged
    );
    for (i, key) in r.interests.interests.iter().zip(&r.interest_keys) {
        println!("  {} [key: {key}] — {}", i.name, i.description);
        let evidence: Vec<&str> = i.evidence.iter().map(|e| e.text.as_str()).collect();
        if !evidence.is_empty() {
            println!("    evidence: {}", evidence.join("; "));
        }
    }
    let t = &r.tags.counts;
    println!(
        "\n== tags ({} from the model, {} from the fallback pool) ==",
        t.from_model, t.from_fallback
    );
    for tag in &r.tags.tags {
        println!("  {:<34} ← {} ({})", tag.tag, tag.interest, tag.source);
    }
    println!("\n== recommendations ==");
    for (rank, x) in r.recommendations.iter().enumerate() {
        println!(
            "  {:>2}. {:<8} {:<36} score {:.4}  channel: {}  tag: {}  interest: {}",
            rank + 1,
            x.item,
            x.title,
            x.score,
            x.channel,
            x.tag.as_deref().unwrap_or("-"),
            x.interest.as_deref().unwrap_or("-")
        );
        if let Some(e) = &x.explanation {
            let label = match x.explanation_source.as_deref() {
                Some("fallback") => " [fallback]",
                _ => "",
            };
            println!("      “{e}”{label}");
        }
    }
    Ok(())
}
