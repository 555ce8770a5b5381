//! The state: what the job did and saw, across runs and pools, behind one interface over two
//! stores: an SQLite file, the embedded default (`sqlite`), and a DynamoDB table that every
//! machine shares (`dynamo`). Owns the types of what is remembered and where the state lives;
//! what each call takes and answers is `contract`'s (an intent's per-row answers are values,
//! never run-level errors). Must never store a password, and must not decide anything from what
//! it holds (that is `plan`).

mod contract;
mod dynamo;
mod paced;
mod spill;
mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Error;

pub use contract::{
    Counted, IntentAnswer, IntentRequest, Invited, Observation, Offboard, Offboarded, PastRun,
    RunEnd, RunStart, Subject, UpdateIntent, Updated,
};
pub use dynamo::init_table;
pub use sqlite::SCHEMA_VERSION;

use crate::cognito::{Delivery, UserStatus};
pub use crate::plan::InviteKind;

impl InviteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteKind::Create => "create",
            InviteKind::Resend => "resend",
            InviteKind::SetPassword => "set_password",
        }
    }

    pub(crate) fn parse(s: &str) -> InviteKind {
        match s {
            "resend" => InviteKind::Resend,
            "set_password" => InviteKind::SetPassword,
            _ => InviteKind::Create,
        }
    }
}

/// What became of an update intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    Done,
    Failed,
    /// Written by a run that died; the next run compared the user with the row again.
    Rechecked,
}

impl UpdateOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOutcome::Done => "done",
            UpdateOutcome::Failed => "failed",
            UpdateOutcome::Rechecked => "rechecked",
        }
    }
}

/// An invitation whose result was never recorded: the run died around the call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenIntent {
    pub id: i64,
    pub kind: InviteKind,
    pub at: DateTime<Utc>,
    pub medium: Delivery,
}

/// What the state knows of one user. (Serialized only to a shared table's temporary copy on
/// disk, [`spill`], never into a report.)
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Known {
    pub username: Option<String>,
    pub email: Option<String>,
    pub invited: bool,
    pub first_invited_at: Option<DateTime<Utc>>,
    pub last_invited_at: Option<DateTime<Utc>>,
    pub reissues: u32,
    pub groups_done: Vec<String>,
    pub last_status: Option<UserStatus>,
    pub last_enabled: Option<bool>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub confirmed_reported_at: Option<DateTime<Utc>>,
    /// When the operator's `--on-confirmed` command took the provider over (exit 0).
    pub handed_over_at: Option<DateTime<Utc>>,
    /// A suppress-mode password that went to Cognito but never reached the password file.
    pub password_lost: bool,
    /// When the last message-sending invitation went out.
    pub last_message_at: Option<DateTime<Utc>>,
    pub open_intent: Option<OpenIntent>,
    /// `run --update` writes recorded ahead whose result was never recorded (the run died).
    pub open_updates: Vec<i64>,
    /// [`Row::digest`](crate::input::Row::digest) of the row when the user was last in step
    /// with it.
    pub row_digest: Option<String>,
    /// What `run --update` last wrote (attribute names, `+group`, `-group`; never values).
    pub last_written: Vec<String>,
    pub last_written_at: Option<DateTime<Utc>>,
    /// For a pending user the job did not invite and then updated: its `UserLastModifiedDate`
    /// before the update, which moved it. The invitation's expiry is counted from this.
    pub pending_since: Option<DateTime<Utc>>,
    /// When `run` last read the provider while it was `CONFIRMED` (incremental runs re-read it
    /// periodically from then).
    pub last_read_at: Option<DateTime<Utc>>,
    /// The list (`run --cohort`) the provider last came from.
    pub cohort: Option<String>,
    /// When the tool disabled the provider, and in which run; none when it is not disabled by
    /// the tool (never, enabled again, or disabled by someone else).
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_run: Option<String>,
    /// The run whose invitation created the user (`revoke --run` takes back what it made).
    pub created_run: Option<String>,
    /// The invitation (by when it went out) the last `--on-expiring` reminder was for.
    pub reminded_for: Option<DateTime<Utc>>,
    /// Of `open_updates`, the disables, enables and deletes, with which ([`Offboard::change`]).
    pub open_offboards: Vec<(i64, String)>,
}

