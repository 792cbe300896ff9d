//! `recgpt-retrieval`: from items and users to candidate items.
//!
//! - [`embed`]: text embeddings (all-MiniLM-L6-v2 with candle).
//! - [`categories`]: item categories, derived from title embeddings or from the data set.
//! - [`interactions`]: who bought what on each side of a time split.
//! - [`title_tags`]: "modifier + core word" tags derived from item titles.
//! - [`baselines`]: MostPopular, ItemKNN, EASE.
//! - [`fusion`]: multi-channel retrieval by weighted reciprocal-rank fusion.
//! - [`metrics`], [`eval`]: ranking metrics and the evaluation harness.
//! - [`index`]: vector indexes (Qdrant Edge, exact) behind one trait.
//! - [`retrieve`]: per-user retrieval with tag queries and max fusion.
//! - [`tower`]: the user / item / tag three-tower model (candle), its training and serving.

pub mod baselines;
pub mod categories;
pub mod embed;
pub mod eval;
pub mod fusion;
pub mod index;
pub mod interactions;
pub mod metrics;
pub mod retrieve;
pub mod rng;
pub mod title_tags;
pub mod tower;
