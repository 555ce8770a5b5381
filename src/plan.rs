//! Deciding what to do for one provider: a pure function of the row, the user as read from the
//! pool, the job's own history of that user, the run's policy and the time. `run` carries the
//! decision out; `status` reports it as the provider's standing, so the two cannot disagree.
//! Must not do I/O or read the clock.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::cognito::{
    Delivery, PoolInfo, RemoteUser, Sender, Suppressed, UserStatus, UsernameMode,
};
use crate::input::Row;

/// When a user still in FORCE_CHANGE_PASSWORD gets a new temporary password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reissue {
    /// Only once the temporary password has expired.
    Expired,
    /// Never: report expired users as pending.
    Never,
    /// Every run (use with care: each re-issue sends a message).
    Always,
}

/// What the job remembers of a user from earlier runs (empty for a user it never saw).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// When the job last sent this user an invitation (create or re-issue) that went out.
    pub last_invited_at: Option<DateTime<Utc>>,
    /// Re-issues the job has sent this user so far.
    pub reissues: u32,
    /// Groups the job has already put this user in.
    pub groups_done: Vec<String>,
    /// The job invited this user in an earlier run (an invitation went out).
    pub invited: bool,
    /// The last temporary password was set in suppress mode but never reached the password
    /// file (the run died in between), or its message never went out: nobody knows it, so it
    /// must be re-issued.
    pub password_lost: bool,
    /// When the job last sent this user a message (an email or SMS invitation).
    pub last_message_at: Option<DateTime<Utc>>,
    /// This tool disabled the user (offboarded it): in which run, of which list, when.
    pub disabled_by: Option<DisabledBy>,
}

/// Who offboarded a provider: the run of this tool that disabled it, its list, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledBy {
    pub run: String,
    pub cohort: Option<String>,
    pub at: DateTime<Utc>,
}

/// Cognito may hold back repeated messages to one address in a short time: `--reissue always`
/// sends no second message to a provider within this interval.
pub const MIN_RESEND_INTERVAL: Duration = Duration::minutes(15);

/// What kind of invitation the job sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteKind {
    Create,
    Resend,
    SetPassword,
}

/// Whether `run` re-reads every provider or only those that may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Refresh {
    /// Read the rows that are new, changed, pending or due for their periodic re-read.
    Auto,
    /// Read every row.
    Full,
}

/// How long a provider seen `CONFIRMED` goes without a re-read, by default.
pub const DEFAULT_REFRESH_AFTER: Duration = Duration::days(7);

/// What the state remembers of a row's provider, for deciding whether to read it again.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    pub status: Option<&'a UserStatus>,
    pub enabled: Option<bool>,
    /// The digest of the row when the provider was last in step with it.
    pub digest: Option<&'a str>,
    /// When the provider was last read while `CONFIRMED`.
    pub read_at: Option<DateTime<Utc>>,
    /// A write-ahead intent (invitation or update) a killed run left open.
    pub open: bool,
}

/// Why a row is read from Cognito this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadCause {
    /// `--refresh full`.
    Full,
    /// The state has not seen this provider.
    New,
    /// The row differs from the one the provider was last in step with.
    Changed,
    /// Not last seen confirmed and enabled: pending, or needing attention.
    NotConfirmed,
    /// A killed run left an intent to settle.
    Unsettled,
    /// Its periodic re-read is due.
    Due,
}

/// Whether a row must be read this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reread {
    Read(ReadCause),
    /// Confirmed with an unchanged row, read at this time: not read again yet.
    Skip {
        last_read: DateTime<Utc>,
    },
}

/// Each provider's re-read comes after between half and all of `refresh_after`, by a fraction
/// fixed per key: a cohort that confirmed on one day is re-read over many runs, not in one.
pub fn reread_after(key: &str, refresh_after: Duration) -> Duration {
    // FNV-1a: a stable hash, the same on every machine and in every version.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let fraction = 0.5 + 0.5 * ((hash % 10_000) as f64 / 10_000.0);
    Duration::milliseconds((refresh_after.num_milliseconds() as f64 * fraction) as i64)
}

/// Whether `run` reads a row's user from Cognito this run.
///
/// | `--refresh` | what the state remembers                                   | read?                 |
/// |-------------|------------------------------------------------------------|-----------------------|
/// | `full`      | anything                                                   | `Read(Full)`          |
/// | `auto`      | nothing (a new provider)                                   | `Read(New)`           |
/// | `auto`      | an open intent (a killed run)                              | `Read(Unsettled)`     |
/// | `auto`      | not last seen `CONFIRMED` and enabled                      | `Read(NotConfirmed)`  |
/// | `auto`      | confirmed, but the row's digest differs (or none recorded) | `Read(Changed)`       |
/// | `auto`      | confirmed, unchanged, never read as such, or due ([`reread_after`]) | `Read(Due)`  |
/// | `auto`      | confirmed, unchanged, read recently                        | `Skip`                |
///
/// A provider deleted or disabled by someone else is noticed at its next periodic re-read at
/// the latest (`status --all` sees it at once).
pub fn reread(
    key: &str,
    digest: &str,
    seen: Option<&Seen<'_>>,
    refresh: Refresh,
    refresh_after: Duration,
    now: DateTime<Utc>,
) -> Reread {
    if refresh == Refresh::Full {
        return Reread::Read(ReadCause::Full);
    }
    let Some(seen) = seen else {
        return Reread::Read(ReadCause::New);
    };
    if seen.open {
        return Reread::Read(ReadCause::Unsettled);
    }
    if seen.status != Some(&UserStatus::Confirmed) || seen.enabled != Some(true) {
        return Reread::Read(ReadCause::NotConfirmed);
    }
    if seen.digest != Some(digest) {
        return Reread::Read(ReadCause::Changed);
    }
    match seen.read_at {
        Some(at) if now - at < reread_after(key, refresh_after) => Reread::Skip { last_read: at },
        _ => Reread::Read(ReadCause::Due),
    }
}

/// Clock difference tolerated between this machine and Cognito when comparing its timestamps
/// with ours.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Whether an invitation whose result was never recorded (the run died around the call) went
/// through, judged from the user as Cognito shows it now: a create went through if the user
/// exists and was created around or after the intent; a re-issue if the user was modified
/// around or after it.
pub fn intent_went_through(
    kind: InviteKind,
    intent_at: DateTime<Utc>,
    remote: Option<&RemoteUser>,
) -> bool {
    let Some(user) = remote else {
        return false;
    };
    let since = intent_at - CLOCK_SKEW;
    match kind {
        InviteKind::Create => user.created.is_none_or(|c| c >= since),
        InviteKind::Resend | InviteKind::SetPassword => {
            user.last_modified.is_some_and(|m| m >= since)
        }
    }
}

/// What `run --update` brings in line with the row, for users that exist already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Update {
    /// `--update attributes`: write the attribute cells that differ from the user's values.
    pub attributes: bool,
    /// `--update groups`: also take the user out of the groups the file manages and the row no
    /// longer lists.
    pub groups: bool,
    /// `--clear-empty` (with `attributes`): an empty cell deletes the attribute.
    pub clear_empty: bool,
}

/// One part of `--update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdatePart {
    Attributes,
    Groups,
}

