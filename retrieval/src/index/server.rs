//! The scale-out index: a collection on a Qdrant server (or cluster) over gRPC with
//! `qdrant-client`. Same points, payload and keyword index on `category` as [`super::EdgeIndex`].

use qdrant_client::qdrant::{
    point_id::PointIdOptions, Condition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, Distance, FieldType, Filter, HnswConfigDiffBuilder,
    PointStruct, Query, QueryBatchPointsBuilder, QueryPointsBuilder, SearchParamsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant};

use super::{Hit, IndexConfig, IndexError, IndexPoint, SearchFilter, VectorIndex};

/// Points per upsert request.
const UPSERT_CHUNK: usize = 1024;

/// A collection on a Qdrant server.
pub struct QdrantServerIndex {
    client: Qdrant,
    runtime: tokio::runtime::Runtime,
    collection: String,
    ef: usize,
    len: usize,
}

impl std::fmt::Debug for QdrantServerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantServerIndex")
            .field("collection", &self.collection)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

fn server_err(url: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Store {
        path: url.to_string(),
        message: e.to_string(),
    }
}

/// A runtime for the blocking calls and a client of the server at `url`.
fn connect(url: &str) -> Result<(tokio::runtime::Runtime, Qdrant), IndexError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| server_err(url, e))?;
    let client = Qdrant::from_url(url)
        .build()
        .map_err(|e| server_err(url, e))?;
    Ok((runtime, client))
}

async fn exists(client: &Qdrant, url: &str, collection: &str) -> Result<bool, IndexError> {
    client
        .collection_exists(collection)
        .await
        .map_err(|e| server_err(url, e))
}

impl QdrantServerIndex {
    /// (Re)creates `collection` on the server at `url` (gRPC, e.g. `http://localhost:6334`)
    /// and loads the points.
    pub fn build(
        url: &str,
        collection: &str,
        dim: usize,
        points: &[IndexPoint],
        config: &IndexConfig,
    ) -> Result<Self, IndexError> {
        let (runtime, client) = connect(url)?;
        runtime.block_on(async {
            if exists(&client, url, collection).await? {
                client
                    .delete_collection(collection)
                    .await
                    .map_err(|e| server_err(url, e))?;
            }
            client
                .create_collection(
                    CreateCollectionBuilder::new(collection)
                        .vectors_config(VectorParamsBuilder::new(dim as u64, Distance::Dot))
                        .hnsw_config(
                            HnswConfigDiffBuilder::default()
                                .m(config.m as u64)
                                .ef_construct(config.ef_construct as u64)
                                .full_scan_threshold(config.full_scan_threshold_kb as u64),
                        ),
                )
                .await
                .map_err(|e| server_err(url, e))?;
            client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        collection,
                        "category",
                        FieldType::Keyword,
                    )
                    .wait(true),
                )
                .await
                .map_err(|e| server_err(url, e))?;
            for chunk in points.chunks(UPSERT_CHUNK) {
                let batch: Vec<PointStruct> = chunk
                    .iter()
                    .map(|p| {
                        let payload = Payload::try_from(serde_json::json!({
                            "item": p.id, "title": p.title, "category": p.category,
                        }))
                        .expect("an object");
                        PointStruct::new(u64::from(p.item), p.vector.clone(), payload)
                    })
                    .collect();
                client
                    .upsert_points(UpsertPointsBuilder::new(collection, batch).wait(true))
                    .await
                    .map_err(|e| server_err(url, e))?;
            }
            Ok::<(), IndexError>(())
        })?;
        Ok(Self {
            client,
            runtime,
            collection: collection.to_string(),
            ef: config.ef,
            len: points.len(),
        })
    }

    /// Opens `collection` on the server at `url`, as `recgpt index build` left it.
    pub fn open(url: &str, collection: &str, config: &IndexConfig) -> Result<Self, IndexError> {
        let (runtime, client) = connect(url)?;
        let len = runtime.block_on(async {
            if !exists(&client, url, collection).await? {
                return Err(server_err(
                    url,
                    format!("no collection {collection} (run `recgpt index build`)"),
                ));
            }
            let counted = client
                .count(CountPointsBuilder::new(collection).exact(true))
                .await
                .map_err(|e| server_err(url, e))?;
            Ok(counted.result.map_or(0, |r| r.count) as usize)
        })?;
        Ok(Self {
            client,
            runtime,
            collection: collection.to_string(),
            ef: config.ef,
            len,
        })
    }
}

impl VectorIndex for QdrantServerIndex {
    fn kind(&self) -> &'static str {
        "qdrant-server"
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
            Filter::must_not([Condition::has_id(
                filter.exclude.iter().map(|&i| u64::from(i)),
            )])
        });
        let requests: Vec<qdrant_client::qdrant::QueryPoints> = queries
            .iter()
            .map(|q| {
                let mut b = QueryPointsBuilder::new(&self.collection)
                    .query(Query::new_nearest(q.clone()))
                    .limit(k as u64)
                    .params(SearchParamsBuilder::default().hnsw_ef(self.ef.max(k) as u64));
                if let Some(f) = &filter {
                    b = b.filter(f.clone());
                }
                b.build()
            })
            .collect();
        let response = self
            .runtime
            .block_on(
                self.client
                    .query_batch(QueryBatchPointsBuilder::new(&self.collection, requests)),
            )
            .map_err(|e| IndexError::Search(e.to_string()))?;
        response
            .result
            .into_iter()
            .map(|batch| {
                batch
                    .result
                    .into_iter()
                    .map(|p| {
                        let id = p.id.and_then(|id| id.point_id_options);
                        let n = match id {
                            Some(PointIdOptions::Num(n)) => Some(n),
                            _ => None,
                        };
                        Hit::from_point_id(n, || format!("{id:?}"), p.score)
                    })
                    .collect()
            })
            .collect()
    }
}
