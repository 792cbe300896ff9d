//! Stage `explain`: why an item suits an interest, generated once per (interest, item) pair and
//! cached, as in the RecGPT report: many users share an interest, so one generation serves
//! them all.
//!
//! For each pair the cache (an [`ExplanationStore`]: the results store's `explanations`) is looked up by (interest key,
//! item, prompt version, model id); the misses of a call are generated together in one batch
//! under a JSON schema, checked by the rules in [`validate`], and a rejected answer is asked
//! again (up to `attempts` answers, later ones sampled at `retry_temperature` with another
//! seed). When every answer is rejected, a template is used and labelled `fallback`. Pairs of a
//! call that share a key are generated once. With a [`Verify`] (the judge, `[judge]
//! explanations`), an answer the rules keep is also graded before it is stored, and one it
//! fails is asked again like one the rules reject.
//!
//! Seeds depend on the pair (interest key and item), not on the user asking, so the cached text
//! is the same whichever user's batch generated it.

pub mod keys;
pub mod reuse;
mod store;
pub mod validate;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use recgpt_data::{Catalog, ItemIx};
use serde::{Deserialize, Serialize};
use serde_json::json;

use recgpt_data::text::ItemTexts;
use recgpt_llm::prompts::{PromptError, Prompts, Task};
use recgpt_llm::{GenerateRequest, LlmBackend, LlmError, Sampling, TokenUse};
use recgpt_retrieval::categories::Categories;
pub use store::{Explanation, ExplanationKey, ExplanationStore, StoreError};
use validate::Facts;

/// `[explain]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExplainConfig {
    /// Word range of a kept explanation.
    pub min_words: usize,
    pub max_words: usize,
    /// Answer tokens per generation.
    pub max_tokens: usize,
    /// Model answers per pair before the template is used.
    pub attempts: usize,
    /// Temperature of the second and later answers (the first uses `[llm.sampling]`).
    pub retry_temperature: f32,
    /// Cosine at or above which two interests share cache entries (see [`keys`]).
    pub key_similarity: f32,
    /// Decode each answer under a grammar whose words are the item's title and category, the
    /// interest's name and [`validate::REASON_WORDS`] ([`grounded_grammar`]): the sentence
    /// cannot name what the catalog does not say. Left out of the serialised settings when off,
    /// so that turning it on is the only change it makes to stored inputs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grounded: bool,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        Self {
            min_words: 6,
            max_words: 30,
            max_tokens: 80,
            attempts: 3,
            retry_temperature: 0.8,
            key_similarity: 0.9,
            grounded: false,
        }
    }
}

/// Errors of the stage.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("explanation store: {0}")]
    Store(#[from] StoreError),
}

/// One (interest, item) pair to explain.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The interest as the user's model named and described it.
    pub interest: String,
    pub description: String,
    /// Its normalised key (see [`keys`]).
    pub key: String,
    pub item: ItemIx,
}

/// What a call did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainCounts {
    /// Pairs asked for.
    pub requested: usize,
    /// Pairs answered from the cache (or by a pair of the same call with the same key).
    pub hits: usize,
    /// Model answers generated (retries included).
    pub generations: usize,
    /// Pairs whose explanation came from the model.
    pub generated: usize,
    /// Pairs that fell back to the template.
    pub fallbacks: usize,
    /// Rejected model answers by rule (see [`validate`]; `unparsable` when not JSON).
    pub rejected: BTreeMap<String, usize>,
    /// Tokens of the generated answers.
    #[serde(default)]
    pub tokens: TokenUse,
    /// Answers the rules kept that the [`Verify`] graded (none without one), those it failed
    /// (also counted in `rejected` by point), its tokens and milliseconds: the judge's cost.
    #[serde(default)]
    pub judged: usize,
    #[serde(default)]
    pub judge_failed: usize,
    #[serde(default)]
    pub judge_tokens: TokenUse,
    #[serde(default)]
    pub judge_ms: u64,
}

