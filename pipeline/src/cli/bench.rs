use std::path::Path;

use anyhow::Result;
use recgpt_pipeline::bench::compress_bench;
use recgpt_pipeline::config::Config;

use super::{print_json, HistoryContext};
use crate::HistoryArgs;

pub fn compress(
    home: &Path,
    config: Config,
    args: &HistoryArgs,
    scales: &[u32],
    json: bool,
) -> Result<()> {
    let ctx = HistoryContext::open(home, config, args)?;
    let scaled_home = home.join("bench-scaled");
    let b = compress_bench(
        &ctx.store,
        &scaled_home,
        &ctx.compressor(),
        &ctx.window,
        scales,
    )?;
    if json {
        return print_json(&b);
    }
    for (scale, seconds) in b.scales.iter().zip(&b.replicate_seconds) {
        println!("scaled copy {scale}x written in {seconds:.1}s");
    }
    println!("budget {} tokens, one thread", b.budget);
    println!(
        "{:<30} {:>9} {:>11} {:>8} {:>12} {:>9} {:>10}",
        "pass", "users", "events", "seconds", "events/s", "÷ read", "peak MiB"
    );
    for r in &b.rows {
        println!(
            "{:<30} {:>9} {:>11} {:>8.2} {:>12.0} {:>9.2} {:>10}",
            r.pass,
            r.users,
            r.events,
            r.seconds,
            r.events_per_s,
            r.time_vs_read,
            r.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
        );
    }
    Ok(())
}
