//! The event store: one redb file under the data home.
//!
//! Tables: `histories` (user id → that user's events, time-ordered, postcard-encoded),
//! `items` (item index → catalog item as JSON, whose optional fields postcard cannot skip), `meta` (`manifest` → JSON [`Manifest`]). An import
//! writes a new file next to the old one and renames it into place, so a crashed import
//! leaves the previous store intact, and importing the same file twice gives the same
//! content (the manifest's `fingerprint` is a hash of every key and value). An appending
//! import ([`Store::append`], in `append.rs`) does the same on a copy of the file.

mod append;

use std::path::{Path, PathBuf};

use redb::{Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::import::ImportSummary;
use crate::{BehaviorKind, Catalog, DataError, Event, Item, ItemIx, TimeWindow, Timestamp};

/// File name of the store under the data home.
pub const STORE_FILE: &str = "events.redb";
const FORMAT_VERSION: u32 = 1;
/// redb's page cache per handle: bounded, so memory does not grow with the store.
const CACHE_BYTES: usize = 64 << 20;

const HISTORIES: TableDefinition<&str, &[u8]> = TableDefinition::new("histories");
const ITEMS: TableDefinition<u32, &[u8]> = TableDefinition::new("items");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// One behaviour in a user's history; the user is implied, the item is a catalog index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behavior {
    pub item: Option<ItemIx>,
    pub kind: BehaviorKind,
    pub at: Timestamp,
    pub quantity: f64,
    pub value: f64,
    pub query: Option<String>,
}

/// A user's time-ordered behaviours (oldest first) inside a [`TimeWindow`].
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub user: String,
    pub events: Vec<Behavior>,
}

/// What the store holds, written by the import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The import that made the store.
    pub import: ImportSummary,
    /// The imports appended to it since (`--append`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub appended: Vec<ImportSummary>,
    pub users: u64,
    pub events: u64,
    pub first_event: Timestamp,
    pub last_event: Timestamp,
    /// FNV-1a 64 over every key and value, in key order.
    pub fingerprint: String,
}

/// An open event store.
pub struct Store {
    path: PathBuf,
    db: ReadOnlyDatabase,
    catalog: Catalog,
    manifest: Manifest,
}

