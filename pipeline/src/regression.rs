//! Prompt regression (`recgpt prompts test`): the golden cases of `prompts/cases/golden.json`
//! (real users) run through interests and tags, and the (interest, item) pairs of
//! `prompts/cases/explain.json` (from real users' chains) through the explain stage, with the
//! configured model and seed; the parsed outputs are compared with the expected ones in
//! `prompts/cases/expected/` and the metrics over the case set with the floors in
//! `prompts/cases/floors.json`. A prompt, rule, model or code change that changes an answer
//! shows up as a difference; one that degrades quality trips a floor.

use std::path::{Path, PathBuf};

use recgpt_data::{Store, TimeWindow};
use serde::{Deserialize, Serialize};

use crate::compress::{CompressConfig, Compressor};
use crate::config::Config;
use crate::explain::{keys, ExplainCounts, ExplainError, Explainer, Pair};
use crate::interests::ThemeIndex;
use crate::llm::{GgufTokenizer, LlmBackend, TokenCounter};
use crate::prompts::Prompts;
use crate::reason::{Reasoner, StageError, UserReasoning};
use crate::results::{ResultStore, ResultsError};
use recgpt_data::text::ItemTexts;

/// One golden case: a real user, a budget and an optional time split.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub user: String,
    pub budget: usize,
    #[serde(default)]
    pub until: Option<String>,
}

/// One golden explanation case: an interest as a real user's model named and described it, and
/// an item recommended for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairCase {
    pub interest: String,
    pub description: String,
    pub item: String,
}

/// File name of the expected explanations in `expected/`.
const EXPLANATIONS: &str = "explanations";

/// What is compared for a case: parsed structures, not raw text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    pub user: String,
    pub prompt_versions: Vec<String>,
    /// `name: evidence item ids`.
    pub interests: Vec<String>,
    /// `tag | interest | source`.
    pub tags: Vec<String>,
}

/// Quality floors over the case set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floors {
    pub interest_parse_rate_min: f64,
    pub tag_parse_rate_min: f64,
    pub hallucinated_evidence_rate_max: f64,
    pub interests_per_user_min: f64,
    /// The fewest interests of any one user (the golden users all bought over 50 items).
    pub interests_each_user_min: f64,
    pub tags_per_user_min: f64,
    pub model_tags_per_user_min: f64,
    /// The fewest model tags of any one user (a mean must not hide a user at zero).
    pub model_tags_each_user_min: f64,
    pub fallback_share_max: f64,
    /// Explanation answers that parse, of all answers.
    pub explanation_parse_rate_min: f64,
    /// Pairs whose explanation is the model's (not the template), of all pairs.
    pub explanation_model_share_min: f64,
}

/// Metrics over the case set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub interest_parse_rate: f64,
    pub tag_parse_rate: f64,
    pub hallucinated_evidence_rate: f64,
    pub interests_per_user: f64,
    pub interests_fewest: f64,
    pub tags_per_user: f64,
    pub model_tags_per_user: f64,
    pub model_tags_fewest: f64,
    pub fallback_share: f64,
    pub explanation_parse_rate: f64,
    pub explanation_model_share: f64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub metrics: Metrics,
    pub floors: Floors,
    /// Broken floors, as messages.
    pub floor_failures: Vec<String>,
    /// Cases whose output differs from the expected one (or has none yet).
    pub changed: Vec<String>,
    pub updated: bool,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.floor_failures.is_empty() && (self.updated || self.changed.is_empty())
    }
}

/// Where the golden cases live.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts/cases")
}

fn expected_of(r: &UserReasoning) -> Expected {
    Expected {
        user: r.interests.user.clone(),
        prompt_versions: vec![
            r.interests.prompt_version.clone(),
            r.tags.prompt_version.clone(),
        ],
        interests: r
            .interests
            .interests
            .iter()
            .map(|i| {
                let ids: Vec<&str> = i.evidence.iter().map(|e| e.item.as_str()).collect();
                format!("{}: {}", i.name, ids.join(", "))
            })
            .collect(),
        tags: r
            .tags
            .tags
            .iter()
            .map(|t| format!("{} | {} | {}", t.tag, t.interest, t.source))
            .collect(),
    }
}

