//! The reports' vocabulary: outcomes, actions, deferrals, a row's report and a run's, and the
//! pure fold of rows into a summary and an ending. Imported by everyone; must import none of
//! the writers beside it (they import this). Never holds a password: nothing here has a field
//! that could carry one. Must not decide what happens to a row; it only records it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cognito::{Suppressed, UserStatus};
use crate::error::Ending;

/// What finally happened to a row.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumCount,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Reissued,
    /// `run --update` changed an existing user's attributes or groups.
    Updated,
    Skipped,
    Deferred,
    Attention,
    Invalid,
    Failed,
    /// Taken off the pool: disabled (absent from its list, or revoked).
    Disabled,
    /// Enabled again (`enable`, or back in the list with `--reenable`).
    Enabled,
    /// Deleted (`revoke --delete`, a user who never signed in).
    Deleted,
}

impl Outcome {
    /// Every variant, in declaration order (derived: a new one cannot be left out).
    pub const ALL: &'static [Outcome] = <Outcome as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Reissued => "reissued",
            Outcome::Updated => "updated",
            Outcome::Skipped => "skipped",
            Outcome::Deferred => "deferred",
            Outcome::Attention => "attention",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
            Outcome::Disabled => "disabled",
            Outcome::Enabled => "enabled",
            Outcome::Deleted => "deleted",
        }
    }

    /// Whether a row that someone asked for by name (a help-desk ID) got what was asked: a write
    /// was made. `skipped` (nothing was done, such as a message sent minutes ago) is not.
    pub fn got_what_was_asked(self) -> bool {
        match self {
            Outcome::Created
            | Outcome::Reissued
            | Outcome::Updated
            | Outcome::Disabled
            | Outcome::Enabled
            | Outcome::Deleted => true,
            Outcome::Skipped
            | Outcome::Deferred
            | Outcome::Attention
            | Outcome::Invalid
            | Outcome::Failed => false,
        }
    }
}

/// What was decided for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    Create,
    Reissue,
    Skip,
    Attention,
    /// The help desk's `reset` of a confirmed provider's password.
    Reset,
    /// Offboarding: AdminDisableUser, AdminEnableUser, AdminDeleteUser.
    Disable,
    Enable,
    Delete,
    /// Nothing was decided: the row was invalid, not started, or its user could not be read.
    None,
}

impl Act {
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Create => "create",
            Act::Reissue => "reissue",
            Act::Skip => "skip",
            Act::Attention => "attention",
            Act::Reset => "reset",
            Act::Disable => "disable",
            Act::Enable => "enable",
            Act::Delete => "delete",
            Act::None => "none",
        }
    }
}

/// Why a row was deferred to a later run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, strum::VariantArray)]
pub enum Deferral {
    /// The run's share of the email budget is spent.
    Budget,
    /// Cognito answered LimitExceededException: the account's daily email limit.
    MessageLimit,
    /// The run was stopped before this row started.
    NotStarted,
    /// The run was stopped while this row waited to try a call again (after a throttle or a
    /// passing fault); what it had written stays, and a later run finishes it.
    Stopped,
    /// The shared state is busy with this provider: another machine is inviting them right
    /// now, or DynamoDB kept throttling the intent.
    Busy,
}

impl Deferral {
    /// Every variant, in declaration order (derived: a new one cannot be left out).
    pub const ALL: &'static [Deferral] = <Deferral as strum::VariantArray>::VARIANTS;

    /// The cause as the metrics and the state's counts name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Deferral::Budget => "budget",
            Deferral::MessageLimit => "message_limit",
            Deferral::NotStarted => "not_started",
            Deferral::Stopped => "stopped",
            Deferral::Busy => "busy",
        }
    }

    /// Whether the deferral means the message budget is spent (the report then says when it
    /// frees up).
    pub fn is_budget(self) -> bool {
        match self {
            Deferral::Budget | Deferral::MessageLimit => true,
            Deferral::NotStarted | Deferral::Stopped | Deferral::Busy => false,
        }
    }
}

/// Why a provider cannot move on without a person, where it is one of the questions the help
/// desk will be asked: the page and `status` list these on their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stuck {
    /// SES drops every message to the provider's address (the account's suppression list):
    /// no invitation can reach them.
    Suppressed(Suppressed),
    /// Re-issued `--max-reissues` times without signing in: not invited again.
    ReissueLimit { reissues: u32 },
}

