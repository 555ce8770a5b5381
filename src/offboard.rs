//! Offboarding: who a step may take off the pool (the providers of a cohort that are no longer
//! in its list; the users a run created who never signed in), the cap that stops the whole step
//! rather than part of it, and each disable, enable or delete carried out exactly once: written
//! ahead in the state, settled after, an ambiguous answer checked by reading the user back
//! (`calls`). Must not decide a row of the list (`plan`), nor write a report file (`report`).

use chrono::Utc;
use serde::Deserialize;

use crate::calls::Calls;
use crate::cognito::{Directory, RemoteUser, UserStatus};
use crate::executor::Failed;
use crate::report::model::{Act, Deferral, Outcome, RowReport};
use crate::state::{
    DELETED, Known, Observation, Offboard, Offboarded, State, Subject, UpdateIntent, UpdateOutcome,
};

/// What `run` does with the providers of its cohort that are no longer in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Absent {
    /// Leave them as they are.
    #[default]
    Keep,
    /// Disable them (AdminDisableUser, which also ends their sessions); never delete.
    Disable,
}

/// The most providers one step may take off: a count, or a share of the cohort.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cap {
    Count(u64),
    Percent(f64),
}

impl Cap {
    /// 5% of the cohort, at least one provider: a file that lost rows (a truncated export, the
    /// wrong sheet) never takes more than a few off, and a routine departure goes through.
    pub const DEFAULT: Cap = Cap::Percent(5.0);

    /// `10` or `5%`.
    pub fn parse(text: &str) -> Result<Cap, String> {
        let t = text.trim();
        let bad = || format!("{text:?}: a count of providers (10) or a share of the cohort (5%)");
        match t.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if p.is_finite() && (0.0..=100.0).contains(&p) => Ok(Cap::Percent(p)),
                _ => Err(bad()),
            },
            None => t.parse::<u64>().map(Cap::Count).map_err(|_| bad()),
        }
    }

    /// How many of `members` may go in one step.
    pub fn limit(self, members: u64) -> u64 {
        match self {
            Cap::Count(n) => n,
            Cap::Percent(p) => ((members as f64 * p / 100.0).floor() as u64).max(1),
        }
    }

    pub fn describe(self) -> String {
        match self {
            Cap::Count(n) => n.to_string(),
            Cap::Percent(p) => format!("{p}%"),
        }
    }
}

/// A step that would take off more providers than its cap: nothing was taken off.
#[derive(Debug, Clone, PartialEq)]
pub struct Capped {
    pub would: u64,
    pub limit: u64,
    pub cap: Cap,
    pub members: u64,
}

impl std::fmt::Display for Capped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} providers would be taken off, more than the cap allows ({} of {}, --max-absent \
             {}): none was; check the list, then raise the cap for this run if it is right",
            self.would,
            self.limit,
            self.members,
            self.cap.describe()
        )
    }
}

/// Whether a step of `would` providers out of `members` stays within `cap`.
pub fn check_cap(would: u64, members: u64, cap: Cap) -> Result<(), Capped> {
    let limit = cap.limit(members);
    if would > limit {
        Err(Capped {
            would,
            limit,
            cap,
            members,
        })
    } else {
        Ok(())
    }
}

/// Whether a provider the state knows is a member of `cohort` that `--absent` may take off
/// when the list no longer has it.
///
/// | the tool invited it | its cohort | disabled by the tool | last seen | member |
/// |---|---|---|---|---|
/// | no | any | any | any | no: never onboarded by this tool |
/// | yes | another, or none recorded | any | any | no: another list's |
/// | yes | this | yes | any | no: already offboarded |
/// | yes | this | no | disabled (by someone else) | no: nothing to disable |
/// | yes | this | no | deleted from the pool | no: gone |
/// | yes | this | no | otherwise | yes |
pub fn member(known: &Known, cohort: &str) -> bool {
    known.invited
        && known.cohort.as_deref() == Some(cohort)
        && known.disabled_run.is_none()
        && known.last_enabled != Some(false)
        && known.last_status.as_ref().map(UserStatus::as_str) != Some(DELETED)
}

