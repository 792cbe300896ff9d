//! Tag rules (RecGPT report §3.3: relevance, consistency, specificity, validity), each a named
//! rejection reason:
//! - `format`: not 2 to 4 lower-case words ("modifier + core word");
//! - `brand`: contains a brand name of the catalog;
//! - `generic`: every word generic (`gift items`, `home decor`);
//! - `recent_copy`: near-copy of an item bought in the last `recent_days`: the tag's words are
//!   all in the item's name (stemmed);
//! - `irrelevant`: shares no (stemmed) content word with its interest's name, description or
//!   evidence items;
//! - `duplicate`: the same words (stemmed, any order) as an earlier tag.

use std::collections::BTreeSet;

use recgpt_data::text::{stems, words, STOP_WORDS};

pub fn well_formed(tag: &str) -> bool {
    let w: Vec<&str> = tag.split(' ').collect();
    (2..=4).contains(&w.len())
        && w.iter()
            .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
}

pub fn mentions_brand(tag: &str, brands: &[BTreeSet<String>]) -> bool {
    let t: BTreeSet<String> = words(tag).into_iter().collect();
    brands.iter().any(|b| !b.is_empty() && b.is_subset(&t))
}

/// All of the tag's stems occur in one recent item's name.
pub fn copies(tag: &str, recent: &[BTreeSet<String>]) -> bool {
    let t = stems(tag);
    !t.is_empty() && recent.iter().any(|item| t.is_subset(item))
}

pub fn relevant(tag: &str, context: &BTreeSet<String>) -> bool {
    stems(tag)
        .iter()
        .any(|w| !STOP_WORDS.contains(&w.as_str()) && context.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(well_formed("vintage enamel mugs"));
        assert!(!well_formed("mugs"));
        assert!(!well_formed("Vintage Mugs"));
        assert!(!well_formed("a b c d e"));
        let brands = vec![stems("Acme"), words("le creuset").into_iter().collect()];
        assert!(mentions_brand("le creuset pans", &brands));
        assert!(!mentions_brand("cast iron pans", &brands));
        let recent = vec![stems("regency tea strainer")];
        assert!(copies("regency tea strainers", &recent));
        assert!(!copies("regency cake stand", &recent));
        let ctx = stems("regency pink regency teacup and saucer");
        assert!(relevant("porcelain teacups", &ctx));
        assert!(!relevant("garden gnomes", &ctx));
    }
}
