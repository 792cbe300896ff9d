use std::path::Path;

use anyhow::Result;
use recgpt_data::Store;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::stats::activity;

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

pub fn users(home: &Path, limit: usize, args: &HistoryArgs, json: bool) -> Result<()> {
    let store = Store::open(home)?;
    let window = store.window(args.until, args.as_of);
    let mut rows = activity(&store, &window)?;
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
