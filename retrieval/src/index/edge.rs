//! The embedded index: a Qdrant Edge shard in a directory of the data home.
//!
//! `qdrant-edge` is pinned to 0.7.2, the newest release that builds on stable Rust (0.8.0 and
//! 0.9.0 use `std::debug_assert_matches`, which stable compilers do not have yet).

use std::path::{Path, PathBuf};

use qdrant_edge::{
    Condition, CreateIndex, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard,
    EdgeVectorParams, FieldIndexOperations, Filter, HasIdCondition, HnswIndexConfig, NamedQuery,
    PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations, PointOperations,
    PointStruct, QueryEnum, SearchParams, SearchRequest, UpdateOperation, WithPayloadInterface,
    WithVector, DEFAULT_VECTOR_NAME,
};
use serde_json::json;

use super::{Hit, IndexConfig, IndexError, IndexPoint, SearchFilter, VectorIndex};

/// Points written per update operation.
const UPSERT_CHUNK: usize = 4096;

/// A persisted Qdrant Edge shard.
pub struct EdgeIndex {
    shard: EdgeShard,
    path: PathBuf,
    ef: usize,
    len: usize,
    /// The private copy this index was opened from (see [`EdgeIndex::open_private`]).
    _copy: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for EdgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeIndex")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish()
    }
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Store {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl EdgeIndex {
    /// Builds a new index at `path` (replacing any there): upserts the points, indexes the
    /// `category` payload field, then runs the optimizers, which build the HNSW graph.
    pub fn build(
        path: &Path,
        dim: usize,
        points: &[IndexPoint],
        config: &IndexConfig,
    ) -> Result<Self, IndexError> {
        if path.exists() {
            std::fs::remove_dir_all(path).map_err(|e| store_err(path, e))?;
        }
        std::fs::create_dir_all(path).map_err(|e| store_err(path, e))?;
        let hnsw = HnswIndexConfig {
            m: config.m,
            ef_construct: config.ef_construct,
            full_scan_threshold: config.full_scan_threshold_kb,
            ..HnswIndexConfig::default()
        };
        let edge_config = EdgeConfig::builder()
            .vector(
                DEFAULT_VECTOR_NAME,
                EdgeVectorParams::builder(dim, Distance::Dot).build(),
            )
            .on_disk_payload(false)
            .hnsw_config(hnsw)
            .optimizers(EdgeOptimizersConfig {
                // every segment gets an HNSW graph, whatever its size
                indexing_threshold: Some(1),
                default_segment_number: Some(1),
                ..EdgeOptimizersConfig::default()
            })
            .build();
        let shard = EdgeShard::new(path, edge_config).map_err(|e| store_err(path, e))?;
        shard
            .update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name: "category".try_into().expect("valid field name"),
                    field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                }),
            ))
            .map_err(|e| store_err(path, e))?;
        for chunk in points.chunks(UPSERT_CHUNK) {
            let batch = chunk
                .iter()
                .map(|p| {
                    PointStruct::new(
                        u64::from(p.item),
                        p.vector.clone(),
                        json!({"item": p.id, "title": p.title, "category": p.category}),
                    )
                    .into()
                })
                .collect();
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(batch)),
                ))
                .map_err(|e| store_err(path, e))?;
        }
        shard.optimize().map_err(|e| store_err(path, e))?;
        shard.flush();
        Ok(Self {
            len: shard.info().points_count,
            shard,
            path: path.to_path_buf(),
            ef: config.ef,
            _copy: None,
        })
    }

    /// Searches from now on keep `ef` candidates (at least k).
    pub fn set_ef(&mut self, ef: usize) {
        self.ef = ef;
    }

    /// Opens a private copy of the index at `path` (removed when dropped). An Edge shard
    /// locks its directory for one process; readers that run side by side (batch-job shards
    /// on one machine) each search their own copy.
    pub fn open_private(path: &Path, config: &IndexConfig) -> Result<Self, IndexError> {
        if !path.join("edge_config.json").exists() {
            return Err(store_err(path, "no index here (run `recgpt index build`)"));
        }
        remove_orphaned_copies();
        let copy = tempfile::Builder::new()
            .prefix(&format!("{PRIVATE_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|e| store_err(path, e))?;
        copy_dir(path, copy.path()).map_err(|e| store_err(path, e))?;
        let mut index = Self::open(copy.path(), config)?;
        index.path = path.to_path_buf();
        index._copy = Some(copy);
        Ok(index)
    }

    /// Opens an index written by [`EdgeIndex::build`].
    pub fn open(path: &Path, config: &IndexConfig) -> Result<Self, IndexError> {
        if !path.join("edge_config.json").exists() {
            return Err(store_err(path, "no index here (run `recgpt index build`)"));
        }
        let shard = EdgeShard::load(path, None).map_err(|e| store_err(path, e))?;
        Ok(Self {
            len: shard.info().points_count,
            shard,
            path: path.to_path_buf(),
            ef: config.ef,
            _copy: None,
        })
    }

    /// Vectors held in an HNSW graph (the rest are searched exactly).
    pub fn indexed(&self) -> usize {
        self.shard.info().indexed_vectors_count
    }
}

/// Name prefix of private copies in the temporary directory: `recgpt-index-<pid>-<random>`.
const PRIVATE_PREFIX: &str = "recgpt-index-";

/// Removes private copies left by processes that are gone (a job killed with SIGKILL cannot
/// remove its own; a loaded copy takes about 170 MB). Only where `/proc` tells which processes
/// live; a copy whose process id is in use again is left alone.
fn remove_orphaned_copies() {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PRIVATE_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !proc.join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl VectorIndex for EdgeIndex {
    fn kind(&self) -> &'static str {
        "qdrant-edge"
    }

    fn indexed(&self) -> Option<usize> {
        Some(EdgeIndex::indexed(self))
    }

    fn len(&self) -> usize {
        self.len
    }

    fn search(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<Vec<Hit>>, IndexError> {
        let filter = (!filter.exclude.is_empty()).then(|| {
            let ids: HasIdCondition = filter
                .exclude
                .iter()
                .map(|&i| PointId::NumId(u64::from(i)))
                .collect();
            Filter::new_must_not(Condition::HasId(ids))
        });
        queries
            .iter()
            .map(|q| {
                let request = SearchRequest {
                    query: QueryEnum::Nearest(NamedQuery {
                        query: q.clone().into(),
                        using: None,
                    }),
                    filter: filter.clone(),
                    params: Some(SearchParams {
                        hnsw_ef: Some(self.ef.max(k)),
                        ..SearchParams::default()
                    }),
                    limit: k,
                    offset: 0,
                    with_payload: Some(WithPayloadInterface::Bool(false)),
                    with_vector: Some(WithVector::Bool(false)),
                    score_threshold: None,
                };
                let points = self
                    .shard
                    .search(request)
                    .map_err(|e| IndexError::Search(e.to_string()))?;
                points
                    .into_iter()
                    .map(|p| {
                        let n = match p.id {
                            PointId::NumId(n) => Some(n),
                            _ => None,
                        };
                        Hit::from_point_id(n, || p.id.to_string(), p.score)
                    })
                    .collect()
            })
            .collect()
    }
}

/// Copies the directory tree `from` into `to` (which exists), skipping lock files.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")] // where /proc tells which processes live
    fn copies_of_dead_processes_are_removed_and_live_ones_kept() {
        let tmp = std::env::temp_dir();
        // no process has this id (above any pid_max)
        let dead = tmp.join(format!("{PRIVATE_PREFIX}4000000000-test"));
        let live = tmp.join(format!("{PRIVATE_PREFIX}{}-test", std::process::id()));
        for dir in [&dead, &live] {
            std::fs::create_dir_all(dir.join("wal")).unwrap();
        }
        remove_orphaned_copies();
        assert!(!dead.exists());
        assert!(live.exists());
        std::fs::remove_dir_all(&live).unwrap();
    }
}
