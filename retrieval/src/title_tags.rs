//! Tags derived from item titles, in the "modifier + core word" form of RecGPT's tags.
//!
//! The RecGPT report trains the tag tower with item titles as tags. Online Retail titles are
//! upper-case product names with pack sizes ("SET OF 3 CAKE TINS PANTRY DESIGN"); a title
//! gives up to two tags: the title without quantities ("cake tins pantry design") and, when
//! that has three words or more, its last two words ("pantry design"), the usual place of
//! the core noun in these titles. Used as training positives for the tag loss, and as the
//! tags of a user who has no LLM tags (labelled so wherever they are reported).

use std::collections::HashMap;

use recgpt_data::Catalog;

/// Every item's title tags, as ids into one list of distinct tag texts.
#[derive(Debug, Clone, Default)]
pub struct ItemTags {
    /// Distinct tag texts, in order of first appearance in catalog order.
    pub texts: Vec<String>,
    /// Per item (catalog order), its tags; never empty (a title that gives no tag is its own,
    /// lower-cased).
    pub of_item: Vec<Vec<u32>>,
}

impl ItemTags {
    pub fn from_catalog(catalog: &Catalog) -> Self {
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut out = Self::default();
        for item in catalog.items() {
            let mut tags = title_tags(&item.title);
            if tags.is_empty() {
                tags.push(item.title.trim().to_lowercase());
            }
            let of = tags
                .into_iter()
                .map(|t| {
                    *ids.entry(t.clone()).or_insert_with(|| {
                        out.texts.push(t);
                        (out.texts.len() - 1) as u32
                    })
                })
                .collect();
            out.of_item.push(of);
        }
        out
    }
}

/// Words that only carry a quantity or packaging when next to a number.
const PACKAGING: [&str; 8] = ["set", "sets", "pack", "box", "bag", "of", "pcs", "pk"];

/// Words that join the core word to its modifier.
const JOINERS: [&str; 6] = ["and", "of", "with", "for", "in", "the"];

/// Up to two tags of a title, lower case, most specific first.
pub fn title_tags(title: &str) -> Vec<String> {
    let words: Vec<String> = title
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    // drop numbers and the packaging words right before them ("set of 3", "pack of 72")
    let mut keep = vec![true; words.len()];
    for (i, w) in words.iter().enumerate() {
        if w.chars().any(|c| c.is_ascii_digit()) {
            keep[i] = false;
            let mut j = i;
            while j > 0 && PACKAGING.contains(&words[j - 1].as_str()) {
                j -= 1;
                keep[j] = false;
            }
        }
    }
    let clean: Vec<&str> = words
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(w, _)| w.as_str())
        .collect();
    let mut tags = Vec::new();
    if !clean.is_empty() {
        tags.push(clean.join(" "));
    }
    if clean.len() >= 3 {
        // the last two words, or three when the first of them only joins ("teacup and saucer")
        let n = clean.len();
        let start = if JOINERS.contains(&clean[n - 2]) {
            n - 3
        } else {
            n - 2
        };
        if start > 0 {
            tags.push(clean[start..].join(" "));
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_go_and_the_core_stays() {
        assert_eq!(
            title_tags("SET OF 3 CAKE TINS PANTRY DESIGN "),
            ["cake tins pantry design", "pantry design"]
        );
        assert_eq!(
            title_tags("WHITE HANGING HEART T-LIGHT HOLDER"),
            ["white hanging heart t-light holder", "t-light holder"]
        );
        assert_eq!(
            title_tags("PACK OF 72 RETROSPOT CAKE CASES"),
            ["retrospot cake cases", "cake cases"]
        );
        assert_eq!(title_tags("JUMBO BAG"), ["jumbo bag"]);
        assert_eq!(
            title_tags("ROSES REGENCY TEACUP AND SAUCER"),
            ["roses regency teacup and saucer", "teacup and saucer"]
        );
        assert_eq!(title_tags("TEACUP AND SAUCER"), ["teacup and saucer"]);
        assert_eq!(title_tags("12"), Vec::<String>::new());
    }
}
