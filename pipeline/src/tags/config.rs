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
    /// At most this many tags per item category (RecGPT: 2), when categories are given.
    pub max_per_category: usize,
}

impl Default for TagsConfig {
    fn default() -> Self {
        Self {
            target: 50,
            per_round: 10,
            max_tokens: 450,
            recent_days: 30,
            fallback: true,
            max_per_category: 2,
        }
    }
}
