//! Interest keys: equivalent interests of different users share explanation-cache entries.
//!
//! An interest's key is its name normalised (lower case, words of letters and digits, stop
//! words dropped, each word stemmed, duplicates dropped, order kept): "Vintage Tea-Cups" and
//! "vintage teacup" differ, "Vintage tea cups" and "vintage  TEA CUP" do not. A new key is then
//! compared with every key seen before by the cosine of their MiniLM embeddings: at or above
//! `[explain] key_similarity` it takes the older key ("vintage teacups" → "vintage tea cup").
//! Keys and their vectors live in the [`ExplanationStore`], so the mapping is the same in every
//! process and run.

use std::collections::HashMap;

use recgpt_data::text::{stem, words, STOP_WORDS};
use recgpt_retrieval::embed::{cosine, EmbedError, Embedder};

use crate::{ExplanationStore, StoreError};

/// Errors resolving keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("explanation store: {0}")]
    Store(#[from] StoreError),
}

/// The normalised text of an interest name.
pub fn normalise(name: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for w in words(name) {
        if STOP_WORDS.contains(&w.as_str()) {
            continue;
        }
        let s = stem(&w);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

/// Maps interest names to keys, remembering every key it has seen.
#[derive(Debug)]
pub struct InterestKeys {
    similarity: f32,
    /// Keys with their embeddings, as stored.
    known: Vec<(String, Vec<f32>)>,
    /// Normalised text → key, for texts already resolved.
    resolved: HashMap<String, String>,
}

impl InterestKeys {
    /// The keys in `store`; a new key joins an old one at cosine ≥ `similarity`.
    pub fn load(store: &dyn ExplanationStore, similarity: f32) -> Result<Self, StoreError> {
        let known = store.interest_keys()?;
        let resolved = known.iter().map(|(k, _)| (k.clone(), k.clone())).collect();
        Ok(Self {
            similarity,
            known,
            resolved,
        })
    }

    /// The key of each of `names`, in order; new keys are stored.
    pub fn resolve(
        &mut self,
        store: &dyn ExplanationStore,
        embedder: &Embedder,
        names: &[&str],
    ) -> Result<Vec<String>, KeyError> {
        let normal: Vec<String> = names.iter().map(|n| normalise(n)).collect();
        let mut new: Vec<&str> = normal
            .iter()
            .filter(|n| !self.resolved.contains_key(n.as_str()))
            .map(String::as_str)
            .collect();
        new.sort_unstable();
        new.dedup();
        let vectors = embedder.embed(&new)?;
        for (text, vector) in new.iter().zip(vectors) {
            let best = self
                .known
                .iter()
                .map(|(k, v)| (k, cosine(v, &vector)))
                .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)));
            let key = match best {
                Some((k, s)) if s >= self.similarity => k.clone(),
                _ => {
                    store.put_interest_key(text, &vector)?;
                    self.known.push((text.to_string(), vector.to_vec()));
                    text.to_string()
                }
            };
            self.resolved.insert(text.to_string(), key);
        }
        Ok(normal.iter().map(|n| self.resolved[n].clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_spacing_plurals_and_stop_words() {
        assert_eq!(normalise("Vintage  Tea Cups"), "vintage tea cup");
        assert_eq!(normalise("vintage tea cup"), "vintage tea cup");
        assert_eq!(
            normalise("Tea-cups of the Vintage kind"),
            "tea cup vintage kind"
        );
        assert_eq!(normalise("Parties, parties!"), "party");
        assert_ne!(normalise("vintage teacups"), normalise("vintage tea cups"));
    }
}
