//! Validation of mined interests: grounding of evidence in the user's history, rejection of
//! generic interests, merging of near-duplicates.
//!
//! Rules (documented in the README):
//! - text is compared as lower-case words of letters and digits;
//! - evidence is grounded when its words equal an item's words, or their Jaccard similarity
//!   with some history item is at least [`GROUNDING_JACCARD`]; other evidence is hallucinated;
//!   an interest without grounded evidence is rejected;
//! - an interest is generic when its name has no content word outside [`GENERIC_WORDS`]
//!   (after dropping [`STOP_WORDS`]);
//! - two interests are near-duplicates when the content words of their names overlap with
//!   Jaccard ≥ [`DUPLICATE_JACCARD`] or one set contains the other; the later one is merged
//!   into the earlier (evidence united);
//! - an interest is unrelated to its evidence when no content word of its name (plural and
//!   singular alike, see [`stem`]) occurs in the names of its evidence items: RecGPT's
//!   reasonableness filter, in its cheapest form.

use std::collections::BTreeSet;

use recgpt_data::text::{content_words, jaccard, stem, words, GENERIC_WORDS, STOP_WORDS};

pub const GROUNDING_JACCARD: f64 = 0.6;
pub const DUPLICATE_JACCARD: f64 = 0.5;

/// Whether an interest's name shares a (stemmed) content word with its evidence items.
pub fn related(name: &str, evidence_items: &[&str]) -> bool {
    let name: BTreeSet<String> = content_words(name)
        .iter()
        .filter(|w| !GENERIC_WORDS.contains(&w.as_str()))
        .map(|w| stem(w))
        .collect();
    evidence_items
        .iter()
        .flat_map(|item| words(item))
        .any(|w| name.contains(&stem(&w)))
}

/// A description is usable when it has at least three content words, is not degenerate (no
/// content word three times or more) and mentions a word of the interest's name or evidence.
/// A description that reads as one whole sentence: at least four words, closing with a full
/// stop after a word that can end one (not "and", "of", "the" …, which a length cap reached
/// mid-sentence leaves behind).
pub fn whole_sentence(description: &str) -> bool {
    let Some(body) = description.trim().strip_suffix('.') else {
        return false;
    };
    // "and they ." or "neon, p.": the grammar closed the string where the sentence broke off
    if body.ends_with(|c: char| !c.is_alphanumeric()) {
        return false;
    }
    let w = words(body);
    w.len() >= 4
        && w.last().is_some_and(|last| {
            last.len() > 1
                && !STOP_WORDS.contains(&last.as_str())
                && !DANGLING_WORDS.contains(&last.as_str())
        })
}

/// Words a sentence does not end on, beyond the stop words.
const DANGLING_WORDS: &[&str] = &[
    "such",
    "like",
    "as",
    "including",
    "both",
    "either",
    "very",
    "more",
    "most",
    "their",
    "its",
    "his",
    "her",
    "your",
    "our",
    "my",
    "than",
    "into",
    "onto",
    "from",
    "about",
    "is",
    "are",
    "who",
    "which",
    "but",
    "so",
    "because",
    "will",
    "can",
    "they",
    "it",
    "we",
    "you",
    "he",
    "she",
    "that",
    "this",
    "these",
    "those",
    "be",
    "was",
    "were",
    "has",
    "have",
    "had",
    "not",
    "no",
    "each",
    "every",
    "all",
    "any",
    "some",
];

pub fn usable_description(description: &str, name: &str, evidence_items: &[&str]) -> bool {
    let mut counts = std::collections::HashMap::new();
    for w in content_words_list(description) {
        *counts.entry(w).or_insert(0) += 1;
    }
    if counts.len() < 3 || counts.values().any(|&n| n >= 3) {
        return false;
    }
    let described: BTreeSet<String> = counts.keys().map(|w| stem(w)).collect();
    std::iter::once(name)
        .chain(evidence_items.iter().copied())
        .flat_map(words)
        .filter(|w| !GENERIC_WORDS.contains(&w.as_str()) && !STOP_WORDS.contains(&w.as_str()))
        .any(|w| described.contains(&stem(&w)))
}