impl Update {
    /// `--update`'s parts and `--clear-empty`, which only means something with `attributes`.
    pub fn of(parts: &[UpdatePart], clear_empty: bool) -> Result<Update, &'static str> {
        let attributes = parts.contains(&UpdatePart::Attributes);
        if clear_empty && !attributes {
            return Err(
                "--clear-empty needs --update attributes (it deletes attributes whose cell is empty)",
            );
        }
        Ok(Update {
            attributes,
            groups: parts.contains(&UpdatePart::Groups),
            clear_empty,
        })
    }

    /// The mode as words, for the report and the row digest: "create-only", or the parts of
    /// `--update` with `clear-empty`.
    pub fn label(self) -> String {
        if !(self.attributes || self.groups) {
            return "create-only".to_string();
        }
        let parts = [
            (self.attributes, "attributes"),
            (self.groups, "groups"),
            (self.clear_empty, "clear-empty"),
        ];
        parts
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What an update compares against: the run's `--update`, and what the file and the pool say.
#[derive(Debug, Clone, Default)]
pub struct Updating {
    pub what: Update,
    /// The file's attribute columns (not email, username or groups): a column with no value in
    /// a row is an empty cell there.
    pub columns: Vec<String>,
    /// The groups the file manages: every group named anywhere in its `groups` column.
    pub managed_groups: BTreeSet<String>,
    /// Attributes the pool's schema makes immutable (`Mutable=false`).
    pub immutable: BTreeSet<String>,
}

/// The run's settings that decisions depend on.
#[derive(Debug, Clone)]
pub struct Policy {
    pub reissue: Reissue,
    pub delivery: Delivery,
    /// The pool's `TemporaryPasswordValidityDays`.
    pub validity: Duration,
    /// With `--reissue expired`: re-issue at most this many times per user.
    pub max_reissues: u32,
    /// The pool's `UsernameConfiguration.CaseSensitive`.
    pub case_sensitive: bool,
    /// The pool uses email as the username: a user's name is its email.
    pub email_is_username: bool,
    /// `--reissue always` sends no second message to a provider within this interval
    /// ([`MIN_RESEND_INTERVAL`]; zero for an operator's explicit `reissue`).
    pub resend_interval: Duration,
    /// `run --update`: `None` creates, re-issues and adds missing groups only.
    pub update: Option<Updating>,
}

impl Policy {
    /// The policy of a run on `pool`.
    pub fn new(reissue: Reissue, delivery: Delivery, max_reissues: u32, pool: &PoolInfo) -> Self {
        Policy {
            reissue,
            delivery,
            validity: Duration::days(i64::from(pool.temporary_password_validity_days)),
            max_reissues,
            case_sensitive: pool.case_sensitive,
            email_is_username: pool.username_mode == UsernameMode::Email,
            resend_interval: MIN_RESEND_INTERVAL,
            update: None,
        }
    }

    /// The policy of `run --update`, comparing against the file's columns and managed groups.
    pub fn updating(
        self,
        what: Update,
        pool: &PoolInfo,
        columns: Vec<String>,
        managed_groups: BTreeSet<String>,
    ) -> Self {
        let update = (what.attributes || what.groups).then(|| Updating {
            what,
            columns,
            managed_groups,
            immutable: pool
                .schema
                .iter()
                .filter(|(_, a)| !a.mutable)
                .map(|(n, _)| n.clone())
                .collect(),
        });
        Policy { update, ..self }
    }

    /// `--update`'s parts (all off for a create-only run).
    pub fn update_mode(&self) -> Update {
        self.update.as_ref().map(|u| u.what).unwrap_or_default()
    }

    fn updates(&self, f: impl Fn(&Update) -> bool) -> bool {
        self.update.as_ref().is_some_and(|u| f(&u.what))
    }

    /// An operator's explicit re-issue: now, whatever the expiry, the cap or the last message.
    pub fn explicit_reissue(self) -> Self {
        Policy {
            reissue: Reissue::Always,
            max_reissues: u32::MAX,
            resend_interval: Duration::zero(),
            ..self
        }
    }
}

/// How a new temporary password reaches an existing user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReissueMethod {
    /// AdminCreateUser with MessageAction=RESEND: sends a new invitation.
    Resend,
    /// AdminSetUserPassword with Permanent=false: sends nothing (suppress delivery).
    SetPassword,
}

/// Why a user is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Invited, temporary password still valid (or its expiry cannot be known).
    Pending { expires_at: Option<DateTime<Utc>> },
    /// Invitation expired, and the run does not re-issue (`--reissue never`).
    Expired { expired_at: DateTime<Utc> },
    /// The provider has set a password.
    Confirmed,
    /// `--reissue always`, but the last message went out less than [`MIN_RESEND_INTERVAL`] ago.
    RecentlySent { at: DateTime<Utc> },
}

/// Why a user needs a person to look at it; the job changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attention {
    Disabled,
    /// A status the job does not manage (RESET_REQUIRED, UNCONFIRMED, EXTERNAL_PROVIDER, ...).
    Status(UserStatus),
    /// The invitation expired again after `--max-reissues` re-issues.
    ReissueLimit {
        reissues: u32,
        expired_at: DateTime<Utc>,
    },
    /// The key matched a user whose email is not the row's.
    EmailMismatch {
        remote: Option<String>,
    },
    /// The provider exists under another name: the same name in another case (in a
    /// case-sensitive pool, a different user), or, for rows keyed by email, another username
    /// with the row's email. Creating beside it would give the provider two accounts.
    ExistsAs {
        username: String,
    },
    /// The job invited this user before, and someone has since deleted it from the pool.
    Deleted,
    /// The user has no email in the pool: it cannot be verified, and recovery codes can never
    /// reach the provider.
    NoEmail,
    /// The invitation would go out through SES to an address on the account's suppression
    /// list, which SES drops: not re-issued, nothing spent ([`screen`]).
    Suppressed(Suppressed),
}

/// Why an invitation is issued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReissueCause {
    /// The temporary password expired at this time (`--reissue expired`, under the cap).
    Expired { at: DateTime<Utc> },
    /// Nobody knows the temporary password: a suppress-mode run died before writing it down.
    PasswordLost,
    /// `--reissue always`.
    Always,
}

/// The main thing to do for a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Reissue {
        method: ReissueMethod,
        cause: ReissueCause,
    },
    Keep(Keep),
    Attention(Attention),
}

/// What the row asks for: the provider's email, the name it has (or would be created with) in
/// the pool, its groups and its attribute cells.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub groups: &'a [String],
    /// Attribute cells, trimmed (phone numbers in E.164), empty cells left out.
    pub attributes: &'a [(String, String)],
    /// The row is keyed by its username, so its email is an attribute that may change.
    pub keyed_by_username: bool,
}

/// Changes `run --update` makes to an existing user so that it matches its row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Attributes to write, in one AdminUpdateUserAttributes call. A new email comes with
    /// `email_verified=true`.
    pub set: Vec<(String, String)>,
    /// Attributes to delete (`--clear-empty`), in one AdminDeleteUserAttributes call.
    pub delete: Vec<String>,
    /// Managed groups the row no longer lists (`--update groups`).
    pub remove_groups: Vec<String>,
    /// Immutable attributes whose value differs from the row's: never written; the row needs a
    /// person.
    pub immutable: Vec<String>,
}

