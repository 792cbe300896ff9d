//! Rendering a history's lines into a narrative that fits the budget.
//!
//! When the whole history does not fit, each step below is taken only while the text is still
//! over the budget, in this order (`[compress] summarise = false` skips steps 2 to 4):
//! 1. plain views and clicks are left out (the least informative behaviours);
//! 2. repeats are collapsed: an item seen under one behaviour in at least
//!    [`super::layout::REPEAT_BUCKETS`] time buckets is mentioned once, at its newest time,
//!    with its count ("2011-11 (purchase) | woodland charlotte bag ×12"), instead of once per
//!    bucket;
//! 3. time buckets coarsen to years (the last month's days and the year's months merge), so
//!    repeated (time, behaviour) groups become one;
//! 4. items of a line that share their first two words are written once under them ("red
//!    retrospot apron ×9, cup ×5, purse"; `[compress] group_shared_words = false` skips it);
//! 5. only then is anything cut: lines from the oldest end (lines are sorted newest first, and
//!    within one time by how informative their behaviours are, see [`super::signal`]), and
//!    within the last line that partly fits, its least repeated items.
//!
//! What was cut is counted and written into the narrative's last line, never dropped silently;
//! what was summarised is still in the text.

use chrono::NaiveDate;
use recgpt_data::{History, ItemIx};
use serde::Serialize;

use rustc_hash::FxHashMap as HashMap;

use super::layout::{layout, Entry, LayoutOptions, Line, LineEntry};
use super::{Compressor, TimeBucket};
use crate::llm::TokenCount;
use recgpt_data::text::data_text;

/// What did not fit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// Plain views and clicks left out.
    pub low_signal_events: u64,
    /// Other events left out (the oldest, least informative).
    pub events: u64,
    /// Item mentions (an item under one line) left out.
    pub entries: u64,
    /// Oldest and newest time bucket touched by the drop.
    pub oldest: Option<String>,
    pub newest: Option<String>,
}

impl Dropped {
    pub fn is_empty(&self) -> bool {
        self.low_signal_events == 0 && self.events == 0
    }

    /// The narrative's last line; empty when nothing was dropped.
    fn note(&self) -> String {
        let mut parts = Vec::new();
        if self.low_signal_events > 0 {
            parts.push(format!("{} views and clicks", self.low_signal_events));
        }
        if self.events > 0 {
            let span = match (&self.oldest, &self.newest) {
                (Some(o), Some(n)) if o != n => format!(", {o} to {n}"),
                (Some(o), _) => format!(", {o}"),
                _ => String::new(),
            };
            parts.push(format!(
                "{} older events ({} item mentions{span})",
                self.events, self.entries
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("Omitted to fit: {}.\n", parts.join("; "))
        }
    }
}

/// What was summarised to fit (nothing cut).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summarised {
    /// Repeats collapsed into one mention each.
    pub repeats: bool,
    /// Coarsening of the time buckets: 0 none, 2 days and months into years.
    pub coarsen: u8,
    /// Items sharing their first two words written once under them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grouped: bool,
}

/// A compressed history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Narrative {
    pub user: String,
    pub as_of: NaiveDate,
    pub text: String,
    /// Exact token count of `text` with the model's tokenizer.
    pub tokens: usize,
    pub budget: usize,
    /// Events in the window.
    pub events: u64,
    /// Events represented in the text.
    pub events_kept: u64,
    pub lines: usize,
    pub summarised: Summarised,
    pub dropped: Dropped,
    /// Distinct catalog items the text mentions, ascending.
    #[serde(skip)]
    pub items: Vec<ItemIx>,
}

impl Narrative {
    pub fn fits(&self) -> bool {
        self.tokens <= self.budget
    }

    /// Every reliable event is in the text (summarised or not): nothing was cut.
    pub fn uncut(&self) -> bool {
        self.dropped.events == 0 && self.dropped.entries == 0
    }
}

fn header(as_of: NaiveDate) -> String {
    format!(
        "Behaviour history as of {as_of}, newest first; each line: time (behaviours) | items.\n"
    )
}

