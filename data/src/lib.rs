//! `recgpt-data`: the ground every recgpt stage stands on.
//!
//! - [`Event`] and [`BehaviorKind`]: one user behaviour (RecGPT's kinds: view, click, cart,
//!   favorite, purchase, return, search, review_view, rating).
//! - [`Item`] and [`Catalog`]: what can be recommended, with title, category path, brand,
//!   attributes and price.
//! - [`import`]: readers for the UCI Online Retail file (CSV, .csv.gz, .xlsx) and for a generic
//!   CSV / JSONL schema. Every input row is either imported or quarantined with a named
//!   [`import::Reason`]; [`import::ImportSummary`] proves `read = imported + quarantined`.
//! - [`Store`]: the persistent event store (one redb file under the data home) with per-user,
//!   time-ordered histories ([`History`]).
//! - [`TimeWindow`]: the time split (`--until`) and the "now" used for time buckets (`--as-of`),
//!   so that no output depends on the wall clock.

mod catalog;
mod error;
mod event;
pub mod hash;
pub mod import;
mod store;
pub mod text;
mod time;

pub use catalog::{Catalog, Item, ItemIx};
pub use error::DataError;
pub use event::{BehaviorKind, Event};
pub use store::{Behavior, History, Manifest, Store, STORE_FILE};
pub use time::{parse_date, parse_timestamp, TimeWindow, Timestamp};

/// Result type of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
