//! Stage `tags`: from a user's validated interests, the LLM predicts item tags as (interest,
//! tag) pairs, "modifier + core word", among the catalog's product phrases ([`vocab`],
//! [`grammar`]). The tags prompt continues the
//! interests conversation, so the narrative is not read again (see
//! [`crate::llm::LlmBackend::generate_with_follow_up`]). Answers are decoded under a JSON schema
//! (tag words by pattern, interest by enum) and validated ([`validate`]); when the model's
//! rounds leave fewer than `target` valid tags, tags derived from the user's own item names
//! (RecGPT's pre-alignment) fill the rest, labelled `fallback`. With item categories
//! ([`TagCategories`]), each tag is placed in the category nearest its embedding and at most
//! `max_per_category` tags per category are kept.

mod config;
mod fallback;
pub mod grammar;
pub mod validate;
pub mod vocab;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use recgpt_data::{BehaviorKind, Catalog, History};
use recgpt_retrieval::baselines::Scorer;
use recgpt_retrieval::interactions::UserItems;
use recgpt_retrieval::metrics::top_k;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use config::TagsConfig;
use grammar::{tags_grammar, AnswerShape, InterestChoices};
use recgpt_data::text::{all_generic, stems};
use validate::{copies, mentions_brand, relevant, well_formed};
use vocab::ChoiceContext;
pub use vocab::Part;
pub use vocab::TagVocabulary;

use crate::categories::Categories;
use crate::embed::{EmbedError, Embedder};
use crate::interests::UserInterests;
use crate::llm::{Finish, FollowUp, Generation};
use crate::prompts::{PromptError, Prompts, Task};
use recgpt_data::text::ItemTexts;

/// A kept tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub tag: String,
    /// The interest it serves (a kept interest's name).
    pub interest: String,
    /// Why the tag serves the interest (the fallback's; model answers carry none).
    #[serde(default)]
    pub rationale: String,
    /// `model` or `fallback`.
    pub source: String,
    /// The item category nearest the tag, when categories are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// What validation kept and rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCounts {
    pub answers: usize,
    /// Answers that are not valid JSON of the schema, cut off ones included.
    pub unparsable: usize,
    /// Answers cut off at the token limit.
    #[serde(default)]
    pub cut_off: usize,
    pub proposed: usize,
    pub from_model: usize,
    pub from_fallback: usize,
    /// Rejections by rule (see [`validate`]).
    pub rejected: BTreeMap<String, usize>,
}

/// The stage's output for one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserTags {
    pub user: String,
    pub tags: Vec<Tag>,
    pub counts: TagCounts,
    pub prompt_version: String,
    pub model_id: String,
    pub raw: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    tags: Vec<RawTag>,
}

#[derive(Debug, Deserialize)]
struct RawTag {
    tag: String,
    interest: String,
    #[serde(default)]
    rationale: String,
}

/// The season of a date, for the prompt (northern hemisphere; Christmas from mid-November).
pub fn season(date: NaiveDate) -> &'static str {
    match (date.month(), date.day()) {
        (11, d) if d >= 15 => "the Christmas season",
        (12, d) if d <= 24 => "the Christmas season",
        (12 | 1 | 2, _) => "winter",
        (3..=5, _) => "spring",
        (6..=8, _) => "summer",
        _ => "autumn",
    }
}

/// Builds the tags turn and validates its answers.
pub struct TagPredictor<'a> {
    pub prompts: &'a Prompts,
    pub catalog: &'a Catalog,
    pub texts: &'a ItemTexts,
    pub config: TagsConfig,
    /// Item categories and the embedder that places a tag in one.
    pub categories: Option<TagCategories<'a>>,
    /// The catalog's phrases: with `config.grounded`, tags are decoded among them and a tag
    /// outside them is rejected (`not_in_catalog`).
    pub vocabulary: Option<Arc<TagVocabulary>>,
    /// Collaborative filtering over the catalog: with `config.neighbourhood` > 0, the phrases
    /// of the items it ranks first for the user lead each interest's choices.
    pub neighbourhood: Option<&'a (dyn Scorer + Sync)>,
}

