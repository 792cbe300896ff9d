//! The explanation cache's storage, behind a small trait: the pipeline's results store
//! (SQLite under the data home) implements it, and any other store can.

use serde::{Deserialize, Serialize};

/// An error of the store, as the store reports it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(pub Box<dyn std::error::Error + Send + Sync>);

impl StoreError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

/// The key of one cached explanation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExplanationKey {
    /// Normalised interest (see [`crate::keys`]).
    pub interest_key: String,
    /// Catalog item id.
    pub item: String,
    pub prompt_version: String,
    pub model_id: String,
}

/// An explanation of why an item suits an interest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    #[serde(flatten)]
    pub key: ExplanationKey,
    /// The interest's name as the generating user's model wrote it.
    pub interest: String,
    pub text: String,
    /// `model`, or `fallback` (the template, after every model answer was rejected).
    pub source: String,
    /// Why earlier answers were rejected, one reason per rejected answer.
    #[serde(default)]
    pub rejected: Vec<String>,
}

/// Where explanations and interest keys are kept, shared by every process that explains.
pub trait ExplanationStore {
    /// The cached explanation under `key`.
    fn explanation(&self, key: &ExplanationKey) -> Result<Option<Explanation>, StoreError>;

    /// Stores `explanation` unless its key is already there (another writer got there
    /// first), and returns the stored one, so every reader sees the same text for a key.
    fn put_explanation(&self, explanation: &Explanation) -> Result<Explanation, StoreError>;

    /// Calls `visit` with every cached explanation under `prompt_version` and `model_id`.
    fn for_each_explanation(
        &self,
        prompt_version: &str,
        model_id: &str,
        visit: &mut dyn FnMut(Explanation),
    ) -> Result<(), StoreError>;

    /// Calls `visit` with each stored user's explained recommendations as (interest key, item)
    /// pairs, users in id order.
    fn for_each_explained_user(
        &self,
        visit: &mut dyn FnMut(Vec<(String, String)>),
    ) -> Result<(), StoreError>;

    /// Every interest key with its embedding.
    fn interest_keys(&self) -> Result<Vec<(String, Vec<f32>)>, StoreError>;

    /// Adds an interest key (kept as is when already there).
    fn put_interest_key(&self, key: &str, vector: &[f32]) -> Result<(), StoreError>;
}
