//! `run`'s row state machine: find the row's user, settle a killed run's open intent, decide,
//! carry the decision out (create, re-issue, fix up), record it in the state, and return the
//! row's report; and the help desk's `reset`, on the same budget, state and report. Per-row failures end up in the row, never as `Err`. Must not choose what to do
//! (that is `plan::decide`), word the report (`wording`), or retry (`executor`).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::budget::{Budget, Ticket};
use crate::calls::Calls;
use crate::cognito::{Directory, ErrorClass, NewUser, PoolInfo, RemoteUser, UserStatus};
use crate::error::Error;
use crate::executor::Failed;
use crate::input::Row;
use crate::logging::Progress;
use crate::lookup::{Found, Memberships, PerRow};
use crate::password::{self, Alphabet, TempPassword};
use crate::password_file::PasswordFile;
use crate::plan::{
    self, Action, Decision, History, InviteKind, Keep, ReissueMethod, Wanted, keyed_by_username,
    username_for,
};
use crate::report::wording;
use crate::report::{Act, Deferral, Outcome, RowReport};
use crate::state::{
    IntentAnswer, IntentRequest, Invited, Known, Observation, State, Subject, UpdateIntent,
    UpdateOutcome, Updated,
};

/// Everything a row needs.
pub struct Ctx<D> {
    pub calls: Arc<Calls<D>>,
    pub pool: PoolInfo,
    pub policy: plan::Policy,
    pub dry_run: bool,
    pub found: Found,
    /// Filled in by a background task; rows that need it wait for it.
    pub memberships: Option<watch::Receiver<Option<Arc<Memberships>>>>,
    pub budget: Budget,
    pub password_file: Option<PasswordFile>,
    pub state: Arc<State>,
    pub run_id: String,
    /// What the state knew of the rows on their way through, each when its slice was read.
    pub known: KnownRows,
    /// The list the rows come from (`run --cohort`): recorded for each provider they name.
    /// None for the help desk's rows.
    pub cohort: Option<String>,
    /// `run --reenable`: a provider this tool disabled, back in the list, is enabled again.
    pub reenable: bool,
    /// The SES account's suppression list, read before a re-issue through SES.
    pub suppression: crate::suppression::SuppressionList,
}

/// What the state knew of the rows in flight: each row's history is held from when its slice
/// of the file is read until its row is reported, so a run over a large state holds a few
/// thousand, never all of them.
#[derive(Debug, Default)]
pub struct KnownRows(std::sync::Mutex<HashMap<String, Known>>);

impl From<HashMap<String, Known>> for KnownRows {
    fn from(known: HashMap<String, Known>) -> Self {
        KnownRows(std::sync::Mutex::new(known))
    }
}

impl KnownRows {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the state knew of `key`.
    pub fn get(&self, key: &str) -> Option<Known> {
        self.map().get(key).cloned()
    }

    /// `f` of what the state knew of `key`, without a copy.
    pub fn with<T>(&self, key: &str, f: impl FnOnce(Option<&Known>) -> T) -> T {
        f(self.map().get(key))
    }

    /// Holds `key`'s history until [`KnownRows::release`].
    pub fn hold(&self, key: &str, known: Known) {
        self.map().insert(key.to_string(), known);
    }

    /// Lets `key`'s history go: its row is reported.
    pub fn release(&self, key: &str) {
        self.map().remove(key);
    }
}

/// What an invitation holds between its preparation and its call.
struct Invitation<'a> {
    ticket: Ticket<'a>,
    password: TempPassword,
    intent: Option<i64>,
    intent_at: DateTime<Utc>,
}

/// Where a create left the row.
enum Created {
    Done(RowReport),
    /// The user exists after all (created since the lookup): decide again from what is true.
    Exists(RowReport, RemoteUser),
}

/// A fix-up under way: the row's report, the `--update` intent its changes were recorded
/// under, what was written so far (the row's `changed`, and what a failure leaves listed), and
/// what the reason will say was done.
struct Writing {
    r: RowReport,
    intent: Option<i64>,
    written: Vec<String>,
    done: Vec<String>,
}

/// The email a fix-up would make this user's: the row's new one, or the one it marks verified.
fn verified_email<'a>(d: &'a Decision, before: Option<&'a RemoteUser>) -> Option<&'a str> {
    d.changes
        .set
        .iter()
        .find(|(n, _)| n == "email")
        .map(|(_, v)| v.as_str())
        .or(d
            .verify_email
            .then(|| before.and_then(|u| u.email.as_deref()))
            .flatten())
}

/// Another user holds the email this row would give its user (found before any write, or
/// said by Cognito's `AliasExistsException` / `UsernameExistsException`): nothing is written, and
/// someone must decide whose address it is.
fn held_by_another(
    mut r: RowReport,
    email: &str,
    other: Option<&str>,
    f: Option<&Failed>,
) -> RowReport {
    r.outcome = Outcome::Attention;
    r.reason = match other {
        Some(other) => format!(
            "the email {email} is held by another user ({other}): verifying it here could take \
             it from them; nothing was written: decide whose address it is"
        ),
        None => format!(
            "the email {email} is held by another user (Cognito refused it as taken): nothing \
             was written: decide whose address it is"
        ),
    };
    if let Some(f) = f {
        r.error_code = f.error.code.clone();
        r.error_message = Some(f.error.message.clone());
    }
    r
}

/// A call that failed for good fails its row; one the run's stop kept from being made (again)
/// defers it, with what it was doing.
fn failed(mut r: RowReport, what: &str, f: &Failed) -> RowReport {
    r.attempts += f.attempts;
    r.error_code = f.error.code.clone();
    r.error_message = Some(f.error.message.clone());
    if f.stopped {
        let why = wording::deferral(Deferral::Stopped, crate::cognito::Delivery::Suppress);
        r.defer(Deferral::Stopped, format!("{why} (was {what})"));
        return r;
    }
    r.outcome = Outcome::Failed;
    r.reason = format!("{what} failed after {} attempt(s)", f.attempts);
    r
}

impl<D: Directory> Ctx<D> {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// The row's user in the state.
    fn subject<'a>(&'a self, key: &'a str) -> Subject<'a> {
        Subject::new(&self.pool.id, key)
    }