/// The members of `cohort`, by key.
pub fn members(known: impl IntoIterator<Item = (String, Known)>, cohort: &str) -> Vec<String> {
    let mut out: Vec<String> = known
        .into_iter()
        .filter(|(_, k)| member(k, cohort))
        .map(|(key, _)| key)
        .collect();
    out.sort_unstable();
    out
}

/// Whether `revoke --run RUN` takes a provider back, by what the state knows (Cognito's status
/// is read again before each write).
///
/// | created by the run | ever seen confirmed | disabled by the tool | revocable |
/// |---|---|---|---|
/// | no | any | any | no: not this run's |
/// | yes | yes | any | no: signed in |
/// | yes | no | yes (disable) | no: already taken back |
/// | yes | no | yes (delete) | yes: the user is deleted only now |
/// | yes | no | no | yes |
pub fn revocable(known: &Known, run: &str, action: Offboard) -> bool {
    known.created_run.as_deref() == Some(run) && takeable(known, action)
}

/// Whether a user this tool created may be taken back by `action`: it never signed in, is
/// still in the pool, and is not taken back already (a disabled one may still be deleted).
pub fn takeable(known: &Known, action: Offboard) -> bool {
    known.created_run.is_some()
        && known.confirmed_at.is_none()
        && (known.disabled_run.is_none() || action == Offboard::Delete)
        && known.last_status.as_ref().map(UserStatus::as_str) != Some(DELETED)
}

/// One provider a step takes off (or puts back), as the report shows it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: String,
    pub username: Option<String>,
    pub email: Option<String>,
    /// Why: "absent from cohort providers", "created by run R".
    pub why: String,
    /// Disables, enables and deletes a killed run left open for the user, with which.
    pub open: Vec<(i64, String)>,
    /// This tool disabled it (and has not seen it enabled since).
    pub disabled_by_tool: bool,
}

impl Candidate {
    pub fn of(key: &str, known: &Known, why: String) -> Candidate {
        Candidate {
            key: key.to_string(),
            username: known.username.clone(),
            email: known.email.clone(),
            why,
            open: known.open_offboards.clone(),
            disabled_by_tool: known.disabled_run.is_some(),
        }
    }

    /// The open intents of a killed run for `action`.
    fn open_for(&self, action: Offboard) -> Vec<i64> {
        let change = action.change();
        self.open
            .iter()
            .filter(|(_, c)| *c == change)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Its row when the step was held back (by its cap, say `why`): nothing was written.
    pub fn held_back(&self, action: Offboard, why: &str) -> RowReport {
        let mut r = self.row(action);
        r.reason = format!(
            "{}: would be {}d, but the step was held back ({why}); nothing was written",
            self.why,
            action.as_str(),
        );
        r
    }

    /// Its row when the run was stopped before its turn.
    pub fn not_started(&self, action: Offboard) -> RowReport {
        let mut r = self.row(action);
        r.defer(
            Deferral::NotStarted,
            format!("{}: not started: the run was stopped", self.why),
        );
        r
    }

    /// The row a step reports for it, before anything is done.
    fn row(&self, action: Offboard) -> RowReport {
        let mut r = RowReport::new(0, self.key.clone(), self.email.clone(), Outcome::Skipped);
        r.username = self.username.clone();
        r.action = act(action);
        r
    }
}

fn act(action: Offboard) -> Act {
    match action {
        Offboard::Disable => Act::Disable,
        Offboard::Enable => Act::Enable,
        Offboard::Delete => Act::Delete,
    }
}

fn outcome(action: Offboard) -> Outcome {
    match action {
        Offboard::Disable => Outcome::Disabled,
        Offboard::Enable => Outcome::Enabled,
        Offboard::Delete => Outcome::Deleted,
    }
}

/// Where a step writes: the pool, the state, the run, and whether it only plans.
pub struct Step<'a, D: Directory> {
    pub calls: &'a Calls<D>,
    pub state: &'a State,
    pub pool: &'a str,
    pub run_id: &'a str,
    pub dry_run: bool,
    /// A revoke takes back only users who never signed in: Cognito's status is checked again
    /// just before the write.
    pub only_pending: bool,
}

/// A candidate's user as read just before its step: None when it is not in the pool.
pub struct Seen {
    pub user: Option<RemoteUser>,
    pub attempts: u32,
}

