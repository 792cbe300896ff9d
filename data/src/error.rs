use std::path::PathBuf;

/// Errors of the data layer.
///
/// Row-level problems in an input file are *not* errors: they are quarantined with a reason
/// (see [`crate::import::Reason`]) and the import goes on. These variants stop an operation.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened, read or written. Retryable once the file system is fixed.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's structure is wrong (no header, a required column missing, not a
    /// spreadsheet). The caller's fault; nothing was imported.
    #[error("{}:{line}: {message}", path.display())]
    Format {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A command-line or config value could not be parsed. The caller's fault.
    #[error("invalid {field} `{value}`: {message}")]
    Value {
        field: &'static str,
        value: String,
        message: String,
    },
    /// The embedded database failed. Retryable only if the cause was transient (disk full).
    #[error("event store {}: {message}", path.display())]
    Store { path: PathBuf, message: String },
    /// No event store exists yet under the data home. The caller must import first.
    #[error("no event store at {} (run `recgpt import ...` first)", path.display())]
    NoStore { path: PathBuf },
    /// The user has no events in the store. The caller's fault.
    #[error("unknown user `{user}`")]
    UnknownUser { user: String },
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn store(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Self::Store {
            path: path.into(),
            message: err.to_string(),
        }
    }
}
