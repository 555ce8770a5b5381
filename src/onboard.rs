//! The `run` pipeline for one row: read the user, decide, carry the decision out, and turn what
//! happened into a report row. Per-row failures end up in the row, never as `Err`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::cli::Delivery;
use crate::cognito::{
    CallError, Cognito, ErrorClass, Medium, NewUser, PoolInfo, RemoteUser, UserStatus, UsernameMode,
};
use crate::error::Error;
use crate::executor::{Executor, Failed};
use crate::input::Row;
use crate::limiter::Op;
use crate::password::{self, TempPassword};
use crate::plan::{self, Action, Attention, Decision, History, InviteKind, Keep, ReissueMethod};
use crate::report::{Outcome, RowReport};
use crate::state::{Known, State};

/// Group name → usernames in it, read once per run for the groups the cohort names.
pub type Memberships = BTreeMap<String, HashSet<String>>;

/// Where rows find their user.
pub enum Lookup {
    /// One AdminGetUser per row.
    PerRow,
    /// A ListUsers scan done up front, keyed like the rows (lower-cased).
    Scanned(BTreeMap<String, RemoteUser>),
}

/// Why an invitation is not sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// The run's share of the email budget is spent.
    Budget,
    /// Cognito answered LimitExceededException: the account's daily email limit.
    EmailLimit,
}

/// How many invitations this run may still send.
pub struct Budget {
    remaining: Mutex<Option<u64>>,
    stopped: AtomicBool,
}

impl Budget {
    /// `None`: unlimited.
    pub fn new(remaining: Option<u64>) -> Self {
        Budget {
            remaining: Mutex::new(remaining),
            stopped: AtomicBool::new(false),
        }
    }

    pub fn try_take(&self) -> Result<(), Deferral> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Deferral::EmailLimit);
        }
        let mut left = self.remaining.lock().unwrap_or_else(|e| e.into_inner());
        match left.as_mut() {
            None => Ok(()),
            Some(0) => Err(Deferral::Budget),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
        }
    }

    /// An invitation that was taken but certainly not sent.
    pub fn give_back(&self) {
        if let Some(n) = self
            .remaining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            *n += 1;
        }
    }

    /// Cognito's daily email limit was reached: no more invitations in this run.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// The suppress-mode password file: created new with mode 0600, one line per password issued.
pub struct PasswordFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl PasswordFile {
    /// Creates the file; refuses to touch an existing one.
    pub fn create(path: &Path) -> Result<Self, Error> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            Error::io(
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "refusing to overwrite the password file"
                } else {
                    "cannot create the password file"
                },
                path,
                e,
            )
        })?;
        file.write_all(b"username,temporary_password\n")
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io("cannot write the password file", path, e))?;
        Ok(PasswordFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends and syncs one line, so a killed run keeps every password it issued.
    pub fn record(&self, username: &str, password: &TempPassword) -> Result<(), String> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = Vec::new();
        {
            let mut w = csv::WriterBuilder::new().from_writer(&mut line);
            w.write_record([username, password.expose()])
                .and_then(|_| w.flush().map_err(csv::Error::from))
                .map_err(|_| "cannot format the password file line".to_string())?;
        }
        file.write_all(&line)
            .and_then(|_| file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

/// Everything a row needs.
pub struct Ctx {
    pub cognito: Cognito,
    pub exec: Arc<Executor>,
    pub pool: PoolInfo,
    pub policy: plan::Policy,
    pub dry_run: bool,
    pub lookup: Lookup,
    /// Filled in by a background task; rows that need it wait for it.
    pub memberships: Option<watch::Receiver<Option<Arc<Memberships>>>>,
    pub budget: Budget,
    pub password_file: Option<PasswordFile>,
    pub state: Arc<State>,
    pub run_id: String,
    /// What the state knew of each key when the run started.
    pub known: std::collections::HashMap<String, Known>,
}

fn medium(delivery: Delivery) -> Medium {
    match delivery {
        Delivery::Email => Medium::Email,
        Delivery::Sms => Medium::Sms,
        Delivery::Suppress => Medium::Suppress,
    }
}

/// How the state file names a delivery medium.
fn medium_name(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::Email => "email",
        Delivery::Sms => "sms",
        Delivery::Suppress => "suppress",
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What the report says for a user the job leaves alone.
fn keep_reason(k: &Keep) -> String {
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
    }
}

fn attention_reason(a: &Attention) -> String {
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
        Attention::EmailMismatch { remote } => format!(
            "a user with this username exists with another email ({}); nothing was changed",
            remote.as_deref().unwrap_or("none")
        ),
    }
}

fn action_name(d: &Decision) -> &'static str {
    match d.action {
        Action::Create => "create",
        Action::Reissue { .. } => "reissue",
        Action::Keep(_) => "skip",
        Action::Attention(_) => "attention",
    }
}

