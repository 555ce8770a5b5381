//! The help desk's diagnosis: why a provider cannot sign in, and the remedy in plain words. A
//! pure function of the user as Cognito shows it, the job's history of it, the pool's recovery
//! setting and the time, with its table in [`diagnose`]'s doc comment. Must not read or fix
//! anything; `doctor` does.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::cognito::{Delivery, Recovery, RemoteUser, Suppressed, UserStatus};
use crate::plan::{self, History};
use crate::report::wording::{self, time};

/// Cognito's own email sender (`COGNITO_DEFAULT`): over the account's daily cap it is reported
/// to accept a code and drop it, and corporate mail often filters it.
pub const COGNITO_SENDER: &str = "no-reply@verificationemail.com";

/// Where a provider stands, for the help desk. Stable codes for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The ID given could never name a user (`help::checked_id`): nothing was asked for it.
    InvalidId,
    NotInPool,
    Deleted,
    Pending,
    Expired,
    PasswordLost,
    Recoverable,
    Unrecoverable,
    ResetRequired,
    Disabled,
    ExternalProvider,
    Unconfirmed,
    /// A legacy status (`ARCHIVED`, `COMPROMISED`, `UNKNOWN`, ...).
    Other,
    /// SES drops every message to the provider's address (the SES account's suppression list):
    /// no invitation, and no recovery code by email, reaches them.
    Suppressed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::InvalidId => "invalid_id",
            Verdict::NotInPool => "not_in_pool",
            Verdict::Deleted => "deleted",
            Verdict::Pending => "pending",
            Verdict::Expired => "expired",
            Verdict::PasswordLost => "password_lost",
            Verdict::Recoverable => "recoverable",
            Verdict::Unrecoverable => "unrecoverable",
            Verdict::ResetRequired => "reset_required",
            Verdict::Disabled => "disabled",
            Verdict::ExternalProvider => "external_provider",
            Verdict::Unconfirmed => "unconfirmed",
            Verdict::Other => "other",
            Verdict::Suppressed => "suppressed",
        }
    }

    /// Whether the provider can sign in, or recover, without anyone's help.
    pub fn alone(self) -> bool {
        match self {
            Verdict::Pending | Verdict::Recoverable => true,
            Verdict::InvalidId
            | Verdict::NotInPool
            | Verdict::Deleted
            | Verdict::Expired
            | Verdict::PasswordLost
            | Verdict::Unrecoverable
            | Verdict::ResetRequired
            | Verdict::Disabled
            | Verdict::ExternalProvider
            | Verdict::Unconfirmed
            | Verdict::Other
            | Verdict::Suppressed => false,
        }
    }
}

/// How messages reach the provider: the address invitations come from, how the last one went
/// out (where the state knows), and whether SES drops mail to the provider's address (read only
/// for pools that send through SES).
#[derive(Debug, Clone, Copy)]
pub struct Mail<'a> {
    pub sender: &'a str,
    pub sent_by: Option<Delivery>,
    pub suppressed: Option<&'a Suppressed>,
}

/// A verdict with its remedy and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub verdict: Verdict,
    pub remedy: String,
    /// When the current temporary password expires (pending or expired invitations).
    pub temp_password_expires_at: Option<DateTime<Utc>>,
    /// Whether `ForgotPassword` can work for this user now.
    pub forgot_password_works: bool,
}

/// Whether `doctor` reads the SES suppression list for this user, by who sends the pool's email:
/// only a message SES sends can be held back by SES's list, and only where the verdict could
/// turn on it.
///
/// | who sends email | the user                                         | read the list? |
/// |-----------------|--------------------------------------------------|----------------|
/// | SES             | enabled, with an email, `FORCE_CHANGE_PASSWORD` or `CONFIRMED` | yes |
/// | SES             | disabled, without an email, or any other status  | no             |
/// | anyone else     | anyone                                           | no             |
pub fn reads_suppression(user: &RemoteUser, sender: crate::cognito::Sender) -> bool {
    sender == crate::cognito::Sender::Ses
        && user.enabled
        && user.email.is_some()
        && matches!(
            user.status,
            UserStatus::ForceChangePassword | UserStatus::Confirmed
        )
}

