//! `recgpt bench serve`: wrk against the HTTP server in this process, on loopback.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use recgpt::serve::{self, AppState};
use recgpt_pipeline::config::Config;

use crate::cli::print_json;

/// One wrk run.
#[derive(Debug, serde::Serialize)]
struct WrkRow {
    route: String,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests/s ÷ the hello-world route's.
    vs_hello: f64,
    non_2xx: u64,
}

/// `recgpt bench serve`: wrk against the server in this process, on loopback.
pub fn run(
    home: &Path,
    mut config: Config,
    seconds: u64,
    connections: usize,
    json: bool,
) -> Result<()> {
    config.serve.generate = false;
    let state = Arc::new(AppState::open(home, config, None, None)?);
    let (user, item) = state
        .results
        .users()?
        .into_iter()
        .find_map(|u| {
            let r = state.results.user(&u).ok()??;
            let item = r
                .recommendations
                .iter()
                .find(|x| x.explanation.is_some())?
                .item
                .clone();
            Some((u, item))
        })
        .context(
            "no stored recommendations with explanations: run `recgpt recommend USER` first",
        )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    runtime.spawn(serve::serve(state, listener));
    let routes = [
        ("hello world (reference)", "/bench/hello".to_string()),
        (
            "explanation (cached)",
            format!("/v1/explanations?user_id={user}&item_id={item}"),
        ),
        (
            "recommendations k=20",
            format!("/v1/users/{user}/recommendations?k=20"),
        ),
    ];
    let mut rows: Vec<WrkRow> = Vec::new();
    for (name, path) in routes {
        let out = std::process::Command::new("wrk")
            .args([
                "-t1",
                &format!("-c{connections}"),
                &format!("-d{seconds}s"),
                "--latency",
                &format!("{base}{path}"),
            ])
            .output()
            .context("run wrk (apt install wrk, or `make deps`)")?;
        anyhow::ensure!(
            out.status.success(),
            "wrk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut row = parse_wrk(name, &text)?;
        row.vs_hello = rows
            .first()
            .map_or(1.0, |hello| row.requests_per_s / hello.requests_per_s);
        rows.push(row);
    }
    if json {
        return print_json(&rows);
    }
    println!("wrk, 1 thread, {connections} connections, {seconds}s per route, loopback, same process and run");
    println!(
        "{:<26} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "route", "requests/s", "p50 ms", "p99 ms", "÷ hello", "non-2xx"
    );
    for r in &rows {
        println!(
            "{:<26} {:>12.0} {:>9.3} {:>9.3} {:>9.2} {:>8}",
            r.route, r.requests_per_s, r.p50_ms, r.p99_ms, r.vs_hello, r.non_2xx
        );
    }
    Ok(())
}

/// Requests/s and the 50th / 99th latency percentiles of wrk's `--latency` report.
fn parse_wrk(route: &str, text: &str) -> Result<WrkRow> {
    let ms = |v: &str| -> Option<f64> {
        let (number, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = number.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => return None,
        })
    };
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let parsed = (|| {
        Some(WrkRow {
            route: route.to_string(),
            requests_per_s: field("Requests/sec:")?.parse().ok()?,
            p50_ms: ms(field("50%")?)?,
            p99_ms: ms(field("99%")?)?,
            vs_hello: 1.0,
            non_2xx: field("Non-2xx or 3xx responses:").map_or(Some(0), |v| v.parse().ok())?,
        })
    })();
    parsed.with_context(|| format!("unexpected wrk output:\n{text}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_reports_parse() {
        let text = "Running 1s test @ http://127.0.0.1:1/bench/hello
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   210.00us  100.00us   2.00ms   90.00%
  Latency Distribution
     50%  180.00us
     75%  220.00us
     90%  300.00us
     99%    1.20ms
  40000 requests in 1.00s, 4.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  40000.50
Transfer/sec:      4.00MB
";
        let row = super::parse_wrk("hello", text).unwrap();
        assert_eq!(row.requests_per_s, 40000.5);
        assert!((row.p50_ms - 0.18).abs() < 1e-9);
        assert!((row.p99_ms - 1.2).abs() < 1e-9);
        assert_eq!(row.non_2xx, 3);
        assert!(super::parse_wrk("x", "garbage").is_err());
    }
}