fn deferral_reason(d: Deferral) -> &'static str {
    match d {
        Deferral::Budget => {
            "email budget for the last 24 hours is spent; a later run sends this invitation"
        }
        Deferral::EmailLimit => {
            "Cognito's daily email limit was reached (LimitExceededException); a later run sends this invitation"
        }
    }
}

impl Ctx {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// The name to look the row's user up by, and to create it with.
    pub fn username_for(&self, row: &Row) -> String {
        match self.pool.username_mode {
            UsernameMode::Email | UsernameMode::PhoneOnly => row.email.clone(),
            UsernameMode::FreeForm | UsernameMode::FreeFormEmailAlias => {
                row.username.clone().unwrap_or_else(|| row.email.clone())
            }
        }
    }

    fn failed(&self, mut r: RowReport, what: &str, f: &Failed) -> RowReport {
        r.outcome = Outcome::Failed;
        r.attempts += f.attempts;
        r.reason = format!("{what} failed after {} attempt(s)", f.attempts);
        r.error_code = f.error.code.clone();
        r.error_message = Some(f.error.message.clone());
        r
    }

    async fn read_user(&self, name: &str, r: &mut RowReport) -> Result<Option<RemoteUser>, Failed> {
        let done = self
            .exec
            .call(Op::AdminGetUser, || self.cognito.get_user(name))
            .await?;
        r.attempts += done.attempts;
        Ok(done.value)
    }

    async fn member_of(&self) -> Option<Arc<Memberships>> {
        let mut rx = self.memberships.clone()?;
        let got = rx.wait_for(|m| m.is_some()).await.ok()?;
        got.clone()
    }

    /// The decision inputs the state holds for a key.
    fn history(known: &Known) -> History {
        History {
            last_invited_at: known.last_invited_at,
            reissues: known.reissues,
            groups_done: known.groups_done.clone(),
            invited: known.invited,
            password_lost: known.password_lost,
        }
    }

    /// A state write failed: the row cannot go on safely (an unrecorded invitation could be
    /// sent twice), and neither can the run.
    fn state_failed(&self, r: &mut RowReport, e: &Error) {
        tracing::error!("{e}");
        self.exec.cancel.cancel();
        r.outcome = Outcome::Failed;
        r.reason = format!("state database: {e}");
    }

    /// What an invitation needs before its call: a share of the email budget (when it sends a
    /// message), a new temporary password, and the write-ahead intent. `None` when the row stops
    /// here; `r` then says why (deferred, or failed), prefixed by `deferred`.
    fn prepare_invitation(
        &self,
        r: &mut RowReport,
        kind: InviteKind,
        sends_message: bool,
        deferred: &str,
    ) -> Option<(TempPassword, Option<i64>)> {
        if sends_message && let Err(why) = self.budget.try_take() {
            r.outcome = Outcome::Deferred;
            r.reason = format!("{deferred}{}", deferral_reason(why));
            return None;
        }
        let give_back = || {
            if sends_message {
                self.budget.give_back();
            }
        };
        let password = match password::generate(&self.pool.policy) {
            Ok(p) => p,
            Err(e) => {
                give_back();
                r.outcome = Outcome::Failed;
                r.reason = e.to_string();
                return None;
            }
        };
        match self.state.intent(
            &self.pool.id,
            &r.key,
            kind,
            medium_name(self.policy.delivery),
            &self.run_id,
            self.now(),
        ) {
            Ok(intent) => Some((password, intent)),
            Err(e) => {
                give_back();
                self.state_failed(r, &e);
                None
            }
        }
    }

