//! Importers. Each reads a source file row by row; a row is either turned into events (and
//! catalog evidence) or quarantined with a named [`Reason`], written with its line number to
//! the quarantine file. [`ImportSummary`] accounts for every row: `read = imported +
//! quarantined`, per file.

mod generic;
mod online_retail;
mod source;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use generic::import_generic;
pub use online_retail::{import_online_retail, split_by_day};

use crate::{Catalog, DataError, Event, Timestamp};

/// Why a row was not imported. The `key` is what summaries and the quarantine file show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Online Retail: the row has no CustomerID (guest or unknown customer).
    NoCustomerId,
    /// Online Retail: the stock code is not a product (postage, manual, discount, fees,
    /// vouchers, samples): anything but 5 digits with an optional letter suffix.
    NonProductCode,
    /// Online Retail: unit price 0 or below (adjustments, free samples, bad-debt entries).
    ZeroPrice,
    /// Online Retail: the description is a stock-keeping note (`damages`, `?`, `found`), a
    /// service line (`Next Day Carriage`) or empty, not a product name.
    StockNote,
    /// Online Retail: the quantity's sign disagrees with the invoice type (a negative quantity
    /// on a sale, or a positive one on a cancellation). Generic import: a negative quantity
    /// (quantities are counts; a return is the kind `return`).
    QuantitySign,
    /// A field is not valid UTF-8 text.
    InvalidUtf8,
    /// A field could not be parsed (number, date).
    Unparsable(&'static str),
    /// A required field is empty.
    Missing(&'static str),
    /// Generic import: the `kind` is none of the behaviour kinds.
    UnknownKind,
    /// Generic import: the event names an item that is not in the catalog.
    UnknownItem,
    /// Generic import: a catalog row repeats an item id already imported.
    DuplicateItem,
}

impl Reason {
    pub fn key(&self) -> String {
        match self {
            Self::NoCustomerId => "no_customer_id".into(),
            Self::NonProductCode => "non_product_code".into(),
            Self::ZeroPrice => "zero_price".into(),
            Self::StockNote => "stock_note".into(),
            Self::QuantitySign => "quantity_sign".into(),
            Self::InvalidUtf8 => "invalid_utf8".into(),
            Self::Unparsable(field) => format!("unparsable_{field}"),
            Self::Missing(field) => format!("missing_{field}"),
            Self::UnknownKind => "unknown_kind".into(),
            Self::UnknownItem => "unknown_item".into(),
            Self::DuplicateItem => "duplicate_item".into(),
        }
    }
}

/// A rejected row: why, and a message naming file, line and field.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// Field `field` of line `line` of `path` is not UTF-8.
    pub(crate) fn invalid_utf8(path: &Path, line: u64, field: &str) -> Self {
        Self::new(
            Reason::InvalidUtf8,
            format!(
                "{}:{line}: field `{field}`: not valid UTF-8 (kept with U+FFFD for each bad byte sequence)",
                path.display()
            ),
        )
    }
}

/// Row accounting for one input file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowAccounting {
    pub file: PathBuf,
    pub rows_read: u64,
    pub rows_imported: u64,
    pub rows_quarantined: u64,
    pub quarantined_by_reason: BTreeMap<String, u64>,
}

impl RowAccounting {
    fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            ..Self::default()
        }
    }

    /// `read = imported + quarantined`, and the reasons add up.
    pub fn balanced(&self) -> bool {
        self.rows_read == self.rows_imported + self.rows_quarantined
            && self.quarantined_by_reason.values().sum::<u64>() == self.rows_quarantined
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub dataset: String,
    /// The events (or transactions) file.
    pub events_file: RowAccounting,
    /// The catalog file, when it is separate from the events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_file: Option<RowAccounting>,
    pub events: u64,
    pub events_by_kind: BTreeMap<String, u64>,
    pub users: u64,
    /// Items in the catalog.
    pub items: u64,
    /// Catalog items that occur in at least one event.
    pub items_with_events: u64,
    pub first_event: Option<Timestamp>,
    pub last_event: Option<Timestamp>,
    pub quarantine_file: PathBuf,
    pub store: PathBuf,
}

impl ImportSummary {
    /// Every file's rows are accounted for.
    pub fn balanced(&self) -> bool {
        self.events_file.balanced() && self.catalog_file.as_ref().is_none_or(|c| c.balanced())
    }
}

/// Writes quarantined rows as JSON lines: file, line, reason, detail and the raw fields. The
/// rows go to a file beside the quarantine file, which takes its place only when the import's
/// store is written ([`Quarantine::commit`]); an import that fails (or is dropped) leaves the
/// previous store and its quarantine file as they were.
#[derive(Debug)]
pub(crate) struct Quarantine {
    path: PathBuf,
    staged: PathBuf,
    out: Option<BufWriter<File>>,
}

#[derive(Serialize)]
struct QuarantineRecord<'a> {
    file: &'a Path,
    line: u64,
    reason: String,
    detail: &'a str,
    fields: BTreeMap<&'a str, &'a str>,
}

