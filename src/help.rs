//! The help desk's reads for `doctor`: finding a provider by email or username (the exact name,
//! the username the state remembers, a `ListUsers` filter on email), and the facts about them
//! that the verdict rests on. The verdict itself is `diagnosis`'s; must not write anything.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::calls::Calls;
use crate::cognito::{
    Delivery, Directory, PoolInfo, Recovery, RemoteUser, Sender, Suppressed, UserStatus,
    UsernameMode, limits,
};
use crate::diagnosis::{self, Verdict};
use crate::error::Error;
use crate::input::Row;
use crate::report::{Outcome, RowReport};
use crate::state::{Invitation, Known, State};
use crate::suppression::SuppressionList;

/// What the budget looks like to the help desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BudgetNow {
    /// Invitations sent in the last 24 hours (from the state).
    pub used_last_24_hours: u64,
    /// The cap per 24 hours, where there is one.
    pub limit: Option<u64>,
    /// When the oldest invitation of the window leaves it.
    pub frees_at: Option<DateTime<Utc>>,
}

impl BudgetNow {
    pub fn spent(&self) -> bool {
        self.limit.is_some_and(|l| self.used_last_24_hours >= l)
    }
}

/// The pool facts every verdict shares.
#[derive(Debug, Clone, Serialize)]
pub struct PoolFacts {
    pub account_recovery: Recovery,
    pub email_sending_account: String,
    /// The address invitations come from.
    pub sender: String,
    /// Who sends them: Cognito's own sender, SES with its identity (and the From the provider
    /// sees), or the pool's custom sender Lambda.
    pub sent_by: String,
    pub temporary_password_validity_days: u32,
    pub email_budget: BudgetNow,
    /// Whether the pool logs its message-delivery errors, and where (GetLogDeliveryConfiguration).
    pub delivery_errors: DeliveryErrors,
    /// What fits the pool's sender when an invitation did not arrive (Cognito's own sender).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_advice: Option<String>,
    /// Whether the SES account's suppression list was read for the providers (pools that send
    /// through SES only).
    pub suppression_list: SuppressionRead,
    /// The list itself, read as the providers are examined.
    #[serde(skip)]
    pub list: Arc<SuppressionList>,
}

/// Whether `doctor` could read the SES account's suppression list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionRead {
    /// The pool does not send through SES: SES's list cannot hold its mail back.
    NotSes,
    /// Read for each provider whose verdict could turn on it.
    Read,
    /// Could not be read (no permission, say); said once, and the verdicts stand without it.
    Unknown { why: String },
}

/// Whether the pool sends its message-delivery errors (event source `userNotification`) to logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryErrors {
    /// To this destination (a CloudWatch Logs group, a Firehose stream or an S3 bucket).
    LoggedTo {
        destination: String,
        level: String,
    },
    NotLogged,
    /// Could not be read (no permission, say); said once, never fatal.
    Unknown {
        why: String,
    },
}

impl PoolFacts {
    pub fn new(pool: &PoolInfo, email_budget: BudgetNow, delivery_errors: DeliveryErrors) -> Self {
        PoolFacts {
            account_recovery: pool.recovery,
            email_sending_account: pool.email_sending_account.clone(),
            sender: sender(pool),
            sent_by: sent_by(pool),
            temporary_password_validity_days: pool.temporary_password_validity_days,
            email_budget,
            delivery_errors,
            sender_advice: sender_advice(pool),
            suppression_list: match pool.sender_of(Delivery::Email) {
                Sender::Ses => SuppressionRead::Read,
                _ => SuppressionRead::NotSes,
            },
            list: Arc::new(SuppressionList::of(pool)),
        }
    }

    /// Once the providers are examined: whether a read of the suppression list was refused.
    pub fn settle_suppression_list(&mut self) {
        if let Some(why) = self.list.refused() {
            self.suppression_list = SuppressionRead::Unknown { why };
        }
    }
}

/// Who sends the pool's email, named for a person: Cognito's own sender, SES with the identity
/// the pool sends from and the From the provider sees, or the pool's custom sender Lambda.
fn sent_by(pool: &PoolInfo) -> String {
    match pool.sender_of(Delivery::Email) {
        Sender::Ses => format!(
            "Amazon SES, identity {}{}",
            pool.email_source_arn
                .as_deref()
                .unwrap_or("(no EmailConfiguration.SourceArn)"),
            pool.email_from
                .as_deref()
                .map(|f| format!(", From {f}"))
                .unwrap_or_default()
        ),
        Sender::CustomEmailLambda => {
            "the pool's custom email sender Lambda (LambdaConfig.CustomEmailSender): it, not \
             Cognito, sends the mail"
                .into()
        }
        Sender::CognitoEmail | Sender::Sns | Sender::CustomSmsLambda | Sender::Nobody => {
            format!("Cognito's own sender ({})", diagnosis::COGNITO_SENDER)
        }
    }
}

