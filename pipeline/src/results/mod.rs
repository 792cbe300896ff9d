//! The results store: stage outputs per user and the explanation cache, in one SQLite file
//! under the data home (`results.sqlite`).
//!
//! SQLite in WAL mode because several processes share it: a batch job (or several shards)
//! writes while `recgpt serve` reads, and readers never wait for a writer. Every write is one
//! transaction, so a killed writer leaves either the old row or the new one. In a process,
//! writes go through one connection and reads through a pool of them, so a server's readers
//! neither queue behind one another nor behind the process's writer.
//!
//! The schema is versioned (`PRAGMA user_version`, see [`MIGRATIONS`]): opening a store made by
//! an older build brings it up to date in one transaction.
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

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use recgpt_explain::{Explanation, ExplanationKey, ExplanationStore, StoreError};

use crate::interests::UserInterests;
use crate::tags::UserTags;

/// File name of the results store under the data home.
pub const RESULTS_FILE: &str = "results.sqlite";

/// How long a writer waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema, one step per version: a store at `PRAGMA user_version` = n runs the steps after
/// the n-th. Steps are only ever appended.
const MIGRATIONS: &[&str] = &[
    // 1: the tables (`IF NOT EXISTS`: stores made before the schema had a version have them)
    "CREATE TABLE IF NOT EXISTS users (
         user TEXT PRIMARY KEY,
         fingerprint TEXT NOT NULL,
         result TEXT NOT NULL
     );
     CREATE TABLE IF NOT EXISTS interest_keys (
         key TEXT PRIMARY KEY,
         vector BLOB NOT NULL
     );
     CREATE TABLE IF NOT EXISTS failures (
         user TEXT PRIMARY KEY,
         fingerprint TEXT NOT NULL,
         stage TEXT NOT NULL,
         reason TEXT NOT NULL
     );
     CREATE TABLE IF NOT EXISTS explanations (
         interest_key TEXT NOT NULL,
         item TEXT NOT NULL,
         prompt_version TEXT NOT NULL,
         model_id TEXT NOT NULL,
         explanation TEXT NOT NULL,
         PRIMARY KEY (interest_key, item, prompt_version, model_id)
     );",
    // 2: a user row's revision, for readers that cache decoded results
    "ALTER TABLE users ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;",
    // 3: revisions in write order across rows, so readers can follow the writes
    "CREATE INDEX IF NOT EXISTS users_by_revision ON users (revision);",
];

/// Errors of the results store.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ResultsError {
    pub path: PathBuf,
    pub message: String,
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

/// An open results store: one connection for this process's writes (SQLite serialises
/// writers anyway) and a pool of connections for its reads.
#[derive(Debug)]
pub struct ResultStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
}

