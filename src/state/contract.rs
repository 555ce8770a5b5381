//! The state's contract in types: whose record a call is about ([`Subject`]), what each write
//! carries (one struct a call, named fields, so that no call site can pass a run id where a key
//! belongs), and the per-row answers of an intent ([`IntentAnswer`]), which are values of the
//! row, never run-level errors. Must hold no behaviour beyond reading these.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::cognito::{Delivery, UserStatus};
use crate::plan::InviteKind;

/// A user the state keeps: its pool, and its key (the row's key: the email, or the username).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub pool: &'a str,
    pub key: &'a str,
}

impl<'a> Subject<'a> {
    pub fn new(pool: &'a str, key: &'a str) -> Subject<'a> {
        Subject { pool, key }
    }
}

/// The start of a run, for the runs table.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    pub run_id: &'a str,
    pub pool: &'a str,
    pub command: &'a str,
    /// The input file and its SHA-256, for a command that reads one.
    pub input: Option<(&'a Path, &'a str)>,
    pub at: DateTime<Utc>,
}

/// How a run ended, for its record.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    pub run_id: &'a str,
    pub at: DateTime<Utc>,
    pub exit_code: u8,
    /// The report's counts, as the report writes them.
    pub counts: &'a str,
}

/// A finished run, as the runs table keeps it: what [`crate::monitor::stall`] reads back to tell
/// how long a cohort has not moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastRun {
    pub started_at: DateTime<Utc>,
    pub exit_code: Option<u8>,
    /// The counts its end recorded ([`RunEnd::counts`]); none for a run that stopped early.
    pub counts: Option<String>,
}

/// What an invitation's message counts against: its sender (`email:cognito:ACCOUNT`, ...) and
/// the cap per rolling 24 hours the run counts by (`None`: no cap of the tool's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted<'a> {
    pub sender: &'a str,
    pub limit: Option<u32>,
}

/// An invitation about to be made, written ahead of its call.
#[derive(Debug, Clone, Copy)]
pub struct IntentRequest<'a> {
    pub kind: InviteKind,
    pub medium: Delivery,
    /// What its message counts against, when it sends one (the facade drops it for an
    /// invitation that sends none).
    pub counted: Option<Counted<'a>>,
    pub run_id: &'a str,
    pub at: DateTime<Utc>,
}

/// What became of an intent's write. Only the first two let the call go ahead; the others are
/// the row's answer (deferred), not the run's: nothing was written for them, and the run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentAnswer {
    /// On record under this id before the call.
    Written(i64),
    /// A read-only state (a dry run) records nothing.
    NotRecorded,
    /// A shared state's message budget has no share left (another machine took the last one).
    BudgetSpent(String),
    /// Another machine holds an open intent for the same provider, or the table stayed busy.
    Busy(String),
}

impl IntentAnswer {
    /// The intent's id, when it is on record.
    pub fn id(&self) -> Option<i64> {
        match self {
            IntentAnswer::Written(id) => Some(*id),
            _ => None,
        }
    }
}

/// An invitation that went out: the intent it settles and the user as it now is.
#[derive(Debug, Clone, Copy)]
pub struct Invited<'a> {
    /// `None` when no intent was written (a read-only state).
    pub intent: Option<i64>,
    pub username: &'a str,
    pub email: &'a str,
    pub run_id: &'a str,
    /// When it went out.
    pub at: DateTime<Utc>,
}

/// What Cognito said about a user.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub username: Option<&'a str>,
    pub email: Option<&'a str>,
    /// `None`: the user is not in the pool.
    pub status: Option<&'a UserStatus>,
    pub enabled: Option<bool>,
    pub run_id: &'a str,
    pub at: DateTime<Utc>,
}

/// What `run --update` is about to change for a user, written ahead of its calls.
#[derive(Debug, Clone, Copy)]
pub struct UpdateIntent<'a> {
    /// Attribute names, `+group`, `-group`; never values.
    pub changes: &'a [String],
    pub run_id: &'a str,
    pub at: DateTime<Utc>,
}

/// What `run --update` did to a user once its calls were made.
#[derive(Debug, Clone, Copy)]
pub struct Updated<'a> {
    /// What was written (attribute names, `+group`, `-group`; never values).
    pub written: &'a [String],
    /// The user's email as it now is, when the update changed it.
    pub email: Option<&'a str>,
    /// The groups it left (added again if a row lists them).
    pub removed_groups: &'a [String],
    /// For a pending user the job did not invite: its `UserLastModifiedDate` before the update.
    pub pending_since: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// What the tool does to take a provider off the pool, or to put one back. Written ahead as an
/// update intent whose one change is [`Offboard::change`], settled after, and then recorded on
/// the user with [`Offboarded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Offboard {
    /// AdminDisableUser: the provider left the list, or its cohort was revoked.
    Disable,
    /// AdminEnableUser: `enable`, or a provider back in the list with `--absent` re-enabling.
    Enable,
    /// AdminDeleteUser: `revoke --delete`, only for users who never signed in.
    Delete,
}

impl Offboard {
    pub fn as_str(self) -> &'static str {
        match self {
            Offboard::Disable => "disable",
            Offboard::Enable => "enable",
            Offboard::Delete => "delete",
        }
    }

    /// The update intent's one change: no attribute is named with a `~`.
    pub fn change(self) -> String {
        format!("~{}", self.as_str())
    }
}

/// A disable, enable or delete that went through (or was found done), for the user's record:
/// who did it, in which run.
#[derive(Debug, Clone, Copy)]
pub struct Offboarded<'a> {
    pub action: Offboard,
    pub run_id: &'a str,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_written_intent_has_an_id() {
        assert_eq!(IntentAnswer::Written(7).id(), Some(7));
        assert_eq!(IntentAnswer::NotRecorded.id(), None);
        assert_eq!(IntentAnswer::Busy("x".into()).id(), None);
        assert_eq!(IntentAnswer::BudgetSpent("x".into()).id(), None);
    }
}
