//! The catalog's tag vocabulary: every product phrase a tag may be.
//!
//! A phrase is a run of 2 to 4 consecutive words of an item's compact text (lower-case letters
//! and hyphens only; a word with a digit or other punctuation breaks the run), that neither
//! opens nor closes with a joining word (`and`, `of` …), does not close with a weak word
//! (colour, size, packaging: `jumbo bag red` is not a product kind, `jumbo bag` is), and is not
//! made of weak and generic words alone. Decoding tags under a grammar of these phrases
//! ([`super::grammar`]) makes every model tag name something the catalog sells: words the
//! catalog lacks cannot appear.
//!
//! Per user and interest, [`TagVocabulary::choices`] offers the phrases that share a content
//! word with the interest (its name first, then its description and evidence), leaving out
//! phrases the tag rules would reject anyway (brands, generic phrases, copies of recent
//! purchases). Lookups go through an inverted index from stems to phrases, so a user's choices
//! cost the posting lists of their interests' words, not a pass over the catalog.

use std::collections::{BTreeSet, HashMap};

use crate::interests::themes::WEAK_WORDS;
use recgpt_data::text::ItemTexts;
use recgpt_data::text::{all_generic, stems};
use recgpt_data::text::{GENERIC_WORDS, STOP_WORDS};

/// Words that join a core word to its modifier: a phrase never opens or closes with one.
const JOINERS: &[&str] = &[
    "and", "of", "with", "for", "in", "the", "a", "an", "on", "to", "or",
];

/// Every product phrase of a catalog, with the stems it is looked up by.
pub struct TagVocabulary {
    /// Distinct phrases, sorted.
    phrases: Vec<String>,
    /// Items whose text holds each phrase.
    items: Vec<u32>,
    /// Each phrase's content-word stems.
    stems: Vec<BTreeSet<String>>,
    /// Stem → phrases holding it (ascending ids).
    index: HashMap<String, Vec<u32>>,
}

impl std::fmt::Debug for TagVocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagVocabulary")
            .field("phrases", &self.phrases.len())
            .field("stems", &self.index.len())
            .finish()
    }
}

/// Which share of an interest's ranked phrases an answer is offered: every `of`-th from the
/// `index`-th on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: usize,
    pub of: usize,
}

impl Part {
    /// Every phrase.
    pub const WHOLE: Part = Part { index: 0, of: 1 };
}

/// What one interest's choices must relate to, and what they must avoid.
#[derive(Debug, Clone, Default)]
pub struct ChoiceContext {
    /// Stems of the interest's name: a phrase holding one ranks first.
    pub name: BTreeSet<String>,
    /// Stems of its description and evidence items.
    pub context: BTreeSet<String>,
    /// Phrases of the items collaborative filtering ranks first for the user: among the
    /// phrases related to the interest, these come first.
    pub near: BTreeSet<String>,
}

impl TagVocabulary {
    /// The phrases of every item's compact text.
    pub fn of(texts: &ItemTexts) -> Self {
        Self::new(texts.compacts())
    }

    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut count: HashMap<String, u32> = HashMap::new();
        for text in texts {
            let mut seen = BTreeSet::new();
            for p in phrases(text) {
                if seen.insert(p.clone()) {
                    *count.entry(p).or_default() += 1;
                }
            }
        }
        let mut phrases: Vec<(String, u32)> = count.into_iter().collect();
        phrases.sort();
        let stems: Vec<BTreeSet<String>> = phrases.iter().map(|(p, _)| stems(p)).collect();
        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, s) in stems.iter().enumerate() {
            for w in s {
                index.entry(w.clone()).or_default().push(id as u32);
            }
        }
        Self {
            items: phrases.iter().map(|(_, n)| *n).collect(),
            phrases: phrases.into_iter().map(|(p, _)| p).collect(),
            stems,
            index,
        }
    }

    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// Whether `tag` is a phrase of the catalog.
    pub fn contains(&self, tag: &str) -> bool {
        self.phrases
            .binary_search_by(|p| p.as_str().cmp(tag))
            .is_ok()
    }

    /// Up to `max` phrases for one interest: among those sharing a stem with its name or its
    /// context, the user's near phrases first, then more stems shared with the name, then
    /// with the context, then phrases found in more items; never a phrase
    /// `reject` refuses. `part` takes every `part.of`-th of them from the `part.index`-th on,
    /// so that the answers a user samples are offered different phrases. Sorted alphabetically
    /// (the grammar's trie does not care about order, and sorted output is stable).
    pub fn choices(
        &self,
        interest: &ChoiceContext,
        max: usize,
        part: Part,
        reject: impl Fn(&str) -> bool,
    ) -> Vec<&str> {
        let mut score: HashMap<u32, (u32, u32)> = HashMap::new();
        for (stems, by_name) in [(&interest.name, true), (&interest.context, false)] {
            for s in stems {
                if STOP_WORDS.contains(&s.as_str()) || WEAK_WORDS.contains(&s.as_str()) {
                    continue;
                }
                for &id in self.index.get(s).map_or(&[][..], Vec::as_slice) {
                    let e = score.entry(id).or_default();
                    if by_name {
                        e.0 += 1;
                    } else if !interest.name.contains(s) {
                        e.1 += 1;
                    }
                }
            }
        }
        let near = |id: u32| interest.near.contains(&self.phrases[id as usize]);
        let mut ranked: Vec<(u32, (bool, u32, u32))> = score
            .into_iter()
            .map(|(id, (name, context))| (id, (near(id), name, context)))
            .collect();
        ranked.sort_by(|(a, sa), (b, sb)| {
            sb.cmp(sa)
                .then(self.items[*b as usize].cmp(&self.items[*a as usize]))
                .then(a.cmp(b))
        });
        let mut out: Vec<&str> = ranked
            .into_iter()
            .map(|(id, _)| self.phrases[id as usize].as_str())
            .filter(|p| !reject(p))
            .take(max)
            .enumerate()
            .filter(|(i, _)| i % part.of.max(1) == part.index)
            .map(|(_, p)| p)
            .collect();
        out.sort_unstable();
        out
    }

    /// The phrases of `text` (an item's compact text) that the vocabulary holds.
    pub fn phrases_of(&self, text: &str) -> Vec<String> {
        phrases(text)
            .into_iter()
            .filter(|p| self.contains(p))
            .collect()
    }

    /// The stems of a phrase of the vocabulary (`None` for another text).
    pub fn stems_of(&self, tag: &str) -> Option<&BTreeSet<String>> {
        let id = self
            .phrases
            .binary_search_by(|p| p.as_str().cmp(tag))
            .ok()?;
        Some(&self.stems[id])
    }
}

