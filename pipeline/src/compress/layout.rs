//! Grouping (RecGPT report §3.1): events → (time bucket, behaviour) groups of items →
//! reverse-grouped lines, each line one item sequence with every (time, behaviours) it
//! occurred under: `2011-10 (purchase), 2011-06 (purchase, return) | item A; item B`.

use rustc_hash::FxHashMap as HashMap;

use chrono::{Datelike, NaiveDate};
use recgpt_data::{Behavior, BehaviorKind, ItemIx};

use super::bucket::{Bucketer, TimeBucket};

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
    /// A collapsed repeat, rendered with its event count (`item ×12`): it stands for every
    /// event of the item under the line's behaviour, listed once at its newest time.
    pub counted: bool,
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
    /// Distinct months of the entry's events in the whole history (collapsing only).
    months: u32,
}

/// An (entry, behaviour) across the history, for collapsing repeats.
struct Repeat {
    newest: TimeBucket,
    buckets: usize,
    events: u32,
    month: (i32, u32),
    months: u32,
}

impl Repeat {
    /// Seen in several time buckets (at the layout's coarsening). Counting months as well
    /// (one year bucket holds many) was measured: the counts cost more tokens than they save.
    fn is_repeat(&self) -> bool {
        self.buckets >= REPEAT_BUCKETS
    }
}

/// What [`layout`] leaves out and how finely it buckets time.
#[derive(Debug, Clone, Default)]
pub struct LayoutOptions {
    /// Leave out plain views and clicks.
    pub drop_low_signal: bool,
    /// 0: day / month / year buckets; 1: days merged into months; 2: into years.
    pub coarsen: u8,
    /// List an (item, behaviour) seen in several time buckets once, under its newest, with
    /// all its events (`item ×12`).
    pub collapse_repeats: bool,
}

/// Builds the reverse-grouped lines of a history, newest and most informative first.
pub fn layout(events: &[Behavior], as_of: NaiveDate, options: &LayoutOptions) -> Vec<Line> {
    let visible = |event: &Behavior| -> Option<Entry> {
        if options.drop_low_signal && !event.kind.is_reliable() {
            return None;
        }
        match (&event.item, &event.query) {
            (Some(ix), _) => Some(Entry::Item(*ix)),
            (None, Some(q)) => Some(Entry::Query(q.clone())),
            (None, None) => None,
        }
    };
    let bucketer = Bucketer::new(as_of, options.coarsen);
    let bucket_of = |event: &Behavior| bucketer.bucket(event.at.date());

    // 0. repeats to collapse: (entry, behaviour) → (newest bucket, buckets, events)
    let mut repeats: HashMap<(Entry, BehaviorKind), Repeat> = HashMap::default();
    if options.collapse_repeats {
        for event in events {
            let Some(entry) = visible(event) else {
                continue;
            };
            let bucket = bucket_of(event);
            let date = event.at.date();
            let month = (date.year(), date.month());
            let r = repeats.entry((entry, event.kind)).or_insert(Repeat {
                newest: bucket,
                buckets: 0,
                events: 0,
                month,
                months: 1,
            });
            // events are oldest first: a bucket not seen last is a new, newer one
            if r.buckets == 0 || r.newest != bucket {
                r.buckets += 1;
                r.newest = bucket;
            }
            if r.month != month {
                r.month = month;
                r.months += 1;
            }
            r.events += 1;
        }
    }

    // 1. (bucket, behaviour) → entries
    let mut groups: HashMap<(TimeBucket, BehaviorKind), HashMap<Entry, Tally>> = HashMap::default();
    for event in events {
        let Some(entry) = visible(event) else {
            continue;
        };
        let bucket = bucket_of(event);
        let seen = match repeats.is_empty() {
            true => None,
            false => repeats.get(&(entry.clone(), event.kind)),
        };
        let repeat = seen.filter(|r| r.is_repeat());
        if repeat.is_some_and(|r| r.newest != bucket) {
            continue;
        }
        let tally = groups
            .entry((bucket, event.kind))
            .or_default()
            .entry(entry)
            .or_default();
        tally.events = match repeat {
            Some(r) => r.events,
            None => tally.events + 1,
        };
        tally.last = tally.last.max(event.at.0);
        tally.months = seen.map_or(0, |r| r.months);
    }

    // 2. order each group's entries: bought in the most months (when collapsing), most
    //    repeated, then most recent, then by id
    // 3. reverse-group: identical entry sequences share one line
    let mut lines: HashMap<Vec<Entry>, Occurrences> = HashMap::default();
    for ((bucket, kind), entries) in groups {
        let mut entries: Vec<(Entry, Tally)> = entries.into_iter().collect();
        entries.sort_by(|(ea, ta), (eb, tb)| {
            tb.months
                .cmp(&ta.months)
                .then(tb.events.cmp(&ta.events))
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
                .map(|(entry, events)| {
                    let counted = times.iter().flat_map(|(_, kinds)| kinds).any(|k| {
                        !repeats.is_empty()
                            && repeats
                                .get(&(entry.clone(), *k))
                                .is_some_and(Repeat::is_repeat)
                    });
                    LineEntry {
                        entry,
                        events,
                        counted,
                    }
                })
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

/// An (item, behaviour) seen in at least this many time buckets is collapsed into one mention
/// when [`LayoutOptions::collapse_repeats`] is on.
pub const REPEAT_BUCKETS: usize = 2;

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
