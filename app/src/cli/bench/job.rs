//! `recgpt bench job`: the batch job's throughput on real users, pass by pass.

use std::path::Path;

use anyhow::{Context, Result};
use recgpt_pipeline::bench::llm::{
    raw_decode, raw_generate, raw_generate_after, raw_prefill, DecodeCost, LlmRow,
};
use recgpt_pipeline::config::Config;
use recgpt_pipeline::interests::ThemeIndex;
use recgpt_pipeline::llm::{LlmBackend, TokenUse};
use recgpt_pipeline::recommend::ChainCounts;

use crate::cli::print_json;
use crate::cli::recommend::ChainInputs;
use crate::{EmbedderArgs, HistoryArgs};

/// One row of `recgpt bench job`.
#[derive(Debug, serde::Serialize)]
struct BenchRow {
    pass: String,
    users: usize,
    seconds: f64,
    users_per_min: f64,
    /// Busy share of wall time: reason, retrieve, explain (LLM stages and the CPU stage).
    busy: std::collections::BTreeMap<String, f64>,
    generated_tokens: usize,
    /// Generated tokens per second of wall time.
    generated_per_s: f64,
    /// `generated_per_s` ÷ the raw backend's batched rate.
    vs_raw: f64,
    /// `generated_per_s` ÷ the stage-after-stage reference's.
    vs_sequential: f64,
    /// Prompt tokens the backend evaluated (not reused from a shared prefix or conversation).
    evaluated_prompt_tokens: usize,
    /// The raw backend's time for this pass's token work ÷ the pass's wall time: evaluated
    /// prompt tokens at the raw prefill rate of one narrative; each stage's generated tokens at
    /// the raw batched decoding cost for their mean context (`bench::llm::DecodeCost`, from raw passes
    /// after a short prompt, one narrative and two).
    vs_raw_work: f64,
    /// The same with generated tokens at fixed raw rates whatever their context: the reason
    /// stage's at the rate after one narrative, the explain stage's at the short-prompt rate.
    vs_raw_work_fixed: f64,
    /// Mean context of the reason and the explain stage's generated tokens.
    mean_context: (f64, f64),
    /// Tokens of both LLM stages (the explain stage's are in `explain.tokens`).
    tokens: TokenUse,
    peak_rss_mib: f64,
    /// Explanation pairs, cache hits, answers generated, explanations from the template.
    explain: recgpt_pipeline::explain::ExplainCounts,
}

impl BenchRow {
    /// The stage-after-stage pass of `users` that took `seconds` with `counts`.
    fn reference(users: usize, seconds: f64, counts: &ChainCounts) -> BenchRow {
        let busy = ["reason", "retrieve", "explain"]
            .into_iter()
            .map(|stage| {
                let busy = counts.seconds.get(stage).copied().unwrap_or(0.0);
                (stage.to_string(), busy / seconds.max(1e-9))
            })
            .collect();
        BenchRow {
            pass: "stage after stage (reference)".into(),
            users,
            seconds,
            users_per_min: users as f64 * 60.0 / seconds,
            busy,
            generated_tokens: counts.tokens.generated,
            generated_per_s: counts.tokens.generated as f64 / seconds,
            vs_raw: 0.0,
            vs_sequential: 1.0,
            evaluated_prompt_tokens: counts.tokens.evaluated(),
            vs_raw_work: 0.0,
            vs_raw_work_fixed: 0.0,
            mean_context: (0.0, 0.0),
            tokens: counts.tokens,
            peak_rss_mib: recgpt_pipeline::job::peak_rss_mib().unwrap_or(0.0),
            explain: counts.explain.clone(),
        }
    }

    /// Fills the ratios against the raw backend's passes `raw`.
    fn against_raw(&mut self, raw: &RawPasses, cost: &DecodeCost) {
        // the raw backend's seconds for the pass's token work: every evaluated prompt token at
        // the prefill rate; each stage's generated tokens at the raw batched decoding cost for
        // their mean context (`fixed`: the reason stage's at the rate after one narrative, the
        // explain stage's at the short-prompt rate, whatever their context)
        let prefill_rate = raw.prefill.tokens_per_s;
        let explain = &self.explain.tokens;
        let reason = self.tokens.less(explain);
        let work =
            cost.raw_seconds(&reason, prefill_rate) + cost.raw_seconds(explain, prefill_rate);
        let fixed = self.tokens.evaluated() as f64 / prefill_rate
            + reason.generated as f64 / raw.long.tokens_per_s
            + explain.generated as f64 / raw.raw.tokens_per_s;
        let seconds = self.seconds.max(1e-9);
        self.vs_raw = self.generated_per_s / raw.raw.tokens_per_s;
        self.vs_raw_work = work / seconds;
        self.vs_raw_work_fixed = fixed / seconds;
        self.mean_context = (reason.mean_context(), explain.mean_context());
    }
}