    fn observe(&self, r: &RowReport, enabled: Option<bool>) {
        let pool = &self.pool.id;
        let known = self.known.get(&r.key);
        let mut statuses = Vec::new();
        if let Some(before) = &r.status_before {
            // Nothing new to record when the state already has this status: a re-run of a big
            // cohort then writes nothing for the rows that did not change.
            let unchanged = known.is_some_and(|k| {
                k.last_status.as_deref() == Some(before.as_str()) && k.last_enabled == enabled
            });
            if !unchanged {
                statuses.push(before.as_str());
            }
        }
        // A created user's status was recorded with its invitation.
        if let Some(after) = &r.status_after
            && r.status_before.as_ref() != Some(after)
            && r.outcome != Outcome::Created
        {
            statuses.push(after.as_str());
        }
        for status in statuses {
            if let Err(e) = self.state.observe(
                pool,
                &r.key,
                r.username.as_deref(),
                r.email.as_deref(),
                Some(status),
                enabled,
                &self.run_id,
                self.now(),
            ) {
                tracing::warn!("could not record the status of {}: {e}", r.key);
            }
        }
    }

    /// Decides and carries out one row, and records what it saw.
    pub async fn process(&self, row: Row) -> RowReport {
        let known = self.known.get(&row.key).cloned().unwrap_or_default();
        let mut history = Self::history(&known);
        let name = self.username_for(&row);
        let mut r = RowReport::new(
            row.line,
            row.key.clone(),
            Some(row.email.clone()),
            Outcome::Skipped,
        );
        r.username = Some(name.clone());
        let remote = match &self.lookup {
            Lookup::Scanned(users) => users.get(&row.key.to_lowercase()).cloned(),
            Lookup::PerRow => match self.read_user(&name, &mut r).await {
                Ok(u) => u,
                Err(f) => return self.failed(r, "reading the user (AdminGetUser)", &f),
            },
        };
        if let Some(intent) = &known.open_intent {
            // The run that wrote this intent died around the call: settle it from what Cognito
            // shows, so nobody is invited twice and nobody is forgotten.
            let went = plan::intent_went_through(intent.kind, intent.at, remote.as_ref());
            if let Err(e) = self
                .state
                .settle_intent(intent.id, went.then_some(intent.at), false)
            {
                self.state_failed(&mut r, &e);
                return r;
            }
            if went {
                history.last_invited_at = history.last_invited_at.max(Some(intent.at));
                history.invited = true;
                if intent.kind != InviteKind::Create {
                    history.reissues += 1;
                }
                history.password_lost = intent.medium == "suppress";
            }
        }
        let enabled = remote.as_ref().map(|u| u.enabled);
        let r = self.decide_and_act(r, &row, remote, &history, 0).await;
        self.observe(&r, enabled);
        r
    }

