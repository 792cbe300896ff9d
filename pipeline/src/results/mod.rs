//! The results store: stage outputs per user and the explanation cache, behind one
//! [`Backend`] with two implementations: an SQLite file under the data home
//! (`results.sqlite`, the embedded default, see [`sqlite`]) and a PostgreSQL database that
//! workers on several hosts and server replicas share (`[store] url = "postgres://…"`, also
//! `--store` / `RECGPT_STORE`; see [`pg`]). Both give every write of a user's result
//! one transaction (a reader or a killed writer's successor sees the old row or the new one)
//! and versioned schemas migrated on open.
//!
//! Tables:
//! - `users`: user id → [`UserResult`] as JSON, with its inputs' fingerprint and its revision:
//!   each write of a row gives it the store's highest revision plus one, so the rows written
//!   since revision r are those above r ([`ResultStore::changes_since`]; `recgpt serve`
//!   follows them to keep its in-memory copies current).
//! - `interest_keys`: normalised interest key → its text embedding (little-endian f32), so that
//!   near-duplicate interests of other users map to the same key (see `explain::keys`).
//! - `explanations`: (interest key, item id, prompt version, model id) → [`Explanation`]. A
//!   prompt or model change makes new keys; old rows stay and are simply not looked up.
//! - `failures`: user id → why the batch job could not finish that user, with the inputs'
//!   fingerprint; removed when the user's result is stored.

mod pg;
mod sqlite;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use recgpt_explain::{Explanation, ExplanationKey, ExplanationStore, StoreError};

use crate::interests::UserInterests;
use crate::tags::UserTags;

/// Creates (dropping any earlier one) the PostgreSQL database `name` on the server of
/// `admin_url` and returns its URL: a scratch store for tests and benchmarks. `name` is
/// lower-case ASCII letters, digits and `_`.
pub fn scratch_database(admin_url: &str, name: &str) -> Result<String, ResultsError> {
    pg::scratch_database(admin_url, name).map_err(|e| ResultsError {
        location: pg::redact(admin_url),
        message: describe(e),
    })
}

/// File name of the embedded results store under the data home.
pub const RESULTS_FILE: &str = "results.sqlite";

/// Errors of the results store.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ResultsError {
    /// The store's file, or its database URL without the password.
    pub location: String,
    pub message: String,
}

/// Where the results live: `[store]` in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or libpq's `key=value` form) for a
    /// shared PostgreSQL store; unset: `results.sqlite` in the data home. `--store` and
    /// `RECGPT_STORE` override it.
    pub url: Option<String>,
}

