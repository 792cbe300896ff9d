//! The embedded results store: one SQLite file under the data home (`results.sqlite`).
//!
//! WAL mode because several processes share it: a batch job (or several shards on one host)
//! writes while `recgpt serve` reads, and readers never wait for a writer. In a process, writes
//! go through one connection (SQLite serialises writers anyway) and reads through a pool of
//! `query_only` connections, so a server's readers neither queue behind one another nor behind
//! the process's writer.
//!
//! The schema is versioned (`PRAGMA user_version`, see [`MIGRATIONS`]): opening a store made by
//! an older build brings it up to date in one transaction.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{Backend, BackendResult, Failure, ResultCounts};
use recgpt_explain::ExplanationKey;

/// How long a writer waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema, one step per version: a store at `PRAGMA user_version` = n runs the steps after
/// the n-th. Steps are only ever appended.
pub(super) const MIGRATIONS: &[&str] = &[
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

/// An open SQLite results store.
#[derive(Debug)]
pub(super) struct Sqlite {
    location: String,
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
}

impl Sqlite {
    /// Opens (creating when missing, migrating when older) the store file at `path`.
    pub(super) fn open(path: &Path) -> BackendResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // another process creating the file at the same moment holds it briefly: SQLite
        // reports some of these waits at once instead of through the busy timeout
        let started = std::time::Instant::now();
        loop {
            match setup(&mut conn) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let manager = SqliteConnectionManager::file(path)
            .with_flags(flags)
            .with_init(|c| {
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.pragma_update(None, "query_only", true)
            });
        // connections open on first use and close after r2d2's idle timeout
        let readers = r2d2::Pool::builder()
            .max_size(super::pool_size())
            .min_idle(Some(0))
            .build(manager)?;
        Ok(Self {
            location: path.display().to_string(),
            writer: Mutex::new(conn),
            readers,
        })
    }

    /// The connection this process writes through.
    pub(super) fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to read through (a pooled one; several readers at once).
    pub(super) fn reader(&self) -> BackendResult<r2d2::PooledConnection<SqliteConnectionManager>> {
        Ok(self.readers.get()?)
    }

    fn each_text(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        visit: &mut dyn FnMut(String) -> bool,
    ) -> BackendResult<()> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            if !visit(row.get(0)?) {
                break;
            }
        }
        Ok(())
    }
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

/// A `failures` row selected as `user, fingerprint, stage, reason`.
fn failure_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Failure> {
    Ok(Failure {
        user: row.get(0)?,
        fingerprint: row.get(1)?,
        stage: row.get(2)?,
        reason: row.get(3)?,
    })
}

impl Backend for Sqlite {
    fn location(&self) -> &str {
        &self.location
    }

    fn put_user(&self, user: &str, fingerprint: &str, json: &str) -> BackendResult<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO users (user, fingerprint, result, revision)
             VALUES (?1, ?2, ?3, (SELECT IFNULL(MAX(revision), 0) + 1 FROM users))
             ON CONFLICT (user) DO UPDATE SET fingerprint = ?2, result = ?3,
             revision = excluded.revision",
            params![user, fingerprint, json],
        )?;
        tx.execute("DELETE FROM failures WHERE user = ?1", params![user])?;
        crate::fault::point("put_user");
        Ok(tx.commit()?)
    }

    fn put_failure(&self, failure: &Failure) -> BackendResult<()> {
        self.writer().execute(
            "INSERT INTO failures (user, fingerprint, stage, reason) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user) DO UPDATE SET fingerprint = ?2, stage = ?3, reason = ?4",
            params![
                failure.user,
                failure.fingerprint,
                failure.stage,
                failure.reason
            ],
        )?;
        Ok(())
    }

    fn failures(&self) -> BackendResult<Vec<Failure>> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare("SELECT user, fingerprint, stage, reason FROM failures ORDER BY user")?;
        let rows = stmt.query_map([], failure_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn failure(&self, user: &str) -> BackendResult<Option<Failure>> {
        Ok(self
            .reader()?
            .query_row(
                "SELECT user, fingerprint, stage, reason FROM failures WHERE user = ?1",
                params![user],
                failure_row,
            )
            .optional()?)
    }

    fn fingerprint(&self, user: &str) -> BackendResult<Option<String>> {
        Ok(self
            .reader()?
            .query_row(
                "SELECT fingerprint FROM users WHERE user = ?1",
                params![user],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn for_each_user(&self, visit: &mut dyn FnMut(String) -> bool) -> BackendResult<()> {
        self.each_text("SELECT result FROM users ORDER BY user", [], visit)
    }

    fn user(&self, user: &str) -> BackendResult<Option<(i64, String)>> {
        Ok(self
            .reader()?
            .prepare_cached("SELECT revision, result FROM users WHERE user = ?1")?
            .query_row(params![user], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn max_revision(&self) -> BackendResult<i64> {
        Ok(self
            .reader()?
            .query_row("SELECT IFNULL(MAX(revision), 0) FROM users", [], |row| {
                row.get(0)
            })?)
    }

    fn changes_since(&self, since: i64) -> BackendResult<Vec<(String, i64)>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT user, revision FROM users WHERE revision > ?1 ORDER BY revision",
        )?;
        let rows = stmt.query_map(params![since], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn users(&self) -> BackendResult<Vec<String>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare("SELECT user FROM users ORDER BY user")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn counts(&self) -> BackendResult<ResultCounts> {
        let conn = self.reader()?;
        let count = |table: &str| -> BackendResult<u64> {
            let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })?;
            Ok(n as u64)
        };
        Ok(ResultCounts {
            users: count("users")?,
            interest_keys: count("interest_keys")?,
            explanations: count("explanations")?,
            failures: count("failures")?,
        })
    }

    fn explanation(&self, key: &ExplanationKey) -> BackendResult<Option<String>> {
        Ok(self
            .reader()?
            .query_row(
                "SELECT explanation FROM explanations
                 WHERE interest_key = ?1 AND item = ?2 AND prompt_version = ?3 AND model_id = ?4",
                params![key.interest_key, key.item, key.prompt_version, key.model_id],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn for_each_explanation(
        &self,
        prompt_version: &str,
        model_id: &str,
        visit: &mut dyn FnMut(String) -> bool,
    ) -> BackendResult<()> {
        self.each_text(
            "SELECT explanation FROM explanations
             WHERE prompt_version = ?1 AND model_id = ?2 ORDER BY interest_key, item",
            params![prompt_version, model_id],
            visit,
        )
    }

    fn put_explanation(&self, key: &ExplanationKey, json: &str) -> BackendResult<()> {
        self.writer().execute(
            "INSERT OR IGNORE INTO explanations
             (interest_key, item, prompt_version, model_id, explanation)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                key.interest_key,
                key.item,
                key.prompt_version,
                key.model_id,
                json
            ],
        )?;
        Ok(())
    }

    fn interest_keys(&self) -> BackendResult<Vec<(String, Vec<u8>)>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare("SELECT key, vector FROM interest_keys ORDER BY key")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_interest_key(&self, key: &str, vector: &[u8]) -> BackendResult<()> {
        self.writer().execute(
            "INSERT OR IGNORE INTO interest_keys (key, vector) VALUES (?1, ?2)",
            params![key, vector],
        )?;
        Ok(())
    }
}
