//! Time buckets (RecGPT report §3.1): by day within the last month, by month within the last
//! year, by year beyond. "Last month" and "last year" are calendar spans ending at the as-of
//! date: an event on or after `as_of − 1 month` gets a day bucket, one on or after
//! `as_of − 12 months` a month bucket, anything older a year bucket.

use chrono::{Datelike, Months, NaiveDate};

/// A time bucket, ordered oldest first (`Year < Month < Day` within the same span).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeBucket {
    Year(i32),
    Month(i32, u32),
    Day(NaiveDate),
}

impl TimeBucket {
    /// The bucket of an event on `date`, seen from `as_of`.
    pub fn of(date: NaiveDate, as_of: NaiveDate) -> Self {
        Bucketer::new(as_of, 0).bucket(date)
    }

    /// The bucket one step coarser (a day's month, a month's year), or itself for a year.
    pub fn coarser(self) -> Self {
        match self {
            Self::Day(d) => Self::Month(d.year(), d.month()),
            Self::Month(y, _) => Self::Year(y),
            Self::Year(_) => self,
        }
    }

    /// First day the bucket covers.
    pub fn start(self) -> NaiveDate {
        match self {
            Self::Year(y) => NaiveDate::from_ymd_opt(y, 1, 1),
            Self::Month(y, m) => NaiveDate::from_ymd_opt(y, m, 1),
            Self::Day(d) => Some(d),
        }
        .expect("valid bucket")
    }

    /// Last day the bucket covers.
    pub fn end(self) -> NaiveDate {
        match self {
            Self::Year(y) => NaiveDate::from_ymd_opt(y, 12, 31).expect("valid year"),
            Self::Month(..) => self.start() + Months::new(1) - chrono::Days::new(1),
            Self::Day(d) => d,
        }
    }

    /// `2011`, `2011-05` or `2011-05-17`.
    pub fn label(self) -> String {
        match self {
            Self::Year(y) => format!("{y}"),
            Self::Month(y, m) => format!("{y}-{m:02}"),
            Self::Day(d) => d.format("%Y-%m-%d").to_string(),
        }
    }

    /// Ordering key: by start date, then finer buckets later. Under one as-of date every event
    /// of an older bucket precedes every event of a newer one, and a partial month bucket
    /// (`2011-11`, before the day buckets of late November) starts before them.
    pub fn sort_key(self) -> (NaiveDate, u8) {
        let fineness = match self {
            Self::Year(_) => 0,
            Self::Month(..) => 1,
            Self::Day(_) => 2,
        };
        (self.start(), fineness)
    }
}

/// Buckets dates seen from one as-of date at one coarsening `level` (0: [`TimeBucket::of`];
/// 1 merges days into months; 2 months and days into years), with the thresholds computed once.
#[derive(Debug, Clone, Copy)]
pub struct Bucketer {
    month_ago: NaiveDate,
    year_ago: NaiveDate,
    level: u8,
}

impl Bucketer {
    pub fn new(as_of: NaiveDate, level: u8) -> Self {
        Self {
            month_ago: as_of - Months::new(1),
            year_ago: as_of - Months::new(12),
            level,
        }
    }

    pub fn bucket(&self, date: NaiveDate) -> TimeBucket {
        let b = if date >= self.month_ago {
            TimeBucket::Day(date)
        } else if date >= self.year_ago {
            TimeBucket::Month(date.year(), date.month())
        } else {
            TimeBucket::Year(date.year())
        };
        (0..self.level).fold(b, |b, _| b.coarser())
    }
}

impl PartialOrd for TimeBucket {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimeBucket {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn month_and_year_boundaries() {
        let as_of = d("2011-12-10");
        assert_eq!(
            TimeBucket::of(d("2011-12-09"), as_of),
            TimeBucket::Day(d("2011-12-09"))
        );
        assert_eq!(
            TimeBucket::of(d("2011-11-10"), as_of),
            TimeBucket::Day(d("2011-11-10"))
        );
        assert_eq!(
            TimeBucket::of(d("2011-11-09"), as_of),
            TimeBucket::Month(2011, 11)
        );
        assert_eq!(
            TimeBucket::of(d("2010-12-10"), as_of),
            TimeBucket::Month(2010, 12)
        );
        assert_eq!(
            TimeBucket::of(d("2010-12-09"), as_of),
            TimeBucket::Year(2010)
        );
        // month arithmetic clamps at the end of shorter months
        let as_of = d("2011-03-31");
        assert_eq!(
            TimeBucket::of(d("2011-02-28"), as_of),
            TimeBucket::Day(d("2011-02-28"))
        );
        assert_eq!(
            TimeBucket::of(d("2011-02-27"), as_of),
            TimeBucket::Month(2011, 2)
        );
        assert_eq!(TimeBucket::Month(2011, 2).label(), "2011-02");
        assert_eq!(TimeBucket::Month(2011, 2).end(), d("2011-02-28"));
        assert_eq!(TimeBucket::Year(2010).label(), "2010");
    }

    /// The naive reading of the rule: count whole calendar months back from `as_of`.
    fn naive(date: NaiveDate, as_of: NaiveDate) -> TimeBucket {
        let months_back = (1..=12)
            .find(|&m| date >= as_of.checked_sub_months(Months::new(m)).unwrap())
            .unwrap_or(13);
        match months_back {
            1 => TimeBucket::Day(date),
            2..=12 => TimeBucket::Month(date.year(), date.month()),
            _ => TimeBucket::Year(date.year()),
        }
    }

    fn date() -> impl Strategy<Value = NaiveDate> {
        (0i64..3000).prop_map(|days| d("2009-01-01") + chrono::Days::new(days as u64))
    }

    proptest! {
        #[test]
        fn matches_naive_rule(offset in 0u64..900, as_of in date()) {
            let event = as_of - chrono::Days::new(offset);
            prop_assert_eq!(TimeBucket::of(event, as_of), naive(event, as_of));
        }

        #[test]
        fn bucket_covers_its_date(offset in 0u64..900, as_of in date()) {
            let event = as_of - chrono::Days::new(offset);
            let b = TimeBucket::of(event, as_of);
            prop_assert!(b.start() <= event && event <= b.end());
        }

        #[test]
        fn older_events_never_get_finer_buckets(a in 0u64..900, b in 0u64..900, as_of in date()) {
            let (newer, older) = (a.min(b), a.max(b));
            let fine = |x: TimeBucket| x.sort_key().1;
            let bn = TimeBucket::of(as_of - chrono::Days::new(newer), as_of);
            let bo = TimeBucket::of(as_of - chrono::Days::new(older), as_of);
            prop_assert!(fine(bo) <= fine(bn));
            prop_assert!(bo <= bn);
        }
    }
}
