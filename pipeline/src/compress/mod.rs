//! Stage `compress`: a user's behaviour history → a text narrative that fits a token budget
//! (RecGPT report §3.1).
//!
//! 1. keep reliable behaviours (plain views and clicks go first when over budget);
//! 2. compact each item to its name, category and key attributes ([`ItemTexts`]);
//! 3. bucket time by day / month / year ([`TimeBucket`]);
//! 4. group items under one (time, behaviour) key, then reverse-group identical item
//!    sequences ([`layout`]);
//! 5. render newest first, and when the whole does not fit, summarise before cutting: leave out
//!    plain views and clicks, mention items repeated across time once with their count and
//!    span, coarsen the time buckets; only then drop the oldest, least informative content,
//!    saying what was dropped in the narrative itself ([`render`]).

mod bucket;
mod config;
mod layout;
mod render;
mod text;

pub use bucket::TimeBucket;
pub use config::CompressConfig;
pub use layout::{layout, signal, Entry, LayoutOptions, Line, REPEAT_BUCKETS};
pub use render::{name_in, Dropped, Narrative, Summarised};
pub use text::raw_history_text;

use recgpt_data::text::ItemTexts;
use recgpt_data::{Catalog, History, TimeWindow};

use crate::llm::{TokenCount, TokenCounter};

/// Compresses histories for one catalog, configuration and tokenizer.
#[derive(Debug)]
pub struct Compressor<'a, T: TokenCount> {
    texts: ItemTexts,
    config: CompressConfig,
    counter: &'a TokenCounter<T>,
}

impl<'a, T: TokenCount> Compressor<'a, T> {
    pub fn new(catalog: &Catalog, config: CompressConfig, counter: &'a TokenCounter<T>) -> Self {
        Self {
            texts: ItemTexts::new(catalog, &config.key_attributes),
            config,
            counter,
        }
    }

    pub fn config(&self) -> &CompressConfig {
        &self.config
    }

    pub fn texts(&self) -> &ItemTexts {
        &self.texts
    }

    pub fn counter(&self) -> &TokenCounter<T> {
        self.counter
    }

    /// The narrative of `history` as of `window.as_of`.
    pub fn compress(&self, history: &History, window: &TimeWindow) -> Narrative {
        render::fit(self, history, window.as_of)
    }

    /// Tokens of the uncompressed history (one line per event), for comparison.
    pub fn raw_tokens(&self, history: &History) -> usize {
        raw_history_text(history, &self.texts)
            .iter()
            .map(|line| self.counter.count(line))
            .sum()
    }
}
