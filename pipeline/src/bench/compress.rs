//! `recgpt bench compress`: compression throughput (events/s) and peak memory on the real
//! store and on a scaled copy (users replicated with new ids), each next to a reference pass
//! that only reads and decodes the same histories, measured in the same run.

use std::path::Path;
use std::time::Instant;

use recgpt_data::{DataError, History, Store, TimeWindow};
use serde::Serialize;

use crate::compress::Compressor;
use crate::llm::TokenCount;

/// One measured pass.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub pass: String,
    pub users: u64,
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    /// Time of this pass ÷ time of the read-only pass over the same store.
    pub time_vs_read: f64,
    /// Peak resident memory during the pass (VmHWM after resetting it), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct CompressBench {
    pub budget: usize,
    pub scales: Vec<u32>,
    /// Seconds to write each scaled copy.
    pub replicate_seconds: Vec<f64>,
    pub rows: Vec<BenchRow>,
}

/// Runs the benchmark; each scaled copy is written under `scaled_home` and removed after.
/// Peak memory at two scales shows whether it grows with the number of users.
pub fn compress_bench<T: TokenCount>(
    store: &Store,
    scaled_home: &Path,
    compressor: &Compressor<'_, T>,
    window: &TimeWindow,
    scales: &[u32],
) -> Result<CompressBench, DataError> {
    let mut rows = Vec::new();
    let read = measure("read only (reference)", None, || read_pass(store, window))?;
    let read_s = read.seconds;
    rows.push(read);
    rows.push(measure("compress, cold token memo", Some(read_s), || {
        compress_pass(store, compressor, window)
    })?);
    rows.push(measure("compress", Some(read_s), || {
        compress_pass(store, compressor, window)
    })?);

    let mut replicate_seconds = Vec::new();
    for &scale in scales {
        let started = Instant::now();
        store.replicate(scaled_home, scale)?;
        replicate_seconds.push(started.elapsed().as_secs_f64());
        let scaled = Store::open(scaled_home)?;
        let read = measure(&format!("read only {scale}x (reference)"), None, || {
            read_pass(&scaled, window)
        })?;
        let read_s = read.seconds;
        rows.push(read);
        rows.push(measure(
            &format!("compress {scale}x"),
            Some(read_s),
            || compress_pass(&scaled, compressor, window),
        )?);
        drop(scaled);
        let _ = std::fs::remove_dir_all(scaled_home);
    }
    Ok(CompressBench {
        budget: compressor.config().budget,
        scales: scales.to_vec(),
        replicate_seconds,
        rows,
    })
}

fn measure(
    pass: &str,
    reference: Option<f64>,
    run: impl FnOnce() -> Result<(u64, u64), DataError>,
) -> Result<BenchRow, DataError> {
    reset_peak_rss();
    let started = Instant::now();
    let (users, events) = run()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(BenchRow {
        pass: pass.to_string(),
        users,
        events,
        seconds,
        events_per_s: events as f64 / seconds,
        time_vs_read: reference.map_or(1.0, |r| seconds / r),
        peak_rss_mib: peak_rss_mib(),
    })
}

fn read_pass(store: &Store, window: &TimeWindow) -> Result<(u64, u64), DataError> {
    let (mut users, mut events) = (0, 0);
    store.for_each_history(window, |h: History| {
        users += 1;
        events += std::hint::black_box(h.events.len()) as u64;
        Ok::<_, DataError>(())
    })?;
    Ok((users, events))
}

fn compress_pass<T: TokenCount>(
    store: &Store,
    compressor: &Compressor<'_, T>,
    window: &TimeWindow,
) -> Result<(u64, u64), DataError> {
    let (mut users, mut events) = (0, 0);
    store.for_each_history(window, |h: History| {
        let narrative = compressor.compress(&h, window);
        std::hint::black_box(&narrative.text);
        users += 1;
        events += narrative.events;
        Ok::<_, DataError>(())
    })?;
    Ok((users, events))
}

/// Resets the kernel's peak-RSS counter (VmHWM) of this process.
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
