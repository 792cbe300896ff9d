//! The UCI Online Retail data set (id 352): one row per invoice line of a UK gift retailer,
//! 2010-12-01 .. 2011-12-09. Read from the original `.xlsx`, or a CSV / `.csv.gz` export with
//! the same columns.
//!
//! Rows become `purchase` events (invoices) and `return` events (cancellations, invoice number
//! starting with `C`). The rules, checked in this order, quarantine everything else:
//!
//! 0. `invalid_utf8`: a field of a CSV row is not UTF-8 text (the row is kept in the
//!    quarantine with U+FFFD for its bad bytes; the rest of the file imports);
//! 1. `unparsable_<field>`: InvoiceNo, Quantity, InvoiceDate, UnitPrice or CustomerID cannot be
//!    read;
//! 2. `no_customer_id`: the row has no CustomerID;
//! 3. `non_product_code`: the StockCode is not 5 digits plus an optional letter suffix
//!    (POST, M, D, C2, DOT, CRUK, BANK CHARGES, AMAZONFEE, PADS, gift vouchers, ...);
//! 4. `stock_note`: the Description is empty, holds `?`, has no letters, or has more lower-case
//!    than upper-case letters (product names are upper case; `damages`, `found`,
//!    `Next Day Carriage` are notes or service lines);
//! 5. `zero_price`: UnitPrice is 0 or below;
//! 6. `quantity_sign`: the quantity's sign disagrees with the invoice type.
//!
//! Stock codes are upper-cased (`85123a` and `85123A` are one product). The catalog takes every
//! product code's most frequent description (ties: the alphabetically first), counted over all
//! rows that carry a product code and a product name, and the median positive unit price.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::source::{open_text, Table};
use super::{
    finish_import, parse_number, ImportParts, ImportSummary, ImportTarget, Quarantine, Reason,
    Rejection, RowAccounting,
};
use crate::{parse_timestamp, BehaviorKind, Catalog, DataError, Event, Item};

/// Column positions in the source file.
struct Columns {
    invoice: usize,
    stock_code: usize,
    description: usize,
    quantity: usize,
    date: usize,
    price: usize,
    customer: usize,
}

impl Columns {
    fn find(table: &Table) -> Result<Self, DataError> {
        Ok(Self {
            invoice: table.require("InvoiceNo")?,
            stock_code: table.require("StockCode")?,
            description: table.require("Description")?,
            quantity: table.require("Quantity")?,
            date: table.require("InvoiceDate")?,
            price: table.require("UnitPrice")?,
            customer: table.require("CustomerID")?,
        })
    }
}

/// Evidence for an item's catalog entry, gathered over all rows.
#[derive(Default)]
struct ItemEvidence {
    titles: HashMap<String, u64>,
    prices: Vec<f64>,
}

/// Imports the Online Retail file at `path` into the store under `target`.
pub fn import_online_retail(
    path: &Path,
    target: &ImportTarget,
) -> Result<ImportSummary, DataError> {
    let mut table = Table::open(path)?;
    let cols = Columns::find(&table)?;
    let mut quarantine = Quarantine::create(target)?;
    let mut accounting = RowAccounting::new(path);
    let mut events = Vec::new();
    let mut evidence: HashMap<String, ItemEvidence> = HashMap::new();
    let mut fields = Vec::new();

    while let Some(row) = table.next_row(&mut fields) {
        let row = row?;
        let line = row.line;
        accounting.rows_read += 1;
        if let Some(column) = row.invalid_utf8 {
            let rejection = Rejection::invalid_utf8(path, line, table.column_name(column));
            quarantine.put(&mut accounting, line, &table.header, &fields, &rejection)?;
            continue;
        }
        let field = |i: usize| fields.get(i).map_or("", |s| s.trim());

        let code = field(cols.stock_code).to_ascii_uppercase();
        let title = normalise_title(field(cols.description));
        if is_product_code(&code) && !is_stock_note(&title) {
            let entry = evidence.entry(code.clone()).or_default();
            *entry.titles.entry(title.clone()).or_default() += 1;
            if let Ok(price) = field(cols.price).parse::<f64>() {
                if price > 0.0 && price.is_finite() {
                    entry.prices.push(price);
                }
            }
        }

        match classify(&fields, &cols, &code, &title, path, line) {
            Ok(event) => {
                events.push(event);
                accounting.rows_imported += 1;
            }
            Err(rejection) => {
                quarantine.put(&mut accounting, line, &table.header, &fields, &rejection)?
            }
        }
    }

    let catalog = build_catalog(evidence);
    let parts = ImportParts {
        dataset: "online-retail".into(),
        events_file: accounting,
        catalog_file: None,
        quarantine,
        catalog,
        events,
    };
    finish_import(target, parts)
}

