//! What the reports say, in one place: the sentence for each decision, deferral and invitation,
//! shared by `run` (what it did) and `status` (what `run` would do). Pure; must not decide
//! anything, only put decisions into words.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::cognito::Delivery;
use crate::plan::{Action, Attention, Decision, Keep, ReissueCause, ReissueMethod};
use crate::report::{Act, Deferral, Stuck};

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The report's name for a decision.
pub fn act(action: &Action) -> Act {
    match action {
        Action::Create => Act::Create,
        Action::Reissue { .. } => Act::Reissue,
        Action::Keep(_) => Act::Skip,
        Action::Attention(_) => Act::Attention,
    }
}

/// Where the help desk will be asked about a provider that needs a person, if it is one of the
/// questions listed on their own (the page, `status`).
pub fn stuck(action: &Action) -> Option<Stuck> {
    match action {
        Action::Attention(Attention::Suppressed(s)) => Some(Stuck::Suppressed(s.clone())),
        Action::Attention(Attention::ReissueLimit { reissues, .. }) => Some(Stuck::ReissueLimit {
            reissues: *reissues,
        }),
        Action::Attention(
            Attention::Disabled
            | Attention::Status(_)
            | Attention::EmailMismatch { .. }
            | Attention::ExistsAs { .. }
            | Attention::Deleted
            | Attention::NoEmail,
        )
        | Action::Create
        | Action::Reissue { .. }
        | Action::Keep(_) => None,
    }
}

/// Why SES drops an address's mail, and since when.
pub fn suppressed(s: &crate::cognito::Suppressed) -> String {
    let why = match s.reason {
        crate::cognito::SuppressionReason::Bounce => "a message to it bounced",
        crate::cognito::SuppressionReason::Complaint => "its owner marked a message as spam",
    };
    format!(
        "the address is on the SES account's suppression list ({}: {why}, since {}), so SES \
         drops every message to it",
        s.reason.as_str(),
        time(s.since)
    )
}

/// What to do about a suppressed address.
pub const SUPPRESSED_REMEDY: &str = "correct the address in the list (`run --update attributes` \
    writes it), or, once the address is known to work, remove it from the suppression list \
    (`aws sesv2 delete-suppressed-destination --email-address ADDRESS`); then `reissue`";

/// Why a user is left alone.
pub fn keep(k: &Keep) -> String {
    match k {
        Keep::Pending {
            expires_at: Some(at),
        } => format!(
            "invitation pending; temporary password valid until {}",
            time(*at)
        ),
        Keep::Pending { expires_at: None } => {
            "invitation pending; its expiry is not known".to_string()
        }
        Keep::Expired { expired_at } => format!(
            "invitation expired at {}; not re-issued (--reissue never)",
            time(*expired_at)
        ),
        Keep::Confirmed => "confirmed: the provider has set a password".to_string(),
        Keep::RecentlySent { at } => format!(
            "invitation pending; the last one went out at {}, less than 15 minutes ago: not sent \
             again yet (Cognito may hold back repeated messages to one address)",
            time(*at)
        ),
    }
}

/// Why a user needs a person.
pub fn attention(a: &Attention) -> String {
    match a {
        Attention::Disabled => "the user is disabled; nothing was changed".to_string(),
        Attention::Status(s) => {
            format!("status {s} is not one this tool manages; nothing was changed")
        }
        Attention::ReissueLimit {
            reissues,
            expired_at,
        } => format!(
            "invitation expired at {} after {reissues} re-issues (--max-reissues); not invited again",
            time(*expired_at)
        ),
        Attention::Deleted => {
            "this tool invited the user, and it has since been deleted from the pool; not re-created"
                .to_string()
        }
        Attention::ExistsAs { username } => format!(
            "this provider already exists in the pool as {username}; nothing was created beside it"
        ),
        Attention::NoEmail => "the user has no email in the pool: it cannot be verified and \
                               recovery codes can never reach the provider; set the email"
            .to_string(),
        Attention::Suppressed(s) => format!(
            "{}: not re-issued, nothing spent; {SUPPRESSED_REMEDY}",
            suppressed(s)
        ),
        Attention::EmailMismatch { remote } => format!(
            "a user with this username exists with another email ({}); nothing was changed \
             (`run --update attributes` writes the row's email, verified)",
            remote.as_deref().unwrap_or("none")
        ),
    }
}

/// Why an invitation by `medium` waits for a later run.
pub fn deferral(d: Deferral, medium: Delivery) -> String {
    let medium = match medium {
        Delivery::Email | Delivery::Suppress => "email",
        Delivery::Sms => "SMS",
    };
    match d {
        Deferral::Budget => format!(
            "{medium} budget for the last 24 hours is spent; a later run sends this invitation"
        ),
        Deferral::MessageLimit => format!(
            "Cognito's daily {medium} limit was reached (LimitExceededException); a later run sends this invitation"
        ),
        Deferral::NotStarted => "not started: the run was stopped before this row".to_string(),
        Deferral::Stopped => "stopped: the run was stopped before this row's next call to \
                              Cognito; what it had written stays, and a later run finishes it"
            .to_string(),
        Deferral::Busy => "the shared state is busy with this provider (another run or \
                           help-desk command is inviting them right now, or DynamoDB kept \
                           throttling); nothing was sent, and a later run sees to it"
            .to_string(),
    }
}

/// A create that Cognito carried out before its daily email limit refused the message.
pub fn created_not_sent() -> &'static str {
    "created, but Cognito's daily email limit was reached (LimitExceededException) before the \
     invitation went out; a later run re-issues it"
}

