//! Typed errors. Each variant maps to a documented process exit code (see README).
use std::path::PathBuf;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for internal or I/O failures not caused by the user's input.
pub const EXIT_INTERNAL: i32 = 1;
/// Exit code for bad usage, a bad recipe or bad input data.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for a run that failed (diverged, out of memory).
pub const EXIT_RUN_FAILED: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum GraftError {
    /// Bad input data: the message names the file or folder and how to fix it.
    #[error("bad data: {0}")]
    Data(String),
    /// A recipe that does not validate: names the field and what is allowed.
    #[error("bad recipe: field `{field}`: {msg}")]
    Recipe { field: String, msg: String },
    /// Bad command-line usage.
    #[error("bad usage: {0}")]
    Usage(String),
    /// A model file or card that is missing, misshapen or does not match.
    #[error("bad model: {0}")]
    Model(String),
    /// A run whose loss became NaN or infinite.
    #[error("run diverged: {0}")]
    Diverged(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Other(String),
}

impl GraftError {
    pub fn exit_code(&self) -> i32 {
        match self {
            GraftError::Data(_) | GraftError::Recipe { .. } | GraftError::Usage(_) | GraftError::Model(_) => EXIT_BAD_INPUT,
            GraftError::Diverged(_) => EXIT_RUN_FAILED,
            _ => EXIT_INTERNAL,
        }
    }
    pub fn recipe(field: impl Into<String>, msg: impl Into<String>) -> Self {
        GraftError::Recipe { field: field.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GraftError::Io { path: path.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, GraftError>;
