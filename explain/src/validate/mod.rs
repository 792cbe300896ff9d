//! Explanation rules (RecGPT report: relevance, factuality, clarity, safety), each a named
//! rejection reason, checked in this order:
//! - `length`: fewer than `min_words` or more than `max_words` words;
//! - `unsafe`: a word of [`UNSAFE_WORDS`];
//! - `hype`: an exclamation mark, or a slogan / exaggeration word of [`HYPE_WORDS`];
//! - `unfinished`: does not end with a full stop (the answer was cut off);
//! - `not_addressed`: speaks in the first person ("I", "my") or not to the shopper (no "you",
//!   "your");
//! - `off_message`: talks about "the customer" instead of to them, echoes the prompt, talks
//!   about price, or is off message ([`OFF_MESSAGE`]);
//! - `title_copy`: adds fewer than [`MIN_NEW_WORDS`] content words to the item's title (a
//!   near-copy of the title says nothing about why);
//! - `prompt_copy`: repeats [`COPY_RUN`] consecutive words of the interest's description (the
//!   model copying its input, "buys … items such as …", instead of saying why);
//! - `irrelevant`: shares no (stemmed) content word with the interest's name nor with the item
//!   (title, category); the description is not used here, its words are too generic ("buys
//!   … items such as …");
//! - `invented_attribute`: names a colour, material, pattern or taste ([`ATTRIBUTE_WORDS`]) or a
//!   word with a digit ("5", "200g") that the item's title and category do not hold, outside a
//!   mention of the interest's name: "your love of red retrospot" may say "red" of the interest
//!   whatever the item, but "pink" taken from the description's example item ("buys polkadot
//!   items such as pink polkadot bowl") is not said of a red candle set;
//! - `ungrounded`: more than [`MAX_UNGROUNDED`] words found in neither the item's title and
//!   category, the interest's text, nor [`REASON_WORDS`] (the words a reason is made of): the
//!   sentence talks about things the catalog does not say ("skulls on the shelves of the
//!   store", "a popular item for pickpockets");
//! - `invented_name`: a capitalised word after the first (a name: a brand, a place, a product
//!   line) that is in neither; the prompt gives every fact in lower case.
//!
//! The answer's schema ([`answer_schema`]) already makes it one sentence that opens with "You"
//! or "Your" and ends with a full stop within the length (a `pattern`), so decoding cannot run
//! past the limit, shout, or talk about the shopper instead of to them.

use std::collections::BTreeSet;

use recgpt_data::text::{stem, stems, words, STOP_WORDS};

/// Slogans and exaggeration: an explanation states a reason, it does not sell.
pub const HYPE_WORDS: &[&str] = &[
    "amazing",
    "awesome",
    "best",
    "bespoke",
    "breathtaking",
    "exquisite",
    "finest",
    "high-quality",
    "luxurious",
    "unique",
    "wonderful",
    "exclusive",
    "fantastic",
    "greatest",
    "guaranteed",
    "hurry",
    "incredible",
    "must-have",
    "must-haves",
    "perfect",
    "perfectly",
    "revolutionary",
    "spectacular",
    "stunning",
    "ultimate",
    "unbeatable",
    "unmissable",
    "wow",
];

/// Words an explanation shown to customers never uses.
pub const UNSAFE_WORDS: &[&str] = &[
    "idiot", "stupid", "hate", "kill", "sexy", "drunk", "drugs", "weapon", "ugly", "fat",
];

/// Attributes checked for factuality: colours, materials and patterns. An explanation may name
/// one only when the item's catalog text does, or inside a mention of the interest's name.
pub const ATTRIBUTE_WORDS: &[&str] = &[
    // colours
    "red",
    "blue",
    "green",
    "yellow",
    "pink",
    "purple",
    "orange",
    "black",
    "white",
    "grey",
    "gray",
    "brown",
    "gold",
    "golden",
    "silver",
    "cream",
    "ivory",
    "turquoise",
    "teal",
    "navy",
    "beige",
    "lilac",
    "violet",
    "crimson",
    // materials
    "wood",
    "wooden",
    "glass",
    "ceramic",
    "porcelain",
    "metal",
    "tin",
    "zinc",
    "iron",
    "steel",
    "enamel",
    "cotton",
    "linen",
    "wool",
    "felt",
    "silk",
    "leather",
    "paper",
    "cardboard",
    "plastic",
    "bamboo",
    "wicker",
    "rattan",
    "velvet",
    "lace",
    "crystal",
    "marble",
    "stone",
    "copper",
    "brass",
    "bone",
    "china",
    // patterns
    "polka",
    "dotty",
    "spotty",
    "striped",
    "stripe",
    "floral",
    "paisley",
    "tartan",
    "gingham",
    // taste and eating: a cake case or a jam jar is not food
    "delicious",
    "tasty",
    "yummy",
    "edible",
    "flavour",
    "flavor",
    "flavours",
    "flavors",
    "dessert",
    "desserts",
    "snack",
    "snacks",
    "juicy",
    "eat",
    "eating",
    "eaten",
    "drink",
    "drinking",
];

