//! The library's error type. Every variant renders as one line that names the file, the field
//! and what was expected, so the binary can print it and exit with code 2.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An OS-level failure on a named file.
    #[error("{}: {err}", path.display())]
    Io {
        path: PathBuf,
        // Not a `#[source]`: the message already contains it, and error chains printed with
        // `{:#}` would repeat it.
        err: std::io::Error,
    },
    /// JSON that does not parse, with the position serde_json reports.
    #[error("{}:{line}:{column}: malformed JSON: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Input that parsed but is not what was expected; the message says where and what.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            err: source,
        }
    }

    pub fn json(path: impl AsRef<Path>, err: &serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its message; we report the position
        // separately, so strip it to keep the line short.
        let message = err.to_string();
        let message = match message.rfind(" at line ") {
            Some(pos) => message[..pos].to_string(),
            None => message,
        };
        Error::Json {
            path: path.as_ref().to_path_buf(),
            line: err.line(),
            column: err.column(),
            message,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}
