//! The state in one SQLite file (the embedded default): what the job did and saw, across runs
//! and pools.
//! Invitations are written ahead (intent before the call, result after) so a run killed at any
//! instant is resumed without a second invitation; intents of rows ready together share a
//! commit, and results ride with the next one (group commit); statuses and their transitions are kept so
//! `status` can say who is newly confirmed. Also the run lock. Must never store a password, and
//! must not decide anything from what it holds (that is `plan`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    Access, DELETED, IntentAnswer, IntentRequest, Invitation, InviteKind, Invited, Known,
    Observation, Offboard, Offboarded, PastRun, Record, RunEnd, RunStart, StoredInvitation,
    Subject, SyncFirst, TABLES, UpdateIntent, UpdateOutcome, Updated, Value,
};
use crate::cognito::{Delivery, UserStatus};
use crate::error::Error;

/// Schema migrations, in order; `PRAGMA user_version` is how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: runs, the users the job knows, and its invitations.
    "CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        pool_id TEXT NOT NULL,
        command TEXT NOT NULL,
        input_path TEXT,
        input_sha256 TEXT,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        exit_code INTEGER,
        counts TEXT
    );
    CREATE TABLE users (
        pool_id TEXT NOT NULL,
        key TEXT NOT NULL,
        username TEXT,
        email TEXT,
        invited INTEGER NOT NULL DEFAULT 0,
        groups_done TEXT NOT NULL DEFAULT '',
        last_status TEXT,
        last_enabled INTEGER,
        last_seen_at INTEGER,
        PRIMARY KEY (pool_id, key)
    );
    CREATE TABLE invitations (
        id INTEGER PRIMARY KEY,
        pool_id TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        medium TEXT NOT NULL,
        run_id TEXT NOT NULL,
        intent_at INTEGER NOT NULL,
        outcome TEXT NOT NULL DEFAULT 'pending',
        sent_at INTEGER,
        password_recorded INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX invitations_user ON invitations (pool_id, key);
    CREATE INDEX invitations_sent ON invitations (sent_at);",
    // 2: every status observed, with when, and when a confirmation was reported.
    "CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        pool_id TEXT NOT NULL,
        key TEXT NOT NULL,
        from_status TEXT,
        to_status TEXT NOT NULL,
        observed_at INTEGER NOT NULL,
        run_id TEXT NOT NULL
    );
    CREATE INDEX transitions_user ON transitions (pool_id, key);
    ALTER TABLE users ADD COLUMN confirmed_at INTEGER;
    ALTER TABLE users ADD COLUMN confirmed_reported_at INTEGER;
    INSERT INTO transitions (pool_id, key, from_status, to_status, observed_at, run_id)
        SELECT pool_id, key, NULL, last_status, last_seen_at, 'migration'
        FROM users WHERE last_status IS NOT NULL AND last_seen_at IS NOT NULL;
    UPDATE users SET confirmed_at = last_seen_at WHERE last_status = 'CONFIRMED';",
    // 3: confirmed providers handed over by the operator's --on-confirmed command.
    "ALTER TABLE users ADD COLUMN handed_over_at INTEGER;",
    // 4: `run --update`: its writes, recorded ahead like invitations; the row as last brought
    // in step; and the expiry clock of a pending user the job updated but did not invite.
    "CREATE TABLE updates (
        id INTEGER PRIMARY KEY,
        pool_id TEXT NOT NULL,
        key TEXT NOT NULL,
        changes TEXT NOT NULL,
        run_id TEXT NOT NULL,
        intent_at INTEGER NOT NULL,
        outcome TEXT NOT NULL DEFAULT 'pending',
        done_at INTEGER
    );
    CREATE INDEX updates_user ON updates (pool_id, key);
    ALTER TABLE users ADD COLUMN row_digest TEXT;
    ALTER TABLE users ADD COLUMN last_written TEXT;
    ALTER TABLE users ADD COLUMN last_written_at INTEGER;
    ALTER TABLE users ADD COLUMN pending_since INTEGER;
    ALTER TABLE users ADD COLUMN last_read_at INTEGER;
    UPDATE users SET last_read_at = last_seen_at WHERE last_status = 'CONFIRMED';",
    // 5: what a message counts against (`email:cognito:ACCOUNT`, `email:ses:ACCOUNT`,
    // `sms:ACCOUNT`); older rows have none and count by their medium.
    "ALTER TABLE invitations ADD COLUMN sender TEXT;",
    // 6: offboarding: the list each provider last came from, and who disabled it when.
    "ALTER TABLE users ADD COLUMN cohort TEXT;
    ALTER TABLE users ADD COLUMN disabled_at INTEGER;
    ALTER TABLE users ADD COLUMN disabled_run TEXT;",
    // 7: the invitation the last --on-expiring reminder was for.
    "ALTER TABLE users ADD COLUMN reminded_for INTEGER;",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_millis)
}

/// The open state database.
pub struct Sqlite {
    conn: Option<Mutex<Conn>>,
    writable: bool,
    path: PathBuf,
    _lock: Option<File>,
}

/// How long the results of calls may wait for a commit. Within it, settles ride in one
/// transaction with the next write that must be on record before its call (an intent), so a
/// row costs about one commit instead of five. A kill loses at most this much of them, which
/// the next run repairs from what Cognito shows, as for any intent left open.
const SETTLE_WINDOW: Duration = Duration::from_millis(250);

/// When a write must be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Before the function returns: a run's own record, a hand-over, confirmations reported.
    /// (Intents are on record before they return too, by a group commit: `write_ahead`.)
    Now,
    /// Within `SETTLE_WINDOW`: what became of a call whose intent is already on record.
    Soon,
}

/// The connection and the transaction of settles left open on it.
struct Conn {
    db: Connection,
    open_since: Option<Instant>,
    sync_first: Vec<Arc<dyn SyncFirst>>,
    /// The open (or last) transaction's number; each BEGIN takes the next.
    tx: u64,
    /// The last transaction committed, and the last that could not be.
    committed: u64,
    lost: u64,
    /// Invitations whose password reached the password file, not yet marked, and since when.
    marks: Vec<i64>,
    marks_since: Option<Instant>,
}

