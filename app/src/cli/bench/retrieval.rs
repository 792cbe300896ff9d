//! `recgpt bench retrieval`: the three-tower model's training and the vector index at scale.

use std::path::Path;

use anyhow::Result;
use recgpt_pipeline::bench::retrieval::Sweep;
use recgpt_pipeline::config::Config;
use recgpt_retrieval::tower::TowerModel;

use crate::cli::print_json;
use crate::EmbedderArgs;

/// `recgpt bench retrieval`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    home: &Path,
    config: &Config,
    scales: &[usize],
    sweep: &Sweep,
    users: usize,
    tags: usize,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    use recgpt_pipeline::bench::retrieval::index_bench;
    let (_, prepared) = crate::cli::retrieval::open(home, config, embedder)?;
    let model = TowerModel::load(&TowerModel::dir_in(home), &prepared.features)?;
    // every segment through its HNSW graph: the point is to measure the graph
    let index_config = recgpt_retrieval::index::IndexConfig {
        full_scan_threshold_kb: 0,
        ..config.index.clone()
    };
    let rows = index_bench(
        &model,
        &prepared.tag_vectors,
        home,
        &index_config,
        scales,
        sweep,
        users,
        tags,
        config.tower.seed,
    )?;
    if json {
        return print_json(&serde_json::json!({"training": model.meta.losses, "index": rows}));
    }
    let epochs = &model.meta.losses;
    println!(
        "training: {} epochs, {:.1}s per epoch ({} users, {} items, batch {})",
        epochs.len(),
        epochs.iter().map(|l| l.seconds).sum::<f64>() / epochs.len().max(1) as f64,
        model.meta.users.len(),
        model.meta.items,
        model.meta.config.batch
    );
    println!(
        "{:>6} {:>4} {:>5} {:>9} {:>9} {:>9} {:>8} {:>11} {:>12} {:>8} {:>10}",
        "scale",
        "m",
        "ef",
        "points",
        "build s",
        "indexed",
        "queries",
        "HNSW usr/s",
        "exact usr/s",
        "speedup",
        "recall@10"
    );
    for r in &rows {
        println!(
            "{:>5}x {:>4} {:>5} {:>9} {:>9.2} {:>9} {:>8} {:>11.1} {:>12.1} {:>7.1}x {:>10.4}",
            r.scale,
            r.m,
            r.ef,
            r.points,
            r.build_seconds,
            r.indexed,
            r.users * r.queries_per_user,
            r.hnsw_users_per_s,
            r.exact_users_per_s,
            r.speedup,
            r.recall_at_10
        );
    }
    Ok(())
}