impl Changes {
    /// Whether nothing would be written.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty() && self.remove_groups.is_empty()
    }

    /// The attributes written, as the report names them (the `email_verified` that goes with
    /// a new email is not listed).
    pub fn set_names(&self) -> Vec<String> {
        let email_change = self.sets_email();
        self.set
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !(email_change && *n == "email_verified"))
            .cloned()
            .collect()
    }

    /// Whether the email changes (and is written verified with it).
    pub fn sets_email(&self) -> bool {
        self.set.iter().any(|(n, _)| n == "email")
    }

    /// For the report: the attributes written or deleted (names only, never values; the
    /// `email_verified` that goes with a new email is not listed), then `+group` and `-group`.
    pub fn names(&self, add_groups: &[String]) -> Vec<String> {
        self.set_names()
            .into_iter()
            .chain(self.delete.iter().cloned())
            .chain(add_groups.iter().map(|g| format!("+{g}")))
            .chain(self.remove_groups.iter().map(|g| format!("-{g}")))
            .collect()
    }
}

/// Whether the pool's value already says what the row's cell says, compared the way Cognito
/// stores values: text trimmed, emails without regard to case, phone numbers by their digits
/// (the row's are already in E.164).
pub fn same_value(name: &str, ours: &str, theirs: &str) -> bool {
    let theirs = theirs.trim();
    match name {
        "email" => ours.eq_ignore_ascii_case(theirs),
        "phone_number" => {
            let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
            digits(ours) == digits(theirs)
        }
        _ => ours == theirs,
    }
}

/// What `--update` changes for an existing user whose row says `row`.
///
/// | `--update`             | cell / membership                                  | change                     |
/// |------------------------|----------------------------------------------------|----------------------------|
/// | `attributes`           | value equal to the user's (as Cognito stores it)    | none                       |
/// | `attributes`           | value differs or the user lacks it, mutable         | `set`                      |
/// | `attributes`           | value differs, immutable in the schema              | `immutable` (attention)    |
/// | `attributes`           | email differs, row keyed by username                | `set` email + `email_verified=true` |
/// | `attributes`           | empty cell                                          | none (no opinion)          |
/// | `attributes`, `--clear-empty` | empty cell, the user has a value, mutable    | `delete`                   |
/// | `attributes`, `--clear-empty` | empty cell, the user has a value, immutable  | `immutable` (attention)    |
/// | `groups`               | member of a managed group the row does not list     | `remove_groups`            |
/// | `groups`               | empty `groups` cell                                 | none (no opinion)          |
/// | `groups`               | member of a group the file never names              | none (not managed)         |
///
/// Rows keyed by email never change their email: a new email is a new provider.
pub fn changes(
    row: &Wanted<'_>,
    user: &RemoteUser,
    member_of: &dyn Fn(&str) -> bool,
    updating: &Updating,
) -> Changes {
    let mut c = Changes::default();
    let differs = |name: &str, value: Option<&str>, c: &mut Changes| {
        let theirs = user.attributes.get(name).filter(|v| !v.trim().is_empty());
        match (value, theirs) {
            (Some(ours), Some(theirs)) if same_value(name, ours, theirs) => {}
            (None, None) => {}
            _ if updating.immutable.contains(name) => c.immutable.push(name.to_string()),
            (Some(ours), _) => c.set.push((name.to_string(), ours.to_string())),
            (None, Some(_)) => c.delete.push(name.to_string()),
        }
    };
    if updating.what.attributes {
        if row.keyed_by_username {
            let email = user.email.as_deref().unwrap_or_default();
            if !same_value("email", row.email, email) {
                c.set.push(("email".into(), row.email.to_string()));
                c.set.push(("email_verified".into(), "true".into()));
            }
        }
        for (name, value) in row.attributes {
            differs(name, Some(value), &mut c);
        }
        if updating.what.clear_empty {
            for name in &updating.columns {
                if !row.attributes.iter().any(|(n, _)| n == name) {
                    differs(name, None, &mut c);
                }
            }
        }
    }
    if updating.what.groups && !row.groups.is_empty() {
        c.remove_groups = updating
            .managed_groups
            .iter()
            .filter(|g| member_of(g) && !row.groups.contains(g))
            .cloned()
            .collect();
    }
    c
}

/// The decision for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Groups from the row the user is not yet in.
    pub add_groups: Vec<String>,
    /// Set `email_verified=true`: without it the provider can never recover the account alone.
    pub verify_email: bool,
    /// `run --update`: attribute and group changes for a user that exists.
    pub changes: Changes,
}

impl Decision {
    /// Whether carrying out the decision sends the provider a message (and so spends the
    /// email budget; the executor defers it when the budget is spent).
    pub fn sends_message(&self, delivery: Delivery) -> bool {
        match &self.action {
            Action::Create => delivery.sends_message(),
            Action::Reissue { method, .. } => *method == ReissueMethod::Resend,
            Action::Keep(_) | Action::Attention(_) => false,
        }
    }

    /// Whether nothing at all would be done: the row has converged.
    pub fn is_settled(&self) -> bool {
        matches!(self.action, Action::Keep(_) | Action::Attention(_))
            && self.add_groups.is_empty()
            && !self.verify_email
            && self.changes.is_empty()
    }
}

/// When the user's current temporary password expires: from the job's own record of its last
/// invitation, or, for users it did not invite, from `UserLastModifiedDate`.
pub fn expiry(remote: &RemoteUser, history: &History, validity: Duration) -> Option<DateTime<Utc>> {
    history
        .last_invited_at
        .or(remote.last_modified)
        .map(|at| at + validity)
}