    async fn decide_and_act(
        &self,
        mut r: RowReport,
        row: &Row,
        remote: Option<RemoteUser>,
        history: &History,
        depth: u8,
    ) -> RowReport {
        if let Some(u) = &remote {
            r.username = Some(u.username.clone());
            r.status_before = Some(u.status.to_string());
            r.status_after = Some(u.status.to_string());
        }
        let memberships = match (&remote, row.groups.is_empty()) {
            (Some(_), false) => self.member_of().await,
            _ => None,
        };
        let username = remote.as_ref().map(|u| u.username.to_lowercase());
        let member_of = |g: &str| match (&memberships, &username) {
            (Some(m), Some(u)) => m.get(g).is_some_and(|set| set.contains(u)),
            _ => false,
        };
        let decision = plan::decide(
            &row.email,
            &row.groups,
            remote.as_ref(),
            &member_of,
            history,
            &self.policy,
            self.now(),
        );
        r.action = action_name(&decision).to_string();
        if self.dry_run {
            return self.planned(r, &decision, remote.as_ref(), history);
        }
        match &decision.action {
            Action::Create if depth == 0 => self.create(r, row, &decision, history).await,
            Action::Create => {
                r.outcome = Outcome::Failed;
                r.reason = "the user vanished while it was being created; a re-run retries".into();
                r
            }
            Action::Reissue { method, .. } => match remote {
                Some(user) => {
                    let name = self.username_for(row);
                    self.reissue(r, &name, user, *method, &decision).await
                }
                None => r,
            },
            Action::Keep(k) => {
                r.outcome = Outcome::Skipped;
                r.reason = keep_reason(k);
                if let (Keep::Pending { expires_at }, Some(u)) = (k, &remote) {
                    r.temp_password_expires_at =
                        expires_at.or_else(|| plan::expiry(u, history, self.policy.validity));
                }
                match remote {
                    Some(u) => {
                        let key = r.key.clone();
                        self.fix_up(r, &key, &u.username, &decision).await
                    }
                    None => r,
                }
            }
            Action::Attention(a) => {
                r.outcome = Outcome::Attention;
                r.reason = attention_reason(a);
                r
            }
        }
    }

    /// A dry run's row: what would be done.
    fn planned(
        &self,
        mut r: RowReport,
        d: &Decision,
        remote: Option<&RemoteUser>,
        history: &History,
    ) -> RowReport {
        let extras = extras(d);
        let (outcome, reason) = match &d.action {
            Action::Create => (Outcome::Created, "would create and invite".to_string()),
            Action::Reissue { .. } => (
                Outcome::Reissued,
                "would re-issue the invitation".to_string(),
            ),
            Action::Keep(k) => (Outcome::Skipped, keep_reason(k)),
            Action::Attention(a) => (Outcome::Attention, attention_reason(a)),
        };
        if let (Action::Keep(Keep::Pending { .. }), Some(u)) = (&d.action, remote) {
            r.temp_password_expires_at = plan::expiry(u, history, self.policy.validity);
        }
        r.outcome = outcome;
        r.reason = format!("dry run: {reason}{extras}");
        r
    }

