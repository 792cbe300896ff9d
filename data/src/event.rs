use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The behaviour kinds of the RecGPT report (§2, user behaviour sequences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BehaviorKind {
    View,
    Click,
    Cart,
    Favorite,
    Purchase,
    Return,
    Search,
    ReviewView,
    Rating,
}

impl BehaviorKind {
    /// Every kind, in declaration order.
    pub const ALL: [BehaviorKind; 9] = [
        Self::View,
        Self::Click,
        Self::Cart,
        Self::Favorite,
        Self::Purchase,
        Self::Return,
        Self::Search,
        Self::ReviewView,
        Self::Rating,
    ];

    /// The name used in files, JSON and narratives.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Click => "click",
            Self::Cart => "cart",
            Self::Favorite => "favorite",
            Self::Purchase => "purchase",
            Self::Return => "return",
            Self::Search => "search",
            Self::ReviewView => "review_view",
            Self::Rating => "rating",
        }
    }

    /// Parses the name written by [`BehaviorKind::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// RecGPT keeps "reliable" behaviours when compressing a history and drops plain clicks
    /// and views first (report §3.1).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Self::View | Self::Click)
    }
}

impl std::fmt::Display for BehaviorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One user behaviour, as read from a source file.
///
/// `item` is absent only for searches (which carry `query` instead). `value` is the money
/// involved (quantity × unit price for purchases and returns), 0 when unknown; for a rating it
/// is the rating itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub user: String,
    pub item: Option<String>,
    pub kind: BehaviorKind,
    pub at: Timestamp,
    pub quantity: f64,
    pub value: f64,
    pub query: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in BehaviorKind::ALL {
            assert_eq!(BehaviorKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(BehaviorKind::parse("buy"), None);
    }
}
