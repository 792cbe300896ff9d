//! The uncompressed one-line-per-event rendering used as the baseline.

use recgpt_data::text::{data_text, ItemTexts};
use recgpt_data::History;

/// The baseline: one line per event with time, behaviour, quantity and the catalog title.
pub fn raw_history_text(history: &History, texts: &ItemTexts) -> Vec<String> {
    history
        .events
        .iter()
        .map(|e| {
            let what = match (&e.item, &e.query) {
                (Some(ix), _) => texts.raw(*ix).to_string(),
                (None, Some(q)) => format!("\"{}\"", data_text(q)),
                (None, None) => String::new(),
            };
            format!("{} {} {} {what}\n", e.at, e.kind, e.quantity)
        })
        .collect()
}