    async fn create(
        &self,
        mut r: RowReport,
        row: &Row,
        d: &Decision,
        history: &History,
    ) -> RowReport {
        let name = self.username_for(row);
        let Some((password, intent)) = self.prepare_invitation(
            &mut r,
            InviteKind::Create,
            d.sends_message(self.policy.delivery),
            "",
        ) else {
            return r;
        };
        // The email goes in explicitly: only pools that use it as the username derive it.
        let attributes: Vec<(String, String)> =
            std::iter::once(("email".to_string(), row.email.clone()))
                .chain(row.attributes.iter().cloned())
                .collect();
        let new_user = NewUser {
            username: &name,
            attributes: &attributes,
            password: &password,
            medium: medium(self.policy.delivery),
        };
        let result = self
            .exec
            .call(Op::AdminCreateUser, || self.cognito.create_user(&new_user))
            .await;
        let created = match result {
            Ok(done) => {
                r.attempts += done.attempts;
                done.value
            }
            Err(f) => {
                r.attempts += f.attempts;
                if !f.maybe_done {
                    self.settle(intent, false);
                }
                match f.error.class {
                    ErrorClass::EmailQuota => {
                        self.budget.stop();
                        r.outcome = Outcome::Deferred;
                        r.reason = deferral_reason(Deferral::EmailLimit).to_string();
                        r.error_code = f.error.code.clone();
                        return r;
                    }
                    ErrorClass::DeliveryFailed => {
                        self.record_invited(row, &name);
                        r.outcome = Outcome::Attention;
                        r.status_after = Some(UserStatus::ForceChangePassword.to_string());
                        r.reason = "created, but Cognito could not deliver the invitation \
                                    (CodeDeliveryFailureException): check the address, then re-issue"
                            .to_string();
                        r.error_code = f.error.code.clone();
                        return self
                            .add_groups_after_create(r, &row.key, &name, &d.add_groups)
                            .await;
                    }
                    _ => {}
                }
                // Exists, or a lost answer: find out what is true before saying anything.
                let found = match self.read_user(&name, &mut r).await {
                    Ok(found) => {
                        if f.maybe_done {
                            let went = plan::intent_went_through(
                                InviteKind::Create,
                                self.now() - chrono::Duration::minutes(10),
                                found.as_ref(),
                            );
                            self.settle(intent, went);
                        }
                        found
                    }
                    Err(g) => {
                        if !f.maybe_done {
                            self.budget.give_back();
                        }
                        return self.failed(r, "re-reading the user after a failed create", &g);
                    }
                };
                match (found, f.maybe_done) {
                    (Some(user), true) if user.status == UserStatus::ForceChangePassword => {
                        r.reason =
                            "created (an earlier answer was lost; re-reading found the user)"
                                .to_string();
                        user
                    }
                    (Some(user), _) if f.error.class == ErrorClass::Exists => {
                        // Someone (or a scan that is now stale) beat us to it: decide again
                        // from what is true.
                        self.budget.give_back();
                        return Box::pin(self.decide_and_act(r, row, Some(user), history, 1)).await;
                    }
                    _ => {
                        if !f.maybe_done {
                            self.budget.give_back();
                        }
                        return self.failed(r, "creating the user (AdminCreateUser)", &f);
                    }
                }
            }
        };
        if let Err(e) = self.state.invitation_sent(
            if r.reason.is_empty() { intent } else { None },
            self.now(),
            &self.pool.id,
            &row.key,
            &created.username,
            &row.email,
            &self.run_id,
        ) {
            tracing::warn!("{e}");
        }
        r.username = Some(created.username.clone());
        r.outcome = Outcome::Created;
        if r.reason.is_empty() {
            r.reason = match self.policy.delivery {
                Delivery::Email => "created; invitation sent by email",
                Delivery::Sms => "created; invitation sent by SMS",
                Delivery::Suppress => "created; no message sent, password in the password file",
            }
            .to_string();
        }
        if !self.invitation_out(&mut r, &created.username, &password, intent, "created") {
            return r;
        }
        self.add_groups_after_create(r, &row.key, &created.username, &d.add_groups)
            .await
    }

    async fn add_groups_after_create(
        &self,
        r: RowReport,
        key: &str,
        username: &str,
        groups: &[String],
    ) -> RowReport {
        let d = Decision {
            action: Action::Create,
            add_groups: groups.to_vec(),
            verify_email: false,
        };
        self.fix_up(r, key, username, &d).await
    }

    /// What follows an invitation that went out: the user is pending with a fresh expiry, and in
    /// suppress mode its password goes to the password file. `Err` when that file cannot take it
    /// (the row fails; the state marks the password lost, so the next run re-issues it).
    /// Returns whether the row goes on.
    fn invitation_out(
        &self,
        r: &mut RowReport,
        username: &str,
        password: &TempPassword,
        intent: Option<i64>,
        what: &str,
    ) -> bool {
        r.status_after = Some(UserStatus::ForceChangePassword.to_string());
        r.temp_password_expires_at = Some(self.now() + self.policy.validity);
        if let Some(file) = &self.password_file {
            if let Err(e) = file.record(username, password) {
                r.outcome = Outcome::Failed;
                r.reason = format!(
                    "{what}, but the password could not be recorded: {e}; the next run re-issues it"
                );
                return false;
            }
            self.password_recorded(intent);
        }
        true
    }