impl Conn {
    /// Commits the open transaction, the files in `sync_first` synced first. One that cannot
    /// be committed is rolled back whole, and marked lost for the writers waiting on it.
    fn commit(&mut self, every_mark: bool) -> rusqlite::Result<()> {
        // Password marks go in only now and then: each commit that carries one must sync the
        // password file first, and a sync costs more than the commit.
        let marks_due = !self.marks.is_empty()
            && (every_mark
                || self
                    .marks_since
                    .is_some_and(|t| t.elapsed() >= SETTLE_WINDOW));
        if marks_due {
            if self.open_since.is_none() {
                self.begin()?;
            }
            let marked = self.marks.iter().try_for_each(|id| {
                exec(
                    &self.db,
                    "UPDATE invitations SET password_recorded = 1 WHERE id = ?1",
                    [id],
                )
                .map(drop)
            });
            self.marks.clear();
            self.marks_since = None;
            if let Err(e) = marked {
                self.abandon();
                return Err(e);
            }
        }
        if self.open_since.is_none() {
            return Ok(());
        }
        let synced = if marks_due {
            self.sync_first.iter().try_for_each(|f| f.sync())
        } else {
            Ok(())
        };
        let done = synced
            .map_err(|e| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                    Some(format!("cannot sync a file before the state commit: {e}")),
                )
            })
            .and_then(|()| self.db.prepare_cached("COMMIT")?.execute([]).map(drop));
        match done {
            Ok(()) => {
                self.open_since = None;
                self.committed = self.tx;
                Ok(())
            }
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    /// Opens the next transaction.
    fn begin(&mut self) -> rusqlite::Result<()> {
        self.db.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        self.open_since = Some(Instant::now());
        self.tx += 1;
        Ok(())
    }

    /// Rolls the open transaction back whole; the writers waiting on it learn it was lost.
    fn abandon(&mut self) {
        let _ = self.db.execute_batch("ROLLBACK");
        self.open_since = None;
        self.lost = self.tx;
    }

    /// Notes that an invitation's password is in the password file; written by a later
    /// commit, after the file is synced.
    fn mark(&mut self, id: i64) -> rusqlite::Result<()> {
        self.marks.push(id);
        self.marks_since.get_or_insert_with(Instant::now);
        if self
            .marks_since
            .is_some_and(|t| t.elapsed() >= SETTLE_WINDOW)
        {
            self.commit(false)?;
        }
        Ok(())
    }

    /// Runs `f` in the open transaction (opened if none is), then commits as `commit` says.
    /// A failed `f` leaves nothing of itself and keeps the earlier settles. Answers the
    /// transaction's number with `f`'s value.
    fn write<T>(
        &mut self,
        commit: Commit,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<(T, u64)> {
        // Alone in a new transaction, `f` needs no savepoint (a savepoint copies the pages it
        // changes to a journal of its own, a few percent of the tool's CPU).
        let alone = self.open_since.is_none();
        if alone {
            self.begin()?;
        } else {
            self.db.prepare_cached("SAVEPOINT w")?.execute([])?;
        }
        let value = match f(&self.db) {
            Ok(v) => v,
            Err(e) => {
                if alone {
                    self.abandon();
                } else {
                    let _ = self.db.execute_batch("ROLLBACK TO w; RELEASE w");
                }
                return Err(e);
            }
        };
        if !alone {
            self.db.prepare_cached("RELEASE w")?.execute([])?;
        }
        let tx = self.tx;
        if commit == Commit::Now
            || self
                .open_since
                .is_some_and(|t| t.elapsed() >= SETTLE_WINDOW)
        {
            self.commit(false)?;
        }
        Ok((value, tx))
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("{e}");
        }
    }
}

fn db_err(path: &Path, e: rusqlite::Error) -> Error {
    let hint = match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            " (the file is not a cognito-onboard state database, or it is corrupt; move it away to start afresh)"
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseCorrupt => {
            " (the file is corrupt; restore it from a backup or move it away to start afresh)"
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::PermissionDenied
            ) =>
        {
            " (check that the file and its directory are writable)"
        }
        _ => "",
    };
    Error::State(format!("{}: {e}{hint}", path.display()))
}

