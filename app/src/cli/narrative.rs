use std::path::Path;

use anyhow::Result;
use recgpt_data::{DataError, History, Store};
use recgpt_pipeline::config::Config;
use serde::Serialize;

use super::{print_json, HistoryContext};
use crate::HistoryArgs;

pub fn one(home: &Path, config: Config, user: &str, args: &HistoryArgs, json: bool) -> Result<()> {
    let ctx = HistoryContext::open(home, config, args)?;
    let history = ctx.store.history(user, &ctx.window)?;
    let narrative = ctx.compressor().compress(&history, &ctx.window);
    if json {
        return print_json(&narrative);
    }
    print!("{}", narrative.text);
    println!(
        "-- user {} | {} tokens of {} | {} of {} events kept | {} lines",
        narrative.user,
        narrative.tokens,
        narrative.budget,
        narrative.events_kept,
        narrative.events,
        narrative.lines
    );
    Ok(())
}

#[derive(Serialize)]
struct UserRow {
    user: String,
    events: usize,
    first: String,
    last: String,
}

pub fn users(home: &Path, limit: usize, args: &HistoryArgs, json: bool) -> Result<()> {
    let store = Store::open(home)?;
    let window = store.window(args.until, args.as_of);
    let mut rows = Vec::new();
    store.for_each_history(&window, |h: History| {
        rows.push(UserRow {
            user: h.user,
            events: h.events.len(),
            first: h.events[0].at.to_string(),
            last: h.events[h.events.len() - 1].at.to_string(),
        });
        Ok::<_, DataError>(())
    })?;
    rows.sort_by(|a, b| b.events.cmp(&a.events).then(a.user.cmp(&b.user)));
    rows.truncate(limit);
    if json {
        return print_json(&rows);
    }
    for r in rows {
        println!(
            "{:<12} {:>7} events  {} .. {}",
            r.user, r.events, r.first, r.last
        );
    }
    Ok(())
}
