use std::collections::BTreeMap;
use std::io::Write;

use recgpt_data::import::{import_generic, import_online_retail, split_by_day, ImportTarget};
use recgpt_data::{BehaviorKind, DataError, Store};

use crate::common::{data_file, fixture, real_import, real_store, temp_home};

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn online_retail_accounting_is_exact() {
    let (_, s) = real_import();
    let f = &s.events_file;
    assert_eq!(f.rows_read, 541_909);
    assert_eq!(f.rows_imported, 404_793);
    assert_eq!(f.rows_quarantined, 137_116);
    assert_eq!(
        f.quarantined_by_reason,
        counts(&[
            ("no_customer_id", 135_080),
            ("non_product_code", 1_920),
            ("stock_note", 83),
            ("zero_price", 33),
        ])
    );
    assert!(s.balanced());
    assert_eq!(
        s.events_by_kind,
        counts(&[("purchase", 396_255), ("return", 8_538)])
    );
    assert_eq!(s.events, 404_793);
    assert_eq!(s.users, 4_362);
    assert_eq!(s.items, 3_799);
    assert_eq!(s.items_with_events, 3_674);
    assert_eq!(s.first_event.unwrap().to_string(), "2010-12-01 08:26:00");
    assert_eq!(s.last_event.unwrap().to_string(), "2011-12-09 12:50:00");
}

#[test]
fn quarantine_file_holds_every_rejected_row_with_line_and_reason() {
    let (_, s) = real_import();
    let text = std::fs::read_to_string(&s.quarantine_file).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len() as u64, s.events_file.rows_quarantined);
    let mut lines: Vec<u64> = records
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    lines.dedup();
    assert_eq!(
        lines.len(),
        records.len(),
        "one record per line, in file order"
    );
    // First POST line (CSV line 47) and first row without a customer (line 624).
    let at = |line: u64| records.iter().find(|r| r["line"] == line).unwrap();
    assert_eq!(at(47)["reason"], "non_product_code");
    assert_eq!(at(47)["fields"]["StockCode"], "POST");
    assert_eq!(at(624)["reason"], "no_customer_id");
    assert_eq!(at(9304)["reason"], "zero_price");
    let detail = at(9304)["detail"].as_str().unwrap();
    assert!(
        detail.contains("online_retail.csv.gz:9304: field `UnitPrice`"),
        "{detail}"
    );
}

#[test]
fn catalog_takes_the_most_frequent_description() {
    let store = real_store();
    let item = store.catalog().get(store.catalog().ix("85123A").unwrap());
    assert_eq!(item.title, "WHITE HANGING HEART T-LIGHT HOLDER");
    assert_eq!(item.price, Some(2.95));
    // lower-case suffixes are the same product
    assert!(store.catalog().ix("85123a").is_none());
}