fn content_words_list(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

pub fn near_duplicates(a: &str, b: &str) -> bool {
    let (a, b) = (content_words(a), content_words(b));
    !a.is_empty()
        && !b.is_empty()
        && (a.is_subset(&b) || b.is_subset(&a) || jaccard(&a, &b) >= DUPLICATE_JACCARD)
}

/// Candidate items for grounding: `(index, word set)`.
#[derive(Debug, Clone)]
pub struct Grounder {
    items: Vec<(u32, Vec<String>, BTreeSet<String>)>,
}

impl Grounder {
    pub fn new(items: impl IntoIterator<Item = (u32, String)>) -> Self {
        Self {
            items: items
                .into_iter()
                .map(|(ix, text)| {
                    let w = words(&text);
                    let set = w.iter().cloned().collect();
                    (ix, w, set)
                })
                .collect(),
        }
    }

    /// The history item `evidence` refers to, if any.
    pub fn ground(&self, evidence: &str) -> Option<u32> {
        let w = words(evidence);
        if w.is_empty() {
            return None;
        }
        if let Some((ix, _, _)) = self.items.iter().find(|(_, iw, _)| *iw == w) {
            return Some(*ix);
        }
        let set: BTreeSet<String> = w.into_iter().collect();
        self.items
            .iter()
            .map(|(ix, _, s)| (jaccard(&set, s), *ix))
            .filter(|(j, _)| *j >= GROUNDING_JACCARD)
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, ix)| ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recgpt_data::text::all_generic;

    #[test]
    fn generic_names() {
        for g in [
            "Shopping",
            "gifts",
            "Home decor",
            "home & gifts",
            "Various items",
        ] {
            assert!(all_generic(g), "{g}");
        }
        for s in [
            "vintage kitchenware",
            "Christmas decorations",
            "garden birds",
        ] {
            assert!(!all_generic(s), "{s}");
        }
    }

    #[test]
    fn relatedness_to_evidence() {
        assert!(related("children's parties", &["party bunting"]));
        assert!(related(
            "vintage kitchenware",
            &["vintage heads and tails card game"]
        ));
        assert!(related("Lunch boxes", &["lunch box i love london"]));
        assert!(!related(
            "garden birds",
            &["vintage heads and tails card game"]
        ));
        assert!(
            !related("home gifts", &["home sweet home mug"]),
            "generic words do not count"
        );
        assert_eq!(stem("glasses"), "glass");
        assert_eq!(stem("mugs"), "mug");
        assert_eq!(stem("glass"), "glass");
        assert_eq!(stem("christmas"), "christmas");
        assert_eq!(stem("cases"), "case");
        assert_eq!(stem("boxes"), "box");
    }

    #[test]
    fn descriptions() {
        let ev = ["doormat red retrospot"];
        assert!(usable_description(
            "Likes a cheerful doormat at the door.",
            "doormat",
            &ev
        ));
        assert!(!usable_description(
            "heart balm, heart balm, heart balm",
            "heart",
            &["heart of wicker"]
        ));
        assert!(!usable_description(
            "Relaxed and fun.",
            "regency",
            &["pink regency teacup"]
        ));
        assert!(!usable_description(
            "home sweet",
            "home sweet",
            &["home sweet home mug"]
        ));
    }

    #[test]
    fn whole_sentences_only() {
        assert!(whole_sentence("Likes a cheerful doormat at the door."));
        assert!(whole_sentence("Enjoys baking cakes for family parties."));
        // cut by a length cap: the full stop follows a word that cannot end a sentence
        assert!(!whole_sentence(
            "Lunch bags are a popular choice for both adults and."
        ));
        assert!(!whole_sentence("Collects vintage items such as."));
        assert!(!whole_sentence("Likes a cheerful doormat at the door"));
        assert!(!whole_sentence("Cake cases."));
        assert!(!whole_sentence(
            "A customer's hobby is cake cases, a fun thing, and they ."
        ));
        assert!(!whole_sentence(
            "lunch box, blue heart neon, red heart neon, p."
        ));
    }

    #[test]
    fn duplicates() {
        assert!(near_duplicates(
            "Vintage kitchenware",
            "vintage kitchenware items"
        ));
        assert!(near_duplicates("Tea time", "tea time baking"));
        assert!(!near_duplicates("garden birds", "christmas lights"));
    }

    #[test]
    fn grounding_exact_and_fuzzy() {
        let g = Grounder::new([
            (1, "white hanging heart t-light holder".to_string()),
            (2, "red retrospot cake stand".to_string()),
        ]);
        assert_eq!(g.ground("WHITE HANGING HEART T-LIGHT HOLDER"), Some(1));
        assert_eq!(g.ground("red retrospot cake stand!"), Some(2));
        assert_eq!(g.ground("retrospot cake stand"), Some(2));
        assert_eq!(g.ground("blue teapot"), None);
        assert_eq!(g.ground(""), None);
    }
}