impl Stuck {
    /// Whether the address is suppressed.
    pub fn suppressed(&self) -> Option<&Suppressed> {
        match self {
            Stuck::Suppressed(s) => Some(s),
            Stuck::ReissueLimit { .. } => None,
        }
    }

    /// Whether the provider was re-issued to the limit without signing in.
    pub fn at_reissue_limit(&self) -> bool {
        match self {
            Stuck::ReissueLimit { .. } => true,
            Stuck::Suppressed(_) => false,
        }
    }
}

/// One row of the report (read back from `run`'s rows file for its page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowReport {
    /// Line of the input file (header = 1).
    pub row: u64,
    pub key: String,
    pub username: Option<String>,
    pub email: Option<String>,
    /// The provider's name as the row gives it (`name`, else `family_name given_name`), so a
    /// person can find them; None when the row has neither.
    #[serde(default)]
    pub name: Option<String>,
    pub action: Act,
    pub outcome: Outcome,
    pub reason: String,
    /// What the run changed (or, in a dry run, would change) in an existing user: attribute
    /// names, `+group`, `-group`. Never values: the report travels further than the pool.
    pub changed: Vec<String>,
    pub status_before: Option<UserStatus>,
    pub status_after: Option<UserStatus>,
    pub temp_password_expires_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Why a deferred row was deferred (the reason says it in words).
    #[serde(skip)]
    pub deferral: Option<Deferral>,
    /// Why a provider needing attention cannot move on alone, where the help desk will be asked
    /// (the reason says it in words); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<Stuck>,
}

impl RowReport {
    /// A row before anything is known about it.
    pub fn new(row: u64, key: String, email: Option<String>, outcome: Outcome) -> Self {
        RowReport {
            row,
            key,
            username: None,
            email,
            name: None,
            action: Act::None,
            outcome,
            reason: String::new(),
            changed: Vec::new(),
            status_before: None,
            status_after: None,
            temp_password_expires_at: None,
            attempts: 0,
            error_code: None,
            error_message: None,
            deferral: None,
            stuck: None,
        }
    }

    /// A row deferred to a later run, for `why`; `reason` says it in words.
    pub fn defer(&mut self, why: Deferral, reason: String) {
        self.outcome = Outcome::Deferred;
        self.deferral = Some(why);
        self.reason = reason;
    }
}

/// A finished (or interrupted) run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub user_pool_id: String,
    pub dry_run: bool,
    /// `run --update`'s mode ("attributes", "attributes,groups,clear-empty"); absent when the
    /// run only creates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    pub interrupted: bool,
    pub summary: BTreeMap<Outcome, u64>,
    /// Calls that reached AWS, per quota category (a DynamoDB state's under `StateTable`), and
    /// throttles seen.
    pub calls: BTreeMap<String, u64>,
    pub throttles: BTreeMap<String, u64>,
    /// With Cognito's own email sender: when the next invitation can go out, if the budget is spent.
    pub email_budget_frees_at: Option<DateTime<Utc>>,
    /// Who sends the messages of this run (Cognito's own sender, SES, SNS, the pool's custom
    /// sender Lambda, or nobody); absent where the run sends none and had no pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_by: Option<String>,
    pub rows: Vec<RowReport>,
    /// What `--on-confirmed` did, provider by provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handed_over: Vec<HandOver>,
    /// What `--on-expiring` did, provider by provider (`handed_over`: the reminder ran and is
    /// recorded for this invitation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reminded: Vec<HandOver>,
    /// How long the cohort has not moved ([`crate::monitor::stall`]); absent for a dry run and
    /// the help desk's writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled: Option<Stall>,
}

/// How long the cohort has not moved, as of this run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stall {
    /// Since when nothing could be sent because of the message budget: the start of the
    /// unbroken series of `run`s, up to this one, whose invitations waited on the budget (the
    /// tool's share, or Cognito's daily limit) and that sent none. None: not stalled.
    pub budget_blocked_since: Option<DateTime<Utc>>,
    /// How long that is, in seconds, as of this run's end (0: not stalled).
    pub budget_blocked_seconds: f64,
    /// Providers still waiting on an invitation that has expired.
    pub expired: u64,
    /// The oldest of those expiries.
    pub oldest_expiry: Option<DateTime<Utc>>,
    /// The `run`s that started after the oldest expiry (this one included): how many runs the
    /// longest-waiting of them has been left pending past its expiry.
    pub expired_for_runs: u64,
}