/// Phrases of an answer that speaks about the customer, repeats the prompt, or goes off
/// message.
pub const OFF_MESSAGE: &[&str] = &[
    "the customer",
    "customer's",
    "customers",
    "we recommend",
    "why we recommend",
    "of the kind",
    "this product to",
    "colours, materials",
    "not suitable",
    "troubleshooting",
    "as an ai",
    // prices are not ours to state
    "price",
    "expensive",
    "cheap",
    "budget",
    "£",
    "$",
];

/// Version of these rules: part of every explanation's cache key (with the prompt version), so
/// changing a rule or a word list regenerates instead of serving answers checked by old rules.
/// Bump it with any change to this file's rules or lists.
pub const RULES_VERSION: u32 = 6;

/// Content words an explanation must add to the title.
pub const MIN_NEW_WORDS: usize = 3;

/// Words outside the item, the interest and [`REASON_WORDS`] an explanation may use.
pub const MAX_UNGROUNDED: usize = 2;

/// Function words and the words a reason is made of: an explanation may use them whatever the
/// item.
pub const REASON_WORDS: &[&str] = &[
    // pronouns, determiners, auxiliaries, prepositions, conjunctions
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "you",
    "your",
    "yours",
    "yourself",
    // contraction endings (words split at the apostrophe: "it's" is "it" and "s")
    "re",
    "ll",
    "ve",
    "d",
    "s",
    "t",
    "they",
    "them",
    "their",
    "one",
    "ones",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "am",
    "do",
    "does",
    "did",
    "have",
    "has",
    "had",
    "can",
    "could",
    "will",
    "would",
    "may",
    "might",
    "should",
    "must",
    "of",
    "for",
    "with",
    "in",
    "on",
    "to",
    "by",
    "at",
    "or",
    "and",
    "but",
    "so",
    "as",
    "if",
    "from",
    "into",
    "onto",
    "up",
    "out",
    "about",
    "like",
    "than",
    "then",
    "too",
    "also",
    "just",
    "more",
    "most",
    "other",
    "another",
    "same",
    "such",
    "what",
    "which",
    "who",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "each",
    "every",
    "some",
    "both",
    "not",
    "no",
    "very",
    "well",
    "there",
    "here",
    // the reason itself
    "love",
    "loves",
    "loved",
    "likes",
    "liked",
    "enjoy",
    "enjoys",
    "enjoyed",
    "fan",
    "fond",
    "interest",
    "interests",
    "interested",
    "choose",
    "chose",
    "chosen",
    "pick",
    "picked",
    "buy",
    "buys",
    "bought",
    "purchase",
    "purchased",
    "shop",
    "want",
    "wants",
    "need",
    "needs",
    "find",
    "found",
    "add",
    "adds",
    "match",
    "matches",
    "matching",
    "go",
    "goes",
    "going",
    "fit",
    "fits",
    "suit",
    "suits",
    "suited",
    "complete",
    "completes",
    "collect",
    "collection",
    "set",
    "sets",
    "range",
    "kind",
    "style",
    "styled",
    "design",
    "designs",
    "piece",
    "pieces",
    "item",
    "items",
    "product",
    "products",
    "favourite",
    "favourites",
    "favorite",
    "favorites",
    "new",
    "next",
    "again",
    "already",
    "own",
    "use",
    "using",
    "used",
    "make",
    "makes",
    "making",
    "keep",
    "keeps",
    "home",
    "house",
    "gift",
    "gifts",
    "give",
    "friend",
    "friends",
    "family",
    "everyday",
    "day",
    "fun",
    "nice",
    "lovely",
    "pretty",
    "classic",
    "vintage",
    "bring",
    "brings",
    "look",
    "looks",
    "theme",
    "themed",
    "part",
    "lots",
    "many",
    "much",
    "way",
    "ways",
    "great",
];

/// Consecutive words of the interest's description an explanation may not repeat.
pub const COPY_RUN: usize = 4;

/// Words that address the shopper; an explanation uses one.
const SECOND_PERSON: &[&str] = &["you", "your", "yours", "yourself"];

/// First-person singular: the model speaking as itself or as the shopper.
const FIRST_PERSON: &[&str] = &["i", "me", "my", "mine", "myself"];

/// The JSON schema of an answer: `{"explanation": "..."}`, one sentence that opens with "You"
/// or "Your", of plain ASCII words and punctuation (no `.`, `!`, `?`, quotes or line breaks),
/// at most about `max_words` words (6 characters a word), ending with a full stop. Part of the
/// rules: bump [`RULES_VERSION`] when changing it.
pub fn answer_schema(min_words: usize, max_words: usize) -> serde_json::Value {
    let min_chars = (min_words * 4).max(2);
    let max_chars = max_words * 6;
    // "You " or "Your " opens the sentence, so it speaks to the shopper
    let pattern = format!(
        "^Your? [A-Za-z0-9 ,;:'()&/-]{{{},{}}}[.]$",
        min_chars - 5,
        max_chars - 5
    );
    serde_json::json!({
        "type": "object",
        "properties": {
            "explanation": {"type": "string", "pattern": pattern}
        },
        "required": ["explanation"],
        "additionalProperties": false
    })
}

