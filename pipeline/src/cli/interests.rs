use std::path::Path;

use anyhow::Result;
use recgpt_pipeline::interests::{InterestMiner, InterestsConfig, ThemeIndex};
use recgpt_pipeline::llm::LlmBackend;
use recgpt_pipeline::prompts::Prompts;

use super::{llm, print_json, HistoryContext};
use crate::{HistoryArgs, LlmArgs};

pub fn one(
    home: &Path,
    user: &str,
    history: &HistoryArgs,
    args: &LlmArgs,
    json: bool,
) -> Result<()> {
    let ctx = HistoryContext::open(home, history)?;
    let (backend, sampling) = llm(history, args)?;
    let compressor = ctx.compressor();
    let h = ctx.store.history(user, &ctx.window)?;
    let narrative = compressor.compress(&h, &ctx.window);
    let prompts = Prompts::new();
    let themes = ThemeIndex::new(
        (0..ctx.store.catalog().len() as u32).map(|ix| compressor.texts().compact(ix)),
    );
    let miner = InterestMiner {
        prompts: &prompts,
        catalog: ctx.store.catalog(),
        texts: compressor.texts(),
        themes: &themes,
        config: InterestsConfig::default(),
        sampling,
    };
    let answers = backend.generate(&miner.requests(&narrative)?)?;
    let out = miner.validate(&h, &answers, backend.model_id());
    if json {
        return print_json(&out);
    }
    for interest in &out.interests {
        println!("{} — {}", interest.name, interest.description);
        for e in &interest.evidence {
            println!("    evidence: {} [{}]", e.text, e.item);
        }
    }
    let c = &out.counts;
    println!(
        "-- user {} | kept {} of {} proposed | rejected: {} ungrounded, {} generic, {} unrelated, {} merged | evidence {} of {} hallucinated | {} of {} answers unparsable | {} | {} prompt tokens ({} reused) + {} generated",
        out.user,
        c.kept,
        c.proposed,
        c.ungrounded,
        c.generic,
        c.unrelated,
        c.merged,
        c.evidence_hallucinated,
        c.evidence,
        c.unparsable,
        c.answers,
        out.prompt_version,
        answers.iter().map(|g| g.prompt_tokens).sum::<usize>(),
        answers.iter().map(|g| g.shared_prompt_tokens).sum::<usize>(),
        answers.iter().map(|g| g.generated_tokens).sum::<usize>(),
    );
    Ok(())
}
