//! The `status` report: where each provider stands (newly confirmed, confirmed, pending, expired,
//! needing attention), the funnel, and the cheapest way to refresh it. Pure: classification,
//! funnel and strategy choice take values and return values.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;

use crate::cognito::{RemoteUser, UserStatus};
use crate::plan::{self, History};
use crate::state::Known;

/// Where a provider stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Confirmed, and not in any earlier status report: send the API credentials.
    NewlyConfirmed,
    Confirmed,
    /// Invited; the temporary password is still valid.
    Pending,
    /// Invited; the temporary password has expired (`run` re-issues it).
    Expired,
    /// Disabled, deleted from the pool, or a status the tool does not manage.
    Attention,
    /// In the CSV but not in the pool, and never invited (`run` will create it).
    NotInvited,
    /// Its status could not be read.
    Unknown,
}

impl Standing {
    pub const ALL: [Standing; 7] = [
        Standing::NewlyConfirmed,
        Standing::Confirmed,
        Standing::Pending,
        Standing::Expired,
        Standing::Attention,
        Standing::NotInvited,
        Standing::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Standing::NewlyConfirmed => "newly_confirmed",
            Standing::Confirmed => "confirmed",
            Standing::Pending => "pending",
            Standing::Expired => "expired",
            Standing::Attention => "attention",
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
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Classifies one provider. `remote` is what Cognito shows now (None: not in the pool);
/// `known` is the state after this refresh was recorded.
pub fn classify(
    key: &str,
    remote: Option<&RemoteUser>,
    known: &Known,
    validity: Duration,
    now: DateTime<Utc>,
) -> StatusRow {
    let history = History {
        last_invited_at: known.last_invited_at,
        ..History::default()
    };
    let mut row = StatusRow {
        key: key.to_string(),
        username: remote
            .map(|u| u.username.clone())
            .or_else(|| known.username.clone()),
        email: remote
            .and_then(|u| u.email.clone())
            .or_else(|| known.email.clone()),
        status: remote.map(|u| u.status.to_string()),
        standing: Standing::Unknown,
        reason: String::new(),
        first_invited_at: known.first_invited_at,
        last_invited_at: known.last_invited_at,
        reissues: known.reissues,
        temp_password_expires_at: None,
        confirmed_at: None,
    };
    let Some(user) = remote else {
        if known.invited {
            row.status = Some("DELETED".into());
            row.standing = Standing::Attention;
            row.reason = "invited by this tool, since deleted from the pool".into();
        } else {
            row.standing = Standing::NotInvited;
            row.reason = "not in the pool yet; `run` creates it".into();
        }
        return row;
    };
    if !user.enabled {
        row.standing = Standing::Attention;
        row.reason = format!("disabled (status {})", user.status);
        return row;
    }
    match &user.status {
        UserStatus::Confirmed => {
            row.confirmed_at = known.confirmed_at;
            if known.invited && known.confirmed_reported_at.is_none() {
                row.standing = Standing::NewlyConfirmed;
                row.reason = match known.confirmed_at {
                    Some(at) => format!(
                        "confirmed (first seen {}); send the API credentials",
                        time(at)
                    ),
                    None => "confirmed; send the API credentials".into(),
                };
            } else {
                row.standing = Standing::Confirmed;
                row.reason = "confirmed".into();
            }
        }
        UserStatus::ForceChangePassword => {
            let expires = plan::expiry(user, &history, validity);
            row.temp_password_expires_at = expires;
            match expires {
                Some(at) if at <= now => {
                    row.standing = Standing::Expired;
                    row.reason = format!(
                        "invitation expired at {}; `run` re-issues it (re-issued {} times so far)",
                        time(at),
                        known.reissues
                    );
                }
                Some(at) => {
                    row.standing = Standing::Pending;
                    row.reason = format!("invitation pending until {}", time(at));
                }
                None => {
                    row.standing = Standing::Pending;
                    row.reason = "invitation pending; expiry not known".into();
                }
            }
        }
        other => {
            row.standing = Standing::Attention;
            row.reason = format!("status {other} needs a person");
        }
    }
    row
}

/// The onboarding funnel over the providers the tool invited.
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
    let invited: Vec<&StatusRow> = rows
        .iter()
        .filter(|r| r.first_invited_at.is_some())
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

/// Estimated quota-seconds of each refresh strategy, and the cheapest.
///
/// `targets`: providers to refresh; `pending`: how many of them were last seen pending;
/// `pool_users`: the pool's estimated size; `read`/`list`: the full UserRead/UserList quotas.
/// The pending scan assumes the pool's pending users are about the cohort's (its pages are
/// `ceil(pending / 60)`).
pub fn choose_refresh(
    targets: u64,
    pending: u64,
    pool_users: u64,
    read: f64,
    list: f64,
    all: bool,
) -> (Refresh, BTreeMap<&'static str, f64>) {
    let per_user = plan::quota_seconds(targets, read);
    let scan = plan::quota_seconds(plan::scan_calls(pool_users), list);
    let pending_scan = plan::quota_seconds(pending.div_ceil(60).max(1), list)
        + plan::quota_seconds(targets.saturating_sub(pending), read);
    let costs = BTreeMap::from([
        ("per_user", per_user),
        ("scan", scan),
        ("pending_scan", pending_scan),
    ]);
    let choice = if all || (scan <= per_user && scan <= pending_scan) {
        Refresh::Scan
    } else if pending_scan < per_user {
        Refresh::PendingScan
    } else {
        Refresh::PerUser
    };
    (choice, costs)
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
    /// Estimated quota-seconds of each strategy, and what the chosen one spent.
    pub estimated_quota_seconds: BTreeMap<&'static str, f64>,
    pub quota_seconds: f64,
    pub calls: BTreeMap<String, u64>,
    pub summary: BTreeMap<&'static str, u64>,
    pub funnel: Funnel,
    pub newly_confirmed: Vec<StatusRow>,
    pub rows: Vec<StatusRow>,
}

pub fn summarize(rows: &[StatusRow]) -> BTreeMap<&'static str, u64> {
    let mut out: BTreeMap<&'static str, u64> =
        Standing::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for r in rows {
        *out.entry(r.standing.as_str()).or_default() += 1;
    }
    out
}

/// Writes rows as CSV (UTF-8 with BOM), formula-looking cells escaped.
pub fn write_csv<W: std::io::Write>(mut out: W, rows: &[StatusRow]) -> std::io::Result<()> {
    use crate::report::escape_cell;
    out.write_all("\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "key",
        "username",
        "email",
        "status",
        "standing",
        "reason",
        "first_invited_at",
        "last_invited_at",
        "reissues",
        "temp_password_expires_at",
        "confirmed_at",
    ])?;
    let t = |v: &Option<DateTime<Utc>>| v.map(time).unwrap_or_default();
    for r in rows {
        let record = [
            r.key.clone(),
            r.username.clone().unwrap_or_default(),
            r.email.clone().unwrap_or_default(),
            r.status.clone().unwrap_or_default(),
            r.standing.as_str().to_string(),
            r.reason.clone(),
            t(&r.first_invited_at),
            t(&r.last_invited_at),
            r.reissues.to_string(),
            t(&r.temp_password_expires_at),
            t(&r.confirmed_at),
        ];
        w.write_record(record.iter().map(|c| escape_cell(c).into_owned()))?;
    }
    w.flush()
}