/// Decides what to do for one row.
///
/// | user in the pool | status / condition                                   | action                          |
/// |------------------|------------------------------------------------------|---------------------------------|
/// | absent           | the job invited it before (someone deleted it)       | `Attention(Deleted)`            |
/// | absent           | otherwise                                            | `Create` (+ all groups)         |
/// | present          | email differs from the row's (username-keyed pools)  | `Attention(EmailMismatch)`      |
/// | present          | no email at all                                      | `Attention(NoEmail)`            |
/// | present          | either of those, row keyed by username, `--update attributes` | as below, email in [`changes`] |
/// | present          | under another name (case, or another username)       | `Attention(ExistsAs)`           |
/// | present          | disabled (any status)                                | `Attention(Disabled)`           |
/// | present          | `FORCE_CHANGE_PASSWORD`, `--reissue always`, messaged within 15 min | `Keep(RecentlySent)` |
/// | present          | `FORCE_CHANGE_PASSWORD`, `--reissue always`          | `Reissue`                       |
/// | present          | `FORCE_CHANGE_PASSWORD`, its password was lost       | `Reissue`                       |
/// | present          | `FORCE_CHANGE_PASSWORD`, expired, `expired`, under the cap | `Reissue`                 |
/// | present          | `FORCE_CHANGE_PASSWORD`, expired, `expired`, cap reached   | `Attention(ReissueLimit)` |
/// | present          | `FORCE_CHANGE_PASSWORD`, expired, `--reissue never`  | `Keep(Expired)`                 |
/// | present          | `FORCE_CHANGE_PASSWORD`, not expired (or unknown)    | `Keep(Pending)`                 |
/// | present          | `CONFIRMED`                                          | `Keep(Confirmed)`               |
/// | present          | any other status                                     | `Attention(Status)`             |
///
/// `Reissue` uses RESEND, or `AdminSetUserPassword` (Permanent=false) with `--delivery suppress`.
/// For `FORCE_CHANGE_PASSWORD` and `CONFIRMED` users, groups from the row the user is not in are
/// added and a missing `email_verified=true` is set, and with `--update` the row's [`changes`]
/// are made (never a re-issue because of them); users needing attention are not touched.
/// The executor turns a message-sending action into `deferred` when the email budget is spent.
pub fn decide(
    row: &Wanted<'_>,
    remote: Option<&RemoteUser>,
    member_of: &dyn Fn(&str) -> bool,
    history: &History,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Decision {
    let Some(user) = remote else {
        if history.invited {
            return Decision {
                action: Action::Attention(Attention::Deleted),
                add_groups: Vec::new(),
                verify_email: false,
                changes: Changes::default(),
            };
        }
        return Decision {
            action: Action::Create,
            add_groups: row.groups.to_vec(),
            verify_email: false,
            changes: Changes::default(),
        };
    };
    let attention = |a: Attention| Decision {
        action: Action::Attention(a),
        add_groups: Vec::new(),
        verify_email: false,
        changes: Changes::default(),
    };
    // A row keyed by username carries the provider's email as an attribute: `--update
    // attributes` writes a new one instead of stopping at the mismatch.
    let email_may_change = row.keyed_by_username && policy.updates(|u| u.attributes);
    if let Some(email) = &user.email
        && !email.eq_ignore_ascii_case(row.email)
        && !email_may_change
    {
        return attention(Attention::EmailMismatch {
            remote: Some(email.clone()),
        });
    }
    if user.email.is_none() && !email_may_change {
        return attention(Attention::NoEmail);
    }
    let name = match (&user.email, policy.email_is_username) {
        (Some(email), true) => email.as_str(),
        _ => user.username.as_str(),
    };
    let same_name =
        name == row.name || (!policy.case_sensitive && name.eq_ignore_ascii_case(row.name));
    if !same_name {
        return attention(Attention::ExistsAs {
            username: name.to_string(),
        });
    }
    if !user.enabled {
        return attention(Attention::Disabled);
    }
    let action = match &user.status {
        UserStatus::ForceChangePassword => {
            let method = match policy.delivery {
                Delivery::Suppress => ReissueMethod::SetPassword,
                Delivery::Email | Delivery::Sms => ReissueMethod::Resend,
            };
            let expires_at = expiry(user, history, policy.validity);
            let expired_at = expires_at.filter(|at| *at <= now);
            match (policy.reissue, expired_at) {
                _ if history.password_lost => Action::Reissue {
                    method,
                    cause: ReissueCause::PasswordLost,
                },
                (Reissue::Always, _) => match history.last_message_at {
                    Some(at)
                        if method == ReissueMethod::Resend && now - at < policy.resend_interval =>
                    {
                        Action::Keep(Keep::RecentlySent { at })
                    }
                    _ => Action::Reissue {
                        method,
                        cause: ReissueCause::Always,
                    },
                },
                (Reissue::Expired, Some(at)) if history.reissues >= policy.max_reissues => {
                    return attention(Attention::ReissueLimit {
                        reissues: history.reissues,
                        expired_at: at,
                    });
                }
                (Reissue::Expired, Some(at)) => Action::Reissue {
                    method,
                    cause: ReissueCause::Expired { at },
                },
                (Reissue::Never, Some(at)) => Action::Keep(Keep::Expired { expired_at: at }),
                (Reissue::Expired | Reissue::Never, None) => {
                    Action::Keep(Keep::Pending { expires_at })
                }
            }
        }
        UserStatus::Confirmed => Action::Keep(Keep::Confirmed),
        other => return attention(Attention::Status(other.clone())),
    };
    // `--update groups` reads every managed group's members, so membership is known and a
    // group someone took the user out of is added back; otherwise the state's record counts.
    let groups_known = policy.updates(|u| u.groups);
    let add_groups = row
        .groups
        .iter()
        .filter(|g| !member_of(g) && (groups_known || !history.groups_done.contains(g)))
        .cloned()
        .collect();
    let changes = policy
        .update
        .as_ref()
        .map(|u| changes(row, user, member_of, u))
        .unwrap_or_default();
    Decision {
        action,
        add_groups,
        verify_email: !user.email_verified && !changes.sets_email(),
        changes,
    }
}

/// What the SES account's suppression list says of the address an invitation would go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suppression {
    /// Not on the list (SES answered `NotFoundException`), or not asked ([`checks_suppression`]).
    Clear,
    /// On the list: SES drops every message to it.
    Suppressed(Suppressed),
    /// Could not be read (no permission, say): the invitation goes out as it did before the
    /// list was read at all.
    Unknown,
}

/// Whether the suppression list is read before `d` is carried out, by who sends its message
/// (`PoolInfo::sender_of` the run's delivery). Only a message SES sends can be dropped by SES's
/// list, so a pool that does not send through SES never costs an SES call.
///
/// | action                            | who sends the message                   | read the list? |
/// |-----------------------------------|-----------------------------------------|----------------|
/// | `Reissue` by RESEND                | SES (`DEVELOPER`)                       | yes            |
/// | `Reissue` by RESEND                | Cognito's own sender, a custom sender Lambda, SNS | no   |
/// | `Reissue` by AdminSetUserPassword  | anyone (nothing is sent)                | no             |
/// | `Create`, `Keep`, `Attention`      | anyone                                  | no             |
///
/// A first invitation is not checked: the address is new to this tool, and a cohort's creates
/// would all wait on SES's one read a second.
pub fn checks_suppression(d: &Decision, sender: Sender) -> bool {
    match (&d.action, sender) {
        (
            Action::Reissue {
                method: ReissueMethod::Resend,
                ..
            },
            Sender::Ses,
        ) => true,
        (
            Action::Reissue {
                method: ReissueMethod::Resend,
                ..
            },
            Sender::CognitoEmail
            | Sender::CustomEmailLambda
            | Sender::Sns
            | Sender::CustomSmsLambda
            | Sender::Nobody,
        )
        | (
            Action::Reissue {
                method: ReissueMethod::SetPassword,
                ..
            },
            _,
        )
        | (Action::Create | Action::Keep(_) | Action::Attention(_), _) => false,
    }
}

/// The decision once the suppression list has been read for the address its message would go
/// to ([`checks_suppression`]).
///
/// | decision              | the address                       | screened                         |
/// |-----------------------|-----------------------------------|----------------------------------|
/// | `Reissue` by RESEND    | on the list                       | `Attention(Suppressed)`          |
/// | `Reissue` by RESEND    | not on it, or unknown (not read)  | unchanged                        |
/// | anything else         | anything                          | unchanged                        |
///
/// A suppressed address gets no message and spends no budget; what the row asks besides (its
/// groups, `email_verified`, `--update`'s changes, a corrected email among them) is still
/// done, as none of it sends anything.
pub fn screen(d: Decision, suppression: &Suppression) -> Decision {
    match (&d.action, suppression) {
        (
            Action::Reissue {
                method: ReissueMethod::Resend,
                ..
            },
            Suppression::Suppressed(s),
        ) => Decision {
            action: Action::Attention(Attention::Suppressed(s.clone())),
            ..d
        },
        _ => d,
    }
}

/// The name to look the row's user up by, and to create it with.
pub fn username_for(mode: UsernameMode, row: &Row) -> String {
    match mode {
        UsernameMode::Email | UsernameMode::PhoneOnly => row.email.clone(),
        UsernameMode::FreeForm | UsernameMode::FreeFormEmailAlias => {
            row.username.clone().unwrap_or_else(|| row.email.clone())
        }
    }
}

/// Whether the row is keyed by its username (so its email is an attribute that may change):
/// a free-form pool, and a username in the row.
pub fn keyed_by_username(mode: UsernameMode, row: &Row) -> bool {
    match mode {
        UsernameMode::FreeForm | UsernameMode::FreeFormEmailAlias => row.username.is_some(),
        UsernameMode::Email | UsernameMode::PhoneOnly => false,
    }
}