/// What an explanation is checked against.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Stems of the item's title and category.
    pub item: BTreeSet<String>,
    /// Stems of the interest's name.
    pub interest: BTreeSet<String>,
    /// Lower-case words of the item's title and category, as they are and stemmed: what an
    /// attribute or number may be said of the item from.
    pub item_words: BTreeSet<String>,
    /// [`Facts::item_words`] and the interest's name and description, likewise: the words an
    /// explanation is grounded in.
    pub known_words: BTreeSet<String>,
    /// Stems of the interest's name, word by word, to find where the explanation names it.
    pub name: Vec<String>,
    /// The interest's description, word by word, for the copy check.
    pub description: Vec<String>,
}

impl Facts {
    pub fn new(title: &str, category: Option<&str>, interest: &str, description: &str) -> Self {
        let with_stems = |text: &str| -> BTreeSet<String> {
            words(text)
                .into_iter()
                .flat_map(|w| [stem(&w), w])
                .collect()
        };
        let item_text = format!("{title} {}", category.unwrap_or(""));
        let item_words = with_stems(&item_text);
        let mut known_words = item_words.clone();
        known_words.extend(with_stems(&format!("{interest} {description}")));
        Self {
            item: stems(&item_text),
            interest: stems(interest),
            item_words,
            known_words,
            name: words(interest).iter().map(|w| stem(w)).collect(),
            description: words(description),
        }
    }

    /// Whether the item or the interest holds `word` (as it is or stemmed).
    fn knows(&self, word: &str) -> bool {
        self.known_words.contains(word) || self.known_words.contains(&stem(word))
    }

    /// Whether the item's title or category holds `word` (as it is or stemmed).
    fn item_has(&self, word: &str) -> bool {
        self.item_words.contains(word) || self.item_words.contains(&stem(word))
    }

    /// For each of `text`'s words, whether it is part of a mention of the interest's name (its
    /// words in order, stemmed).
    fn in_name_mention(&self, text: &[String]) -> Vec<bool> {
        let mut inside = vec![false; text.len()];
        let n = self.name.len();
        if n == 0 || n > text.len() {
            return inside;
        }
        for start in 0..=text.len() - n {
            let mention = text[start..start + n]
                .iter()
                .zip(&self.name)
                .all(|(w, s)| stem(w) == *s);
            if mention {
                inside[start..start + n].fill(true);
            }
        }
        inside
    }
}

/// The first rule `text` breaks, or `None` when it passes them all.
pub fn rejection(
    text: &str,
    title: &str,
    facts: &Facts,
    min_words: usize,
    max_words: usize,
) -> Option<&'static str> {
    let all = words(text);
    if all.len() < min_words || all.len() > max_words {
        return Some("length");
    }
    if all.iter().any(|w| UNSAFE_WORDS.contains(&w.as_str())) {
        return Some("unsafe");
    }
    let lower = text.to_lowercase();
    if text.contains('!')
        || all.iter().any(|w| HYPE_WORDS.contains(&w.as_str()))
        || lower.contains("must-have")
        || lower.contains("must have")
    {
        return Some("hype");
    }
    if !text.trim_end().ends_with('.') {
        return Some("unfinished");
    }
    let has = |list: &[&str]| all.iter().any(|w| list.contains(&w.as_str()));
    if has(FIRST_PERSON) || !has(SECOND_PERSON) {
        return Some("not_addressed");
    }
    if OFF_MESSAGE.iter().any(|p| lower.contains(p)) {
        return Some("off_message");
    }
    let own = stems(text);
    let title_stems = stems(title);
    let added = own
        .iter()
        .filter(|w| !title_stems.contains(*w) && !STOP_WORDS.contains(&w.as_str()))
        .count();
    if added < MIN_NEW_WORDS {
        return Some("title_copy");
    }
    let copies = facts
        .description
        .windows(COPY_RUN)
        .any(|run| all.windows(COPY_RUN).any(|w| w == run));
    if copies {
        return Some("prompt_copy");
    }
    if own.is_disjoint(&facts.item) && own.is_disjoint(&facts.interest) {
        return Some("irrelevant");
    }
    let naming_interest = facts.in_name_mention(&all);
    let invented = all.iter().zip(naming_interest).any(|(w, naming)| {
        let attribute =
            ATTRIBUTE_WORDS.contains(&w.as_str()) || w.chars().any(|c| c.is_ascii_digit());
        attribute && !naming && !facts.item_has(w)
    });
    if invented {
        return Some("invented_attribute");
    }
    let known = |w: &String| {
        facts.knows(w)
            || REASON_WORDS.contains(&w.as_str())
            || w.chars().all(|c| c.is_ascii_digit())
    };
    if all.iter().filter(|w| !known(w)).count() > MAX_UNGROUNDED {
        return Some("ungrounded");
    }
    let named = text
        .split_whitespace()
        .skip(1)
        .filter(|w| w.starts_with(|c: char| c.is_uppercase()))
        .flat_map(words)
        .any(|w| !facts.knows(&w));
    if named {
        return Some("invented_name");
    }
    None
}

#[cfg(test)]
mod tests;
