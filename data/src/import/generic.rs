//! The generic schema, for bringing any data set: an events file and a catalog file, each CSV
//! (with a header row, optionally `.gz`) or JSON lines (`.jsonl` / `.ndjson`, optionally `.gz`).
//! The README documents the schema with an example.
//!
//! Events: `user_id`, `item_id` (empty for searches), `kind` (a [`BehaviorKind`] name),
//! `timestamp`, optional `quantity` (default 1), `value` (default 0), `query` (required for
//! searches). Catalog: `item_id`, `title`, optional `category` (path separated by `>`),
//! `brand`, `price`, `attributes` (a JSON object in JSONL; `key=value; key=value` in CSV).
//! Unknown columns are ignored.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::Path;

use super::source::{open_text, Table};
use super::{
    finish_import, parse_number, ImportParts, ImportSummary, ImportTarget, Quarantine, Reason,
    Rejection, RowAccounting,
};
use crate::{parse_timestamp, BehaviorKind, Catalog, DataError, Event, Item};

const EVENT_COLUMNS: [&str; 7] = [
    "user_id",
    "item_id",
    "kind",
    "timestamp",
    "quantity",
    "value",
    "query",
];
const CATALOG_COLUMNS: [&str; 6] = [
    "item_id",
    "title",
    "category",
    "brand",
    "price",
    "attributes",
];

/// Imports `events` and `catalog` files in the generic schema.
pub fn import_generic(
    events_path: &Path,
    catalog_path: &Path,
    target: &ImportTarget,
) -> Result<ImportSummary, DataError> {
    let mut quarantine = Quarantine::create(target)?;

    let mut catalog_acc = RowAccounting::new(catalog_path);
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    read_records(
        catalog_path,
        &CATALOG_COLUMNS,
        |line, fields, unreadable| {
            catalog_acc.rows_read += 1;
            let parsed = unreadable.map_or(Ok(()), Err);
            let parsed = parsed.and_then(|()| parse_item(fields, catalog_path, line));
            let parsed = parsed.and_then(|item| {
                if seen.insert(item.id.clone()) {
                    Ok(item)
                } else {
                    Err(Rejection::new(
                        Reason::DuplicateItem,
                        at(
                            catalog_path,
                            line,
                            "item_id",
                            format!("`{}` repeats an earlier row", item.id),
                        ),
                    ))
                }
            });
            match parsed {
                Ok(item) => {
                    items.push(item);
                    catalog_acc.rows_imported += 1;
                    Ok(())
                }
                Err(r) => quarantine.put(
                    &mut catalog_acc,
                    line,
                    &header(&CATALOG_COLUMNS),
                    fields,
                    &r,
                ),
            }
        },
    )?;
    let catalog = Catalog::new(items);

    let mut events_acc = RowAccounting::new(events_path);
    let mut events = Vec::new();
    read_records(events_path, &EVENT_COLUMNS, |line, fields, unreadable| {
        events_acc.rows_read += 1;
        let parsed = unreadable.map_or(Ok(()), Err);
        match parsed.and_then(|()| parse_event(fields, &catalog, events_path, line)) {
            Ok(event) => {
                events.push(event);
                events_acc.rows_imported += 1;
                Ok(())
            }
            Err(r) => quarantine.put(&mut events_acc, line, &header(&EVENT_COLUMNS), fields, &r),
        }
    })?;

    let parts = ImportParts {
        dataset: events_path
            .file_name()
            .map_or_else(|| "events".into(), |n| n.to_string_lossy().into_owned()),
        events_file: events_acc,
        catalog_file: Some(catalog_acc),
        quarantine,
        catalog,
        events,
    };
    finish_import(target, parts)
}

fn header(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| c.to_string()).collect()
}

fn at(path: &Path, line: u64, field: &str, message: String) -> String {
    format!("{}:{line}: field `{field}`: {message}", path.display())
}

fn is_jsonl(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with(".jsonl") || name.ends_with(".ndjson")
}

/// Calls `visit(line, fields, unreadable)` for every record, `fields` aligned with `columns`
/// (absent columns are empty). A record that cannot be read (a JSON line that does not parse,
/// bytes that are not UTF-8) comes with the rejection for the quarantine, and what could be
/// read of it in `fields` (the line's text, lossily decoded, in the first field for JSON).
fn read_records(
    path: &Path,
    columns: &[&str],
    mut visit: impl FnMut(u64, &[String], Option<Rejection>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut fields = vec![String::new(); columns.len()];
    if is_jsonl(path) {
        let mut reader = std::io::BufReader::new(open_text(path)?);
        let mut bytes = Vec::new();
        let mut line = 0u64;
        loop {
            bytes.clear();
            let read = reader
                .read_until(b'\n', &mut bytes)
                .map_err(|e| DataError::io(path, e))?;
            if read == 0 {
                return Ok(());
            }
            line += 1;
            // borrowed when the line is UTF-8, so the bytes are checked once
            let lossy = String::from_utf8_lossy(&bytes);
            let text = lossy.trim();
            if text.is_empty() {
                continue;
            }
            let unreadable = match lossy {
                std::borrow::Cow::Owned(_) => {
                    let from = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), |_| 0);
                    Some(Rejection::new(
                        Reason::InvalidUtf8,
                        format!(
                            "{}:{line}: not valid UTF-8 from byte {from} on (kept with U+FFFD)",
                            path.display()
                        ),
                    ))
                }
                std::borrow::Cow::Borrowed(_) => {
                    read_json(text, columns, &mut fields).err().map(|e| {
                        Rejection::new(
                            Reason::Unparsable("json"),
                            format!("{}:{line}: {e}", path.display()),
                        )
                    })
                }
            };
            if unreadable.is_some() {
                fields.iter_mut().for_each(String::clear);
                fields[0] = text.to_string();
            }
            visit(line, &fields, unreadable)?;
        }
    }
    let mut table = Table::open(path)?;
    let positions: Vec<Option<usize>> = columns.iter().map(|c| table.column(c)).collect();
    for (column, position) in columns.iter().zip(&positions).take(2) {
        if position.is_none() {
            table.require(column)?;
        }
    }
    let mut raw = Vec::new();
    while let Some(row) = table.next_row(&mut raw) {
        let row = row?;
        for (field, position) in fields.iter_mut().zip(&positions) {
            *field = position
                .and_then(|p| raw.get(p))
                .map_or_else(String::new, |s| s.trim().to_string());
        }
        let unreadable = row
            .invalid_utf8
            .map(|column| Rejection::invalid_utf8(path, row.line, table.column_name(column)));
        visit(row.line, &fields, unreadable)?;
    }
    Ok(())
}

