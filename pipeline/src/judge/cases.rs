//! Where the judge's cases come from: a labelled file (JSON lines, `prompts/cases/judge/`),
//! the results store (a seeded sample of stored outputs), or explanations generated afresh with
//! every answer kept, those the rules reject included (what the labelled set needs to compare
//! the rules with the judge).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use recgpt_explain::{Explainer, Pair};
use recgpt_llm::LlmBackend;

use super::{Case, Stage};
use crate::results::UserResult;

/// Errors reading cases.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line that is not a case: file, line and what is wrong (serde names the field).
    #[error("{path}:{line}: {message}")]
    Format {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The half of a labelled set a case belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Half {
    /// Tunes the rubric prompt.
    Dev,
    /// Reports the judge's accuracy; never tuned on.
    HeldOut,
    All,
}

impl std::str::FromStr for Half {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|half| half.name() == s)
            .ok_or_else(|| format!("unknown half `{s}` (dev, held-out or all)"))
    }
}

impl Half {
    pub const ALL: [Half; 3] = [Half::Dev, Half::HeldOut, Half::All];

    pub fn name(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::HeldOut => "held-out",
            Self::All => "all",
        }
    }

    /// Whether the case with `id` is in this half: by a hash of the id, so adding cases never
    /// moves one from a half to the other.
    pub fn holds(self, id: &str) -> bool {
        // mixed: FNV-1a's lowest bit is only the parity of the id's odd bytes
        let hash = recgpt_data::hash::fnv1a([b"judge-half".as_slice(), id.as_bytes()]);
        let dev = recgpt_data::hash::mix(hash).is_multiple_of(2);
        match self {
            Self::Dev => dev,
            Self::HeldOut => !dev,
            Self::All => true,
        }
    }
}

