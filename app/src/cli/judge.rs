//! `recgpt judge`: a second model grades stored outputs, or a labelled set, against a rubric
//! per stage; `--write-cases` writes the cases for labelling instead.

use std::path::Path;

use anyhow::{bail, Context, Result};

use recgpt_data::text::ItemTexts;
use recgpt_data::Store;
use recgpt_pipeline::categories::Categories;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::explain::{keys, Explainer, Pair};
use recgpt_pipeline::judge::cases::{self, Half};
use recgpt_pipeline::judge::report::{table, JudgeFloors};
use recgpt_pipeline::judge::{Case, Judge, JudgeReport, Stage};
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::results::UserResult;

use super::print_json;
use crate::JudgeArgs;

/// `recgpt judge` with `config` (its LLM settings already overridden by `r`'s).
pub fn judge(home: &Path, config: &Config, r: &JudgeArgs, json: bool) -> Result<()> {
    let stages = if r.stage.is_empty() {
        Stage::ALL.to_vec()
    } else {
        r.stage.clone()
    };
    // bad input fails before a model is loaded
    let floors: Option<JudgeFloors> = super::read_floors(r.floors.as_deref())?;
    let (cases, source) = if r.cases.is_empty() {
        let cases = stored_cases(home, config, &stages, r)?;
        let source = format!(
            "results store, {} per stage, seed {}",
            r.sample, r.sample_seed
        );
        (cases, source)
    } else {
        let mut all = Vec::new();
        for path in &r.cases {
            all.extend(cases::load(path)?);
        }
        let picked: Vec<Case> = all
            .into_iter()
            .filter(|c| stages.contains(&c.stage) && r.half.holds(&c.id))
            .collect();
        let names: Vec<String> = r.cases.iter().map(|p| p.display().to_string()).collect();
        let half = match r.half {
            Half::All => String::new(),
            half => format!(" ({} half)", half.name()),
        };
        (picked, format!("{}{half}", names.join(", ")))
    };
    // explanations answered afresh by the configured model, the other stages as they are
    let cases = match r.regenerate {
        Some(attempts) => {
            let (explanations, mut cases): (Vec<Case>, Vec<Case>) = cases
                .into_iter()
                .partition(|c| c.stage == Stage::Explanations);
            cases.extend(regenerate(home, config, &explanations, attempts)?);
            cases
        }
        None => cases,
    };
    if let Some(out) = &r.write_cases {
        cases::write(out, &cases)?;
        println!("{} cases written to {}", cases.len(), out.display());
        return Ok(());
    }
    if cases.is_empty() {
        bail!("no case to judge ({source}): run the batch job first, or pass --cases");
    }

    let mut judge_llm = config.judge.llm(&config.llm);
    if let Some(model) = &r.model {
        judge_llm.model = model.clone();
    }
    let llm = judge_llm.load().with_context(|| {
        "the judge's model (fetch the default with `scripts/setup.sh qwen 1.5b`, or pass --model)"
    })?;
    let prompts = Prompts::new();
    let judge = Judge::new(&prompts, &config.judge);
    let grading = judge.grade(llm.as_ref(), &cases)?;
    let report = JudgeReport::new(
        llm.model_id(),
        &judge.version(),
        &source,
        grading,
        judge_llm.backend.threads_used(),
    );
    if json {
        print_json(&report)?;
    } else {
        print!("{}", table(&report));
    }
    if let Some(floors) = floors {
        let failures = report.floor_failures(&floors);
        if !failures.is_empty() {
            for f in &failures {
                eprintln!("FLOOR {f}");
            }
            bail!("{} judge floor(s) broken", failures.len());
        }
    }
    Ok(())
}

/// A seeded sample of each stage's stored outputs.
fn stored_cases(
    home: &Path,
    config: &Config,
    stages: &[Stage],
    r: &JudgeArgs,
) -> Result<Vec<Case>> {
    let mut stored: Vec<UserResult> = Vec::new();
    config.store.open(home)?.for_each_user(|r| -> Result<()> {
        stored.push(r);
        Ok(())
    })?;
    let mut out = Vec::new();
    for &stage in stages {
        let all = cases::stored(stage, &stored);
        out.extend(cases::sample(all, r.sample, r.sample_seed));
    }
    Ok(out)
}

/// The explanation cases' pairs answered afresh `attempts` times with the configured model,
/// every answer kept (see [`cases::regenerated`]); a pair in several cases is asked once.
fn regenerate(home: &Path, config: &Config, picked: &[Case], attempts: usize) -> Result<Vec<Case>> {
    let store = Store::open(home)?;
    let catalog = store.catalog();
    let texts = ItemTexts::new(catalog, &config.compress.key_attributes);
    let categories = Categories::load(home, &store).ok();
    let prompts = Prompts::new();
    let explainer = Explainer::new(
        &prompts,
        catalog,
        &texts,
        categories.as_ref(),
        &config.explain,
        config.llm.sampling,
    );
    let mut pairs = Vec::new();
    for c in picked {
        let item_id = c.item.as_deref().unwrap_or_default();
        let item = catalog
            .ix(item_id)
            .with_context(|| format!("case {}: item {item_id} is not in the catalog", c.id))?;
        let pair = Pair {
            interest: c.interest.clone(),
            description: c.description.clone(),
            key: keys::normalise(&c.interest),
            item,
        };
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    let llm = config.llm.load()?;
    Ok(cases::regenerated(
        &explainer,
        llm.as_ref(),
        &pairs,
        attempts,
    )?)
}
