//! `recgpt bench serve`: wrk against the HTTP server in this process, on loopback, while a
//! writer (a batch job's stand-in on its own connection) rewrites other stored users; with
//! `--postgres`, the same routes again over a PostgreSQL copy of the stored users, with a
//! writer of its own.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use recgpt::serve::{self, AppState};
use recgpt_pipeline::config::Config;
use recgpt_pipeline::results::ResultStore;

use crate::cli::print_json;

/// One wrk run.
#[derive(Debug, serde::Serialize)]
struct WrkRow {
    route: String,
    connections: usize,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests/s ÷ the hello-world route's at the same connections.
    vs_hello: f64,
    non_2xx: u64,
}

/// What the bench reports.
#[derive(Debug, serde::Serialize)]
struct Report {
    rows: Vec<WrkRow>,
    /// Users the writer stored per second over all runs (0 without one).
    writes_per_s: f64,
    /// The same for the PostgreSQL store's writer (with `--postgres`).
    postgres_writes_per_s: Option<f64>,
}

/// `recgpt bench serve`: wrk against the server in this process, on loopback, at each of
/// `connections`, while `writes_per_s` users are rewritten; with `postgres` (the admin URL of
/// a server where a scratch database may be made) also over a PostgreSQL store.
pub fn run(
    home: &Path,
    mut config: Config,
    seconds: u64,
    connections: &[usize],
    writes_per_s: u32,
    postgres: Option<&str>,
    json: bool,
) -> Result<()> {
    config.serve.generate = false;
    let cache_mb = config.serve.cache_mb;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = config.store.open(home)?;
    let (user, item) = bench_pair(&store)?;
    let mut routes = Vec::new();
    let mut stores = vec![(kind(&config), config.clone(), store)];
    if let Some(admin) = postgres {
        let url = recgpt_pipeline::results::scratch_database(admin, "recgpt_bench_serve")?;
        let copy = ResultStore::connect(&url)?;
        stores[0].2.for_each_user(|r| copy.put_user(&r))?;
        let mut pg = config.clone();
        pg.store.url = Some(url);
        stores.push(("postgres", pg, copy));
    }
    let explanation = format!("/v1/explanations?user_id={user}&item_id={item}");
    for (kind, config, _) in &stores {
        let base = listen(&runtime, home, config, cache_mb)?;
        let uncached = listen(&runtime, home, config, 0)?;
        if routes.is_empty() {
            // the reference, served by the configured store's cached server
            routes.push((
                "hello world (reference)".to_string(),
                format!("{base}/bench/hello"),
            ));
        }
        routes.extend([
            (
                format!("explanation (cached), {kind}"),
                format!("{base}{explanation}"),
            ),
            (
                format!("recommendations k=20, {kind}"),
                format!("{base}/v1/users/{user}/recommendations?k=20"),
            ),
            (
                format!("explanation, no result cache, {kind}"),
                format!("{uncached}{explanation}"),
            ),
        ]);
    }
    let writers = stores
        .into_iter()
        .filter(|_| writes_per_s > 0)
        .map(|(_, _, store)| Writer::start(store, &user, writes_per_s))
        .collect::<Result<Vec<_>>>()?;
    let mut rows: Vec<WrkRow> = Vec::new();
    for &c in connections {
        let mut hello: Option<f64> = None;
        for (name, url) in &routes {
            let mut row = wrk(name, url, c, seconds)?;
            row.vs_hello = hello.map_or(1.0, |h| row.requests_per_s / h);
            hello.get_or_insert(row.requests_per_s);
            rows.push(row);
        }
    }
    let mut rates = writers
        .into_iter()
        .map(Writer::stop)
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let report = Report {
        rows,
        writes_per_s: rates.next().unwrap_or(0.0),
        postgres_writes_per_s: postgres.map(|_| rates.next().unwrap_or(0.0)),
    };
    if json {
        return print_json(&report);
    }
    println!(
        "wrk, 1 thread, {seconds}s per route, loopback, same process and run; result cache \
         {cache_mb} MB; a writer storing {:.0} users/s meanwhile{}",
        report.writes_per_s,
        report
            .postgres_writes_per_s
            .map_or_else(String::new, |w| format!(" (PostgreSQL: {w:.0} users/s)"))
    );
    println!(
        "{:<40} {:>6} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "route", "conns", "requests/s", "p50 ms", "p99 ms", "÷ hello", "non-2xx"
    );
    for r in &report.rows {
        println!(
            "{:<40} {:>6} {:>12.0} {:>9.3} {:>9.3} {:>9.2} {:>8}",
            r.route, r.connections, r.requests_per_s, r.p50_ms, r.p99_ms, r.vs_hello, r.non_2xx
        );
    }
    Ok(())
}

/// A stored user with an explained recommendation, and that item.
fn bench_pair(results: &ResultStore) -> Result<(String, String)> {
    results
        .users()?
        .into_iter()
        .find_map(|u| {
            let r = results.user(&u).ok()??;
            let item = r
                .recommendations
                .iter()
                .find(|x| x.explanation.is_some())?
                .item
                .clone();
            Some((u, item))
        })
        .context("no stored recommendations with explanations: run `recgpt recommend USER` first")
}

/// The configured store's kind, for the rows' names.
fn kind(config: &Config) -> &'static str {
    if config.store.url.is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// A server over `config`'s store with a result cache of `cache_mb` (0: none), on a loopback
/// port; its base URL.
fn listen(
    runtime: &tokio::runtime::Runtime,
    home: &Path,
    config: &Config,
    cache_mb: usize,
) -> Result<String> {
    let mut config = config.clone();
    config.serve.cache_mb = cache_mb;
    let state = Arc::new(AppState::open(home, config, None, None)?);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    runtime.spawn(serve::serve(state, listener));
    Ok(base)
}

/// One wrk run against `url`.
fn wrk(route: &str, url: &str, connections: usize, seconds: u64) -> Result<WrkRow> {
    let out = std::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .context("run wrk (apt install wrk, or `make deps`)")?;
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut row = parse_wrk(route, &String::from_utf8_lossy(&out.stdout))?;
    row.connections = connections;
    Ok(row)
}

/// A thread that stores the other stored users' results again, at a steady rate, through its
/// own store handle (its own connections, as a batch job in another process would).
struct Writer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    started: Instant,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Writer {
    fn start(store: ResultStore, benched: &str, per_s: u32) -> Result<Self> {
        // read once: the writer stores the same results again and again
        let mut others = Vec::new();
        for user in store.users()?.iter().filter(|u| *u != benched) {
            others.extend(store.user(user)?);
        }
        anyhow::ensure!(
            !others.is_empty(),
            "the writer rewrites stored users other than user {benched}: store two or more \
             (`recgpt recommend 12347 13018`) or pass --writes-per-s 0"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let (stop_flag, count) = (Arc::clone(&stop), Arc::clone(&writes));
        let interval = Duration::from_secs_f64(1.0 / f64::from(per_s));
        let thread = std::thread::spawn(move || -> Result<()> {
            let mut next = Instant::now();
            for result in others.iter().cycle() {
                if stop_flag.load(Ordering::Relaxed) {
                    break;
                }
                store.put_user(result)?;
                count.fetch_add(1, Ordering::Relaxed);
                next += interval;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(())
        });
        Ok(Self {
            stop,
            writes,
            started: Instant::now(),
            thread,
        })
    }

    /// Stops the writer; the users it stored per second.
    fn stop(self) -> Result<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
        Ok(self.writes.load(Ordering::Relaxed) as f64 / elapsed)
    }
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
            connections: 0,
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