impl StoreConfig {
    /// Opens the configured store (`home`'s SQLite file when no URL is set).
    pub fn open(&self, home: &Path) -> Result<ResultStore, ResultsError> {
        match self.url.as_deref().filter(|u| !u.is_empty()) {
            None => ResultStore::open(home),
            Some(url) => ResultStore::connect(url),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BackendResult<T> = Result<T, BoxError>;

/// An error with its causes (the PostgreSQL client's "db error" names the server's message only
/// as its source).
fn describe(e: BoxError) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// What a results store keeps, as rows of stored JSON: the SQLite and PostgreSQL stores
/// implement it, [`ResultStore`] encodes and decodes around it.
trait Backend: Send + Sync + std::fmt::Debug {
    /// The file, or the URL without its password.
    fn location(&self) -> &str;
    /// Stores a user's result JSON with the next revision and clears its failure, in one
    /// transaction.
    fn put_user(&self, user: &str, fingerprint: &str, json: &str) -> BackendResult<()>;
    fn put_failure(&self, failure: &Failure) -> BackendResult<()>;
    fn failures(&self) -> BackendResult<Vec<Failure>>;
    fn failure(&self, user: &str) -> BackendResult<Option<Failure>>;
    fn fingerprint(&self, user: &str) -> BackendResult<Option<String>>;
    /// Each stored result's JSON in user-id order (byte order), until `visit` returns false.
    fn for_each_user(&self, visit: &mut dyn FnMut(String) -> bool) -> BackendResult<()>;
    /// A user's revision and result JSON.
    fn user(&self, user: &str) -> BackendResult<Option<(i64, String)>>;
    fn max_revision(&self) -> BackendResult<i64>;
    fn changes_since(&self, since: i64) -> BackendResult<Vec<(String, i64)>>;
    fn users(&self) -> BackendResult<Vec<String>>;
    fn counts(&self) -> BackendResult<ResultCounts>;
    fn explanation(&self, key: &ExplanationKey) -> BackendResult<Option<String>>;
    fn for_each_explanation(
        &self,
        prompt_version: &str,
        model_id: &str,
        visit: &mut dyn FnMut(String) -> bool,
    ) -> BackendResult<()>;
    /// Stores an explanation unless its key is stored (the first writer wins).
    fn put_explanation(&self, key: &ExplanationKey, json: &str) -> BackendResult<()>;
    fn interest_keys(&self) -> BackendResult<Vec<(String, Vec<u8>)>>;
    /// Stores an interest key's vector unless the key is stored.
    fn put_interest_key(&self, key: &str, vector: &[u8]) -> BackendResult<()>;
}

/// Pooled connections a process holds at most: twice the cores, at least 4.
fn pool_size() -> u32 {
    let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get());
    (2 * parallelism).max(4) as u32
}

/// One recommended item with what produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub item: String,
    pub title: String,
    pub category: Option<String>,
    pub score: f32,
    /// The tag whose query retrieved it; `None` when no tag query did.
    pub tag: Option<String>,
    /// The channel it came from: `cf`, `user` or `llm` (see [`crate::recommend::CHANNELS`]);
    /// empty in results stored before the channels were fused.
    #[serde(default)]
    pub channel: String,
    /// The interest it serves (through the tag, else the nearest interest); `None` when the
    /// user has no interest.
    pub interest: Option<String>,
    pub interest_key: Option<String>,
    pub explanation: Option<String>,
    /// `model` or `fallback`.
    pub explanation_source: Option<String>,
}

/// One user's whole chain, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserResult {
    pub user: String,
    /// The day the narrative was written as of.
    pub as_of: String,
    /// Hash of the inputs (narrative, prompt versions, model, config).
    pub fingerprint: String,
    /// Hash of the interests' and tags' inputs alone (see
    /// [`crate::recommend::Recommender::reasoning_inputs`]): a job whose inputs changed only
    /// after reasoning keeps this result's interests and tags. Empty in results stored before
    /// it was kept.
    #[serde(default)]
    pub reasoning_fingerprint: String,
    pub interests: UserInterests,
    /// The explanation-cache key of each interest, in the order of `interests.interests`.
    pub interest_keys: Vec<String>,
    pub tags: UserTags,
    pub recommendations: Vec<Recommendation>,
}

#[cfg(test)]
impl UserResult {
    /// A result with no interests, tags or recommendations, for tests.
    pub(crate) fn empty(user: &str, fingerprint: &str) -> Self {
        Self {
            user: user.into(),
            as_of: "2011-11-01".into(),
            fingerprint: fingerprint.into(),
            reasoning_fingerprint: String::new(),
            interests: UserInterests {
                user: user.into(),
                interests: vec![],
                counts: Default::default(),
                prompt_version: "p".into(),
                model_id: "m".into(),
                seed: 1,
                raw: vec![],
            },
            interest_keys: vec![],
            tags: UserTags {
                user: user.into(),
                tags: vec![],
                counts: Default::default(),
                prompt_version: "p".into(),
                model_id: "m".into(),
                raw: vec![],
            },
            recommendations: vec![],
        }
    }
}

/// A stored result as read, with its row's revision and the size of its stored JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    pub revision: i64,
    pub bytes: usize,
    pub result: UserResult,
}