fn render_line<T: TokenCount>(
    comp: &Compressor<'_, T>,
    line: &Line,
    entries: usize,
    group: bool,
) -> String {
    let times: Vec<String> = line
        .times
        .iter()
        .map(|(bucket, kinds)| {
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            format!("{} ({})", bucket.label(), kinds.join(", "))
        })
        .collect();
    let count = |e: &LineEntry| match e.counted {
        true => format!(" ×{}", e.events),
        false => String::new(),
    };
    let mut items: Vec<String> = Vec::with_capacity(entries);
    // with `group`: the head (first two words) of each written group and its index in `items`
    let mut heads: HashMap<String, usize> = HashMap::default();
    for e in &line.entries[..entries] {
        let text = match &e.entry {
            Entry::Item(ix) => comp.texts().compact(*ix).to_string(),
            Entry::Query(q) => format!("\"{}\"", data_text(q)),
        };
        let head = match (&e.entry, group) {
            (Entry::Item(_), true) => shared_words_split(&text),
            _ => None,
        };
        if let Some((head, tail)) = head {
            if let Some(&i) = heads.get(head) {
                items[i].push_str(&format!(", {tail}{}", count(e)));
                continue;
            }
            heads.insert(head.to_string(), items.len());
        }
        items.push(format!("{text}{}", count(e)));
    }
    format!("{} | {}\n", times.join(", "), items.join("; "))
}

/// How `narrative` names the item whose text is `compact`: the whole text, or, where the item
/// was written in a group under the words it shares with another ("red retrospot apron ×9, cup"),
/// the rest after those words; the whole text when neither is there.
pub fn name_in<'a>(narrative: &str, compact: &'a str) -> &'a str {
    if narrative.contains(compact) {
        return compact;
    }
    match shared_words_split(compact) {
        Some((_, rest)) if narrative.contains(&format!(", {rest}")) => rest,
        _ => compact,
    }
}

/// An item text's first two words and the rest (without a leading comma), when the rest has
/// a word of its own.
fn shared_words_split(text: &str) -> Option<(&str, &str)> {
    let mut spaces = text.match_indices(' ').map(|(i, _)| i);
    let (_, at) = (spaces.next()?, spaces.next()?);
    let tail = text[at..].trim_start_matches([' ', ',']);
    (!tail.is_empty()).then_some((&text[..at], tail))
}

/// How much of each line is kept: `(line index, entries kept)`, in order.
type Kept = Vec<(usize, usize)>;

pub(super) fn fit<T: TokenCount>(
    comp: &Compressor<'_, T>,
    history: &History,
    as_of: NaiveDate,
) -> Narrative {
    let budget = comp.config().budget;
    let counter = comp.counter();
    let events = &history.events;
    let header = header(as_of);
    let mut dropped = Dropped::default();

    let mut options = LayoutOptions::default();
    let mut summarised = Summarised::default();
    // Whether `lines` fit whole: each line's tokens (counts add up line by line), stopping at
    // the first line past the budget, so an oversized layout is never rendered whole.
    let fits = |lines: &[Line], dropped: &Dropped, group: bool| {
        let mut used = counter.count(&header) + counter.count(&dropped.note());
        lines.iter().all(|line| {
            let text = render_line(comp, line, line.entries.len(), group);
            match counter.count_within(&text, budget.saturating_sub(used)) {
                Some(n) => {
                    used += n;
                    true
                }
                None => false,
            }
        })
    };
    let mut lines = layout(events, as_of, &options);
    let mut fit = fits(&lines, &dropped, false);

    if !fit {
        let low_signal = events.iter().filter(|e| !e.kind.is_reliable()).count() as u64;
        if low_signal > 0 {
            dropped.low_signal_events = low_signal;
            options.drop_low_signal = true;
            lines = layout(events, as_of, &options);
            fit = fits(&lines, &dropped, false);
        }
    }
    if !fit && comp.config().summarise {
        options.collapse_repeats = true;
        summarised.repeats = true;
        lines = layout(events, as_of, &options);
        fit = fits(&lines, &dropped, false);
        if !fit {
            // straight to years: merging the last month's days into months first made no
            // Online Retail user fit at the default budget (the only one tried) and cost a
            // layout per heavy user
            options.coarsen = 2;
            summarised.coarsen = 2;
            lines = layout(events, as_of, &options);
            fit = fits(&lines, &dropped, false);
        }
        if !fit && comp.config().group_shared_words {
            summarised.grouped = true;
            fit = fits(&lines, &dropped, true);
        }
    }
    let group = summarised.grouped;
    let (mut kept, mut text, mut tokens): (Kept, String, usize);
    if fit {
        kept = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.entries.len()))
            .collect();
        text = assemble(comp, &header, &lines, &kept, &dropped, group);
        tokens = counter.count(&text);
    } else {
        kept = fill_newest_first(comp, &header, &lines, &dropped, events.len() as u64, group);
        loop {
            let mut d = dropped.clone();
            account(&lines, &kept, &mut d);
            text = assemble(comp, &header, &lines, &kept, &d, group);
            tokens = counter.count(&text);
            if tokens <= budget || kept.is_empty() {
                dropped = d;
                break;
            }
            // The reserve for the note is an upper bound, so this is rare: give up one more.
            let last = kept.last_mut().expect("non-empty");
            last.1 -= 1;
            if last.1 == 0 {
                kept.pop();
            }
        }
    }

    let mut items: Vec<ItemIx> = kept
        .iter()
        .flat_map(|&(i, n)| lines[i].entries[..n].iter())
        .filter_map(|e| match e.entry {
            Entry::Item(ix) => Some(ix),
            Entry::Query(_) => None,
        })
        .collect();
    items.sort_unstable();
    items.dedup();
    let total = events.len() as u64;
    Narrative {
        user: history.user.clone(),
        as_of,
        text,
        tokens,
        budget,
        events: total,
        events_kept: total - dropped.low_signal_events - dropped.events,
        lines: kept.len(),
        summarised,
        dropped,
        items,
    }
}