impl Stall {
    /// What a summary says of it: nothing when the cohort moves.
    pub fn words(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(since) = self.budget_blocked_since {
            let hours = (now - since).num_minutes() as f64 / 60.0;
            out.push(format!(
                "nothing sent for {hours:.1} h because of the message budget"
            ));
        }
        if self.expired > 0 {
            out.push(format!(
                "{} pending past expiry, the longest for {} run(s)",
                self.expired, self.expired_for_runs
            ));
        }
        out
    }
}

/// How a help-desk write ended, where each row is an ID someone asked for: settled only when
/// every ID got what was asked ([`Outcome::got_what_was_asked`]); one refused (`attention`),
/// skipped, deferred, invalid or failed makes it `RowsFailed`, which cron sees as exit 3.
pub fn ids_ending(report: &Report) -> Ending {
    match ending(&report.summary, report.interrupted) {
        Ending::Settled if report.rows.iter().any(|r| !r.outcome.got_what_was_asked()) => {
            Ending::RowsFailed
        }
        ending => ending,
    }
}

/// Failed rows named on stderr at the end, at most.
const FAILED_SHOWN: usize = 50;

/// What the finished rows add up to.
#[derive(Debug)]
pub struct Tally {
    pub summary: BTreeMap<Outcome, u64>,
    pub rows: u64,
    /// Some row was deferred by the message budget (the report then says when it frees up).
    pub budget_deferred: bool,
    /// Deferred rows by cause.
    pub deferred: BTreeMap<Deferral, u64>,
    /// Rows left waiting on an invitation that has expired, and the oldest such expiry: how a
    /// cohort that no longer moves shows (see [`crate::monitor::stall`]).
    pub expired: u64,
    pub oldest_expiry: Option<DateTime<Utc>>,
    /// When the tally began: an expiry before it is past.
    now: DateTime<Utc>,
    /// The first rows that failed or were invalid: line, key, outcome, reason.
    pub failed: Vec<Named>,
    /// Providers seen confirmed (key, username, email), for `--on-confirmed`; only kept when
    /// asked for.
    pub confirmed: Option<Vec<Seen>>,
    /// With `--on-expiring`: until when an expiry is due a reminder, and the pending providers
    /// whose invitation expires by then (and has not yet).
    pub expiring: Option<(DateTime<Utc>, Vec<Pending>)>,
}

/// A pending provider as a report row saw it, for `--on-expiring`: key, username, email, name,
/// expiry.
pub type Pending = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

/// A row named on stderr at the end: line, key, outcome, reason.
pub type Named = (u64, String, Outcome, String);

/// A provider seen confirmed: key, username, email.
pub type Seen = (String, Option<String>, Option<String>);

impl Tally {
    pub fn new(keep_confirmed: bool) -> Self {
        Tally {
            summary: Outcome::ALL.iter().map(|o| (*o, 0)).collect(),
            rows: 0,
            budget_deferred: false,
            deferred: Deferral::ALL.iter().map(|d| (*d, 0)).collect(),
            expired: 0,
            oldest_expiry: None,
            now: Utc::now(),
            failed: Vec::new(),
            confirmed: keep_confirmed.then(Vec::new),
            expiring: None,
        }
    }

    /// Invitations that went out in this run (each a message, unless sent to a password file).
    pub fn sent(&self) -> u64 {
        [Outcome::Created, Outcome::Reissued]
            .iter()
            .map(|o| self.summary.get(o).copied().unwrap_or(0))
            .sum()
    }

    pub fn add(&mut self, r: &RowReport) {
        self.rows += 1;
        *self.summary.entry(r.outcome).or_default() += 1;
        self.budget_deferred |= r.deferral.is_some_and(|d| d.is_budget());
        if let Some(d) = r.deferral {
            *self.deferred.entry(d).or_default() += 1;
        }
        if let (Some(&UserStatus::ForceChangePassword), Some(at)) = (
            r.status_after.as_ref().or(r.status_before.as_ref()),
            r.temp_password_expires_at,
        ) && at <= self.now
        {
            self.expired += 1;
            self.oldest_expiry = Some(self.oldest_expiry.map_or(at, |o| o.min(at)));
        }
        if matches!(r.outcome, Outcome::Failed | Outcome::Invalid)
            && self.failed.len() < FAILED_SHOWN
        {
            self.failed
                .push((r.row, r.key.clone(), r.outcome, r.reason.clone()));
        }
        if let (Some((until, expiring)), Some(&UserStatus::ForceChangePassword), Some(at)) = (
            &mut self.expiring,
            r.status_after.as_ref(),
            r.temp_password_expires_at,
        ) && at > self.now
            && at <= *until
        {
            expiring.push((
                r.key.clone(),
                r.username.clone(),
                r.email.clone(),
                r.name.clone(),
                at,
            ));
        }
        if let Some(confirmed) = &mut self.confirmed
            && r.status_before == Some(UserStatus::Confirmed)
        {
            confirmed.push((r.key.clone(), r.username.clone(), r.email.clone()));
        }
    }
}

