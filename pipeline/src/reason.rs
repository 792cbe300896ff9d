//! The LLM stages together: interests, then tags in the same conversations.
//!
//! Each user's interest rounds are decoded together (they share the narrative's KV cache);
//! once all rounds of a user are in, their pooled interests are validated and every round's
//! conversation continues with the tags turn, reusing its KV cache. Keep the backend's batch
//! size at least the number of rounds so that a user's rounds stay in one batch.

use chrono::NaiveDate;
use recgpt_data::History;
use recgpt_retrieval::baselines::Scorer;
use serde::{Deserialize, Serialize};

use recgpt_data::Catalog;

use crate::categories::Categories;
use crate::compress::Narrative;
use crate::config::Config;
use crate::embed::Embedder;
use crate::interests::{InterestMiner, ThemeIndex, UserInterests};
use crate::llm::{FollowUp, Generation, LlmBackend, LlmError, TokenUse};
use crate::prompts::{PromptError, Prompts};
use crate::tags::{Part, TagCategories, TagPredictor, TagVocabulary, UserTags};
use recgpt_data::text::ItemTexts;

/// Errors of the LLM stages.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A template failed to render: a bug or a bad template; not retryable.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// The backend failed; see [`LlmError`] for which are retryable.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// Placing a tag in a category failed (the embedder); not retryable.
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
}

/// One user's interests and tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserReasoning {
    pub interests: UserInterests,
    pub tags: UserTags,
}

/// Runs interests and tags for users.
#[derive(Debug)]
pub struct Reasoner<'a> {
    pub miner: InterestMiner<'a>,
    pub predictor: TagPredictor<'a>,
}

impl<'a> Reasoner<'a> {
    /// Both stages over one catalog's item texts and themes.
    pub fn new(
        prompts: &'a Prompts,
        catalog: &'a Catalog,
        texts: &'a ItemTexts,
        themes: &'a ThemeIndex,
        config: &Config,
    ) -> Self {
        Self {
            miner: InterestMiner {
                prompts,
                catalog,
                texts,
                themes,
                config: config.interests.clone(),
                sampling: config.llm.sampling,
            },
            predictor: TagPredictor {
                prompts,
                catalog,
                texts,
                config: config.tags.clone(),
                categories: None,
                vocabulary: config
                    .tags
                    .grounded
                    .then(|| std::sync::Arc::new(TagVocabulary::of(texts))),
                neighbourhood: None,
            },
        }
    }

    /// Leads each interest's tag choices with the phrases of the items `scorer` ranks first
    /// for the user (`tags.neighbourhood` of them).
    pub fn with_neighbourhood(mut self, scorer: &'a (dyn Scorer + Sync)) -> Self {
        self.predictor.neighbourhood = Some(scorer);
        self
    }

    /// Keeps at most `tags.max_per_category` tags per item category.
    pub fn with_categories(mut self, embedder: &'a Embedder, categories: &'a Categories) -> Self {
        self.predictor.categories = Some(TagCategories {
            embedder,
            categories,
        });
        self
    }

    /// Interests and tags for each `(history, narrative)`, in order, and the tokens used.
    pub fn run(
        &self,
        llm: &dyn LlmBackend,
        users: &[(&History, &Narrative)],
    ) -> Result<(Vec<UserReasoning>, TokenUse), StageError> {
        let rounds = self.miner.config.rounds.max(1);
        let mut requests = Vec::new();
        for (_, narrative) in users {
            requests.extend(self.miner.requests(narrative)?);
        }
        let as_of = |u: usize| -> NaiveDate { users[u].1.as_of };
        let mut interest_answers: Vec<Vec<Generation>> = vec![Vec::new(); users.len()];
        let mut interests: Vec<Option<UserInterests>> = vec![None; users.len()];
        let mut prompt_error: Option<PromptError> = None;

        let mut follow_up = |offset: usize, answers: &[Generation]| -> Vec<Option<FollowUp>> {
            let mut turns = vec![None; answers.len()];
            for (i, answer) in answers.iter().enumerate() {
                let u = (offset + i) / rounds;
                interest_answers[u].push(answer.clone());
                if interest_answers[u].len() < rounds {
                    continue;
                }
                let found = self
                    .miner
                    .validate(users[u].0, &interest_answers[u], llm.model_id());
                // every round of this user in this batch continues with a tags turn, each
                // offered its own part of the catalog phrases
                for (j, slot) in turns.iter_mut().enumerate() {
                    if (offset + j) / rounds != u {
                        continue;
                    }
                    let part = Part {
                        index: (offset + j) % rounds,
                        of: rounds,
                    };
                    match self.predictor.follow_up(&found, users[u].0, as_of(u), part) {
                        Ok(turn) => *slot = turn,
                        Err(e) => prompt_error = Some(e),
                    }
                }
                interests[u] = Some(found);
            }
            turns
        };
        let answers = llm.generate_with_follow_up(&requests, &mut follow_up)?;
        if let Some(e) = prompt_error {
            return Err(e.into());
        }

        let mut tokens = TokenUse::default();
        let mut tag_answers: Vec<Vec<Generation>> = vec![Vec::new(); users.len()];
        for (i, (first, second)) in answers.iter().enumerate() {
            tokens.add(first);
            if let Some(g) = second {
                tokens.add(g);
                tag_answers[i / rounds].push(g.clone());
            }
        }
        let out = interests
            .into_iter()
            .enumerate()
            .map(|(u, found)| {
                let found = found.expect("every user's rounds were answered");
                let tags = self.predictor.validate(
                    &found,
                    users[u].0,
                    as_of(u),
                    &tag_answers[u],
                    llm.model_id(),
                )?;
                Ok(UserReasoning {
                    interests: found,
                    tags,
                })
            })
            .collect::<Result<Vec<_>, StageError>>()?;
        Ok((out, tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Finish;

    #[test]
    fn generated_tokens_are_counted_at_the_context_they_were_decoded_after() {
        let answer = |prompt, generated| Generation {
            text: String::new(),
            finish: Finish::Stop,
            prompt_tokens: prompt,
            shared_prompt_tokens: 0,
            generated_tokens: generated,
        };
        let mut tokens = TokenUse::default();
        tokens.add(&answer(10, 3)); // after 10, 11, 12
        assert_eq!(tokens.generated_context, 33);
        tokens.add(&answer(100, 1)); // after 100
        assert_eq!(tokens.generated_context, 133);
        assert_eq!(tokens.mean_context(), 133.0 / 4.0);
        tokens.add(&answer(7, 0));
        assert_eq!(tokens.generated_context, 133);
        let mut both = TokenUse::default();
        both.merge(&tokens);
        both.merge(&tokens);
        assert_eq!(both.generated_context, 266);
        assert_eq!(both.mean_context(), tokens.mean_context());
        assert_eq!(both.less(&tokens), tokens);
    }
}