impl Sqlite {
    /// Opens (and with `Access::Write` locks, creates and migrates) the state file.
    pub fn open(path: &Path, access: Access) -> Result<Sqlite, Error> {
        if access == Access::Read && !path.exists() {
            return Ok(Sqlite {
                conn: None,
                writable: false,
                path: path.to_path_buf(),
                _lock: None,
            });
        }
        // One file has one writer at a time: a shared write takes the lock too.
        let access = match access {
            Access::Shared => Access::Write,
            a => a,
        };
        let lock = match access {
            Access::Write | Access::Shared => Some(Self::lock(path)?),
            Access::Read => None,
        };
        let flags = match access {
            Access::Write | Access::Shared => {
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
            }
            Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| db_err(path, e))?;
        conn.set_prepared_statement_cache_capacity(32);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| db_err(path, e))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > SCHEMA_VERSION {
            return Err(Error::State(format!(
                "{} has schema version {version}, newer than this cognito-onboard knows ({SCHEMA_VERSION}): \
                 upgrade cognito-onboard; the file was left untouched",
                path.display()
            )));
        }
        if access == Access::Write {
            // WAL with synchronous=NORMAL: a commit survives the process being killed; after a
            // power cut the last commits may be lost, which the next run repairs from what
            // Cognito shows (a user that exists is never created or invited again).
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            )
            .map_err(|e| db_err(path, e))?;
            Self::migrate(&conn, version).map_err(|e| db_err(path, e))?;
        } else if version < SCHEMA_VERSION {
            return Err(Error::State(format!(
                "{} has schema version {version}; run once without --dry-run to migrate it to {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Ok(Sqlite {
            conn: Some(Mutex::new(Conn {
                db: conn,
                open_since: None,
                sync_first: Vec::new(),
                tx: 0,
                committed: 0,
                lost: 0,
                marks: Vec::new(),
                marks_since: None,
            })),
            writable: access == Access::Write,
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// An exclusive advisory lock on `<state>.lock`, released by the OS when the process ends
    /// however it ends, so a killed run never leaves a stale lock.
    fn lock(path: &Path) -> Result<File, Error> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("cannot open the state lock file", &lock_path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(format!(
                "another cognito-onboard run is using {} (lock {}); this run changed nothing",
                path.display(),
                lock_path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io("cannot lock the state file", &lock_path, e))
            }
        }
    }

    fn migrate(conn: &Connection, from: usize) -> rusqlite::Result<()> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, Error> {
        match self.conn() {
            None => Ok(None),
            Some(conn) => f(&conn.db).map(Some).map_err(|e| db_err(&self.path, e)),
        }
    }

    /// A write committed before it returns; a read-only state (a dry run) writes nothing and
    /// answers `None`.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, Error> {
        self.write_as(Commit::Now, f)
    }

    /// A settle: committed within `SETTLE_WINDOW`, with the next `write`, or by `flush`.
    fn settle<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, Error> {
        self.write_as(Commit::Soon, f)
    }

    fn write_as<T>(
        &self,
        commit: Commit,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, Error> {
        match self.writer() {
            Some(mut conn) => conn
                .write(commit, f)
                .map(|(v, _)| Some(v))
                .map_err(|e| db_err(&self.path, e)),
            None => Ok(None),
        }
    }

    /// The connection, locked; `None` without a file.
    fn conn(&self) -> Option<std::sync::MutexGuard<'_, Conn>> {
        self.conn
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The connection, locked, when this state may write (not in a dry run).
    fn writer(&self) -> Option<std::sync::MutexGuard<'_, Conn>> {
        self.conn().filter(|_| self.writable)
    }

    /// A write ahead of a call: on record when this returns. Rows ready at the same moment
    /// share one commit (a group commit): each yields once before committing, so that the
    /// others can write theirs into the same transaction; the first to resume commits for all.
    async fn write_ahead<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, Error> {
        let (value, tx) = match self.writer() {
            Some(mut conn) => conn
                .write(Commit::Soon, f)
                .map_err(|e| db_err(&self.path, e))?,
            None => return Ok(None),
        };
        tokio::task::yield_now().await;
        let Some(mut conn) = self.writer() else {
            return Ok(None);
        };
        if conn.committed >= tx {
            return Ok(Some(value));
        }
        if conn.lost >= tx {
            return Err(Error::State(format!(
                "{}: the commit of this write failed",
                self.path.display()
            )));
        }
        conn.commit(false).map_err(|e| db_err(&self.path, e))?;
        Ok(Some(value))
    }

    /// Commits the settles and marks still waiting.
    pub fn flush(&self) -> Result<(), Error> {
        match self.conn() {
            Some(mut conn) => conn.commit(true).map_err(|e| db_err(&self.path, e)),
            None => Ok(()),
        }
    }

    /// Makes every commit from now on sync `file` first.
    pub fn sync_first(&self, file: Arc<dyn SyncFirst>) {
        if let Some(mut conn) = self.conn() {
            conn.sync_first.push(file);
        }
    }

    /// Records the start of a run.
    pub fn begin_run(&self, run: RunStart<'_>) -> Result<(), Error> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO runs (run_id, pool_id, command, input_path, input_sha256, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    run.run_id,
                    run.pool,
                    run.command,
                    run.input.map(|(p, _)| p.display().to_string()),
                    run.input.map(|(_, h)| h.to_string()),
                    ms(run.at)
                ],
            )
        })
        .map(|_| ())
    }

    pub fn finish_run(&self, run: RunEnd<'_>) -> Result<(), Error> {
        self.write(|c| {
            exec(
                c,
                "UPDATE runs SET finished_at = ?2, exit_code = ?3, counts = ?4 WHERE run_id = ?1",
                params![run.run_id, ms(run.at), run.exit_code, run.counts],
            )
        })
        .map(|_| ())
    }

    /// Everything known about the users of a pool, by key.
    pub fn known(&self, pool_id: &str) -> Result<HashMap<String, Known>, Error> {
        // Marks still waiting are part of what the state knows.
        self.flush()?;
        Ok(self
            .with(|c| known_in(c, pool_id, Keys::All))?
            .map(|known| known.into_iter().collect())
            .unwrap_or_default())
    }

    /// What is known of these users of a pool (those it knows nothing of are left out).
    pub fn known_of(
        &self,
        pool_id: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Known>, Error> {
        self.flush()?;
        let listed = serde_json::to_string(keys).unwrap_or_default();
        Ok(self
            .with(|c| known_in(c, pool_id, Keys::Listed(&listed)))?
            .map(|known| known.into_iter().collect())
            .unwrap_or_default())
    }

    /// What is known of the next `limit` users of a pool after `after` in key order (byte
    /// order, as Rust's `str` sorts), sorted: a pass over a large state a slice at a time.
    pub fn known_after(
        &self,
        pool_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Known)>, Error> {
        self.flush()?;
        Ok(self
            .with(|c| {
                let after = after.unwrap_or("");
                // A user may have invitations or an open update before its row exists.
                let through: Option<String> = c.query_row(
                    "SELECT max(key) FROM (
                           SELECT key FROM users WHERE pool_id = ?1 AND key > ?2
                           UNION SELECT key FROM invitations WHERE pool_id = ?1 AND key > ?2
                           UNION SELECT key FROM updates
                             WHERE pool_id = ?1 AND key > ?2 AND outcome = 'pending'
                           ORDER BY key LIMIT ?3)",
                    params![pool_id, after, limit as i64],
                    |r| r.get(0),
                )?;
                match through {
                    Some(through) => {
                        let known = known_in(c, pool_id, Keys::Between(after, &through))?;
                        Ok(known.into_iter().collect())
                    }
                    None => Ok(Vec::new()),
                }
            })?
            .unwrap_or_default())
    }

    /// Every invitation recorded for a user, oldest first (for the help desk).
    pub fn invitations_of(&self, who: Subject<'_>) -> Result<Vec<Invitation>, Error> {
        Ok(self
            .with(|c| {
                let mut stmt = c.prepare(
                    "SELECT kind, medium, intent_at, sent_at, outcome, run_id FROM invitations
                     WHERE pool_id = ?1 AND key = ?2 ORDER BY id",
                )?;
                let rows = stmt.query_map(params![who.pool, who.key], |r| {
                    let at: Option<i64> = r.get(3)?;
                    let intent: i64 = r.get(2)?;
                    Ok(Invitation {
                        kind: InviteKind::parse(&r.get::<_, String>(0)?),
                        medium: Delivery::parse(&r.get::<_, String>(1)?).unwrap_or(Delivery::Email),
                        at: from_ms(at.or(Some(intent))).unwrap_or_default(),
                        outcome: r.get(4)?,
                        run_id: r.get(5)?,
                    })
                })?;
                rows.collect()
            })?
            .unwrap_or_default())
    }

    /// Writes "about to invite" before the call, with what its message counts against (its
    /// sender; none for an invitation that sends no message). One writer at a time keeps its
    /// own count exact, so an SQLite file never answers busy or spent.
    pub async fn intent(
        &self,
        who: Subject<'_>,
        request: IntentRequest<'_>,
    ) -> Result<IntentAnswer, Error> {
        let sender = request.counted.map(|c| c.sender);
        let written = self.write_ahead(|c| {
            exec(c,
                "INSERT INTO invitations (pool_id, key, kind, medium, run_id, intent_at, sender) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    who.pool,
                    who.key,
                    request.kind.as_str(),
                    request.medium.as_str(),
                    request.run_id,
                    ms(request.at),
                    sender
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await?;
        Ok(written.map_or(IntentAnswer::NotRecorded, IntentAnswer::Written))
    }

    /// Records what became of an intent: sent (at), or certainly not sent.
    pub fn settle_intent(
        &self,
        id: i64,
        sent_at: Option<DateTime<Utc>>,
        password_recorded: bool,
    ) -> Result<(), Error> {
        self.settle(|c| {
            exec(
                c,
                "UPDATE invitations SET outcome = ?2, sent_at = ?3 WHERE id = ?1",
                params![
                    id,
                    if sent_at.is_some() { "sent" } else { "failed" },
                    sent_at.map(ms)
                ],
            )
        })?;
        if password_recorded {
            self.password_recorded(id)?;
        }
        Ok(())
    }

    /// Settles an intent whose call changed the user but whose message did not go out (the
    /// delivery failed, or the email limit refused it after the user was created): the user
    /// holds a temporary password nobody received, so the next run re-issues it.
    pub fn settle_undelivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        self.settle(|c| {
            exec(
                c,
                "UPDATE invitations SET outcome = 'undelivered', sent_at = ?2 WHERE id = ?1",
                params![id, ms(at)],
            )
        })
        .map(|_| ())
    }

    /// Settles an intent as sent, marks the user as invited by this tool and records it as
    /// `FORCE_CHANGE_PASSWORD`, in one transaction.
    pub fn invitation_sent(&self, who: Subject<'_>, sent: Invited<'_>) -> Result<(), Error> {
        self.settle(|c| {
            if let Some(id) = sent.intent {
                exec(
                    c,
                    "UPDATE invitations SET outcome = 'sent', sent_at = ?2 WHERE id = ?1",
                    params![id, ms(sent.at)],
                )?;
            }
            exec(
                c,
                "INSERT INTO users (pool_id, key, username, email, invited) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (pool_id, key) DO UPDATE SET invited = 1, username = excluded.username,
                   email = excluded.email",
                params![who.pool, who.key, sent.username, sent.email],
            )?;
            record_status(
                c,
                who,
                &Observation {
                    username: Some(sent.username),
                    email: Some(sent.email),
                    status: Some(&UserStatus::ForceChangePassword),
                    enabled: Some(true),
                    run_id: sent.run_id,
                    at: sent.at,
                },
            )?;
            Ok(())
        })
        .map(|_| ())
    }

    /// Records, ahead of its calls, what `run --update` is about to change for a user
    /// (`changes`: attribute names, `+group`, `-group`; never values).
    pub async fn update_intent(
        &self,
        who: Subject<'_>,
        update: UpdateIntent<'_>,
    ) -> Result<Option<i64>, Error> {
        self.write_ahead(|c| {
            exec(
                c,
                "INSERT INTO updates (pool_id, key, changes, run_id, intent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    who.pool,
                    who.key,
                    update.changes.join("\n"),
                    update.run_id,
                    ms(update.at)
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// Settles update intents: `done` (every change was made), `failed`, or `rechecked` (a
    /// killed run's intent, settled by comparing the user with the row again).
    pub fn settle_update(
        &self,
        id: i64,
        outcome: UpdateOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.settle(|c| {
            exec(
                c,
                "UPDATE updates SET outcome = ?2, done_at = ?3 WHERE id = ?1",
                params![id, outcome.as_str(), ms(at)],
            )
        })
        .map(|_| ())
    }

    /// After `run --update` made its changes: what was written and when, the user's email as
    /// it now is, and the groups it left (so that they are added again if a row lists them).
    pub fn updated(&self, who: Subject<'_>, update: Updated<'_>) -> Result<(), Error> {
        self.settle(|c| {
            let done: Option<String> = c
                .prepare_cached("SELECT groups_done FROM users WHERE pool_id = ?1 AND key = ?2")?
                .query_row(params![who.pool, who.key], |r| r.get(0))
                .optional()?;
            let groups_done: Vec<&str> = done
                .as_deref()
                .unwrap_or_default()
                .split('\n')
                .filter(|g| !g.is_empty() && !update.removed_groups.iter().any(|r| r == g))
                .collect();
            exec(
                c,
                "INSERT INTO users (pool_id, key, email, groups_done, last_written, last_written_at,
                                    pending_since)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (pool_id, key) DO UPDATE SET
                   email = COALESCE(excluded.email, users.email),
                   groups_done = excluded.groups_done,
                   last_written = excluded.last_written,
                   last_written_at = excluded.last_written_at,
                   pending_since = COALESCE(users.pending_since, excluded.pending_since)",
                params![
                    who.pool,
                    who.key,
                    update.email,
                    groups_done.join("\n"),
                    update.written.join("\n"),
                    ms(update.at),
                    update.pending_since.map(ms)
                ],
            )?;
            Ok(())
        })
        .map(|_| ())
    }

    /// Records that `run` read the provider while it was `CONFIRMED`.
    pub fn read_confirmed(&self, who: Subject<'_>, at: DateTime<Utc>) -> Result<(), Error> {
        self.settle(|c| {
            exec(
                c,
                "UPDATE users SET last_read_at = ?3 WHERE pool_id = ?1 AND key = ?2",
                params![who.pool, who.key, ms(at)],
            )
        })
        .map(|_| ())
    }

    /// Records the digest of the row the user is now in step with.
    pub fn in_step(&self, who: Subject<'_>, digest: &str) -> Result<(), Error> {
        self.settle(|c| {
            exec(
                c,
                "INSERT INTO users (pool_id, key, row_digest) VALUES (?1, ?2, ?3)
                 ON CONFLICT (pool_id, key) DO UPDATE SET row_digest = excluded.row_digest",
                params![who.pool, who.key, digest],
            )
        })
        .map(|_| ())
    }

    /// Marks an invitation's password as written to the password file (on record within
    /// `SETTLE_WINDOW`, the file synced first).
    pub fn password_recorded(&self, id: i64) -> Result<(), Error> {
        match self.writer() {
            Some(mut conn) => conn.mark(id).map_err(|e| db_err(&self.path, e)),
            None => Ok(()),
        }
    }

    /// Records that the user's key is known, with what Cognito said about it, and a transition
    /// when the status differs from the last one seen. A user not in the pool is `DELETED`.
    pub fn observe(&self, who: Subject<'_>, seen: Observation<'_>) -> Result<(), Error> {
        self.settle(|c| {
            record_status(c, who, &seen)?;
            Ok(())
        })
        .map(|_| ())
    }
}

/// Records a status seen for a user, and a transition when it differs from the last one.
fn record_status(
    tx: &Connection,
    who: Subject<'_>,
    seen: &Observation<'_>,
) -> rusqlite::Result<()> {
    let Subject { pool: pool_id, key } = who;
    let Observation {
        username,
        email,
        enabled,
        run_id,
        at,
        ..
    } = *seen;
    let status = seen.status.map_or(DELETED, UserStatus::as_str);
    let last: Option<Option<String>> = tx
        .prepare_cached("SELECT last_status FROM users WHERE pool_id = ?1 AND key = ?2")?
        .query_row(params![pool_id, key], |r| r.get(0))
        .optional()?;
    let last = last.flatten();
    exec(
        tx,
        "INSERT INTO users (pool_id, key, username, email, last_status, last_enabled, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (pool_id, key) DO UPDATE SET
           username = COALESCE(excluded.username, users.username),
           email = COALESCE(excluded.email, users.email),
           last_status = excluded.last_status,
           last_enabled = excluded.last_enabled,
           last_seen_at = excluded.last_seen_at",
        params![pool_id, key, username, email, status, enabled, ms(at)],
    )?;
    if last.as_deref() != Some(status) {
        exec(
            tx,
            "INSERT INTO transitions (pool_id, key, from_status, to_status, observed_at, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![pool_id, key, last, status, ms(at), run_id],
        )?;
        if status == UserStatus::Confirmed.as_str() {
            exec(
                tx,
                "UPDATE users SET confirmed_at = ?3, confirmed_reported_at = NULL
                 WHERE pool_id = ?1 AND key = ?2",
                params![pool_id, key, ms(at)],
            )?;
        }
    }
    Ok(())
}

impl Sqlite {
    /// Marks the user as invited by this tool (after a create it made).
    pub fn mark_invited(&self, who: Subject<'_>, username: &str, email: &str) -> Result<(), Error> {
        self.settle(|c| {
            exec(c,
                "INSERT INTO users (pool_id, key, username, email, invited) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (pool_id, key) DO UPDATE SET invited = 1, username = excluded.username,
                   email = excluded.email",
                params![who.pool, who.key, username, email],
            )
        })
        .map(|_| ())
    }

    /// Records groups the user was added to.
    pub fn groups_done(&self, who: Subject<'_>, groups: &[String]) -> Result<(), Error> {
        if groups.is_empty() {
            return Ok(());
        }
        self.settle(|c| {
            let current: Option<String> = c
                .prepare_cached("SELECT groups_done FROM users WHERE pool_id = ?1 AND key = ?2")?
                .query_row(params![who.pool, who.key], |r| r.get(0))
                .optional()?;
            let mut all: Vec<String> = current
                .unwrap_or_default()
                .split('\n')
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            for g in groups {
                if !all.contains(g) {
                    all.push(g.clone());
                }
            }
            exec(
                c,
                "INSERT INTO users (pool_id, key, groups_done) VALUES (?1, ?2, ?3)
                 ON CONFLICT (pool_id, key) DO UPDATE SET groups_done = excluded.groups_done",
                params![who.pool, who.key, all.join("\n")],
            )?;
            Ok(())
        })
        .map(|_| ())
    }

    /// The times of the message-sending invitations since `since`, oldest first: for when the
    /// budget frees up.
    pub fn message_times_since(
        &self,
        since: DateTime<Utc>,
        medium: Delivery,
        sender: &str,
    ) -> Result<Vec<DateTime<Utc>>, Error> {
        Ok(self
            .with(|c| {
                let mut stmt = c.prepare(
                    "SELECT COALESCE(sent_at, intent_at) AS t FROM invitations
                     WHERE kind IN ('create', 'resend')
                       AND (sender = ?3 OR (sender IS NULL AND medium = ?2))
                       AND outcome IN ('sent', 'pending', 'undelivered') AND COALESCE(sent_at, intent_at) > ?1
                     ORDER BY t",
                )?;
                let rows = stmt.query_map(params![ms(since), medium.as_str(), sender], |r| {
                    r.get::<_, i64>(0)
                })?;
                rows.map(|r| r.map(|v| from_ms(Some(v)).unwrap_or_default()))
                    .collect()
            })?
            .unwrap_or_default())
    }

    /// Marks confirmations as reported by `status`, so the next report lists only new ones.
    pub fn confirmations_reported(
        &self,
        pool_id: &str,
        keys: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.write(|c| {
            for key in keys {
                exec(
                    c,
                    "UPDATE users SET confirmed_reported_at = ?3 WHERE pool_id = ?1 AND key = ?2",
                    params![pool_id, key, ms(at)],
                )?;
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// Marks a provider as handed over (the `--on-confirmed` command exited 0 for it).
    pub fn set_cohort(&self, pool_id: &str, keys: &[String], cohort: &str) -> Result<(), Error> {
        self.settle(|c| {
            let mut stmt = c.prepare_cached(
                "UPDATE users SET cohort = ?3 WHERE pool_id = ?1 AND key = ?2
                 AND cohort IS NOT ?3",
            )?;
            for key in keys {
                stmt.execute(params![pool_id, key, cohort])?;
            }
            Ok(())
        })
        .map(|_| ())
    }

    pub fn reminded(&self, who: Subject<'_>, invited_at: DateTime<Utc>) -> Result<(), Error> {
        self.write(|c| {
            exec(
                c,
                "UPDATE users SET reminded_for = ?3 WHERE pool_id = ?1 AND key = ?2",
                params![who.pool, who.key, ms(invited_at)],
            )
        })
        .map(|_| ())
    }

    pub fn offboarded(&self, who: Subject<'_>, done: Offboarded<'_>) -> Result<(), Error> {
        let (sql, at, run) = match done.action {
            Offboard::Disable => (
                "UPDATE users SET disabled_at = ?3, disabled_run = ?4, last_enabled = 0
                 WHERE pool_id = ?1 AND key = ?2",
                Some(ms(done.at)),
                Some(done.run_id),
            ),
            Offboard::Enable => (
                "UPDATE users SET disabled_at = ?3, disabled_run = ?4, last_enabled = 1
                 WHERE pool_id = ?1 AND key = ?2",
                None,
                None,
            ),
            Offboard::Delete => (
                "UPDATE users SET disabled_at = ?3, disabled_run = ?4, last_status = 'DELETED'
                 WHERE pool_id = ?1 AND key = ?2",
                Some(ms(done.at)),
                Some(done.run_id),
            ),
        };
        self.write(|c| exec(c, sql, params![who.pool, who.key, at, run]))
            .map(|_| ())
    }

    pub fn handed_over(&self, who: Subject<'_>, at: DateTime<Utc>) -> Result<(), Error> {
        self.write(|c| {
            exec(
                c,
                "UPDATE users SET handed_over_at = ?3 WHERE pool_id = ?1 AND key = ?2",
                params![who.pool, who.key, ms(at)],
            )
        })
        .map(|_| ())
    }

    /// The previous `status` report's time for this pool, if any.
    pub fn recent_runs(
        &self,
        pool_id: &str,
        command: &str,
        limit: usize,
    ) -> Result<Vec<PastRun>, Error> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT started_at, exit_code, counts FROM runs
                 WHERE pool_id = ?1 AND command = ?2 AND finished_at IS NOT NULL
                 ORDER BY started_at DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![pool_id, command, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            rows.map(|row| {
                row.map(|(started, exit_code, counts)| PastRun {
                    started_at: from_ms(Some(started)).unwrap_or_default(),
                    exit_code: exit_code.and_then(|e| u8::try_from(e).ok()),
                    counts,
                })
            })
            .collect()
        })
        .map(Option::unwrap_or_default)
    }
}

/// The users of a pool as their rows have them: the half of [`Sqlite::known`] that needs no
/// invitation.
/// Which users of a pool a read is about: every one, or those with keys after the first and up
/// to the second.
#[derive(Clone, Copy)]
enum Keys<'a> {
    All,
    Between(&'a str, &'a str),
    /// The keys of this JSON array of strings.
    Listed(&'a str),
}

impl<'a> Keys<'a> {
    /// The condition on `key` (parameters 2 and 3), for a query whose `pool_id` is `?1`.
    fn condition(self) -> &'static str {
        match self {
            Keys::All => "?2 IS NULL AND ?3 IS NULL",
            Keys::Between(..) => "key > ?2 AND key <= ?3",
            Keys::Listed(_) => "key IN (SELECT value FROM json_each(?2)) AND ?3 IS NULL",
        }
    }

    fn bounds(self) -> (Option<&'a str>, Option<&'a str>) {
        match self {
            Keys::All => (None, None),
            Keys::Between(after, through) => (Some(after), Some(through)),
            Keys::Listed(keys) => (Some(keys), None),
        }
    }
}

/// Everything known about these users of a pool, sorted by key.
fn known_in(
    c: &Connection,
    pool_id: &str,
    keys: Keys<'_>,
) -> rusqlite::Result<BTreeMap<String, Known>> {
    let mut out = users_of(c, pool_id, keys)?;
    fold_invitations(c, pool_id, keys, &mut out)?;
    add_open_updates(c, pool_id, keys, &mut out)?;
    Ok(out)
}

fn users_of(
    c: &Connection,
    pool_id: &str,
    keys: Keys<'_>,
) -> rusqlite::Result<BTreeMap<String, Known>> {
    let mut out: BTreeMap<String, Known> = BTreeMap::new();
    let mut stmt = c.prepare(&format!(
        "SELECT key, username, email, invited, groups_done, last_status, last_enabled,
                last_seen_at, confirmed_at, confirmed_reported_at, handed_over_at,
                row_digest, last_written, last_written_at, pending_since,
                last_read_at, cohort, disabled_at, disabled_run, reminded_for
         FROM users WHERE pool_id = ?1 AND {}",
        keys.condition()
    ))?;
    let (after, through) = keys.bounds();
    let rows = stmt.query_map(params![pool_id, after, through], |r| {
        let groups: String = r.get(4)?;
        Ok((
            r.get::<_, String>(0)?,
            Known {
                username: r.get(1)?,
                email: r.get(2)?,
                invited: r.get::<_, i64>(3)? != 0,
                groups_done: lines(&groups),
                last_status: r
                    .get::<_, Option<String>>(5)?
                    .map(|s| UserStatus::parse(&s)),
                last_enabled: r.get::<_, Option<i64>>(6)?.map(|v| v != 0),
                last_seen_at: from_ms(r.get(7)?),
                confirmed_at: from_ms(r.get(8)?),
                confirmed_reported_at: from_ms(r.get(9)?),
                handed_over_at: from_ms(r.get(10)?),
                row_digest: r.get(11)?,
                last_written: lines(&r.get::<_, Option<String>>(12)?.unwrap_or_default()),
                last_written_at: from_ms(r.get(13)?),
                pending_since: from_ms(r.get(14)?),
                last_read_at: from_ms(r.get(15)?),
                cohort: r.get(16)?,
                disabled_at: from_ms(r.get(17)?),
                disabled_run: r.get(18)?,
                reminded_for: from_ms(r.get(19)?),
                ..Known::default()
            },
        ))
    })?;
    for row in rows {
        let (key, known) = row?;
        out.insert(key, known);
    }
    Ok(out)
}

/// A column of lines (groups, attribute names) as its non-empty lines.
fn lines(text: &str) -> Vec<String> {
    text.split('\n')
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// Folds a pool's invitations, oldest first, into what is known of their users: the order is
/// what makes the last one the one that counts.
fn fold_invitations(
    c: &Connection,
    pool_id: &str,
    keys: Keys<'_>,
    out: &mut BTreeMap<String, Known>,
) -> rusqlite::Result<()> {
    let mut stmt = c.prepare(&format!(
        "SELECT id, key, kind, medium, intent_at, outcome, sent_at, password_recorded, run_id
         FROM invitations WHERE pool_id = ?1 AND {} ORDER BY id",
        keys.condition()
    ))?;
    let (after, through) = keys.bounds();
    let rows = stmt.query_map(params![pool_id, after, through], |r| {
        Ok((
            r.get::<_, String>(1)?,
            StoredInvitation {
                id: r.get(0)?,
                kind: InviteKind::parse(&r.get::<_, String>(2)?),
                // An unknown medium was written by a newer version: count it as a message.
                medium: Delivery::parse(&r.get::<_, String>(3)?).unwrap_or(Delivery::Email),
                intent_at: from_ms(Some(r.get(4)?)).unwrap_or_default(),
                outcome: r.get(5)?,
                sent_at: from_ms(r.get(6)?),
                password_recorded: r.get::<_, i64>(7)? != 0,
                run_id: r.get(8)?,
            },
        ))
    })?;
    for row in rows {
        let (key, invitation) = row?;
        out.entry(key).or_default().fold(invitation);
    }
    Ok(())
}

/// Adds the update intents a killed run left open, so the next run settles them.
fn add_open_updates(
    c: &Connection,
    pool_id: &str,
    keys: Keys<'_>,
    out: &mut BTreeMap<String, Known>,
) -> rusqlite::Result<()> {
    let mut stmt = c.prepare(&format!(
        "SELECT id, key, changes FROM updates WHERE pool_id = ?1 AND outcome = 'pending' AND {}",
        keys.condition()
    ))?;
    let (after, through) = keys.bounds();
    let rows = stmt.query_map(params![pool_id, after, through], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (id, key, changes) = row?;
        out.entry(key).or_default().open(id, &lines(&changes));
    }
    Ok(())
}

/// A state file being written by `state export`, under a name of its own beside the target:
/// published whole by [`Part::publish`], removed with its companions otherwise.
pub(crate) struct Part {
    path: PathBuf,
}

impl Part {
    pub(crate) fn beside(file: &Path) -> Part {
        let mut name = file.as_os_str().to_owned();
        name.push(format!(".part-{}", std::process::id()));
        Part {
            path: PathBuf::from(name),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished file to `file`, which must not exist (a link, not a rename, so that a
    /// file that appeared meanwhile is never replaced).
    pub(crate) fn publish(self, file: &Path) -> Result<(), Error> {
        std::fs::hard_link(&self.path, file)
            .map_err(|e| Error::io("cannot write the exported state", file, e))
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}

impl Sqlite {
    /// A state file to import from, read-only: it must exist, be SQLite, and carry this
    /// version's schema, each refusal saying which (an import of anything else would copy
    /// nothing and call it a success).
    pub(crate) fn open_to_import(path: &Path) -> Result<Sqlite, Error> {
        let refuse = |why: String| {
            Error::State(format!(
                "{} {why}: nothing was imported; the table was not touched",
                path.display()
            ))
        };
        let mut head = Vec::new();
        File::open(path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 16), &mut head))
            .map_err(|e| Error::io("cannot read the state file", path, e))?;
        if head.is_empty() {
            return Err(refuse("is empty".into()));
        }
        if head != b"SQLite format 3\0" {
            return Err(refuse("is not an SQLite file".into()));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| db_err(path, e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| db_err(path, e))?;
        if version != SCHEMA_VERSION as i64 {
            return Err(refuse(format!(
                "is not a cognito-onboard state of schema {SCHEMA_VERSION} (its schema version is \
                 {version}; a state file of an older version is migrated by any run that opens \
                 it for writing)"
            )));
        }
        drop(conn);
        Sqlite::open(path, Access::Read)
    }

    /// Every row of every table, for `state export` and `state import`.
    pub(crate) fn dump(&self) -> Result<Vec<Record>, Error> {
        self.flush()?;
        Ok(self
            .with(|c| {
                let mut out = Vec::new();
                for table in TABLES {
                    let mut stmt = c.prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))?;
                    let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
                    let mut rows = stmt.query([])?;
                    while let Some(row) = rows.next()? {
                        let mut values = std::collections::BTreeMap::new();
                        for (i, name) in names.iter().enumerate() {
                            use rusqlite::types::ValueRef;
                            let v = match row.get_ref(i)? {
                                ValueRef::Integer(v) => Value::Int(v),
                                ValueRef::Text(t) => {
                                    Value::Text(String::from_utf8_lossy(t).into_owned())
                                }
                                ValueRef::Real(v) => Value::Int(v as i64),
                                ValueRef::Null | ValueRef::Blob(_) => continue,
                            };
                            values.insert(name.clone(), v);
                        }
                        out.push(Record { table, values });
                    }
                }
                Ok(out)
            })?
            .unwrap_or_default())
    }

    /// Writes `records` into this (new) state, in one transaction.
    pub(crate) fn load(&self, records: &[Record]) -> Result<(), Error> {
        self.write(|c| {
            // Names come from the other store: only the table's own columns reach the SQL (its
            // schema is the list, so a column such as `input_sha256` is no surprise).
            let mut known: HashMap<&str, Vec<String>> = HashMap::new();
            for table in TABLES {
                let mut stmt =
                    c.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
                let names = stmt
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                known.insert(table, names);
            }
            for r in records {
                let columns: Vec<&str> = r.values.keys().map(String::as_str).collect();
                if let Some(bad) = columns
                    .iter()
                    .find(|c| !known[r.table].iter().any(|k| k == *c))
                {
                    return Err(rusqlite::Error::InvalidColumnName(format!(
                        "{}.{bad} (not a column of this schema)",
                        r.table
                    )));
                }
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    r.table,
                    columns.join(", "),
                    vec!["?"; columns.len()].join(", ")
                );
                let params: Vec<rusqlite::types::Value> = r
                    .values
                    .values()
                    .map(|v| match v {
                        Value::Int(i) => rusqlite::types::Value::Integer(*i),
                        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
                    })
                    .collect();
                c.execute(&sql, rusqlite::params_from_iter(params))?;
            }
            Ok(())
        })
        .map(|_| ())
    }
}

/// Runs a statement through the connection's cache: the same few statements run for every row,
/// and parsing one costs more than running it.
fn exec<P: rusqlite::Params>(c: &Connection, sql: &str, p: P) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    type State = Sqlite;

    impl Sqlite {
        /// As the facade counts them: from their times.
        fn messages_since(
            &self,
            since: DateTime<Utc>,
            medium: Delivery,
            sender: &str,
        ) -> Result<(u64, Option<DateTime<Utc>>), Error> {
            Ok(super::super::count_of(
                self.message_times_since(since, medium, sender)?,
            ))
        }
    }
    use chrono::TimeZone;

    impl Sqlite {
        /// An intent as these tests write them: its message counted by medium alone.
        async fn intent_for(
            &self,
            pool: &str,
            key: &str,
            kind: InviteKind,
            medium: Delivery,
            run_id: &str,
            at: DateTime<Utc>,
        ) -> Result<IntentAnswer, Error> {
            let request = IntentRequest {
                kind,
                medium,
                counted: None,
                run_id,
                at,
            };
            self.intent(Subject::new(pool, key), request).await
        }
    }

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, 0, 0).unwrap()
    }

    /// A new state file, open for writing.
    fn fresh() -> (tempfile::TempDir, PathBuf, State) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let state = State::open(&path, Access::Write).unwrap();
        (dir, path, state)
    }

    /// What another process reading the file sees.
    fn outcomes(path: &Path) -> Vec<String> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut stmt = conn
            .prepare("SELECT outcome FROM invitations ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    struct Counting(std::sync::atomic::AtomicUsize);

    impl SyncFirst for Counting {
        fn sync(&self) -> std::io::Result<()> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    async fn intent(state: &State, key: &str) -> i64 {
        state
            .intent_for("p", key, InviteKind::Create, Delivery::Suppress, "r", t(1))
            .await
            .unwrap()
            .id()
            .unwrap()
    }

    #[tokio::test]
    async fn rows_ready_together_share_one_commit_and_each_is_on_record_when_it_returns() {
        let (_dir, path, state) = fresh();
        let path = &path;
        let keys = ["a", "b", "c", "d", "e"];
        let ids = futures_util::future::join_all(keys.iter().map(|k| {
            let state = &state;
            async move {
                let id = intent(state, k).await;
                // On record by the time the row may make its call.
                assert!(
                    outcomes(path).len() >= id as usize,
                    "intent {id} not on record"
                );
                id
            }
        }))
        .await;
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        assert_eq!(outcomes(path).len(), 5);
        assert_eq!(
            committed(&state),
            1,
            "five intents ready at once, one commit"
        );
        // One after the other, each has a commit of its own.
        intent(&state, "f").await;
        intent(&state, "g").await;
        assert_eq!(committed(&state), 3);
    }

    /// How many transactions the state has committed.
    fn committed(state: &State) -> u64 {
        state.conn().unwrap().committed
    }

    /// Makes the marks waiting due at the next commit.
    fn marks_due(state: &State) {
        state.conn().unwrap().marks_since = Some(Instant::now() - SETTLE_WINDOW);
    }

    struct Failing;

    impl SyncFirst for Failing {
        fn sync(&self) -> std::io::Result<()> {
            Err(std::io::Error::other("disk gone"))
        }
    }

    #[tokio::test]
    async fn a_group_whose_commit_fails_is_refused_to_every_row_in_it() {
        let (_dir, path, state) = fresh();
        state.sync_first(Arc::new(Failing));
        let earlier = intent(&state, "z").await;
        state.settle_intent(earlier, Some(t(1)), true).unwrap();
        marks_due(&state);
        let results = futures_util::future::join_all(
            ["a", "b", "c"]
                .iter()
                .map(|k| state.intent_for("p", k, InviteKind::Create, Delivery::Email, "r", t(1))),
        )
        .await;
        for r in &results {
            let err = r.as_ref().expect_err("no row may make its call");
            assert!(
                err.to_string().contains("disk gone") || err.to_string().contains("commit"),
                "{err}"
            );
        }
        assert_eq!(
            outcomes(&path),
            ["pending"],
            "nothing of the group is on record, nor the settle it carried"
        );
    }

    #[tokio::test]
    async fn settles_ride_with_the_next_intent_and_password_marks_wait_for_a_synced_file() {
        let (_dir, path, state) = fresh();
        let synced = Arc::new(Counting(Default::default()));
        state.sync_first(synced.clone());
        let syncs = || synced.0.load(std::sync::atomic::Ordering::SeqCst);
        let recorded = |id: i64| -> bool {
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap()
                .query_row(
                    "SELECT password_recorded FROM invitations WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let first = intent(&state, "a").await;
        assert_eq!(
            outcomes(&path),
            ["pending"],
            "an intent is on record at once"
        );
        assert_eq!(syncs(), 0, "an intent alone needs no sync of the file");
        state.settle_intent(first, Some(t(1)), true).unwrap();
        assert_eq!(
            outcomes(&path),
            ["pending"],
            "the settle waits for a commit"
        );
        let second = intent(&state, "b").await;
        assert_eq!(
            outcomes(&path),
            ["sent", "pending"],
            "the settle went with the next intent"
        );
        assert!(!recorded(first), "the mark waits for its window");
        assert_eq!(syncs(), 0);
        marks_due(&state);
        intent(&state, "c").await;
        assert!(recorded(first), "a due mark goes with the next commit");
        assert_eq!(syncs(), 1, "after the file was synced");
        state.settle_intent(second, None, false).unwrap();
        state.password_recorded(second).unwrap();
        state.flush().unwrap();
        assert_eq!(outcomes(&path), ["sent", "failed", "pending"]);
        assert!(recorded(second), "flush writes every mark");
        assert_eq!(syncs(), 2);
        // A settle that fails leaves nothing of itself and keeps the others.
        state.settle_intent(first, Some(t(2)), true).unwrap();
        let err = state.settle(|c| exec(c, "UPDATE nowhere SET x = 1", []));
        assert!(err.is_err());
        state.flush().unwrap();
        // And one alone in its transaction leaves the connection ready for the next.
        assert!(
            state
                .settle(|c| exec(c, "UPDATE nowhere SET x = 1", []))
                .is_err()
        );
        state.settle_intent(second, None, false).unwrap();
        drop(state);
        assert_eq!(
            outcomes(&path),
            ["sent", "failed", "pending"],
            "closing commits what waits"
        );
        let conn = Connection::open(&path).unwrap();
        let sent: i64 = conn
            .query_row(
                "SELECT sent_at FROM invitations WHERE id = ?1",
                [first],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(sent, ms(t(2)), "the settle before the failed one was kept");
    }

    #[tokio::test]
    async fn settles_wait_no_longer_than_the_window() {
        let (_dir, path, state) = fresh();
        let id = state
            .intent_for("p", "a", InviteKind::Create, Delivery::Email, "r", t(1))
            .await
            .unwrap()
            .id()
            .unwrap();
        state.settle_intent(id, Some(t(1)), false).unwrap();
        assert_eq!(outcomes(&path), ["pending"]);
        state.conn().unwrap().open_since = Some(Instant::now() - SETTLE_WINDOW);
        state
            .mark_invited(Subject::new("p", "a"), "a", "a@example.com")
            .unwrap();
        assert_eq!(
            outcomes(&path),
            ["sent"],
            "a settle after the window commits"
        );
    }

    #[test]
    fn a_new_file_gets_the_current_schema_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(State::open(&path, Access::Write).unwrap());
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = State::open(&path, Access::Write).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99, "left untouched");
    }

    #[test]
    fn version_one_migrates_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO users (pool_id, key, username, email, invited, last_status, last_seen_at)
             VALUES ('p', 'a@example.com', 'u1', 'a@example.com', 1, 'CONFIRMED', ?1)",
            [ms(t(3))],
        )
        .unwrap();
        drop(conn);
        let state = State::open(&path, Access::Write).unwrap();
        let known = state.known("p").unwrap();
        assert_eq!(known["a@example.com"].confirmed_at, Some(t(3)));
        assert_eq!(
            known["a@example.com"].last_status,
            Some(UserStatus::Confirmed)
        );
        // The migration's own copy: one transition per user it had seen, at the time it saw it.
        let copied: Vec<(String, Option<String>, String, i64)> = state
            .with(|c| {
                let mut stmt = c.prepare(
                    "SELECT key, from_status, to_status, observed_at FROM transitions
                     WHERE run_id = 'migration'",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                rows.collect()
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            copied,
            vec![(
                "a@example.com".to_string(),
                None,
                "CONFIRMED".to_string(),
                ms(t(3))
            )]
        );
    }

    #[test]
    fn the_lock_keeps_a_second_writer_out_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let first = State::open(&path, Access::Write).unwrap();
        let err = State::open(&path, Access::Write).err().unwrap();
        assert_eq!(crate::error::exit_code(&Err(err)), 4);
        assert!(
            State::open(&path, Access::Read).is_ok(),
            "readers are not locked out"
        );
        drop(first);
        assert!(State::open(&path, Access::Write).is_ok());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = State::open(&path, Access::Write).err().unwrap();
        assert!(
            err.to_string()
                .contains("not a cognito-onboard state database"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn intents_history_and_the_email_count() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db"), Access::Write).unwrap();
        let a = state
            .intent_for("p", "a", InviteKind::Create, Delivery::Email, "r1", t(1))
            .await
            .unwrap()
            .id()
            .unwrap();
        state.settle_intent(a, Some(t(1)), false).unwrap();
        let b = state
            .intent_for("p", "a", InviteKind::Resend, Delivery::Email, "r2", t(5))
            .await
            .unwrap()
            .id()
            .unwrap();
        state.settle_intent(b, Some(t(5)), false).unwrap();
        let c = state
            .intent_for("p", "b", InviteKind::Create, Delivery::Email, "r2", t(6))
            .await
            .unwrap()
            .id()
            .unwrap();
        state.settle_intent(c, None, false).unwrap();
        state
            .intent_for("p", "c", InviteKind::Create, Delivery::Email, "r2", t(7))
            .await
            .unwrap();
        state
            .intent_for("p", "d", InviteKind::Create, Delivery::Suppress, "r2", t(7))
            .await
            .unwrap();
        let known = state.known("p").unwrap();
        assert_eq!(known["a"].first_invited_at, Some(t(1)));
        assert_eq!(known["a"].last_invited_at, Some(t(5)));
        assert_eq!(known["a"].reissues, 1);
        assert!(known["b"].last_invited_at.is_none() && known["b"].open_intent.is_none());
        assert_eq!(
            known["c"].open_intent.as_ref().unwrap().kind,
            InviteKind::Create
        );
        // a's two, and c's possibly-sent one; the failed and the suppressed ones do not count.
        assert_eq!(
            state
                .messages_since(t(0), Delivery::Email, "email:cognito:1")
                .unwrap(),
            (3, Some(t(1)))
        );
        assert_eq!(
            state
                .messages_since(t(2), Delivery::Email, "email:cognito:1")
                .unwrap(),
            (2, Some(t(5)))
        );
        assert_eq!(
            state.messages_since(t(0), Delivery::Sms, "sms:1").unwrap(),
            (0, None)
        );
        assert_eq!(
            state
                .message_times_since(t(0), Delivery::Email, "email:cognito:1")
                .unwrap(),
            vec![t(1), t(5), t(7)]
        );
    }

    #[tokio::test]
    async fn known_after_hands_out_the_whole_pool_in_key_order_a_slice_at_a_time() {
        let (_dir, _path, state) = fresh();
        for key in ["c", "a", "e", "b"] {
            state
                .mark_invited(Subject::new("p", key), key, "x@example.com")
                .unwrap();
        }
        state
            .mark_invited(Subject::new("other", "aa"), "aa", "x@example.com")
            .unwrap();
        // A killed run's intent for a user with no row yet is known too, in its place.
        state
            .intent_for("p", "d", InviteKind::Create, Delivery::Email, "r1", t(1))
            .await
            .unwrap();
        let mut slices = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let slice = state.known_after("p", after.as_deref(), 2).unwrap();
            let Some((last, _)) = slice.last() else { break };
            after = Some(last.clone());
            slices.push(slice.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
            assert!(slices.len() < 10, "the pass ends");
        }
        assert_eq!(slices, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        let whole = state.known("p").unwrap();
        let mut again = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let slice = state.known_after("p", after.as_deref(), 2).unwrap();
            let Some((last, _)) = slice.last() else { break };
            after = Some(last.clone());
            again.extend(slice);
        }
        assert_eq!(again.len(), whole.len());
        for (key, known) in again {
            assert_eq!(
                whole[&key], known,
                "{key}: a slice knows what the whole does"
            );
        }
        assert!(whole["d"].open_intent.is_some());
    }

    #[test]
    fn observations_record_transitions_and_confirmations() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db"), Access::Write).unwrap();
        state
            .observe(
                Subject::new("p", "a"),
                Observation {
                    username: Some("u"),
                    email: Some("a@x.com"),
                    status: Some(&UserStatus::ForceChangePassword),
                    enabled: Some(true),
                    run_id: "r1",
                    at: t(1),
                },
            )
            .unwrap();
        state
            .observe(
                Subject::new("p", "a"),
                Observation {
                    username: Some("u"),
                    email: None,
                    status: Some(&UserStatus::ForceChangePassword),
                    enabled: Some(true),
                    run_id: "r2",
                    at: t(2),
                },
            )
            .unwrap();
        state
            .observe(
                Subject::new("p", "a"),
                Observation {
                    username: None,
                    email: None,
                    status: Some(&UserStatus::Confirmed),
                    enabled: Some(true),
                    run_id: "r3",
                    at: t(3),
                },
            )
            .unwrap();
        let k = &state.known("p").unwrap()["a"];
        assert_eq!(k.confirmed_at, Some(t(3)));
        assert_eq!(k.confirmed_reported_at, None);
        assert_eq!(k.email.as_deref(), Some("a@x.com"));
        state
            .confirmations_reported("p", &["a".to_string()], t(4))
            .unwrap();
        assert_eq!(
            state.known("p").unwrap()["a"].confirmed_reported_at,
            Some(t(4))
        );
        let n: i64 = state
            .with(|c| c.query_row("SELECT COUNT(*) FROM transitions", [], |r| r.get(0)))
            .unwrap()
            .unwrap();
        assert_eq!(n, 2, "FCP first seen, then CONFIRMED");
    }

    #[tokio::test]
    async fn read_access_to_a_missing_file_is_an_empty_state_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db");
        let state = State::open(&path, Access::Read).unwrap();
        assert!(state.known("p").unwrap().is_empty());
        assert_eq!(
            state
                .intent_for("p", "a", InviteKind::Create, Delivery::Email, "r", t(1))
                .await
                .unwrap(),
            IntentAnswer::NotRecorded
        );
        assert!(!path.exists());
    }
}
