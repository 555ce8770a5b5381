//! Run-level errors and the one mapping from outcomes to process exit codes.
//!
//! Per-row problems never come through here: they are values in the report. Only what stops a
//! run (or prevents it from starting) is an [`Error`].

use std::path::PathBuf;

use crate::input::InputError;

/// Exit codes, the contract cron and wrapper scripts rely on. Documented in the README.
pub mod exit {
    /// Every row settled: created, re-issued, skipped, deferred or reported for attention.
    pub const OK: u8 = 0;
    /// The run could not start or was aborted: configuration, credentials, pool not found,
    /// unreadable input, interrupted.
    pub const ABORTED: u8 = 1;
    /// The command line was wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// Some rows were invalid or failed after retries; the others were processed.
    pub const ROWS_FAILED: u8 = 3;
    /// Another run holds the state file's lock; nothing was done.
    pub const LOCKED: u8 = 4;
}

/// Something that stops the whole run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("AWS credentials: {0}")]
    Credentials(String),
    #[error("Cognito: {0}")]
    Cognito(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database: {0}")]
    State(String),
    #[error("{0}")]
    Locked(String),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// The exit code for a run that ended in this error. One exhaustive match, so a new kind of
    /// failure cannot be added without deciding what cron sees.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Locked(_) => exit::LOCKED,
            Error::Config(_)
            | Error::Input(_)
            | Error::Credentials(_)
            | Error::Cognito(_)
            | Error::Io { .. }
            | Error::State(_)
            | Error::Interrupted => exit::ABORTED,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_has_its_own_code_and_everything_else_aborts() {
        assert_eq!(Error::Locked("x".into()).exit_code(), 4);
        assert_eq!(Error::Config("x".into()).exit_code(), 1);
        assert_eq!(Error::Interrupted.exit_code(), 1);
        assert_eq!(Error::Cognito("x".into()).exit_code(), 1);
    }
}