impl std::fmt::Debug for TagPredictor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagPredictor")
            .field("config", &self.config)
            .field("categories", &self.categories)
            .field(
                "neighbourhood",
                &self.neighbourhood.map(|s| s.name().to_string()),
            )
            .finish_non_exhaustive()
    }
}

/// What a user's tags are checked against: catalog brands, recent purchases, and each
/// interest's words.
struct UserRules<'i> {
    brands: Vec<BTreeSet<String>>,
    recent: Vec<BTreeSet<String>>,
    /// Interest name → stems of its name, description and evidence items.
    context: BTreeMap<&'i str, BTreeSet<String>>,
}

impl UserRules<'_> {
    /// The rule a tag breaks before duplicates and categories are considered, if any.
    fn broken(
        &self,
        tag: &str,
        interest: &str,
        vocabulary: Option<&TagVocabulary>,
    ) -> Option<&'static str> {
        let Some(ctx) = self.context.get(interest) else {
            return Some("unknown_interest");
        };
        if !well_formed(tag) {
            Some("format")
        } else if vocabulary.is_some_and(|v| !v.contains(tag)) {
            Some("not_in_catalog")
        } else if mentions_brand(tag, &self.brands) {
            Some("brand")
        } else if all_generic(tag) {
            Some("generic")
        } else if copies(tag, &self.recent) {
            Some("recent_copy")
        } else if !relevant(tag, ctx) {
            Some("irrelevant")
        } else {
            None
        }
    }
}

/// What places a tag in an item category.
#[derive(Debug, Clone, Copy)]
pub struct TagCategories<'a> {
    pub embedder: &'a Embedder,
    pub categories: &'a Categories,
}

impl TagCategories<'_> {
    /// The category nearest `tag`'s embedding.
    pub fn of(&self, tag: &str) -> Result<usize, EmbedError> {
        let v = self.embedder.embed(&[tag])?;
        Ok(self.categories.nearest(&v[0]))
    }
}