/// Splits an Online Retail CSV (or `.csv.gz`) file at `day` into `before.csv` (rows whose
/// `InvoiceDate` is before it) and `from.csv` (the rest) in `dir`, rows byte for byte under
/// the same header: a store of the first with the second appended (`--append`) is how
/// incremental imports are tested and measured against one import of the whole file.
pub fn split_by_day(
    path: &Path,
    day: chrono::NaiveDate,
    dir: &Path,
) -> Result<(PathBuf, PathBuf), DataError> {
    let paths = [dir.join("before.csv"), dir.join("from.csv")];
    let csv_err = |p: &Path, e: csv::Error| DataError::store(p, e);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(open_text(path)?);
    let mut writers = [
        csv::Writer::from_path(&paths[0]).map_err(|e| csv_err(&paths[0], e))?,
        csv::Writer::from_path(&paths[1]).map_err(|e| csv_err(&paths[1], e))?,
    ];
    let mut records = reader.byte_records();
    let header = records
        .next()
        .ok_or_else(|| DataError::store(path, "empty file"))?
        .map_err(|e| csv_err(path, e))?;
    let date = header
        .iter()
        .position(|f| f == b"InvoiceDate")
        .ok_or_else(|| DataError::store(path, "no InvoiceDate column"))?;
    let day = day.format("%Y-%m-%d").to_string();
    for (w, p) in writers.iter_mut().zip(&paths) {
        w.write_byte_record(&header).map_err(|e| csv_err(p, e))?;
    }
    for record in records {
        let record = record.map_err(|e| csv_err(path, e))?;
        // `YYYY-MM-DD hh:mm:ss` compares as text
        let side = usize::from(record.get(date).is_some_and(|d| d >= day.as_bytes()));
        writers[side]
            .write_byte_record(&record)
            .map_err(|e| csv_err(&paths[side], e))?;
    }
    for (w, p) in writers.iter_mut().zip(&paths) {
        w.flush().map_err(|e| DataError::io(p, e))?;
    }
    let [before, from] = paths;
    Ok((before, from))
}

/// Applies the module's rules to one row.
fn classify(
    fields: &[String],
    cols: &Columns,
    code: &str,
    title: &str,
    path: &Path,
    line: u64,
) -> Result<Event, Rejection> {
    let field = |i: usize| fields.get(i).map_or("", |s| s.trim());
    let at_line = |name: &str, message: String| {
        format!("{}:{line}: field `{name}`: {message}", path.display())
    };

    let invoice = field(cols.invoice);
    let digits = invoice.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::new(
            Reason::Unparsable("invoice_no"),
            at_line("InvoiceNo", format!("`{invoice}` is not an invoice number")),
        ));
    }
    let cancellation = invoice.starts_with('C');
    let quantity = parse_number(field(cols.quantity), "quantity", path, line)?;
    let date = field(cols.date);
    let at = parse_timestamp(date).ok_or_else(|| {
        Rejection::new(
            Reason::Unparsable("invoice_date"),
            at_line("InvoiceDate", format!("`{date}` is not a date and time")),
        )
    })?;
    let price = parse_number(field(cols.price), "unit_price", path, line)?;
    let customer = field(cols.customer);
    if customer.is_empty() {
        return Err(Rejection::new(
            Reason::NoCustomerId,
            at_line("CustomerID", "empty".into()),
        ));
    }
    // Spreadsheets and some exports write ids as floats (`17850.0`).
    let customer = customer.strip_suffix(".0").unwrap_or(customer);
    if !customer.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::new(
            Reason::Unparsable("customer_id"),
            at_line(
                "CustomerID",
                format!("`{customer}` is not a customer number"),
            ),
        ));
    }
    if !is_product_code(code) {
        return Err(Rejection::new(
            Reason::NonProductCode,
            at_line("StockCode", format!("`{code}` is not a product code")),
        ));
    }
    if is_stock_note(title) {
        return Err(Rejection::new(
            Reason::StockNote,
            at_line("Description", format!("`{title}` is not a product name")),
        ));
    }
    if price <= 0.0 {
        return Err(Rejection::new(
            Reason::ZeroPrice,
            at_line("UnitPrice", format!("{price} is not a positive price")),
        ));
    }
    if cancellation != (quantity < 0.0) {
        return Err(Rejection::new(
            Reason::QuantitySign,
            at_line(
                "Quantity",
                format!(
                    "{quantity} on {} invoice `{invoice}`",
                    if cancellation { "a cancellation" } else { "an" }
                ),
            ),
        ));
    }
    Ok(Event {
        user: customer.to_string(),
        item: Some(code.to_string()),
        kind: if cancellation {
            BehaviorKind::Return
        } else {
            BehaviorKind::Purchase
        },
        at,
        quantity: quantity.abs(),
        value: quantity.abs() * price,
        query: None,
    })
}