    /// Settles an intent written by this run: `went` = the invitation went out.
    fn settle(&self, intent: Option<i64>, went: bool) {
        if let Some(id) = intent
            && let Err(e) = self
                .state
                .settle_intent(id, went.then(|| self.now()), false)
        {
            tracing::warn!("{e}");
        }
    }

    fn password_recorded(&self, intent: Option<i64>) {
        if let Some(id) = intent
            && let Err(e) = self.state.password_recorded(id)
        {
            tracing::warn!("{e}");
        }
    }

    fn record_invited(&self, row: &Row, username: &str) {
        if let Err(e) = self
            .state
            .mark_invited(&self.pool.id, &row.key, username, &row.email)
        {
            tracing::warn!("{e}");
        }
    }

    /// Re-issues the invitation. `name` is the name the user was created with (the email in
    /// pools where email is the username), which every Cognito API accepts for the user.
    async fn reissue(
        &self,
        mut r: RowReport,
        name: &str,
        user: RemoteUser,
        method: ReissueMethod,
        d: &Decision,
    ) -> RowReport {
        let kind = match method {
            ReissueMethod::Resend => InviteKind::Resend,
            ReissueMethod::SetPassword => InviteKind::SetPassword,
        };
        let Some((password, intent)) = self.prepare_invitation(
            &mut r,
            kind,
            d.sends_message(self.policy.delivery),
            "invitation expired; re-issue deferred: ",
        ) else {
            return r;
        };
        let outcome = match method {
            ReissueMethod::Resend => self.resend(&mut r, name, &user, &password).await,
            ReissueMethod::SetPassword => self
                .exec
                .call(Op::AdminSetUserPassword, || {
                    self.cognito
                        .set_temporary_password(&user.username, &password)
                })
                .await
                .map(|done| {
                    r.attempts += done.attempts;
                }),
        };
        if let Err(f) = outcome {
            if !f.maybe_done {
                self.settle(intent, false);
            }
            if f.error.class == ErrorClass::EmailQuota {
                self.budget.stop();
                r.attempts += f.attempts;
                r.outcome = Outcome::Deferred;
                r.reason = deferral_reason(Deferral::EmailLimit).to_string();
                r.error_code = f.error.code.clone();
                return r;
            }
            if !f.maybe_done && method == ReissueMethod::Resend {
                self.budget.give_back();
            }
            return self.failed(r, "re-issuing the invitation", &f);
        }
        self.settle(intent, true);
        r.outcome = Outcome::Reissued;
        r.reason = match (method, &d.action) {
            (
                ReissueMethod::Resend,
                Action::Reissue {
                    expired_at: Some(at),
                    ..
                },
            ) => {
                format!(
                    "invitation had expired at {}; re-sent with a new temporary password",
                    time(*at)
                )
            }
            (ReissueMethod::Resend, _) => "re-sent with a new temporary password".to_string(),
            (ReissueMethod::SetPassword, _) => {
                "new temporary password set (no message); it is in the password file".to_string()
            }
        };
        if !self.invitation_out(&mut r, &user.username, &password, intent, "re-issued") {
            return r;
        }
        let key = r.key.clone();
        self.fix_up(r, &key, &user.username, d).await
    }