/// What a create that went through did.
pub fn created(delivery: Delivery, answer_lost: bool) -> &'static str {
    match (answer_lost, delivery) {
        (true, _) => "created (an earlier answer was lost; re-reading found the user)",
        (false, Delivery::Email) => "created; invitation sent by email",
        (false, Delivery::Sms) => "created; invitation sent by SMS",
        (false, Delivery::Suppress) => "created; no message sent, password in the password file",
    }
}

/// What a re-issue that went through did.
pub fn reissued(method: ReissueMethod, cause: ReissueCause) -> String {
    match (method, cause) {
        (ReissueMethod::Resend, ReissueCause::Expired { at }) => format!(
            "invitation had expired at {}; re-sent with a new temporary password",
            time(at)
        ),
        (ReissueMethod::Resend, ReissueCause::PasswordLost | ReissueCause::Always) => {
            "re-sent with a new temporary password".to_string()
        }
        (ReissueMethod::SetPassword, _) => {
            "new temporary password set (no message); it is in the password file".to_string()
        }
    }
}

/// The prefix of a deferral's reason, saying what was deferred.
pub fn deferred_what(action: &Action) -> &'static str {
    match action {
        Action::Reissue { .. } => "invitation expired; re-issue deferred: ",
        Action::Create | Action::Keep(_) | Action::Attention(_) => "",
    }
}

/// A dry run's row: what would be done.
pub fn planned(d: &Decision) -> String {
    let what = match &d.action {
        Action::Create => "would create and invite".to_string(),
        Action::Reissue { .. } => "would re-issue the invitation".to_string(),
        Action::Keep(k) => keep(k),
        Action::Attention(a) => attention(a),
    };
    let mut parts = Vec::new();
    if d.verify_email {
        parts.push("would set email_verified".to_string());
    }
    match (&d.action, d.add_groups.is_empty()) {
        (_, true) => {}
        (Action::Create, false) => parts.push(format!("groups {}", d.add_groups.join(", "))),
        (_, false) => parts.push(format!("would add to {}", d.add_groups.join(", "))),
    }
    let c = &d.changes;
    let set = c.set_names();
    let set: Vec<&String> = set.iter().collect();
    if !set.is_empty() {
        parts.push(format!("would update {}", join(&set)));
    }
    if !c.delete.is_empty() {
        parts.push(format!("would delete {}", c.delete.join(", ")));
    }
    if !c.remove_groups.is_empty() {
        parts.push(format!("would remove from {}", c.remove_groups.join(", ")));
    }
    if !c.immutable.is_empty() {
        parts.push(immutable(&c.immutable));
    }
    let extras: String = parts.iter().map(|p| format!("; {p}")).collect();
    format!("dry run: {what}{extras}")
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A confirmed provider with an unchanged row that an incremental run did not read.
pub fn not_reread(last_read: DateTime<Utc>) -> String {
    format!(
        "confirmed (not re-read; last seen {}); `--refresh full` reads it now",
        time(last_read)
    )
}

/// What `run --update` wrote, in the report's reason (names only, never values).
pub fn updated(set: &[&String], deleted: &[String]) -> String {
    let mut parts = Vec::new();
    if !set.is_empty() {
        parts.push(format!("updated {}", join(set)));
    }
    if !deleted.is_empty() {
        parts.push(format!("deleted {}", deleted.join(", ")));
    }
    parts.join(", ")
}

/// Immutable attributes the row would change: the job never tries (Cognito refuses every time).
pub fn immutable(names: &[String]) -> String {
    format!(
        "{} differ{} from the row but the pool's schema makes {} immutable: \
         fix the row, or recreate the user by hand",
        names.join(", "),
        if names.len() == 1 { "s" } else { "" },
        if names.len() == 1 { "it" } else { "them" }
    )
}

/// Where a provider stands, for `status`: what `run` would do for it now, in the same words as
/// `run`'s report where `run` would leave it alone. `reissues`: re-issues so far.
pub fn standing(action: &Action, reissues: u32) -> String {
    match action {
        Action::Create => "not in the pool yet; `run` creates it".to_string(),
        Action::Reissue { cause, .. } => match cause {
            ReissueCause::Expired { at } => format!(
                "invitation expired at {}; `run` re-issues it (re-issued {reissues} times so far)",
                time(*at)
            ),
            ReissueCause::PasswordLost => {
                "nobody has its temporary password (a run stopped before recording it); `run` re-issues it"
                    .to_string()
            }
            ReissueCause::Always => {
                "invitation pending; `run` re-issues it on every run (--reissue always)".to_string()
            }
        },
        Action::Keep(k) => keep(k),
        Action::Attention(a) => attention(a),
    }
}

/// Who took a provider off, in words, and how it comes back; `present`: still in the pool
/// (disabled), else deleted.
pub fn offboarded(by: Option<&crate::plan::DisabledBy>, present: bool) -> String {
    let Some(by) = by else {
        return "disabled by someone other than this tool".into();
    };
    let list = by
        .cohort
        .as_deref()
        .map(|c| format!(" of cohort {c}"))
        .unwrap_or_default();
    if present {
        format!(
            "offboarded: disabled by this tool's run {}{list} on {}; `enable` brings it back \
             (the same sub and password)",
            by.run,
            time(by.at)
        )
    } else {
        format!(
            "offboarded: deleted by this tool's run {}{list} on {}",
            by.run,
            time(by.at)
        )
    }
}