fn metrics(out: &[UserReasoning], explained: &ExplainCounts) -> Metrics {
    let n = out.len().max(1) as f64;
    let sum = |f: &dyn Fn(&UserReasoning) -> usize| out.iter().map(f).sum::<usize>() as f64;
    let answers_i = sum(&|r| r.interests.counts.answers).max(1.0);
    let answers_t = sum(&|r| r.tags.counts.answers).max(1.0);
    let tags = sum(&|r| r.tags.tags.len());
    Metrics {
        interest_parse_rate: 1.0 - sum(&|r| r.interests.counts.unparsable) / answers_i,
        tag_parse_rate: 1.0 - sum(&|r| r.tags.counts.unparsable) / answers_t,
        hallucinated_evidence_rate: sum(&|r| r.interests.counts.evidence_hallucinated)
            / sum(&|r| r.interests.counts.evidence).max(1.0),
        interests_per_user: sum(&|r| r.interests.interests.len()) / n,
        interests_fewest: out
            .iter()
            .map(|r| r.interests.interests.len())
            .min()
            .unwrap_or(0) as f64,
        tags_per_user: tags / n,
        model_tags_per_user: sum(&|r| r.tags.counts.from_model) / n,
        model_tags_fewest: out
            .iter()
            .map(|r| r.tags.counts.from_model)
            .min()
            .unwrap_or(0) as f64,
        fallback_share: sum(&|r| r.tags.counts.from_fallback) / tags.max(1.0),
        explanation_parse_rate: 1.0
            - explained.rejected.get("unparsable").copied().unwrap_or(0) as f64
                / explained.generations.max(1) as f64,
        explanation_model_share: explained.generated as f64 / explained.requested.max(1) as f64,
    }
}

fn check(m: &Metrics, f: &Floors) -> Vec<String> {
    let mut failures = Vec::new();
    let mut min = |name: &str, value: f64, floor: f64| {
        if value < floor {
            failures.push(format!("{name} {value:.3} < floor {floor:.3}"));
        }
    };
    min(
        "interest parse rate",
        m.interest_parse_rate,
        f.interest_parse_rate_min,
    );
    min("tag parse rate", m.tag_parse_rate, f.tag_parse_rate_min);
    min(
        "interests per user",
        m.interests_per_user,
        f.interests_per_user_min,
    );
    min(
        "interests of the user with the fewest",
        m.interests_fewest,
        f.interests_each_user_min,
    );
    min("tags per user", m.tags_per_user, f.tags_per_user_min);
    min(
        "model tags per user",
        m.model_tags_per_user,
        f.model_tags_per_user_min,
    );
    min(
        "model tags of the user with the fewest",
        m.model_tags_fewest,
        f.model_tags_each_user_min,
    );
    min(
        "explanation parse rate",
        m.explanation_parse_rate,
        f.explanation_parse_rate_min,
    );
    min(
        "explanation model share",
        m.explanation_model_share,
        f.explanation_model_share_min,
    );
    let mut max = |name: &str, value: f64, ceiling: f64| {
        if value > ceiling {
            failures.push(format!("{name} {value:.3} > ceiling {ceiling:.3}"));
        }
    };
    max(
        "hallucinated evidence rate",
        m.hallucinated_evidence_rate,
        f.hallucinated_evidence_rate_max,
    );
    max("fallback share", m.fallback_share, f.fallback_share_max);
    failures
}

/// Runs the golden cases; with `update`, writes the current outputs as the expected ones.
pub fn run(
    store: &Store,
    counter: &TokenCounter<GgufTokenizer>,
    llm: &dyn LlmBackend,
    config: &Config,
    dir: &Path,
    update: bool,
) -> Result<Report, RegressionError> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| RegressionError::Io {
            path: dir.join(name),
            source: e,
        })
    };
    let cases: Vec<Case> =
        serde_json::from_str(&read("golden.json")?).map_err(|e| RegressionError::Format {
            path: dir.join("golden.json"),
            message: e.to_string(),
        })?;
    let floors: Floors =
        serde_json::from_str(&read("floors.json")?).map_err(|e| RegressionError::Format {
            path: dir.join("floors.json"),
            message: e.to_string(),
        })?;
    let prompts = Prompts::new();
    let mut out = Vec::new();
    // themes depend on the catalog's item texts only, not on a case's budget or window
    let themes = ThemeIndex::of(&ItemTexts::new(
        store.catalog(),
        &config.compress.key_attributes,
    ));
    for case in &cases {
        let until = case
            .until
            .as_deref()
            .map(recgpt_data::parse_date)
            .transpose()?;
        let window: TimeWindow = store.window(until, None);
        let compressor = Compressor::new(
            store.catalog(),
            CompressConfig {
                budget: case.budget,
                ..config.compress.clone()
            },
            counter,
        );
        let reasoner = Reasoner::new(
            &prompts,
            store.catalog(),
            compressor.texts(),
            &themes,
            config,
        );
        let history = store.history(&case.user, &window)?;
        let narrative = compressor.compress(&history, &window);
        out.extend(reasoner.run(llm, &[(&history, &narrative)])?.0);
    }
    let pair_cases: Vec<PairCase> =
        serde_json::from_str(&read("explain.json")?).map_err(|e| RegressionError::Format {
            path: dir.join("explain.json"),
            message: e.to_string(),
        })?;
    let (explained, explain_counts) = explain(
        store,
        llm,
        config,
        &prompts,
        &pair_cases,
        &dir.join("explain.json"),
    )?;

    let expected_dir = dir.join("expected");
    let mut changed = Vec::new();
    let mut compare = |name: &str, current: serde_json::Value| -> Result<(), RegressionError> {
        let path = expected_dir.join(format!("{name}.json"));
        let previous: Option<serde_json::Value> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if previous.as_ref() != Some(&current) {
            changed.push(name.to_string());
            if update {
                std::fs::create_dir_all(&expected_dir).map_err(|e| RegressionError::Io {
                    path: expected_dir.clone(),
                    source: e,
                })?;
                let text = serde_json::to_string_pretty(&current).expect("serialisable");
                std::fs::write(&path, text + "\n").map_err(|e| RegressionError::Io {
                    path: path.clone(),
                    source: e,
                })?;
            }
        }
        Ok(())
    };
    for r in &out {
        let current = expected_of(r);
        compare(
            &current.user,
            serde_json::to_value(&current).expect("serialisable"),
        )?;
    }
    compare(EXPLANATIONS, serde_json::json!(explained))?;
    let metrics = metrics(&out, &explain_counts);
    let floor_failures = check(&metrics, &floors);
    Ok(Report {
        metrics,
        floors,
        floor_failures,
        changed,
        updated: update,
    })
}