impl ResultStore {
    /// Path of the results store under a data home.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join(RESULTS_FILE)
    }

    /// Opens (creating when missing, migrating when older) the results store under `home`.
    pub fn open(home: &Path) -> Result<Self, ResultsError> {
        let path = Self::path_in(home);
        let err = |e: &dyn std::fmt::Display| ResultsError {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(home).map_err(|e| err(&e))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(|e| err(&e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| err(&e))?;
        // another process creating the file at the same moment holds it briefly: SQLite
        // reports some of these waits at once instead of through the busy timeout
        let started = std::time::Instant::now();
        loop {
            match Self::setup(&mut conn) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(err(&e)),
            }
        }
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(flags)
            .with_init(|c| {
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.pragma_update(None, "query_only", true)
            });
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get());
        // connections open on first use and close after r2d2's idle timeout
        let readers = r2d2::Pool::builder()
            .max_size((2 * parallelism).max(4) as u32)
            .min_idle(Some(0))
            .build(manager)
            .map_err(|e| err(&e))?;
        Ok(Self {
            path,
            writer: Mutex::new(conn),
            readers,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// WAL mode, then the migrations this store has not run, in one write transaction (two
    /// processes opening an old store at once migrate it once).
    fn setup(conn: &mut Connection) -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: usize = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        for step in MIGRATIONS.iter().skip(version) {
            tx.execute_batch(step)?;
        }
        if version < MIGRATIONS.len() {
            tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
        }
        tx.commit()
    }

    /// The connection this process writes through.
    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to read through (a pooled one; several readers at once).
    fn reader(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, ResultsError> {
        self.readers.get().map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> ResultsError {
        ResultsError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Stores a user's result, replacing the previous one and any recorded failure, in one
    /// transaction: a reader (or a killed writer's successor) sees the old row or the new one.
    pub fn put_user(&self, result: &UserResult) -> Result<(), ResultsError> {
        let json = serde_json::to_string(result).map_err(|e| self.err(e))?;
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO users (user, fingerprint, result, revision)
             VALUES (?1, ?2, ?3, (SELECT IFNULL(MAX(revision), 0) + 1 FROM users))
             ON CONFLICT (user) DO UPDATE SET fingerprint = ?2, result = ?3,
             revision = excluded.revision",
            params![result.user, result.fingerprint, json],
        )
        .map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM failures WHERE user = ?1", params![result.user])
            .map_err(|e| self.err(e))?;
        crate::fault::point("put_user");
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records why a user could not be finished (replacing an earlier record).
    pub fn put_failure(&self, failure: &Failure) -> Result<(), ResultsError> {
        self.writer()
            .execute(
                "INSERT INTO failures (user, fingerprint, stage, reason) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user) DO UPDATE SET fingerprint = ?2, stage = ?3, reason = ?4",
                params![
                    failure.user,
                    failure.fingerprint,
                    failure.stage,
                    failure.reason
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every recorded failure, by user id.
    pub fn failures(&self) -> Result<Vec<Failure>, ResultsError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare("SELECT user, fingerprint, stage, reason FROM failures ORDER BY user")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], failure_row).map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    /// A stored user's fingerprint.
    pub fn fingerprint(&self, user: &str) -> Result<Option<String>, ResultsError> {
        self.reader()?
            .query_row(
                "SELECT fingerprint FROM users WHERE user = ?1",
                params![user],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A user's recorded failure.
    pub fn failure(&self, user: &str) -> Result<Option<Failure>, ResultsError> {
        self.reader()?
            .query_row(
                "SELECT user, fingerprint, stage, reason FROM failures WHERE user = ?1",
                params![user],
                failure_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Calls `visit` with every stored result in user-id order, one at a time.
    pub fn for_each_user<E: From<ResultsError>>(
        &self,
        visit: impl FnMut(UserResult) -> Result<(), E>,
    ) -> Result<(), E> {
        self.for_each_json("SELECT result FROM users ORDER BY user", [], visit)
    }

    /// Calls `visit` with each row of `sql` (one JSON column) decoded, one at a time.
    fn for_each_json<T: serde::de::DeserializeOwned, E: From<ResultsError>>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        mut visit: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let json: String = row.get(0).map_err(|e| self.err(e))?;
            visit(serde_json::from_str(&json).map_err(|e| self.err(e))?)?;
        }
        Ok(())
    }

    /// A user's stored result.
    pub fn user(&self, user: &str) -> Result<Option<UserResult>, ResultsError> {
        Ok(self.user_revision(user)?.map(|stored| stored.result))
    }

    /// A user's stored result with the row's revision (its place in the store's write order,
    /// see [`Self::changes_since`]) and the size of its stored JSON.
    pub fn user_revision(&self, user: &str) -> Result<Option<StoredUser>, ResultsError> {
        let row: Option<(i64, String)> = self
            .reader()?
            .prepare_cached("SELECT revision, result FROM users WHERE user = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![user], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.err(e))?;
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
        self.reader()?
            .query_row("SELECT IFNULL(MAX(revision), 0) FROM users", [], |row| {
                row.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// The users whose rows were written after revision `since`, with their revisions, in
    /// write order.
    pub fn changes_since(&self, since: i64) -> Result<Vec<(String, i64)>, ResultsError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT user, revision FROM users WHERE revision > ?1 ORDER BY revision",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    /// The stored user ids, in order.
    pub fn users(&self) -> Result<Vec<String>, ResultsError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare("SELECT user FROM users ORDER BY user")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| row.get(0))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    pub fn counts(&self) -> Result<ResultCounts, ResultsError> {
        let conn = self.reader()?;
        let count = |table: &str| -> Result<u64, ResultsError> {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
        };
        Ok(ResultCounts {
            users: count("users")?,
            interest_keys: count("interest_keys")?,
            explanations: count("explanations")?,
            failures: count("failures")?,
        })
    }
}

/// A `failures` row selected as `user, fingerprint, stage, reason`.
fn failure_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Failure> {
    Ok(Failure {
        user: row.get(0)?,
        fingerprint: row.get(1)?,
        stage: row.get(2)?,
        reason: row.get(3)?,
    })
}

impl From<ResultsError> for StoreError {
    fn from(e: ResultsError) -> Self {
        StoreError::new(e)
    }
}

/// The explanation cache's tables (`explanations`, `interest_keys`).
impl ExplanationStore for ResultStore {
    fn explanation(&self, key: &ExplanationKey) -> Result<Option<Explanation>, StoreError> {
        let json: Option<String> = self
            .reader()?
            .query_row(
                "SELECT explanation FROM explanations
                 WHERE interest_key = ?1 AND item = ?2 AND prompt_version = ?3 AND model_id = ?4",
                params![key.interest_key, key.item, key.prompt_version, key.model_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
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
        Ok(self.for_each_json(
            "SELECT explanation FROM explanations
             WHERE prompt_version = ?1 AND model_id = ?2 ORDER BY interest_key, item",
            params![prompt_version, model_id],
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
        self.writer()
            .execute(
                "INSERT OR IGNORE INTO explanations
                 (interest_key, item, prompt_version, model_id, explanation)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k.interest_key, k.item, k.prompt_version, k.model_id, json],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.explanation(k)?.unwrap_or_else(|| explanation.clone()))
    }

    fn interest_keys(&self) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare("SELECT key, vector FROM interest_keys ORDER BY key")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| {
                let key: String = row.get(0)?;
                let blob: Vec<u8> = row.get(1)?;
                Ok((key, blob))
            })
            .map_err(|e| self.err(e))?;
        let keys: Result<Vec<_>, ResultsError> = rows
            .map(|r| {
                let (key, blob) = r.map_err(|e| self.err(e))?;
                let vector = blob
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Ok((key, vector))
            })
            .collect();
        Ok(keys?)
    }

    fn put_interest_key(&self, key: &str, vector: &[f32]) -> Result<(), StoreError> {
        let blob: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.writer()
            .execute(
                "INSERT OR IGNORE INTO interest_keys (key, vector) VALUES (?1, ?2)",
                params![key, blob],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