/// Whether `word` may be part of a tag: letters (and inner hyphens), at least two characters.
fn tag_word(word: &str) -> bool {
    word.len() > 1
        && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && !word.starts_with('-')
        && !word.ends_with('-')
}

/// The phrases of one item text.
fn phrases(text: &str) -> Vec<String> {
    let weak = |w: &str| WEAK_WORDS.contains(&w);
    let joiner = |w: &str| JOINERS.contains(&w) || STOP_WORDS.contains(&w);
    let mut out = Vec::new();
    // punctuation between words (an attribute list, a slash) ends a run of words
    for segment in text.split(['(', ')', ',', ';', '/', '&', '+', ':']) {
        let lower = segment.to_lowercase();
        let mut run: Vec<&str> = Vec::new();
        let words: Vec<&str> = lower.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let w = w.trim_end_matches(['.', '!', '?', '\'', '"']);
            let valid = tag_word(w);
            if valid {
                run.push(w);
            }
            if !valid || i + 1 == words.len() {
                for n in 2..=4 {
                    for window in run.windows(n) {
                        let (first, last) = (window[0], window[n - 1]);
                        if joiner(first) || joiner(last) || weak(last) {
                            continue;
                        }
                        let phrase = window.join(" ");
                        let strong = window
                            .iter()
                            .any(|w| !weak(w) && !joiner(w) && !GENERIC_WORDS.contains(w));
                        if strong && !all_generic(&phrase) {
                            out.push(phrase);
                        }
                    }
                }
                run.clear();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_runs_of_product_words() {
        let p = phrases("white hanging heart t-light holder");
        assert!(p.contains(&"heart t-light holder".to_string()));
        assert!(p.contains(&"white hanging heart t-light".to_string()));
        assert!(p.contains(&"t-light holder".to_string()));
        // a run never ends on a colour or size, nor opens or ends on a joining word
        let p = phrases("jumbo bag red retrospot");
        assert!(p.contains(&"jumbo bag".to_string()));
        assert!(!p.contains(&"jumbo bag red".to_string()));
        let p = phrases("roses regency teacup and saucer");
        assert!(p.contains(&"teacup and saucer".to_string()));
        assert!(!p
            .iter()
            .any(|x| x.ends_with(" and") || x.starts_with("and ")));
        // digits break a run; attribute lists do not join the name
        let p = phrases("set of 3 cake tins pantry design");
        assert!(p.contains(&"cake tins".to_string()));
        assert!(!p.iter().any(|x| x.contains('3')));
        let p = phrases("linen shirt (shirts, acme, blue)");
        assert_eq!(p, ["linen shirt"]);
        // weak and generic words alone make no phrase
        assert!(phrases("small red box").is_empty());
    }

    #[test]
    fn choices_follow_the_interest_and_skip_rejected_phrases() {
        let v = TagVocabulary::new([
            "regency teacup and saucer",
            "green regency teacup and saucer",
            "regency cakestand 3 tier",
            "jumbo bag red retrospot",
            "lunch bag red retrospot",
            "retrospot tea set ceramic",
        ]);
        assert!(v.contains("regency teacup"));
        assert!(!v.contains("regency tea"));
        assert!(!v.contains("paper ailerad tripty"));
        let tea = ChoiceContext {
            name: stems("regency"),
            context: stems("teacup"),
            near: Default::default(),
        };
        let c = v.choices(&tea, 100, Part::WHOLE, |_| false);
        assert!(c.contains(&"regency cakestand"));
        assert!(c.contains(&"teacup and saucer"));
        assert!(!c.contains(&"jumbo bag"));
        assert!(c.windows(2).all(|w| w[0] < w[1]), "sorted");
        // name matches rank before context matches when fewer are wanted
        let one = v.choices(&tea, 1, Part::WHOLE, |p| p == "regency cakestand");
        assert_eq!(one.len(), 1);
        assert!(one[0].contains("regency"));
        assert_ne!(one[0], "regency cakestand");
        // a near phrase related to the interest leads, even one matching only its context;
        // an unrelated near phrase is never offered
        let near = ChoiceContext {
            near: ["teacup and saucer", "jumbo bag"].map(String::from).into(),
            ..tea.clone()
        };
        assert_eq!(
            v.choices(&near, 1, Part::WHOLE, |_| false),
            ["teacup and saucer"]
        );
        assert!(!v
            .choices(&near, 100, Part::WHOLE, |_| false)
            .contains(&"jumbo bag"));
        // the parts of a user's answers are disjoint and cover the whole
        let parts: Vec<Vec<&str>> = (0..3)
            .map(|index| v.choices(&tea, 100, Part { index, of: 3 }, |_| false))
            .collect();
        let mut joined: Vec<&str> = parts.concat();
        joined.sort_unstable();
        assert_eq!(joined, c);
        assert!(parts.iter().all(|p| !p.is_empty()));
    }
}
