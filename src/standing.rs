//! Where each provider stands, for `status`: the standing is `plan::decide`'s decision for the
//! provider (what `run` would do now), so `status` and `run` cannot disagree; the funnel and the
//! summary. Pure: values in, values out. Must not re-decide what `plan` decides, or read
//! anything.

use chrono::{DateTime, Utc};

use crate::cognito::{RemoteUser, Sender};
use crate::plan::{self, Action, Decision, Keep, Policy, ReissueCause, Suppression, Wanted};
pub use crate::report::status::{Funnel, Standing, StatusReport, StatusRow, funnel, summarize};
use crate::report::wording;
use crate::state::{DELETED, Known};

impl Standing {
    /// The standing of a provider for whom `run` would take `action`. `newly`: confirmed, and not
    /// yet listed by an earlier `status`.
    pub fn of(action: &Action, newly: bool) -> Standing {
        match action {
            Action::Create => Standing::NotInvited,
            Action::Reissue {
                cause: ReissueCause::Expired { .. } | ReissueCause::PasswordLost,
                ..
            } => Standing::Expired,
            Action::Reissue {
                cause: ReissueCause::Always,
                ..
            } => Standing::Pending,
            Action::Keep(Keep::Pending { .. } | Keep::RecentlySent { .. }) => Standing::Pending,
            Action::Keep(Keep::Expired { .. }) => Standing::Expired,
            Action::Keep(Keep::Confirmed) if newly => Standing::NewlyConfirmed,
            Action::Keep(Keep::Confirmed) => Standing::Confirmed,
            Action::Attention(_) => Standing::Attention,
        }
    }
}

/// Who a provider of `status` is: its key, the name it has (or would be created with) in the
/// pool, and the row's email (the CSV's, or none: the one the state recorded).
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub email: Option<&'a str>,
}

/// What `run` would decide for the provider now: `plan::decide` on what Cognito shows
/// (`remote`, None: not in the pool) and on `known`, with the policy `run` would use.
fn decision(
    who: Who<'_>,
    remote: Option<&RemoteUser>,
    known: &Known,
    policy: &Policy,
    now: DateTime<Utc>,
) -> (Decision, Option<String>) {
    let email = who
        .email
        .map(str::to_string)
        .or_else(|| known.email.clone())
        .or_else(|| remote.and_then(|u| u.email.clone()));
    // Group membership does not change where a provider stands.
    let decision = plan::decide(
        &Wanted {
            email: email.as_deref().unwrap_or_default(),
            name: who.name,
            groups: &[],
            attributes: &[],
            keyed_by_username: false,
        },
        remote,
        &|_| true,
        &known.history(),
        policy,
        now,
    );
    (decision, email)
}

/// The address whose place on the SES suppression list decides the provider's standing, if
/// one does: where `run` would re-issue through SES (`plan::checks_suppression`, by `sender`),
/// the user's email, which the message would go to.
pub fn screened_address<'a>(
    who: Who<'_>,
    remote: Option<&'a RemoteUser>,
    known: &Known,
    policy: &Policy,
    sender: Sender,
    now: DateTime<Utc>,
) -> Option<&'a str> {
    let (d, _) = decision(who, remote, known, policy, now);
    plan::checks_suppression(&d, sender)
        .then(|| remote.and_then(|u| u.email.as_deref()))
        .flatten()
}

/// Classifies one provider: what `run` would decide now ([`screened_address`]'s decision,
/// screened with what the suppression list says of its address, `Clear` where it was not read)
/// on `known`, the state after this refresh was recorded.
pub fn classify(
    who: Who<'_>,
    remote: Option<&RemoteUser>,
    suppression: &Suppression,
    known: &Known,
    policy: &Policy,
    now: DateTime<Utc>,
) -> StatusRow {
    let history = known.history();
    let (decision, email) = decision(who, remote, known, policy, now);
    let decision = plan::screen(decision, suppression);
    let newly = known.invited && known.confirmed_reported_at.is_none();
    let offboarded = history
        .disabled_by
        .as_ref()
        .filter(|_| remote.is_none_or(|u| !u.enabled));
    let standing = match offboarded {
        Some(_) => Standing::Offboarded,
        None => Standing::of(&decision.action, newly),
    };
    let reason = match (standing, known.confirmed_at) {
        (Standing::Offboarded, _) => wording::offboarded(offboarded, remote.is_some()),
        (Standing::NewlyConfirmed, Some(at)) => format!(
            "confirmed (first seen {}); send the API credentials",
            wording::time(at)
        ),
        (Standing::NewlyConfirmed, None) => "confirmed; send the API credentials".into(),
        _ => wording::standing(&decision.action, known.reissues),
    };
    let confirmed = matches!(standing, Standing::Confirmed | Standing::NewlyConfirmed);
    StatusRow {
        key: who.key.to_string(),
        username: remote
            .map(|u| u.username.clone())
            .or_else(|| known.username.clone()),
        email: remote.and_then(|u| u.email.clone()).or(email),
        name: remote
            .and_then(|u| crate::input::display_name(|n| u.attributes.get(n).map(String::as_str))),
        status: match remote {
            Some(u) => Some(u.status.to_string()),
            None if known.invited => Some(DELETED.to_string()),
            None => None,
        },
        standing,
        reason,
        first_invited_at: known.first_invited_at,
        last_invited_at: known.last_invited_at,
        reissues: known.reissues,
        temp_password_expires_at: remote
            .filter(|u| u.status == crate::cognito::UserStatus::ForceChangePassword)
            .and_then(|u| plan::expiry(u, &history, policy.validity)),
        confirmed_at: if confirmed { known.confirmed_at } else { None },
        stuck: match standing {
            Standing::Offboarded => None,
            _ => wording::stuck(&decision.action),
        },
    }
}

