//! Vector indexes behind one small trait.
//!
//! - [`EdgeIndex`]: Qdrant Edge (`qdrant-edge`), Qdrant's in-process engine: HNSW, payload
//!   filters, persistence under the data home. The embedded default.
//! - [`QdrantServerIndex`]: a collection on a Qdrant server or cluster over gRPC
//!   (`qdrant-client`), for when the catalog outgrows one machine.
//! - [`ExactIndex`]: brute-force dot products over every point; the reference that the
//!   HNSW index's recall is measured against.
//!
//! Points are catalog items (id = the item's catalog index) with their item-tower vector and
//! a payload of item id, title and category; scores are dot products of unit vectors.

mod edge;
mod server;

use std::collections::HashSet;

use recgpt_data::ItemIx;
use serde::{Deserialize, Serialize};

pub use edge::EdgeIndex;
pub use server::QdrantServerIndex;

use crate::metrics::top_k;

/// A search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub item: ItemIx,
    pub score: f32,
}

impl Hit {
    /// A hit from an engine's point id: the item index as a numeric id, anything else (a
    /// UUID, a number past the catalog's index range) is an error naming the id.
    fn from_point_id(
        id: Option<u64>,
        describe: impl Fn() -> String,
        score: f32,
    ) -> Result<Self, IndexError> {
        id.and_then(|n| ItemIx::try_from(n).ok())
            .map(|item| Hit { item, score })
            .ok_or_else(|| IndexError::Search(format!("unexpected point id {}", describe())))
    }
}

/// A point to index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexPoint {
    pub item: ItemIx,
    pub vector: Vec<f32>,
    pub id: String,
    pub title: String,
    pub category: String,
}

/// Which points a search may return.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFilter {
    /// Items never returned (for example those the user bought recently).
    pub exclude: HashSet<ItemIx>,
}

/// Errors of an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {message}")]
    Store { path: String, message: String },
    #[error("index: {0}")]
    Search(String),
}

/// HNSW parameters (`[index]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Edges per node.
    pub m: usize,
    pub ef_construct: usize,
    /// Candidates kept while searching (`hnsw_ef`).
    pub ef: usize,
    /// Segments smaller than this (KiB of vectors) are searched exactly, as Qdrant does.
    pub full_scan_threshold_kb: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construct: 100,
            ef: 128,
            full_scan_threshold_kb: 10_000,
        }
    }
}

/// A vector index over catalog items.
pub trait VectorIndex: Send + Sync {
    /// What it is, for reports ("qdrant-edge", "exact").
    fn kind(&self) -> &'static str;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `k` best points for each query, best first.
    fn search(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<Vec<Hit>>, IndexError>;
}

/// Brute force over every point.
#[derive(Debug, Clone, Default)]
pub struct ExactIndex {
    /// `vectors[i]` is item i's vector.
    vectors: Vec<Vec<f32>>,
}

impl ExactIndex {
    pub fn new(vectors: Vec<Vec<f32>>) -> Self {
        Self { vectors }
    }
}

impl VectorIndex for ExactIndex {
    fn kind(&self) -> &'static str {
        "exact"
    }

    fn len(&self) -> usize {
        self.vectors.len()
    }

    fn search(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<Vec<Hit>>, IndexError> {
        let mut scores = vec![0f32; self.vectors.len()];
        Ok(queries
            .iter()
            .map(|q| {
                for (s, v) in scores.iter_mut().zip(&self.vectors) {
                    *s = v.iter().zip(q).map(|(a, b)| a * b).sum();
                }
                top_k(&scores, k, &filter.exclude)
                    .into_iter()
                    .map(|item| Hit {
                        item,
                        score: scores[item as usize],
                    })
                    .collect()
            })
            .collect())
    }
}

/// Share of the exact top-k found by the approximate top-k, averaged over queries.
pub fn recall_against(exact: &[Vec<Hit>], approximate: &[Vec<Hit>]) -> f64 {
    let mut sum = 0.0;
    for (e, a) in exact.iter().zip(approximate) {
        let want: HashSet<ItemIx> = e.iter().map(|h| h.item).collect();
        let found = a.iter().filter(|h| want.contains(&h.item)).count();
        sum += found as f64 / want.len().max(1) as f64;
    }
    sum / exact.len().max(1) as f64
}
