//! The fallback pool (RecGPT's pre-alignment): catalog phrases from the user's own purchases
//! and their interests' items, labelled `fallback`, that fill a tag list the model left short.

use recgpt_data::History;

use super::*;

impl TagPredictor<'_> {
    /// Tags derived from item names: each item's core product phrase (its last three words, or
    /// two when the three would open with a stop or weak word; never ending on a colour or size
    /// word), attached to the interest whose evidence or name shares a word. Items in order:
    /// the interests' evidence, catalog items carrying an interest's name that the user has not
    /// bought, then the rest of the history, newest first.
    pub(super) fn fallback_pool(&self, interests: &UserInterests, history: &History) -> Vec<Tag> {
        use crate::interests::themes::WEAK_WORDS;
        use recgpt_data::text::{words, STOP_WORDS};
        let weak = |w: &str| STOP_WORDS.contains(&w) || WEAK_WORDS.contains(&w);
        let mut items: Vec<u32> = Vec::new();
        for i in &interests.interests {
            items.extend(i.evidence.iter().filter_map(|e| self.catalog.ix(&e.item)));
        }
        // catalog items carrying an interest's name: products of the theme the user has not
        // necessarily seen, the discovery part of the pool
        let bought: BTreeSet<u32> = history.events.iter().filter_map(|e| e.item).collect();
        // (items with all of the name's words first, then with any of them)
        for whole in [true, false] {
            for i in &interests.interests {
                let name = stems(&i.name);
                items.extend(
                    (0..self.catalog.len() as u32)
                        .filter(|ix| !bought.contains(ix))
                        .filter(|&ix| {
                            let item = stems(self.texts.compact(ix));
                            if whole {
                                name.is_subset(&item)
                            } else {
                                !name.is_disjoint(&item)
                            }
                        })
                        .take(self.config.target),
                );
            }
        }
        let mut seen = BTreeSet::new();
        items.extend(history.events.iter().rev().filter_map(|e| e.item));
        items.retain(|ix| seen.insert(*ix));
        let mut pool = Vec::new();
        for ix in items {
            let w: Vec<String> = words(self.texts.compact(ix))
                .into_iter()
                .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()) && w.len() > 1)
                .collect();
            let Some(last) = w.last() else { continue };
            if weak(last) {
                continue;
            }
            let phrase = [3, 2]
                .into_iter()
                .filter(|&n| w.len() >= n && !weak(&w[w.len() - n]))
                .map(|n| w[w.len() - n..].join(" "))
                .next();
            let Some(phrase) = phrase else { continue };
            let phrase_stems = stems(&phrase);
            let id = &self.catalog.get(ix).id;
            let interest = interests.interests.iter().find(|i| {
                !stems(&i.name).is_disjoint(&phrase_stems)
                    || i.evidence.iter().any(|e| &e.item == id)
            });
            if let Some(interest) = interest {
                pool.push(Tag {
                    tag: phrase,
                    interest: interest.name.clone(),
                    rationale: if bought.contains(&ix) {
                        format!("like {} they bought", self.texts.compact(ix))
                    } else {
                        format!(
                            "{} goes with their {} items",
                            self.texts.compact(ix),
                            interest.name
                        )
                    },
                    source: "fallback".into(),
                    category: None,
                });
            }
        }
        pool
    }
}
