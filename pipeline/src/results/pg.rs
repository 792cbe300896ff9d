//! The shared results store: PostgreSQL (`[store] url = "postgres://…"`), for workers on
//! several hosts and server replicas that all read and write one database.
//!
//! The same tables as the SQLite store, the same atomic per-user write and the same write
//! order: a user row's write takes the `users` table's write lock (plain reads go on) and gives
//! the row the highest revision plus one, so revisions commit in order and a follower of
//! `changes_since` never skips one. Every process holds a pool of connections (opened on use).
//! The schema is versioned in `recgpt_schema`; migrations run in one transaction under an
//! advisory lock, so processes starting together migrate once.
//!
//! The client is synchronous (it runs its own small runtime per connection): call it from
//! plain threads or tokio's blocking threads, never from an async task.

use std::str::FromStr;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use super::{Backend, BackendResult, Failure, ResultCounts};
use recgpt_explain::ExplanationKey;

/// The schema, one step per version (`recgpt_schema.version` = steps run). Only appended.
const MIGRATIONS: &[&str] = &[
    // 1: the tables, as in the SQLite store at its third version
    r#"CREATE TABLE users (
         "user" TEXT PRIMARY KEY,
         fingerprint TEXT NOT NULL,
         result TEXT NOT NULL,
         revision BIGINT NOT NULL
     );
     CREATE INDEX users_by_revision ON users (revision);
     CREATE TABLE interest_keys (
         key TEXT PRIMARY KEY,
         vector BYTEA NOT NULL
     );
     CREATE TABLE failures (
         "user" TEXT PRIMARY KEY,
         fingerprint TEXT NOT NULL,
         stage TEXT NOT NULL,
         reason TEXT NOT NULL
     );
     CREATE TABLE explanations (
         interest_key TEXT NOT NULL,
         item TEXT NOT NULL,
         prompt_version TEXT NOT NULL,
         model_id TEXT NOT NULL,
         explanation TEXT NOT NULL,
         PRIMARY KEY (interest_key, item, prompt_version, model_id)
     );"#,
];

/// The advisory lock migrations run under (any constant; "recgpt" in ASCII).
const MIGRATION_LOCK: i64 = 0x7265_6367_7074;

/// How long a process waits for a pooled connection (or a new one) before failing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

type Params<'a> = [&'a (dyn ToSql + Sync)];

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// An open PostgreSQL results store.
#[derive(Debug)]
pub(super) struct Postgres {
    location: String,
    /// `None` only while dropping.
    pool: Option<Pool>,
}

/// Closing a connection runs the client's own runtime, which tokio forbids inside another
/// runtime: a store dropped by an async task (a server shutting down) closes its connections
/// on a plain thread.
impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl Postgres {
    /// Connects to the database at `url` and brings its schema up to date.
    pub(super) fn open(url: &str) -> BackendResult<Self> {
        let mut config = postgres::Config::from_str(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("recgpt");
        }
        // the first connection made directly, so that an unreachable server or a refused
        // login reads as itself rather than as the pool's time-out
        let mut first = config.connect(NoTls)?;
        setup(&mut first)?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(super::pool_size())
            .min_idle(Some(0))
            .connection_timeout(CONNECT_TIMEOUT)
            .build(PostgresConnectionManager::new(config, NoTls))?;
        Ok(Self {
            location: redact(url),
            pool: Some(pool),
        })
    }

    fn conn(&self) -> BackendResult<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>> {
        Ok(self.pool.as_ref().ok_or("the store is closed")?.get()?)
    }

    /// Calls `visit` with the text column of each row of `sql`, streamed, until it says stop.
    fn each_text(
        &self,
        sql: &str,
        params: &Params<'_>,
        visit: &mut dyn FnMut(String) -> bool,
    ) -> BackendResult<()> {
        let mut conn = self.conn()?;
        let mut rows = conn.query_raw(sql, params.iter().copied())?;
        while let Some(row) = rows.next()? {
            if !visit(row.try_get(0)?) {
                break;
            }
        }
        Ok(())
    }

    fn texts(&self, sql: &str, params: &Params<'_>) -> BackendResult<Vec<String>> {
        let mut all = Vec::new();
        self.each_text(sql, params, &mut |t| {
            all.push(t);
            true
        })?;
        Ok(all)
    }
}

