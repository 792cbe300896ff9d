use serde::{Deserialize, Serialize};

/// Configuration of the `tags` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagsConfig {
    /// Valid tags wanted per user; the fallback pool fills what the model's rounds leave short.
    pub target: usize,
    /// Tags asked for per round (the schema's `maxItems`).
    pub per_round: usize,
    /// Answer token limit per round.
    pub max_tokens: usize,
    /// Items bought this many days before as-of may not be suggested again (near-copies).
    pub recent_days: i64,
    /// Fill up to `target` from tags derived from the user's own item names, labelled
    /// `fallback`.
    pub fallback: bool,
    /// At most this many tags per item category, when categories are given. RecGPT keeps 2 over
    /// Taobao's fine leaf categories; over 40 derived categories 2 forces a 50-tag list across
    /// 25 of them, and 4 retrieved more next purchases on the dev split (README).
    pub max_per_category: usize,
    /// Decode tags under a grammar of the catalog's product phrases (see `tags::vocab`), so
    /// every model tag names something the catalog sells; tags outside them are rejected
    /// (`not_in_catalog`). Off: free words under the schema's pattern.
    pub grounded: bool,
    /// Catalog phrases offered per interest in grounded decoding (those sharing most words
    /// with the interest first).
    pub choices_per_interest: usize,
    /// Penalty on tokens the answer already holds (1.0: none): a small model otherwise lists
    /// the same tag again and again.
    pub repeat_penalty: f32,
    /// Items collaborative filtering ranks first for the user whose catalog phrases lead each
    /// interest's choices in grounded decoding (0: off; needs a neighbourhood scorer, which
    /// `recgpt eval llm` gives).
    pub neighbourhood: usize,
}

impl Default for TagsConfig {
    fn default() -> Self {
        Self {
            target: 50,
            per_round: 20,
            max_tokens: 800,
            recent_days: 30,
            fallback: true,
            max_per_category: 4,
            grounded: true,
            choices_per_interest: 150,
            repeat_penalty: 1.3,
            neighbourhood: 0,
        }
    }
}

impl TagsConfig {
    /// These settings less those applied only when answers are validated (`target`,
    /// `fallback`, `max_per_category`, set to fixed values that no default change moves): what
    /// shapes the model's answers. Answers kept under one value of those can be validated again
    /// under another ([`super::TagPredictor::revalidate`]).
    pub fn for_generation(&self) -> Self {
        Self {
            target: 0,
            fallback: false,
            max_per_category: 0,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_settings_leave_out_only_the_validation_ones() {
        let base = TagsConfig::default();
        let validation = TagsConfig {
            target: 80,
            fallback: false,
            max_per_category: 7,
            ..base.clone()
        };
        assert_eq!(validation.for_generation(), base.for_generation());
        let asked = TagsConfig {
            per_round: base.per_round + 1,
            ..base.clone()
        };
        assert_ne!(asked.for_generation(), base.for_generation());
    }
}