impl Store {
    /// Path of the store under a data home.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join(STORE_FILE)
    }

    /// Opens the store under `home` read-only and loads its catalog. Any number of processes
    /// (and handles in one process) can read one store at once.
    pub fn open(home: &Path) -> Result<Self, DataError> {
        let path = Self::path_in(home);
        if !path.exists() {
            return Err(DataError::NoStore { path });
        }
        let err = |e: &dyn std::fmt::Display| DataError::store(&path, e);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(&path)
            .map_err(|e| err(&e))?;
        let txn = db.begin_read().map_err(|e| err(&e))?;
        let meta = txn.open_table(META).map_err(|e| err(&e))?;
        let manifest_json = meta
            .get("manifest")
            .map_err(|e| err(&e))?
            .ok_or_else(|| err(&"no manifest"))?;
        let manifest: Manifest =
            serde_json::from_str(manifest_json.value()).map_err(|e| err(&e))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(err(&format!(
                "format version {} (this build reads {FORMAT_VERSION}); import again",
                manifest.format_version
            )));
        }
        let items_table = txn.open_table(ITEMS).map_err(|e| err(&e))?;
        let mut items = Vec::new();
        for entry in items_table.iter().map_err(|e| err(&e))? {
            let (_, value) = entry.map_err(|e| err(&e))?;
            items.push(serde_json::from_slice::<Item>(value.value()).map_err(|e| err(&e))?);
        }
        drop((meta, items_table, manifest_json, txn));
        Ok(Self {
            path,
            db,
            catalog: Catalog::indexed(items),
            manifest,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Resolves `--until` / `--as-of` against this store's last event.
    pub fn window(
        &self,
        until: Option<chrono::NaiveDate>,
        as_of: Option<chrono::NaiveDate>,
    ) -> TimeWindow {
        TimeWindow::resolve(until, as_of, self.manifest.last_event)
    }

    /// Whether the store holds `user`.
    pub fn has_user(&self, user: &str) -> Result<bool, DataError> {
        let err = |e: &dyn std::fmt::Display| DataError::store(&self.path, e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let table = txn.open_table(HISTORIES).map_err(|e| err(&e))?;
        Ok(table.get(user).map_err(|e| err(&e))?.is_some())
    }

    /// One user's history inside `window`.
    pub fn history(&self, user: &str, window: &TimeWindow) -> Result<History, DataError> {
        let err = |e: &dyn std::fmt::Display| DataError::store(&self.path, e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let table = txn.open_table(HISTORIES).map_err(|e| err(&e))?;
        let value =
            table
                .get(user)
                .map_err(|e| err(&e))?
                .ok_or_else(|| DataError::UnknownUser {
                    user: user.to_string(),
                })?;
        let events = decode_history(value.value(), window).map_err(|e| err(&e))?;
        Ok(History {
            user: user.to_string(),
            events,
        })
    }

    /// Calls `visit` with every user's history inside `window`, in user-id order, reading the
    /// store sequentially. Users with no event in the window are skipped. Memory is one history
    /// at a time.
    pub fn for_each_history<E: From<DataError>>(
        &self,
        window: &TimeWindow,
        mut visit: impl FnMut(History) -> Result<(), E>,
    ) -> Result<(), E> {
        let err = |e: &dyn std::fmt::Display| DataError::store(&self.path, e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let table = txn.open_table(HISTORIES).map_err(|e| err(&e))?;
        for entry in table.iter().map_err(|e| err(&e))? {
            let (user, value) = entry.map_err(|e| err(&e))?;
            let events = decode_history(value.value(), window).map_err(|e| err(&e))?;
            if !events.is_empty() {
                visit(History {
                    user: user.value().to_string(),
                    events,
                })?;
            }
        }
        Ok(())
    }

    /// Writes a new store under `home` from imported events, replacing any old one atomically.
    pub fn write(
        home: &Path,
        import: &ImportSummary,
        catalog: &Catalog,
        mut events: Vec<Event>,
    ) -> Result<Manifest, DataError> {
        std::fs::create_dir_all(home).map_err(|e| DataError::io(home, e))?;
        let path = Self::path_in(home);
        let tmp = home.join(format!("{STORE_FILE}.tmp"));
        let err = |e: &dyn std::fmt::Display| DataError::store(&tmp, e);
        let _ = std::fs::remove_file(&tmp);
        // Stable: events of one user at the same instant keep their file order.
        events.sort_by(|a, b| a.user.cmp(&b.user).then(a.at.cmp(&b.at)));

        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&tmp)
            .map_err(|e| err(&e))?;
        let txn = db.begin_write().map_err(|e| err(&e))?;
        {
            let mut items = txn.open_table(ITEMS).map_err(|e| err(&e))?;
            for (ix, item) in catalog.items().iter().enumerate() {
                let bytes = serde_json::to_vec(item).map_err(|e| err(&e))?;
                items
                    .insert(ix as u32, bytes.as_slice())
                    .map_err(|e| err(&e))?;
            }
            let mut histories = txn.open_table(HISTORIES).map_err(|e| err(&e))?;
            for (user, events) in by_user(&events) {
                let history: Vec<Behavior> =
                    events.iter().map(|e| Behavior::of(e, catalog)).collect();
                let bytes = postcard::to_allocvec(&history).map_err(|e| err(&e))?;
                histories
                    .insert(user, bytes.as_slice())
                    .map_err(|e| err(&e))?;
            }
        }
        let manifest = Contents::of(&txn)
            .map_err(|e| err(&e))?
            .manifest(import.clone(), Vec::new());
        Self::commit(db, txn, &manifest, &tmp, &path)?;
        Ok(manifest)
    }

    /// Writes `manifest`, commits `txn` and renames the file it wrote (`tmp`) into place.
    fn commit(
        db: Database,
        txn: redb::WriteTransaction,
        manifest: &Manifest,
        tmp: &Path,
        path: &Path,
    ) -> Result<(), DataError> {
        let err = |e: &dyn std::fmt::Display| DataError::store(tmp, e);
        let json = serde_json::to_string(manifest).expect("serialisable manifest");
        txn.open_table(META)
            .map_err(|e| err(&e))?
            .insert("manifest", json.as_str())
            .map_err(|e| err(&e))?;
        txn.commit().map_err(|e| err(&e))?;
        drop(db);
        std::fs::rename(tmp, path).map_err(|e| DataError::io(path, e))
    }
}

impl Behavior {
    /// An imported event as stored in its user's history.
    fn of(event: &Event, catalog: &Catalog) -> Self {
        Self {
            item: event.item.as_deref().and_then(|id| catalog.ix(id)),
            kind: event.kind,
            at: event.at,
            quantity: event.quantity,
            value: event.value,
            query: event.query.clone(),
        }
    }
}

/// Events sorted by user, as one slice per user.
fn by_user(events: &[Event]) -> impl Iterator<Item = (&str, &[Event])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let user = &events.get(start)?.user;
        let end = start + events[start..].partition_point(|e| &e.user == user);
        let group = &events[start..end];
        start = end;
        Some((user.as_str(), group))
    })
}

/// What a store holds, counted over its tables (as the manifest states it).
struct Contents {
    users: u64,
    events: u64,
    first_event: Timestamp,
    last_event: Timestamp,
    /// FNV-1a 64 over every item (index, JSON) and history (user, bytes), in key order.
    fingerprint: u64,
}