impl Known {
    /// What the state remembers, for deciding whether to read the provider again.
    pub fn seen(&self) -> crate::plan::Seen<'_> {
        crate::plan::Seen {
            status: self.last_status.as_ref(),
            enabled: self.last_enabled,
            digest: self.row_digest.as_deref(),
            read_at: self.last_read_at,
            open: self.open_intent.is_some() || !self.open_updates.is_empty(),
        }
    }

    /// What decisions need of this history.
    pub fn history(&self) -> crate::plan::History {
        crate::plan::History {
            last_invited_at: self.last_invited_at.or(self.pending_since),
            reissues: self.reissues,
            groups_done: self.groups_done.clone(),
            invited: self.invited,
            password_lost: self.password_lost,
            last_message_at: self.last_message_at,
            disabled_by: self
                .disabled_run
                .clone()
                .zip(self.disabled_at)
                .map(|(run, at)| crate::plan::DisabledBy {
                    run,
                    cohort: self.cohort.clone(),
                    at,
                }),
        }
    }
}

/// One invitation the state recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Invitation {
    pub kind: InviteKind,
    pub medium: Delivery,
    /// When it went out (or was about to).
    pub at: DateTime<Utc>,
    /// `sent`, `pending` (a run died around the call), `failed` or `undelivered`.
    pub outcome: String,
    pub run_id: String,
}

/// How the state is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Takes the run lock; creates and migrates the file as needed.
    Write,
    /// Writes without holding the run lock of a shared store, whose conditional writes keep
    /// a help-desk command and a scheduled run apart (an SQLite file is locked as for `Write`).
    Shared,
    /// No lock, no writes (dry runs); a missing file is an empty state.
    Read,
}

/// A file that must reach the disk before any state commit that may say it holds something:
/// an invitation marked "password recorded" must have its line in the password file.
pub trait SyncFirst: Send + Sync {
    fn sync(&self) -> std::io::Result<()>;
}

/// The status the state records for a user that is no longer in the pool.
pub const DELETED: &str = "DELETED";

/// SHA-256 of a file, streamed, for the runs table.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// How many messages, and the oldest, of their times oldest first.
pub(crate) fn count_of(times: Vec<DateTime<Utc>>) -> (u64, Option<DateTime<Utc>>) {
    (times.len() as u64, times.first().copied())
}

/// Where the state lives: `--state FILE` or `--state dynamodb://TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    File(PathBuf),
    Dynamo(Table),
}

/// A DynamoDB table, and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    /// `--state-region`, else the pool's region, else the AWS configuration's.
    pub region: Option<String>,
    pub profile: Option<String>,
    /// `--endpoint-url`; `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_DYNAMODB` are read by the SDK.
    pub endpoint_url: Option<String>,
    /// How long the run lock lasts unless renewed (renewed while the run works).
    pub lease: Duration,
    pub attempt_timeout: Duration,
    /// Requests a second the state's calls are paced at (`[quotas] StateTable`; for a table of
    /// provisioned capacity): throttles slow them further.
    pub rate: f64,
}

/// The scheme of a DynamoDB state.
pub const DYNAMODB_SCHEME: &str = "dynamodb://";

impl Location {
    /// The table's name when `state` is `dynamodb://TABLE`; otherwise a file.
    pub fn table_name(state: &Path) -> Option<Result<&str, Error>> {
        let rest = state.to_str()?.strip_prefix(DYNAMODB_SCHEME)?;
        let valid = (3..=255).contains(&rest.len())
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        Some(if valid {
            Ok(rest)
        } else {
            Err(Error::Config(format!(
                "state {DYNAMODB_SCHEME}{rest}: a DynamoDB table name is 3 to 255 letters, digits, \
                 `_`, `-` or `.`"
            )))
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Dynamo(t) => write!(f, "{DYNAMODB_SCHEME}{}", t.name),
        }
    }
}

/// One invitation as stored, for folding into what is known of its user.
pub(crate) struct StoredInvitation {
    pub id: i64,
    pub kind: InviteKind,
    pub medium: Delivery,
    pub intent_at: DateTime<Utc>,
    pub outcome: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub password_recorded: bool,
    pub run_id: String,
}

impl Known {
    /// Adds an update intent a killed run left open, with its changes.
    pub(crate) fn open(&mut self, id: i64, changes: &[String]) {
        self.open_updates.push(id);
        if let [change] = changes
            && change.starts_with('~')
        {
            self.open_offboards.push((id, change.clone()));
        }
    }

