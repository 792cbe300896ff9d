//! The stage order, written down once (progress bars, logs and reports use it).

use serde::Serialize;

/// A pipeline stage, in data-flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Compress,
    Interests,
    Tags,
    Retrieve,
    Explain,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Self::Compress,
        Self::Interests,
        Self::Tags,
        Self::Retrieve,
        Self::Explain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compress => "compress",
            Self::Interests => "interests",
            Self::Tags => "tags",
            Self::Retrieve => "retrieve",
            Self::Explain => "explain",
        }
    }
}