/// The migrations this database has not run, in one transaction under the migration lock.
fn setup(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS recgpt_schema (version INTEGER NOT NULL)")?;
    let version: Option<i32> = tx
        .query_opt("SELECT version FROM recgpt_schema", &[])?
        .map(|row| row.get(0));
    let done = version.unwrap_or(0).max(0) as usize;
    for step in MIGRATIONS.iter().skip(done) {
        tx.batch_execute(step)?;
    }
    let now = MIGRATIONS.len() as i32;
    match version {
        None => tx.execute("INSERT INTO recgpt_schema (version) VALUES ($1)", &[&now])?,
        Some(v) if v < now => tx.execute("UPDATE recgpt_schema SET version = $1", &[&now])?,
        Some(_) => 0,
    };
    tx.commit()
}

/// `url` without its password, for messages.
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" ");
    };
    match rest.split_once('@') {
        Some((credentials, host)) if !credentials.contains('/') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_string(),
    }
}

/// See [`super::scratch_database`].
pub(super) fn scratch_database(admin_url: &str, name: &str) -> BackendResult<String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!("database name {name:?}: lower-case letters, digits and _").into());
    }
    let mut admin = postgres::Config::from_str(admin_url)?.connect(NoTls)?;
    // two statements: a multi-statement query is one transaction, and CREATE DATABASE runs
    // outside any
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    Ok(match admin_url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            let query = rest
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap_or_default();
            format!("{scheme}://{authority}/{name}{query}")
        }
        None => format!("{admin_url} dbname={name}"),
    })
}

fn failure_row(row: &postgres::Row) -> Failure {
    Failure {
        user: row.get(0),
        fingerprint: row.get(1),
        stage: row.get(2),
        reason: row.get(3),
    }
}

impl Backend for Postgres {
    fn location(&self) -> &str {
        &self.location
    }

    fn put_user(&self, user: &str, fingerprint: &str, json: &str) -> BackendResult<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // one writer of user rows at a time, so revisions commit in the order they are given
        tx.batch_execute("LOCK TABLE users IN EXCLUSIVE MODE")?;
        tx.execute(
            r#"INSERT INTO users ("user", fingerprint, result, revision)
               VALUES ($1, $2, $3, (SELECT COALESCE(MAX(revision), 0) + 1 FROM users))
               ON CONFLICT ("user") DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
               result = EXCLUDED.result, revision = EXCLUDED.revision"#,
            &[&user, &fingerprint, &json],
        )?;
        tx.execute(r#"DELETE FROM failures WHERE "user" = $1"#, &[&user])?;
        crate::fault::point("put_user");
        Ok(tx.commit()?)
    }

    fn put_failure(&self, f: &Failure) -> BackendResult<()> {
        self.conn()?.execute(
            r#"INSERT INTO failures ("user", fingerprint, stage, reason) VALUES ($1, $2, $3, $4)
               ON CONFLICT ("user") DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
               stage = EXCLUDED.stage, reason = EXCLUDED.reason"#,
            &[&f.user, &f.fingerprint, &f.stage, &f.reason],
        )?;
        Ok(())
    }

    fn failures(&self) -> BackendResult<Vec<Failure>> {
        let rows = self.conn()?.query(
            r#"SELECT "user", fingerprint, stage, reason FROM failures
               ORDER BY "user" COLLATE "C""#,
            &[],
        )?;
        Ok(rows.iter().map(failure_row).collect())
    }

    fn failure(&self, user: &str) -> BackendResult<Option<Failure>> {
        let row = self.conn()?.query_opt(
            r#"SELECT "user", fingerprint, stage, reason FROM failures WHERE "user" = $1"#,
            &[&user],
        )?;
        Ok(row.as_ref().map(failure_row))
    }