    /// Adds an invitation to what is known, invitations taken oldest first.
    pub(crate) fn fold(&mut self, i: StoredInvitation) {
        if i.kind == InviteKind::Create && matches!(i.outcome.as_str(), "sent" | "undelivered") {
            self.created_run = Some(i.run_id.clone());
        }
        match i.outcome.as_str() {
            "sent" => {
                let at = i.sent_at.unwrap_or(i.intent_at);
                self.invited = true;
                self.first_invited_at = self.first_invited_at.or(Some(at));
                self.last_invited_at = Some(at);
                if i.kind != InviteKind::Create {
                    self.reissues += 1;
                }
                if i.medium.sends_message() && i.kind != InviteKind::SetPassword {
                    self.last_message_at = Some(at);
                }
                self.password_lost = i.medium == Delivery::Suppress && !i.password_recorded;
            }
            // Cognito holds a temporary password nobody received: re-issue it.
            "undelivered" => {
                let at = i.sent_at.unwrap_or(i.intent_at);
                self.invited = true;
                self.first_invited_at = self.first_invited_at.or(Some(at));
                self.last_invited_at = Some(at);
                self.password_lost = true;
            }
            "pending" => {
                self.open_intent = Some(OpenIntent {
                    id: i.id,
                    kind: i.kind,
                    at: i.intent_at,
                    medium: i.medium,
                });
            }
            _ => {}
        }
    }
}

/// The open state, in whichever store it lives.
pub struct State {
    store: Store,
    /// Where a copy of a shared table's users goes while a command walks it
    /// ([`State::scratch_in`]).
    scratch: std::sync::OnceLock<PathBuf>,
}

enum Store {
    Sqlite(sqlite::Sqlite),
    Dynamo(dynamo::Dynamo),
}

/// What the state knows of a pool's users, a few at a time, as they are asked for: by key
/// ([`KnownOf::of`], [`KnownOf::along`]) or in key order ([`KnownOf::in_order`]). From an SQLite
/// file, one query a slice, of what the file holds then; from a shared table, whose invitations
/// are not stored by user, a copy of the pool's users made at the first read, on disk
/// ([`spill::Spill`]), which every later read of this view shares: make a new view to see
/// what was written since.
pub struct KnownOf<'a> {
    state: &'a State,
    pool: String,
    copy: Option<spill::Spill>,
}

/// How many users a slice holds.
const SLICE: usize = 1000;

impl<'a> KnownOf<'a> {
    fn copy(&mut self, d: &dynamo::Dynamo) -> Result<&spill::Spill, Error> {
        if self.copy.is_none() {
            self.copy =
                Some(d.known_spilled(&self.pool, self.state.scratch.get().map(PathBuf::as_path))?);
        }
        Ok(self.copy.as_ref().expect("made above"))
    }

    /// What is known of these keys (those the state knows nothing of are left out).
    pub fn of(&mut self, keys: &[String]) -> Result<HashMap<String, Known>, Error> {
        match &self.state.store {
            Store::Sqlite(s) => s.known_of(&self.pool, keys),
            Store::Dynamo(d) => self.copy(d)?.of(keys),
        }
    }

    /// The next users after `after` in key order (byte order, as `str` sorts), a slice of
    /// them; empty at the end.
    fn after(&mut self, after: Option<&str>) -> Result<Vec<(String, Known)>, Error> {
        match &self.state.store {
            Store::Sqlite(s) => s.known_after(&self.pool, after, SLICE),
            Store::Dynamo(d) => self.copy(d)?.after(after, SLICE),
        }
    }

    /// A walk over the pool's users in key order, a slice at a time.
    pub fn in_order(&mut self) -> KnownInOrder<'_, 'a> {
        KnownInOrder {
            view: self,
            after: None,
        }
    }

