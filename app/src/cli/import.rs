use std::path::Path;

use anyhow::Result;
use recgpt_data::import::{import_generic, import_online_retail, ImportSummary, ImportTarget};
use recgpt_data::Store;

use super::print_json;

pub fn online_retail(home: &Path, path: &Path, append: bool, json: bool) -> Result<()> {
    let summary = import_online_retail(path, &target(home, append))?;
    report(home, &summary, append, json)
}

pub fn generic(home: &Path, events: &Path, catalog: &Path, append: bool, json: bool) -> Result<()> {
    let summary = import_generic(events, catalog, &target(home, append))?;
    report(home, &summary, append, json)
}

fn target(home: &Path, append: bool) -> ImportTarget {
    if append {
        ImportTarget::appending(home)
    } else {
        ImportTarget::new(home)
    }
}

/// The import's own figures; after an append, the whole store's too.
fn report(home: &Path, s: &ImportSummary, append: bool, json: bool) -> Result<()> {
    if json {
        return print_json(s);
    }
    if append {
        let m = Store::open(home)?.manifest().clone();
        println!(
            "appended; the store now holds events {}  users {}  from {} .. {} ({} appended imports)",
            m.events,
            m.users,
            m.first_event,
            m.last_event,
            m.appended.len()
        );
    }
    let files = std::iter::once(&s.events_file).chain(s.catalog_file.as_ref());
    for f in files {
        println!("{}", f.file.display());
        println!(
            "  rows read {:>9}   imported {:>9}   quarantined {:>9}",
            f.rows_read, f.rows_imported, f.rows_quarantined
        );
        for (reason, n) in &f.quarantined_by_reason {
            println!("    {reason:<28} {n:>9}");
        }
    }
    println!(
        "events {}  users {}  items {} ({} with events)",
        s.events, s.users, s.items, s.items_with_events
    );
    for (kind, n) in &s.events_by_kind {
        println!("  {kind:<12} {n:>9}");
    }
    if let (Some(first), Some(last)) = (s.first_event, s.last_event) {
        println!("time span {first} .. {last}");
    }
    println!("store      {}", s.store.display());
    println!("quarantine {}", s.quarantine_file.display());
    Ok(())
}