/// Why the batch job could not finish a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub user: String,
    /// Fingerprint of the inputs that failed: an unchanged user is not retried unless asked.
    pub fingerprint: String,
    /// The stage that failed (`reason`, `retrieve`, `explain`).
    pub stage: String,
    pub reason: String,
}

/// Row counts, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResultCounts {
    pub users: u64,
    pub interest_keys: u64,
    pub explanations: u64,
    pub failures: u64,
}

/// An open results store (SQLite or PostgreSQL).
#[derive(Debug)]
pub struct ResultStore {
    backend: Box<dyn Backend>,
}

impl ResultStore {
    /// Path of the embedded results store under a data home.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join(RESULTS_FILE)
    }

    /// Opens (creating when missing, migrating when older) the SQLite store under `home`.
    pub fn open(home: &Path) -> Result<Self, ResultsError> {
        let path = Self::path_in(home);
        let backend = sqlite::Sqlite::open(&path).map_err(|e| ResultsError {
            location: path.display().to_string(),
            message: describe(e),
        })?;
        Ok(Self {
            backend: Box::new(backend),
        })
    }

    /// Connects to (creating the tables in, migrating when older) the PostgreSQL store at
    /// `url`.
    pub fn connect(url: &str) -> Result<Self, ResultsError> {
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.contains("host="))
        {
            return Err(ResultsError {
                location: url.to_string(),
                message: "not a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE); \
                          leave the store URL unset for the data home's SQLite file"
                    .into(),
            });
        }
        let backend = pg::Postgres::open(url).map_err(|e| ResultsError {
            location: pg::redact(url),
            message: describe(e),
        })?;
        Ok(Self {
            backend: Box::new(backend),
        })
    }

    /// The store's file, or its URL without the password.
    pub fn location(&self) -> &str {
        self.backend.location()
    }

    fn err(&self, e: impl Into<BoxError>) -> ResultsError {
        ResultsError {
            location: self.location().to_string(),
            message: describe(e.into()),
        }
    }

    /// Stores a user's result, replacing the previous one and any recorded failure, in one
    /// transaction: a reader (or a killed writer's successor) sees the old row or the new one.
    pub fn put_user(&self, result: &UserResult) -> Result<(), ResultsError> {
        let json = serde_json::to_string(result).map_err(|e| self.err(e))?;
        self.backend
            .put_user(&result.user, &result.fingerprint, &json)
            .map_err(|e| self.err(e))
    }

    /// Records why a user could not be finished (replacing an earlier record).
    pub fn put_failure(&self, failure: &Failure) -> Result<(), ResultsError> {
        self.backend.put_failure(failure).map_err(|e| self.err(e))
    }

    /// Every recorded failure, by user id.
    pub fn failures(&self) -> Result<Vec<Failure>, ResultsError> {
        self.backend.failures().map_err(|e| self.err(e))
    }

    /// A stored user's fingerprint.
    pub fn fingerprint(&self, user: &str) -> Result<Option<String>, ResultsError> {
        self.backend.fingerprint(user).map_err(|e| self.err(e))
    }

    /// A user's recorded failure.
    pub fn failure(&self, user: &str) -> Result<Option<Failure>, ResultsError> {
        self.backend.failure(user).map_err(|e| self.err(e))
    }

    /// Calls `visit` with every stored result in user-id order, one at a time.
    pub fn for_each_user<E: From<ResultsError>>(
        &self,
        visit: impl FnMut(UserResult) -> Result<(), E>,
    ) -> Result<(), E> {
        self.decode_each(|b, each| b.for_each_user(each), visit)
    }

    /// Runs `rows` (a backend's streamed JSON rows) with each row decoded and passed to
    /// `visit`, stopping at the first error.
    fn decode_each<T: serde::de::DeserializeOwned, E: From<ResultsError>>(
        &self,
        rows: impl FnOnce(&dyn Backend, &mut dyn FnMut(String) -> bool) -> BackendResult<()>,
        mut visit: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut failed = None;
        rows(self.backend.as_ref(), &mut |json| {
            let done = serde_json::from_str(&json)
                .map_err(|e| E::from(self.err(e)))
                .and_then(&mut visit);
            failed = done.err();
            failed.is_none()
        })
        .map_err(|e| self.err(e))?;
        failed.map_or(Ok(()), Err)
    }

    /// A user's stored result.
    pub fn user(&self, user: &str) -> Result<Option<UserResult>, ResultsError> {
        Ok(self.user_revision(user)?.map(|stored| stored.result))
    }

    /// A user's stored result with the row's revision (its place in the store's write order,
    /// see [`Self::changes_since`]) and the size of its stored JSON.
    pub fn user_revision(&self, user: &str) -> Result<Option<StoredUser>, ResultsError> {
        let row = self.backend.user(user).map_err(|e| self.err(e))?;
        row.map(|(revision, json)| {
            Ok(StoredUser {
                revision,
                bytes: json.len(),
                result: serde_json::from_str(&json).map_err(|e| self.err(e))?,
            })
        })
        .transpose()
    }

    /// The highest revision in the store (0 when empty).
    pub fn max_revision(&self) -> Result<i64, ResultsError> {
        self.backend.max_revision().map_err(|e| self.err(e))
    }

    /// The users whose rows were written after revision `since`, with their revisions, in
    /// write order.
    pub fn changes_since(&self, since: i64) -> Result<Vec<(String, i64)>, ResultsError> {
        self.backend.changes_since(since).map_err(|e| self.err(e))
    }

    /// The stored user ids, in order.
    pub fn users(&self) -> Result<Vec<String>, ResultsError> {
        self.backend.users().map_err(|e| self.err(e))
    }

    pub fn counts(&self) -> Result<ResultCounts, ResultsError> {
        self.backend.counts().map_err(|e| self.err(e))
    }
}