#[test]
fn histories_are_time_ordered_and_split_by_until() {
    let store = real_store();
    let all = store.window(None, None);
    let h = store.history("12347", &all).unwrap();
    assert_eq!(h.events.len(), 182);
    assert!(h.events.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(h.events.iter().all(|e| e.kind == BehaviorKind::Purchase));
    let split = store.window(Some(recgpt_data::parse_date("2011-11-01").unwrap()), None);
    assert_eq!(split.as_of.to_string(), "2011-11-01");
    let before = store.history("12347", &split).unwrap();
    assert!(before.events.len() < h.events.len());
    assert_eq!(before.events[..], h.events[..before.events.len()]);
    assert!(matches!(
        store.history("nobody", &all),
        Err(DataError::UnknownUser { .. })
    ));
    let mut users = 0;
    store
        .for_each_history(&split, |_| {
            users += 1;
            Ok::<_, DataError>(())
        })
        .unwrap();
    assert_eq!(
        users, 4_001,
        "customers with imported events before 2011-11-01"
    );
}

#[test]
fn importing_twice_gives_the_same_store() {
    let (home, _) = real_import();
    let again = temp_home();
    import_online_retail(&data_file(), &ImportTarget::new(&again)).unwrap();
    let a = Store::open(home).unwrap();
    let b = Store::open(&again).unwrap();
    assert_eq!(a.manifest().fingerprint, b.manifest().fingerprint);
    assert_eq!(
        a.manifest().import.events_file,
        b.manifest().import.events_file
    );
    // and into the same home again
    import_online_retail(&data_file(), &ImportTarget::new(&again)).unwrap();
    assert_eq!(
        Store::open(&again).unwrap().manifest().fingerprint,
        a.manifest().fingerprint
    );
}

/// The original file is an .xlsx: its reader must see the same rows as the CSV reader.
#[test]
fn xlsx_and_csv_of_the_same_rows_import_identically() {
    let csv_path = temp_home().join("head.csv");
    {
        let text = std::io::read_to_string(flate2::read::GzDecoder::new(
            std::fs::File::open(data_file()).unwrap(),
        ))
        .unwrap();
        let mut out = std::fs::File::create(&csv_path).unwrap();
        for line in text.lines().take(10_001) {
            writeln!(out, "{line}").unwrap();
        }
    }
    let (csv_home, xlsx_home) = (temp_home(), temp_home());
    let from_csv = import_online_retail(&csv_path, &ImportTarget::new(&csv_home)).unwrap();
    let from_xlsx = import_online_retail(
        &fixture("online_retail_head.xlsx"),
        &ImportTarget::new(&xlsx_home),
    )
    .unwrap();
    assert_eq!(from_csv.events_file.rows_read, 10_000);
    assert_eq!(from_xlsx.events_file.rows_read, 10_000);
    assert_eq!(
        from_csv.events_file.quarantined_by_reason,
        from_xlsx.events_file.quarantined_by_reason
    );
    assert_eq!(from_csv.events_by_kind, from_xlsx.events_by_kind);
    assert_eq!(
        Store::open(&csv_home).unwrap().manifest().fingerprint,
        Store::open(&xlsx_home).unwrap().manifest().fingerprint
    );
}

#[test]
fn generic_schema_csv_and_jsonl_with_bad_rows() {
    let dir = temp_home();
    let catalog = dir.join("items.csv");
    std::fs::write(
        &catalog,
        "item_id,title,category,brand,price,attributes\n\
         A1,Linen shirt,Clothing > Shirts,Acme,29.5,color=blue; size=M\n\
         A2,Wool socks,Clothing > Socks,,4,\n\
         A1,Duplicate shirt,,,,\n\
         A3,,Clothing,,,\n\
         A4,Mug,Kitchen,,cheap,\n",
    )
    .unwrap();
    let events = dir.join("events.jsonl");
    std::fs::write(
        &events,
        r#"{"user_id":"u1","item_id":"A1","kind":"view","timestamp":"2024-03-01T10:00:00Z"}
{"user_id":"u1","item_id":"A1","kind":"purchase","timestamp":"2024-03-02 11:00","quantity":2,"value":59}
{"user_id":"u1","kind":"search","timestamp":"2024-03-01T09:00:00Z","query":"linen shirt"}
{"user_id":"u2","item_id":"A2","kind":"cart","timestamp":1709290000}
{"user_id":"u2","item_id":"A9","kind":"purchase","timestamp":"2024-03-02"}
{"user_id":"u2","item_id":"A2","kind":"buy","timestamp":"2024-03-02"}
{"user_id":"","item_id":"A2","kind":"view","timestamp":"2024-03-02"}
{"user_id":"u3","item_id":"A2","kind":"view","timestamp":"yesterday"}
{"user_id":"u3","kind":"search","timestamp":"2024-03-02"}
not json
"#,
    )
    .unwrap();
    let home = dir.join("home");
    let s = import_generic(&events, &catalog, &ImportTarget::new(&home)).unwrap();
    let c = s.catalog_file.as_ref().unwrap();
    assert_eq!(
        (c.rows_read, c.rows_imported, c.rows_quarantined),
        (5, 2, 3)
    );
    assert_eq!(
        c.quarantined_by_reason,
        counts(&[
            ("duplicate_item", 1),
            ("missing_title", 1),
            ("unparsable_price", 1)
        ])
    );
    let e = &s.events_file;
    assert_eq!(
        (e.rows_read, e.rows_imported, e.rows_quarantined),
        (10, 4, 6)
    );
    assert_eq!(
        e.quarantined_by_reason,
        counts(&[
            ("missing_query", 1),
            ("missing_user_id", 1),
            ("unknown_item", 1),
            ("unknown_kind", 1),
            ("unparsable_json", 1),
            ("unparsable_timestamp", 1),
        ])
    );
    assert!(s.balanced());
    assert_eq!(s.users, 2);
    let quarantine = std::fs::read_to_string(&s.quarantine_file).unwrap();
    assert!(
        quarantine.contains("events.jsonl:5: field `item_id`: `A9` is not in the catalog"),
        "{quarantine}"
    );
    assert!(
        quarantine.contains("items.csv:6: field `price`: `cheap` is not a number"),
        "{quarantine}"
    );

    let store = Store::open(&home).unwrap();
    let shirt = store.catalog().get(store.catalog().ix("A1").unwrap());
    assert_eq!(shirt.category, ["Clothing", "Shirts"]);
    assert_eq!(shirt.attributes["color"], "blue");
    let h = store.history("u1", &store.window(None, None)).unwrap();
    let kinds: Vec<_> = h.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            BehaviorKind::Search,
            BehaviorKind::View,
            BehaviorKind::Purchase
        ]
    );
    assert_eq!(h.events[0].query.as_deref(), Some("linen shirt"));
}