/// The raw backend's passes of `recgpt bench job`.
#[derive(Debug, serde::Serialize)]
struct RawPasses {
    /// Generation after a short prompt (the "÷ raw" reference).
    raw: LlmRow,
    /// Prefill of the sample's longest narrative.
    prefill: LlmRow,
    /// Generation after that narrative.
    long: LlmRow,
    /// Batched decoding after a short prompt, one narrative and two.
    decode: [LlmRow; 3],
}

impl RawPasses {
    /// The raw passes on `llm` with `batch` sequences, around the sample's longest narrative.
    fn measure(llm: &dyn LlmBackend, batch: usize, longest: &str) -> Result<RawPasses> {
        let twice = format!("{longest}\n\n{longest}");
        let raw = raw_generate(llm, batch)?;
        let prefill = raw_prefill(llm, longest)?;
        let long = raw_generate_after(llm, batch, longest, prefill.tokens_per_s)?;
        let decode = [
            raw_decode(llm, batch, None)?,
            raw_decode(llm, batch, Some(longest))?,
            raw_decode(llm, batch, Some(&twice))?,
        ];
        Ok(RawPasses {
            raw,
            prefill,
            long,
            decode,
        })
    }

    fn pooled(&self, other: &RawPasses) -> RawPasses {
        RawPasses {
            raw: self.raw.pooled(&other.raw),
            prefill: self.prefill.pooled(&other.prefill),
            long: self.long.pooled(&other.long),
            decode: std::array::from_fn(|i| self.decode[i].pooled(&other.decode[i])),
        }
    }
}

/// A home beside `home` that reads its inputs and has its own results.
fn scratch_home(home: &Path, config: Option<&Path>) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("recgpt-bench-").tempdir()?;
    for name in [
        "events.redb",
        "categories.json",
        "model",
        "index",
        "recgpt.toml",
    ] {
        let from = home.join(name);
        if from.exists() {
            std::os::unix::fs::symlink(std::fs::canonicalize(&from)?, dir.path().join(name))?;
        }
    }
    if let Some(c) = config {
        std::fs::copy(c, dir.path().join("recgpt.toml"))?;
    }
    Ok(dir)
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    home: &Path,
    config: Config,
    config_file: Option<&Path>,
    users: usize,
    scales: &[usize],
    history: &HistoryArgs,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    let k = config.retrieve.k.to_string();
    let batch = config.llm.backend.batch();
    // references in this process: the raw backend, then the chain stage after stage
    let reference_home = scratch_home(home, config_file)?;
    let inputs = ChainInputs::open(reference_home.path(), config, history, embedder, true)?;
    let ctx = &inputs.ctx;
    let llm = ctx.llm()?;
    let compressor = ctx.compressor();
    let themes = ThemeIndex::of(compressor.texts());
    let recommender = inputs.recommender(&compressor, &themes);
    let mut histories = Vec::new();
    ctx.store.for_each_history(&ctx.window, |h| {
        if histories.len() < users {
            histories.push(h);
        }
        Ok::<_, recgpt_data::DataError>(())
    })?;
    let narratives: Vec<_> = histories
        .iter()
        .map(|h| compressor.compress(h, &ctx.window))
        .collect();
    let pairs: Vec<_> = histories.iter().zip(&narratives).collect();
    // the longest narrative of the sample: prefill, and decoding after a prompt of the reason
    // stage's length and after one twice as long (a tags turn's conversation)
    let Some(longest) = narratives.iter().max_by_key(|n| n.tokens) else {
        anyhow::bail!("no user with history");
    };
    // measured before the passes and again after them, pooled: the host's speed drifts
    let measure = |llm: &dyn LlmBackend| RawPasses::measure(llm, batch, &longest.text);
    let before = measure(llm.as_ref())?;
    let mut keys = recgpt_pipeline::explain::keys::InterestKeys::load(
        &inputs.results,
        ctx.config.explain.key_similarity,
    )?;
    let started = std::time::Instant::now();
    let (_, counts) = recommender.run(llm.as_ref(), &mut keys, &pairs)?;
    let seconds = started.elapsed().as_secs_f64();
    let sequential_rate = counts.tokens.generated as f64 / seconds;
    let mut rows = vec![BenchRow::reference(users, seconds, &counts)];
    drop(llm); // the children load their own

    // the job as a child process per scale, each on fresh results
    for &scale in scales {
        rows.push(child_pass(
            home,
            config_file,
            users,
            scale,
            &k,
            sequential_rate,
        )?);
    }
    let after = measure(ctx.llm()?.as_ref())?;
    let raw = before.pooled(&after);
    let cost = DecodeCost::of(&raw.decode.iter().collect::<Vec<_>>());
    for r in &mut rows {
        r.against_raw(&raw, &cost);
    }
    if json {
        return print_json(&serde_json::json!({
            "raw": raw,
            "raw_before": before,
            "raw_after": after,
            "rows": rows
        }));
    }
    print_table(&raw, &before, &after, &rows);
    Ok(())
}

