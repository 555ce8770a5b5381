//! How long a cohort has not moved: since when every run's invitations waited on the message
//! budget with none sent, and for how many runs providers have stayed pending past their
//! invitation's expiry. One pure function ([`stall`]) over this run and the runs the state
//! recorded before it; [`measure`] reads those. Must not decide what a run does about it.

use chrono::{DateTime, Utc};

pub use crate::report::model::Stall;
use crate::state::{PastRun, State};

/// The key of the deferrals by cause in a run's recorded counts.
pub const DEFERRED_BY: &str = "deferred_by";

/// The most earlier runs read back: a stall longer than this many runs reads as this many.
pub const RUNS_READ: usize = 500;

/// What this command saw: its rows that waited on the budget, what it sent, and the providers
/// it saw pending past their expiry.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub command: &'a str,
    pub started_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Some row waited on the message budget.
    pub waited_on_budget: bool,
    /// Invitations sent.
    pub sent: u64,
    pub expired: u64,
    pub oldest_expiry: Option<DateTime<Utc>>,
}

/// How long the cohort has not moved, from what this command saw and the `run`s before it
/// (newest first, finished).
///
/// | this command | this run waited on the budget, sent none | earlier runs | budget blocked since |
/// |---|---|---|---|
/// | `run` | no | any | none |
/// | `run` | yes | the newest blocked ones, unbroken | the oldest of them, else this run's start |
/// | `status` (sends nothing) | — | the newest blocked ones, unbroken | the oldest of them; none when the newest run was not blocked |
///
/// A run is blocked when its recorded counts have rows deferred by the budget or by
/// Cognito's daily limit and no row created or re-issued; a run that stopped early (no counts)
/// breaks the series. `expired_for_runs` counts the `run`s started after the oldest expiry,
/// this one included; 0 when no provider is past its expiry.
pub fn stall(seen: Seen<'_>, earlier: &[PastRun]) -> Stall {
    let is_run = seen.command == "run";
    let this_blocked = is_run && seen.waited_on_budget && seen.sent == 0;
    let mut since = this_blocked.then_some(seen.started_at);
    if this_blocked || !is_run {
        for run in earlier {
            if !blocked(run) {
                break;
            }
            since = Some(run.started_at);
        }
    }
    let expired_for_runs = match seen.oldest_expiry {
        Some(expiry) if seen.expired > 0 => {
            let before = earlier.iter().filter(|r| r.started_at > expiry).count() as u64;
            before + u64::from(is_run && seen.started_at > expiry)
        }
        _ => 0,
    };
    Stall {
        budget_blocked_since: since,
        budget_blocked_seconds: since
            .map(|s| (seen.now - s).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0),
        expired: seen.expired,
        oldest_expiry: seen.oldest_expiry.filter(|_| seen.expired > 0),
        expired_for_runs,
    }
}

/// Whether an earlier run waited on the budget and sent nothing, by its recorded counts.
fn blocked(run: &PastRun) -> bool {
    let Some(counts) = run
        .counts
        .as_deref()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
    else {
        return false;
    };
    let n = |v: &serde_json::Value, k: &str| v.get(k).and_then(|n| n.as_u64()).unwrap_or(0);
    let waited = counts
        .get(DEFERRED_BY)
        .is_some_and(|by| n(by, "budget") + n(by, "message_limit") > 0);
    waited && n(&counts, "created") + n(&counts, "reissued") == 0
}