impl ExplainCounts {
    pub fn add(&mut self, other: &ExplainCounts) {
        self.requested += other.requested;
        self.hits += other.hits;
        self.generations += other.generations;
        self.generated += other.generated;
        self.fallbacks += other.fallbacks;
        self.tokens.merge(&other.tokens);
        self.judged += other.judged;
        self.judge_failed += other.judge_failed;
        self.judge_tokens.merge(&other.judge_tokens);
        self.judge_ms += other.judge_ms;
        for (k, v) in &other.rejected {
            *self.rejected.entry(k.clone()).or_default() += v;
        }
    }

    /// Hits ÷ requested pairs.
    pub fn hit_rate(&self) -> f64 {
        if self.requested == 0 {
            0.0
        } else {
            self.hits as f64 / self.requested as f64
        }
    }
}

/// An answer the rules kept, for a [`Verify`] to grade.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'p> {
    pub pair: &'p Pair,
    /// The item's title as the prompt gave it, and its category.
    pub title: &'p str,
    pub category: Option<&'p str>,
    pub text: &'p str,
}

/// A second check of the answers the rules keep (the judge, `recgpt_pipeline::judge`): an
/// answer it rejects is asked again like one the rules reject, and the pair falls back to the
/// template after the last attempt.
pub trait Verify: std::fmt::Debug + Sync {
    /// What its verdicts depend on (its prompt and model): part of the cache key's prompt
    /// version, so an explanation stored without it, or under another, is not taken for one
    /// it kept.
    fn id(&self) -> String;

    /// Per candidate, `None` when kept, else why not (`judge:POINT`); with the tokens used.
    fn verify(&self, candidates: &[Candidate])
        -> Result<(Vec<Option<String>>, TokenUse), LlmError>;
}

#[derive(Debug, Deserialize)]
struct Answer {
    explanation: String,
}