    /// Decides and carries out one row, and records what it saw.
    pub async fn process(&self, row: Row) -> RowReport {
        let known = self.known.get(&row.key).unwrap_or_default();
        let mut history = known.history();
        let name = username_for(self.pool.username_mode, &row);
        let mut r = RowReport::new(
            row.line,
            row.key.clone(),
            Some(row.email.clone()),
            Outcome::Skipped,
        );
        r.username = Some(name.clone());
        r.name = row.display_name();
        let by_email = (row.key == row.email).then_some(row.email.as_str());
        let remembered = known.username.as_deref().filter(|n| *n != name);
        let (listed, per_row) = match &self.found {
            Found::Scanned(index) => (index.find(&name, by_email, remembered), None),
            Found::PerRow(per_row) => (None, Some(per_row)),
            Found::Pending(index, per_row) => {
                (index.find(&name, by_email, remembered), Some(per_row))
            }
        };
        let remote = match (listed, per_row) {
            (Some(user), _) => Some(user),
            (None, None) => None,
            (None, Some(per_row)) => {
                match self
                    .find_user(&mut r, per_row, &name, by_email, remembered)
                    .await
                {
                    Ok(found) => found,
                    Err(r) => return r,
                }
            }
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
                history.password_lost = intent.medium == crate::cognito::Delivery::Suppress;
                if intent.medium.sends_message() && intent.kind != InviteKind::SetPassword {
                    history.last_message_at = history.last_message_at.max(Some(intent.at));
                }
            }
        }
        let mut remote = remote;
        let back = self.back_in_the_list(&row, &known, remote.as_mut()).await;
        if let Err(refused) = back {
            return *refused;
        }
        let enabled = remote.as_ref().map(|u| u.enabled);
        let mut r = self.act(r, &row, remote, &history).await;
        match (back, &known.disabled_run) {
            (Ok(true), _) => r.reason = format!("enabled again (back in the list); {}", r.reason),
            (Ok(false), Some(run)) if enabled == Some(false) && r.outcome == Outcome::Attention => {
                r.reason = format!(
                    "disabled by this tool (run {run}) when it left its list: `enable` it, or \
                     run with --reenable"
                );
            }
            _ => {}
        }
        self.observe(&r, enabled);
        self.settle_row(&r, &row, &known);
        r
    }

    /// A provider this tool disabled that is back in the list: with `--reenable` it is enabled
    /// again (the same sub and password) before the row is decided, and `Ok(true)` says so;
    /// otherwise nothing is done here and the row reports who disabled it. A failed enable is
    /// the row's answer.
    async fn back_in_the_list(
        &self,
        row: &Row,
        known: &Known,
        remote: Option<&mut RemoteUser>,
    ) -> Result<bool, Box<RowReport>> {
        let Some(user) = remote else {
            return Ok(false);
        };
        if user.enabled {
            // Offboarded by this tool, enabled since by someone else (or by a stopped run):
            // no longer this tool's to count as offboarded.
            if known.disabled_run.is_some() && !self.dry_run {
                let done = crate::state::Offboarded {
                    action: crate::state::Offboard::Enable,
                    run_id: &self.run_id,
                    at: self.now(),
                };
                if let Err(e) = self.state.offboarded(self.subject(&row.key), done) {
                    tracing::warn!("{e}");
                }
            }
            return Ok(false);
        }
        if !self.reenable || known.disabled_run.is_none() {
            return Ok(false);
        }
        let step = crate::offboard::Step {
            calls: &self.calls,
            state: &self.state,
            pool: &self.pool.id,
            run_id: &self.run_id,
            dry_run: self.dry_run,
            only_pending: false,
        };
        let candidate = crate::offboard::Candidate::of(&row.key, known, "back in the list".into());
        let mut r = step
            .carry_out(&candidate, crate::state::Offboard::Enable)
            .await;
        if r.outcome == Outcome::Enabled {
            user.enabled = true;
            return Ok(true);
        }
        r.row = row.line;
        r.name = row.display_name();
        Err(Box::new(r))
    }

    /// Once a row is done: a killed run's update intents are settled (the comparison just made
    /// is what makes a repeated write unnecessary), and a row now in step has its digest
    /// recorded, only when it changed.
    fn settle_row(&self, r: &RowReport, row: &Row, known: &Known) {
        if self.dry_run {
            return;
        }
        if let Some(cohort) = &self.cohort
            && known.cohort.as_deref() != Some(cohort.as_str())
            && let Err(e) =
                self.state
                    .set_cohort(&self.pool.id, std::slice::from_ref(&row.key), cohort)
        {
            tracing::warn!("{e}");
        }
        for id in &known.open_updates {
            if let Err(e) = self
                .state
                .settle_update(*id, UpdateOutcome::Rechecked, self.now())
            {
                tracing::warn!("{e}");
            }
        }
        let in_step = matches!(
            r.outcome,
            Outcome::Created | Outcome::Reissued | Outcome::Updated | Outcome::Skipped
        );
        if !in_step {
            return;
        }
        let digest = row.digest(&self.policy.update_mode().label());
        if known.row_digest.as_deref() != Some(digest.as_str())
            && let Err(e) = self.state.in_step(self.subject(&row.key), &digest)
        {
            tracing::warn!("{e}");
        }
    }

    /// The row's user, read by its exact name; else by the name the state remembers (its email
    /// changed, or email is the username); else, where the exact name can miss it, from one
    /// read of the whole pool (another case, another username with the row's email).
    async fn find_user(
        &self,
        r: &mut RowReport,
        per_row: &PerRow,
        name: &str,
        by_email: Option<&str>,
        remembered: Option<&str>,
    ) -> Result<Option<RemoteUser>, RowReport> {
        for candidate in std::iter::once(name).chain(remembered) {
            match self.calls.get_user(candidate).await {
                Ok(done) => {
                    r.attempts += done.attempts;
                    if done.value.is_some() {
                        return Ok(done.value);
                    }
                }
                Err(f) => return Err(failed(r.clone(), "reading the user (AdminGetUser)", &f)),
            }
        }
        if !per_row.check_misses {
            return Ok(None);
        }
        match per_row.index(&self.calls, self.pool.estimated_users).await {
            Ok(index) => Ok(index.find(name, by_email, None)),
            Err(e) => {
                let mut r = r.clone();
                r.outcome = Outcome::Failed;
                r.reason = format!(
                    "could not check the pool for this provider under another name or case: {e}"
                );
                Err(r)
            }
        }
    }

    /// Decides from what is known and carries the decision out. A create that finds the user
    /// already there (made since the lookup) decides once more from the user as it is now.
    async fn act(
        &self,
        mut r: RowReport,
        row: &Row,
        mut remote: Option<RemoteUser>,
        history: &History,
    ) -> RowReport {
        for round in 0..2 {
            if let Some(u) = &remote {
                r.username = Some(u.username.clone());
                r.status_before = Some(u.status.clone());
                r.status_after = Some(u.status.clone());
            }
            let decision = self.decide(row, remote.as_ref(), history).await;
            let decision = self.screen(decision, remote.as_ref()).await;
            r.action = wording::act(&decision.action);
            r.stuck = wording::stuck(&decision.action);
            if self.dry_run {
                return self.planned(r, &decision, remote.as_ref(), history);
            }
            // A pending user's invitation expires when it does, whatever the row does: a row
            // that re-issues it replaces this, one left waiting (deferred, skipped, refused)
            // shows it, and the run counts those past it (a stalled cohort).
            if let Some(u) = remote
                .as_ref()
                .filter(|u| u.status == UserStatus::ForceChangePassword)
            {
                r.temp_password_expires_at = plan::expiry(u, history, self.policy.validity);
            }
            match (&decision.action, remote) {
                (Action::Create, _) if round > 0 => {
                    r.outcome = Outcome::Failed;
                    r.reason =
                        "the user vanished while it was being created; a re-run retries".into();
                    return r;
                }
                (Action::Create, _) => match self.create(r, row, &decision).await {
                    Created::Done(done) => return done,
                    Created::Exists(again, user) => {
                        r = again;
                        remote = Some(user);
                    }
                },
                (Action::Reissue { method, cause }, Some(user)) => {
                    return self.reissue(r, row, user, *method, *cause, &decision).await;
                }
                (Action::Keep(k), Some(user)) => {
                    r.outcome = Outcome::Skipped;
                    r.reason = wording::keep(k);
                    if let Keep::Pending { expires_at } = k {
                        r.temp_password_expires_at = expires_at
                            .or_else(|| plan::expiry(&user, history, self.policy.validity));
                    }
                    return self.fix_up(r, &user.username, Some(&user), &decision).await;
                }
                // No message to a dead address; what the row asks besides still goes through (a
                // corrected email among it, which the next run's re-issue then reaches).
                (Action::Attention(a @ plan::Attention::Suppressed(_)), Some(user)) => {
                    r.outcome = Outcome::Attention;
                    r.reason = wording::attention(a);
                    return self.fix_up(r, &user.username, Some(&user), &decision).await;
                }
                (Action::Attention(a), _) => {
                    r.outcome = Outcome::Attention;
                    r.reason = wording::attention(a);
                    return r;
                }
                // `decide` re-issues and keeps only users it was given.
                (Action::Reissue { .. } | Action::Keep(_), None) => return r,
            }
        }
        r
    }

    async fn decide(&self, row: &Row, remote: Option<&RemoteUser>, history: &History) -> Decision {
        let memberships = match (remote, row.groups.is_empty()) {
            (Some(_), false) => self.member_of().await,
            _ => None,
        };
        let username = remote.map(|u| u.username.to_lowercase());
        let member_of = |g: &str| match (&memberships, &username) {
            (Some(m), Some(u)) => m.get(g).is_some_and(|set| set.contains(u)),
            _ => false,
        };
        plan::decide(
            &Wanted {
                email: &row.email,
                name: &username_for(self.pool.username_mode, row),
                groups: &row.groups,
                attributes: &row.attributes,
                keyed_by_username: keyed_by_username(self.pool.username_mode, row),
            },
            remote,
            &member_of,
            history,
            &self.policy,
            self.now(),
        )
    }

    /// The decision once the suppression list has been read for the address its message would
    /// go to (the user's email), where it sends one through SES.
    async fn screen(&self, d: Decision, remote: Option<&RemoteUser>) -> Decision {
        let email = remote.and_then(|u| u.email.as_deref());
        let delivery = self.policy.delivery;
        self.suppression
            .screen(&self.calls, &self.pool, delivery, d, email)
            .await
    }

    async fn member_of(&self) -> Option<Arc<Memberships>> {
        let mut rx = self.memberships.clone()?;
        let got = rx.wait_for(|m| m.is_some()).await.ok()?;
        got.clone()
    }

    /// A dry run's row: what would be done.
    fn planned(
        &self,
        mut r: RowReport,
        d: &Decision,
        remote: Option<&RemoteUser>,
        history: &History,
    ) -> RowReport {
        r.outcome = match &d.action {
            Action::Create => Outcome::Created,
            Action::Reissue { .. } => Outcome::Reissued,
            Action::Keep(_) => Outcome::Skipped,
            Action::Attention(_) => Outcome::Attention,
        };
        if let (Action::Keep(Keep::Pending { .. }), Some(u)) = (&d.action, remote) {
            r.temp_password_expires_at = plan::expiry(u, history, self.policy.validity);
        }
        if remote.is_some() {
            r.changed = d.changes.names(&d.add_groups);
            changed_outcome(&mut r, &d.changes);
        }
        r.reason = wording::planned(d);
        r
    }

    /// A state write failed: the row cannot go on safely (an unrecorded invitation could be
    /// sent twice), and neither can the run.
    fn state_failed(&self, r: &mut RowReport, e: &Error) {
        tracing::error!("{e}");
        self.calls.exec.cancel.cancel();
        r.outcome = Outcome::Failed;
        r.reason = format!("state database: {e}");
    }

    /// The row's invitation waits for a later run, and the report says what and why.
    fn defer_invitation(&self, r: &mut RowReport, d: &Decision, why: Deferral) {
        r.defer(
            why,
            format!(
                "{}{}",
                wording::deferred_what(&d.action),
                wording::deferral(why, self.policy.delivery)
            ),
        );
    }

    /// What an invitation needs before its call: a share of the email budget (when it sends a
    /// message), a new temporary password, and the write-ahead intent. `None` when the row stops
    /// here; `r` then says why (deferred, or failed). The ticket gives its share back by itself
    /// when the row stops before the message could go out.
    async fn prepare(
        &self,
        r: &mut RowReport,
        kind: InviteKind,
        d: &Decision,
    ) -> Option<Invitation<'_>> {
        let sends_message = d.sends_message(self.policy.delivery);
        let ticket = match self.budget.take(sends_message) {
            Ok(t) => t,
            Err(why) => {
                self.defer_invitation(r, d, why);
                return None;
            }
        };
        // A password that travels in a message must survive HTML and a person's eyes.
        let alphabet = if self.policy.delivery.sends_message() {
            Alphabet::Readable
        } else {
            Alphabet::Full
        };
        let password = match password::generate(&self.pool.policy, alphabet) {
            Ok(p) => p,
            Err(e) => {
                r.outcome = Outcome::Failed;
                r.reason = e.to_string();
                return None;
            }
        };
        let intent_at = self.now();
        let request = IntentRequest {
            kind,
            medium: self.policy.delivery,
            counted: self.budget.counted().filter(|_| sends_message),
            run_id: &self.run_id,
            at: intent_at,
        };
        let intent = match self.state.intent(self.subject(&r.key), request).await {
            Ok(IntentAnswer::Written(id)) => Some(id),
            Ok(IntentAnswer::NotRecorded) => None,
            Ok(IntentAnswer::Busy(why)) => {
                self.defer_invitation(r, d, Deferral::Busy);
                tracing::info!("{}: {why}", r.key);
                return None;
            }
            // Another machine sharing the state took the budget's last share.
            Ok(IntentAnswer::BudgetSpent(_)) => {
                self.defer_invitation(r, d, Deferral::Budget);
                return None;
            }
            Err(e) => {
                self.state_failed(r, &e);
                return None;
            }
        };
        Some(Invitation {
            ticket,
            password,
            intent,
            intent_at,
        })
    }

    /// The call changed the user but its message did not go out: the share is spent (Cognito
    /// counted the attempt) and the state records a temporary password nobody received, so the
    /// next run re-issues it when the budget allows.
    fn undelivered(&self, invitation: Invitation<'_>) {
        invitation.ticket.spend();
        if let Some(id) = invitation.intent
            && let Err(e) = self.state.settle_undelivered(id, self.now())
        {
            tracing::warn!("{e}");
        }
    }

    /// An invitation call failed for good without the email limit or a delivery failure. A
    /// lost answer keeps the share spent and the intent open (the next run settles it from what
    /// Cognito shows); otherwise the intent is settled as not sent and the share goes back.
    fn not_sent(&self, invitation: Invitation<'_>, f: &Failed) {
        if f.maybe_done {
            invitation.ticket.spend();
        } else {
            self.settle(invitation.intent, false);
        }
    }

    /// Cognito's daily email limit: the row is deferred, and no message goes out for the rest
    /// of the run.
    fn email_limit(&self, r: &mut RowReport, f: &Failed, reason: String) {
        self.budget.stop();
        r.attempts += f.attempts;
        r.defer(Deferral::MessageLimit, reason);
        r.error_code = f.error.code.clone();
    }

    async fn create(&self, mut r: RowReport, row: &Row, d: &Decision) -> Created {
        let name = username_for(self.pool.username_mode, row);
        let Some(invitation) = self.prepare(&mut r, InviteKind::Create, d).await else {
            return Created::Done(r);
        };
        // The email goes in explicitly: only pools that use it as the username derive it.
        let attributes: Vec<(String, String)> =
            std::iter::once(("email".to_string(), row.email.clone()))
                .chain(row.attributes.iter().cloned())
                .collect();
        let new_user = NewUser {
            username: &name,
            attributes: &attributes,
            password: &invitation.password,
            delivery: self.policy.delivery,
        };
        let created = match self
            .calls
            .create_user(&new_user, invitation.intent_at)
            .await
        {
            Ok(done) => done,
            Err(f) => return self.create_failed(r, row, d, &name, invitation, &f).await,
        };
        r.attempts += created.attempts;
        invitation.ticket.spend();
        let user = created.value;
        let sent = Invited {
            intent: invitation.intent,
            username: &user.username,
            email: &row.email,
            run_id: &self.run_id,
            at: self.now(),
        };
        if let Err(e) = self.state.invitation_sent(self.subject(&row.key), sent) {
            tracing::warn!("{e}");
        }
        r.username = Some(user.username.clone());
        r.outcome = Outcome::Created;
        r.reason = wording::created(self.policy.delivery, created.recovered).to_string();
        if !self.invitation_out(
            &mut r,
            &user.username,
            &invitation.password,
            invitation.intent,
            "created",
        ) {
            return Created::Done(r);
        }
        Created::Done(self.fix_up(r, &user.username, None, &groups_only(d)).await)
    }

    /// What a create that failed for good leaves: the email limit defers it (recording the user
    /// if Cognito created it before refusing the message), a delivery failure needs a person,
    /// a user that exists after all is decided again, anything else fails the row.
    async fn create_failed(
        &self,
        mut r: RowReport,
        row: &Row,
        d: &Decision,
        name: &str,
        invitation: Invitation<'_>,
        f: &Failed,
    ) -> Created {
        match f.error.class {
            ErrorClass::EmailQuota => {
                Created::Done(self.create_over_quota(r, row, name, invitation, f).await)
            }
            ErrorClass::DeliveryFailed => {
                // Created, but not told.
                self.undelivered(invitation);
                r.attempts += f.attempts;
                self.record_invited(row, name);
                r.outcome = Outcome::Attention;
                r.status_after = Some(UserStatus::ForceChangePassword);
                r.reason = "created, but Cognito could not deliver the invitation \
                            (CodeDeliveryFailureException): check the address; a later run \
                            re-issues it"
                    .to_string();
                r.error_code = f.error.code.clone();
                Created::Done(self.fix_up(r, name, None, &groups_only(d)).await)
            }
            ErrorClass::Exists if !f.maybe_done => {
                self.not_sent(invitation, f);
                r.attempts += f.attempts;
                self.created_elsewhere(r, row, name, f).await
            }
            _ => {
                self.not_sent(invitation, f);
                Created::Done(failed(r, "creating the user (AdminCreateUser)", f))
            }
        }
    }

    /// A create the email limit refused: deferred. Whether Cognito created the user before it
    /// refused the message is not documented: look, so a created user is re-issued rather than
    /// left waiting for an expiry nobody will see.
    async fn create_over_quota(
        &self,
        mut r: RowReport,
        row: &Row,
        name: &str,
        invitation: Invitation<'_>,
        f: &Failed,
    ) -> RowReport {
        let found = self.calls.get_user(name).await.ok().and_then(|d| {
            r.attempts += d.attempts;
            d.value.filter(|u| {
                plan::intent_went_through(InviteKind::Create, invitation.intent_at, Some(u))
            })
        });
        let reason = match found {
            Some(user) => {
                self.undelivered(invitation);
                self.record_invited(row, &user.username);
                r.username = Some(user.username);
                r.status_after = Some(UserStatus::ForceChangePassword);
                wording::created_not_sent().to_string()
            }
            None => {
                self.settle(invitation.intent, false);
                wording::deferral(Deferral::MessageLimit, self.policy.delivery).to_string()
            }
        };
        self.email_limit(&mut r, f, reason);
        r
    }

    /// A create Cognito refused because the name is taken: the user made since the lookup is
    /// decided again; no user by the name means the email is another user's; a failed re-read
    /// fails the row.
    async fn created_elsewhere(
        &self,
        mut r: RowReport,
        row: &Row,
        name: &str,
        f: &Failed,
    ) -> Created {
        match self.calls.get_user(name).await {
            Ok(found) => {
                r.attempts += found.attempts;
                match found.value {
                    Some(user) => Created::Exists(r, user),
                    // No user by this name: in an email-alias pool, the name taken is the
                    // email, another user's (the message names the email).
                    None if f.error.code.as_deref() == Some("AliasExistsException")
                        || f.error.message.to_lowercase().contains(&row.email) =>
                    {
                        Created::Done(held_by_another(r, &row.email, None, Some(f)))
                    }
                    None => Created::Done(failed(r, "creating the user (AdminCreateUser)", f)),
                }
            }
            Err(g) => Created::Done(failed(r, "re-reading the user after a failed create", &g)),
        }
    }

    /// The help desk's reset of a confirmed provider's password: Cognito's code to the verified
    /// address (AdminResetUserPassword), or with `temporary` a new temporary password to the
    /// password file (AdminSetUserPassword, Permanent=false, written ahead like an invitation).
    /// Refused, with the reason, where the code could never arrive.
    pub async fn reset(&self, mut r: RowReport, user: &RemoteUser, temporary: bool) -> RowReport {
        r.username = Some(user.username.clone());
        r.status_before = Some(user.status.clone());
        r.action = Act::Reset;
        if user.status != UserStatus::Confirmed {
            r.outcome = Outcome::Attention;
            r.reason = match user.status {
                UserStatus::ForceChangePassword => {
                    "not signed in yet: use `reissue` for a new invitation".to_string()
                }
                ref s => format!("status {s}: only a confirmed provider's password is reset"),
            };
            return r;
        }
        if temporary {
            return self.reset_temporary(r, user).await;
        }
        self.reset_by_code(r, user).await
    }

    /// `reset --temporary`: a new temporary password, written ahead like an invitation and put
    /// in the password file, for a provider no code can reach.
    async fn reset_temporary(&self, mut r: RowReport, user: &RemoteUser) -> RowReport {
        let decision = Decision {
            action: Action::Reissue {
                method: ReissueMethod::SetPassword,
                cause: plan::ReissueCause::Always,
            },
            add_groups: Vec::new(),
            verify_email: false,
            changes: plan::Changes::default(),
        };
        let Some(invitation) = self
            .prepare(&mut r, InviteKind::SetPassword, &decision)
            .await
        else {
            return r;
        };
        match self
            .calls
            .set_temporary_password(&user.username, &invitation.password)
            .await
        {
            Ok(done) => r.attempts += done.attempts,
            Err(f) => {
                self.not_sent(invitation, &f);
                return failed(r, "setting a temporary password", &f);
            }
        }
        invitation.ticket.spend();
        self.settle(invitation.intent, true);
        r.outcome = Outcome::Reissued;
        r.reason = "password reset: a new temporary password is in the password file; the \
                    provider sets their own at the next sign-in"
            .to_string();
        self.invitation_out(
            &mut r,
            &user.username,
            &invitation.password,
            invitation.intent,
            "reset",
        );
        r
    }

    /// `reset`: Cognito's code to the verified address the pool recovers by, on the message
    /// budget; refused where the code could never arrive.
    async fn reset_by_code(&self, mut r: RowReport, user: &RemoteUser) -> RowReport {
        let recovery = self.pool.recovery;
        let by_email = recovery.by_email && user.email.is_some() && user.email_verified;
        let by_phone = recovery.by_phone && user.phone.is_some() && user.phone_verified;
        if !(by_email || by_phone) {
            r.outcome = Outcome::Attention;
            r.reason = "no verified email or phone the pool recovers by: Cognito's code could \
                        never arrive; `doctor --fix` marks an existing email verified, or use \
                        `reset --temporary`"
                .to_string();
            return r;
        }
        let ticket = match self.budget.take(true) {
            Ok(t) => t,
            Err(why) => {
                r.defer(why, wording::deferral(why, self.policy.delivery));
                return r;
            }
        };
        match self.calls.reset_password(&user.username).await {
            Ok(done) => {
                ticket.spend();
                r.attempts += done.attempts;
                r.outcome = Outcome::Reissued;
                r.status_after = Some(UserStatus::ResetRequired);
                r.reason = self.code_sent(by_email);
            }
            Err(f) => {
                if f.maybe_done {
                    ticket.spend();
                }
                if f.error.class == ErrorClass::EmailQuota {
                    self.email_limit(
                        &mut r,
                        &f,
                        wording::deferral(Deferral::MessageLimit, self.policy.delivery),
                    );
                    return r;
                }
                return failed(r, "resetting the password (AdminResetUserPassword)", &f);
            }
        }
        self.observe(&r, Some(user.enabled));
        r
    }

    /// The reason of a reset whose code Cognito accepted. Cognito's own sender drops a code
    /// silently over the daily cap while the call succeeds: the answer is an acceptance, not a
    /// delivery.
    fn code_sent(&self, by_email: bool) -> String {
        let accepted = if by_email && self.pool.uses_cognito_email() {
            "; accepted by Cognito; delivery not confirmed (its own sender drops codes \
             silently over the account's 50 emails a day): if none arrives, `reset \
             --temporary`"
        } else {
            ""
        };
        format!(
            "password reset: Cognito sent a code to the verified {}; the provider \
             completes ForgotPassword with it{accepted}",
            if by_email { "email" } else { "phone number" }
        )
    }

    /// Re-issues the invitation. RESEND addresses the user by the name it was created with (the
    /// email in pools where email is the username), which every Cognito API accepts.
    async fn reissue(
        &self,
        mut r: RowReport,
        row: &Row,
        user: RemoteUser,
        method: ReissueMethod,
        cause: plan::ReissueCause,
        d: &Decision,
    ) -> RowReport {
        let kind = match method {
            ReissueMethod::Resend => InviteKind::Resend,
            ReissueMethod::SetPassword => InviteKind::SetPassword,
        };
        let Some(invitation) = self.prepare(&mut r, kind, d).await else {
            return r;
        };
        match self.reissue_call(row, &user, method, &invitation).await {
            Ok(done) => r.attempts += done.attempts,
            Err(f) => return self.reissue_failed(r, &user, method, invitation, &f),
        }
        invitation.ticket.spend();
        self.settle(invitation.intent, true);
        r.outcome = Outcome::Reissued;
        r.reason = wording::reissued(method, cause);
        if !self.invitation_out(
            &mut r,
            &user.username,
            &invitation.password,
            invitation.intent,
            "re-issued",
        ) {
            return r;
        }
        self.fix_up(r, &user.username, Some(&user), d).await
    }

    /// The re-issue's one call: RESEND by the name the row gives, or a new temporary password.
    async fn reissue_call(
        &self,
        row: &Row,
        user: &RemoteUser,
        method: ReissueMethod,
        invitation: &Invitation<'_>,
    ) -> Result<crate::executor::Done<()>, Failed> {
        match method {
            ReissueMethod::Resend => {
                let name = username_for(self.pool.username_mode, row);
                self.calls
                    .resend_invitation(
                        &name,
                        &invitation.password,
                        self.policy.delivery,
                        user.last_modified,
                    )
                    .await
            }
            ReissueMethod::SetPassword => {
                self.calls
                    .set_temporary_password(&user.username, &invitation.password)
                    .await
            }
        }
    }

    /// A re-issue whose call failed for good: the email limit defers it, a password that may be
    /// set goes to the password file and is marked lost, anything else fails the row with its
    /// share given back.
    fn reissue_failed(
        &self,
        mut r: RowReport,
        user: &RemoteUser,
        method: ReissueMethod,
        invitation: Invitation<'_>,
        f: &Failed,
    ) -> RowReport {
        if f.error.class == ErrorClass::EmailQuota {
            // After a refused RESEND the old temporary password may be dead already: the next
            // run re-issues whatever the expiry says.
            self.undelivered(invitation);
            self.email_limit(
                &mut r,
                f,
                wording::deferral(Deferral::MessageLimit, self.policy.delivery).to_string(),
            );
            return r;
        }
        if f.maybe_done && method == ReissueMethod::SetPassword {
            // The password may be set in Cognito: it goes to the password file, so nobody is
            // locked out, and the state marks it lost, so the next run sets a new one.
            let recorded = self
                .password_file
                .as_ref()
                .map(|file| file.record(&user.username, &invitation.password));
            self.undelivered(invitation);
            let mut r = failed(r, "re-issuing the invitation", f);
            r.reason = match recorded {
                Some(Ok(())) => format!(
                    "{}; whether the new password was set is not known: it is in the password \
                     file in case it was, and the next run sets another",
                    r.reason
                ),
                _ => format!("{}; the next run sets another password", r.reason),
            };
            return r;
        }
        self.not_sent(invitation, f);
        failed(r, "re-issuing the invitation", f)
    }

    /// What follows an invitation that went out: the user is pending with a fresh expiry, and in
    /// suppress mode its password goes to the password file. When that file cannot take it the
    /// row fails (the state marks the password lost, so the next run re-issues it). Returns
    /// whether the row goes on.
    fn invitation_out(
        &self,
        r: &mut RowReport,
        username: &str,
        password: &TempPassword,
        intent: Option<i64>,
        what: &str,
    ) -> bool {
        r.status_after = Some(UserStatus::ForceChangePassword);
        r.temp_password_expires_at = Some(self.now() + self.policy.validity);
        if let Some(file) = &self.password_file {
            if let Err(e) = file.record(username, password) {
                r.outcome = Outcome::Failed;
                r.reason = format!(
                    "{what}, but the password could not be recorded: {e}; the next run re-issues it"
                );
                return false;
            }
            if let Some(id) = intent
                && let Err(e) = self.state.password_recorded(id)
            {
                tracing::warn!("{e}");
            }
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

    fn record_invited(&self, row: &Row, username: &str) {
        if let Err(e) = self
            .state
            .mark_invited(self.subject(&row.key), username, &row.email)
        {
            tracing::warn!("{e}");
        }
    }

    /// Brings the user in line with the decision: `email_verified`, `--update`'s attribute
    /// changes (one AdminUpdateUserAttributes, one AdminDeleteUserAttributes), groups added and
    /// removed. `--update`'s changes are recorded ahead in the state. `before`: the user as read,
    /// when it existed before this run (its changes are then listed in `changed`). A failure
    /// here fails the row.
    async fn fix_up(
        &self,
        r: RowReport,
        username: &str,
        before: Option<&RemoteUser>,
        d: &Decision,
    ) -> RowReport {
        // Verifying an email that another user holds can move it (an alias) to this user
        // silently: the side that cannot take an account away from anyone asks first.
        let verified_email = verified_email(d, before);
        let r = match verified_email {
            Some(email) => {
                let own = before.map_or(username, |u| u.username.as_str());
                match self.email_free(r, own, email).await {
                    Ok(r) => r,
                    Err(r) => return r,
                }
            }
            None => r,
        };
        let w = match self.update_ahead(r, d).await {
            Ok(w) => w,
            Err(r) => return r,
        };
        match self.make_changes(w, username, d, verified_email).await {
            Ok(w) => self.fixed_up(w, before, d),
            Err(r) => r,
        }
    }

    /// Goes on with the row only if no other user holds `email` (the row's attempts counted);
    /// otherwise the row's answer: held by another, or failed.
    async fn email_free(
        &self,
        mut r: RowReport,
        own: &str,
        email: &str,
    ) -> Result<RowReport, RowReport> {
        match self.email_holder(own, email).await {
            Ok((attempts, None)) => {
                r.attempts += attempts;
                Ok(r)
            }
            Ok((attempts, Some(other))) => {
                r.attempts += attempts;
                Err(held_by_another(r, email, Some(&other), None))
            }
            Err(f) => Err(failed(r, "looking for another user with the email", &f)),
        }
    }

    /// Records `--update`'s changes ahead of their calls (none to record: no intent), so a run
    /// killed among them is settled by comparing the user with the row again. A state that
    /// cannot record them stops the row, and the run.
    async fn update_ahead(&self, mut r: RowReport, d: &Decision) -> Result<Writing, RowReport> {
        let c = &d.changes;
        let intent = if c.is_empty() {
            None
        } else {
            let update = UpdateIntent {
                changes: &c.names(&d.add_groups),
                run_id: &self.run_id,
                at: self.now(),
            };
            match self.state.update_intent(self.subject(&r.key), update).await {
                Ok(id) => id,
                Err(e) => {
                    self.state_failed(&mut r, &e);
                    return Err(r);
                }
            }
        };
        Ok(Writing {
            r,
            intent,
            written: Vec::new(),
            done: Vec::new(),
        })
    }

    /// The fix-up's calls, in order: attributes, groups added, groups left. The first that
    /// fails for good ends the row.
    async fn make_changes(
        &self,
        w: Writing,
        username: &str,
        d: &Decision,
        verified_email: Option<&str>,
    ) -> Result<Writing, RowReport> {
        let w = self
            .write_attributes(w, username, d, verified_email)
            .await?;
        let w = self.add_groups(w, username, &d.add_groups).await?;
        self.leave_groups(w, username, &d.changes.remove_groups)
            .await
    }

    /// The attributes set (with a missing `email_verified`, in the same call) and deleted.
    async fn write_attributes(
        &self,
        mut w: Writing,
        username: &str,
        d: &Decision,
        verified_email: Option<&str>,
    ) -> Result<Writing, RowReport> {
        let c = &d.changes;
        // A missing email_verified goes in the same call as the row's changes.
        let mut set = c.set.clone();
        if d.verify_email {
            set.push(("email_verified".to_string(), "true".to_string()));
        }
        if !set.is_empty() {
            match self.calls.update_attributes(username, &set).await {
                Ok(x) => w.r.attempts += x.attempts,
                // Only an email this write verifies can be "held by another user": any other
                // alias refused stays a failure in Cognito's own words.
                Err(f) if f.error.class == ErrorClass::Exists && verified_email.is_some() => {
                    let email = verified_email.unwrap_or_default().to_string();
                    let r = self.changes_failed(w, "updating attributes", &f);
                    return Err(held_by_another(r, &email, None, Some(&f)));
                }
                Err(f) => return Err(self.changes_failed(w, "updating attributes", &f)),
            }
            w.written.extend(c.set_names());
            if d.verify_email {
                w.done.push("email_verified set".to_string());
            }
        }
        if !c.delete.is_empty() {
            match self.calls.delete_attributes(username, &c.delete).await {
                Ok(x) => w.r.attempts += x.attempts,
                Err(f) => return Err(self.changes_failed(w, "deleting attributes", &f)),
            }
            w.written.extend(c.delete.iter().cloned());
        }
        let set_names: Vec<&String> = w.written.iter().collect();
        let update = wording::updated(&set_names, &[]);
        if !update.is_empty() {
            w.done.push(update);
        }
        Ok(w)
    }

    /// The groups added, recorded in the state as they stand when the calls stop (all, or up
    /// to the one that failed).
    async fn add_groups(
        &self,
        mut w: Writing,
        username: &str,
        groups: &[String],
    ) -> Result<Writing, RowReport> {
        let mut added: Vec<String> = Vec::new();
        for group in groups {
            match self.calls.add_to_group(username, group).await {
                Ok(x) => {
                    w.r.attempts += x.attempts;
                    w.done.push(format!("added to group {group}"));
                    added.push(group.clone());
                    w.written.push(format!("+{group}"));
                }
                Err(f) => {
                    self.record_groups(&w.r.key, &added);
                    let what = format!("adding to group {group}");
                    return Err(self.changes_failed(w, &what, &f));
                }
            }
        }
        self.record_groups(&w.r.key, &added);
        Ok(w)
    }

    /// The groups the user leaves.
    async fn leave_groups(
        &self,
        mut w: Writing,
        username: &str,
        groups: &[String],
    ) -> Result<Writing, RowReport> {
        for group in groups {
            match self.calls.remove_from_group(username, group).await {
                Ok(x) => {
                    w.r.attempts += x.attempts;
                    w.done.push(format!("removed from group {group}"));
                    w.written.push(format!("-{group}"));
                }
                Err(f) => {
                    let what = format!("removing from group {group}");
                    return Err(self.changes_failed(w, &what, &f));
                }
            }
        }
        Ok(w)
    }

    /// A fix-up whose calls all went through: what `--update` wrote is recorded, and the
    /// report says what was done and, for a user that existed before, what changed.
    fn fixed_up(&self, w: Writing, before: Option<&RemoteUser>, d: &Decision) -> RowReport {
        let c = &d.changes;
        let Writing {
            mut r,
            intent,
            written,
            done,
        } = w;
        if let Some(user) = before
            && !c.is_empty()
        {
            self.record_update(&r.key, user, &written, intent, c);
        }
        if !done.is_empty() {
            r.reason = format!("{}; {}", r.reason, done.join(", "));
        }
        if before.is_some() {
            r.changed = written;
            changed_outcome(&mut r, c);
        }
        r
    }

    /// A fix-up call failed for good: [`Ctx::update_failed`] with what was written so far.
    fn changes_failed(&self, w: Writing, what: &str, f: &Failed) -> RowReport {
        self.update_failed(w.r, w.intent, w.written, what, f)
    }

    /// Another user of the pool whose email is `email`, if any (one `ListUsers` filter), with
    /// the attempts it took. An address too long to filter on cannot be anyone's in Cognito.
    async fn email_holder(
        &self,
        username: &str,
        email: &str,
    ) -> Result<(u32, Option<String>), Failed> {
        let Some(filter) = crate::cognito::limits::equals_filter("email", email) else {
            return Ok((0, None));
        };
        let users = self.calls.users(Some(&filter)).await?;
        let other = users
            .into_iter()
            .map(|u| u.username)
            .find(|u| u != username);
        Ok((1, other))
    }

    /// Records what `--update` wrote. For a pending user this job did not invite, the user's
    /// `UserLastModifiedDate` before the write (which moved it) becomes its expiry clock.
    fn record_update(
        &self,
        key: &str,
        user: &RemoteUser,
        written: &[String],
        intent: Option<i64>,
        c: &plan::Changes,
    ) {
        let new_email = c
            .set
            .iter()
            .find(|(n, _)| n == "email")
            .map(|(_, v)| v.as_str());
        let uninvited = self
            .known
            .with(key, |k| k.is_none_or(|k| k.last_invited_at.is_none()));
        let pending_since = (user.status == UserStatus::ForceChangePassword && uninvited)
            .then_some(user.last_modified)
            .flatten();
        let now = self.now();
        let update = Updated {
            written,
            email: new_email,
            removed_groups: &c.remove_groups,
            pending_since,
            at: now,
        };
        let recorded = self
            .state
            .updated(self.subject(key), update)
            .and_then(|()| match intent {
                Some(id) => self.state.settle_update(id, UpdateOutcome::Done, now),
                None => Ok(()),
            });
        if let Err(e) = recorded {
            tracing::warn!("{e}");
        }
    }

    /// An update call failed for good: the row fails; what was written before stays listed.
    fn update_failed(
        &self,
        r: RowReport,
        intent: Option<i64>,
        written: Vec<String>,
        what: &str,
        f: &Failed,
    ) -> RowReport {
        if let Some(id) = intent
            && let Err(e) = self
                .state
                .settle_update(id, UpdateOutcome::Failed, self.now())
        {
            tracing::warn!("{e}");
        }
        let mut r = self.fix_up_failed(r, what, f);
        r.changed = written;
        r
    }

    /// A fix-up failed: the row fails, and its reason keeps what was done before.
    fn fix_up_failed(&self, mut r: RowReport, what: &str, f: &Failed) -> RowReport {
        let before = std::mem::take(&mut r.reason);
        let mut r = failed(r, what, f);
        r.reason = format!("{before}; {}", r.reason);
        r
    }

    fn record_groups(&self, key: &str, added: &[String]) {
        if let Err(e) = self.state.groups_done(self.subject(key), added) {
            tracing::warn!("{e}");
        }
    }

    /// Records the statuses the row saw, and only those the state does not already hold: a
    /// re-run of a big cohort then writes nothing for the rows that did not change.
    fn observe(&self, r: &RowReport, enabled: Option<bool>) {
        let (last_status, last_enabled, last_read_at) = self.known.with(&r.key, |k| {
            (
                k.and_then(|k| k.last_status.clone()),
                k.and_then(|k| k.last_enabled),
                k.and_then(|k| k.last_read_at),
            )
        });
        let mut statuses = Vec::new();
        if let Some(before) = &r.status_before {
            let unchanged = last_status.as_ref() == Some(before) && last_enabled == enabled;
            if !unchanged {
                statuses.push(before);
            }
        }
        // A created user's status was recorded with its invitation.
        if let Some(after) = &r.status_after
            && r.status_before.as_ref() != Some(after)
            && r.outcome != Outcome::Created
        {
            statuses.push(after);
        }
        let read_confirmed = r.status_before == Some(UserStatus::Confirmed)
            && last_read_at.is_none_or(|at| self.now() - at > READ_AT_RESOLUTION);
        for status in statuses {
            let seen = Observation {
                username: r.username.as_deref(),
                email: r.email.as_deref(),
                status: Some(status),
                enabled,
                run_id: &self.run_id,
                at: self.now(),
            };
            if let Err(e) = self.state.observe(self.subject(&r.key), seen) {
                tracing::warn!("could not record the status of {}: {e}", r.key);
            }
        }
        if read_confirmed
            && let Err(e) = self.state.read_confirmed(self.subject(&r.key), self.now())
        {
            tracing::warn!("{e}");
        }
    }
}

/// A confirmed provider's read time is recorded again only when it is older than this: the
/// periodic re-read needs hours, not seconds, and a `--refresh full` re-run then writes nothing.
const READ_AT_RESOLUTION: chrono::Duration = chrono::Duration::hours(1);

/// The fix-ups after a create: the row's groups only (a new user's email is verified at
/// creation).
fn groups_only(d: &Decision) -> Decision {
    Decision {
        action: Action::Create,
        add_groups: d.add_groups.clone(),
        verify_email: false,
        changes: plan::Changes::default(),
    }
}

/// The outcome of an existing user's row once its changes are known: `updated` where something
/// changed and nothing more important happened; `attention` where an immutable attribute
/// differs (the other changes are still made).
fn changed_outcome(r: &mut RowReport, c: &plan::Changes) {
    if r.outcome == Outcome::Skipped && !r.changed.is_empty() {
        r.outcome = Outcome::Updated;
    }
    if !c.immutable.is_empty() {
        if matches!(r.outcome, Outcome::Skipped | Outcome::Updated) {
            r.outcome = Outcome::Attention;
        }
        if !r.reason.contains(&wording::immutable(&c.immutable)) {
            r.reason = format!("{}; {}", r.reason, wording::immutable(&c.immutable));
        }
    }
}

/// The report row of a row not read from Cognito this run ([`plan::reread`]: confirmed, row
/// unchanged, read recently), or `None` when it must be read. `label`: the run's update mode,
/// under which row digests are taken, so a run that updates attributes reads rows last seen
/// by a create-only run.
pub fn not_reread(
    row: &Row,
    known: Option<&Known>,
    label: &str,
    refresh: plan::Refresh,
    refresh_after: chrono::Duration,
    now: DateTime<Utc>,
) -> Option<RowReport> {
    let seen = known.map(Known::seen);
    let plan::Reread::Skip { last_read } = plan::reread(
        &row.key,
        &row.digest(label),
        seen.as_ref(),
        refresh,
        refresh_after,
        now,
    ) else {
        return None;
    };
    let mut r = RowReport::new(
        row.line,
        row.key.clone(),
        Some(row.email.clone()),
        Outcome::Skipped,
    );
    r.username = known.and_then(|k| k.username.clone());
    r.name = row.display_name();
    r.action = Act::Skip;
    // As last seen: what `--on-confirmed` and the reports go by.
    r.status_before = Some(UserStatus::Confirmed);
    r.status_after = Some(UserStatus::Confirmed);
    r.reason = wording::not_reread(last_read);
    Some(r)
}

/// What `run`'s stream of rows holds: a row to process, or one already reported (invalid, or
/// not re-read).
pub enum Item {
    Process(Row),
    Reported(RowReport),
}

/// Processes the stream of rows, `concurrency` at a time, and hands each report to `finished`
/// with its place in the stream, as it finishes (the run's report sink: a writer, which this
/// module does not know). Items never started (the run was stopped) are
/// reported deferred. Holds only the rows in flight.
pub async fn process_stream<D: Directory>(
    ctx: &Ctx<D>,
    items: impl Iterator<Item = Item>,
    total: u64,
    concurrency: usize,
    bar: bool,
    finished: impl FnMut(u64, RowReport),
) {
    let limiter = std::sync::Arc::clone(&ctx.calls.exec.limiter);
    let progress =
        Progress::start("onboarding", total, bar).with_waits(Box::new(move || limiter.waiting()));
    // Who each row in flight is, should it panic.
    let in_flight: std::cell::RefCell<HashMap<usize, (u64, String, String)>> = Default::default();
    let finished = std::cell::RefCell::new(finished);
    ctx.calls
        .exec
        .for_each_bounded_then(
            items.enumerate(),
            concurrency,
            |(seq, item)| {
                let row = match item {
                    Item::Process(row) => {
                        in_flight
                            .borrow_mut()
                            .insert(seq, (row.line, row.key.clone(), row.email.clone()));
                        Ok(row)
                    }
                    Item::Reported(r) => Err(r),
                };
                async move {
                    match row {
                        Ok(row) => (seq, ctx.process(row).await),
                        Err(r) => (seq, r),
                    }
                }
            },
            |done| {
                progress.inc();
                let (seq, r) = done.unwrap_or_else(|panicked| {
                    let (line, key, email) = in_flight
                        .borrow_mut()
                        .remove(&panicked.index)
                        .unwrap_or_default();
                    let mut r = RowReport::new(line, key, Some(email), Outcome::Failed);
                    r.reason = format!("the row stopped unexpectedly: {}", panicked.message);
                    (panicked.index, r)
                });
                in_flight.borrow_mut().remove(&seq);
                (finished.borrow_mut())(seq as u64, r);
            },
            |(seq, item)| {
                let r = match item {
                    Item::Process(row) => not_started_row(row),
                    Item::Reported(r) => r,
                };
                (finished.borrow_mut())(seq as u64, r);
            },
        )
        .await;
}

/// A row not started because the run was stopped.
fn not_started_row(row: Row) -> RowReport {
    let name = row.display_name();
    let mut r = RowReport::new(row.line, row.key, Some(row.email), Outcome::Deferred);
    r.name = name;
    r.action = Act::None;
    r.defer(
        Deferral::NotStarted,
        wording::deferral(Deferral::NotStarted, crate::cognito::Delivery::Suppress).to_string(),
    );
    r
}

/// Runs the rows, `concurrency` at a time; rows not started when the run stops are deferred.
pub async fn process_rows<D: Directory>(
    ctx: &Ctx<D>,
    rows: Vec<Row>,
    concurrency: usize,
    bar: bool,
) -> Vec<RowReport> {
    let progress = Progress::start("onboarding", rows.len() as u64, bar);
    let mut out = Vec::with_capacity(rows.len());
    let started: Vec<(u64, String, String)> = rows
        .iter()
        .map(|r| (r.line, r.key.clone(), r.email.clone()))
        .collect();
    let not_started = ctx
        .calls
        .exec
        .for_each_bounded(
            rows,
            concurrency,
            |row| ctx.process(row),
            |done| {
                progress.inc();
                out.push(done.unwrap_or_else(|panicked| {
                    let (line, key, email) = started[panicked.index].clone();
                    let mut r = RowReport::new(line, key, Some(email), Outcome::Failed);
                    r.reason = format!("the row stopped unexpectedly: {}", panicked.message);
                    r
                }));
            },
        )
        .await;
    out.extend(not_started.into_iter().map(not_started_row));
    out
}

#[cfg(test)]
mod tests {
    //! The invitation paths against an in-memory pool: what each answer of Cognito makes of a
    //! row, the budget and the state.
    use super::*;
    use crate::cognito::Delivery;
    use crate::cognito::memory::{self, MemoryPool, Script};
    use crate::executor::{Cancel, Executor, RetryPolicy};
    use crate::limiter::{Category, Limiter, QuotaSource, Quotas};
    use crate::plan::{Policy, Reissue};
    use crate::state::Access;
    use std::time::Duration as StdDuration;

    struct Fixture {
        ctx: Ctx<MemoryPool>,
        _dir: tempfile::TempDir,
    }

    fn fixture(pool: MemoryPool, budget: Option<u64>, found: Found) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(
            State::open(
                &crate::state::Location::File(dir.path().join("state.db")),
                Access::Write,
            )
            .unwrap(),
        );
        let mut quotas = Quotas::default();
        for &c in Category::ALL {
            quotas.set(c, 10_000.0, QuotaSource::ConfigFile);
        }
        let exec = Arc::new(Executor::new(
            Arc::new(Limiter::new(&quotas, 1.0)),
            RetryPolicy {
                max_attempts: 4,
                base: StdDuration::from_millis(1),
                cap: StdDuration::from_millis(2),
            },
            Arc::new(Cancel::default()),
        ));
        let info = memory::pool_info();
        let known = state.known(&info.id).unwrap();
        let ctx = Ctx {
            calls: Arc::new(Calls::new(pool, exec, crate::calls::Probe::never())),
            policy: Policy::new(Reissue::Expired, Delivery::Email, 3, &info),
            pool: info,
            dry_run: false,
            found,
            memberships: None,
            budget: Budget::new(Delivery::Email, budget),
            password_file: None,
            state,
            run_id: "r1".into(),
            known: known.into(),
            cohort: None,
            reenable: false,
            suppression: crate::suppression::SuppressionList::default(),
        };
        Fixture { ctx, _dir: dir }
    }

    fn row(name: &str, groups: &[&str]) -> Row {
        Row {
            line: 2,
            key: format!("{name}@example.com"),
            email: format!("{name}@example.com"),
            username: None,
            attributes: vec![("name".into(), "山田 太郎".into())],
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn pool(f: &Fixture) -> &MemoryPool {
        &f.ctx.calls.dir
    }

    /// Takes every share left, to see how many the rows left.
    fn left(b: &Budget) -> usize {
        let mut tickets = Vec::new();
        while let Ok(t) = b.take(true) {
            tickets.push(t);
            if tickets.len() > 100 {
                break;
            }
        }
        tickets.len()
    }

    fn expired_user(name: &str) -> RemoteUser {
        memory::user(
            &format!("{name}@example.com"),
            &format!("{name}@example.com"),
            UserStatus::ForceChangePassword,
            Utc::now() - chrono::Duration::days(8),
        )
    }

    #[tokio::test]
    async fn a_new_provider_is_created_invited_once_and_recorded() {
        let f = fixture(
            MemoryPool::default(),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        let r = f.ctx.process(row("taro", &["providers"])).await;
        assert_eq!(r.outcome, Outcome::Created, "{}", r.reason);
        assert_eq!(
            r.reason,
            "created; invitation sent by email; added to group providers"
        );
        assert_eq!(pool(&f).messages(), 1);
        assert!(pool(&f).members("providers").contains("taro@example.com"));
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        let k = &known["taro@example.com"];
        assert!(k.invited && k.open_intent.is_none() && k.last_invited_at.is_some());
        assert_eq!(k.groups_done, vec!["providers".to_string()]);
        assert_eq!(left(&f.ctx.budget), 4, "one share spent");
    }

    #[tokio::test]
    async fn a_lost_create_answer_is_checked_by_a_read_and_not_sent_again() {
        let f = fixture(
            MemoryPool::default(),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script("create_user", Script::LoseAnswer);
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Created, "{}", r.reason);
        assert!(r.reason.contains("answer was lost"), "{}", r.reason);
        assert_eq!(pool(&f).calls("create_user"), 1, "never repeated");
        assert_eq!(pool(&f).messages(), 1);
        assert_eq!(left(&f.ctx.budget), 4);
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        assert!(
            known["taro@example.com"].open_intent.is_none(),
            "settled as sent"
        );
    }

    #[tokio::test]
    async fn a_create_that_never_arrived_is_sent_again_after_the_check() {
        let f = fixture(
            MemoryPool::default(),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script("create_user", Script::Timeout);
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Created, "{}", r.reason);
        assert_eq!(pool(&f).calls("create_user"), 2);
        assert_eq!(pool(&f).messages(), 1);
    }

    #[tokio::test]
    async fn a_user_created_since_a_stale_scan_is_decided_again_and_its_share_given_back() {
        let confirmed = memory::user(
            "taro@example.com",
            "taro@example.com",
            UserStatus::Confirmed,
            Utc::now(),
        );
        let f = fixture(
            MemoryPool::with_users([confirmed]),
            Some(5),
            Found::Scanned(Default::default()),
        );
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Skipped, "{}", r.reason);
        assert_eq!(r.action, Act::Skip);
        assert_eq!(r.status_before, Some(UserStatus::Confirmed));
        assert_eq!(pool(&f).messages(), 0);
        assert_eq!(left(&f.ctx.budget), 5, "the share went back");
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        assert!(!known["taro@example.com"].invited, "no invitation recorded");
    }

    #[tokio::test]
    async fn the_daily_email_limit_defers_the_row_and_stops_every_later_message() {
        let f = fixture(
            MemoryPool::default(),
            None,
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script("create_user", Script::Refuse("LimitExceededException"));
        let first = f.ctx.process(row("taro", &[])).await;
        assert_eq!(first.outcome, Outcome::Deferred);
        assert_eq!(first.deferral, Some(Deferral::MessageLimit));
        assert_eq!(first.error_code.as_deref(), Some("LimitExceededException"));
        let second = f.ctx.process(row("hanako", &[])).await;
        assert_eq!(second.deferral, Some(Deferral::MessageLimit));
        assert_eq!(
            pool(&f).calls("create_user"),
            1,
            "never retried, never tried again"
        );
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        assert!(
            known["taro@example.com"].open_intent.is_none(),
            "settled as not sent"
        );
    }

    #[tokio::test]
    async fn a_spent_budget_defers_without_a_call() {
        let f = fixture(
            MemoryPool::default(),
            Some(0),
            Found::PerRow(PerRow::new(true)),
        );
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(
            (r.outcome, r.deferral),
            (Outcome::Deferred, Some(Deferral::Budget))
        );
        assert_eq!(pool(&f).calls("create_user"), 0);
    }

    #[tokio::test]
    async fn an_undelivered_invitation_is_attention_and_the_user_is_still_set_up() {
        let f = fixture(
            MemoryPool::default(),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script(
            "create_user",
            Script::DoThenFail("CodeDeliveryFailureException"),
        );
        let r = f.ctx.process(row("taro", &["providers"])).await;
        assert_eq!(r.outcome, Outcome::Attention, "{}", r.reason);
        assert!(r.reason.contains("could not deliver"), "{}", r.reason);
        assert!(pool(&f).members("providers").contains("taro@example.com"));
        assert_eq!(
            left(&f.ctx.budget),
            4,
            "Cognito counted the attempt: the share is spent"
        );
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        let k = &known["taro@example.com"];
        assert!(k.invited);
        assert!(
            k.password_lost,
            "nobody received it: the next run re-issues it"
        );
    }

    #[tokio::test]
    async fn a_user_created_before_the_email_limit_refused_its_message_is_recorded_for_reissue() {
        let f = fixture(
            MemoryPool::default(),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script("create_user", Script::DoThenFail("LimitExceededException"));
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(
            (r.outcome, r.deferral),
            (Outcome::Deferred, Some(Deferral::MessageLimit))
        );
        assert!(r.reason.starts_with("created, but"), "{}", r.reason);
        assert!(pool(&f).get("taro@example.com").is_some());
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        let k = &known["taro@example.com"];
        assert!(k.invited && k.password_lost && k.open_intent.is_none());
        let next = plan::decide(
            &Wanted {
                email: "taro@example.com",
                name: "taro@example.com",
                groups: &[],
                attributes: &[],
                keyed_by_username: false,
            },
            pool(&f).get("taro@example.com").as_ref(),
            &|_| true,
            &k.history(),
            &f.ctx.policy,
            Utc::now(),
        );
        assert!(
            matches!(
                next.action,
                Action::Reissue {
                    cause: plan::ReissueCause::PasswordLost,
                    ..
                }
            ),
            "{next:?}"
        );
    }

    #[tokio::test]
    async fn a_server_error_after_a_create_was_carried_out_is_checked_not_repeated() {
        let f = fixture(
            MemoryPool::default(),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script("create_user", Script::DoThenFail("InternalErrorException"));
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Created, "{}", r.reason);
        assert_eq!(pool(&f).calls("create_user"), 1);
        assert_eq!(pool(&f).messages(), 1);
    }

    #[tokio::test]
    async fn an_expired_invitation_is_resent_once() {
        let f = fixture(
            MemoryPool::with_users([expired_user("taro")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Reissued, "{}", r.reason);
        assert!(
            r.reason.starts_with("invitation had expired at"),
            "{}",
            r.reason
        );
        assert_eq!(pool(&f).calls("resend_invitation"), 1);
        assert_eq!(pool(&f).messages(), 1);
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        assert_eq!(known["taro@example.com"].reissues, 1);
    }

    /// The fixture's pool sending through SES, in eu-west-1.
    fn through_ses(f: &mut Fixture) {
        f.ctx.pool.email_sending_account = "DEVELOPER".into();
        f.ctx.pool.email_source_arn =
            Some("arn:aws:ses:eu-west-1:123456789012:identity/no-reply@example.jp".into());
        f.ctx.suppression = crate::suppression::SuppressionList::of(&f.ctx.pool);
    }

    /// SES drops mail to a suppressed address: the expired invitation is not re-issued, no
    /// share of the budget is spent, and the row says why; the next provider, not suppressed,
    /// is re-issued as before. Each address is read once on the list.
    #[tokio::test]
    async fn an_expired_invitation_to_a_suppressed_address_is_not_reissued_and_spends_nothing() {
        let mut f = fixture(
            MemoryPool::with_users([expired_user("taro"), expired_user("hanako")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        through_ses(&mut f);
        let since = Utc::now() - chrono::Duration::days(2);
        pool(&f).suppress(
            "taro@example.com",
            crate::cognito::Suppressed {
                reason: crate::cognito::SuppressionReason::Bounce,
                since,
            },
        );
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Attention, "{}", r.reason);
        assert!(
            r.reason.contains("suppression list (BOUNCE"),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("nothing spent"), "{}", r.reason);
        assert!(matches!(
            r.stuck,
            Some(crate::report::Stuck::Suppressed(ref s)) if s.since == since
        ));
        assert_eq!(pool(&f).calls("resend_invitation"), 0);
        assert_eq!(pool(&f).messages(), 0);
        assert_eq!(left(&f.ctx.budget), 5, "no share spent");
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        assert_eq!(known["taro@example.com"].reissues, 0);
        assert!(known["taro@example.com"].open_intent.is_none(), "no intent");

        let r = f.ctx.process(row("hanako", &[])).await;
        assert_eq!(r.outcome, Outcome::Reissued, "{}", r.reason);
        assert_eq!(pool(&f).calls("suppressed"), 2, "one read per address");
        assert_eq!(pool(&f).calls("resend_invitation"), 1);
    }

    /// A pool that does not send through SES never reads SES's list.
    #[tokio::test]
    async fn a_pool_with_cognitos_own_sender_never_reads_the_suppression_list() {
        let f = fixture(
            MemoryPool::with_users([expired_user("taro")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).suppress(
            "taro@example.com",
            crate::cognito::Suppressed {
                reason: crate::cognito::SuppressionReason::Complaint,
                since: Utc::now(),
            },
        );
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Reissued, "{}", r.reason);
        assert_eq!(pool(&f).calls("suppressed"), 0);
    }

    /// A list that cannot be read (no permission) is not asked again, and the re-issues go out
    /// as they did before it was read at all.
    #[tokio::test]
    async fn a_refused_read_of_the_list_is_not_asked_again_and_the_reissue_goes_out() {
        let mut f = fixture(
            MemoryPool::with_users([expired_user("taro"), expired_user("hanako")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        through_ses(&mut f);
        pool(&f).script("suppressed", Script::Refuse("AccessDeniedException"));
        for name in ["taro", "hanako"] {
            let r = f.ctx.process(row(name, &[])).await;
            assert_eq!(r.outcome, Outcome::Reissued, "{name}: {}", r.reason);
        }
        assert_eq!(
            pool(&f).calls("suppressed"),
            1,
            "refused once, not asked again"
        );
        assert_eq!(pool(&f).calls("resend_invitation"), 2);
        assert!(f.ctx.suppression.refused().is_some());
        assert!(!f.ctx.calls.exec.cancel.is_cancelled(), "never fatal");
    }

    #[tokio::test]
    async fn a_lost_resend_answer_is_checked_not_sent_twice() {
        let f = fixture(
            MemoryPool::with_users([expired_user("taro")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script("resend_invitation", Script::LoseAnswer);
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Reissued, "{}", r.reason);
        assert_eq!(pool(&f).calls("resend_invitation"), 1);
        assert_eq!(pool(&f).messages(), 1);
        assert_eq!(left(&f.ctx.budget), 4);
    }

    #[tokio::test]
    async fn a_resend_that_never_arrived_is_sent_again_after_the_check() {
        let f = fixture(
            MemoryPool::with_users([expired_user("taro")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script("resend_invitation", Script::Timeout);
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Reissued, "{}", r.reason);
        assert_eq!(pool(&f).calls("resend_invitation"), 2);
        assert_eq!(pool(&f).messages(), 1);
    }

    #[tokio::test]
    async fn a_refused_resend_fails_the_row_and_gives_the_share_back() {
        let f = fixture(
            MemoryPool::with_users([expired_user("taro")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script(
            "resend_invitation",
            Script::Refuse("UnsupportedUserStateException"),
        );
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Failed, "{}", r.reason);
        assert_eq!(
            r.error_code.as_deref(),
            Some("UnsupportedUserStateException")
        );
        assert_eq!(left(&f.ctx.budget), 5);
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        assert_eq!(known["taro@example.com"].reissues, 0);
        assert!(known["taro@example.com"].open_intent.is_none());
    }

    #[tokio::test]
    async fn an_unanswered_check_of_a_lost_write_leaves_the_share_spent_and_the_intent_open() {
        let f = fixture(
            MemoryPool::with_users([expired_user("taro")]),
            Some(5),
            Found::Scanned(crate::lookup::Index::new(vec![expired_user("taro")])),
        );
        pool(&f).script("resend_invitation", Script::LoseAnswer);
        pool(&f).script("get_user", Script::Refuse("InvalidParameterException"));
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Failed, "{}", r.reason);
        assert_eq!(
            pool(&f).calls("resend_invitation"),
            1,
            "not repeated blindly"
        );
        assert_eq!(
            left(&f.ctx.budget),
            4,
            "the message may have gone out: the share stays spent"
        );
        let known = f.ctx.state.known(&f.ctx.pool.id).unwrap();
        assert!(
            known["taro@example.com"].open_intent.is_some(),
            "the next run settles it from what Cognito shows"
        );
    }

    #[tokio::test]
    async fn a_dry_run_changes_nothing_and_says_what_it_would_do() {
        let mut f = fixture(
            MemoryPool::with_users([expired_user("taro")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        f.ctx.dry_run = true;
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Reissued);
        assert_eq!(r.reason, "dry run: would re-issue the invitation");
        let new = f.ctx.process(row("hanako", &["providers"])).await;
        assert_eq!(
            new.reason,
            "dry run: would create and invite; groups providers"
        );
        assert_eq!(
            pool(&f).calls("resend_invitation") + pool(&f).calls("create_user"),
            0
        );
        assert_eq!(pool(&f).messages(), 0);
    }

    fn existing(username: &str, email: &str) -> RemoteUser {
        memory::user(username, email, UserStatus::Confirmed, Utc::now())
    }

    #[tokio::test]
    async fn a_provider_in_another_case_is_found_per_row_and_by_scan_and_never_created_beside() {
        let user = existing("Taro.Yamada@Example.jp", "Taro.Yamada@Example.jp");
        for found in [
            Found::PerRow(PerRow::new(true)),
            Found::Scanned(crate::lookup::Index::new(vec![user.clone()])),
        ] {
            let f = fixture(MemoryPool::with_users([user.clone()]), Some(5), found);
            let mut r = row("x", &[]);
            r.key = "taro.yamada@example.jp".into();
            r.email = "taro.yamada@example.jp".into();
            let report = f.ctx.process(r).await;
            assert_eq!(report.outcome, Outcome::Attention, "{}", report.reason);
            assert!(
                report.reason.contains("Taro.Yamada@Example.jp"),
                "{}",
                report.reason
            );
            assert_eq!(pool(&f).calls("create_user"), 0);
        }
    }

    #[tokio::test]
    async fn a_provider_under_another_username_with_the_rows_email_is_not_duplicated() {
        let f = fixture(
            MemoryPool::with_users([existing("taro", "taro@example.com")]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        let r = f.ctx.process(row("taro", &[])).await;
        assert_eq!(r.outcome, Outcome::Attention, "{}", r.reason);
        assert!(r.reason.contains("as taro;"), "{}", r.reason);
        assert_eq!(pool(&f).calls("create_user"), 0);
        // One read of the pool serves every row that misses.
        let _ = f.ctx.process(row("hanako", &[])).await;
        let _ = f.ctx.process(row("jiro", &[])).await;
        assert_eq!(pool(&f).calls("list_users"), 1);
    }

    #[tokio::test]
    async fn reset_sends_a_code_once_even_when_its_answer_is_lost() {
        let user = existing("taro@example.com", "taro@example.com");
        let f = fixture(
            MemoryPool::with_users([user.clone()]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        pool(&f).script("reset_password", Script::LoseAnswer);
        let r = RowReport::new(1, "taro@example.com".into(), None, Outcome::Skipped);
        let r = f.ctx.reset(r, &user, false).await;
        assert_eq!(r.outcome, Outcome::Reissued, "{}", r.reason);
        assert_eq!(r.action, Act::Reset);
        assert_eq!(
            pool(&f).calls("reset_password"),
            1,
            "checked, not sent twice"
        );
        assert_eq!(pool(&f).messages(), 1);
        assert_eq!(left(&f.ctx.budget), 4, "a code is a message");
    }

    #[tokio::test]
    async fn reset_refuses_where_the_code_could_never_arrive() {
        let mut user = existing("taro@example.com", "taro@example.com");
        user.email_verified = false;
        let f = fixture(
            MemoryPool::with_users([user.clone()]),
            Some(5),
            Found::PerRow(PerRow::new(true)),
        );
        let r = RowReport::new(1, "taro@example.com".into(), None, Outcome::Skipped);
        let r = f.ctx.reset(r, &user, false).await;
        assert_eq!(r.outcome, Outcome::Attention);
        assert!(r.reason.contains("never arrive"), "{}", r.reason);
        assert_eq!(pool(&f).calls("reset_password"), 0);
        assert_eq!(left(&f.ctx.budget), 5);
    }

    fn updating(f: &mut Fixture, what: plan::Update) {
        f.ctx.policy = f.ctx.policy.clone().updating(
            what,
            &f.ctx.pool,
            vec!["name".into(), "custom:org".into()],
            Default::default(),
        );
    }

    /// The state as a new run would read it.
    fn reload(f: &mut Fixture) {
        f.ctx.known = f.ctx.state.known(&f.ctx.pool.id).unwrap().into();
    }

    fn confirmed(name: &str, attributes: &[(&str, &str)]) -> RemoteUser {
        let mut u = memory::user(
            &format!("{name}@example.com"),
            &format!("{name}@example.com"),
            UserStatus::Confirmed,
            Utc::now() - chrono::Duration::days(30),
        );
        for (n, v) in attributes {
            u.attributes.insert(n.to_string(), v.to_string());
        }
        u
    }

    /// taro, confirmed, whose pool values are stale ("Old" name, an organisation the row leaves
    /// empty), under `--update` `what`.
    fn stale_taro(what: plan::Update) -> Fixture {
        let mut f = fixture(
            MemoryPool::with_users([confirmed("taro", &[("name", "Old"), ("custom:org", "KK")])]),
            None,
            Found::PerRow(PerRow::new(false)),
        );
        updating(&mut f, what);
        f
    }

    const CLEAR_EMPTY: plan::Update = plan::Update {
        attributes: true,
        groups: false,
        clear_empty: true,
    };

    const ATTRIBUTES: plan::Update = plan::Update {
        attributes: true,
        groups: false,
        clear_empty: false,
    };

    #[tokio::test]
    async fn an_update_writes_the_differences_in_one_call_and_a_rerun_writes_nothing() {
        let mut f = stale_taro(ATTRIBUTES);
        let mut r = row("taro", &[]);
        r.attributes.push(("custom:org".into(), "KK".into()));
        let report = f.ctx.process(r.clone()).await;
        assert_eq!(report.outcome, Outcome::Updated, "{report:?}");
        assert_eq!(report.changed, ["name"]);
        assert!(report.reason.contains("updated name"), "{}", report.reason);
        assert!(!report.reason.contains("山田"), "no values in the report");
        assert_eq!(pool(&f).calls("update_attributes"), 1);
        let user = pool(&f).get("taro@example.com").unwrap();
        assert_eq!(user.attributes["name"], "山田 太郎");
        let known = &f.ctx.state.known(&f.ctx.pool.id).unwrap()["taro@example.com"];
        assert_eq!(known.last_written, ["name"]);
        assert!(known.open_updates.is_empty() && known.row_digest.is_some());
        assert_eq!(known.pending_since, None, "confirmed: no expiry clock");

        reload(&mut f);
        let again = f.ctx.process(r).await;
        assert_eq!(again.outcome, Outcome::Skipped, "{again:?}");
        assert!(again.changed.is_empty());
        assert_eq!(pool(&f).calls("update_attributes"), 1, "no second write");
    }

    /// taro moves to an address hanako holds: verifying it for taro could take it from hanako
    /// (an alias moves silently), so nothing is written and the row names hanako.
    #[tokio::test]
    async fn a_new_email_another_user_holds_is_attention_and_nothing_is_written() {
        let taro = memory::user(
            "taro",
            "taro@example.com",
            UserStatus::Confirmed,
            Utc::now() - chrono::Duration::days(30),
        );
        let hanako = memory::user(
            "hanako",
            "hanako@example.com",
            UserStatus::Confirmed,
            Utc::now() - chrono::Duration::days(30),
        );
        let mut f = fixture(
            MemoryPool::with_users([taro, hanako]),
            None,
            Found::PerRow(PerRow::new(false)),
        );
        updating(&mut f, ATTRIBUTES);
        let mut moved = row("taro", &[]);
        moved.key = "taro".into();
        moved.username = Some("taro".into());
        moved.email = "hanako@example.com".into();
        let report = f.ctx.process(moved.clone()).await;
        assert_eq!(report.outcome, Outcome::Attention, "{report:?}");
        assert!(
            report
                .reason
                .contains("the email hanako@example.com is held by another user (hanako)"),
            "{}",
            report.reason
        );
        assert_eq!(pool(&f).calls("list_users"), 1);
        assert_eq!(pool(&f).calls("update_attributes"), 0, "nothing written");
        assert!(report.changed.is_empty());

        // An address nobody holds is written, after the same one look.
        moved.email = "taro.new@example.com".into();
        let report = f.ctx.process(moved).await;
        assert_eq!(report.outcome, Outcome::Updated, "{report:?}");
        assert_eq!(pool(&f).calls("list_users"), 2);
        assert_eq!(pool(&f).calls("update_attributes"), 1);
    }

    #[tokio::test]
    async fn a_dry_run_lists_the_changes_and_writes_nothing() {
        let mut f = stale_taro(CLEAR_EMPTY);
        f.ctx.dry_run = true;
        let report = f.ctx.process(row("taro", &[])).await;
        assert_eq!(report.outcome, Outcome::Updated, "{report:?}");
        assert_eq!(report.changed, ["name", "custom:org"]);
        assert!(
            report.reason.contains("would update name")
                && report.reason.contains("would delete custom:org"),
            "{}",
            report.reason
        );
        assert_eq!(
            pool(&f).calls("update_attributes") + pool(&f).calls("delete_attributes"),
            0
        );
    }

    #[tokio::test]
    async fn clear_empty_deletes_in_one_call_and_a_failure_fails_the_row_keeping_what_was_written()
    {
        let mut f = stale_taro(CLEAR_EMPTY);
        pool(&f).script(
            "delete_attributes",
            Script::Refuse("InvalidParameterException"),
        );
        let report = f.ctx.process(row("taro", &[])).await;
        assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
        assert_eq!(
            report.changed,
            ["name"],
            "what was written before the failure"
        );
        assert!(
            report.reason.contains("deleting attributes failed"),
            "{}",
            report.reason
        );
        let known = &f.ctx.state.known(&f.ctx.pool.id).unwrap()["taro@example.com"];
        assert!(known.open_updates.is_empty(), "settled as failed");
        assert!(known.row_digest.is_none(), "not in step");

        reload(&mut f);
        let again = f.ctx.process(row("taro", &[])).await;
        assert_eq!(again.outcome, Outcome::Updated, "{again:?}");
        assert_eq!(
            again.changed,
            ["custom:org"],
            "only what is still different"
        );
        assert_eq!(pool(&f).calls("update_attributes"), 1);
        assert!(
            !pool(&f)
                .get("taro@example.com")
                .unwrap()
                .attributes
                .contains_key("custom:org")
        );
    }

    #[tokio::test]
    async fn a_killed_runs_update_is_rechecked_and_not_written_twice() {
        let mut f = fixture(
            MemoryPool::with_users([confirmed("taro", &[("name", "山田 太郎")])]),
            None,
            Found::PerRow(PerRow::new(false)),
        );
        updating(&mut f, ATTRIBUTES);
        // The killed run wrote its intent, and its call went through before it died.
        let id = f
            .ctx
            .state
            .update_intent(
                Subject::new(&f.ctx.pool.id, "taro@example.com"),
                UpdateIntent {
                    changes: &["name".into()],
                    run_id: "r0",
                    at: Utc::now(),
                },
            )
            .await
            .unwrap()
            .unwrap();
        reload(&mut f);
        assert_eq!(
            f.ctx.known.get("taro@example.com").unwrap().open_updates,
            [id]
        );
        let report = f.ctx.process(row("taro", &[])).await;
        assert_eq!(report.outcome, Outcome::Skipped, "{report:?}");
        assert_eq!(pool(&f).calls("update_attributes"), 0);
        let known = &f.ctx.state.known(&f.ctx.pool.id).unwrap()["taro@example.com"];
        assert!(known.open_updates.is_empty(), "settled");
    }

    #[tokio::test]
    async fn updating_a_pending_user_keeps_its_expiry_clock_and_sends_nothing() {
        let invited = Utc::now() - chrono::Duration::days(8);
        let mut pending = memory::user(
            "taro@example.com",
            "taro@example.com",
            UserStatus::ForceChangePassword,
            invited,
        );
        pending.attributes.insert("name".into(), "Old".into());
        let mut f = fixture(
            MemoryPool::with_users([pending]),
            None,
            Found::PerRow(PerRow::new(false)),
        );
        updating(&mut f, ATTRIBUTES);
        f.ctx.policy.reissue = Reissue::Never;
        let report = f.ctx.process(row("taro", &[])).await;
        assert_eq!(report.outcome, Outcome::Updated, "{report:?}");
        assert_eq!(pool(&f).messages(), 0, "an update re-sends nothing");
        let known = &f.ctx.state.known(&f.ctx.pool.id).unwrap()["taro@example.com"];
        let kept = known.pending_since.unwrap();
        assert!(
            (kept - invited).num_milliseconds().abs() < 2,
            "{kept} vs {invited}"
        );
        // The update moved UserLastModifiedDate; the expiry is still counted from before it.
        reload(&mut f);
        f.ctx.policy.reissue = Reissue::Expired;
        let next = f.ctx.process(row("taro", &[])).await;
        assert_eq!(next.outcome, Outcome::Reissued, "{next:?}");
    }

    #[tokio::test]
    async fn an_immutable_difference_needs_attention_and_the_rest_is_written() {
        let mut f = fixture(
            MemoryPool::with_users([confirmed(
                "taro",
                &[("name", "Old"), ("custom:tier", "silver")],
            )]),
            None,
            Found::PerRow(PerRow::new(false)),
        );
        f.ctx.pool.schema.insert(
            "custom:tier".into(),
            crate::cognito::SchemaAttribute {
                mutable: false,
                required: false,
                max_length: None,
                developer_only: false,
            },
        );
        updating(&mut f, ATTRIBUTES);
        let mut r = row("taro", &[]);
        r.attributes.push(("custom:tier".into(), "gold".into()));
        let report = f.ctx.process(r).await;
        assert_eq!(report.outcome, Outcome::Attention, "{report:?}");
        assert_eq!(report.changed, ["name"]);
        assert!(
            report.reason.contains("custom:tier differs"),
            "{}",
            report.reason
        );
        let user = pool(&f).get("taro@example.com").unwrap();
        assert_eq!(user.attributes["custom:tier"], "silver");
        assert_eq!(
            pool(&f).calls("update_attributes"),
            1,
            "custom:tier never sent"
        );
    }
}
