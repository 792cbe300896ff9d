//! Grouping (RecGPT report §3.1): events → (time bucket, behaviour) groups of items →
//! reverse-grouped lines, each line one item sequence with every (time, behaviours) it
//! occurred under: `2011-10 (purchase), 2011-06 (purchase, return) | item A; item B`.

use std::collections::HashMap;

use chrono::NaiveDate;
use recgpt_data::{Behavior, BehaviorKind, ItemIx};

use super::bucket::TimeBucket;

/// What a group lists: a catalog item, or a search query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    Item(ItemIx),
    Query(String),
}

/// One entry of a line and how many events it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct LineEntry {
    pub entry: Entry,
    pub events: u32,
}

/// A rendered unit of the narrative.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// (bucket, behaviours) newest first, behaviours in [`signal`] order.
    pub times: Vec<(TimeBucket, Vec<BehaviorKind>)>,
    /// Items, most repeated first.
    pub entries: Vec<LineEntry>,
}

impl Line {
    pub fn newest(&self) -> TimeBucket {
        self.times[0].0
    }

    pub fn events(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.events)).sum()
    }
}

/// How informative a behaviour is, highest first: what the user paid for or deliberately
/// saved beats what they looked at. Used to order behaviours and to drop the least
/// informative content first.
pub fn signal(kind: BehaviorKind) -> u8 {
    match kind {
        BehaviorKind::Purchase => 8,
        BehaviorKind::Cart => 7,
        BehaviorKind::Favorite => 6,
        BehaviorKind::Search => 5,
        BehaviorKind::Rating => 4,
        BehaviorKind::ReviewView => 3,
        BehaviorKind::Return => 2,
        BehaviorKind::View => 1,
        BehaviorKind::Click => 0,
    }
}

/// Where one item sequence occurred: its (bucket, behaviour) keys, and per entry the events
/// summed over them.
type Occurrences = (Vec<(TimeBucket, BehaviorKind)>, Vec<u32>);

/// Per-entry statistics inside one (bucket, behaviour) group.
#[derive(Default, Clone, Copy)]
struct Tally {
    events: u32,
    last: i64,
}

/// Builds the reverse-grouped lines of a history, newest and most informative first.
pub fn layout(events: &[Behavior], as_of: NaiveDate, keep_low_signal: bool) -> Vec<Line> {
    // 1. (bucket, behaviour) → entries
    let mut groups: HashMap<(TimeBucket, BehaviorKind), HashMap<Entry, Tally>> = HashMap::new();
    for event in events {
        if !keep_low_signal && !event.kind.is_reliable() {
            continue;
        }
        let entry = match (&event.item, &event.query) {
            (Some(ix), _) => Entry::Item(*ix),
            (None, Some(q)) => Entry::Query(q.clone()),
            (None, None) => continue,
        };
        let bucket = TimeBucket::of(event.at.date(), as_of);
        let tally = groups
            .entry((bucket, event.kind))
            .or_default()
            .entry(entry)
            .or_default();
        tally.events += 1;
        tally.last = tally.last.max(event.at.0);
    }

    // 2. order each group's entries: most repeated, then most recent, then by id
    // 3. reverse-group: identical entry sequences share one line
    let mut lines: HashMap<Vec<Entry>, Occurrences> = HashMap::new();
    for ((bucket, kind), entries) in groups {
        let mut entries: Vec<(Entry, Tally)> = entries.into_iter().collect();
        entries.sort_by(|(ea, ta), (eb, tb)| {
            tb.events
                .cmp(&ta.events)
                .then(tb.last.cmp(&ta.last))
                .then_with(|| ea.cmp(eb))
        });
        let (sequence, counts): (Vec<Entry>, Vec<u32>) =
            entries.into_iter().map(|(e, t)| (e, t.events)).unzip();
        let line = lines
            .entry(sequence)
            .or_insert_with(|| (Vec::new(), vec![0; counts.len()]));
        line.0.push((bucket, kind));
        line.1.iter_mut().zip(counts).for_each(|(sum, n)| *sum += n);
    }

    let mut lines: Vec<Line> = lines
        .into_iter()
        .map(|(sequence, (mut keys, counts))| {
            keys.sort_by(|a, b| b.0.cmp(&a.0).then(signal(b.1).cmp(&signal(a.1))));
            let mut times: Vec<(TimeBucket, Vec<BehaviorKind>)> = Vec::new();
            for (bucket, kind) in keys {
                match times.last_mut() {
                    Some((b, kinds)) if *b == bucket => kinds.push(kind),
                    _ => times.push((bucket, vec![kind])),
                }
            }
            let entries = sequence
                .into_iter()
                .zip(counts)
                .map(|(entry, events)| LineEntry { entry, events })
                .collect();
            Line { times, entries }
        })
        .collect();
    lines.sort_by(|a, b| {
        b.newest()
            .cmp(&a.newest())
            .then_with(|| max_signal(b).cmp(&max_signal(a)))
            .then_with(|| b.events().cmp(&a.events()))
            .then_with(|| entries(a).cmp(entries(b)))
    });
    lines
}

fn max_signal(line: &Line) -> u8 {
    line.times[0]
        .1
        .iter()
        .map(|k| signal(*k))
        .max()
        .unwrap_or(0)
}

fn entries(line: &Line) -> impl Iterator<Item = &Entry> {
    line.entries.iter().map(|e| &e.entry)
}