fn assemble<T: TokenCount>(
    comp: &Compressor<'_, T>,
    header: &str,
    lines: &[Line],
    kept: &Kept,
    dropped: &Dropped,
    group: bool,
) -> String {
    let mut text = header.to_string();
    for &(i, n) in kept {
        text.push_str(&render_line(comp, &lines[i], n, group));
    }
    text.push_str(&dropped.note());
    text
}

/// Keeps whole lines newest first while they fit, then as many entries of the next line as
/// fit, reserving room for the note about what was dropped.
fn fill_newest_first<T: TokenCount>(
    comp: &Compressor<'_, T>,
    header: &str,
    lines: &[Line],
    dropped: &Dropped,
    total_events: u64,
    group: bool,
) -> Kept {
    let counter = comp.counter();
    let budget = comp.config().budget;
    // Upper bound of the note: every count at its largest, the widest span labels.
    let worst = Dropped {
        events: total_events,
        entries: total_events,
        oldest: lines
            .last()
            .and_then(|l| l.times.last())
            .map(|t| t.0.label()),
        newest: lines.first().map(|l| l.newest().label()),
        ..dropped.clone()
    };
    let mut used = counter.count(header) + counter.count(&worst.note());
    let mut kept = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let room = budget.saturating_sub(used);
        let text = render_line(comp, line, line.entries.len(), group);
        if let Some(cost) = counter.count_within(&text, room) {
            used += cost;
            kept.push((i, line.entries.len()));
            continue;
        }
        // Largest prefix of entries that fits (cost grows with the prefix).
        let (mut lo, mut hi) = (0, line.entries.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            let text = render_line(comp, line, mid, group);
            if counter.count_within(&text, room).is_some() {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if lo > 0 {
            kept.push((i, lo));
        }
        break;
    }
    kept
}

/// Adds to `dropped` the lines and entries not in `kept`.
fn account(lines: &[Line], kept: &Kept, dropped: &mut Dropped) {
    let kept_entries = |i: usize| kept.iter().find(|k| k.0 == i).map_or(0, |k| k.1);
    let mut span: Option<(TimeBucket, TimeBucket)> = None;
    for (i, line) in lines.iter().enumerate() {
        let n = kept_entries(i);
        if n == line.entries.len() {
            continue;
        }
        for e in &line.entries[n..] {
            dropped.events += u64::from(e.events);
            dropped.entries += 1;
        }
        for (bucket, _) in &line.times {
            span = Some(match span {
                None => (*bucket, *bucket),
                Some((o, n)) => (o.min(*bucket), n.max(*bucket)),
            });
        }
    }
    dropped.oldest = span.map(|s| s.0.label());
    dropped.newest = span.map(|s| s.1.label());
}

#[cfg(test)]
mod tests {
    use super::shared_words_split;

    #[test]
    fn the_first_two_words_head_a_group() {
        assert_eq!(
            shared_words_split("red retrospot apron"),
            Some(("red retrospot", "apron"))
        );
        assert_eq!(
            shared_words_split("key fob , shed"),
            Some(("key fob", "shed"))
        );
        assert_eq!(shared_words_split("lunch bag"), None);
        assert_eq!(shared_words_split("lunch bag ,"), None);
        assert_eq!(shared_words_split("doormat"), None);
    }

    #[test]
    fn an_item_is_found_whole_or_after_its_group_head() {
        let text = "2011 (purchase) | red retrospot apron ×9, cup ×5; lunch bag black skull";
        assert_eq!(
            super::name_in(text, "red retrospot apron"),
            "red retrospot apron"
        );
        assert_eq!(super::name_in(text, "red retrospot cup"), "cup");
        assert_eq!(
            super::name_in(text, "lunch bag black skull"),
            "lunch bag black skull"
        );
        assert_eq!(
            super::name_in(text, "doormat union flag"),
            "doormat union flag"
        );
    }
}