/// [`stall`] with the earlier `run`s read from the state; a state that cannot say is a
/// warning, never the command's failure.
pub fn measure(state: &State, pool: &str, seen: Seen<'_>) -> Option<Stall> {
    match state.recent_runs(pool, "run", RUNS_READ) {
        Ok(earlier) => Some(stall(seen, &earlier)),
        Err(e) => {
            tracing::warn!("how long the cohort has stalled is unknown: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::hours(h)
    }

    fn past(h: i64, counts: Option<&str>) -> PastRun {
        PastRun {
            started_at: t(h),
            exit_code: Some(0),
            counts: counts.map(String::from),
        }
    }

    const BLOCKED: &str = r#"{"created":0,"reissued":0,"deferred":5,"deferred_by":{"budget":5}}"#;
    const LIMITED: &str =
        r#"{"created":0,"reissued":0,"deferred":5,"deferred_by":{"message_limit":5}}"#;
    const SENT: &str = r#"{"created":2,"reissued":0,"deferred":3,"deferred_by":{"budget":3}}"#;

    fn run_at(h: i64, waited: bool, sent: u64) -> Seen<'static> {
        Seen {
            command: "run",
            started_at: t(h),
            now: t(h),
            waited_on_budget: waited,
            sent,
            expired: 0,
            oldest_expiry: None,
        }
    }

    #[test]
    fn a_run_that_did_not_wait_on_the_budget_is_not_blocked() {
        let s = stall(run_at(10, false, 0), &[past(9, Some(BLOCKED))]);
        assert_eq!(s.budget_blocked_since, None);
        assert_eq!(s.budget_blocked_seconds, 0.0);
    }

    #[test]
    fn a_run_that_waited_but_sent_is_not_blocked() {
        let s = stall(run_at(10, true, 2), &[past(9, Some(BLOCKED))]);
        assert_eq!(s.budget_blocked_since, None);
    }

    #[test]
    fn a_blocked_run_counts_back_through_the_unbroken_blocked_runs() {
        let earlier = [
            past(9, Some(BLOCKED)),
            past(8, Some(LIMITED)),
            past(7, Some(SENT)),
            past(6, Some(BLOCKED)),
        ];
        let s = stall(run_at(10, true, 0), &earlier);
        assert_eq!(s.budget_blocked_since, Some(t(8)));
        assert_eq!(s.budget_blocked_seconds, 2.0 * 3600.0);
    }

    #[test]
    fn a_blocked_run_after_one_that_sent_is_blocked_since_its_own_start() {
        let s = stall(run_at(10, true, 0), &[past(9, Some(SENT))]);
        assert_eq!(s.budget_blocked_since, Some(t(10)));
    }

    #[test]
    fn a_run_that_stopped_early_breaks_the_series() {
        let earlier = [past(9, None), past(8, Some(BLOCKED))];
        let s = stall(run_at(10, true, 0), &earlier);
        assert_eq!(s.budget_blocked_since, Some(t(10)));
    }

    #[test]
    fn status_reports_the_runs_blocked_series_and_none_when_the_newest_sent() {
        let status = |earlier: &[PastRun]| {
            stall(
                Seen {
                    command: "status",
                    now: t(12),
                    ..run_at(12, false, 0)
                },
                earlier,
            )
        };
        let s = status(&[past(10, Some(BLOCKED)), past(9, Some(BLOCKED))]);
        assert_eq!(s.budget_blocked_since, Some(t(9)));
        assert_eq!(s.budget_blocked_seconds, 3.0 * 3600.0);
        assert_eq!(
            status(&[past(10, Some(SENT)), past(9, Some(BLOCKED))]).budget_blocked_since,
            None
        );
    }

    #[test]
    fn expired_providers_count_the_runs_since_the_oldest_expiry() {
        let seen = Seen {
            expired: 4,
            oldest_expiry: Some(t(7) + chrono::Duration::minutes(30)),
            ..run_at(10, false, 3)
        };
        let earlier = [
            past(9, Some(SENT)),
            past(8, Some(SENT)),
            past(7, Some(SENT)),
        ];
        let s = stall(seen, &earlier);
        assert_eq!(s.expired, 4);
        assert_eq!(s.expired_for_runs, 3, "runs at 8, 9 and this one at 10");
        let none = stall(run_at(10, false, 3), &earlier);
        assert_eq!((none.expired, none.expired_for_runs), (0, 0));
        assert_eq!(none.oldest_expiry, None);
    }

    #[test]
    fn the_words_say_how_long_and_how_many_runs() {
        let s = stall(
            Seen {
                expired: 2,
                oldest_expiry: Some(t(1)),
                ..run_at(10, true, 0)
            },
            &[past(9, Some(BLOCKED))],
        );
        assert_eq!(
            s.words(t(10)),
            [
                "nothing sent for 1.0 h because of the message budget",
                "2 pending past expiry, the longest for 2 run(s)"
            ]
        );
    }
}