/// The explanation in a model answer (`{"explanation": "…"}`), its whitespace collapsed; `None`
/// when the answer does not parse.
pub fn answer_text(answer: &str) -> Option<String> {
    let a: Answer = serde_json::from_str(answer).ok()?;
    Some(
        a.explanation
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The explain prompt's version id in `prompts` with the rules' version (`explain@…+rules6`),
/// `+grounded…` when `config` decodes under the grounded grammar, and the id of the [`Verify`]
/// that grades what the rules keep, if any: the cache key's `prompt_version`.
pub fn version(prompts: &Prompts, config: &ExplainConfig, verifier: Option<&str>) -> String {
    let mut v = format!(
        "{}+rules{}",
        prompts.version(Task::Explain),
        validate::RULES_VERSION
    );
    if let Some(id) = verifier {
        v = format!("{v}+{id}");
    }
    if config.grounded {
        v = format!("{v}+grounded{}", validate::RULES_VERSION);
    }
    v
}

/// The GBNF of an answer `{"explanation": "You …."}` of `min_words` to `max_words` words
/// whose words after the first ("You" or "Your") are the words of `facts` (the item's title and
/// category and the interest's name) and [`validate::REASON_WORDS`], lower case, separated by a
/// space or a comma and a space: it accepts only answers the schema accepts, and none that
/// the `ungrounded` rule rejects.
pub fn grounded_grammar(facts: &str, min_words: usize, max_words: usize) -> String {
    use std::fmt::Write as _;

    let mut vocabulary: Vec<String> = recgpt_data::text::words(facts);
    vocabulary.extend(
        validate::REASON_WORDS
            .iter()
            // contraction endings are not words of their own here
            .filter(|w| !["re", "ll", "ve", "d", "s", "t"].contains(*w))
            .map(|w| w.to_string()),
    );
    vocabulary.sort();
    vocabulary.dedup();
    let words: Vec<&str> = vocabulary.iter().map(String::as_str).collect();
    let mut g = String::new();
    let _ = writeln!(
        g,
        "root ::= \"{{\\\"explanation\\\": \\\"\" (\"You\" | \"Your\") (sep w-0){{{},{}}} \".\\\"}}\"",
        min_words.max(1) - 1,
        max_words.max(1) - 1
    );
    let _ = writeln!(g, "sep ::= \" \" | \", \"");
    recgpt_llm::gbnf::trie_rules("w", &words, &mut g);
    g
}

/// Generates and caches explanations.
#[derive(Debug)]
pub struct Explainer<'a> {
    pub prompts: &'a Prompts,
    pub catalog: &'a Catalog,
    pub texts: &'a ItemTexts,
    pub categories: Option<&'a Categories>,
    pub config: ExplainConfig,
    pub sampling: Sampling,
    /// Grades what the rules keep before it is stored (none: the rules alone decide).
    pub verifier: Option<&'a dyn Verify>,
}

impl<'a> Explainer<'a> {
    /// The stage over one catalog's item texts, with its `[explain]` section and the LLM's
    /// sampling.
    pub fn new(
        prompts: &'a Prompts,
        catalog: &'a Catalog,
        texts: &'a ItemTexts,
        categories: Option<&'a Categories>,
        config: &ExplainConfig,
        sampling: Sampling,
    ) -> Self {
        Self {
            prompts,
            catalog,
            texts,
            categories,
            config: config.clone(),
            sampling,
            verifier: None,
        }
    }

    /// The stage with `verifier` grading what the rules keep.
    pub fn with_verifier(self, verifier: Option<&'a dyn Verify>) -> Self {
        Self { verifier, ..self }
    }

    /// The item's category name, when categories are known.
    pub fn category(&self, item: ItemIx) -> Option<&str> {
        let categories = self.categories?;
        let id = &self.catalog.get(item).id;
        categories.of_item(id).map(|c| categories.name(c))
    }

    /// The cache key's prompt version ([`version`]): what an explanation's text depends on
    /// besides the model.
    pub fn version(&self) -> String {
        version(
            self.prompts,
            &self.config,
            self.verifier.map(|v| v.id()).as_deref(),
        )
    }

    /// The cache key of `pair` for `model_id`.
    pub fn key(&self, pair: &Pair, model_id: &str) -> ExplanationKey {
        self.key_with(pair, model_id, &self.version())
    }

    fn key_with(&self, pair: &Pair, model_id: &str, version: &str) -> ExplanationKey {
        ExplanationKey {
            interest_key: pair.key.clone(),
            item: self.catalog.get(pair.item).id.clone(),
            prompt_version: version.to_string(),
            model_id: model_id.to_string(),
        }
    }

    /// The schema every answer follows ([`validate::answer_schema`]).
    pub fn schema(&self) -> serde_json::Value {
        validate::answer_schema(self.config.min_words, self.config.max_words)
    }

    /// The request for `pair`'s `attempt`-th answer (0 first).
    pub fn request(&self, pair: &Pair, attempt: usize) -> Result<GenerateRequest, PromptError> {
        let messages = self.prompts.render(
            Task::Explain,
            json!({
                "interest": pair.interest,
                "description": pair.description,
                "title": self.texts.compact(pair.item),
                "category": self.category(pair.item),
                "min_words": self.config.min_words,
                "max_words": self.config.max_words,
            }),
        )?;
        let temperature = if attempt == 0 {
            self.sampling.temperature
        } else {
            self.sampling.temperature.max(self.config.retry_temperature)
        };
        let item = &self.catalog.get(pair.item).id;
        let seed = self
            .sampling
            .seed_for(&format!("{}\u{1f}{item}\u{1f}{attempt}", pair.key));
        let grammar = self.config.grounded.then(|| {
            let title = self.texts.compact(pair.item);
            let category = self.category(pair.item).unwrap_or_default();
            grounded_grammar(
                &format!("{title} {category} {}", pair.interest),
                self.config.min_words,
                self.config.max_words,
            )
        });
        Ok(GenerateRequest {
            messages,
            schema: Some(self.schema()),
            grammar,
            repeat_penalty: 1.0,
            max_tokens: self.config.max_tokens,
            temperature,
            seed,
        })
    }

    /// The model's text when it passes every rule, else the rule it broke.
    pub fn check(&self, pair: &Pair, answer: &str) -> Result<String, &'static str> {
        let text = answer_text(answer).ok_or("unparsable")?;
        let title = &self.catalog.get(pair.item).title;
        let facts = Facts::new(
            title,
            self.category(pair.item),
            &pair.interest,
            &pair.description,
        );
        match validate::rejection(
            &text,
            title,
            &facts,
            self.config.min_words,
            self.config.max_words,
        ) {
            Some(reason) => Err(reason),
            None => Ok(text),
        }
    }

    /// The labelled template used when every answer was rejected.
    pub fn fallback(&self, pair: &Pair) -> String {
        format!(
            "Picked for your interest in {}: {}.",
            pair.interest.to_lowercase(),
            self.texts.compact(pair.item)
        )
    }

    /// The explanation of every pair, in order: cached ones looked up, the others generated
    /// (all misses of the call in one batch per attempt) and stored.
    pub fn explain(
        &self,
        llm: &dyn LlmBackend,
        store: &dyn ExplanationStore,
        pairs: &[Pair],
    ) -> Result<(Vec<Explanation>, ExplainCounts), ExplainError> {
        let mut counts = ExplainCounts {
            requested: pairs.len(),
            ..ExplainCounts::default()
        };
        let version = self.version();
        let keys: Vec<ExplanationKey> = pairs
            .iter()
            .map(|p| self.key_with(p, llm.model_id(), &version))
            .collect();
        let mut done: HashMap<&ExplanationKey, Explanation> = HashMap::new();
        // the first pair of each missing key, in order
        let mut pending: Vec<usize> = Vec::new();
        let mut seen: HashSet<&ExplanationKey> = HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            if !seen.insert(key) {
                continue;
            }
            match store.explanation(key)? {
                Some(e) => {
                    done.insert(key, e);
                }
                None => pending.push(i),
            }
        }
        counts.hits = pairs.len() - pending.len();
        // Pairs of one interest side by side: their prompts then share the instructions and the
        // interest line, which the backend evaluates once per run of such prompts.
        pending.sort_by(|&a, &b| {
            let key = |i: usize| (&pairs[i].interest, &pairs[i].description, &keys[i].item);
            key(a).cmp(&key(b))
        });
        let mut rejected: HashMap<usize, Vec<String>> = HashMap::new();
        for attempt in 0..self.config.attempts {
            if pending.is_empty() {
                break;
            }
            let requests = pending
                .iter()
                .map(|&i| self.request(&pairs[i], attempt))
                .collect::<Result<Vec<_>, _>>()?;
            let answers = llm.generate(&requests)?;
            counts.generations += answers.len();
            for answer in &answers {
                counts.tokens.add(answer);
            }
            // rejected answers, by pair: asked again at the next attempt
            let mut failed: Vec<(usize, String)> = Vec::new();
            let mut kept: Vec<(usize, String)> = Vec::new();
            for (&i, answer) in pending.iter().zip(&answers) {
                match self.check(&pairs[i], &answer.text) {
                    Ok(text) => kept.push((i, text)),
                    Err(reason) => failed.push((i, reason.to_string())),
                }
            }
            let verdicts = match self.verifier {
                Some(verifier) if !kept.is_empty() => {
                    let started = Instant::now();
                    let candidates: Vec<Candidate> = kept
                        .iter()
                        .map(|(i, text)| Candidate {
                            pair: &pairs[*i],
                            title: self.texts.compact(pairs[*i].item),
                            category: self.category(pairs[*i].item),
                            text,
                        })
                        .collect();
                    let (verdicts, tokens) = verifier.verify(&candidates)?;
                    counts.judged += candidates.len();
                    counts.judge_tokens.merge(&tokens);
                    counts.judge_ms += started.elapsed().as_millis() as u64;
                    verdicts
                }
                _ => vec![None; kept.len()],
            };
            for ((i, text), verdict) in kept.into_iter().zip(verdicts) {
                match verdict {
                    None => {
                        let why = rejected.remove(&i).unwrap_or_default();
                        let e = self.explanation(&pairs[i], &keys[i], text, "model", why);
                        done.insert(&keys[i], store.put_explanation(&e)?);
                        counts.generated += 1;
                    }
                    Some(reason) => {
                        counts.judge_failed += 1;
                        failed.push((i, reason));
                    }
                }
            }
            for (i, reason) in &failed {
                *counts.rejected.entry(reason.clone()).or_default() += 1;
                rejected.entry(*i).or_default().push(reason.clone());
            }
            // in the order of `pending` (pairs of one interest side by side)
            let again: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
            pending.retain(|i| again.contains(i));
        }
        for i in pending {
            let text = self.fallback(&pairs[i]);
            let why = rejected.remove(&i).unwrap_or_default();
            let e = self.explanation(&pairs[i], &keys[i], text, "fallback", why);
            done.insert(&keys[i], store.put_explanation(&e)?);
            counts.fallbacks += 1;
        }
        let out = keys.iter().map(|k| done[k].clone()).collect();
        Ok((out, counts))
    }

    fn explanation(
        &self,
        pair: &Pair,
        key: &ExplanationKey,
        text: String,
        source: &str,
        rejected: Vec<String>,
    ) -> Explanation {
        Explanation {
            key: key.clone(),
            interest: pair.interest.clone(),
            text,
            source: source.to_string(),
            rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The retry and fallback logic around a verifier, with a scripted backend and verifier
    //! (the real model and judge are tested end to end in `tests/e2e/explain.rs`).
    use std::cell::RefCell;

    use recgpt_data::Item;
    use recgpt_llm::{Finish, Generation};

    use super::*;

    const GOOD: &str = "A three tier regency cakestand suits your afternoon tea parties.";
    const OTHER: &str = "Its 3 tiers hold cakes for your regency tea parties.";

    /// Answers the first attempt with GOOD and later ones (sampled warmer) with OTHER.
    #[derive(Debug)]
    struct Scripted;

    impl LlmBackend for Scripted {
        fn model_id(&self) -> &str {
            "scripted"
        }

        fn generate(&self, requests: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
            Ok(requests
                .iter()
                .map(|r| Generation {
                    text: json!({"explanation": if r.temperature == 0.0 { GOOD } else { OTHER }})
                        .to_string(),
                    finish: Finish::Stop,
                    prompt_tokens: 100,
                    shared_prompt_tokens: 0,
                    generated_tokens: 20,
                })
                .collect())
        }
    }

    /// Rejects every text that contains `rejects` (as the "true" point).
    #[derive(Debug)]
    struct Judge {
        rejects: &'static str,
    }

    impl Verify for Judge {
        fn id(&self) -> String {
            "judge@test".into()
        }

        fn verify(
            &self,
            candidates: &[Candidate],
        ) -> Result<(Vec<Option<String>>, TokenUse), LlmError> {
            let verdicts = candidates
                .iter()
                .map(|c| {
                    assert_eq!(c.title, "regency cakestand 3 tier");
                    c.text
                        .contains(self.rejects)
                        .then(|| "judge:true".to_string())
                })
                .collect();
            let tokens = TokenUse {
                prompt: 500 * candidates.len(),
                generated: 30 * candidates.len(),
                ..TokenUse::default()
            };
            Ok((verdicts, tokens))
        }
    }

    #[derive(Default)]
    struct Memory(RefCell<HashMap<ExplanationKey, Explanation>>);

    impl ExplanationStore for Memory {
        fn explanation(&self, key: &ExplanationKey) -> Result<Option<Explanation>, StoreError> {
            Ok(self.0.borrow().get(key).cloned())
        }

        fn put_explanation(&self, e: &Explanation) -> Result<Explanation, StoreError> {
            let mut map = self.0.borrow_mut();
            Ok(map
                .entry(e.key.clone())
                .or_insert_with(|| e.clone())
                .clone())
        }

        fn for_each_explanation(
            &self,
            _: &str,
            _: &str,
            _: &mut dyn FnMut(Explanation),
        ) -> Result<(), StoreError> {
            unimplemented!("not used by explain")
        }

        fn for_each_explained_user(
            &self,
            _: &mut dyn FnMut(Vec<(String, String)>),
        ) -> Result<(), StoreError> {
            unimplemented!("not used by explain")
        }

        fn interest_keys(&self) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
            unimplemented!("not used by explain")
        }

        fn put_interest_key(&self, _: &str, _: &[f32]) -> Result<(), StoreError> {
            unimplemented!("not used by explain")
        }
    }

    fn run(judge: Option<&Judge>) -> (Vec<Explanation>, ExplainCounts, String) {
        run_with(judge, false)
    }

    fn run_with(
        judge: Option<&Judge>,
        grounded: bool,
    ) -> (Vec<Explanation>, ExplainCounts, String) {
        let catalog = Catalog::new(vec![Item {
            id: "22423".into(),
            title: "REGENCY CAKESTAND 3 TIER".into(),
            category: Vec::new(),
            brand: None,
            attributes: BTreeMap::new(),
            price: None,
        }]);
        let texts = ItemTexts::new(&catalog, &[]);
        let prompts = Prompts::new();
        let sampling = Sampling {
            temperature: 0.0,
            seed: 1,
        };
        let explainer = Explainer::new(
            &prompts,
            &catalog,
            &texts,
            None,
            &ExplainConfig {
                grounded,
                ..ExplainConfig::default()
            },
            sampling,
        )
        .with_verifier(judge.map(|j| j as &dyn Verify));
        let pair = Pair {
            interest: "Regency tea parties".into(),
            description: "Serving cakes and tea in regency style".into(),
            key: "regency tea parties".into(),
            item: 0,
        };
        let store = Memory::default();
        let (out, counts) = explainer.explain(&Scripted, &store, &[pair]).unwrap();
        (out, counts, explainer.version())
    }

    #[test]
    fn the_grounded_grammar_offers_the_facts_and_reason_words_only() {
        let g = grounded_grammar(
            "regency cakestand 3 tier cakestand regency tea parties",
            6,
            30,
        );
        assert!(
            g.starts_with(
                r#"root ::= "{\"explanation\": \"" ("You" | "Your") (sep w-0){5,29} ".\"}""#
            ),
            "{g}"
        );
        let words = recgpt_llm::gbnf::trie_phrases(&g, "w-0");
        for word in [
            "cakestand",
            "regency",
            "tier",
            "3",
            "suits",
            "parties",
            "a",
            "your",
        ] {
            assert!(words.iter().any(|w| w == word), "{word}: {g}");
        }
        for word in ["pink", "porcelain", "perfect", "italian", "s", "ll"] {
            assert!(!words.iter().any(|w| w == word), "{word}: {g}");
        }
        // grounded answers get their own cache entries
        let (_, _, plain) = run(None);
        let (out, _, grounded) = run_with(None, true);
        assert_eq!(
            grounded,
            format!("{plain}+grounded{}", validate::RULES_VERSION)
        );
        assert_eq!(out[0].key.prompt_version, grounded);
    }

    #[test]
    fn an_answer_the_verifier_fails_is_asked_again_then_falls_back() {
        let (out, counts, unverified) = run(None);
        assert_eq!(
            (out[0].text.as_str(), out[0].source.as_str()),
            (GOOD, "model")
        );
        assert_eq!((counts.judged, counts.generations), (0, 1));

        // the first answer fails the judge; the second passes and is stored with the reason
        let (out, counts, version) = run(Some(&Judge {
            rejects: "afternoon",
        }));
        assert_eq!(
            (out[0].text.as_str(), out[0].source.as_str()),
            (OTHER, "model")
        );
        assert_eq!(out[0].rejected, vec!["judge:true".to_string()]);
        assert_eq!(
            (counts.judged, counts.generations, counts.generated),
            (2, 2, 1)
        );
        assert_eq!(counts.rejected.get("judge:true"), Some(&1));
        assert_eq!(counts.judge_failed, 1);
        assert_eq!(counts.judge_tokens.prompt, 1000);
        // verified explanations live under their own version, not the rules-only one
        assert_eq!(version, format!("{unverified}+judge@test"));
        assert_eq!(out[0].key.prompt_version, version);

        // every answer fails: the template, after the configured attempts
        let (out, counts, _) = run(Some(&Judge { rejects: "regency" }));
        assert_eq!(out[0].source, "fallback");
        assert_eq!(out[0].rejected.len(), ExplainConfig::default().attempts);
        assert_eq!((counts.judged, counts.fallbacks), (3, 1));
    }
}
