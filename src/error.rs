//! Run-level errors, how a command ended, and the one exhaustive mapping from both to process
//! exit codes (nextest's discipline: no other module names an exit code).
//!
//! Per-row problems must never come through here: they are values in the report. Only what
//! stops a run (or prevents it from starting) is an [`Error`].

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
    /// An offboarding step would have taken off more providers than its cap allows: none was
    /// (the rest of the run was done); the list is next to the report.
    pub const CAPPED: u8 = 5;
}

/// How a command that ran to its end finished, as cron sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every row settled: created, re-issued, skipped, deferred or reported for attention.
    Settled,
    /// Some rows were invalid, failed after retries, or could not be read.
    RowsFailed,
    /// Stopped by a signal; the report covers what was done.
    Interrupted,
    /// An offboarding step went past its cap and took no one off.
    Capped,
}

impl Ending {
    pub fn exit_code(self) -> u8 {
        exit_code(&Ok(self))
    }
}

/// The exit code of a command. One exhaustive match (with [`Error::exit_code`]), so a new kind
/// of ending or failure cannot be added without deciding what cron sees.
pub fn exit_code(result: &Result<Ending, Error>) -> u8 {
    match result {
        Ok(Ending::Settled) => exit::OK,
        Ok(Ending::RowsFailed) => exit::ROWS_FAILED,
        Ok(Ending::Interrupted) => exit::ABORTED,
        Ok(Ending::Capped) => exit::CAPPED,
        Err(e) => e.exit_code(),
    }
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The exit code a command this stops ends with.
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

    /// What kind of failure this is, in a word or two: what a monitor is told, where the
    /// message itself could name a file or a provider.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "configuration error",
            Error::Input(_) => "input error",
            Error::Credentials(_) => "AWS credentials error",
            Error::Cognito(_) => "Cognito error",
            Error::Io { .. } => "file error",
            Error::State(_) => "state error",
            Error::Locked(_) => "another run holds the state",
            Error::Interrupted => "interrupted",
        }
    }
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_and_failure_has_its_documented_code() {
        let code = |r: Result<Ending, Error>| exit_code(&r);
        assert_eq!(code(Ok(Ending::Settled)), 0);
        assert_eq!(code(Ok(Ending::RowsFailed)), 3);
        assert_eq!(code(Ok(Ending::Interrupted)), 1);
        assert_eq!(code(Ok(Ending::Capped)), 5);
        assert_eq!(code(Err(Error::Locked("x".into()))), 4);
        assert_eq!(code(Err(Error::Config("x".into()))), 1);
        assert_eq!(code(Err(Error::Interrupted)), 1);
        assert_eq!(code(Err(Error::Cognito("x".into()))), 1);
        assert_eq!(Ending::RowsFailed.exit_code(), exit::ROWS_FAILED);
    }
}