impl Contents {
    fn of(txn: &redb::WriteTransaction) -> Result<Self, Box<dyn std::error::Error>> {
        let mut fingerprint = Fnv::default();
        for entry in txn.open_table(ITEMS)?.iter()? {
            let (ix, item) = entry?;
            fingerprint.write(&ix.value().to_le_bytes());
            fingerprint.write(item.value());
        }
        let mut contents = Self {
            users: 0,
            events: 0,
            first_event: Timestamp(i64::MAX),
            last_event: Timestamp(i64::MIN),
            fingerprint: 0,
        };
        for entry in txn.open_table(HISTORIES)?.iter()? {
            let (user, bytes) = entry?;
            fingerprint.write(user.value().as_bytes());
            fingerprint.write(bytes.value());
            let history: Vec<Behavior> = postcard::from_bytes(bytes.value())?;
            contents.users += 1;
            contents.events += history.len() as u64;
            if let (Some(first), Some(last)) = (history.first(), history.last()) {
                contents.first_event = contents.first_event.min(first.at);
                contents.last_event = contents.last_event.max(last.at);
            }
        }
        if contents.events == 0 {
            (contents.first_event, contents.last_event) = (Timestamp(0), Timestamp(0));
        }
        contents.fingerprint = fingerprint.0;
        Ok(contents)
    }

    fn manifest(self, import: ImportSummary, appended: Vec<ImportSummary>) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            import,
            appended,
            users: self.users,
            events: self.events,
            first_event: self.first_event,
            last_event: self.last_event,
            fingerprint: format!("{:016x}", self.fingerprint),
        }
    }
}

impl Store {
    /// Writes a copy of this store under `dest` with every user replicated `factor` times
    /// (`{user}` and `{user}~1` .. `{user}~{factor-1}`), for scale benchmarks. Streams: one
    /// history in memory at a time, committing every 20,000 histories.
    pub fn replicate(&self, dest: &Path, factor: u32) -> Result<Manifest, DataError> {
        std::fs::create_dir_all(dest).map_err(|e| DataError::io(dest, e))?;
        let path = Self::path_in(dest);
        let err = |e: &dyn std::fmt::Display| DataError::store(&path, e);
        let _ = std::fs::remove_file(&path);
        let out = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| err(&e))?;
        let src = self.db.begin_read().map_err(|e| err(&e))?;
        let mut txn = out.begin_write().map_err(|e| err(&e))?;
        {
            let mut items = txn.open_table(ITEMS).map_err(|e| err(&e))?;
            for entry in src
                .open_table(ITEMS)
                .map_err(|e| err(&e))?
                .iter()
                .map_err(|e| err(&e))?
            {
                let (k, v) = entry.map_err(|e| err(&e))?;
                items.insert(k.value(), v.value()).map_err(|e| err(&e))?;
            }
        }
        let mut written = 0u64;
        for entry in src
            .open_table(HISTORIES)
            .map_err(|e| err(&e))?
            .iter()
            .map_err(|e| err(&e))?
        {
            let (user, value) = entry.map_err(|e| err(&e))?;
            let mut table = txn.open_table(HISTORIES).map_err(|e| err(&e))?;
            for k in 0..factor {
                let id = if k == 0 {
                    user.value().to_string()
                } else {
                    format!("{}~{k}", user.value())
                };
                table
                    .insert(id.as_str(), value.value())
                    .map_err(|e| err(&e))?;
                written += 1;
            }
            drop(table);
            if written % 20_000 < u64::from(factor) {
                txn.commit().map_err(|e| err(&e))?;
                txn = out.begin_write().map_err(|e| err(&e))?;
            }
        }
        let manifest = Manifest {
            users: self.manifest.users * u64::from(factor),
            events: self.manifest.events * u64::from(factor),
            fingerprint: format!("{}x{factor}", self.manifest.fingerprint),
            ..self.manifest.clone()
        };
        let json = serde_json::to_string(&manifest).expect("serialisable manifest");
        txn.open_table(META)
            .map_err(|e| err(&e))?
            .insert("manifest", json.as_str())
            .map_err(|e| err(&e))?;
        txn.commit().map_err(|e| err(&e))?;
        Ok(manifest)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("users", &self.manifest.users)
            .field("items", &self.catalog.len())
            .finish()
    }
}

fn decode_history(bytes: &[u8], window: &TimeWindow) -> Result<Vec<Behavior>, postcard::Error> {
    let mut events: Vec<Behavior> = postcard::from_bytes(bytes)?;
    if let Some(until) = window.until {
        // Histories are time-ordered, so the window is a prefix.
        let keep = events.partition_point(|e| e.at < until);
        events.truncate(keep);
    }
    Ok(events)
}

/// FNV-1a, 64 bit: a stable content hash (std's hashers are not stable across releases).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