/// The advice that fits Cognito's own sender, whose mail corporate systems often filter, and
/// which drops messages over its daily cap while the calls succeed.
fn sender_advice(pool: &PoolInfo) -> Option<String> {
    (pool.sender_of(crate::cognito::Delivery::Email) == Sender::CognitoEmail).then(|| {
        format!(
            "Cognito's own sender ({}) is often filtered by corporate mail systems, and over its \
             daily cap messages are dropped while the calls succeed: ask the provider to look in \
             spam and quarantine; for a cohort, send through SES (EmailSendingAccount DEVELOPER)",
            diagnosis::COGNITO_SENDER
        )
    })
}

/// Whether the pool logs its delivery errors, read once for `doctor`: a read that fails is
/// said once and is never fatal.
pub async fn delivery_errors<D: Directory>(calls: &Calls<D>) -> DeliveryErrors {
    match calls.delivery_log().await {
        Ok(done) => match done.value {
            Some(log) => DeliveryErrors::LoggedTo {
                destination: log.destination,
                level: log.level,
            },
            None => DeliveryErrors::NotLogged,
        },
        Err(f) => {
            tracing::warn!(
                "whether the pool logs message-delivery errors is unknown: {}",
                f.error
            );
            DeliveryErrors::Unknown {
                why: f.error.to_string(),
            }
        }
    }
}

/// Where invitations come from: Cognito's own sender, or the pool's SES identity.
fn sender(pool: &PoolInfo) -> String {
    match pool.sender_of(crate::cognito::Delivery::Email) {
        Sender::CognitoEmail => return diagnosis::COGNITO_SENDER.into(),
        Sender::CustomEmailLambda => return "the pool's custom email sender (a Lambda)".into(),
        Sender::Ses | Sender::Sns | Sender::CustomSmsLambda | Sender::Nobody => {}
    }
    pool.email_source_arn
        .as_deref()
        .and_then(|arn| arn.split_once(":identity/"))
        .map(|(_, identity)| identity.to_string())
        .unwrap_or_else(|| "the pool's SES identity".into())
}

/// One provider, as the help desk sees them.
#[derive(Debug, Clone, Serialize)]
pub struct Examined {
    pub id: String,
    pub username: Option<String>,
    pub verdict: Verdict,
    pub remedy: String,
    pub exists: bool,
    pub status: Option<String>,
    pub enabled: Option<bool>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub phone_number: Option<String>,
    pub phone_number_verified: Option<bool>,
    pub invitations: Vec<Invitation>,
    pub temp_password_expires_at: Option<DateTime<Utc>>,
    pub forgot_password_works: bool,
    /// The address is on the SES account's suppression list: why, and since when (read only
    /// for pools that send through SES).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppressed>,
    /// No invitation can go out before the budget frees.
    pub budget_spent: bool,
    /// The user as read, and the state's key for it: what `--fix` works on, without reading
    /// the provider again.
    #[serde(skip)]
    pub found: Option<(RemoteUser, Option<String>)>,
}

impl Examined {
    /// Whether `doctor --fix` has a safe remedy: a new invitation for an expired or lost one,
    /// or marking an existing email verified. Never a confirmed user's password.
    pub fn fixable(&self) -> bool {
        match self.verdict {
            Verdict::Expired | Verdict::PasswordLost => true,
            Verdict::Unrecoverable => self.email.is_some() && self.email_verified == Some(false),
            Verdict::InvalidId
            | Verdict::NotInPool
            | Verdict::Deleted
            | Verdict::Pending
            | Verdict::Recoverable
            | Verdict::ResetRequired
            | Verdict::Disabled
            | Verdict::ExternalProvider
            | Verdict::Unconfirmed
            | Verdict::Other
            | Verdict::Suppressed => false,
        }
    }
}

/// Finds a provider: by the exact name; then by the username the state remembers for it;
/// then, for an email, by a `ListUsers` filter on email (a user created under another
/// username). Returns the user and the state's key for it.
pub async fn find<D: Directory>(
    calls: &Calls<D>,
    known: &HashMap<String, Known>,
    id: &str,
) -> Result<(Option<RemoteUser>, Option<String>), Error> {
    let lower = id.to_lowercase();
    let key = [id, lower.as_str()]
        .into_iter()
        .find(|k| known.contains_key(*k))
        .map(str::to_string);
    let mut names = vec![id.to_string()];
    if let Some(remembered) = key.as_ref().and_then(|k| known[k].username.clone()) {
        names.push(remembered);
    }
    // Only what Cognito could take as a username is asked for as one: anything else would be
    // a validation error from the real service, not an answer.
    for name in names
        .iter()
        .filter(|n| limits::username_problem(n).is_none())
    {
        if let Some(user) = calls.get_user(name).await?.value {
            let key = key.or_else(|| key_of(known, &user));
            return Ok((Some(user), key));
        }
    }
    if id.contains('@') {
        let emails = if lower == id {
            vec![id]
        } else {
            vec![id, &lower]
        };
        for filter in emails
            .into_iter()
            .filter_map(|e| limits::equals_filter("email", e))
        {
            if let Some(user) = calls.users(Some(&filter)).await?.into_iter().next() {
                let key = key.or_else(|| key_of(known, &user));
                return Ok((Some(user), key));
            }
        }
    }
    Ok((None, key))
}

