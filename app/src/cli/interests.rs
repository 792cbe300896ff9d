//! `recgpt interests USER` and `recgpt tags USER`.

use std::path::Path;

use anyhow::Result;
use recgpt_pipeline::categories::Categories;
use recgpt_pipeline::compress::Compressor;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::embed::Embedder;
use recgpt_pipeline::interests::{InterestMiner, ThemeIndex, UserInterests};
use recgpt_pipeline::llm::GgufTokenizer;
use recgpt_pipeline::model::default_embedder_dir;
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::reason::Reasoner;
use recgpt_pipeline::tags::UserTags;

use super::{print_json, HistoryContext};
use crate::HistoryArgs;

pub(super) fn miner<'a>(
    ctx: &'a HistoryContext,
    compressor: &'a Compressor<'a, GgufTokenizer>,
    prompts: &'a Prompts,
    themes: &'a ThemeIndex,
) -> InterestMiner<'a> {
    InterestMiner {
        prompts,
        catalog: ctx.store.catalog(),
        texts: compressor.texts(),
        themes,
        config: ctx.config.interests.clone(),
        sampling: ctx.config.llm.sampling,
    }
}

pub fn interests(
    home: &Path,
    config: Config,
    user: &str,
    history: &HistoryArgs,
    json: bool,
) -> Result<()> {
    let ctx = HistoryContext::open(home, config, history)?;
    let backend = ctx.llm()?;
    let compressor = ctx.compressor();
    let (prompts, themes) = (Prompts::new(), ThemeIndex::of(compressor.texts()));
    let miner = miner(&ctx, &compressor, &prompts, &themes);
    let h = ctx.store.history(user, &ctx.window)?;
    let narrative = compressor.compress(&h, &ctx.window);
    let answers = backend.generate(&miner.requests(&narrative)?)?;
    let out = miner.validate(&h, &answers, backend.model_id());
    if json {
        return print_json(&out);
    }
    print_interests(&out);
    let tokens = recgpt_pipeline::llm::TokenUse::of(&answers);
    println!(
        "-- {} prompt tokens ({} reused) + {} generated",
        tokens.prompt, tokens.reused, tokens.generated
    );
    Ok(())
}

pub fn tags(
    home: &Path,
    config: Config,
    user: &str,
    history: &HistoryArgs,
    json: bool,
) -> Result<()> {
    let ctx = HistoryContext::open(home, config, history)?;
    let backend = ctx.llm()?;
    let compressor = ctx.compressor();
    let (prompts, themes) = (Prompts::new(), ThemeIndex::of(compressor.texts()));
    let mut reasoner = Reasoner::new(
        &prompts,
        ctx.store.catalog(),
        compressor.texts(),
        &themes,
        &ctx.config,
    );
    // at most `tags.max_per_category` tags per category, once `recgpt categories` ran
    let categorized = match Categories::load(home, &ctx.store) {
        Ok(categories) => Some((Embedder::load(&default_embedder_dir())?, categories)),
        Err(e) => {
            tracing::warn!("no category limit on tags: {e}");
            None
        }
    };
    if let Some((embedder, categories)) = &categorized {
        reasoner = reasoner.with_categories(embedder, categories);
    }
    let h = ctx.store.history(user, &ctx.window)?;
    let narrative = compressor.compress(&h, &ctx.window);
    let (mut out, tokens) = reasoner.run(backend.as_ref(), &[(&h, &narrative)])?;
    let out = out.remove(0);
    if json {
        return print_json(&out);
    }
    print_interests(&out.interests);
    print_tags(&out.tags);
    println!(
        "-- {} prompt tokens ({} reused) + {} generated",
        tokens.prompt, tokens.reused, tokens.generated
    );
    Ok(())
}

fn print_interests(out: &UserInterests) {
    for interest in &out.interests {
        let label = if interest.description_source == "template" {
            " [templated]"
        } else {
            ""
        };
        println!("{} — {}{label}", interest.name, interest.description);
        for e in &interest.evidence {
            println!("    evidence: {} [{}]", e.text, e.item);
        }
    }
    let c = &out.counts;
    println!(
        "-- user {} | interests kept {} of {} proposed | rejected: {} ungrounded, {} generic, {} unrelated, {} merged | evidence {} of {} hallucinated | {} of {} answers unparsable, {} cut off and salvaged | {}",
        out.user, c.kept, c.proposed, c.ungrounded, c.generic, c.unrelated, c.merged,
        c.evidence_hallucinated, c.evidence, c.unparsable, c.answers, c.salvaged, out.prompt_version,
    );
}

fn print_tags(out: &UserTags) {
    for t in &out.tags {
        let category = t
            .category
            .as_deref()
            .map_or(String::new(), |c| format!(" <{c}>"));
        println!(
            "  {:<32} {:<20} {} [{}]{category}",
            t.tag, t.interest, t.rationale, t.source
        );
    }
    let c = &out.counts;
    let rejected: Vec<String> = c.rejected.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "-- tags {} ({} from the model of {} proposed, {} fallback) | rejected: {} | {} of {} answers unparsable | {}",
        out.tags.len(), c.from_model, c.proposed, c.from_fallback,
        if rejected.is_empty() { "none".into() } else { rejected.join(", ") },
        c.unparsable, c.answers, out.prompt_version,
    );
}
