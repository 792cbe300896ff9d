//! Appending an import to a store (`recgpt import … --append`): new events join their users'
//! histories and new items join the catalog, without re-reading what the store holds.
//!
//! Like a full import it works on a copy of the file and renames it into place, so a failed
//! append leaves the store as it was and readers that have the store open keep their view.
//! Items the store already has keep their index and their catalog entry (an appended file does
//! not retitle them); items new to the store follow the existing ones in id order. A user's
//! appended events go after their stored events of the same instant.

use std::path::Path;

use redb::{Database, ReadableTable};

use super::{by_user, Behavior, Contents, Manifest, Store, CACHE_BYTES, HISTORIES, ITEMS};
use crate::import::ImportSummary;
use crate::{Catalog, DataError, Event, STORE_FILE};

impl Store {
    /// Adds `events`, and the items of `catalog` the store under `home` does not have, to that
    /// store. The manifest's counts and fingerprint are those of the whole store afterwards;
    /// `import` joins its list of appended imports. A file appended before (same name, rows
    /// and time span as the import or an earlier append) is refused: its events would count
    /// twice.
    pub fn append(
        home: &Path,
        import: &ImportSummary,
        catalog: &Catalog,
        mut events: Vec<Event>,
    ) -> Result<Manifest, DataError> {
        let path = Self::path_in(home);
        let old = Self::open(home)?;
        let earlier = std::iter::once(&old.manifest.import).chain(&old.manifest.appended);
        if let Some(same) = earlier.into_iter().find(|i| same_source(i, import)) {
            return Err(DataError::store(
                &path,
                format!(
                    "{} was imported into this store before (same file name, rows and time \
                     span as {}); its events are already there",
                    import.events_file.file.display(),
                    same.events_file.file.display()
                ),
            ));
        }
        let mut items = old.catalog.items().to_vec();
        items.extend(
            catalog
                .items()
                .iter()
                .filter(|item| old.catalog.ix(&item.id).is_none())
                .cloned(),
        );
        let merged = Catalog::indexed(items);

        let tmp = home.join(format!("{STORE_FILE}.tmp"));
        let err = |e: &dyn std::fmt::Display| DataError::store(&tmp, e);
        let _ = std::fs::remove_file(&tmp);
        std::fs::copy(&path, &tmp).map_err(|e| DataError::io(&tmp, e))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open(&tmp)
            .map_err(|e| err(&e))?;
        let txn = db.begin_write().map_err(|e| err(&e))?;
        {
            let mut table = txn.open_table(ITEMS).map_err(|e| err(&e))?;
            for (ix, item) in merged.items().iter().enumerate().skip(old.catalog.len()) {
                let bytes = serde_json::to_vec(item).map_err(|e| err(&e))?;
                table
                    .insert(ix as u32, bytes.as_slice())
                    .map_err(|e| err(&e))?;
            }
            // Stable: one user's events at the same instant keep their file order.
            events.sort_by(|a, b| a.user.cmp(&b.user).then(a.at.cmp(&b.at)));
            let mut histories = txn.open_table(HISTORIES).map_err(|e| err(&e))?;
            for (user, new) in by_user(&events) {
                let mut history: Vec<Behavior> = match histories.get(user).map_err(|e| err(&e))? {
                    Some(bytes) => postcard::from_bytes(bytes.value()).map_err(|e| err(&e))?,
                    None => Vec::new(),
                };
                history.extend(new.iter().map(|e| Behavior::of(e, &merged)));
                // stable: stored events stay before appended ones of the same instant
                history.sort_by_key(|b| b.at);
                let bytes = postcard::to_allocvec(&history).map_err(|e| err(&e))?;
                histories
                    .insert(user, bytes.as_slice())
                    .map_err(|e| err(&e))?;
            }
        }
        let mut appended = old.manifest.appended.clone();
        appended.push(import.clone());
        let manifest = Contents::of(&txn)
            .map_err(|e| err(&e))?
            .manifest(old.manifest.import.clone(), appended);
        drop(old);
        Self::commit(db, txn, &manifest, &tmp, &path)?;
        Ok(manifest)
    }
}

/// Whether two imports read the same file: the same file name, rows read and time span.
fn same_source(a: &ImportSummary, b: &ImportSummary) -> bool {
    a.dataset == b.dataset
        && a.events_file.file.file_name() == b.events_file.file.file_name()
        && a.events_file.rows_read == b.events_file.rows_read
        && (a.first_event, a.last_event) == (b.first_event, b.last_event)
}