    /// Pairs each of `items` with what is known of its key (`key`; none for an item without
    /// one), reading ahead a slice of items at a time: one read a slice, never the whole state.
    /// A failed read ends the items with its error.
    pub fn along<T>(
        &mut self,
        items: impl Iterator<Item = T>,
        key: impl Fn(&T) -> Option<String>,
    ) -> impl Iterator<Item = Result<(T, Option<Known>), Error>> {
        let mut items = items.peekable();
        let mut ahead: std::collections::VecDeque<Result<(T, Option<Known>), Error>> =
            Default::default();
        let mut failed = false;
        std::iter::from_fn(move || {
            if ahead.is_empty() && !failed && items.peek().is_some() {
                let slice: Vec<T> = items.by_ref().take(SLICE).collect();
                let keys: Vec<String> = slice.iter().filter_map(&key).collect();
                match self.of(&keys) {
                    Ok(mut known) => ahead.extend(slice.into_iter().map(|item| {
                        let k = key(&item).and_then(|k| known.remove(&k));
                        Ok((item, k))
                    })),
                    Err(e) => {
                        failed = true;
                        ahead.push_back(Err(e));
                    }
                }
            }
            ahead.pop_front()
        })
    }
}

/// See [`KnownOf::in_order`].
pub struct KnownInOrder<'v, 'a> {
    view: &'v mut KnownOf<'a>,
    after: Option<String>,
}

impl KnownInOrder<'_, '_> {
    /// The next users in key order, with what is known of them; empty at the end.
    pub fn next_slice(&mut self) -> Result<Vec<(String, Known)>, Error> {
        let slice = self.view.after(self.after.as_deref())?;
        if let Some((key, _)) = slice.last() {
            self.after = Some(key.clone());
        }
        Ok(slice)
    }
}

/// Calls the same method on whichever store holds the state.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.store {
            Store::Sqlite($s) => $e,
            Store::Dynamo($s) => $e,
        }
    };
}

impl State {
    /// Opens the state: with `Access::Write` it takes the run lock (creating and migrating an
    /// SQLite file as needed); a DynamoDB table must exist (`state init`).
    pub fn open(location: &Location, access: Access) -> Result<State, Error> {
        let store = match location {
            Location::File(path) => Store::Sqlite(sqlite::Sqlite::open(path, access)?),
            Location::Dynamo(table) => Store::Dynamo(dynamo::Dynamo::open(table, access)?),
        };
        Ok(State {
            store,
            scratch: std::sync::OnceLock::new(),
        })
    }

    /// Makes `dir` (the command's report directory, which it can write) the place for the
    /// scratch files of a walk over a shared table; without it, SQLite's temporary directory.
    pub fn scratch_in(&self, dir: &Path) {
        let _ = self.scratch.set(dir.to_path_buf());
    }

    /// Commits the writes still waiting.
    pub fn flush(&self) -> Result<(), Error> {
        each!(self, s => s.flush())
    }

    /// Makes every commit that marks a password recorded sync `file` first.
    pub fn sync_first(&self, file: Arc<dyn SyncFirst>) {
        each!(self, s => s.sync_first(file))
    }

    /// Records the start of a run.
    pub fn begin_run(&self, run: RunStart<'_>) -> Result<(), Error> {
        each!(self, s => s.begin_run(run))
    }

    /// Records how a run ended.
    pub fn finish_run(&self, run: RunEnd<'_>) -> Result<(), Error> {
        each!(self, s => s.finish_run(run))
    }

    /// Everything known about the users of a pool, by key.
    pub fn known(&self, pool_id: &str) -> Result<HashMap<String, Known>, Error> {
        each!(self, s => s.known(pool_id))
    }

