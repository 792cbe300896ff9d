//! Stage `interests`: the LLM mines a user's interests from their narrative, each with a name,
//! a description and evidence (items of the history); the answer is decoded under a JSON schema
//! and validated ([`validate`]) before anything is kept.

mod config;
pub mod themes;
pub mod validate;

use std::collections::BTreeMap;

use recgpt_data::{Catalog, History};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use config::{InterestNames, InterestsConfig};
use recgpt_data::text::{all_generic, ItemTexts};
pub use themes::{Theme, ThemeIndex};
use validate::{near_duplicates, related, usable_description, whole_sentence, Grounder};

use crate::compress::Narrative;
use crate::llm::{Finish, GenerateRequest, Generation, Sampling};
use crate::prompts::{PromptError, Prompts, Task};

/// An evidence item, grounded in the user's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What the model wrote.
    pub text: String,
    /// The catalog item id it refers to.
    pub item: String,
}

/// A validated interest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    pub name: String,
    pub description: String,
    /// `model`, or `template` when the model's description failed validation.
    pub description_source: String,
    pub evidence: Vec<Evidence>,
}

/// An answer cut off at the token limit, closed after its last complete interest: the text up
/// to the last element of the `interests` object or array that closed, and the brackets still
/// open there. Decoding under the schema's grammar makes the text a valid JSON prefix, so
/// tracking strings and brackets is enough. `None` when no interest was complete.
pub fn complete_prefix(text: &str) -> Option<String> {
    let mut open: Vec<char> = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    let mut last = None;
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => open.push('}'),
            '[' => open.push(']'),
            '}' | ']' => {
                open.pop();
                if open.len() == 2 {
                    last = Some((i + 1, open.clone()));
                }
            }
            _ => {}
        }
    }
    let (end, open) = last?;
    Some(text[..end].to_string() + &open.iter().rev().collect::<String>())
}

/// The themes round `round` of `rounds` describes: every `rounds`-th theme from the round's
/// rank, so the rounds together cover each theme once. With fewer themes than rounds a later
/// round describes a theme again (another sample of its description, merged on validation).
pub fn round_themes(themes: &[Theme], round: usize, rounds: usize) -> Vec<Theme> {
    if themes.is_empty() {
        return Vec::new();
    }
    if themes.len() <= round {
        return vec![themes[round % themes.len()].clone()];
    }
    themes
        .iter()
        .skip(round)
        .step_by(rounds.max(1))
        .cloned()
        .collect()
}

/// What validation kept and rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterestCounts {
    /// Interests the model proposed.
    pub proposed: usize,
    pub kept: usize,
    /// Rejected: no evidence found in the history.
    pub ungrounded: usize,
    /// Rejected: generic name (see `validate::GENERIC_WORDS`).
    pub generic: usize,
    /// Rejected: the name shares no word with its evidence items.
    pub unrelated: usize,
    /// Merged into an earlier near-duplicate.
    pub merged: usize,
    /// Kept interests whose description was replaced by the template.
    pub descriptions_templated: usize,
    /// Evidence entries proposed, and those not found in the history.
    pub evidence: usize,
    pub evidence_hallucinated: usize,
    /// Answers (rounds) received, and those that were not valid JSON of the schema
    /// (truncated at the token limit) with no complete interest to keep.
    pub answers: usize,
    pub unparsable: usize,
    /// Answers cut off at the token limit whose complete interests were kept
    /// ([`complete_prefix`]).
    #[serde(default)]
    pub salvaged: usize,
    /// Answers cut off at the token limit (salvaged or not).
    #[serde(default)]
    pub cut_off: usize,
}

/// The stage's output for one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInterests {
    pub user: String,
    pub interests: Vec<Interest>,
    pub counts: InterestCounts,
    pub prompt_version: String,
    pub model_id: String,
    pub seed: u32,
    /// The model's raw answers, one per round.
    pub raw: Vec<String>,
}

/// The answer's shape: a list of interests (free names), or theme → interest (themes).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Interests {
    List(Vec<RawInterest>),
    ByTheme(serde_json::Map<String, serde_json::Value>),
}

#[derive(Debug, Deserialize)]
struct Answer {
    interests: Interests,
}

#[derive(Debug, Default, Deserialize)]
struct RawInterest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    evidence: Vec<String>,
}

impl Answer {
    fn into_interests(self) -> Vec<RawInterest> {
        match self.interests {
            Interests::List(list) => list,
            Interests::ByTheme(map) => map
                .into_iter()
                .map(|(name, value)| RawInterest {
                    name,
                    ..serde_json::from_value(value).unwrap_or_default()
                })
                .collect(),
        }
    }
}

/// Builds requests for, and validates answers of, the interests task.
#[derive(Debug)]
pub struct InterestMiner<'a> {
    pub prompts: &'a Prompts,
    pub catalog: &'a Catalog,
    pub texts: &'a ItemTexts,
    pub themes: &'a ThemeIndex,
    pub config: InterestsConfig,
    pub sampling: Sampling,
}