/// A help-desk ID as it was typed, trimmed and checked before any call: a username Cognito
/// could hold, or an address it could search for. `Err` says why nobody can be found by it, and
/// nothing is sent for it.
pub fn checked_id(typed: &str) -> Result<String, String> {
    let id = typed.trim();
    if id.is_empty() {
        return Err("the ID is empty".into());
    }
    let Some(why) = limits::username_problem(id) else {
        return Ok(id.to_string());
    };
    let searchable = id.contains('@')
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
        && limits::equals_filter("email", id).is_some();
    if searchable {
        Ok(id.to_string())
    } else if id.contains('@') {
        Err(format!(
            "not an email address Cognito could search for, nor a username: {why}"
        ))
    } else {
        Err(format!(
            "not a username Cognito could hold ({why}); give the provider's email or username"
        ))
    }
}

/// The report row of an ID that [`checked_id`] refused: nothing was sent for it.
pub fn invalid_id(line: u64, typed: &str, why: &str) -> RowReport {
    let mut r = RowReport::new(line, typed.trim().to_string(), None, Outcome::Invalid);
    r.reason = format!("ID {}: {why}; nothing was sent", quoted(typed.trim()));
    r
}

/// An ID quoted for a reason, cut to a readable length.
fn quoted(id: &str) -> String {
    const SHOWN: usize = 60;
    if id.chars().count() > SHOWN {
        let cut: String = id.chars().take(SHOWN).collect();
        format!("\"{cut}…\" ({} characters)", id.chars().count())
    } else {
        format!("\"{id}\"")
    }
}

/// The state's key for a user it knows by username.
fn key_of(known: &HashMap<String, Known>, user: &RemoteUser) -> Option<String> {
    known
        .iter()
        .find(|(_, k)| k.username.as_deref() == Some(user.username.as_str()))
        .map(|(key, _)| key.clone())
}

/// Whether SES drops mail to the user's address, where `doctor` reads the suppression list for
/// them ([`diagnosis::reads_suppression`]); `None` when it is not on it, or not known.
async fn suppressed<D: Directory>(
    calls: &Calls<D>,
    pool: &PoolInfo,
    facts: &PoolFacts,
    user: Option<&RemoteUser>,
) -> Option<Suppressed> {
    let user = user.filter(|u| diagnosis::reads_suppression(u, pool.sender_of(Delivery::Email)))?;
    let email = user.email.as_deref().unwrap_or_default();
    match facts.list.read(calls, email).await {
        crate::plan::Suppression::Suppressed(s) => Some(s),
        crate::plan::Suppression::Clear | crate::plan::Suppression::Unknown => None,
    }
}

