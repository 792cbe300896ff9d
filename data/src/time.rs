use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::DataError;

/// Seconds since 1970-01-01 00:00:00 in the data set's own clock (Online Retail records UK
/// local time without a zone; we keep it as is rather than guess offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_naive(dt: NaiveDateTime) -> Self {
        Self(dt.and_utc().timestamp())
    }

    pub fn from_date(date: NaiveDate) -> Self {
        Self::from_naive(date.and_time(NaiveTime::MIN))
    }

    pub fn naive(self) -> NaiveDateTime {
        DateTime::from_timestamp(self.0, 0)
            .expect("timestamp within chrono's range")
            .naive_utc()
    }

    pub fn date(self) -> NaiveDate {
        self.naive().date()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.naive().format("%Y-%m-%d %H:%M:%S"))
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<NaiveDate, DataError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|e| DataError::Value {
        field: "date",
        value: s.to_string(),
        message: format!("{e} (expected YYYY-MM-DD)"),
    })
}

/// Parses the timestamp forms accepted in input files: RFC 3339 (`2011-12-09T12:50:00Z`, the
/// offset is applied), `YYYY-MM-DD HH:MM[:SS]`, `YYYY-MM-DDTHH:MM[:SS]`, `YYYY-MM-DD`, or an
/// integer of Unix seconds.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Some(Timestamp(secs));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(Timestamp(dt.timestamp()));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, format) {
            return Some(Timestamp::from_naive(dt));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(Timestamp::from_date)
}

/// Which part of history a command sees, and what "now" is.
///
/// `until`: only events strictly before this instant (the train side of a time split).
/// `as_of`: the date treated as today when bucketing time ("last month", "last year").
/// Both come from the command line or from the store itself, never from the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub until: Option<Timestamp>,
    pub as_of: NaiveDate,
}

impl TimeWindow {
    /// Resolves the window from `--until` and `--as-of`. Without `--as-of`, "now" is the day
    /// after the last event visible in the window: `until` when given (events stop just before
    /// it), else the day after the store's last event.
    pub fn resolve(
        until: Option<NaiveDate>,
        as_of: Option<NaiveDate>,
        last_event: Timestamp,
    ) -> Self {
        let day_after_last = last_event
            .date()
            .checked_add_days(Days::new(1))
            .expect("date in range");
        let default_as_of = match until {
            Some(until) => until.min(day_after_last),
            None => day_after_last,
        };
        Self {
            until: until.map(Timestamp::from_date),
            as_of: as_of.unwrap_or(default_as_of),
        }
    }

    /// Whether an event at `at` is visible.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.until.is_none_or(|until| at < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_forms() {
        let want = Timestamp::from_naive(
            NaiveDate::from_ymd_opt(2011, 12, 9)
                .unwrap()
                .and_hms_opt(12, 50, 0)
                .unwrap(),
        );
        assert_eq!(parse_timestamp("2011-12-09 12:50:00"), Some(want));
        assert_eq!(parse_timestamp("2011-12-09T12:50:00"), Some(want));
        assert_eq!(parse_timestamp("2011-12-09 12:50"), Some(want));
        assert_eq!(parse_timestamp("2011-12-09T12:50:00Z"), Some(want));
        assert_eq!(parse_timestamp("2011-12-09T13:50:00+01:00"), Some(want));
        assert_eq!(parse_timestamp(&want.0.to_string()), Some(want));
        assert_eq!(want.to_string(), "2011-12-09 12:50:00");
        assert_eq!(parse_timestamp("09/12/2011"), None);
    }

    #[test]
    fn window_defaults_to_day_after_last_visible_event() {
        let last = parse_timestamp("2011-12-09 12:50").unwrap();
        let w = TimeWindow::resolve(None, None, last);
        assert_eq!(w.as_of, parse_date("2011-12-10").unwrap());
        assert!(w.contains(last));
        let w = TimeWindow::resolve(Some(parse_date("2011-11-01").unwrap()), None, last);
        assert_eq!(w.as_of, parse_date("2011-11-01").unwrap());
        assert!(!w.contains(parse_timestamp("2011-11-01 00:00").unwrap()));
        assert!(w.contains(parse_timestamp("2011-10-31 23:59").unwrap()));
        let w = TimeWindow::resolve(None, Some(parse_date("2012-01-01").unwrap()), last);
        assert_eq!(w.as_of, parse_date("2012-01-01").unwrap());
    }
}