impl InterestMiner<'_> {
    /// The JSON schema of the answer. Free names: evidence restricted to `choices` when
    /// constrained. Theme names: one property per theme, its evidence among its items, the
    /// first theme required and the others optional.
    pub fn schema(&self, choices: &[String], themes: &[Theme]) -> serde_json::Value {
        // words and plain punctuation, no digits: a small model's runaway descriptions are
        // digit loops ("2011 2011 …", a token per digit) that exhaust the answer budget
        // one sentence that closes with a full stop: a length cap reached mid-sentence leaves
        // a dangling word before it, which `whole_sentence` rejects
        let description =
            json!({"type": "string", "pattern": "^[A-Za-z][A-Za-z ,;:'&/()-]{9,119}[.]$"});
        if self.config.names == InterestNames::Themes && !themes.is_empty() {
            // One required property per theme of the round, in rank order: the model describes
            // each and chooses its evidence among the theme's items.
            let properties: serde_json::Map<String, serde_json::Value> = themes
                .iter()
                .map(|t| {
                    let items: Vec<&str> = t.items.iter().take(8).map(|&ix| self.texts.compact(ix)).collect();
                    let value = json!({
                        "type": "object",
                        "properties": {
                            "description": description,
                            "evidence": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"enum": items}}
                        },
                        "required": ["description", "evidence"],
                        "additionalProperties": false
                    });
                    (t.phrase.clone(), value)
                })
                .collect();
            return json!({
                "type": "object",
                "properties": {
                    "interests": {
                        "type": "object",
                        "properties": properties,
                        "required": themes.iter().map(|t| t.phrase.as_str()).collect::<Vec<_>>(),
                        "additionalProperties": false
                    }
                },
                "required": ["interests"],
                "additionalProperties": false
            });
        }
        let interest = {
            let evidence_item = if self.config.constrain_evidence && !choices.is_empty() {
                json!({"type": "string", "enum": choices})
            } else {
                json!({"type": "string", "minLength": 3, "maxLength": 80})
            };
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 3, "maxLength": 40},
                    "description": description,
                    "evidence": {"type": "array", "minItems": 1, "maxItems": 2, "items": evidence_item}
                },
                "required": ["name", "description", "evidence"],
                "additionalProperties": false
            })
        };
        json!({
            "type": "object",
            "properties": {
                "interests": {
                    "type": "array",
                    "minItems": self.config.min,
                    "maxItems": self.config.max,
                    "items": interest
                }
            },
            "required": ["interests"],
            "additionalProperties": false
        })
    }

    /// The user's themes (empty in free-name mode).
    pub fn user_themes(&self, narrative: &Narrative) -> Vec<Theme> {
        if self.config.names != InterestNames::Themes {
            return Vec::new();
        }
        let items: Vec<(u32, &str)> = narrative
            .items
            .iter()
            .map(|&ix| (ix, self.texts.compact(ix)))
            .collect();
        self.themes.themes(&items, self.config.max_themes)
    }

    /// Item names the narrative mentions, offered as evidence choices (most recent first, as
    /// they appear in the text).
    fn choices(&self, narrative: &Narrative) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut ordered: Vec<(usize, String)> = narrative
            .items
            .iter()
            .map(|&ix| self.texts.compact(ix).to_string())
            .filter(|t| seen.insert(t.clone()))
            .map(|t| (narrative.text.find(&t).unwrap_or(usize::MAX), t))
            .collect();
        ordered.sort();
        ordered
            .into_iter()
            .take(self.config.max_evidence_choices)
            .map(|(_, t)| t)
            .collect()
    }

    /// The requests for one user's narrative: one per round, same prompt, different seeds.
    pub fn requests(&self, narrative: &Narrative) -> Result<Vec<GenerateRequest>, PromptError> {
        let themes = self.user_themes(narrative);
        let messages = self.prompts.render(
            Task::Interests,
            json!({
                "as_of": narrative.as_of.to_string(),
                "narrative": narrative.text,
                "min_interests": self.config.min,
                "max_interests": self.config.max,
                "themes": themes.iter().map(|t| t.phrase.as_str()).collect::<Vec<_>>(),
            }),
        )?;
        let choices = self.choices(narrative);
        let seed = self.sampling.seed_for(&narrative.user);
        let rounds = self.config.rounds.max(1);
        Ok((0..rounds)
            .map(|round| {
                // The rounds share the themes out (the grammar requires each of a round's
                // themes), so together they describe every theme once, while the prompt (and
                // its KV cache) stays the same.
                (
                    round,
                    self.schema(&choices, &round_themes(&themes, round, rounds)),
                )
            })
            .map(|(round, schema)| GenerateRequest {
                messages: messages.clone(),
                schema: Some(schema),
                grammar: None,
                repeat_penalty: 1.0,
                max_tokens: self.config.max_tokens,
                temperature: self.sampling.temperature,
                seed: seed.wrapping_add(round as u32),
            })
            .collect())
    }

    /// Validates a user's answers (all rounds, pooled in order) against their history.
    pub fn validate(
        &self,
        history: &History,
        answers: &[Generation],
        model_id: &str,
    ) -> UserInterests {
        let mut counts = InterestCounts {
            answers: answers.len(),
            ..InterestCounts::default()
        };
        let mut proposed = Vec::new();
        for generation in answers {
            let answer: Option<Answer> = match generation.finish {
                Finish::Stop => serde_json::from_str(&generation.text).ok(),
                Finish::Length => {
                    counts.cut_off += 1;
                    let salvaged = complete_prefix(&generation.text)
                        .and_then(|t| serde_json::from_str(&t).ok());
                    counts.salvaged += usize::from(salvaged.is_some());
                    salvaged
                }
            };
            match answer {
                Some(a) => proposed.extend(a.into_interests()),
                None => {
                    tracing::debug!(finish = ?generation.finish, text = %generation.text, "unparsable interests answer");
                    counts.unparsable += 1;
                }
            }
        }
        let grounder = Grounder::new(
            history
                .events
                .iter()
                .filter_map(|e| e.item)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|ix| (ix, self.texts.compact(ix).to_string())),
        );
        let mut kept: Vec<Interest> = Vec::new();
        for raw in proposed {
            counts.proposed += 1;
            counts.evidence += raw.evidence.len();
            let mut evidence: BTreeMap<u32, Evidence> = BTreeMap::new();
            for text in &raw.evidence {
                match grounder.ground(text) {
                    Some(ix) => {
                        evidence.entry(ix).or_insert_with(|| Evidence {
                            text: text.clone(),
                            item: self.catalog.get(ix).id.clone(),
                        });
                    }
                    None => counts.evidence_hallucinated += 1,
                }
            }
            let name = raw.name.split_whitespace().collect::<Vec<_>>().join(" ");
            let evidence_names: Vec<&str> =
                evidence.keys().map(|&ix| self.texts.compact(ix)).collect();
            if evidence.is_empty() {
                counts.ungrounded += 1;
            } else if all_generic(&name) {
                counts.generic += 1;
            } else if !related(&name, &evidence_names) {
                counts.unrelated += 1;
            } else if let Some(earlier) = kept.iter_mut().find(|k| near_duplicates(&k.name, &name))
            {
                counts.merged += 1;
                for e in evidence.into_values() {
                    if !earlier.evidence.iter().any(|x| x.item == e.item) {
                        earlier.evidence.push(e);
                    }
                }
            } else {
                let model_text = raw.description.trim().to_string();
                let (description, source) = if whole_sentence(&model_text)
                    && usable_description(&model_text, &name, &evidence_names)
                {
                    (model_text, "model")
                } else {
                    counts.descriptions_templated += 1;
                    (
                        format!(
                            "Buys {name} items such as {}.",
                            evidence_names.join(" and ")
                        ),
                        "template",
                    )
                };
                kept.push(Interest {
                    name,
                    description,
                    description_source: source.into(),
                    evidence: evidence.into_values().collect(),
                });
            }
        }
        counts.kept = kept.len();
        UserInterests {
            user: history.user.clone(),
            interests: kept,
            counts,
            prompt_version: self.prompts.version(Task::Interests),
            model_id: model_id.to_string(),
            seed: self.sampling.seed_for(&history.user),
            raw: answers.iter().map(|g| g.text.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{complete_prefix, round_themes, Theme};

    #[test]
    fn rounds_share_the_themes_out() {
        let themes: Vec<Theme> = (0..7)
            .map(|i| Theme {
                phrase: format!("theme {i}"),
                items: vec![i],
            })
            .collect();
        let names = |round| -> Vec<String> {
            round_themes(&themes, round, 3)
                .into_iter()
                .map(|t| t.phrase)
                .collect()
        };
        assert_eq!(names(0), ["theme 0", "theme 3", "theme 6"]);
        assert_eq!(names(1), ["theme 1", "theme 4"]);
        assert_eq!(names(2), ["theme 2", "theme 5"]);
        // fewer themes than rounds: a later round describes one again
        assert_eq!(round_themes(&themes[..2], 2, 3)[0].phrase, "theme 0");
        assert!(round_themes(&[], 0, 3).is_empty());
    }

    #[test]
    fn a_cut_off_answer_keeps_its_complete_interests() {
        let cut = r#"{"interests": {"tea": {"description": "Tea {time} \"cups\"", "evidence": ["tea cup"]}, "cake": {"description": "Cakes and ca"#;
        let fixed = complete_prefix(cut).unwrap();
        assert_eq!(
            fixed,
            r#"{"interests": {"tea": {"description": "Tea {time} \"cups\"", "evidence": ["tea cup"]}}}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&fixed).is_ok());
        let array = r#"{"interests": [{"name": "tea", "evidence": ["a"]}, {"name": "ca"#;
        assert_eq!(
            complete_prefix(array).unwrap(),
            r#"{"interests": [{"name": "tea", "evidence": ["a"]}]}"#
        );
        assert_eq!(complete_prefix(r#"{"interests": {"tea": {"descr"#), None);
    }
}