/// A row that stops on a call that failed for good.
#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn policy(reissue: Reissue) -> Policy {
        Policy {
            reissue,
            delivery: Delivery::Email,
            validity: Duration::days(7),
            max_reissues: 3,
            case_sensitive: true,
            email_is_username: false,
            resend_interval: MIN_RESEND_INTERVAL,
            update: None,
        }
    }

    fn user(status: UserStatus, modified_days_ago: i64) -> RemoteUser {
        RemoteUser {
            username: "a@example.com".into(),
            status,
            enabled: true,
            email: Some("a@example.com".into()),
            email_verified: true,
            phone: None,
            phone_verified: false,
            sub: Some("u-1".into()),
            last_modified: Some(now() - Duration::days(modified_days_ago)),
            created: Some(now() - Duration::days(30)),
            attributes: Default::default(),
        }
    }

    fn groups() -> Vec<String> {
        vec!["providers".to_string(), "beta".to_string()]
    }

    fn decide_for(remote: Option<&RemoteUser>, history: &History, policy: &Policy) -> Decision {
        decide(
            &Wanted {
                email: "a@example.com",
                name: "a@example.com",
                groups: &groups(),
                attributes: &[],
                keyed_by_username: false,
            },
            remote,
            &|g| g == "providers",
            history,
            policy,
            now(),
        )
    }

    #[test]
    fn absent_user_is_created_with_all_groups() {
        let d = decide_for(None, &History::default(), &policy(Reissue::Expired));
        assert_eq!(d.action, Action::Create);
        assert_eq!(d.add_groups, groups());
        assert!(d.sends_message(Delivery::Email));
        assert!(!d.sends_message(Delivery::Suppress));
    }

    #[test]
    fn a_user_deleted_after_the_job_invited_it_needs_attention() {
        let history = History {
            invited: true,
            ..History::default()
        };
        let d = decide_for(None, &history, &policy(Reissue::Expired));
        assert_eq!(d.action, Action::Attention(Attention::Deleted));
    }

    #[test]
    fn email_mismatch_needs_attention() {
        let mut u = user(UserStatus::Confirmed, 1);
        u.email = Some("other@example.com".into());
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Expired));
        assert_eq!(
            d.action,
            Action::Attention(Attention::EmailMismatch {
                remote: Some("other@example.com".into())
            })
        );
        assert!(d.add_groups.is_empty());
    }

    #[test]
    fn a_user_without_an_email_needs_attention_and_gets_no_email_verified_write() {
        let mut u = user(UserStatus::Confirmed, 1);
        u.email = None;
        u.email_verified = false;
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Expired));
        assert_eq!(d.action, Action::Attention(Attention::NoEmail));
        assert!(!d.verify_email && d.add_groups.is_empty());
    }

    #[test]
    fn a_provider_under_another_name_needs_attention_and_is_never_created_beside() {
        let mut u = user(UserStatus::Confirmed, 1);
        u.username = "A@Example.com".into();
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Expired));
        assert_eq!(
            d.action,
            Action::Attention(Attention::ExistsAs {
                username: "A@Example.com".into()
            }),
            "case-sensitive: another user"
        );
        let mut insensitive = policy(Reissue::Expired);
        insensitive.case_sensitive = false;
        let d = decide_for(Some(&u), &History::default(), &insensitive);
        assert_eq!(
            d.action,
            Action::Keep(Keep::Confirmed),
            "case-insensitive: the same user"
        );
        u.username = "taro".into();
        let d = decide_for(Some(&u), &History::default(), &insensitive);
        assert!(
            matches!(d.action, Action::Attention(Attention::ExistsAs { .. })),
            "another username with the row's email: {d:?}"
        );
        // Where email is the username, the name is the email as stored.
        let mut by_email = policy(Reissue::Expired);
        by_email.email_is_username = true;
        u.username = "0f1e2d3c".into();
        u.email = Some("A@example.com".into());
        let d = decide_for(Some(&u), &History::default(), &by_email);
        assert!(
            matches!(d.action, Action::Attention(Attention::ExistsAs { .. })),
            "{d:?}"
        );
        u.email = Some("a@example.com".into());
        let d = decide_for(Some(&u), &History::default(), &by_email);
        assert_eq!(d.action, Action::Keep(Keep::Confirmed));
    }

    #[test]
    fn disabled_user_needs_attention_whatever_the_status() {
        let mut u = user(UserStatus::ForceChangePassword, 30);
        u.enabled = false;
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Always));
        assert_eq!(d.action, Action::Attention(Attention::Disabled));
    }

    #[test]
    fn pending_user_is_reissued_when_always() {
        let u = user(UserStatus::ForceChangePassword, 1);
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Always));
        assert_eq!(
            d.action,
            Action::Reissue {
                method: ReissueMethod::Resend,
                cause: ReissueCause::Always
            }
        );
        assert!(d.sends_message(Delivery::Email));
    }

    #[test]
    fn reissue_always_sends_no_second_message_within_the_interval() {
        let u = user(UserStatus::ForceChangePassword, 0);
        let history = History {
            last_invited_at: Some(now() - Duration::minutes(5)),
            last_message_at: Some(now() - Duration::minutes(5)),
            invited: true,
            ..History::default()
        };
        let d = decide_for(Some(&u), &history, &policy(Reissue::Always));
        assert_eq!(
            d.action,
            Action::Keep(Keep::RecentlySent {
                at: now() - Duration::minutes(5)
            })
        );
        let mut later = history.clone();
        later.last_message_at = Some(now() - Duration::minutes(20));
        let d = decide_for(Some(&u), &later, &policy(Reissue::Always));
        assert!(matches!(d.action, Action::Reissue { .. }), "{d:?}");
        // Suppress sends no message: a new password is set whenever asked.
        let mut p = policy(Reissue::Always);
        p.delivery = Delivery::Suppress;
        let d = decide_for(Some(&u), &history, &p);
        assert!(matches!(d.action, Action::Reissue { .. }), "{d:?}");
    }

    #[test]
    fn expired_user_is_reissued_when_expired() {
        let u = user(UserStatus::ForceChangePassword, 8);
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Expired));
        assert_eq!(
            d.action,
            Action::Reissue {
                method: ReissueMethod::Resend,
                cause: ReissueCause::Expired {
                    at: now() - Duration::days(1)
                }
            }
        );
    }

    #[test]
    fn expired_user_at_the_cap_needs_attention() {
        let u = user(UserStatus::ForceChangePassword, 8);
        let history = History {
            reissues: 3,
            ..History::default()
        };
        let d = decide_for(Some(&u), &history, &policy(Reissue::Expired));
        assert_eq!(
            d.action,
            Action::Attention(Attention::ReissueLimit {
                reissues: 3,
                expired_at: now() - Duration::days(1)
            })
        );
    }

    #[test]
    fn expired_user_is_kept_when_never() {
        let u = user(UserStatus::ForceChangePassword, 8);
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Never));
        assert_eq!(
            d.action,
            Action::Keep(Keep::Expired {
                expired_at: now() - Duration::days(1)
            })
        );
    }

    #[test]
    fn valid_invitation_is_pending_with_its_expiry() {
        let u = user(UserStatus::ForceChangePassword, 2);
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Expired));
        assert_eq!(
            d.action,
            Action::Keep(Keep::Pending {
                expires_at: Some(now() + Duration::days(5))
            })
        );
        assert_eq!(d.add_groups, vec!["beta".to_string()]);
    }

    #[test]
    fn unknown_expiry_is_pending() {
        let mut u = user(UserStatus::ForceChangePassword, 2);
        u.last_modified = None;
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Expired));
        assert_eq!(d.action, Action::Keep(Keep::Pending { expires_at: None }));
    }

    #[test]
    fn the_jobs_own_invitation_time_wins_over_last_modified() {
        let u = user(UserStatus::ForceChangePassword, 1);
        let history = History {
            last_invited_at: Some(now() - Duration::days(9)),
            ..History::default()
        };
        let d = decide_for(Some(&u), &history, &policy(Reissue::Expired));
        assert!(matches!(d.action, Action::Reissue { .. }), "{d:?}");
    }

    #[test]
    fn confirmed_user_is_kept_and_email_verified_is_fixed() {
        let mut u = user(UserStatus::Confirmed, 1);
        u.email_verified = false;
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Always));
        assert_eq!(d.action, Action::Keep(Keep::Confirmed));
        assert!(d.verify_email);
        assert!(!d.sends_message(Delivery::Email));
    }

    #[test]
    fn other_statuses_need_attention() {
        for status in [
            UserStatus::ResetRequired,
            UserStatus::Unconfirmed,
            UserStatus::ExternalProvider,
            UserStatus::Compromised,
            UserStatus::Other("NEW".into()),
        ] {
            let u = user(status.clone(), 1);
            let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Always));
            assert_eq!(d.action, Action::Attention(Attention::Status(status)));
            assert!(!d.verify_email && d.add_groups.is_empty());
        }
    }

    #[test]
    fn suppress_delivery_reissues_without_a_message() {
        let u = user(UserStatus::ForceChangePassword, 8);
        let mut p = policy(Reissue::Expired);
        p.delivery = Delivery::Suppress;
        let d = decide_for(Some(&u), &History::default(), &p);
        assert_eq!(
            d.action,
            Action::Reissue {
                method: ReissueMethod::SetPassword,
                cause: ReissueCause::Expired {
                    at: now() - Duration::days(1)
                }
            }
        );
        assert!(!d.sends_message(Delivery::Suppress));
    }

    #[test]
    fn a_lost_password_is_reissued_whatever_the_policy() {
        let u = user(UserStatus::ForceChangePassword, 1);
        let history = History {
            password_lost: true,
            ..History::default()
        };
        let d = decide_for(Some(&u), &history, &policy(Reissue::Never));
        assert_eq!(
            d.action,
            Action::Reissue {
                method: ReissueMethod::Resend,
                cause: ReissueCause::PasswordLost
            }
        );
    }

    #[test]
    fn open_intents_are_judged_by_what_cognito_shows() {
        let at = now() - Duration::hours(1);
        let mut u = user(UserStatus::ForceChangePassword, 0);
        u.created = Some(at + Duration::seconds(1));
        u.last_modified = Some(at + Duration::seconds(1));
        assert!(intent_went_through(InviteKind::Create, at, Some(&u)));
        assert!(!intent_went_through(InviteKind::Create, at, None));
        u.created = Some(at - Duration::days(3));
        assert!(
            !intent_went_through(InviteKind::Create, at, Some(&u)),
            "someone else's user"
        );
        assert!(intent_went_through(InviteKind::Resend, at, Some(&u)));
        u.last_modified = Some(at - Duration::days(1));
        assert!(!intent_went_through(InviteKind::Resend, at, Some(&u)));
        assert!(!intent_went_through(InviteKind::SetPassword, at, Some(&u)));
    }

    #[test]
    fn groups_already_done_are_not_added_again() {
        let u = user(UserStatus::Confirmed, 1);
        let history = History {
            groups_done: vec!["beta".into()],
            ..History::default()
        };
        let d = decide_for(Some(&u), &history, &policy(Reissue::Expired));
        assert!(d.is_settled(), "{d:?}");
    }

    fn updating(what: Update) -> Updating {
        Updating {
            what,
            columns: vec!["name".into(), "custom:org".into(), "custom:tier".into()],
            managed_groups: ["pilot", "providers"].map(String::from).into(),
            immutable: ["custom:tier".to_string()].into(),
        }
    }

    const ATTRIBUTES: Update = Update {
        attributes: true,
        groups: false,
        clear_empty: false,
    };

    fn with_attributes(pairs: &[(&str, &str)]) -> RemoteUser {
        let mut u = user(UserStatus::Confirmed, 1);
        for (n, v) in pairs {
            u.attributes.insert(n.to_string(), v.to_string());
        }
        u
    }

    fn row<'a>(cells: &'a [(String, String)], groups: &'a [String]) -> Wanted<'a> {
        Wanted {
            email: "a@example.com",
            name: "a@example.com",
            groups,
            attributes: cells,
            keyed_by_username: false,
        }
    }

    fn cells(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equal_values_change_nothing_compared_as_cognito_stores_them() {
        let u = with_attributes(&[
            ("name", " Taro Yamada "),
            ("phone_number", "+819012345678"),
            ("email", "A@Example.com"),
        ]);
        let row_cells = cells(&[("name", "Taro Yamada"), ("phone_number", "+819012345678")]);
        let c = changes(&row(&row_cells, &[]), &u, &|_| false, &updating(ATTRIBUTES));
        assert_eq!(c, Changes::default());
        assert!(same_value(
            "phone_number",
            "+819012345678",
            "+81 90 1234 5678"
        ));
        assert!(same_value("email", "a@example.com", "A@Example.com"));
        assert!(!same_value("name", "taro", "Taro"), "text keeps its case");
    }

    #[test]
    fn a_differing_or_missing_mutable_value_is_written() {
        let u = with_attributes(&[("name", "Taro"), ("custom:org", "Old KK")]);
        let row_cells = cells(&[
            ("name", "Taro"),
            ("custom:org", "New KK"),
            ("given_name", "Taro"),
        ]);
        let c = changes(&row(&row_cells, &[]), &u, &|_| false, &updating(ATTRIBUTES));
        assert_eq!(
            c.set,
            cells(&[("custom:org", "New KK"), ("given_name", "Taro")])
        );
        assert_eq!(c.names(&[]), ["custom:org", "given_name"]);
        assert!(c.delete.is_empty() && c.immutable.is_empty());
    }

    #[test]
    fn a_differing_immutable_value_is_never_written() {
        let u = with_attributes(&[("custom:tier", "silver")]);
        let row_cells = cells(&[("custom:tier", "gold")]);
        let c = changes(&row(&row_cells, &[]), &u, &|_| false, &updating(ATTRIBUTES));
        assert!(c.is_empty(), "nothing to write: {c:?}");
        assert_eq!(c.immutable, ["custom:tier"]);
    }

    #[test]
    fn an_empty_cell_is_no_opinion_unless_clear_empty() {
        let u = with_attributes(&[("name", "Taro"), ("custom:org", "KK"), ("custom:tier", "x")]);
        let row_cells = cells(&[("name", "Taro")]);
        let c = changes(&row(&row_cells, &[]), &u, &|_| false, &updating(ATTRIBUTES));
        assert_eq!(c, Changes::default());
        let clear = Update {
            clear_empty: true,
            ..ATTRIBUTES
        };
        let c = changes(&row(&row_cells, &[]), &u, &|_| false, &updating(clear));
        assert_eq!(c.delete, ["custom:org"]);
        assert_eq!(
            c.immutable,
            ["custom:tier"],
            "an immutable value is not deleted"
        );
        assert_eq!(c.names(&[]), ["custom:org"]);
        // Nothing to delete where the user has no value either.
        let bare = with_attributes(&[("name", "Taro")]);
        let c = changes(&row(&row_cells, &[]), &bare, &|_| false, &updating(clear));
        assert_eq!(c, Changes::default());
    }

    #[test]
    fn a_new_email_is_written_verified_only_where_the_username_is_the_key() {
        let mut u = user(UserStatus::Confirmed, 1);
        u.email = Some("old@example.com".into());
        let mut p = policy(Reissue::Expired);
        p.update = Some(updating(ATTRIBUTES));
        let keyed = Wanted {
            email: "a@example.com",
            name: "a@example.com",
            groups: &[],
            attributes: &[],
            keyed_by_username: true,
        };
        let d = decide(&keyed, Some(&u), &|_| false, &History::default(), &p, now());
        assert_eq!(d.action, Action::Keep(Keep::Confirmed));
        assert_eq!(
            d.changes.set,
            cells(&[("email", "a@example.com"), ("email_verified", "true")])
        );
        assert_eq!(d.changes.names(&[]), ["email"]);
        assert!(!d.verify_email, "verified in the same call");
        // Keyed by email, the email is the provider: a mismatch stays a person's call.
        let by_email = Wanted {
            keyed_by_username: false,
            ..keyed
        };
        let d = decide(
            &by_email,
            Some(&u),
            &|_| false,
            &History::default(),
            &p,
            now(),
        );
        assert!(matches!(
            d.action,
            Action::Attention(Attention::EmailMismatch { .. })
        ));
        // A user with no email gets the row's.
        u.email = None;
        u.email_verified = false;
        let d = decide(&keyed, Some(&u), &|_| false, &History::default(), &p, now());
        assert_eq!(d.action, Action::Keep(Keep::Confirmed));
        assert!(d.changes.sets_email());
        // Without --update the mismatch needs attention, as before.
        p.update = None;
        let d = decide(&keyed, Some(&u), &|_| false, &History::default(), &p, now());
        assert_eq!(d.action, Action::Attention(Attention::NoEmail));
    }

    #[test]
    fn groups_are_removed_only_where_the_file_manages_them_and_the_row_has_an_opinion() {
        let u = user(UserStatus::Confirmed, 1);
        let groups_only = Update {
            attributes: false,
            groups: true,
            clear_empty: false,
        };
        let member = |g: &str| ["pilot", "admins"].contains(&g);
        let listed = vec!["providers".to_string()];
        let c = changes(&row(&[], &listed), &u, &member, &updating(groups_only));
        assert_eq!(
            c.remove_groups,
            ["pilot"],
            "admins is not managed by the file"
        );
        assert_eq!(c.names(&listed), ["+providers", "-pilot"]);
        let c = changes(&row(&[], &[]), &u, &member, &updating(groups_only));
        assert!(c.is_empty(), "an empty groups cell is no opinion");
        let c = changes(&row(&[], &listed), &u, &member, &updating(ATTRIBUTES));
        assert!(c.is_empty(), "attributes only: groups are only added");
    }

    #[test]
    fn with_update_groups_membership_decides_and_a_removed_group_is_added_back() {
        let u = user(UserStatus::Confirmed, 1);
        let history = History {
            groups_done: vec!["beta".into()],
            ..History::default()
        };
        let mut p = policy(Reissue::Expired);
        p.update = Some(updating(Update {
            attributes: false,
            groups: true,
            clear_empty: false,
        }));
        let d = decide_for(Some(&u), &history, &p);
        assert_eq!(
            d.add_groups,
            ["beta"],
            "not a member now, whatever the state says"
        );
    }

    #[test]
    fn users_needing_attention_are_never_updated() {
        let mut u = with_attributes(&[("name", "Old")]);
        u.enabled = false;
        let mut p = policy(Reissue::Expired);
        p.update = Some(updating(ATTRIBUTES));
        let row_cells = cells(&[("name", "New")]);
        let d = decide(
            &row(&row_cells, &[]),
            Some(&u),
            &|_| false,
            &History::default(),
            &p,
            now(),
        );
        assert_eq!(d.action, Action::Attention(Attention::Disabled));
        assert!(d.changes.is_empty());
    }

    #[test]
    fn a_pending_user_is_updated_and_not_reissued_because_of_it() {
        let u = user(UserStatus::ForceChangePassword, 2);
        let mut p = policy(Reissue::Expired);
        p.update = Some(updating(ATTRIBUTES));
        let row_cells = cells(&[("name", "New")]);
        let d = decide(
            &row(&row_cells, &[]),
            Some(&u),
            &|_| false,
            &History::default(),
            &p,
            now(),
        );
        assert!(
            matches!(d.action, Action::Keep(Keep::Pending { .. })),
            "{d:?}"
        );
        assert_eq!(d.changes.names(&[]), ["name"]);
        assert!(!d.is_settled() && !d.sends_message(Delivery::Email));
    }

    #[test]
    fn the_update_mode_is_labelled_and_clear_empty_needs_attributes() {
        assert_eq!(Update::default().label(), "create-only");
        let u = Update::of(&[UpdatePart::Attributes, UpdatePart::Groups], true).unwrap();
        assert_eq!(u.label(), "attributes,groups,clear-empty");
        assert!(Update::of(&[UpdatePart::Groups], true).is_err());
    }

    fn seen_confirmed<'a>(digest: &'a str, read_days_ago: i64) -> Seen<'a> {
        Seen {
            status: Some(&UserStatus::Confirmed),
            enabled: Some(true),
            digest: Some(digest),
            read_at: Some(now() - Duration::days(read_days_ago)),
            open: false,
        }
    }

    #[test]
    fn reread_table() {
        let week = DEFAULT_REFRESH_AFTER;
        let r = |seen: Option<&Seen<'_>>, refresh| reread("k", "d1", seen, refresh, week, now());
        let fresh = seen_confirmed("d1", 1);
        assert_eq!(
            r(Some(&fresh), Refresh::Full),
            Reread::Read(ReadCause::Full)
        );
        assert_eq!(r(None, Refresh::Auto), Reread::Read(ReadCause::New));
        let open = Seen {
            open: true,
            ..fresh
        };
        assert_eq!(
            r(Some(&open), Refresh::Auto),
            Reread::Read(ReadCause::Unsettled)
        );
        for status in [UserStatus::ForceChangePassword, UserStatus::ResetRequired] {
            let pending = Seen {
                status: Some(&status),
                ..fresh
            };
            assert_eq!(
                r(Some(&pending), Refresh::Auto),
                Reread::Read(ReadCause::NotConfirmed)
            );
        }
        let disabled = Seen {
            enabled: Some(false),
            ..fresh
        };
        assert_eq!(
            r(Some(&disabled), Refresh::Auto),
            Reread::Read(ReadCause::NotConfirmed)
        );
        let changed = seen_confirmed("d0", 1);
        assert_eq!(
            r(Some(&changed), Refresh::Auto),
            Reread::Read(ReadCause::Changed)
        );
        let never_read = Seen {
            read_at: None,
            ..fresh
        };
        assert_eq!(
            r(Some(&never_read), Refresh::Auto),
            Reread::Read(ReadCause::Due)
        );
        let stale = seen_confirmed("d1", 8);
        assert_eq!(r(Some(&stale), Refresh::Auto), Reread::Read(ReadCause::Due));
        assert_eq!(
            r(Some(&fresh), Refresh::Auto),
            Reread::Skip {
                last_read: now() - Duration::days(1)
            }
        );
    }

    #[test]
    fn periodic_rereads_are_spread_over_the_second_half_of_refresh_after() {
        let week = DEFAULT_REFRESH_AFTER;
        let afters: Vec<Duration> = (0..1000)
            .map(|i| reread_after(&format!("p{i}@example.jp"), week))
            .collect();
        assert!(afters.iter().all(|a| *a >= week / 2 && *a <= week));
        // Spread: each of the 7 half-days of the window gets some of them, none most.
        let mut buckets = [0u32; 7];
        for a in &afters {
            let i = ((*a - week / 2).num_seconds() * 7 / (week / 2).num_seconds()).min(6);
            buckets[i as usize] += 1;
        }
        assert!(buckets.iter().all(|b| (80..220).contains(b)), "{buckets:?}");
        assert_eq!(reread_after("a", week), reread_after("a", week), "stable");
    }

    /// Applying a decision and deciding again settles: nothing more to do, with every
    /// `--update` part on.
    #[test]
    fn decisions_converge() {
        let mut p = policy(Reissue::Expired);
        p.update = Some(updating(Update {
            attributes: true,
            groups: true,
            clear_empty: true,
        }));
        let row_cells = cells(&[("name", "Taro"), ("custom:tier", "gold")]);
        let row_groups = groups();
        let wanted = Wanted {
            email: "a@example.com",
            name: "a@example.com",
            groups: &row_groups,
            attributes: &row_cells,
            keyed_by_username: true,
        };
        let mut stale = with_attributes(&[("name", "Old"), ("custom:org", "KK")]);
        stale.email = Some("old@example.com".into());
        let starts = [
            None,
            Some(user(UserStatus::ForceChangePassword, 8)),
            Some(user(UserStatus::ForceChangePassword, 1)),
            Some(user(UserStatus::Confirmed, 1)),
            Some(user(UserStatus::ResetRequired, 1)),
            Some(stale),
        ];
        for start in starts {
            let mut remote = start.clone();
            let mut history = History::default();
            // An existing user is in a managed group its row no longer lists.
            let members = std::cell::RefCell::new(
                start
                    .iter()
                    .map(|_| "pilot".to_string())
                    .collect::<BTreeSet<_>>(),
            );
            let decide_now = |remote: Option<&RemoteUser>, history: &History| {
                let m = members.borrow().clone();
                decide(&wanted, remote, &|g| m.contains(g), history, &p, now())
            };
            let d = decide_now(remote.as_ref(), &history);
            // What the executor does, applied to the model.
            match d.action {
                Action::Create | Action::Reissue { .. } => {
                    let mut u = remote.unwrap_or_else(|| {
                        let mut u = user(UserStatus::ForceChangePassword, 0);
                        u.attributes.extend(row_cells.iter().cloned());
                        u
                    });
                    u.status = UserStatus::ForceChangePassword;
                    u.last_modified = Some(now());
                    history.last_invited_at = Some(now());
                    history.invited = true;
                    if matches!(d.action, Action::Reissue { .. }) {
                        history.reissues += 1;
                    }
                    remote = Some(u);
                }
                Action::Keep(_) | Action::Attention(_) => {}
            }
            if let Some(u) = remote.as_mut() {
                if d.verify_email {
                    u.email_verified = true;
                }
                for (n, v) in &d.changes.set {
                    u.attributes.insert(n.clone(), v.clone());
                    if n == "email" {
                        u.email = Some(v.clone());
                    }
                }
                for n in &d.changes.delete {
                    u.attributes.remove(n);
                }
            }
            members.borrow_mut().extend(d.add_groups.iter().cloned());
            for g in &d.changes.remove_groups {
                members.borrow_mut().remove(g);
            }
            history.groups_done.extend(d.add_groups.iter().cloned());
            let again = decide_now(remote.as_ref(), &history);
            assert!(again.is_settled(), "from {start:?}: {d:?} then {again:?}");
        }
    }

    fn bounced() -> Suppressed {
        Suppressed {
            reason: crate::cognito::SuppressionReason::Bounce,
            since: now() - Duration::days(3),
        }
    }

    /// One case per row of `checks_suppression`'s table: only a RESEND through SES reads the
    /// list; a pool with another sender never costs an SES call.
    #[test]
    fn only_a_resend_through_ses_reads_the_suppression_list() {
        let expired = decide_for(
            Some(&user(UserStatus::ForceChangePassword, 8)),
            &History::default(),
            &policy(Reissue::Expired),
        );
        assert!(matches!(
            expired.action,
            Action::Reissue {
                method: ReissueMethod::Resend,
                ..
            }
        ));
        assert!(checks_suppression(&expired, Sender::Ses));
        for other in [
            Sender::CognitoEmail,
            Sender::CustomEmailLambda,
            Sender::Sns,
            Sender::CustomSmsLambda,
            Sender::Nobody,
        ] {
            assert!(!checks_suppression(&expired, other), "{other:?}");
        }
        let mut suppress = policy(Reissue::Expired);
        suppress.delivery = Delivery::Suppress;
        let set_password = decide_for(
            Some(&user(UserStatus::ForceChangePassword, 8)),
            &History::default(),
            &suppress,
        );
        assert!(matches!(
            set_password.action,
            Action::Reissue {
                method: ReissueMethod::SetPassword,
                ..
            }
        ));
        assert!(!checks_suppression(&set_password, Sender::Ses));
        let p = policy(Reissue::Expired);
        for (remote, history) in [
            (None, History::default()),
            (
                Some(user(UserStatus::ForceChangePassword, 1)),
                History::default(),
            ),
            (Some(user(UserStatus::ResetRequired, 1)), History::default()),
        ] {
            let d = decide_for(remote.as_ref(), &history, &p);
            assert!(!checks_suppression(&d, Sender::Ses), "{:?}", d.action);
        }
    }

    /// One case per row of `screen`'s table: a suppressed address turns a RESEND into
    /// attention (nothing sent, nothing spent) and keeps what the row asks besides; a clear or
    /// unknown one leaves it; anything else is left as decided.
    #[test]
    fn a_suppressed_address_gets_no_reissue_and_the_rest_of_the_row_is_kept() {
        let mut u = user(UserStatus::ForceChangePassword, 8);
        u.email_verified = false;
        let d = decide_for(Some(&u), &History::default(), &policy(Reissue::Expired));
        assert_eq!(d.add_groups, vec!["beta".to_string()]);
        let screened = screen(d.clone(), &Suppression::Suppressed(bounced()));
        assert_eq!(
            screened.action,
            Action::Attention(Attention::Suppressed(bounced()))
        );
        assert!(!screened.sends_message(Delivery::Email));
        assert_eq!(screened.add_groups, d.add_groups);
        assert!(screened.verify_email);
        assert_eq!(screen(d.clone(), &Suppression::Clear), d);
        assert_eq!(screen(d.clone(), &Suppression::Unknown), d);
        let pending = decide_for(
            Some(&user(UserStatus::ForceChangePassword, 1)),
            &History::default(),
            &policy(Reissue::Expired),
        );
        assert_eq!(
            screen(pending.clone(), &Suppression::Suppressed(bounced())),
            pending
        );
        // `reissue`'s explicit re-issue is screened the same way.
        let always = decide_for(
            Some(&user(UserStatus::ForceChangePassword, 1)),
            &History::default(),
            &policy(Reissue::Expired).explicit_reissue(),
        );
        assert!(checks_suppression(&always, Sender::Ses));
        assert!(matches!(
            screen(always, &Suppression::Suppressed(bounced())).action,
            Action::Attention(Attention::Suppressed(_))
        ));
    }
}
