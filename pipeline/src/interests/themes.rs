//! Candidate interest names ("themes") mined from a user's own items, RecGPT's pre-alignment in
//! its simplest form: words and word pairs that recur across the items of the user's narrative
//! and are rare in the catalog (tf-idf). With `InterestsConfig::names = Themes` the model picks
//! interest names among them (a JSON-schema `anyOf` of constants), each with evidence limited to
//! the items that carry the theme, so every interest is grounded and related by construction;
//! the model's part is choosing, ordering and describing.

use std::collections::{BTreeMap, HashMap};

use recgpt_data::text::{stem, words, ItemTexts, GENERIC_WORDS, STOP_WORDS};

use super::validate::near_duplicates;

/// Words too vague to name an interest alone (colours, sizes, packaging).
pub const WEAK_WORDS: &[&str] = &[
    "red", "white", "pink", "blue", "green", "black", "ivory", "cream", "gold", "silver", "small",
    "large", "mini", "medium", "big", "jumbo", "set", "sets", "pack", "box", "assorted", "design",
    "designs", "colour", "color", "piece", "pieces", "of", "asstd",
];

/// A theme and the items (of the user's narrative) that carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub phrase: String,
    pub items: Vec<u32>,
}

/// Document frequencies of words and word pairs over a catalog's item texts.
#[derive(Debug, Clone, Default)]
pub struct ThemeIndex {
    df: HashMap<String, u32>,
    items: u32,
}

/// Unigrams and bigrams of a text, without stop words, digits or weak words alone: keyed by
/// their stems (`cake cases` and `cake case` are one phrase), with the text's own wording.
fn phrases(text: &str) -> HashMap<String, String> {
    let w: Vec<String> = words(text)
        .into_iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    let stems: Vec<String> = w.iter().map(|x| stem(x)).collect();
    let strong = |w: &str| !WEAK_WORDS.contains(&w) && !GENERIC_WORDS.contains(&w) && w.len() > 2;
    let mut out = HashMap::new();
    for (i, s) in stems.iter().enumerate() {
        if strong(s) {
            out.entry(s.clone()).or_insert_with(|| w[i].clone());
        }
        if i + 1 < stems.len() && (strong(s) || strong(&stems[i + 1])) {
            out.entry(format!("{s} {}", stems[i + 1]))
                .or_insert_with(|| format!("{} {}", w[i], w[i + 1]));
        }
    }
    out
}

impl ThemeIndex {
    /// The index of a catalog's compact item texts.
    pub fn of(texts: &ItemTexts) -> Self {
        Self::new(texts.compacts())
    }

    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut df = HashMap::new();
        let mut items = 0;
        for text in texts {
            items += 1;
            for key in phrases(text).into_keys() {
                *df.entry(key).or_insert(0) += 1;
            }
        }
        Self { df, items }
    }

    /// The user's `max` best themes over `items` (index, compact text): phrases carried by at
    /// least two of the items, scored by count × idf (pairs weighted 1.5×), skipping a word
    /// whose items a chosen pair already covers.
    pub fn themes(&self, items: &[(u32, &str)], max: usize) -> Vec<Theme> {
        // stem key → (items carrying it, wordings seen with their counts)
        let mut carriers: BTreeMap<String, (Vec<u32>, BTreeMap<String, usize>)> = BTreeMap::new();
        for (ix, text) in items {
            for (key, surface) in phrases(text) {
                let entry = carriers.entry(key).or_default();
                entry.0.push(*ix);
                *entry.1.entry(surface).or_default() += 1;
            }
        }
        let mut scored: Vec<(f64, String, Vec<u32>)> = carriers
            .into_iter()
            .filter(|(_, (ixs, _))| ixs.len() >= 2)
            .map(|(key, (ixs, surfaces))| {
                let df = f64::from(*self.df.get(&key).unwrap_or(&1));
                let idf = (f64::from(self.items.max(1)) / df).ln().max(0.1);
                let weight = if key.contains(' ') { 1.5 } else { 1.0 };
                // the most frequent wording (ties: alphabetical)
                let phrase = surfaces
                    .into_iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                    .map(|(s, _)| s)
                    .unwrap_or(key);
                (ixs.len() as f64 * idf * weight, phrase, ixs)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut chosen: Vec<Theme> = Vec::new();
        for (_, phrase, ixs) in scored {
            if chosen.len() == max {
                break;
            }
            // a phrase sharing a word with a better theme that already covers most of its
            // items adds nothing (`airline` after `airline bag`, `bag vintage` after it too)
            // a theme whose name validation would merge into a chosen one ("lunch" after
            // "lunch bag") is covered too: it would cost a described interest for nothing
            let covered = chosen.iter().any(|t| {
                let overlap = ixs.iter().filter(|ix| t.items.contains(ix)).count();
                near_duplicates(&t.phrase, &phrase)
                    || t.phrase
                        .split(' ')
                        .any(|w| phrase.split(' ').any(|v| v == w))
                        && overlap * 10 >= ixs.len() * 8
            });
            if !covered {
                chosen.push(Theme { phrase, items: ixs });
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recurring_rare_phrases_win() {
        let catalog = [
            "airline bag vintage tokyo 78",
            "airline bag vintage jet set red",
            "regency teapot roses",
            "regency tea plate green",
            "red retrospot cake stand",
            "white hanging heart t-light holder",
            "pink heart mug",
            "blue heart mug",
        ];
        let index = ThemeIndex::new(catalog);
        let user: Vec<(u32, &str)> = catalog
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32, *t))
            .collect();
        let themes = index.themes(&user, 5);
        let phrases: Vec<&str> = themes.iter().map(|t| t.phrase.as_str()).collect();
        assert!(phrases.contains(&"airline bag"), "{phrases:?}");
        assert!(phrases.contains(&"regency"), "{phrases:?}");
        assert!(
            !phrases.contains(&"red"),
            "colours alone are weak: {phrases:?}"
        );
        assert!(
            !phrases.contains(&"airline"),
            "covered by `airline bag`: {phrases:?}"
        );
        let airline = themes.iter().find(|t| t.phrase == "airline bag").unwrap();
        assert_eq!(airline.items, vec![0, 1]);
        let cases = index.themes(
            &[
                (0, "60 cake cases"),
                (1, "72 fairy cake cases"),
                (2, "cake case"),
            ],
            3,
        );
        assert_eq!(
            cases[0].phrase, "cake cases",
            "wording kept, stems grouped: {cases:?}"
        );
        assert_eq!(cases[0].items.len(), 3);
    }
}