    /// What the state knows of a pool's users, a few at a time ([`KnownOf`]): by key, for a
    /// file's rows, or in key order; never the whole pool at once.
    pub fn known_of(&self, pool_id: &str) -> KnownOf<'_> {
        KnownOf {
            state: self,
            pool: pool_id.to_string(),
            copy: None,
        }
    }

    /// Every invitation recorded for a user, oldest first (for the help desk).
    pub fn invitations_of(&self, who: Subject<'_>) -> Result<Vec<Invitation>, Error> {
        each!(self, s => s.invitations_of(who))
    }

    /// Writes "about to invite" before the call: on record when this answers
    /// [`IntentAnswer::Written`]. `request.counted`: what its message counts against, when it
    /// sends one. A shared table enforces the sender's `limit` with a conditional write
    /// ([`IntentAnswer::BudgetSpent`] when another machine took the last share) and refuses a
    /// provider another machine is inviting ([`IntentAnswer::Busy`]); an SQLite file has one
    /// writer at a time, whose own count is exact. An `Err` is the run's: the state failed.
    pub async fn intent(
        &self,
        who: Subject<'_>,
        request: IntentRequest<'_>,
    ) -> Result<IntentAnswer, Error> {
        // Only a message is counted (a suppressed invitation or a set password sends none).
        let counts = request.medium.sends_message() && request.kind != InviteKind::SetPassword;
        let request = IntentRequest {
            counted: request.counted.filter(|_| counts),
            ..request
        };
        each!(self, s => s.intent(who, request).await)
    }

    /// Records what became of an intent: sent (at), or certainly not sent.
    pub fn settle_intent(
        &self,
        id: i64,
        sent_at: Option<DateTime<Utc>>,
        password_recorded: bool,
    ) -> Result<(), Error> {
        each!(self, s => s.settle_intent(id, sent_at, password_recorded))
    }

    /// Settles an intent whose call changed the user but whose message did not go out.
    pub fn settle_undelivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        each!(self, s => s.settle_undelivered(id, at))
    }

    /// Settles an intent as sent, marks the user as invited by this tool and records it as
    /// `FORCE_CHANGE_PASSWORD`.
    pub fn invitation_sent(&self, who: Subject<'_>, sent: Invited<'_>) -> Result<(), Error> {
        each!(self, s => s.invitation_sent(who, sent))
    }

    /// Records, ahead of its calls, what `run --update` is about to change for a user; the
    /// intent's id (`None` in a dry run).
    pub async fn update_intent(
        &self,
        who: Subject<'_>,
        update: UpdateIntent<'_>,
    ) -> Result<Option<i64>, Error> {
        each!(self, s => s.update_intent(who, update).await)
    }

    /// Settles an update intent.
    pub fn settle_update(
        &self,
        id: i64,
        outcome: UpdateOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        each!(self, s => s.settle_update(id, outcome, at))
    }

    /// After `run --update` made its changes: what was written and when, the user's email as
    /// it now is, and the groups it left.
    pub fn updated(&self, who: Subject<'_>, update: Updated<'_>) -> Result<(), Error> {
        each!(self, s => s.updated(who, update))
    }

    /// Records that `run` read the provider while it was `CONFIRMED`.
    pub fn read_confirmed(&self, who: Subject<'_>, at: DateTime<Utc>) -> Result<(), Error> {
        each!(self, s => s.read_confirmed(who, at))
    }

    /// Records the digest of the row the user is now in step with.
    pub fn in_step(&self, who: Subject<'_>, digest: &str) -> Result<(), Error> {
        each!(self, s => s.in_step(who, digest))
    }

    /// Marks an invitation's password as written to the password file.
    pub fn password_recorded(&self, id: i64) -> Result<(), Error> {
        each!(self, s => s.password_recorded(id))
    }

    /// Records what Cognito said about a user, and a transition when the status differs from
    /// the last one seen.
    pub fn observe(&self, who: Subject<'_>, seen: Observation<'_>) -> Result<(), Error> {
        each!(self, s => s.observe(who, seen))
    }

    /// Marks the user as invited by this tool (after a create it made).
    pub fn mark_invited(&self, who: Subject<'_>, username: &str, email: &str) -> Result<(), Error> {
        each!(self, s => s.mark_invited(who, username, email))
    }

    /// Records groups the user was added to.
    pub fn groups_done(&self, who: Subject<'_>, groups: &[String]) -> Result<(), Error> {
        each!(self, s => s.groups_done(who, groups))
    }

    /// Invitations whose message counted against `sender` (see [`PoolInfo::sender`]) sent or
    /// possibly sent since `since`, across every pool in the state, and the oldest of them.
    /// Rows of versions that recorded no sender count by their `medium`.
    ///
    /// [`PoolInfo::sender`]: crate::cognito::PoolInfo::sender
    pub fn messages_since(
        &self,
        since: DateTime<Utc>,
        medium: Delivery,
        sender: &str,
    ) -> Result<(u64, Option<DateTime<Utc>>), Error> {
        Ok(count_of(self.message_times_since(since, medium, sender)?))
    }

    /// The times of the invitations [`State::messages_since`] counts, oldest first.
    pub fn message_times_since(
        &self,
        since: DateTime<Utc>,
        medium: Delivery,
        sender: &str,
    ) -> Result<Vec<DateTime<Utc>>, Error> {
        each!(self, s => s.message_times_since(since, medium, sender))
    }

    /// Marks confirmations as reported by `status`, so the next report lists only new ones.
    pub fn confirmations_reported(
        &self,
        pool_id: &str,
        keys: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        each!(self, s => s.confirmations_reported(pool_id, keys, at))
    }

    /// Marks a provider as handed over (the `--on-confirmed` command exited 0 for it).
    pub fn handed_over(&self, who: Subject<'_>, at: DateTime<Utc>) -> Result<(), Error> {
        each!(self, s => s.handed_over(who, at))
    }
    /// The previous `status` report's time for this pool, if any.
    pub fn last_status_run(&self, pool_id: &str) -> Result<Option<DateTime<Utc>>, Error> {
        Ok(self
            .recent_runs(pool_id, "status", 1)?
            .first()
            .map(|r| r.started_at))
    }

    /// Records that the providers `keys` last came from the list `cohort` (only those the state
    /// already holds a user for).
    pub fn set_cohort(&self, pool_id: &str, keys: &[String], cohort: &str) -> Result<(), Error> {
        each!(self, s => s.set_cohort(pool_id, keys, cohort))
    }

    /// Records that `--on-expiring`'s reminder ran (exit 0) for the invitation sent at `invited_at`.
    pub fn reminded(&self, who: Subject<'_>, invited_at: DateTime<Utc>) -> Result<(), Error> {
        each!(self, s => s.reminded(who, invited_at))
    }

    /// Records a disable, enable or delete that went through.
    pub fn offboarded(&self, who: Subject<'_>, done: Offboarded<'_>) -> Result<(), Error> {
        each!(self, s => s.offboarded(who, done))
    }

    /// The last `limit` finished runs of `command` in the pool, newest first.
    pub fn recent_runs(
        &self,
        pool_id: &str,
        command: &str,
        limit: usize,
    ) -> Result<Vec<PastRun>, Error> {
        each!(self, s => s.recent_runs(pool_id, command, limit))
    }

    /// The calls that reached a DynamoDB state, and the throttles it answered, by category
    /// (`StateTable`), for the reports; none for a file.
    pub fn calls(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        match &self.store {
            Store::Sqlite(_) => Default::default(),
            Store::Dynamo(d) => d.calls(),
        }
    }
}

