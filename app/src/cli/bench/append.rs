//! `recgpt bench append`: an incremental import against a whole one, in the same run, and the
//! share of users whose narrative the appended events change (as of each store's last day, and
//! both as of one day).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use recgpt_data::import::{import_online_retail, split_by_day, ImportTarget};
use recgpt_data::{DataError, Store};
use recgpt_pipeline::compress::Compressor;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::llm::{GgufTokenizer, TokenCounter};

use crate::cli::print_json;

#[derive(Debug, serde::Serialize)]
struct Report {
    since: String,
    /// Seconds: one import of the whole file (the reference), the part before `since`, and
    /// the rest appended to it.
    whole_s: f64,
    before_s: f64,
    append_s: f64,
    appended_events: u64,
    users: u64,
    /// Users with an appended event.
    users_with_new_events: u64,
    /// Users whose narrative (as of each store's last event) differs after the append.
    narratives_changed: u64,
    /// The same with the narratives of both stores written as of one day (the appended store's
    /// last): what the new events alone change.
    narratives_changed_same_day: u64,
}

pub fn run(
    home: &Path,
    config: &Config,
    data: &Path,
    since: chrono::NaiveDate,
    json: bool,
) -> Result<()> {
    let dir = home.join("bench-append");
    let _ = std::fs::remove_dir_all(&dir);
    let (whole, parts) = (dir.join("whole"), dir.join("parts"));
    std::fs::create_dir_all(&dir)?;
    let (before, after) = split_by_day(data, since, &dir)?;
    let timed = |f: &dyn Fn() -> Result<recgpt_data::import::ImportSummary, DataError>| {
        let started = Instant::now();
        f().map(|s| (s, started.elapsed().as_secs_f64()))
    };
    let (_, whole_s) = timed(&|| import_online_retail(data, &ImportTarget::new(&whole)))?;
    let (_, before_s) = timed(&|| import_online_retail(&before, &ImportTarget::new(&parts)))?;
    let narratives = Narratives::new(config)?;
    let base = Store::open(&parts)?;
    let old = narratives.of(&base, None)?;
    let (appended, append_s) =
        timed(&|| import_online_retail(&after, &ImportTarget::appending(&parts)))?;
    let store = Store::open(&parts)?;
    let last_day = store.manifest().last_event.date() + chrono::Days::new(1);
    let new = narratives.of(&store, None)?;
    let old_same_day = narratives.of(&base, Some(last_day))?;
    let new_same_day = narratives.of(&store, Some(last_day))?;
    let mut with_new_events = std::collections::HashSet::new();
    store.for_each_history(&store.window(None, None), |h| {
        if h.events.iter().any(|e| e.at.date() >= since) {
            with_new_events.insert(h.user);
        }
        Ok::<_, DataError>(())
    })?;
    let changed = |a: &HashMap<String, String>, b: &HashMap<String, String>| {
        b.iter().filter(|(u, n)| a.get(*u) != Some(n)).count() as u64
    };
    let report = Report {
        since: since.to_string(),
        whole_s,
        before_s,
        append_s,
        appended_events: appended.events,
        users: store.manifest().users,
        users_with_new_events: with_new_events.len() as u64,
        narratives_changed: changed(&old, &new),
        narratives_changed_same_day: changed(&old_same_day, &new_same_day),
    };
    std::fs::remove_dir_all(&dir)?;
    if json {
        return print_json(&report);
    }
    let r = &report;
    println!("Online Retail split at {}", r.since);
    println!("{:<44} {:>9} {:>9}", "import", "seconds", "÷ whole");
    for (name, s) in [
        ("whole file (reference)", r.whole_s),
        ("before the split (full import)", r.before_s),
        ("the rest appended (--append)", r.append_s),
    ] {
        println!("{name:<44} {s:>9.2} {:>9.2}", s / r.whole_s);
    }
    let share = |n: u64| format!("{n} ({:.1}%)", 100.0 * n as f64 / r.users as f64);
    println!("appended events {}  users {}", r.appended_events, r.users);
    println!(
        "users with an appended event           {}",
        share(r.users_with_new_events)
    );
    println!(
        "narratives changed (recomputed by run) {}",
        share(r.narratives_changed)
    );
    println!(
        "narratives changed, both as of one day {}",
        share(r.narratives_changed_same_day)
    );
    Ok(())
}

/// Every user's narrative under the configured compression.
struct Narratives<'a> {
    config: &'a Config,
    counter: TokenCounter,
}

impl<'a> Narratives<'a> {
    fn new(config: &'a Config) -> Result<Self> {
        let counter = TokenCounter::new(GgufTokenizer::load(&config.llm.model)?);
        Ok(Self { config, counter })
    }

    /// User → narrative text, as of the store's last event or `as_of`.
    fn of(
        &self,
        store: &Store,
        as_of: Option<chrono::NaiveDate>,
    ) -> Result<HashMap<String, String>> {
        let compressor =
            Compressor::new(store.catalog(), self.config.compress.clone(), &self.counter);
        let window = store.window(None, as_of);
        let mut out = HashMap::new();
        store.for_each_history(&window, |h| {
            let text = compressor.compress(&h, &window).text;
            out.insert(h.user, text);
            Ok::<_, DataError>(())
        })?;
        Ok(out)
    }
}
