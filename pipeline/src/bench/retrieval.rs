//! `recgpt bench retrieval`: the Qdrant Edge index against exact search, on the real catalog's
//! item vectors and on larger synthetic catalogs of the same vector distribution.
//!
//! Each user sends one user query and `tags` tag queries (h = β·h_user + (1−β)·h_tag, tags
//! drawn from the catalog's title tags), as the retrieve stage does. A synthetic catalog of
//! `scale`× keeps the real vectors and adds `(scale − 1)·n` vectors drawn from a Gaussian with
//! the real vectors' mean and full covariance, made unit length like them.

use std::path::Path;
use std::time::Instant;

use recgpt_retrieval::index::{
    recall_against, EdgeIndex, ExactIndex, IndexConfig, IndexError, IndexPoint, SearchFilter,
    VectorIndex,
};
use recgpt_retrieval::rng::SplitMix64;
use recgpt_retrieval::tower::{TowerError, TowerModel};
use serde::Serialize;

/// One catalog size.
#[derive(Debug, Clone, Serialize)]
pub struct IndexBenchRow {
    pub scale: usize,
    /// HNSW edges per node (build) and candidates kept while searching.
    pub m: usize,
    pub ef: usize,
    pub points: usize,
    pub build_seconds: f64,
    /// Vectors in an HNSW graph after the build.
    pub indexed: usize,
    pub users: usize,
    pub queries_per_user: usize,
    pub hnsw_users_per_s: f64,
    pub exact_users_per_s: f64,
    /// HNSW users/s ÷ exact users/s, measured in the same run.
    pub speedup: f64,
    /// Share of the exact top 10 that the index returns, over every query.
    pub recall_at_10: f64,
}

/// The HNSW settings the benchmark tries: each `m` is built once per scale and searched at
/// each `ef`.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub m: Vec<usize>,
    pub ef: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexBenchError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Tower(#[from] TowerError),
}

/// Gaussian by Box–Muller.
fn gaussian(rng: &mut SplitMix64) -> f32 {
    let u1 = rng.unit().max(1e-12);
    let u2 = rng.unit();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// The real vectors followed by `(scale − 1)·n` draws from a Gaussian with their mean and
/// covariance, made unit length like the real ones.
pub fn synthetic(vectors: &[Vec<f32>], scale: usize, seed: u64) -> Vec<Vec<f32>> {
    let dim = vectors.first().map_or(0, Vec::len);
    let n = vectors.len().max(1) as f64;
    let mean: Vec<f64> = (0..dim)
        .map(|d| vectors.iter().map(|v| f64::from(v[d])).sum::<f64>() / n)
        .collect();
    let mut cov = vec![0f64; dim * dim];
    for v in vectors {
        for i in 0..dim {
            for j in 0..=i {
                cov[i * dim + j] += (f64::from(v[i]) - mean[i]) * (f64::from(v[j]) - mean[j]) / n;
            }
        }
    }
    // Cholesky factor L (lower), with a small ridge so a flat direction cannot break it
    let mut l = vec![0f64; dim * dim];
    for i in 0..dim {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * dim + k] * l[j * dim + k]).sum();
            if i == j {
                l[i * dim + i] = (cov[i * dim + i] + 1e-9 - s).max(1e-12).sqrt();
            } else {
                l[i * dim + j] = (cov[i * dim + j] - s) / l[j * dim + j];
            }
        }
    }
    let mut rng = SplitMix64::new(seed);
    let mut out = vectors.to_vec();
    for _ in 0..(scale.max(1) - 1) * vectors.len() {
        let z: Vec<f64> = (0..dim).map(|_| f64::from(gaussian(&mut rng))).collect();
        let x = (0..dim)
            .map(|i| (mean[i] + (0..=i).map(|k| l[i * dim + k] * z[k]).sum::<f64>()) as f32)
            .collect();
        out.push(unit(x));
    }
    out
}

/// Runs the benchmark for each scale; `tag_texts` are text embeddings tag queries are drawn
/// from. Index files go under `dir` (removed afterwards).
#[allow(clippy::too_many_arguments)]
pub fn index_bench(
    model: &TowerModel,
    tag_texts: &[[f32; recgpt_retrieval::embed::DIM]],
    dir: &Path,
    config: &IndexConfig,
    scales: &[usize],
    sweep: &Sweep,
    users: usize,
    tags: usize,
    seed: u64,
) -> Result<Vec<IndexBenchRow>, IndexBenchError> {
    let mut rng = SplitMix64::new(seed);
    let drawn: Vec<[f32; recgpt_retrieval::embed::DIM]> = (0..tags)
        .map(|_| tag_texts[rng.below(tag_texts.len())])
        .collect();
    let tag_vectors = model.tag_vectors(&drawn)?;
    let users = users.min(model.user_vectors.len());
    let user_queries: Vec<Vec<Vec<f32>>> = (0..users)
        .map(|u| {
            let h = &model.user_vectors[(u * 7919) % model.user_vectors.len()];
            let mut q = vec![h.clone()];
            q.extend(tag_vectors.iter().map(|t| model.query(h, t)));
            q
        })
        .collect();
    let none = SearchFilter::default();
    let mut rows = Vec::new();
    for &scale in scales {
        let vectors = synthetic(&model.item_vectors, scale, seed);
        let points: Vec<IndexPoint> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| IndexPoint {
                item: i as u32,
                vector: v.clone(),
                id: i.to_string(),
                title: String::new(),
                category: String::new(),
            })
            .collect();
        let exact = ExactIndex::new(vectors);
        let started = Instant::now();
        let mut want = Vec::new();
        for q in &user_queries {
            want.extend(exact.search(q, 10, &none)?);
        }
        let exact_seconds = started.elapsed().as_secs_f64();
        for &m in &sweep.m {
            let path = dir.join(format!("bench-index-{scale}x-m{m}"));
            let started = Instant::now();
            let config = IndexConfig {
                m,
                ..config.clone()
            };
            let mut index = EdgeIndex::build(&path, model.meta.config.dim, &points, &config)?;
            let build_seconds = started.elapsed().as_secs_f64();
            for &ef in &sweep.ef {
                index.set_ef(ef);
                let started = Instant::now();
                let mut got = Vec::new();
                for q in &user_queries {
                    got.extend(index.search(q, 10, &none)?);
                }
                let hnsw_seconds = started.elapsed().as_secs_f64();
                rows.push(IndexBenchRow {
                    scale,
                    m,
                    ef,
                    points: index.len(),
                    build_seconds,
                    indexed: index.indexed(),
                    users,
                    queries_per_user: tags + 1,
                    hnsw_users_per_s: users as f64 / hnsw_seconds,
                    exact_users_per_s: users as f64 / exact_seconds,
                    speedup: exact_seconds / hnsw_seconds,
                    recall_at_10: recall_against(&want, &got),
                });
            }
            drop(index);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    Ok(rows)
}