/// One stored value, as both stores can hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
}

/// One row of the SQLite schema (`table`: runs, users, invitations, updates, transitions),
/// column by column (absent: NULL): how `state export` and `state import` move a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub table: &'static str,
    pub values: std::collections::BTreeMap<String, Value>,
}

/// The tables a state is made of, in the order they are moved.
pub(crate) const TABLES: [&str; 5] = ["runs", "users", "invitations", "updates", "transitions"];

/// How many records of each table.
fn counts(records: &[Record]) -> String {
    TABLES
        .iter()
        .map(|t| format!("{} {t}", records.iter().filter(|r| r.table == *t).count()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `state export FILE.db`: the table, copied into a new SQLite file (the table's run lock is
/// held meanwhile, so no run writes half of it). The file is written under a name of its own
/// and appears whole or not at all: a failed export leaves nothing that a later `state import`
/// could take for an empty state.
pub fn export(table: &Table, file: &Path) -> Result<String, Error> {
    if file.exists() {
        return Err(Error::Config(format!(
            "{} exists: export writes a new state file, never into one that exists",
            file.display()
        )));
    }
    let from = dynamo::Dynamo::open(table, Access::Write)?;
    let records = from.dump()?;
    let part = sqlite::Part::beside(file);
    let written = (|| {
        let to = sqlite::Sqlite::open(part.path(), Access::Write)?;
        to.load(&records)?;
        to.flush()
    })();
    written.and_then(|()| part.publish(file))?;
    Ok(format!(
        "exported {DYNAMODB_SCHEME}{} to {}: {}",
        table.name,
        file.display(),
        counts(&records)
    ))
}

/// `state import FILE.db`: an SQLite state, copied into a table that holds no state yet. A file
/// that holds no state (empty, not SQLite, another schema, no rows) is refused, never imported
/// as nothing.
pub fn import(file: &Path, table: &Table) -> Result<String, Error> {
    let from = sqlite::Sqlite::open_to_import(file)?;
    let records = from.dump()?;
    if records.is_empty() {
        return Err(Error::State(format!(
            "{} holds no state (no runs, no users): nothing to import; the table was not touched",
            file.display()
        )));
    }
    let to = dynamo::Dynamo::open(table, Access::Write)?;
    to.load(&records)?;
    Ok(format!(
        "imported {} into {DYNAMODB_SCHEME}{}: {}",
        file.display(),
        table.name,
        counts(&records)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&Location::File(dir.path().join("s.db")), Access::Write).unwrap();
        (dir, state)
    }

    #[test]
    fn along_pairs_each_item_with_its_own_history_a_slice_at_a_time() {
        let (_dir, state) = file_state();
        let n = SLICE * 2 + 7;
        for i in (0..n).step_by(2) {
            let key = format!("p{i:05}@example.com");
            state
                .mark_invited(Subject::new("pool", &key), &format!("u{i}"), &key)
                .unwrap();
        }
        // Items in no order, one without a key, and keys the state never saw.
        let items: Vec<Option<String>> = (0..n)
            .rev()
            .map(|i| Some(format!("p{i:05}@example.com")))
            .chain([None])
            .collect();
        let paired: Vec<_> = state
            .known_of("pool")
            .along(items.into_iter(), |k| k.clone())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(paired.len(), n + 1);
        for (key, known) in &paired {
            match key {
                Some(key) => {
                    let i: usize = key[1..6].parse().unwrap();
                    let name = known.as_ref().and_then(|k| k.username.clone());
                    let expected = i.is_multiple_of(2).then(|| format!("u{i}"));
                    assert_eq!(name, expected, "{key}");
                }
                None => assert!(known.is_none()),
            }
        }
    }

    #[test]
    fn known_in_order_walks_the_whole_pool_once_in_key_order() {
        let (_dir, state) = file_state();
        let n = SLICE + 5;
        for i in (0..n).rev() {
            let key = format!("k{i:05}");
            state
                .mark_invited(Subject::new("pool", &key), &key, "x@example.com")
                .unwrap();
        }
        state
            .mark_invited(Subject::new("other", "k00000"), "k", "x@example.com")
            .unwrap();
        let mut view = state.known_of("pool");
        let mut walk = view.in_order();
        let mut keys = Vec::new();
        loop {
            let slice = walk.next_slice().unwrap();
            if slice.is_empty() {
                break;
            }
            assert!(slice.len() <= SLICE);
            keys.extend(slice.into_iter().map(|(k, _)| k));
        }
        let expected: Vec<String> = (0..n).map(|i| format!("k{i:05}")).collect();
        assert_eq!(keys, expected);
    }

    #[tokio::test]
    async fn only_an_invitation_that_sends_a_message_counts_against_its_sender() {
        let (_dir, state) = file_state();
        let at = Utc::now();
        let counted = Some(Counted {
            sender: "email:cognito:1",
            limit: Some(50),
        });
        for (key, medium) in [("a", Delivery::Suppress), ("b", Delivery::Email)] {
            let request = IntentRequest {
                kind: InviteKind::Create,
                medium,
                counted,
                run_id: "r",
                at,
            };
            let answer = state.intent(Subject::new("p", key), request).await;
            let id = answer.unwrap().id().expect("a writable file records it");
            state.settle_intent(id, Some(at), false).unwrap();
        }
        let day_ago = at - chrono::Duration::hours(24);
        assert_eq!(
            state
                .messages_since(day_ago, Delivery::Email, "email:cognito:1")
                .unwrap()
                .0,
            1,
            "the suppressed invitation's password went to a file: no message to count"
        );
    }

    #[tokio::test]
    async fn a_read_only_state_records_no_intent_and_the_call_goes_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&Location::File(dir.path().join("none.db")), Access::Read).unwrap();
        let request = IntentRequest {
            kind: InviteKind::Resend,
            medium: Delivery::Email,
            counted: None,
            run_id: "r",
            at: Utc::now(),
        };
        assert_eq!(
            state.intent(Subject::new("p", "a"), request).await.unwrap(),
            IntentAnswer::NotRecorded
        );
        let update = UpdateIntent {
            changes: &["name".to_string()],
            run_id: "r",
            at: Utc::now(),
        };
        assert_eq!(
            state
                .update_intent(Subject::new("p", "a"), update)
                .await
                .unwrap(),
            None
        );
    }
}