/// Diagnoses one provider, with what is known of how messages reach them (`mail`).
///
/// | user in the pool | condition                                         | verdict             |
/// |------------------|---------------------------------------------------|---------------------|
/// | absent           | this tool never invited it                        | `not_in_pool`       |
/// | absent           | this tool invited it                              | `deleted`           |
/// | present          | disabled (any status)                             | `disabled`          |
/// | present          | `EXTERNAL_PROVIDER`                               | `external_provider` |
/// | present          | `UNCONFIRMED`                                     | `unconfirmed`       |
/// | present          | `RESET_REQUIRED`                                  | `reset_required`    |
/// | present          | `FORCE_CHANGE_PASSWORD`, its email on the SES suppression list | `suppressed` |
/// | present          | `FORCE_CHANGE_PASSWORD`, nobody got the password  | `password_lost`     |
/// | present          | `FORCE_CHANGE_PASSWORD`, expired                  | `expired`           |
/// | present          | `FORCE_CHANGE_PASSWORD`, valid (or expiry unknown)| `pending`           |
/// | present          | `CONFIRMED`, recovers by a verified email only, on the SES suppression list | `suppressed` |
/// | present          | `CONFIRMED`, a verified email or phone the pool recovers by | `recoverable` |
/// | present          | `CONFIRMED`, otherwise                            | `unrecoverable`     |
/// | present          | any other status                                  | `other`             |
pub fn diagnose(
    user: Option<&RemoteUser>,
    history: &History,
    validity: Duration,
    recovery: Recovery,
    mail: Mail<'_>,
    now: DateTime<Utc>,
) -> Diagnosis {
    let Mail {
        sender,
        sent_by,
        suppressed,
    } = mail;
    let verdict = |verdict, remedy: String| Diagnosis {
        verdict,
        remedy,
        temp_password_expires_at: None,
        forgot_password_works: false,
    };
    let Some(user) = user else {
        return if history.invited {
            verdict(
                Verdict::Deleted,
                "this tool invited the provider, and the user has since been deleted from the pool; \
                 ask whoever deleted it before inviting again"
                    .into(),
            )
        } else {
            verdict(
                Verdict::NotInPool,
                "not in the pool and never invited by this tool: add the provider to the CSV; `run` \
                 invites them"
                    .into(),
            )
        };
    };
    if !user.enabled {
        return verdict(
            Verdict::Disabled,
            match &history.disabled_by {
                Some(by) => format!(
                    "{}: `cognito-onboard enable` brings it back, if it is back on the list",
                    crate::report::wording::offboarded(Some(by), true)
                        .trim_end_matches("; `enable` brings it back (the same sub and password)")
                ),
                None => "disabled by someone other than this tool (an administrator, or another \
                         process): nothing works until it is enabled; `cognito-onboard enable` \
                         does it, if that was a mistake"
                    .into(),
            },
        );
    }
    match &user.status {
        UserStatus::ExternalProvider => verdict(
            Verdict::ExternalProvider,
            "signs in through their own identity provider (federation): their password is not \
             Cognito's; their identity provider's help desk must act"
                .into(),
        ),
        UserStatus::Unconfirmed => verdict(
            Verdict::Unconfirmed,
            "signed up on their own and never confirmed: they must enter the confirmation code, \
             or an administrator confirms them"
                .into(),
        ),
        UserStatus::ResetRequired => Diagnosis {
            forgot_password_works: true,
            ..verdict(
                Verdict::ResetRequired,
                if sender == COGNITO_SENDER && recovery.by_email && user.email_verified {
                    format!(
                        "an administrator reset the password: the provider must complete \
                         ForgotPassword with the code Cognito sent; a code by email from \
                         {COGNITO_SENDER} was accepted by Cognito; delivery not confirmed (over \
                         the account's 50 a day it is dropped silently, and mail filters often \
                         hold that sender): if none arrived, `reset --temporary`"
                    )
                } else {
                    "an administrator reset the password: the provider must complete \
                     ForgotPassword with the code Cognito sent"
                        .into()
                },
            )
        },
        UserStatus::ForceChangePassword => {
            let expires = plan::expiry(user, history, validity);
            let d = if let Some(s) = suppressed {
                verdict(
                    Verdict::Suppressed,
                    format!(
                        "{}: no invitation reaches them; {}",
                        wording::suppressed(s),
                        wording::SUPPRESSED_REMEDY
                    ),
                )
            } else if history.password_lost {
                verdict(
                    Verdict::PasswordLost,
                    "nobody received the temporary password: issue a new one (`doctor --fix` or \
                     `reissue`); ForgotPassword does not work before the first sign-in"
                        .into(),
                )
            } else {
                match expires {
                    Some(at) if at <= now => verdict(
                        Verdict::Expired,
                        format!(
                            "the invitation expired at {}: issue a new one (`doctor --fix` or \
                             `reissue`); ForgotPassword does not work before the first sign-in",
                            time(at)
                        ),
                    ),
                    _ => {
                        let sent = history
                            .last_invited_at
                            .map(|t| format!(" at {}", time(t)))
                            .unwrap_or_default();
                        let until = expires
                            .map(|t| format!(", valid until {}", time(t)))
                            .unwrap_or_default();
                        let how = match sent_by {
                            Some(Delivery::Suppress) => format!(
                                "given a temporary password{sent} out of band (the password \
                                 file){until}: ask whoever delivered it"
                            ),
                            Some(Delivery::Sms) => {
                                format!("invited{sent} by SMS{until}: check the phone's messages")
                            }
                            Some(Delivery::Email) | None => format!(
                                "invited{sent} by email from {sender}{until}: look in the spam \
                                 folder"
                            ),
                        };
                        verdict(
                            Verdict::Pending,
                            format!("{how}; ForgotPassword does not work before the first sign-in"),
                        )
                    }
                }
            };
            Diagnosis {
                temp_password_expires_at: expires,
                ..d
            }
        }
        UserStatus::Confirmed => {
            let by_email = recovery.by_email && user.email.is_some() && user.email_verified;
            let by_phone = recovery.by_phone && user.phone.is_some() && user.phone_verified;
            if let (true, false, Some(s)) = (by_email, by_phone, suppressed) {
                verdict(
                    Verdict::Suppressed,
                    format!(
                        "confirmed, but {}: no ForgotPassword code reaches them; correct the \
                         address (and mark it verified), or, once the address is known to work, \
                         remove it from the suppression list (`aws sesv2 \
                         delete-suppressed-destination --email-address ADDRESS`)",
                        wording::suppressed(s)
                    ),
                )
            } else if by_email || by_phone {
                Diagnosis {
                    forgot_password_works: true,
                    ..verdict(
                        Verdict::Recoverable,
                        format!(
                            "confirmed: ForgotPassword sends a code to the verified {}",
                            if by_email { "email" } else { "phone number" }
                        ),
                    )
                }
            } else {
                let fix = if user.email.is_some() {
                    "mark the email verified (`doctor --fix`)"
                } else {
                    "set an email and mark it verified"
                };
                verdict(
                    Verdict::Unrecoverable,
                    format!(
                        "confirmed, but no verified email or phone the pool recovers by: recovery \
                         codes can never reach them; {fix}"
                    ),
                )
            }
        }
        other => verdict(
            Verdict::Other,
            format!("status {other}: an administrator must look at this account"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn user(status: UserStatus) -> RemoteUser {
        crate::cognito::memory::user("taro", "taro@example.jp", status, now() - Duration::days(1))
    }

    fn invited(days_ago: i64) -> History {
        History {
            invited: true,
            last_invited_at: Some(now() - Duration::days(days_ago)),
            ..History::default()
        }
    }

    const MAIL: Mail<'static> = Mail {
        sender: COGNITO_SENDER,
        sent_by: Some(Delivery::Email),
        suppressed: None,
    };

    fn verdict(user: Option<&RemoteUser>, history: &History) -> Diagnosis {
        diagnose(
            user,
            history,
            Duration::days(7),
            Recovery::default(),
            MAIL,
            now(),
        )
    }

    fn bounced() -> Suppressed {
        Suppressed {
            reason: crate::cognito::SuppressionReason::Bounce,
            since: now() - Duration::days(2),
        }
    }

    fn verdict_suppressed(user: &RemoteUser, history: &History) -> Diagnosis {
        let gone = bounced();
        diagnose(
            Some(user),
            history,
            Duration::days(7),
            Recovery::default(),
            Mail {
                suppressed: Some(&gone),
                ..MAIL
            },
            now(),
        )
    }

    /// The suppressed rows of the table: an invitation pending, expired or lost goes nowhere,
    /// whatever its expiry; a confirmed provider who recovers by email only gets no code. With
    /// a verified phone the pool recovers by, the provider still recovers alone.
    #[test]
    fn a_suppressed_address_is_its_own_verdict_with_its_remedy() {
        let fcp = user(UserStatus::ForceChangePassword);
        let lost = History {
            password_lost: true,
            ..invited(1)
        };
        for h in [invited(2), invited(8), lost] {
            let d = verdict_suppressed(&fcp, &h);
            assert_eq!(d.verdict, Verdict::Suppressed, "{h:?}");
            assert!(
                d.remedy.contains(
                    "suppression list (BOUNCE: a message to it bounced, since 2026-11-29T12:00:00Z)"
                ),
                "{}",
                d.remedy
            );
            assert!(
                d.remedy.contains("correct the address in the list"),
                "{}",
                d.remedy
            );
            assert!(
                d.remedy.contains("delete-suppressed-destination"),
                "{}",
                d.remedy
            );
            assert!(!d.verdict.alone());
            assert!(d.temp_password_expires_at.is_some());
        }
        let confirmed = verdict_suppressed(&user(UserStatus::Confirmed), &invited(9));
        assert_eq!(confirmed.verdict, Verdict::Suppressed);
        assert!(
            confirmed.remedy.contains("no ForgotPassword code"),
            "{}",
            confirmed.remedy
        );
        let mut by_phone = user(UserStatus::Confirmed);
        by_phone.phone = Some("+819012345678".into());
        by_phone.phone_verified = true;
        let d = verdict_suppressed(&by_phone, &invited(9));
        assert_eq!(d.verdict, Verdict::Recoverable, "{}", d.remedy);
        assert_eq!(Verdict::Suppressed.as_str(), "suppressed");
    }

    /// One case per row of the table.
    #[test]
    fn every_row_of_the_table() {
        let mut disabled = user(UserStatus::Confirmed);
        disabled.enabled = false;
        let mut unverified = user(UserStatus::Confirmed);
        unverified.email_verified = false;
        let mut no_email = user(UserStatus::Confirmed);
        no_email.email = None;
        let mut by_phone = unverified.clone();
        by_phone.phone = Some("+819012345678".into());
        by_phone.phone_verified = true;
        let lost = History {
            password_lost: true,
            ..invited(1)
        };
        let fcp = user(UserStatus::ForceChangePassword);
        let cases: Vec<(Option<RemoteUser>, History, Verdict, &str)> = vec![
            (
                None,
                History::default(),
                Verdict::NotInPool,
                "never invited",
            ),
            (None, invited(2), Verdict::Deleted, "deleted"),
            (Some(disabled), invited(2), Verdict::Disabled, "disabled"),
            (
                Some(user(UserStatus::ExternalProvider)),
                History::default(),
                Verdict::ExternalProvider,
                "identity provider",
            ),
            (
                Some(user(UserStatus::Unconfirmed)),
                History::default(),
                Verdict::Unconfirmed,
                "confirmation code",
            ),
            (
                Some(user(UserStatus::ResetRequired)),
                invited(30),
                Verdict::ResetRequired,
                "ForgotPassword",
            ),
            (
                Some(fcp.clone()),
                lost,
                Verdict::PasswordLost,
                "nobody received",
            ),
            (
                Some(fcp.clone()),
                invited(8),
                Verdict::Expired,
                "expired at 2026-11-30T12:00:00Z",
            ),
            (Some(fcp), invited(2), Verdict::Pending, "spam folder"),
            (
                Some(user(UserStatus::Confirmed)),
                invited(9),
                Verdict::Recoverable,
                "verified email",
            ),
            (
                Some(by_phone),
                invited(9),
                Verdict::Recoverable,
                "verified phone number",
            ),
            (
                Some(unverified),
                invited(9),
                Verdict::Unrecoverable,
                "mark the email verified",
            ),
            (
                Some(no_email),
                invited(9),
                Verdict::Unrecoverable,
                "set an email",
            ),
            (
                Some(user(UserStatus::Compromised)),
                invited(9),
                Verdict::Other,
                "COMPROMISED",
            ),
        ];
        for (u, h, want, says) in cases {
            let d = verdict(u.as_ref(), &h);
            assert_eq!(d.verdict, want, "{u:?} {h:?}");
            assert!(d.remedy.contains(says), "{want:?}: {}", d.remedy);
            assert_eq!(
                d.forgot_password_works,
                matches!(want, Verdict::Recoverable | Verdict::ResetRequired)
            );
        }
    }

    /// One case per row of `reads_suppression`'s table.
    #[test]
    fn the_suppression_list_is_read_only_where_ses_sends_and_the_verdict_turns_on_it() {
        use crate::cognito::Sender;
        let fcp = user(UserStatus::ForceChangePassword);
        let mut disabled = fcp.clone();
        disabled.enabled = false;
        let mut no_email = fcp.clone();
        no_email.email = None;
        assert!(reads_suppression(&fcp, Sender::Ses));
        assert!(reads_suppression(&user(UserStatus::Confirmed), Sender::Ses));
        assert!(!reads_suppression(&disabled, Sender::Ses));
        assert!(!reads_suppression(&no_email, Sender::Ses));
        assert!(!reads_suppression(
            &user(UserStatus::ResetRequired),
            Sender::Ses
        ));
        for other in [Sender::CognitoEmail, Sender::CustomEmailLambda] {
            assert!(!reads_suppression(&fcp, other), "{other:?}");
        }
    }

    #[test]
    fn pending_names_when_and_from_whom_and_until_when() {
        let d = verdict(Some(&user(UserStatus::ForceChangePassword)), &invited(2));
        assert_eq!(
            d.remedy,
            "invited at 2026-11-29T12:00:00Z by email from no-reply@verificationemail.com, valid \
             until 2026-12-06T12:00:00Z: look in the spam folder; ForgotPassword does not work \
             before the first sign-in"
        );
        assert!(d.verdict.alone());
    }

    #[test]
    fn a_pool_that_recovers_by_phone_only_does_not_count_a_verified_email() {
        let d = diagnose(
            Some(&user(UserStatus::Confirmed)),
            &invited(9),
            Duration::days(7),
            Recovery {
                by_email: false,
                by_phone: true,
            },
            Mail {
                sender: "x",
                sent_by: None,
                suppressed: None,
            },
            now(),
        );
        assert_eq!(d.verdict, Verdict::Unrecoverable);
        assert!(!d.verdict.alone());
    }
}
