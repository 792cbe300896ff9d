use serde::{Deserialize, Serialize};

/// Configuration of the `interests` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterestsConfig {
    /// Fewest interests asked for.
    pub min: usize,
    /// Most interests asked for (the schema's `maxItems`).
    pub max: usize,
    /// Answer token limit per round.
    pub max_tokens: usize,
    /// Independent answers sampled per user (seeds differ), pooled before validation. The
    /// prompt is read once for all rounds (its KV cache is shared).
    pub rounds: usize,
    /// Constrain evidence to the names of items in the narrative (a JSON-schema `enum`), so
    /// the model cannot cite what the user never bought. Off: free text, validated after.
    pub constrain_evidence: bool,
    /// Largest number of item names offered as evidence choices.
    pub max_evidence_choices: usize,
    /// How interest names are decoded.
    pub names: InterestNames,
    /// Themes offered per user in `themes` mode.
    pub max_themes: usize,
}

/// How interest names are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterestNames {
    /// Chosen among themes mined from the user's items, with evidence among the items that
    /// carry the theme (see `interests::themes`).
    Themes,
    /// Free text, validated after decoding.
    Free,
}

impl Default for InterestsConfig {
    fn default() -> Self {
        Self {
            min: 3,
            max: 6,
            max_tokens: 700,
            rounds: 3,
            constrain_evidence: true,
            max_evidence_choices: 120,
            names: InterestNames::Themes,
            max_themes: 12,
        }
    }
}