impl From<ResultsError> for StoreError {
    fn from(e: ResultsError) -> Self {
        StoreError::new(e)
    }
}

/// The explanation cache's tables (`explanations`, `interest_keys`).
impl ExplanationStore for ResultStore {
    fn explanation(&self, key: &ExplanationKey) -> Result<Option<Explanation>, StoreError> {
        let json = self.backend.explanation(key).map_err(|e| self.err(e))?;
        Ok(json
            .map(|j| serde_json::from_str(&j).map_err(|e| self.err(e)))
            .transpose()?)
    }

    fn for_each_explanation(
        &self,
        prompt_version: &str,
        model_id: &str,
        visit: &mut dyn FnMut(Explanation),
    ) -> Result<(), StoreError> {
        Ok(self.decode_each(
            |b, each| b.for_each_explanation(prompt_version, model_id, each),
            |e| {
                visit(e);
                Ok::<_, ResultsError>(())
            },
        )?)
    }

    fn for_each_explained_user(
        &self,
        visit: &mut dyn FnMut(Vec<(String, String)>),
    ) -> Result<(), StoreError> {
        Ok(self.for_each_user(|user| {
            visit(
                user.recommendations
                    .iter()
                    .filter(|r| r.explanation.is_some())
                    .filter_map(|r| Some((r.interest_key.clone()?, r.item.clone())))
                    .collect(),
            );
            Ok::<_, ResultsError>(())
        })?)
    }

    fn put_explanation(&self, explanation: &Explanation) -> Result<Explanation, StoreError> {
        let json = serde_json::to_string(explanation).map_err(|e| self.err(e))?;
        let k = &explanation.key;
        self.backend
            .put_explanation(k, &json)
            .map_err(|e| self.err(e))?;
        Ok(self.explanation(k)?.unwrap_or_else(|| explanation.clone()))
    }

    fn interest_keys(&self) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        let rows = self.backend.interest_keys().map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(key, blob)| {
                let vector = blob
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (key, vector)
            })
            .collect())
    }

    fn put_interest_key(&self, key: &str, vector: &[f32]) -> Result<(), StoreError> {
        let blob: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.backend
            .put_interest_key(key, &blob)
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