    /// RESEND, where a lost answer is checked by re-reading the user rather than sending twice.
    async fn resend(
        &self,
        r: &mut RowReport,
        name: &str,
        user: &RemoteUser,
        password: &TempPassword,
    ) -> Result<(), Failed> {
        let medium = medium(self.policy.delivery);
        let mut last = None;
        for _round in 0..2 {
            match self
                .exec
                .call(Op::AdminCreateUserResend, || {
                    self.cognito.resend_invitation(name, password, medium)
                })
                .await
            {
                Ok(done) => {
                    r.attempts += done.attempts;
                    return Ok(());
                }
                Err(f) if f.maybe_done => {
                    r.attempts += f.attempts;
                    let now = self.read_user(name, r).await?;
                    let moved = match (&now, user.last_modified) {
                        (Some(n), Some(before)) => n.last_modified.is_some_and(|t| t > before),
                        _ => false,
                    };
                    if moved {
                        return Ok(());
                    }
                    last = Some(f);
                }
                Err(f) => return Err(f),
            }
        }
        Err(last.unwrap_or_else(|| Failed {
            error: CallError {
                op: Op::AdminCreateUserResend,
                class: ErrorClass::Permanent,
                code: None,
                message: "no answer".into(),
            },
            attempts: 0,
            maybe_done: true,
        }))
    }

    /// Sets email_verified and adds missing groups; a failure here fails the row.
    async fn fix_up(&self, mut r: RowReport, key: &str, username: &str, d: &Decision) -> RowReport {
        let mut done = Vec::new();
        let mut added: Vec<String> = Vec::new();
        if d.verify_email {
            match self
                .exec
                .call(Op::AdminUpdateUserAttributes, || {
                    self.cognito.mark_email_verified(username)
                })
                .await
            {
                Ok(x) => {
                    r.attempts += x.attempts;
                    done.push("email_verified set".to_string());
                }
                Err(f) => {
                    let before = std::mem::take(&mut r.reason);
                    let mut r = self.failed(r, "setting email_verified", &f);
                    r.reason = format!("{before}; {}", r.reason);
                    return r;
                }
            }
        }
        for group in &d.add_groups {
            match self
                .exec
                .call(Op::AdminAddUserToGroup, || {
                    self.cognito.add_to_group(username, group)
                })
                .await
            {
                Ok(x) => {
                    r.attempts += x.attempts;
                    done.push(format!("added to group {group}"));
                    added.push(group.clone());
                }
                Err(f) => {
                    self.record_groups(key, &added);
                    let before = std::mem::take(&mut r.reason);
                    let mut r = self.failed(r, &format!("adding to group {group}"), &f);
                    r.reason = format!("{before}; {}", r.reason);
                    return r;
                }
            }
        }
        self.record_groups(key, &added);
        if !done.is_empty() {
            r.reason = format!("{}; {}", r.reason, done.join(", "));
        }
        r
    }

    fn record_groups(&self, key: &str, added: &[String]) {
        if let Err(e) = self.state.groups_done(&self.pool.id, key, added) {
            tracing::warn!("{e}");
        }
    }
}

fn extras(d: &Decision) -> String {
    let mut parts = Vec::new();
    if d.verify_email {
        parts.push("would set email_verified".to_string());
    }
    if !d.add_groups.is_empty() && !matches!(d.action, Action::Create) {
        parts.push(format!("would add to {}", d.add_groups.join(", ")));
    }
    if matches!(d.action, Action::Create) && !d.add_groups.is_empty() {
        parts.push(format!("groups {}", d.add_groups.join(", ")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_takes_gives_back_and_stops() {
        let b = Budget::new(Some(2));
        assert_eq!(b.try_take(), Ok(()));
        assert_eq!(b.try_take(), Ok(()));
        assert_eq!(b.try_take(), Err(Deferral::Budget));
        b.give_back();
        assert_eq!(b.try_take(), Ok(()));
        b.stop();
        assert_eq!(b.try_take(), Err(Deferral::EmailLimit));
        let unlimited = Budget::new(None);
        for _ in 0..1000 {
            assert_eq!(unlimited.try_take(), Ok(()));
        }
    }

    #[test]
    fn password_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw.csv");
        let f = PasswordFile::create(&path).unwrap();
        f.record("u1", &TempPassword::new("Abc,def1!".into()))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "username,temporary_password\nu1,\"Abc,def1!\"\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = PasswordFile::create(&path).err().unwrap();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
