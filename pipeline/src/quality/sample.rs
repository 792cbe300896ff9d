//! The users of a split and a seeded sample of them.

use chrono::NaiveDate;
use recgpt_data::{Store, Timestamp};
use recgpt_retrieval::interactions::{Interactions, UserItems};

use super::QualityError;

/// The users of a split: purchases before it, and in the horizon after it.
#[derive(Debug)]
pub struct SplitUsers {
    pub split: NaiveDate,
    pub horizon_days: u32,
    pub before: Interactions,
    pub after: Interactions,
}

impl SplitUsers {
    pub fn read(store: &Store, split: NaiveDate, horizon_days: u32) -> Result<Self, QualityError> {
        let end = split + chrono::Days::new(horizon_days.into());
        let (before, after) = Interactions::split_until(
            store,
            Some(Timestamp::from_date(split)),
            Some(Timestamp::from_date(end)),
        )?;
        let users = Self {
            split,
            horizon_days,
            before,
            after,
        };
        if users.eligible().is_empty() {
            let m = store.manifest();
            return Err(QualityError::SplitOutside {
                split,
                first: m.first_event.date(),
                last: m.last_event.date(),
            });
        }
        Ok(users)
    }

    /// Users who bought on both sides, in user-id order.
    pub fn eligible(&self) -> Vec<&str> {
        self.after
            .users
            .iter()
            .filter(|u| self.before.position(&u.user).is_some())
            .map(|u| u.user.as_str())
            .collect()
    }

    /// `n` eligible users, chosen by a seeded hash of their ids (a larger `n` with the same
    /// seed keeps the smaller sample's users), in sample order.
    pub fn sample(&self, n: usize, seed: u64) -> Result<Vec<String>, QualityError> {
        let mut users = self.eligible();
        if n > users.len() {
            return Err(QualityError::SampleTooLarge {
                asked: n,
                eligible: users.len(),
                split: self.split,
                horizon: self.horizon_days,
            });
        }
        users.sort_by_key(|u| (crate::hash::seeded(seed, u), *u));
        Ok(users.into_iter().take(n).map(str::to_string).collect())
    }

    pub fn sides(&self, user: &str) -> Option<(&UserItems, &UserItems)> {
        let b = self.before.position(user)?;
        let a = self.after.position(user)?;
        Some((&self.before.users[b], &self.after.users[a]))
    }
}
