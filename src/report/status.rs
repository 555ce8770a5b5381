//! The status report's vocabulary: where a provider stands, a provider's row, the funnel, the
//! summary, and how statuses were read. Imported by `standing` (which decides the standing) and
//! by the writers; must import none of them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::HandOver;

/// How `status` reads the users' statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refresh {
    /// One AdminGetUser per provider (UserRead).
    PerUser,
    /// ListUsers over the whole pool (UserList, 60 a page).
    Scan,
    /// ListUsers filtered to `FORCE_CHANGE_PASSWORD`, then AdminGetUser for each provider not
    /// in that list (the ones whose status changed, and those not pending before).
    PendingScan,
}

/// Where a provider stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Confirmed, and not in any earlier status report: send the API credentials.
    NewlyConfirmed,
    Confirmed,
    /// Invited; the temporary password is still valid.
    Pending,
    /// Invited; the temporary password has expired or is lost (`run` re-issues it, unless
    /// `--reissue never`).
    Expired,
    /// Disabled, deleted from the pool, past `--max-reissues`, another email, or a status the
    /// tool does not manage.
    Attention,
    /// Disabled by this tool: it left its list (`run --absent disable`), or its cohort was
    /// revoked. Not a problem to fix; `enable` brings it back.
    Offboarded,
    /// In the CSV but not in the pool, and never invited (`run` will create it).
    NotInvited,
    /// Its status could not be read.
    Unknown,
}

impl Standing {
    /// Every variant, in declaration order (derived: a new one cannot be left out).
    pub const ALL: &'static [Standing] = <Standing as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        match self {
            Standing::NewlyConfirmed => "newly_confirmed",
            Standing::Confirmed => "confirmed",
            Standing::Pending => "pending",
            Standing::Expired => "expired",
            Standing::Attention => "attention",
            Standing::Offboarded => "offboarded",
            Standing::NotInvited => "not_invited",
            Standing::Unknown => "unknown",
        }
    }
}

/// One provider in the status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRow {
    pub key: String,
    pub username: Option<String>,
    pub email: Option<String>,
    /// The name Cognito holds (`name`, else `family_name given_name`).
    pub name: Option<String>,
    /// Cognito's status now (`DELETED` when the user is gone).
    pub status: Option<String>,
    pub standing: Standing,
    pub reason: String,
    pub first_invited_at: Option<DateTime<Utc>>,
    pub last_invited_at: Option<DateTime<Utc>>,
    pub reissues: u32,
    pub temp_password_expires_at: Option<DateTime<Utc>>,
    /// When the tool first saw the user CONFIRMED.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Why the provider cannot move on without a person, where the help desk will be asked
    /// (a suppressed address, re-issued to the limit); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<super::model::Stuck>,
}

impl StatusRow {
    /// A pending invitation that expires within a day of `now`: the help desk's next calls.
    pub fn expires_soon(&self, now: DateTime<Utc>) -> bool {
        self.standing == Standing::Pending
            && self
                .temp_password_expires_at
                .is_some_and(|at| at > now && at - now <= chrono::Duration::days(1))
    }
}

/// The onboarding funnel over the providers the tool invited and has not offboarded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    pub invited: u64,
    pub confirmed: u64,
    pub pending: u64,
    pub expired: u64,
    pub attention: u64,
    /// Median hours from the first invitation to when the tool first saw the user confirmed
    /// (an upper bound: it sees confirmations only when it looks).
    pub median_hours_to_confirm: Option<f64>,
}

pub fn funnel(rows: &[StatusRow]) -> Funnel {
    // The offboarded left their list: they are no longer part of its onboarding.
    let invited: Vec<&StatusRow> = rows
        .iter()
        .filter(|r| r.first_invited_at.is_some() && r.standing != Standing::Offboarded)
        .collect();
    let count =
        |f: &dyn Fn(Standing) -> bool| invited.iter().filter(|r| f(r.standing)).count() as u64;
    let mut hours: Vec<f64> = invited
        .iter()
        .filter_map(|r| match (r.first_invited_at, r.confirmed_at) {
            (Some(i), Some(c)) if c >= i => Some((c - i).num_seconds() as f64 / 3600.0),
            _ => None,
        })
        .collect();
    hours.sort_by(|a, b| a.total_cmp(b));
    let median = match hours.len() {
        0 => None,
        n if n % 2 == 1 => Some(hours[n / 2]),
        n => Some((hours[n / 2 - 1] + hours[n / 2]) / 2.0),
    };
    Funnel {
        invited: invited.len() as u64,
        confirmed: count(&|s| matches!(s, Standing::Confirmed | Standing::NewlyConfirmed)),
        pending: count(&|s| s == Standing::Pending),
        expired: count(&|s| s == Standing::Expired),
        attention: count(&|s| s == Standing::Attention),
        median_hours_to_confirm: median.map(|h| (h * 10.0).round() / 10.0),
    }
}

/// The `status` report.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub run_id: String,
    pub command: &'static str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub user_pool_id: String,
    pub previous_status_at: Option<DateTime<Utc>>,
    pub refresh: Refresh,
    /// After a pending-only listing: how the providers it did not find were read (one
    /// `AdminGetUser` each, or a full listing, whichever cost less for their number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest: Option<Refresh>,
    /// Estimated quota-seconds of each strategy, and what the chosen one spent.
    pub estimated_quota_seconds: BTreeMap<&'static str, f64>,
    pub quota_seconds: f64,
    pub calls: BTreeMap<String, u64>,
    pub summary: BTreeMap<Standing, u64>,
    pub funnel: Funnel,
    pub newly_confirmed: Vec<StatusRow>,
    pub rows: Vec<StatusRow>,
    /// What `--on-confirmed` did, provider by provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handed_over: Vec<HandOver>,
    /// What `--on-expiring` did, provider by provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reminded: Vec<HandOver>,
    /// How long the cohort has not moved ([`crate::monitor::stall`]).
    pub stalled: Option<super::model::Stall>,
    /// The providers whose address is on the SES account's suppression list (their keys): no
    /// invitation reaches them, and `run` re-issues none. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<String>,
    /// The providers re-issued `--max-reissues` times without signing in (their keys): `run`
    /// invites them no more. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reissue_limit: Vec<String>,
}

impl StatusReport {
    /// How the refresh ended: stopped, some provider unread, or all read.
    pub fn ending(&self, interrupted: bool) -> crate::error::Ending {
        use crate::error::Ending;
        if interrupted {
            Ending::Interrupted
        } else if self.summary.get(&Standing::Unknown).copied().unwrap_or(0) > 0 {
            Ending::RowsFailed
        } else {
            Ending::Settled
        }
    }
}

/// Counts per standing, every standing present (zero when none).
pub fn summarize(rows: &[StatusRow]) -> BTreeMap<Standing, u64> {
    let mut out: BTreeMap<Standing, u64> = Standing::ALL.iter().map(|s| (*s, 0)).collect();
    for r in rows {
        *out.entry(r.standing).or_default() += 1;
    }
    out
}