    fn fingerprint(&self, user: &str) -> BackendResult<Option<String>> {
        let row = self.conn()?.query_opt(
            r#"SELECT fingerprint FROM users WHERE "user" = $1"#,
            &[&user],
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn for_each_user(&self, visit: &mut dyn FnMut(String) -> bool) -> BackendResult<()> {
        self.each_text(
            r#"SELECT result FROM users ORDER BY "user" COLLATE "C""#,
            &[],
            visit,
        )
    }

    fn user(&self, user: &str) -> BackendResult<Option<(i64, String)>> {
        let row = self.conn()?.query_opt(
            r#"SELECT revision, result FROM users WHERE "user" = $1"#,
            &[&user],
        )?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn max_revision(&self) -> BackendResult<i64> {
        let row = self
            .conn()?
            .query_one("SELECT COALESCE(MAX(revision), 0)::BIGINT FROM users", &[])?;
        Ok(row.get(0))
    }

    fn changes_since(&self, since: i64) -> BackendResult<Vec<(String, i64)>> {
        let rows = self.conn()?.query(
            r#"SELECT "user", revision FROM users WHERE revision > $1 ORDER BY revision"#,
            &[&since],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn users(&self) -> BackendResult<Vec<String>> {
        self.texts(
            r#"SELECT "user" FROM users ORDER BY "user" COLLATE "C""#,
            &[],
        )
    }

    fn counts(&self) -> BackendResult<ResultCounts> {
        let row = self.conn()?.query_one(
            "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM interest_keys),
                    (SELECT COUNT(*) FROM explanations), (SELECT COUNT(*) FROM failures)",
            &[],
        )?;
        let n = |i: usize| row.get::<_, i64>(i) as u64;
        Ok(ResultCounts {
            users: n(0),
            interest_keys: n(1),
            explanations: n(2),
            failures: n(3),
        })
    }

    fn explanation(&self, key: &ExplanationKey) -> BackendResult<Option<String>> {
        let row = self.conn()?.query_opt(
            "SELECT explanation FROM explanations
             WHERE interest_key = $1 AND item = $2 AND prompt_version = $3 AND model_id = $4",
            &[
                &key.interest_key,
                &key.item,
                &key.prompt_version,
                &key.model_id,
            ],
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn for_each_explanation(
        &self,
        prompt_version: &str,
        model_id: &str,
        visit: &mut dyn FnMut(String) -> bool,
    ) -> BackendResult<()> {
        self.each_text(
            r#"SELECT explanation FROM explanations WHERE prompt_version = $1 AND model_id = $2
               ORDER BY interest_key COLLATE "C", item COLLATE "C""#,
            &[&prompt_version, &model_id],
            visit,
        )
    }

    fn put_explanation(&self, key: &ExplanationKey, json: &str) -> BackendResult<()> {
        self.conn()?.execute(
            "INSERT INTO explanations (interest_key, item, prompt_version, model_id, explanation)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &key.interest_key,
                &key.item,
                &key.prompt_version,
                &key.model_id,
                &json,
            ],
        )?;
        Ok(())
    }

    fn interest_keys(&self) -> BackendResult<Vec<(String, Vec<u8>)>> {
        let rows = self.conn()?.query(
            r#"SELECT key, vector FROM interest_keys ORDER BY key COLLATE "C""#,
            &[],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn put_interest_key(&self, key: &str, vector: &[u8]) -> BackendResult<()> {
        self.conn()?.execute(
            "INSERT INTO interest_keys (key, vector) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&key, &vector],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://recgpt:secret@db.internal:5432/recgpt"),
            "postgres://recgpt@db.internal:5432/recgpt"
        );
        assert_eq!(
            redact("host=db user=recgpt password=secret dbname=x"),
            "host=db user=recgpt dbname=x"
        );
        assert_eq!(redact("postgres://db/recgpt"), "postgres://db/recgpt");
    }
}