#[test]
fn a_file_without_required_columns_is_an_error_naming_file_and_column() {
    let dir = temp_home();
    let path = dir.join("bad.csv");
    std::fs::write(&path, "InvoiceNo,StockCode,Quantity\n1,2,3\n").unwrap();
    let err = import_online_retail(&path, &ImportTarget::new(dir.join("home"))).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("bad.csv:1: missing column `Description`"),
        "{message}"
    );
    assert!(
        !Store::path_in(&dir.join("home")).exists(),
        "nothing imported"
    );
}

/// The Online Retail header and its first row, for small files in its format.
const RETAIL_HEADER: &[u8] =
    b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";
const RETAIL_ROW: &[u8] = b"536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6.0,2010-12-01 08:26:00,2.55,17850,United Kingdom";

/// The rows as lines of a file.
fn lines(rows: &[&[u8]]) -> Vec<u8> {
    rows.iter()
        .flat_map(|r| r.iter().chain(b"\n"))
        .copied()
        .collect()
}

#[test]
fn rows_that_are_not_utf8_or_carry_a_negative_quantity_are_quarantined_alone() {
    let dir = temp_home();
    let catalog = dir.join("items.csv");
    std::fs::write(
        &catalog,
        lines(&[
            b"item_id,title,category,brand,price,attributes",
            b"A1,Linen shirt,,,,",
            b"A2,Caf\xe9 mug,,,,",
        ]),
    )
    .unwrap();
    let events = dir.join("events.jsonl");
    std::fs::write(
        &events,
        lines(&[
            br#"{"user_id":"u1","item_id":"A1","kind":"purchase","timestamp":"2024-03-02"}"#,
            b"{\"user_id\":\"u\xff\",\"item_id\":\"A1\",\"kind\":\"view\",\"timestamp\":\"2024-03-02\"}",
            br#"{"user_id":"u2","item_id":"A1","kind":"purchase","timestamp":"2024-03-03","quantity":-2}"#,
            br#"{"user_id":"u2","item_id":"A1","kind":"view","timestamp":"2024-03-03"}"#,
        ]),
    )
    .unwrap();
    let s = import_generic(&events, &catalog, &ImportTarget::new(dir.join("home"))).unwrap();
    let c = s.catalog_file.as_ref().unwrap();
    assert_eq!((c.rows_read, c.rows_imported), (2, 1));
    assert_eq!(c.quarantined_by_reason, counts(&[("invalid_utf8", 1)]));
    let e = &s.events_file;
    assert_eq!((e.rows_read, e.rows_imported), (4, 2));
    assert_eq!(
        e.quarantined_by_reason,
        counts(&[("invalid_utf8", 1), ("quantity_sign", 1)])
    );
    assert!(s.balanced());
    let quarantine = std::fs::read_to_string(&s.quarantine_file).unwrap();
    for want in [
        "items.csv:3: field `title`: not valid UTF-8",
        "events.jsonl:2: not valid UTF-8 from byte 13",
        "events.jsonl:3: field `quantity`: -2 is negative",
        "Caf\u{fffd} mug",
    ] {
        assert!(quarantine.contains(want), "{want} not in {quarantine}");
    }

    // the same in the Online Retail importer: the bad row alone, the rest imported
    let retail = dir.join("retail.csv");
    std::fs::write(
        &retail,
        lines(&[
            RETAIL_HEADER,
            RETAIL_ROW,
            b"536365,71053,WHITE METAL LANTERN \xa3,6.0,2010-12-01 08:26:00,3.39,17850,United Kingdom",
            b"536366,22633,HAND WARMER UNION JACK,6.0,2010-12-01 08:28:00,1.85,17850,United Kingdom",
        ]),
    )
    .unwrap();
    let s = import_online_retail(&retail, &ImportTarget::new(dir.join("retail-home"))).unwrap();
    let f = &s.events_file;
    assert_eq!((f.rows_read, f.rows_imported), (3, 2));
    assert_eq!(f.quarantined_by_reason, counts(&[("invalid_utf8", 1)]));
    let quarantine = std::fs::read_to_string(&s.quarantine_file).unwrap();
    assert!(
        quarantine.contains("retail.csv:3: field `Description`: not valid UTF-8"),
        "{quarantine}"
    );
}