/// The explanation of every pair case, as `interest | item | source | text`, and the stage's
/// counts. A fresh cache each run, so every pair is generated; no categories, so the cases do
/// not depend on how a data home's categories were built.
fn explain(
    store: &Store,
    llm: &dyn LlmBackend,
    config: &Config,
    prompts: &Prompts,
    cases: &[PairCase],
    path: &Path,
) -> Result<(Vec<String>, ExplainCounts), RegressionError> {
    let catalog = store.catalog();
    let texts = ItemTexts::new(catalog, &config.compress.key_attributes);
    let explainer = Explainer::new(
        prompts,
        catalog,
        &texts,
        None,
        &config.explain,
        config.llm.sampling,
    );
    let pairs = cases
        .iter()
        .map(|c| {
            Ok(Pair {
                interest: c.interest.clone(),
                description: c.description.clone(),
                key: keys::normalise(&c.interest),
                item: catalog.ix(&c.item).ok_or_else(|| RegressionError::Format {
                    path: path.to_path_buf(),
                    message: format!("item {:?} is not in the catalog", c.item),
                })?,
            })
        })
        .collect::<Result<Vec<_>, RegressionError>>()?;
    let cache_dir = tempfile::tempdir().map_err(|e| ResultsError {
        location: std::env::temp_dir().display().to_string(),
        message: e.to_string(),
    })?;
    let cache = ResultStore::open(cache_dir.path())?;
    let (explanations, counts) = explainer.explain(llm, &cache, &pairs)?;
    let lines = cases
        .iter()
        .zip(explanations)
        .map(|(c, e)| format!("{} | {} | {} | {}", c.interest, c.item, e.source, e.text))
        .collect();
    Ok((lines, counts))
}

/// Errors running the regression.
#[derive(Debug, thiserror::Error)]
pub enum RegressionError {
    /// A case file could not be read or written.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A case file is malformed: the caller's fault.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error(transparent)]
    Data(#[from] recgpt_data::DataError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Explain(#[from] ExplainError),
    #[error(transparent)]
    Results(#[from] ResultsError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_trip_on_regressions() {
        let floors: Floors =
            serde_json::from_str(include_str!("../../prompts/cases/floors.json")).unwrap();
        let good = Metrics {
            interest_parse_rate: 1.0,
            tag_parse_rate: 1.0,
            hallucinated_evidence_rate: 0.0,
            interests_per_user: 11.0,
            interests_fewest: 10.0,
            tags_per_user: 50.0,
            model_tags_per_user: 40.0,
            model_tags_fewest: 35.0,
            fallback_share: 0.2,
            explanation_parse_rate: 1.0,
            explanation_model_share: 0.5,
        };
        assert!(check(&good, &floors).is_empty());
        // one user at zero fails although the mean holds
        let hidden = Metrics {
            model_tags_fewest: 0.0,
            ..good.clone()
        };
        let failures = check(&hidden, &floors);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("model tags of the user with the fewest"));
        let few = Metrics {
            interests_fewest: 4.0,
            ..good.clone()
        };
        let failures = check(&few, &floors);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("interests of the user with the fewest"));
        let bad = Metrics {
            tag_parse_rate: 0.9,
            hallucinated_evidence_rate: 0.1,
            explanation_model_share: 0.0,
            ..good
        };
        let failures = check(&bad, &floors);
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].starts_with("tag parse rate"));
        assert!(failures[1].starts_with("explanation model share"));
    }
}
