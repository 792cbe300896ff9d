//! Who bought what, on each side of a time split: the training input of the three-tower
//! model and the baselines, and the ground truth of the evaluation.

use std::collections::HashSet;

use recgpt_data::{Behavior, BehaviorKind, DataError, ItemIx, Store, TimeWindow, Timestamp};

/// One user's distinct items on one side of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct UserItems {
    pub user: String,
    /// Distinct purchased items, most recently bought first.
    pub bought: Vec<ItemIx>,
    /// Distinct returned items, most recently returned first.
    pub returned: Vec<ItemIx>,
}

impl UserItems {
    /// The distinct items of time-ordered (oldest first) behaviours.
    pub fn from_events(user: &str, events: &[&Behavior]) -> Self {
        let items = |kind: BehaviorKind| {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for e in events.iter().rev().filter(|e| e.kind == kind) {
                if let Some(item) = e.item {
                    if seen.insert(item) {
                        out.push(item);
                    }
                }
            }
            out
        };
        Self {
            user: user.to_string(),
            bought: items(BehaviorKind::Purchase),
            returned: items(BehaviorKind::Return),
        }
    }
}

/// Users with at least one purchase on one side of a split, in user-id order.
#[derive(Debug, Clone, Default)]
pub struct Interactions {
    pub users: Vec<UserItems>,
}

impl Interactions {
    /// Splits every user's history at `at`: events strictly before it on the left, the rest
    /// on the right (everything on the left when `at` is `None`). One sequential read.
    pub fn split(store: &Store, at: Option<Timestamp>) -> Result<(Self, Self), DataError> {
        Self::split_until(store, at, None)
    }

    /// [`Self::split`] with the right side ending before `end` (no end when `None`): the
    /// purchases of a horizon after the split.
    pub fn split_until(
        store: &Store,
        at: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<(Self, Self), DataError> {
        let all = TimeWindow {
            until: None,
            as_of: store.manifest().last_event.date(),
        };
        let (mut before, mut after) = (Self::default(), Self::default());
        store.for_each_history(&all, |history| -> Result<(), DataError> {
            let (left, right): (Vec<_>, Vec<_>) = history
                .events
                .iter()
                .filter(|e| end.is_none_or(|end| e.at < end))
                .partition(|e| at.is_none_or(|at| e.at < at));
            for (side, events) in [(&mut before, left), (&mut after, right)] {
                let items = UserItems::from_events(&history.user, &events);
                if !items.bought.is_empty() {
                    side.users.push(items);
                }
            }
            Ok(())
        })?;
        Ok((before, after))
    }

    /// How many users bought each item.
    pub fn item_counts(&self, items: usize) -> Vec<u32> {
        let mut counts = vec![0u32; items];
        for u in &self.users {
            for &i in &u.bought {
                counts[i as usize] += 1;
            }
        }
        counts
    }

    /// The user's position, by id.
    pub fn position(&self, user: &str) -> Option<usize> {
        self.users
            .binary_search_by(|u| u.user.as_str().cmp(user))
            .ok()
    }

    /// (user position, item) for every distinct purchase.
    pub fn pairs(&self) -> Vec<(u32, ItemIx)> {
        self.users
            .iter()
            .enumerate()
            .flat_map(|(u, items)| items.bought.iter().map(move |&i| (u as u32, i)))
            .collect()
    }
}