/// Examines one provider: finds them, diagnoses them, and gathers the facts.
pub async fn examine<D: Directory>(
    calls: &Calls<D>,
    pool: &PoolInfo,
    facts: &PoolFacts,
    state: &State,
    known: &HashMap<String, Known>,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Examined, Error> {
    let (user, key) = find(calls, known, id).await?;
    let history = key
        .as_ref()
        .and_then(|k| known.get(k))
        .map(Known::history)
        .unwrap_or_default();
    let invitations = match &key {
        Some(k) => state.invitations_of(crate::state::Subject::new(&pool.id, k))?,
        None => Vec::new(),
    };
    let suppressed = suppressed(calls, pool, facts, user.as_ref()).await;
    let d = diagnosis::diagnose(
        user.as_ref(),
        &history,
        chrono::Duration::days(i64::from(pool.temporary_password_validity_days)),
        pool.recovery,
        diagnosis::Mail {
            sender: &facts.sender,
            sent_by: invitations
                .iter()
                .rev()
                .find(|i| i.outcome == "sent")
                .map(|i| i.medium),
            suppressed: suppressed.as_ref(),
        },
        now,
    );
    let budget_spent = facts.email_budget.spent()
        && matches!(
            d.verdict,
            Verdict::Expired | Verdict::PasswordLost | Verdict::NotInPool
        );
    let remedy = match (budget_spent, facts.email_budget.frees_at) {
        (true, Some(at)) => format!(
            "{}; the email budget is spent: nothing can go out until {}",
            d.remedy,
            crate::report::wording::time(at)
        ),
        (true, None) => format!("{}; the email budget is spent", d.remedy),
        (false, _) => d.remedy,
    };
    Ok(Examined {
        id: id.to_string(),
        username: user.as_ref().map(|u| u.username.clone()),
        verdict: d.verdict,
        remedy,
        exists: user.is_some(),
        status: user.as_ref().map(|u| u.status.to_string()),
        enabled: user.as_ref().map(|u| u.enabled),
        email: user.as_ref().and_then(|u| u.email.clone()),
        email_verified: user.as_ref().map(|u| u.email_verified),
        phone_number: user.as_ref().and_then(|u| u.phone.clone()),
        phone_number_verified: user.as_ref().map(|u| u.phone_verified),
        invitations,
        temp_password_expires_at: d.temp_password_expires_at,
        forgot_password_works: d.forgot_password_works,
        suppressed,
        budget_spent,
        found: user.map(|u| (u, key)),
    })
}

/// A provider `doctor` could not look for: the ID [`checked_id`] refused, and why.
pub fn invalid(typed: &str, why: String) -> Examined {
    Examined {
        id: typed.trim().to_string(),
        username: None,
        verdict: Verdict::InvalidId,
        remedy: format!("{why}; nothing was sent"),
        exists: false,
        status: None,
        enabled: None,
        email: None,
        email_verified: None,
        phone_number: None,
        phone_number_verified: None,
        invitations: Vec::new(),
        temp_password_expires_at: None,
        forgot_password_works: false,
        suppressed: None,
        budget_spent: false,
        found: None,
    }
}

/// The `doctor` report.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub run_id: String,
    pub command: &'static str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub user_pool_id: String,
    pub pool: PoolFacts,
    /// Providers per verdict.
    pub summary: std::collections::BTreeMap<Verdict, u64>,
    pub calls: std::collections::BTreeMap<String, u64>,
    pub providers: Vec<Examined>,
    /// What `--fix` did, row by row, as `run` reports it.
    pub fixes: Vec<RowReport>,
}

impl DoctorReport {
    /// Every provider can sign in or recover alone, or some need an action.
    pub fn ending(&self) -> crate::error::Ending {
        if self.providers.iter().all(|p| p.verdict.alone()) {
            crate::error::Ending::Settled
        } else {
            crate::error::Ending::RowsFailed
        }
    }
}

/// The email budget as it stands now: the cap (the settings', or Cognito's 50 with its own
/// sender) and what the state counts in the last 24 hours.
pub fn budget_now(
    pool: &PoolInfo,
    cap: Option<u32>,
    state: &State,
    now: DateTime<Utc>,
) -> Result<BudgetNow, Error> {
    use crate::cognito::Delivery;
    let day = chrono::Duration::hours(24);
    let limit = cap
        .or(pool
            .uses_cognito_email()
            .then_some(crate::budget::COGNITO_DEFAULT_DAILY_EMAILS))
        .map(u64::from);
    let sender = pool.sender(Delivery::Email).expect("an email has a sender");
    // One read: how many, and when the oldest leaves the window.
    let times = state.message_times_since(now - day, Delivery::Email, &sender)?;
    let used = times.len() as u64;
    let frees_at = times.first().map(|t| *t + day);
    Ok(BudgetNow {
        used_last_24_hours: used,
        limit,
        frees_at,
    })
}

/// The row `run`'s state machine carries out for a provider the help desk found.
pub fn row(line: u64, id: &str, user: &RemoteUser, key: Option<String>, pool: &PoolInfo) -> Row {
    let email = user.email.clone().unwrap_or_else(|| id.to_string());
    Row {
        line,
        key: key.unwrap_or_else(|| email.to_lowercase()),
        username: (pool.username_mode != UsernameMode::Email).then(|| user.username.clone()),
        email,
        attributes: Vec::new(),
        groups: Vec::new(),
    }
}

/// A provider `reissue` will not re-invite, and why.
pub fn refused(line: u64, id: &str, user: Option<&RemoteUser>) -> RowReport {
    let mut r = RowReport::new(line, id.to_string(), None, Outcome::Attention);
    r.username = user.map(|u| u.username.clone());
    r.status_before = user.map(|u| u.status.clone());
    r.reason = match user {
        None => "not in the pool: `run` invites providers who are not there yet".into(),
        Some(u) if u.status == UserStatus::Confirmed => {
            "confirmed: the provider has set a password; for a lost one use `reset`".into()
        }
        Some(u) => format!(
            "status {}: only providers who have not signed in yet (FORCE_CHANGE_PASSWORD) get a \
             new invitation",
            u.status
        ),
    };
    r
}