#[test]
fn a_failed_import_leaves_the_store_and_its_quarantine_as_they_were() {
    let dir = temp_home();
    let home = dir.join("home");
    let retail = dir.join("retail.csv");
    std::fs::write(
        &retail,
        lines(&[
            RETAIL_HEADER,
            RETAIL_ROW,
            b"536365,POST,POSTAGE,1.0,2010-12-01 08:26:00,18.0,17850,United Kingdom",
        ]),
    )
    .unwrap();
    let s = import_online_retail(&retail, &ImportTarget::new(&home)).unwrap();
    let store = std::fs::read(Store::path_in(&home)).unwrap();
    let quarantine = std::fs::read(&s.quarantine_file).unwrap();
    assert_eq!(quarantine.iter().filter(|&&b| b == b'\n').count(), 1);

    // the real file cut off mid-stream: rows import until the gzip stream breaks
    let truncated = dir.join("truncated.csv.gz");
    let bytes = std::fs::read(data_file()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = import_online_retail(&truncated, &ImportTarget::new(&home)).unwrap_err();
    assert!(err.to_string().contains("truncated.csv.gz"), "{err}");
    assert_eq!(std::fs::read(Store::path_in(&home)).unwrap(), store);
    assert_eq!(std::fs::read(&s.quarantine_file).unwrap(), quarantine);
    let left: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n.ends_with(".partial") || n.ends_with(".tmp")),
        "{left:?}"
    );
}

/// The history of every user, with item ids instead of catalog indexes.
fn histories_by_id(store: &Store) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let catalog = store.catalog();
    store
        .for_each_history(&store.window(None, None), |h| {
            let events = h
                .events
                .iter()
                .map(|b| {
                    let item = b.item.map(|ix| catalog.get(ix).id.as_str());
                    format!("{item:?} {:?} {} {} {}", b.kind, b.at, b.quantity, b.value)
                })
                .collect();
            out.insert(h.user, events);
            Ok::<_, DataError>(())
        })
        .unwrap();
    out
}

/// The last week appended to a store of the rest holds what one import of the whole file
/// holds; the store's items keep their indexes, and the same file is not appended twice.
#[test]
fn appending_the_last_week_gives_the_whole_import() {
    let day = recgpt_data::parse_date("2011-12-02").unwrap();
    let (before, week) = split_by_day(&data_file(), day, &temp_home()).unwrap();
    let home = temp_home();
    import_online_retail(&before, &ImportTarget::new(&home)).unwrap();
    let base = Store::open(&home).unwrap();
    let appended = import_online_retail(&week, &ImportTarget::appending(&home)).unwrap();
    assert!(appended.balanced());
    assert!(appended.events > 10_000, "{appended:?}");
    assert!(appended.first_event.unwrap().to_string().as_str() >= "2011-12-02");

    let store = Store::open(&home).unwrap();
    let whole = real_store();
    let m = store.manifest();
    assert_eq!(m.appended, vec![appended.clone()]);
    assert_eq!(
        (m.users, m.events),
        (whole.manifest().users, whole.manifest().events)
    );
    assert_eq!(
        (m.first_event, m.last_event),
        (whole.manifest().first_event, whole.manifest().last_event)
    );
    assert_eq!(histories_by_id(&store), histories_by_id(&whole));
    // every row is accounted for once, and quarantined once
    let rows = |f: fn(&recgpt_data::import::RowAccounting) -> u64| {
        f(&m.import.events_file) + f(&appended.events_file)
            - f(&whole.manifest().import.events_file)
    };
    assert_eq!(rows(|a| a.rows_read), 0);
    assert_eq!(rows(|a| a.rows_quarantined), 0);
    let quarantine = std::fs::read_to_string(home.join("quarantine.jsonl")).unwrap();
    assert_eq!(quarantine.lines().count(), 137_116);
    // the catalog grew by the week's new items; the stored ones kept their indexes
    assert_eq!(store.catalog().len(), whole.catalog().len());
    for (ix, item) in base.catalog().items().iter().enumerate() {
        assert_eq!(store.catalog().ix(&item.id), Some(ix as u32));
        assert_eq!(store.catalog().get(ix as u32), item);
    }
    drop(base);

    // the same file again: refused, the store and its quarantine as they were
    let again = import_online_retail(&week, &ImportTarget::appending(&home)).unwrap_err();
    assert!(
        again
            .to_string()
            .contains("imported into this store before"),
        "{again}"
    );
    assert_eq!(Store::open(&home).unwrap().manifest(), m);
    assert_eq!(
        std::fs::read_to_string(home.join("quarantine.jsonl")).unwrap(),
        quarantine
    );
}