/// Five digits and an optional letter suffix (`85123A`, `15056BL`).
fn is_product_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() >= 5
        && bytes.len() <= 7
        && bytes[..5].iter().all(u8::is_ascii_digit)
        && bytes[5..].iter().all(u8::is_ascii_uppercase)
}

/// Stock-keeping notes and service lines, not product names (rule 4 of the module docs).
fn is_stock_note(title: &str) -> bool {
    let upper = title.chars().filter(|c| c.is_uppercase()).count();
    let lower = title.chars().filter(|c| c.is_lowercase()).count();
    title.contains('?') || upper + lower == 0 || lower > upper
}

/// Trims and collapses runs of white space.
fn normalise_title(title: &str) -> String {
    title.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn build_catalog(evidence: HashMap<String, ItemEvidence>) -> Catalog {
    let items = evidence
        .into_iter()
        .map(|(id, mut ev)| {
            let title = ev
                .titles
                .into_iter()
                .max_by(|(ta, ca), (tb, cb)| ca.cmp(cb).then_with(|| tb.cmp(ta)))
                .map(|(t, _)| t)
                .expect("evidence has a title");
            ev.prices.sort_by(f64::total_cmp);
            let price = (!ev.prices.is_empty()).then(|| ev.prices[ev.prices.len() / 2]);
            Item {
                id,
                title,
                category: Vec::new(),
                brand: None,
                attributes: Default::default(),
                price,
            }
        })
        .collect();
    Catalog::new(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_codes() {
        for code in ["85123A", "22423", "15056BL", "84029G"] {
            assert!(is_product_code(code), "{code}");
        }
        for code in [
            "POST",
            "M",
            "D",
            "C2",
            "DOT",
            "BANK CHARGES",
            "AMAZONFEE",
            "GIFT_0001_20",
            "DCGS0003",
            "1234",
            "DCGSSBOY",
        ] {
            assert!(!is_product_code(code), "{code}");
        }
    }

    #[test]
    fn stock_notes() {
        for note in [
            "",
            "?",
            "damages",
            "Damaged",
            "?sold as sets?",
            "Next Day Carriage",
            "thrown away",
        ] {
            assert!(is_stock_note(note), "{note}");
        }
        for name in [
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "BAG 125g SWIRLY MARBLES",
            "POLYESTER FILLER PAD 40x40cm",
        ] {
            assert!(!is_stock_note(name), "{name}");
        }
    }

    #[test]
    fn most_frequent_title_wins_ties_alphabetically() {
        let mut ev = ItemEvidence::default();
        ev.titles.insert("B NAME".into(), 2);
        ev.titles.insert("A NAME".into(), 2);
        ev.titles.insert("C NAME".into(), 1);
        ev.prices = vec![3.0, 1.0, 2.0];
        let catalog = build_catalog(HashMap::from([("10000".to_string(), ev)]));
        assert_eq!(catalog.get(0).title, "A NAME");
        assert_eq!(catalog.get(0).price, Some(2.0));
    }
}