impl Seen {
    /// Whether a disable would write nothing: the user is gone, or disabled already.
    pub fn nothing_to_disable(&self) -> bool {
        self.user.as_ref().is_none_or(|u| !u.enabled)
    }
}

/// What the user is now decides the write.
///
/// | user now | action | pending only | → |
/// |---|---|---|---|
/// | not in the pool | any | any | nothing to do (gone) |
/// | signed in (not `FORCE_CHANGE_PASSWORD`) | any | yes | left alone |
/// | disabled | disable | any | nothing to write: already disabled (by this tool's killed run when it left an intent open, else by someone else) |
/// | enabled | enable | any | nothing to write: already enabled |
/// | otherwise | any | any | the write |
enum Now {
    Gone,
    SignedIn,
    AlreadyDone,
    Write,
}

fn now(user: Option<&RemoteUser>, action: Offboard, only_pending: bool) -> Now {
    let Some(user) = user else {
        return Now::Gone;
    };
    if only_pending && user.status != UserStatus::ForceChangePassword {
        return Now::SignedIn;
    }
    match action {
        Offboard::Disable if !user.enabled => Now::AlreadyDone,
        Offboard::Enable if user.enabled => Now::AlreadyDone,
        _ => Now::Write,
    }
}

impl<D: Directory> Step<'_, D> {
    /// Carries out `action` for one provider and reports it.
    pub async fn carry_out(&self, c: &Candidate, action: Offboard) -> RowReport {
        match self.read(c, action).await {
            Ok(seen) => self.carry_out_seen(c, action, seen).await,
            Err(r) => *r,
        }
    }

    /// Reads the user as it is now; a read that fails is the row's answer.
    pub async fn read(&self, c: &Candidate, action: Offboard) -> Result<Seen, Box<RowReport>> {
        let name = c.username.as_deref().unwrap_or(&c.key);
        match self.calls.get_user(name).await {
            Ok(done) => Ok(Seen {
                user: done.value,
                attempts: done.attempts,
            }),
            Err(f) => Err(Box::new(self.failed(
                c.row(action),
                "reading the user (AdminGetUser)",
                &f,
            ))),
        }
    }

    /// [`Step::carry_out`] with the user already read.
    pub async fn carry_out_seen(&self, c: &Candidate, action: Offboard, seen: Seen) -> RowReport {
        let mut r = c.row(action);
        r.attempts += seen.attempts;
        let name = c.username.as_deref().unwrap_or(&c.key);
        let user = seen.user;
        r.status_before = user.as_ref().map(|u| u.status.clone());
        r.status_after = r.status_before.clone();
        let who = Subject::new(self.pool, &c.key);
        let open = c.open_for(action);
        match now(user.as_ref(), action, self.only_pending) {
            // A killed run's delete that went through: settled and recorded, not written again.
            Now::Gone if action == Offboard::Delete && !open.is_empty() => {
                return self.found_done(r, c, &open, who, action);
            }
            Now::Gone => {
                r.reason = format!("{}: not in the pool; nothing to do", c.why);
                self.observe(who, c, None);
                // Asked to bring back someone who is not there: a person must look.
                if action == Offboard::Enable {
                    r.outcome = Outcome::Attention;
                }
                return r;
            }
            Now::SignedIn => {
                r.reason = format!("{}: signed in since; left alone", c.why);
                return r;
            }
            Now::AlreadyDone if !open.is_empty() => {
                return self.found_done(r, c, &open, who, action);
            }
            Now::AlreadyDone => {
                // Someone else did it: the state says so (a disabled provider is no candidate,
                // an enabled one no longer offboarded), and it is not claimed as this tool's.
                match action {
                    Offboard::Enable if c.disabled_by_tool => self.record(who, action),
                    _ => self.observe(who, c, user.as_ref()),
                }
                r.reason = format!(
                    "{}: already {}d (not by this tool); nothing to write",
                    c.why,
                    action.as_str()
                );
                return r;
            }
            Now::Write => {}
        }
        if self.dry_run {
            r.outcome = outcome(action);
            r.reason = format!("{}: would be {}d", c.why, action.as_str());
            return r;
        }
        let username = user.map(|u| u.username).unwrap_or_else(|| name.to_string());
        self.write(r, c, who, &username, action).await
    }

    /// A killed run of this tool made the write: settled, recorded, never written twice.
    fn found_done(
        &self,
        mut r: RowReport,
        c: &Candidate,
        open: &[i64],
        who: Subject<'_>,
        action: Offboard,
    ) -> RowReport {
        self.settle(open, UpdateOutcome::Rechecked);
        self.record(who, action);
        r.outcome = outcome(action);
        r.reason = format!(
            "{}: {}d (found done after a stopped run)",
            c.why,
            action.as_str()
        );
        r
    }

    /// Records what the user is now (not in the pool: `user` None), where no write of this
    /// tool's explains it.
    fn observe(&self, who: Subject<'_>, c: &Candidate, user: Option<&RemoteUser>) {
        if self.dry_run {
            return;
        }
        let seen = Observation {
            username: user.map(|u| u.username.as_str()).or(c.username.as_deref()),
            email: user.and_then(|u| u.email.as_deref()).or(c.email.as_deref()),
            status: user.map(|u| &u.status),
            enabled: user.map(|u| u.enabled),
            run_id: self.run_id,
            at: Utc::now(),
        };
        if let Err(e) = self.state.observe(who, seen) {
            tracing::warn!("{e}");
        }
    }

    async fn write(
        &self,
        mut r: RowReport,
        c: &Candidate,
        who: Subject<'_>,
        username: &str,
        action: Offboard,
    ) -> RowReport {
        let changes = [action.change()];
        let intent = match self
            .state
            .update_intent(
                who,
                UpdateIntent {
                    changes: &changes,
                    run_id: self.run_id,
                    at: Utc::now(),
                },
            )
            .await
        {
            Ok(id) => id,
            Err(e) => {
                r.outcome = Outcome::Failed;
                r.reason = format!("{}: nothing written: {e}", c.why);
                return r;
            }
        };
        let done = match action {
            Offboard::Disable => self.calls.disable_user(username).await,
            Offboard::Enable => self.calls.enable_user(username).await,
            Offboard::Delete => self.calls.delete_user(username).await,
        };
        let intents: Vec<i64> = c.open_for(action).into_iter().chain(intent).collect();
        match done {
            Ok(done) => {
                r.attempts += done.attempts;
                self.settle(&intents, UpdateOutcome::Done);
                self.record(who, action);
                r.outcome = outcome(action);
                r.status_after = (action != Offboard::Delete)
                    .then_some(r.status_before.clone())
                    .flatten();
                r.reason = format!("{}: {}d", c.why, action.as_str());
                r
            }
            Err(f) => {
                if !f.maybe_done {
                    self.settle(
                        &intent.into_iter().collect::<Vec<_>>(),
                        UpdateOutcome::Failed,
                    );
                }
                self.failed(r, &format!("{}: {}", c.why, action.as_str()), &f)
            }
        }
    }

    fn failed(&self, mut r: RowReport, what: &str, f: &Failed) -> RowReport {
        r.attempts += f.attempts;
        r.error_code = f.error.code.clone();
        r.error_message = Some(f.error.message.clone());
        if f.stopped {
            r.defer(
                Deferral::Stopped,
                format!("{what}: stopped before its call; a later run sees to it"),
            );
        } else {
            r.outcome = Outcome::Failed;
            r.reason = format!("{what} failed after {} attempt(s)", f.attempts);
        }
        r
    }

    fn settle(&self, intents: &[i64], outcome: UpdateOutcome) {
        for id in intents {
            if let Err(e) = self.state.settle_update(*id, outcome, Utc::now()) {
                tracing::warn!("{e}");
            }
        }
    }

    fn record(&self, who: Subject<'_>, action: Offboard) {
        let done = Offboarded {
            action,
            run_id: self.run_id,
            at: Utc::now(),
        };
        if let Err(e) = self.state.offboarded(who, done) {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(invited: bool, cohort: Option<&str>) -> Known {
        Known {
            invited,
            cohort: cohort.map(String::from),
            last_status: Some(UserStatus::ForceChangePassword),
            ..Known::default()
        }
    }

    #[test]
    fn a_provider_the_tool_never_invited_is_never_a_member() {
        assert!(!member(&known(false, Some("a")), "a"));
    }

    #[test]
    fn another_lists_provider_or_one_with_no_list_is_not_a_member() {
        assert!(!member(&known(true, Some("b")), "a"));
        assert!(!member(&known(true, None), "a"));
    }

    #[test]
    fn one_already_offboarded_is_not_a_member() {
        let k = Known {
            disabled_run: Some("r1".into()),
            ..known(true, Some("a"))
        };
        assert!(!member(&k, "a"));
    }

    #[test]
    fn one_gone_from_the_pool_is_not_a_member() {
        let k = Known {
            last_status: Some(UserStatus::parse(DELETED)),
            ..known(true, Some("a"))
        };
        assert!(!member(&k, "a"));
    }

    #[test]
    fn an_invited_provider_of_this_list_is_a_member() {
        assert!(member(&known(true, Some("a")), "a"));
        let map = std::collections::HashMap::from([
            ("x".to_string(), known(true, Some("a"))),
            ("y".to_string(), known(true, Some("b"))),
            ("z".to_string(), known(false, Some("a"))),
        ]);
        assert_eq!(members(map, "a"), ["x"]);
    }

    fn created(run: &str, confirmed: bool, disabled: bool) -> Known {
        Known {
            created_run: Some(run.into()),
            confirmed_at: confirmed.then(Utc::now),
            disabled_run: disabled.then(|| "r9".into()),
            ..known(true, Some("a"))
        }
    }

    #[test]
    fn revoke_takes_only_what_the_run_created_and_nobody_who_signed_in() {
        assert!(!revocable(
            &created("r2", false, false),
            "r1",
            Offboard::Disable
        ));
        assert!(!revocable(
            &created("r1", true, false),
            "r1",
            Offboard::Disable
        ));
        assert!(!revocable(
            &created("r1", false, true),
            "r1",
            Offboard::Disable
        ));
        assert!(revocable(
            &created("r1", false, true),
            "r1",
            Offboard::Delete
        ));
        assert!(revocable(
            &created("r1", false, false),
            "r1",
            Offboard::Disable
        ));
    }

    fn user(status: UserStatus, enabled: bool) -> RemoteUser {
        RemoteUser {
            username: "u".into(),
            status,
            enabled,
            email: None,
            email_verified: false,
            phone: None,
            phone_verified: false,
            sub: None,
            last_modified: None,
            created: None,
            attributes: Default::default(),
        }
    }

    #[test]
    fn what_the_user_is_now_decides_the_write() {
        use UserStatus::{Confirmed, ForceChangePassword as Fcp};
        assert!(matches!(now(None, Offboard::Disable, false), Now::Gone));
        assert!(matches!(
            now(Some(&user(Confirmed, true)), Offboard::Disable, true),
            Now::SignedIn
        ));
        assert!(matches!(
            now(Some(&user(Fcp, false)), Offboard::Disable, false),
            Now::AlreadyDone
        ));
        assert!(matches!(
            now(Some(&user(Confirmed, true)), Offboard::Enable, false),
            Now::AlreadyDone
        ));
        assert!(matches!(
            now(Some(&user(Confirmed, true)), Offboard::Disable, false),
            Now::Write
        ));
        assert!(matches!(
            now(Some(&user(Fcp, false)), Offboard::Delete, true),
            Now::Write
        ));
    }

    #[test]
    fn the_cap_stops_the_whole_step() {
        assert_eq!(Cap::parse("5"), Ok(Cap::Count(5)));
        assert_eq!(Cap::parse(" 5% "), Ok(Cap::Percent(5.0)));
        assert!(Cap::parse("five").is_err() && Cap::parse("150%").is_err());
        assert_eq!(Cap::DEFAULT.limit(20), 1, "at least one");
        assert_eq!(Cap::DEFAULT.limit(1000), 50);
        assert!(check_cap(3, 20, Cap::Count(5)).is_ok());
        let capped = check_cap(12, 20, Cap::Count(5)).unwrap_err();
        assert_eq!((capped.would, capped.limit), (12, 5));
        assert!(
            capped
                .to_string()
                .starts_with("12 providers would be taken off")
        );
    }
}
