use std::path::Path;

use anyhow::Result;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::stats::{default_split, narrative_stats, TokenStats};

use super::{print_json, HistoryContext};
use crate::HistoryArgs;

pub fn narratives(
    home: &Path,
    config: Config,
    args: &HistoryArgs,
    split: Option<chrono::NaiveDate>,
    json: bool,
) -> Result<()> {
    let ctx = HistoryContext::open(home, config, args)?;
    let split = split.unwrap_or_else(|| default_split(&ctx.store, &ctx.window));
    let s = narrative_stats(&ctx.store, &ctx.compressor(), &ctx.window, split)?;
    if json {
        return print_json(&s);
    }
    println!(
        "{} users, {} events, as of {}, budget {} tokens",
        s.users, s.events, s.as_of, s.budget
    );
    println!(
        "{:<14} {:>9} {:>7} {:>7} {:>9} {:>9}",
        "history", "fit rate", "p50", "p95", "max", "mean"
    );
    let row = |name: &str, t: &TokenStats| {
        println!(
            "{name:<14} {:>8.1}% {:>7} {:>7} {:>9} {:>9.0}",
            t.fit_rate * 100.0,
            t.p50,
            t.p95,
            t.max,
            t.mean
        )
    };
    row("uncompressed", &s.uncompressed);
    row("compressed", &s.compressed);
    row("served", &s.narratives);
    println!(
        "dropped to fit: {} users, {} events (+{} views/clicks)",
        s.users_with_drops, s.events_dropped, s.low_signal_events_dropped
    );
    println!(
        "fit without cutting: {:.1}% of users ({} summarised repeats or coarser time to fit)",
        100.0 * s.uncut,
        s.users_summarised
    );
    let r = &s.retention;
    println!(
        "retention at split {} ({} users): narrative mentions {:.1}% of next purchases per user ({:.1}% of pairs); whole history {:.1}% ({:.1}%)",
        r.split,
        r.users,
        r.narrative * 100.0,
        r.narrative_pairs * 100.0,
        r.history * 100.0,
        r.history_pairs * 100.0
    );
    println!(
        "{:<8} {:>6} {:>15} {:>10} {:>8} {:>7}",
        "decile", "users", "events before", "narrative", "bound", "ratio"
    );
    for d in &s.retention_by_decile {
        println!(
            "{:<8} {:>6} {:>15} {:>9.1}% {:>7.1}% {:>7.2}",
            d.decile,
            d.users,
            format!("{}–{}", d.events_min, d.events_max),
            100.0 * d.narrative,
            100.0 * d.history,
            if d.history > 0.0 {
                d.narrative / d.history
            } else {
                1.0
            }
        );
    }
    Ok(())
}

pub fn explanations(home: &Path, config: Config, json: bool) -> Result<()> {
    use recgpt_pipeline::explain::reuse::CacheReuse;

    let results = config.store.open(home)?;
    // explanations the judge kept live under its id (`[judge] explanations`)
    let version = recgpt_pipeline::judge::explanation_version(&config);
    // the configuration names the model, else (a server picking its own) the backend does
    let model_id = match config.llm.model_id() {
        Some(id) => id,
        None => config.llm.load()?.model_id().to_string(),
    };
    let s = CacheReuse::measure(&results, &version, &model_id)?;
    if json {
        return print_json(&s);
    }
    println!("explanations {version}, model {model_id}");
    println!(
        "users: {} counted, {} stored under another version or model",
        s.users, s.other_users
    );
    println!(
        "pairs: {} looked up, {} distinct: reuse {:.1}% (lookups served without a generation)",
        s.pairs,
        s.distinct,
        100.0 * s.reuse
    );
    let curve: Vec<String> = s
        .curve
        .iter()
        .map(|(n, r)| format!("{n} users {:.1}%", 100.0 * r))
        .collect();
    println!("reuse by users (id order): {}", curve.join(", "));
    println!(
        "cache rows: {} ({} model, {} template fallback); {} model answers, {} rejected",
        s.cached,
        s.model,
        s.fallback,
        s.answers,
        s.rejected.values().sum::<usize>()
    );
    for (rule, n) in &s.rejected {
        println!("  rejected {rule:<18} {n:>6}");
    }
    Ok(())
}