/// The `columns` of the JSON object `text` into `fields` (absent and null ones empty).
fn read_json(text: &str, columns: &[&str], fields: &mut [String]) -> serde_json::Result<()> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)?;
    for (field, column) in fields.iter_mut().zip(columns) {
        *field = match object.get(*column) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
    }
    Ok(())
}

fn required<'a>(
    fields: &'a [String],
    ix: usize,
    name: &'static str,
    path: &Path,
    line: u64,
) -> Result<&'a str, Rejection> {
    let value = fields[ix].as_str();
    if value.is_empty() {
        Err(Rejection::new(
            Reason::Missing(name),
            at(path, line, name, "empty".into()),
        ))
    } else {
        Ok(value)
    }
}

fn parse_item(fields: &[String], path: &Path, line: u64) -> Result<Item, Rejection> {
    let id = required(fields, 0, "item_id", path, line)?;
    let title = required(fields, 1, "title", path, line)?;
    let price = match fields[4].as_str() {
        "" => None,
        p => Some(parse_number(p, "price", path, line)?),
    };
    let attributes = parse_attributes(&fields[5]).ok_or_else(|| {
        Rejection::new(
            Reason::Unparsable("attributes"),
            at(
                path,
                line,
                "attributes",
                format!(
                    "`{}` is neither a JSON object nor `key=value; ...`",
                    fields[5]
                ),
            ),
        )
    })?;
    Ok(Item {
        id: id.to_string(),
        title: title.split_whitespace().collect::<Vec<_>>().join(" "),
        category: fields[2]
            .split('>')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        brand: Some(fields[3].clone()).filter(|b| !b.is_empty()),
        attributes,
        price,
    })
}

/// `{"color": "red"}` or `color=red; size=M`.
fn parse_attributes(text: &str) -> Option<BTreeMap<String, String>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(BTreeMap::new());
    }
    if text.starts_with('{') {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
        return Some(
            object
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect(),
        );
    }
    text.split(';')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn parse_event(
    fields: &[String],
    catalog: &Catalog,
    path: &Path,
    line: u64,
) -> Result<Event, Rejection> {
    let user = required(fields, 0, "user_id", path, line)?;
    let kind_text = required(fields, 2, "kind", path, line)?;
    let kind = BehaviorKind::parse(kind_text).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownKind,
            at(path, line, "kind", format!("`{kind_text}` is not one of view, click, cart, favorite, purchase, return, search, review_view, rating")),
        )
    })?;
    let stamp = required(fields, 3, "timestamp", path, line)?;
    let at_ = parse_timestamp(stamp).ok_or_else(|| {
        Rejection::new(
            Reason::Unparsable("timestamp"),
            at(
                path,
                line,
                "timestamp",
                format!("`{stamp}` is not a timestamp"),
            ),
        )
    })?;
    let item = match (kind, fields[1].as_str()) {
        (BehaviorKind::Search, "") => None,
        (_, "") => {
            return Err(Rejection::new(
                Reason::Missing("item_id"),
                at(path, line, "item_id", "empty".into()),
            ))
        }
        (_, id) if catalog.ix(id).is_none() => {
            return Err(Rejection::new(
                Reason::UnknownItem,
                at(
                    path,
                    line,
                    "item_id",
                    format!("`{id}` is not in the catalog"),
                ),
            ))
        }
        (_, id) => Some(id.to_string()),
    };
    let query = Some(fields[6].clone()).filter(|q| !q.is_empty());
    if kind == BehaviorKind::Search && query.is_none() {
        return Err(Rejection::new(
            Reason::Missing("query"),
            at(path, line, "query", "a search needs its query".into()),
        ));
    }
    let number = |ix: usize, name: &'static str, default: f64| match fields[ix].as_str() {
        "" => Ok(default),
        v => parse_number(v, name, path, line),
    };
    let quantity = number(4, "quantity", 1.0)?;
    if quantity < 0.0 {
        return Err(Rejection::new(
            Reason::QuantitySign,
            at(
                path,
                line,
                "quantity",
                format!("{quantity} is negative (a return is the kind `return`)"),
            ),
        ));
    }
    Ok(Event {
        user: user.to_string(),
        item,
        kind,
        at: at_,
        quantity,
        value: number(5, "value", 0.0)?,
        query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_in_both_forms() {
        let want = BTreeMap::from([
            ("color".to_string(), "red".to_string()),
            ("size".to_string(), "M".to_string()),
        ]);
        assert_eq!(parse_attributes("color=red; size=M"), Some(want.clone()));
        assert_eq!(
            parse_attributes(r#"{"color":"red","size":"M"}"#),
            Some(want)
        );
        assert_eq!(parse_attributes(""), Some(BTreeMap::new()));
        assert_eq!(parse_attributes("color red"), None);
    }
}