/// One pass of the job as a child process on `users × scale` users, on fresh results.
fn child_pass(
    home: &Path,
    config_file: Option<&Path>,
    users: usize,
    scale: usize,
    k: &str,
    sequential_rate: f64,
) -> Result<BenchRow> {
    let n = users * scale;
    let dir = scratch_home(home, config_file)?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(dir.path())
        .args(["--json", "run", "--users", &n.to_string(), "--k", k])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run the job")?;
    anyhow::ensure!(out.status.success(), "recgpt run failed: {:?}", out.status);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let seconds = f(&s["seconds"]);
    let tokens: TokenUse =
        serde_json::from_value(s["tokens"].clone()).context("the job's token counts")?;
    let explain: recgpt_pipeline::explain::ExplainCounts =
        serde_json::from_value(s["explain"].clone()).context("the job's explain counts")?;
    let generated = tokens.generated;
    let rate = generated as f64 / seconds.max(1e-9);
    let stage = |name: &'static str| (name, f(&s["stage_seconds"][name]));
    Ok(BenchRow {
        pass: format!("recgpt run, {scale}×"),
        users: s["done"].as_u64().unwrap_or(0) as usize,
        seconds,
        users_per_min: f(&s["users_per_min"]),
        busy: [stage("reason"), stage("retrieve"), stage("explain")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v / seconds.max(1e-9)))
            .collect(),
        generated_tokens: generated,
        generated_per_s: rate,
        vs_raw: 0.0,
        vs_sequential: rate / sequential_rate,
        evaluated_prompt_tokens: tokens.evaluated(),
        vs_raw_work: 0.0,
        vs_raw_work_fixed: 0.0,
        mean_context: (0.0, 0.0),
        tokens,
        peak_rss_mib: f(&s["peak_rss_mib"]),
        explain,
    })
}

/// The benchmark's text report.
fn print_table(raw: &RawPasses, before: &RawPasses, after: &RawPasses, rows: &[BenchRow]) {
    println!(
        "raw backend, measured before and after the passes (pooled): {} sequences under a JSON \
         grammar, {:.1} generated tokens/s after a short prompt; the same after a {}-token \
         narrative, {:.1} tokens/s of decoding; prefill of that narrative, {:.1} tokens/s",
        raw.raw.sequences,
        raw.raw.tokens_per_s,
        before.prefill.prompt_tokens,
        raw.long.tokens_per_s,
        raw.prefill.tokens_per_s
    );
    println!("raw batched decoding by context (before / after / pooled):");
    for ((b, a), p) in before.decode.iter().zip(&after.decode).zip(&raw.decode) {
        println!(
            "  mean context {:>5.0}: {:>6.1} / {:>6.1} / {:>6.1} tokens/s",
            p.mean_context, b.tokens_per_s, a.tokens_per_s, p.tokens_per_s
        );
    }
    println!(
        "{:<30} {:>5} {:>8} {:>9} {:>16} {:>8} {:>8} {:>8} {:>9} {:>11} {:>9} {:>9} {:>9} {:>7}",
        "pass",
        "users",
        "seconds",
        "users/min",
        "busy rsn/ret/exp",
        "gen t/s",
        "÷ raw",
        "÷ seq",
        "prefilled",
        "ctx rsn/exp",
        "÷ raw wk",
        "fixed ctx",
        "peak MiB",
        "hits"
    );
    for r in rows {
        let b = |k: &str| 100.0 * r.busy.get(k).copied().unwrap_or(0.0);
        println!(
            "{:<30} {:>5} {:>8.1} {:>9.2} {:>5.0}/{:>3.0}/{:>3.0} % {:>8.1} {:>8.2} {:>8.2} {:>9} {:>5.0}/{:>5.0} {:>9.2} {:>9.2} {:>9.0} {:>6.0}%",
            r.pass,
            r.users,
            r.seconds,
            r.users_per_min,
            b("reason"),
            b("retrieve"),
            b("explain"),
            r.generated_per_s,
            r.vs_raw,
            r.vs_sequential,
            r.evaluated_prompt_tokens,
            r.mean_context.0,
            r.mean_context.1,
            r.vs_raw_work,
            r.vs_raw_work_fixed,
            r.peak_rss_mib,
            100.0 * r.explain.hit_rate()
        );
    }
    println!(
        "gen t/s: generated tokens per wall second (reason and explain); prefilled: prompt tokens \
         evaluated (not reused); ctx rsn/exp: mean context of the reason and explain stages' \
         generated tokens; ÷ raw wk: the raw backend's time for the pass's prefill (at the rate of \
         one narrative) and generation (each stage's tokens at the raw batched cost for their mean \
         context, interpolated between the three raw passes) ÷ the pass's wall time; fixed ctx: the \
         same with reason tokens at the rate after one narrative and explain tokens at the \
         short-prompt rate"
    );
    println!("explanations per pass: pairs, cache hits, answers generated, template fallbacks");
    for r in rows {
        let e = &r.explain;
        println!(
            "  {:<30} {:>5} {:>5} {:>6} {:>5}",
            r.pass, e.requested, e.hits, e.generations, e.fallbacks
        );
    }
}
