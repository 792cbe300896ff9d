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
use std::path::Path;

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

/// Which vector index holds the items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Qdrant Edge, embedded: a shard in the data home's `index/` folder.
    #[default]
    Edge,
    /// A collection on a Qdrant server or cluster (`url`, `collection`), shared by every
    /// process and host.
    Qdrant,
}

/// The index and its HNSW parameters (`[index]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    pub kind: IndexKind,
    /// `kind = "qdrant"`: the server's gRPC URL (e.g. `http://qdrant:6334`); the environment's
    /// `QDRANT_URL` when unset.
    pub url: Option<String>,
    /// `kind = "qdrant"`: the collection holding the items.
    pub collection: String,
    /// Edges per node. 32 and `ef` 512 find 98% of the exact top 10 on a 100× catalog (the
    /// README's curve; 16 and 128 found 75%).
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
            kind: IndexKind::Edge,
            url: None,
            collection: "recgpt-items".into(),
            m: 32,
            ef_construct: 100,
            ef: 512,
            full_scan_threshold_kb: 10_000,
        }
    }
}

impl IndexConfig {
    /// The Qdrant server's URL: `url`, else `QDRANT_URL`.
    fn server_url(&self) -> Result<String, IndexError> {
        self.url
            .clone()
            .or_else(|| std::env::var("QDRANT_URL").ok())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| IndexError::Store {
                path: "[index] url".into(),
                message:
                    "kind = \"qdrant\" needs the server's gRPC URL ([index] url or QDRANT_URL)"
                        .into(),
            })
    }
}

/// Builds the configured index over `points`: the Edge shard at `dir`, or the collection on
/// the Qdrant server (made again).
pub fn build(
    dir: &Path,
    dim: usize,
    points: &[IndexPoint],
    config: &IndexConfig,
) -> Result<Box<dyn VectorIndex>, IndexError> {
    Ok(match config.kind {
        IndexKind::Edge => Box::new(EdgeIndex::build(dir, dim, points, config)?),
        IndexKind::Qdrant => Box::new(QdrantServerIndex::build(
            &config.server_url()?,
            &config.collection,
            dim,
            points,
            config,
        )?),
    })
}

/// Opens the configured index. `private`: an Edge index is opened as a private copy, so
/// processes side by side (the batch job's shards) can each search it; a server collection
/// is shared as it is.
pub fn open(
    dir: &Path,
    config: &IndexConfig,
    private: bool,
) -> Result<Box<dyn VectorIndex>, IndexError> {
    Ok(match config.kind {
        IndexKind::Edge if private => Box::new(EdgeIndex::open_private(dir, config)?),
        IndexKind::Edge => Box::new(EdgeIndex::open(dir, config)?),
        IndexKind::Qdrant => Box::new(QdrantServerIndex::open(
            &config.server_url()?,
            &config.collection,
            config,
        )?),
    })
}

/// A vector index over catalog items.
pub trait VectorIndex: Send + Sync {
    /// What it is, for reports ("qdrant-edge", "exact").
    fn kind(&self) -> &'static str;
    fn len(&self) -> usize;
    /// Points in an HNSW graph (`None` where the index does not say).
    fn indexed(&self) -> Option<usize> {
        None
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_kind_comes_from_the_configuration() {
        let config: IndexConfig = serde_json::from_value(serde_json::json!({
            "kind": "qdrant", "url": "http://qdrant:6334", "ef": 256
        }))
        .unwrap();
        assert_eq!(config.kind, IndexKind::Qdrant);
        assert_eq!(config.server_url().unwrap(), "http://qdrant:6334");
        assert_eq!(
            (config.collection.as_str(), config.m, config.ef),
            ("recgpt-items", 32, 256)
        );
        assert_eq!(IndexConfig::default().kind, IndexKind::Edge);
        let unknown = serde_json::from_value::<IndexConfig>(serde_json::json!({"kind": "faiss"}));
        assert!(unknown.is_err());
        // an Edge index needs no server, and a missing one is a clear error
        let dir = tempfile::tempdir().unwrap();
        let missing = open(dir.path(), &IndexConfig::default(), false)
            .err()
            .unwrap();
        assert!(
            missing.to_string().contains("recgpt index build"),
            "{missing}"
        );
    }
}