/// What became of one hand-over, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandOver {
    pub key: String,
    /// The command's exit status (`None`: killed, or it could not start).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Marked handed over (exit 0): the command is not run for this provider again.
    pub handed_over: bool,
    pub error: Option<String>,
}

#[cfg(test)]
impl Report {
    /// A run of `run` in pool `eu-west-1_x` with no rows, for tests.
    pub fn empty(run_id: &str, started_at: DateTime<Utc>, finished_at: DateTime<Utc>) -> Report {
        Report {
            run_id: run_id.into(),
            command: "run".into(),
            started_at,
            finished_at,
            user_pool_id: "eu-west-1_x".into(),
            dry_run: false,
            update: None,
            interrupted: false,
            summary: BTreeMap::new(),
            calls: BTreeMap::new(),
            throttles: BTreeMap::new(),
            email_budget_frees_at: None,
            sent_by: None,
            rows: Vec::new(),
            handed_over: Vec::new(),
            reminded: Vec::new(),
            stalled: None,
        }
    }
}

/// Counts per outcome, every outcome present (zero when none).
pub fn summarize(rows: &[RowReport]) -> BTreeMap<Outcome, u64> {
    let mut out: BTreeMap<Outcome, u64> = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
    for r in rows {
        *out.entry(r.outcome).or_default() += 1;
    }
    out
}

/// How a run ended: interrupted, or with some row invalid or failed, or settled.
pub fn ending(summary: &BTreeMap<Outcome, u64>, interrupted: bool) -> Ending {
    let count = |o: Outcome| summary.get(&o).copied().unwrap_or(0);
    if interrupted {
        Ending::Interrupted
    } else if count(Outcome::Invalid) + count(Outcome::Failed) > 0 {
        Ending::RowsFailed
    } else {
        Ending::Settled
    }
}

#[cfg(test)]
impl RowReport {
    /// A created-looking row `n` with `outcome`, for the writers' tests.
    pub fn sample(n: u64, outcome: Outcome) -> RowReport {
        RowReport {
            row: n,
            key: format!("p{n}@example.com"),
            username: Some(format!("p{n}@example.com")),
            email: Some(format!("p{n}@example.com")),
            name: Some(format!("山田 {n}")),
            action: Act::Create,
            outcome,
            reason: "created".into(),
            changed: Vec::new(),
            status_before: None,
            status_after: Some(UserStatus::ForceChangePassword),
            temp_password_expires_at: None,
            attempts: 1,
            error_code: None,
            error_message: None,
            deferral: None,
            stuck: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Ending;

    fn row(n: u64, outcome: Outcome) -> RowReport {
        RowReport::sample(n, outcome)
    }

    #[test]
    fn summary_counts_every_outcome() {
        let rows = [
            row(2, Outcome::Created),
            row(3, Outcome::Created),
            row(4, Outcome::Invalid),
        ];
        let s = summarize(&rows);
        assert_eq!(s[&Outcome::Created], 2);
        assert_eq!(s[&Outcome::Invalid], 1);
        assert_eq!(s[&Outcome::Failed], 0);
        assert_eq!(s.len(), Outcome::ALL.len());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["created"], 2, "keyed by the outcome's name: {json}");
    }

    #[test]
    fn how_a_run_ended() {
        let end = |rows: &[RowReport], interrupted| ending(&summarize(rows), interrupted);
        assert_eq!(
            end(
                &[row(2, Outcome::Created), row(3, Outcome::Deferred)],
                false
            ),
            Ending::Settled
        );
        assert_eq!(end(&[row(2, Outcome::Attention)], false), Ending::Settled);
        assert_eq!(
            end(&[row(2, Outcome::Created), row(3, Outcome::Failed)], false),
            Ending::RowsFailed
        );
        assert_eq!(end(&[row(2, Outcome::Invalid)], false), Ending::RowsFailed);
        assert_eq!(end(&[row(2, Outcome::Created)], true), Ending::Interrupted);
    }
}