impl Quarantine {
    /// The quarantine of an import into `target`: staged empty, or (when appending) as a copy
    /// of the store's quarantine file, to which this import's rows are added.
    pub fn create(target: &ImportTarget) -> Result<Self, DataError> {
        let path = target.quarantine_path();
        let path = path.as_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        let mut staged = path.as_os_str().to_owned();
        staged.push(".partial");
        let staged = PathBuf::from(staged);
        let file = if target.append && path.exists() {
            std::fs::copy(path, &staged).map_err(|e| DataError::io(&staged, e))?;
            std::fs::OpenOptions::new().append(true).open(&staged)
        } else {
            File::create(&staged)
        };
        let file = file.map_err(|e| DataError::io(&staged, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            staged,
            out: Some(BufWriter::new(file)),
        })
    }

    /// Records a rejected row and counts it.
    pub fn put(
        &mut self,
        accounting: &mut RowAccounting,
        line: u64,
        header: &[String],
        fields: &[String],
        rejection: &Rejection,
    ) -> Result<(), DataError> {
        let reason = rejection.reason.key();
        let record = QuarantineRecord {
            file: &accounting.file,
            line,
            reason: reason.clone(),
            detail: &rejection.detail,
            fields: header
                .iter()
                .map(String::as_str)
                .zip(fields.iter().map(String::as_str))
                .collect(),
        };
        let out = self.out.as_mut().expect("open until commit");
        serde_json::to_writer(&mut *out, &record).expect("serialisable record");
        out.write_all(b"\n")
            .map_err(|e| DataError::io(&self.staged, e))?;
        accounting.rows_quarantined += 1;
        *accounting.quarantined_by_reason.entry(reason).or_default() += 1;
        Ok(())
    }

    /// Where the rows go once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes out the rows held back.
    pub fn flush(&mut self) -> Result<(), DataError> {
        let out = self.out.as_mut().expect("open until commit");
        out.flush().map_err(|e| DataError::io(&self.staged, e))
    }

    /// Puts the rows in place of the quarantine file: call once the import's store is written.
    pub fn commit(mut self) -> Result<PathBuf, DataError> {
        self.flush()?;
        drop(self.out.take());
        std::fs::rename(&self.staged, &self.path).map_err(|e| DataError::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}

impl Drop for Quarantine {
    /// An import that did not commit leaves no trace of its rows.
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}

/// Where an import writes under the data home, and whether it replaces the store there or
/// appends to it.
#[derive(Debug, Clone)]
pub struct ImportTarget {
    pub home: PathBuf,
    /// Add to the store (see [`crate::Store::append`]) instead of replacing it.
    pub append: bool,
}

impl ImportTarget {
    /// An import that replaces the store under `home`.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            append: false,
        }
    }

    /// An import appended to the store under `home`.
    pub fn appending(home: impl Into<PathBuf>) -> Self {
        Self {
            append: true,
            ..Self::new(home)
        }
    }

    pub(crate) fn quarantine_path(&self) -> PathBuf {
        self.home.join("quarantine.jsonl")
    }
}

/// What an importer read, handed to [`finish_import`].
pub(crate) struct ImportParts {
    pub dataset: String,
    pub events_file: RowAccounting,
    pub catalog_file: Option<RowAccounting>,
    pub quarantine: Quarantine,
    pub catalog: Catalog,
    pub events: Vec<Event>,
}

/// Computes the event statistics of the summary and writes the store.
pub(crate) fn finish_import(
    target: &ImportTarget,
    parts: ImportParts,
) -> Result<ImportSummary, DataError> {
    let ImportParts {
        dataset,
        events_file,
        catalog_file,
        mut quarantine,
        catalog,
        events,
    } = parts;
    let mut users = HashSet::new();
    let mut items = HashSet::new();
    let mut events_by_kind = BTreeMap::new();
    for event in &events {
        users.insert(event.user.as_str());
        if let Some(item) = &event.item {
            items.insert(item.as_str());
        }
        *events_by_kind
            .entry(event.kind.as_str().to_string())
            .or_default() += 1;
    }
    let summary = ImportSummary {
        dataset,
        events_file,
        catalog_file,
        events: events.len() as u64,
        events_by_kind,
        users: users.len() as u64,
        items: catalog.len() as u64,
        items_with_events: items.len() as u64,
        first_event: events.iter().map(|e| e.at).min(),
        last_event: events.iter().map(|e| e.at).max(),
        quarantine_file: quarantine.path().to_path_buf(),
        store: crate::Store::path_in(&target.home),
    };
    debug_assert!(summary.balanced(), "unbalanced import: {summary:?}");
    quarantine.flush()?;
    if target.append {
        crate::Store::append(&target.home, &summary, &catalog, events)?;
    } else {
        crate::Store::write(&target.home, &summary, &catalog, events)?;
    }
    quarantine.commit()?;
    Ok(summary)
}

/// Parses a number field, or a rejection naming the field and file position.
pub(crate) fn parse_number(
    value: &str,
    field: &'static str,
    path: &Path,
    line: u64,
) -> Result<f64, Rejection> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            Rejection::new(
                Reason::Unparsable(field),
                format!(
                    "{}:{line}: field `{field}`: `{value}` is not a number",
                    path.display()
                ),
            )
        })
}
