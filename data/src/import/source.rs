//! Tabular input files: CSV (optionally gzip-compressed) and Excel workbooks, read as a header
//! plus rows of strings with their line numbers, so that every importer reports positions the
//! same way.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use calamine::{Data, Reader};

use crate::DataError;

/// A table being read: the header and an iterator over `(line, fields)`.
pub(crate) struct Table {
    pub path: PathBuf,
    pub header: Vec<String>,
    rows: Rows,
}

/// Where a row was read, and whether it was text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowRead {
    pub line: u64,
    /// The column of the row's first field that is not valid UTF-8; the row's fields then hold
    /// its bytes decoded lossily (U+FFFD for each bad sequence), for the quarantine.
    pub invalid_utf8: Option<usize>,
}

enum Rows {
    Csv(csv::Reader<Box<dyn Read>>),
    Sheet(std::vec::IntoIter<(u64, Vec<String>)>),
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("path", &self.path).finish()
    }
}

/// How a file's name says it is stored.
pub(crate) fn is_gzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

pub(crate) fn is_excel(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "xlsx" | "xlsm" | "xls"))
}

/// Opens a file for reading, decompressing `.gz`.
pub(crate) fn open_text(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let file = BufReader::with_capacity(1 << 20, file);
    Ok(if is_gzip(path) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

impl Table {
    /// Opens a CSV, `.csv.gz` or Excel file (first sheet).
    pub fn open(path: &Path) -> Result<Self, DataError> {
        if is_excel(path) {
            Self::open_sheet(path)
        } else {
            Self::open_csv(path)
        }
    }

    fn open_csv(path: &Path) -> Result<Self, DataError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(open_text(path)?);
        let header = reader
            .headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            header,
            rows: Rows::Csv(reader),
        })
    }

    fn open_sheet(path: &Path) -> Result<Self, DataError> {
        let format = |message: String| DataError::Format {
            path: path.to_path_buf(),
            line: 0,
            message,
        };
        let mut workbook = calamine::open_workbook_auto(path)
            .map_err(|e| format(format!("not a readable workbook: {e}")))?;
        let range = workbook
            .worksheet_range_at(0)
            .ok_or_else(|| format("the workbook has no sheet".into()))?
            .map_err(|e| format(format!("cannot read the first sheet: {e}")))?;
        // Spreadsheet row numbers are 1-based; the range may not start at row 1.
        let first_row = u64::from(range.start().map_or(0, |(r, _)| r)) + 1;
        let mut rows = range.rows().enumerate().map(|(i, row)| {
            let fields = row.iter().map(cell_text).collect::<Vec<_>>();
            (first_row + i as u64, fields)
        });
        let (_, header) = rows
            .next()
            .ok_or_else(|| format("the first sheet is empty".into()))?;
        let rows: Vec<_> = rows.collect();
        Ok(Self {
            path: path.to_path_buf(),
            header: header.into_iter().map(|h| h.trim().to_string()).collect(),
            rows: Rows::Sheet(rows.into_iter()),
        })
    }

    /// Index of a column by name (case-insensitive).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }

    /// Index of a required column, or a format error naming it.
    pub fn require(&self, name: &str) -> Result<usize, DataError> {
        self.column(name).ok_or_else(|| DataError::Format {
            path: self.path.clone(),
            line: 1,
            message: format!(
                "missing column `{name}` (header: {})",
                self.header.join(",")
            ),
        })
    }

    /// Reads the next row into `fields`; returns its line number, or `None` at the end. A row
    /// with a field that is not UTF-8 is read (lossily) and flagged, not an error: only that
    /// row is bad.
    pub fn next_row(&mut self, fields: &mut Vec<String>) -> Option<Result<RowRead, DataError>> {
        match &mut self.rows {
            Rows::Csv(reader) => {
                let mut record = csv::ByteRecord::new();
                match reader.read_byte_record(&mut record) {
                    Ok(false) => None,
                    Ok(true) => {
                        fields.clear();
                        let mut invalid_utf8 = None;
                        for (column, bytes) in record.iter().enumerate() {
                            let text = String::from_utf8_lossy(bytes);
                            if matches!(text, std::borrow::Cow::Owned(_)) {
                                invalid_utf8.get_or_insert(column);
                            }
                            fields.push(text.into_owned());
                        }
                        let line = record.position().map_or(0, |p| p.line());
                        Some(Ok(RowRead { line, invalid_utf8 }))
                    }
                    Err(e) => Some(Err(csv_error(&self.path, e))),
                }
            }
            Rows::Sheet(rows) => rows.next().map(|(line, row)| {
                *fields = row;
                Ok(RowRead {
                    line,
                    invalid_utf8: None,
                })
            }),
        }
    }

    /// The name of `column`, for messages.
    pub fn column_name(&self, column: usize) -> &str {
        self.header.get(column).map_or("?", String::as_str)
    }
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map_or(0, |p| p.line());
    DataError::Format {
        path: path.to_path_buf(),
        line,
        message: format!("unreadable CSV: {e}"),
    }
}

/// A spreadsheet cell as the text a CSV export would hold: whole numbers without a fraction
/// (Excel stores ids and invoice numbers as floats), dates as `YYYY-MM-DD HH:MM:SS` rounded to
/// the second (Excel stores them as fractional days).
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => match dt.as_datetime() {
            Some(naive) => {
                let rounded = naive + chrono::Duration::milliseconds(500);
                rounded.format("%Y-%m-%d %H:%M:%S").to_string()
            }
            None => dt.as_f64().to_string(),
        },
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#ERROR {e:?}"),
    }
}
