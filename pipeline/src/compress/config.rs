use serde::{Deserialize, Serialize};

/// Configuration of the `compress` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressConfig {
    /// Token budget of a narrative, counted with the model's tokenizer. The interests prompt
    /// adds its instructions and the answer on top, within the model's 8,192-token context.
    pub budget: usize,
    /// Catalog attributes shown next to an item's name, in this order, when the item has them.
    pub key_attributes: Vec<String>,
    /// Summarise before cutting when a history does not fit: repeats once with their count
    /// and span, then coarser time buckets (see `compress::render`). `false` cuts the oldest
    /// lines at once (the behaviour before summaries, kept for comparison). Left out of the
    /// configuration's serialisation, which fingerprints stored and cached answers: its whole
    /// effect is the narrative's text, which every fingerprint hashes, so answers for
    /// narratives it leaves unchanged stay valid.
    #[serde(skip_serializing)]
    pub summarise: bool,
    /// A last summary before cutting, taken only when repeats and years were not enough: items
    /// of a line that share their first two words are written once under those words
    /// (`red retrospot apron ×9, cup ×5, purse`). Only with `summarise`. Left out of the
    /// serialisation like `summarise`.
    #[serde(skip_serializing)]
    pub group_shared_words: bool,
}

impl Default for CompressConfig {
    fn default() -> Self {
        Self {
            budget: 1024,
            key_attributes: ["color", "colour", "size", "material"]
                .map(String::from)
                .to_vec(),
            summarise: true,
            group_shared_words: true,
        }
    }
}