impl TagPredictor<'_> {
    /// The rules of one user's tags.
    fn rules<'i>(
        &self,
        interests: &'i UserInterests,
        history: &History,
        as_of: NaiveDate,
    ) -> UserRules<'i> {
        let brands: Vec<BTreeSet<String>> = self
            .catalog
            .items()
            .iter()
            .filter_map(|i| i.brand.as_deref())
            .map(stems)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let recent: Vec<BTreeSet<String>> = self
            .recent_items(history, as_of)
            .into_iter()
            .map(|ix| stems(self.texts.compact(ix)))
            .collect();
        let context = interests
            .interests
            .iter()
            .map(|i| {
                let mut words = stems(&i.name);
                words.extend(stems(&i.description));
                for e in &i.evidence {
                    if let Some(ix) = self.catalog.ix(&e.item) {
                        words.extend(stems(self.texts.compact(ix)));
                    }
                }
                (i.name.as_str(), words)
            })
            .collect();
        UserRules {
            brands,
            recent,
            context,
        }
    }

    /// The grammar of a user's tags answer: each interest's tags among the catalog phrases
    /// related to it that break no rule; `None` when tags are not grounded or no interest has
    /// a phrase.
    pub fn grammar(
        &self,
        interests: &UserInterests,
        history: &History,
        as_of: NaiveDate,
        part: Part,
    ) -> Option<String> {
        let vocabulary = self
            .vocabulary
            .as_deref()
            .filter(|_| self.config.grounded)?;
        let rules = self.rules(interests, history, as_of);
        let near = self.near_phrases(vocabulary, history);
        let choices: Vec<InterestChoices<'_>> = interests
            .interests
            .iter()
            .map(|i| {
                let name = stems(&i.name);
                let context = rules.context[i.name.as_str()].clone();
                let phrases = vocabulary.choices(
                    &ChoiceContext {
                        name,
                        context,
                        near: near.clone(),
                    },
                    self.config.choices_per_interest,
                    part,
                    |p| rules.broken(p, &i.name, Some(vocabulary)).is_some(),
                );
                InterestChoices {
                    name: &i.name,
                    phrases,
                }
            })
            .collect();
        tags_grammar(
            &choices,
            AnswerShape {
                // as many as asked: the model otherwise stops after a few
                min_tags: self.config.per_round,
                max_tags: self.config.per_round,
            },
        )
    }

    pub fn schema(&self, interests: &[String]) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "tags": {
                    "type": "array",
                    "minItems": self.config.per_round,
                    "maxItems": self.config.per_round,
                    "items": {
                        "type": "object",
                        "properties": {
                            "interest": {"enum": interests},
                            "tag": {"type": "string", "pattern": "^[a-z-]{2,20}( [a-z-]{2,20}){1,3}$"}
                        },
                        "required": ["interest", "tag"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["tags"],
            "additionalProperties": false
        })
    }

    /// Names of items bought in the last `recent_days` before as-of, newest first.
    /// The catalog phrases of the `config.neighbourhood` items the neighbourhood scorer ranks
    /// first for the user's purchases (none without one).
    fn near_phrases(&self, vocabulary: &TagVocabulary, history: &History) -> BTreeSet<String> {
        let (Some(scorer), n) = (self.neighbourhood, self.config.neighbourhood) else {
            return BTreeSet::new();
        };
        if n == 0 {
            return BTreeSet::new();
        }
        let events: Vec<&recgpt_data::Behavior> = history.events.iter().collect();
        let user = UserItems::from_events(&history.user, &events);
        let mut scores = vec![0f32; self.catalog.len()];
        scorer.score(&user, &mut scores);
        top_k(&scores, n, &HashSet::new())
            .into_iter()
            .flat_map(|ix| vocabulary.phrases_of(self.texts.compact(ix)))
            .collect()
    }

    fn recent_items(&self, history: &History, as_of: NaiveDate) -> Vec<u32> {
        let since = as_of - chrono::Days::new(self.config.recent_days as u64);
        let mut seen = BTreeSet::new();
        history
            .events
            .iter()
            .rev()
            .filter(|e| e.kind == BehaviorKind::Purchase && e.at.date() >= since)
            .filter_map(|e| e.item)
            .filter(|ix| seen.insert(*ix))
            .collect()
    }

    /// The follow-up turn asking for tags; `None` without interests. `part`: the share of the
    /// catalog phrases this answer is offered (one per sampled answer of the user).
    pub fn follow_up(
        &self,
        interests: &UserInterests,
        history: &History,
        as_of: NaiveDate,
        part: Part,
    ) -> Result<Option<FollowUp>, PromptError> {
        if interests.interests.is_empty() {
            return Ok(None);
        }
        let recent: Vec<&str> = self
            .recent_items(history, as_of)
            .into_iter()
            .take(5)
            .map(|ix| self.texts.compact(ix))
            .collect();
        let names: Vec<String> = interests.interests.iter().map(|i| i.name.clone()).collect();
        let messages = self.prompts.render(
            Task::Tags,
            json!({
                "as_of": as_of.to_string(),
                "season": season(as_of),
                "interests": interests.interests,
                "recent": recent,
                "count": self.config.per_round,
            }),
        )?;
        Ok(Some(FollowUp {
            // the system prompt is already in the conversation
            messages: messages.into_iter().skip(1).collect(),
            schema: Some(self.schema(&names)),
            grammar: self.grammar(interests, history, as_of, part),
            max_tokens: self.config.max_tokens,
            repeat_penalty: self.config.repeat_penalty,
        }))
    }

    /// Validates a user's tag answers (all rounds) and fills from the fallback pool.
    pub fn validate(
        &self,
        interests: &UserInterests,
        history: &History,
        as_of: NaiveDate,
        answers: &[Generation],
        model_id: &str,
    ) -> Result<UserTags, EmbedError> {
        let mut counts = TagCounts {
            answers: answers.len(),
            ..TagCounts::default()
        };
        let rules = self.rules(interests, history, as_of);
        let vocabulary = self.vocabulary.as_deref().filter(|_| self.config.grounded);
        let mut kept: Vec<Tag> = Vec::new();
        let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        let mut per_category: BTreeMap<usize, usize> = BTreeMap::new();
        let reject = |counts: &mut TagCounts, reason: &str| {
            *counts.rejected.entry(reason.to_string()).or_default() += 1;
        };
        let mut consider =
            |mut tag: Tag, counts: &mut TagCounts, kept: &mut Vec<Tag>| -> Result<(), EmbedError> {
                let reason = rules
                    .broken(&tag.tag, &tag.interest, vocabulary)
                    .or_else(|| seen.contains(&stems(&tag.tag)).then_some("duplicate"));
                if let Some(r) = reason {
                    reject(counts, r);
                    return Ok(());
                }
                if let Some(c) = &self.categories {
                    let category = c.of(&tag.tag)?;
                    let n = per_category.entry(category).or_default();
                    if *n >= self.config.max_per_category {
                        reject(counts, "category_full");
                        return Ok(());
                    }
                    *n += 1;
                    tag.category = Some(c.categories.name(category).to_string());
                }
                seen.insert(stems(&tag.tag));
                kept.push(tag);
                Ok(())
            };

        let mut parsed: Vec<std::vec::IntoIter<RawTag>> = Vec::new();
        for generation in answers {
            let answer: Option<Answer> = match generation.finish {
                Finish::Stop => serde_json::from_str(&generation.text).ok(),
                Finish::Length => {
                    counts.cut_off += 1;
                    None
                }
            };
            match answer {
                Some(answer) => {
                    counts.proposed += answer.tags.len();
                    parsed.push(answer.tags.into_iter());
                }
                None => counts.unparsable += 1,
            }
        }
        // the answers' tags in turn (first of each, then second …), so that each sampled
        // answer is represented, until `target` are kept (RecGPT samples more than it keeps)
        'rounds: loop {
            let mut any = false;
            for raw in parsed.iter_mut().filter_map(Iterator::next) {
                any = true;
                if kept.len() >= self.config.target {
                    break 'rounds;
                }
                let tag = Tag {
                    tag: raw.tag.trim().to_string(),
                    interest: raw.interest,
                    rationale: raw.rationale.trim().to_string(),
                    source: "model".into(),
                    category: None,
                };
                consider(tag, &mut counts, &mut kept)?;
            }
            if !any {
                break;
            }
        }
        counts.from_model = kept.len();
        if self.config.fallback && kept.len() < self.config.target {
            let mut ignored = TagCounts::default();
            for tag in self.fallback_pool(interests, history) {
                if kept.len() >= self.config.target {
                    break;
                }
                consider(tag, &mut ignored, &mut kept)?;
            }
        }
        counts.from_fallback = kept.len() - counts.from_model;
        Ok(UserTags {
            user: history.user.clone(),
            tags: kept,
            counts,
            prompt_version: self.prompts.version(Task::Tags),
            model_id: model_id.to_string(),
            raw: answers.iter().map(|g| g.text.clone()).collect(),
        })
    }

    /// `tags` validated again from its raw answers under this predictor's settings (a cached
    /// user's answers under other validation settings, see [`TagsConfig::for_generation`]).
    /// Raw answers keep no finish reason: the cut-off count is carried over (a cut answer
    /// does not parse, so it counts as unparsable either way).
    pub fn revalidate(
        &self,
        tags: &UserTags,
        interests: &UserInterests,
        history: &History,
        as_of: NaiveDate,
    ) -> Result<UserTags, EmbedError> {
        let answers: Vec<Generation> = tags
            .raw
            .iter()
            .map(|text| Generation {
                text: text.clone(),
                finish: Finish::Stop,
                prompt_tokens: 0,
                shared_prompt_tokens: 0,
                generated_tokens: 0,
            })
            .collect();
        let mut again = self.validate(interests, history, as_of, &answers, &tags.model_id)?;
        again.counts.cut_off = tags.counts.cut_off;
        Ok(again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasons() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(season(d("2011-12-10")), "the Christmas season");
        assert_eq!(season(d("2011-11-01")), "autumn");
        assert_eq!(season(d("2011-12-28")), "winter");
        assert_eq!(season(d("2011-07-01")), "summer");
    }
}