/// A provider whose status could not be read (`why`), or was not read because the refresh was
/// stopped.
pub fn unread(key: &str, username: &str, known: &Known, why: String) -> StatusRow {
    StatusRow {
        key: key.to_string(),
        username: Some(username.to_string()),
        email: known.email.clone(),
        name: None,
        status: None,
        standing: Standing::Unknown,
        reason: why,
        first_invited_at: known.first_invited_at,
        last_invited_at: known.last_invited_at,
        reissues: known.reissues,
        temp_password_expires_at: None,
        confirmed_at: known.confirmed_at,
        stuck: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cognito::{Delivery, UserStatus};
    use crate::plan::Reissue;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn user(status: UserStatus) -> RemoteUser {
        crate::cognito::memory::user(
            "a@example.com",
            "a@example.com",
            status,
            now() - Duration::days(1),
        )
    }

    fn invited(days_ago: i64) -> Known {
        Known {
            invited: true,
            first_invited_at: Some(now() - Duration::days(days_ago)),
            last_invited_at: Some(now() - Duration::days(days_ago)),
            ..Known::default()
        }
    }

    fn policy(reissue: Reissue) -> Policy {
        Policy {
            reissue,
            delivery: Delivery::Email,
            validity: Duration::days(7),
            max_reissues: 3,
            case_sensitive: true,
            email_is_username: false,
            resend_interval: crate::plan::MIN_RESEND_INTERVAL,
            update: None,
        }
    }

    const WHO: Who<'static> = Who {
        key: "a@example.com",
        name: "a@example.com",
        email: Some("a@example.com"),
    };

    fn standing(remote: Option<&RemoteUser>, known: &Known) -> Standing {
        classify(
            WHO,
            remote,
            &Suppression::Clear,
            known,
            &policy(Reissue::Expired),
            now(),
        )
        .standing
    }

    /// One case per row of `plan::decide`'s table: `status` reports, as the provider's standing
    /// and in its reason, what `run` would do.
    #[test]
    fn status_reports_what_run_would_do_for_every_row_of_the_decision_table() {
        let mut other_email = user(UserStatus::Confirmed);
        other_email.email = Some("b@example.com".into());
        let mut no_email = user(UserStatus::Confirmed);
        no_email.email = None;
        let mut disabled = user(UserStatus::ForceChangePassword);
        disabled.enabled = false;
        let fcp = user(UserStatus::ForceChangePassword);
        let mut lost = invited(1);
        lost.password_lost = true;
        let mut at_cap = invited(8);
        at_cap.reissues = 3;
        let mut reported = invited(3);
        reported.confirmed_at = Some(now() - Duration::days(1));
        reported.confirmed_reported_at = Some(now() - Duration::hours(1));
        let mut newly = invited(3);
        newly.confirmed_at = Some(now() - Duration::hours(2));
        use Reissue::*;
        /// The row, the user, the history, the policy, the standing, and words the reason has.
        type Case = (
            &'static str,
            Option<RemoteUser>,
            Known,
            Reissue,
            Standing,
            &'static str,
        );
        let rows: Vec<Case> = vec![
            (
                "absent, invited before",
                None,
                invited(2),
                Expired,
                Standing::Attention,
                "deleted",
            ),
            (
                "absent, otherwise",
                None,
                Known::default(),
                Expired,
                Standing::NotInvited,
                "creates it",
            ),
            (
                "another email",
                Some(other_email),
                invited(2),
                Expired,
                Standing::Attention,
                "another email",
            ),
            (
                "no email",
                Some(no_email),
                invited(2),
                Expired,
                Standing::Attention,
                "no email",
            ),
            (
                "disabled",
                Some(disabled),
                invited(2),
                Always,
                Standing::Attention,
                "disabled",
            ),
            (
                "pending, --reissue always",
                Some(fcp.clone()),
                invited(1),
                Always,
                Standing::Pending,
                "re-issues it on every run",
            ),
            (
                "pending, password lost",
                Some(fcp.clone()),
                lost,
                Never,
                Standing::Expired,
                "re-issues it",
            ),
            (
                "expired, under the cap",
                Some(fcp.clone()),
                invited(8),
                Expired,
                Standing::Expired,
                "`run` re-issues it",
            ),
            (
                "expired, cap reached",
                Some(fcp.clone()),
                at_cap.clone(),
                Expired,
                Standing::Attention,
                "--max-reissues",
            ),
            (
                "expired, --reissue never",
                Some(fcp.clone()),
                invited(8),
                Never,
                Standing::Expired,
                "not re-issued (--reissue never)",
            ),
            (
                "not expired",
                Some(fcp.clone()),
                invited(2),
                Expired,
                Standing::Pending,
                "valid until",
            ),
            (
                "confirmed, listed before",
                Some(user(UserStatus::Confirmed)),
                reported,
                Expired,
                Standing::Confirmed,
                "confirmed",
            ),
            (
                "confirmed, not listed yet",
                Some(user(UserStatus::Confirmed)),
                newly,
                Expired,
                Standing::NewlyConfirmed,
                "send the API credentials",
            ),
            (
                "another status",
                Some(user(UserStatus::ResetRequired)),
                invited(2),
                Expired,
                Standing::Attention,
                "RESET_REQUIRED",
            ),
        ];
        for (case, remote, known, reissue, want, says) in rows {
            let p = policy(reissue);
            let got = classify(WHO, remote.as_ref(), &Suppression::Clear, &known, &p, now());
            let run = plan::decide(
                &Wanted {
                    email: "a@example.com",
                    name: "a@example.com",
                    groups: &[],
                    attributes: &[],
                    keyed_by_username: false,
                },
                remote.as_ref(),
                &|_| true,
                &known.history(),
                &p,
                now(),
            );
            let newly = known.invited && known.confirmed_reported_at.is_none();
            assert_eq!(got.standing, want, "{case}: {}", got.reason);
            assert_eq!(
                Standing::of(&run.action, newly),
                want,
                "{case}: run decides {:?}",
                run.action
            );
            assert!(got.reason.contains(says), "{case}: {}", got.reason);
            if want != Standing::NewlyConfirmed {
                assert_eq!(
                    got.reason,
                    wording::standing(&run.action, known.reissues),
                    "{case}"
                );
            }
        }
        // The cap: `run` stops re-issuing, so `status` must not say it re-issues.
        let capped = classify(
            WHO,
            Some(&fcp),
            &Suppression::Clear,
            &at_cap,
            &policy(Expired),
            now(),
        );
        assert_eq!(
            capped.stuck,
            Some(crate::report::Stuck::ReissueLimit { reissues: 3 }),
            "listed among those re-issued to the limit"
        );
        assert!(
            !capped.reason.contains("`run` re-issues"),
            "{}",
            capped.reason
        );
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
        let row = classify(
            WHO,
            None,
            &Suppression::Clear,
            &invited(2),
            &policy(Reissue::Expired),
            now(),
        );
        assert_eq!(row.status.as_deref(), Some("DELETED"));
    }

    /// Where `run` would re-issue through SES, the address is read on the suppression list
    /// first; a suppressed one is attention, listed as such, and `run` does not re-issue it.
    /// Cognito's own sender, or an invitation still valid, asks for no read.
    #[test]
    fn a_suppressed_address_is_attention_and_only_an_ses_reissue_asks_for_the_list() {
        use crate::cognito::{Suppressed, SuppressionReason};
        let fcp = user(UserStatus::ForceChangePassword);
        let p = policy(Reissue::Expired);
        let address =
            |known: &Known, sender| screened_address(WHO, Some(&fcp), known, &p, sender, now());
        assert_eq!(address(&invited(8), Sender::Ses), Some("a@example.com"));
        assert_eq!(address(&invited(8), Sender::CognitoEmail), None);
        assert_eq!(address(&invited(2), Sender::Ses), None, "not expired");
        let gone = Suppressed {
            reason: SuppressionReason::Bounce,
            since: now() - Duration::days(3),
        };
        let row = classify(
            WHO,
            Some(&fcp),
            &Suppression::Suppressed(gone.clone()),
            &invited(8),
            &p,
            now(),
        );
        assert_eq!(row.standing, Standing::Attention);
        assert_eq!(row.stuck, Some(crate::report::Stuck::Suppressed(gone)));
        assert!(
            row.reason.contains("suppression list (BOUNCE"),
            "{}",
            row.reason
        );
        assert!(!row.reason.contains("`run` re-issues"), "{}", row.reason);
        let unknown = classify(
            WHO,
            Some(&fcp),
            &Suppression::Unknown,
            &invited(8),
            &p,
            now(),
        );
        assert_eq!(
            unknown.standing,
            Standing::Expired,
            "unknown: `run` re-issues"
        );
    }

    #[test]
    fn funnel_counts_and_median() {
        let mk = |standing, invited_h: i64, confirmed_h: Option<i64>| StatusRow {
            key: "k".into(),
            username: None,
            email: None,
            name: None,
            status: None,
            standing,
            reason: String::new(),
            first_invited_at: Some(now() - Duration::hours(invited_h)),
            last_invited_at: None,
            reissues: 0,
            temp_password_expires_at: None,
            confirmed_at: confirmed_h.map(|h| now() - Duration::hours(h)),
            stuck: None,
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
}