/// The cases in a JSON-lines file (blank lines skipped); ids must be unique.
pub fn load(path: &Path) -> Result<Vec<Case>, CasesError> {
    let text = std::fs::read_to_string(path).map_err(|source| CasesError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut seen = BTreeSet::new();
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let format = |message: String| CasesError::Format {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let case: Case = serde_json::from_str(line).map_err(|e| format(e.to_string()))?;
        if let Some(label) = &case.label {
            if let Some(point) = &label.point {
                if !case.stage.points().iter().any(|p| p.name == point) {
                    return Err(format(format!(
                        "field `label.point`: `{point}` is not a point of the {} rubric",
                        case.stage.name()
                    )));
                }
            }
        }
        if !seen.insert(case.id.clone()) {
            return Err(format(format!("field `id`: `{}` appears twice", case.id)));
        }
        cases.push(case);
    }
    Ok(cases)
}

/// Writes cases as JSON lines.
pub fn write(path: &Path, cases: &[Case]) -> Result<(), CasesError> {
    let mut out = String::new();
    for c in cases {
        out.push_str(&serde_json::to_string(c).expect("a case serialises"));
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|source| CasesError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Every output of `stage` in stored results, one case each (explanations shared by several
/// users once), in user order.
pub fn stored(stage: Stage, results: &[UserResult]) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut seen = BTreeSet::new();
    for r in results {
        let interests: BTreeMap<&str, &crate::interests::Interest> = r
            .interests
            .interests
            .iter()
            .map(|i| (i.name.as_str(), i))
            .collect();
        let evidence = |name: &str| -> Vec<String> {
            interests.get(name).map_or_else(Vec::new, |i| {
                i.evidence.iter().map(|e| e.text.clone()).collect()
            })
        };
        let description = |name: &str| interests.get(name).map_or("", |i| &i.description);
        match stage {
            Stage::Interests => {
                for i in &r.interests.interests {
                    cases.push(Case {
                        evidence: evidence(&i.name),
                        ..Case::new(
                            format!("i-{}-{}", r.user, i.name),
                            stage,
                            &i.name,
                            &i.description,
                            &i.description_source,
                        )
                    });
                }
            }
            Stage::Tags => {
                for t in &r.tags.tags {
                    cases.push(Case {
                        description: description(&t.interest).to_string(),
                        evidence: evidence(&t.interest),
                        ..Case::new(
                            format!("t-{}-{}", r.user, t.tag),
                            stage,
                            &t.interest,
                            &t.tag,
                            &t.source,
                        )
                    });
                }
            }
            Stage::Explanations => {
                for x in &r.recommendations {
                    let (Some(interest), Some(key), Some(text)) =
                        (&x.interest, &x.interest_key, &x.explanation)
                    else {
                        continue;
                    };
                    let id = format!("x-{key}-{}", x.item);
                    if !seen.insert(id.clone()) {
                        continue;
                    }
                    let source = x.explanation_source.clone().unwrap_or_default();
                    cases.push(Case {
                        description: description(interest).to_string(),
                        item: Some(x.item.clone()),
                        title: Some(x.title.clone()),
                        category: x.category.clone(),
                        // a stored model explanation passed the rules; a fallback is there
                        // because they rejected every answer
                        rules: Some(source == "model"),
                        rule: (source != "model").then(|| source.clone()),
                        ..Case::new(id, stage, interest, text, &source)
                    });
                }
            }
        }
    }
    cases
}

/// A seeded sample of `n` cases (all when fewer), in their original order: the `n` with the
/// smallest seeded hash of their id, so a larger sample with the same seed holds a smaller one.
pub fn sample(cases: Vec<Case>, n: usize, seed: u64) -> Vec<Case> {
    if cases.len() <= n {
        return cases;
    }
    let key = |c: &Case| recgpt_data::hash::seeded(seed, &c.id);
    let mut keys: Vec<u64> = cases.iter().map(key).collect();
    keys.sort_unstable();
    match n.checked_sub(1) {
        Some(last) => cases.into_iter().filter(|c| key(c) <= keys[last]).collect(),
        None => Vec::new(),
    }
}

/// Explanations for `pairs` generated afresh with `attempts` answers each, every answer kept
/// with the rules' verdict on it (unparsable answers left out: there is no text to judge).
pub fn regenerated(
    explainer: &Explainer,
    llm: &dyn LlmBackend,
    pairs: &[Pair],
    attempts: usize,
) -> Result<Vec<Case>, super::JudgeError> {
    // the model's file name, without the size the id adds
    let model = llm.model_id().split(" (").next().unwrap_or_default();
    let mut cases = Vec::new();
    for attempt in 0..attempts {
        let requests = pairs
            .iter()
            .map(|p| explainer.request(p, attempt))
            .collect::<Result<Vec<_>, _>>()?;
        let answers = llm.generate(&requests)?;
        for (pair, answer) in pairs.iter().zip(&answers) {
            let Some(text) = recgpt_explain::answer_text(&answer.text) else {
                continue;
            };
            let checked = explainer.check(pair, &answer.text);
            let item = explainer.catalog.get(pair.item);
            cases.push(Case {
                description: pair.description.clone(),
                item: Some(item.id.clone()),
                title: Some(explainer.texts.compact(pair.item).to_string()),
                category: explainer.category(pair.item).map(String::from),
                rules: Some(checked.is_ok()),
                rule: checked.err().map(String::from),
                ..Case::new(
                    format!("x-{}-{}-{attempt}-{model}", pair.key, item.id),
                    Stage::Explanations,
                    &pair.interest,
                    &text,
                    "model",
                )
            });
        }
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::super::tests::case;
    use super::*;

    #[test]
    fn halves_split_ids_stably_and_evenly() {
        let ids: Vec<String> = (0..400).map(|i| format!("x-{i}")).collect();
        let dev = ids.iter().filter(|id| Half::Dev.holds(id)).count();
        assert!((150..250).contains(&dev), "{dev}");
        for id in &ids {
            assert_ne!(Half::Dev.holds(id), Half::HeldOut.holds(id));
            assert!(Half::All.holds(id));
        }
    }

    #[test]
    fn a_bad_line_names_file_line_and_field() {
        let dir = std::env::temp_dir().join(format!("recgpt-judge-cases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cases.jsonl");
        let good = serde_json::to_string(&case(Stage::Tags)).unwrap();
        std::fs::write(
            &path,
            format!("{good}\n\n{{\"id\": \"y\", \"stage\": \"tags\"}}\n"),
        )
        .unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("cases.jsonl:3:") && err.contains("interest"),
            "{err}"
        );

        std::fs::write(&path, format!("{good}\n{good}\n")).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains(":2:") && err.contains("appears twice"),
            "{err}"
        );

        let mut labelled = case(Stage::Tags);
        labelled.label = Some(super::super::Label {
            pass: false,
            point: Some("true".into()),
            note: String::new(),
        });
        let line = serde_json::to_string(&labelled).unwrap();
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("label.point") && err.contains("tags rubric"),
            "{err}"
        );

        // what `write` writes, `load` reads back
        labelled.label.as_mut().unwrap().point = Some("serves".into());
        labelled.id = "y".into();
        let both = vec![case(Stage::Interests), labelled];
        write(&path, &both).unwrap();
        assert_eq!(load(&path).unwrap(), both);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn samples_are_seeded_subsets_in_order() {
        let cases: Vec<Case> = (0..50)
            .map(|i| {
                let mut c = case(Stage::Tags);
                c.id = format!("t-{i:02}");
                c
            })
            .collect();
        let a = sample(cases.clone(), 10, 7);
        assert_eq!(a, sample(cases.clone(), 10, 7));
        assert_ne!(a, sample(cases.clone(), 10, 8));
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(sample(cases.clone(), 60, 7), cases);
        // a larger sample with the same seed holds the smaller one
        let more = sample(cases.clone(), 20, 7);
        assert!(a.iter().all(|c| more.contains(c)));
        assert!(sample(cases, 0, 7).is_empty());
    }
}