/// A plain table for a terminal.
pub fn table(report: &StatusReport) -> String {
    let mut out = String::new();
    let width = report
        .rows
        .iter()
        .map(|r| r.key.chars().count())
        .max()
        .unwrap_or(3)
        .max(3);
    out.push_str(&format!(
        "{:<width$}  {:<22}  {:<15}  {}\n",
        "key", "status", "standing", "detail"
    ));
    for r in &report.rows {
        out.push_str(&format!(
            "{:<width$}  {:<22}  {:<15}  {}\n",
            r.key,
            r.status.as_deref().unwrap_or("-"),
            r.standing.as_str(),
            r.reason
        ));
    }
    let f = &report.funnel;
    out.push_str(&format!(
        "\nfunnel: {} invited, {} confirmed, {} pending, {} expired, {} attention; median time to confirm: {}\n",
        f.invited,
        f.confirmed,
        f.pending,
        f.expired,
        f.attention,
        f.median_hours_to_confirm
            .map(|h| format!("{h} h"))
            .unwrap_or_else(|| "-".into())
    ));
    out.push_str(&format!(
        "newly confirmed: {}\n",
        if report.newly_confirmed.is_empty() {
            "none".to_string()
        } else {
            report
                .newly_confirmed
                .iter()
                .map(|r| r.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn user(status: UserStatus) -> RemoteUser {
        RemoteUser {
            username: "u".into(),
            status,
            enabled: true,
            email: Some("a@example.com".into()),
            email_verified: true,
            sub: None,
            last_modified: Some(now() - Duration::days(1)),
            created: Some(now() - Duration::days(1)),
        }
    }

    fn invited(days_ago: i64) -> Known {
        Known {
            invited: true,
            first_invited_at: Some(now() - Duration::days(days_ago)),
            last_invited_at: Some(now() - Duration::days(days_ago)),
            ..Known::default()
        }
    }

    fn standing(remote: Option<&RemoteUser>, known: &Known) -> Standing {
        classify("a@example.com", remote, known, Duration::days(7), now()).standing
    }

    #[test]
    fn classification_table() {
        let mut confirmed_reported = invited(3);
        confirmed_reported.confirmed_at = Some(now() - Duration::days(1));
        confirmed_reported.confirmed_reported_at = Some(now() - Duration::hours(1));
        let mut confirmed_new = invited(3);
        confirmed_new.confirmed_at = Some(now() - Duration::hours(2));
        let mut disabled = user(UserStatus::Confirmed);
        disabled.enabled = false;
        let cases: Vec<(Option<RemoteUser>, Known, Standing)> = vec![
            (
                Some(user(UserStatus::Confirmed)),
                confirmed_new.clone(),
                Standing::NewlyConfirmed,
            ),
            (
                Some(user(UserStatus::Confirmed)),
                confirmed_reported,
                Standing::Confirmed,
            ),
            (
                Some(user(UserStatus::Confirmed)),
                Known::default(),
                Standing::Confirmed,
            ),
            (
                Some(user(UserStatus::ForceChangePassword)),
                invited(2),
                Standing::Pending,
            ),
            (
                Some(user(UserStatus::ForceChangePassword)),
                invited(8),
                Standing::Expired,
            ),
            (
                Some(user(UserStatus::ResetRequired)),
                invited(2),
                Standing::Attention,
            ),
            (Some(disabled), invited(2), Standing::Attention),
            (None, invited(2), Standing::Attention),
            (None, Known::default(), Standing::NotInvited),
        ];
        for (remote, known, want) in cases {
            assert_eq!(
                standing(remote.as_ref(), &known),
                want,
                "{remote:?} {known:?}"
            );
        }
        let row = classify("a@example.com", None, &invited(2), Duration::days(7), now());
        assert_eq!(row.status.as_deref(), Some("DELETED"));
    }

    #[test]
    fn funnel_counts_and_median() {
        let mk = |standing, invited_h: i64, confirmed_h: Option<i64>| StatusRow {
            key: "k".into(),
            username: None,
            email: None,
            status: None,
            standing,
            reason: String::new(),
            first_invited_at: Some(now() - Duration::hours(invited_h)),
            last_invited_at: None,
            reissues: 0,
            temp_password_expires_at: None,
            confirmed_at: confirmed_h.map(|h| now() - Duration::hours(h)),
        };
        let rows = vec![
            mk(Standing::NewlyConfirmed, 10, Some(8)),
            mk(Standing::Confirmed, 30, Some(20)),
            mk(Standing::Confirmed, 50, Some(44)),
            mk(Standing::Pending, 5, None),
            mk(Standing::Expired, 200, None),
        ];
        let f = funnel(&rows);
        assert_eq!(
            (f.invited, f.confirmed, f.pending, f.expired, f.attention),
            (5, 3, 1, 1, 0)
        );
        assert_eq!(f.median_hours_to_confirm, Some(6.0));
    }

    #[test]
    fn refresh_strategy_follows_the_quota_seconds() {
        // 3,000 tracked users in a 3,000-user pool: a scan (50 pages) beats 3,000 reads.
        assert_eq!(
            choose_refresh(3000, 1000, 3000, 120.0, 30.0, false).0,
            Refresh::Scan
        );
        // 200 tracked, 150 of them pending, in a 20,000-user pool: pending scan (3 pages + 50 reads).
        assert_eq!(
            choose_refresh(200, 150, 20_000, 120.0, 30.0, false).0,
            Refresh::PendingScan
        );
        // 20 tracked, none pending, in a big pool: per user.
        assert_eq!(
            choose_refresh(20, 0, 20_000, 120.0, 30.0, false).0,
            Refresh::PerUser
        );
        // --all always scans.
        assert_eq!(
            choose_refresh(1, 0, 1_000_000, 120.0, 30.0, true).0,
            Refresh::Scan
        );
        let (_, costs) = choose_refresh(200, 150, 20_000, 120.0, 30.0, false);
        assert!((costs["per_user"] - 200.0 / 120.0).abs() < 1e-9);
        assert!((costs["scan"] - 336.0 / 30.0).abs() < 1e-9);
        assert!((costs["pending_scan"] - (3.0 / 30.0 + 50.0 / 120.0)).abs() < 1e-9);
    }
}
