//! The lifecycle every command shares: [`Session::open`] takes, in order, the run id, the pool,
//! the state and its lock, what the command reads first, the report files, the password file and
//! the run's record; [`Session::close`] discards what a failed command left empty, records how it
//! ended, tells its monitors (`monitor`), and hands the result on to become an exit code. Also
//! what commands that talk to Cognito open (the client behind the limiter and executor, the pool,
//! the invitation check) and the run report they build. Must not hold a command's own steps
//! (`commands`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::budget::Budget;
use crate::calls::{Calls, Probe};
use crate::cognito::{Cognito, Delivery, Directory, PoolInfo, SendQuota};
use crate::config::{Common, RunSettings};
use crate::error::{self, Ending, Error};
use crate::executor::{Cancel, Executor, RetryPolicy};
use crate::invite;
use crate::limiter::{Limiter, QuotaSource};
use crate::monitor::{End, Figures, Monitoring, Monitors};
use crate::onboard::Ctx;
use crate::password_file::PasswordFile;
use crate::report::files::ReportFiles;
use crate::report::{Report, RowReport};
use crate::state::{Access, RunEnd, RunStart, State};

/// What a command opens: how it holds the state, whether it records a run, and what it writes.
pub(crate) struct Spec<'a> {
    /// The name the state records the run under.
    pub command: &'static str,
    pub access: Access,
    /// The input, whose SHA-256 the run's record keeps.
    pub input: Option<&'a Path>,
    /// Whether the report files include the page.
    pub page: bool,
    /// The password file, and whether the command is a dry run (which writes none).
    pub password_file: Option<(&'a Path, bool)>,
    /// Whether the command is recorded in the state's runs (a read-only `doctor` is not).
    pub record: bool,
    /// How a scheduled command is watched (`--ping-url`, `--metrics-file`, ...).
    pub monitoring: Option<&'a Monitoring>,
}

/// An open command: its run id and pool, the state (locked when it writes), its report files and
/// password file, and its record in the state. Closed by [`Session::close`], which consumes it.
#[must_use = "a session is closed with Session::close, which records how the command ended"]
pub(crate) struct Session {
    run_id: String,
    pool_id: String,
    started_at: DateTime<Utc>,
    state: Arc<State>,
    report_files: ReportFiles,
    password_file: Option<PasswordFile>,
    password_path: Option<PathBuf>,
    record: bool,
    command: &'static str,
    monitors: Monitors,
}

impl Session {
    /// Opens what the command needs, in the order that makes a refused command change nothing:
    /// the lock first (a second run must not even create a report), then `first` (what the
    /// command reads before it writes anything, such as its input), then the files and the
    /// run's record.
    pub async fn open<T>(
        common: &Common,
        spec: Spec<'_>,
        first: impl FnOnce() -> Result<T, Error>,
    ) -> Result<(Session, T), Error> {
        let started_at = Utc::now();
        let run_id = run_id();
        let pool_id = require_pool(common)?.to_string();
        let monitors = Monitors::new(spec.monitoring, &run_id)?;
        let state = match State::open(&common.state, spec.access) {
            Ok(state) => Arc::new(state),
            Err(e) => {
                monitors.refused(spec.command, &e);
                return Err(e);
            }
        };
        // Told once the lock is held: a run refused because another holds it (exit 4) is no
        // news to the monitors, which hear from the run that holds it.
        monitors.started().await;
        let opened = Self::open_files(common, &spec, &state, &run_id, &pool_id, started_at, first);
        let (report_files, password_file, read) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                monitors
                    .ended(&End {
                        run_id: &run_id,
                        command: spec.command,
                        pool: &pool_id,
                        started_at,
                        finished_at: Utc::now(),
                        exit_code: e.exit_code(),
                        failure: Some(e.kind()),
                        figures: None,
                    })
                    .await;
                return Err(e);
            }
        };
        // A walk over a shared table copies it to the report directory, which the command
        // can write.
        if let Some(dir) = report_files.json.parent() {
            state.scratch_in(dir);
        }
        let session = Session {
            run_id,
            pool_id,
            started_at,
            state,
            report_files,
            password_file,
            password_path: spec.password_file.map(|(path, _)| path.to_path_buf()),
            record: spec.record,
            command: spec.command,
            monitors,
        };
        Ok((session, read))
    }

    /// What the command opens once its state is held: what it reads first, the report files,
    /// the password file and the run's record.
    #[allow(clippy::type_complexity)]
    fn open_files<T>(
        common: &Common,
        spec: &Spec<'_>,
        state: &Arc<State>,
        run_id: &str,
        pool_id: &str,
        started_at: DateTime<Utc>,
        first: impl FnOnce() -> Result<T, Error>,
    ) -> Result<(ReportFiles, Option<PasswordFile>, T), Error> {
        let read = first()?;
        let input_hash = match spec.input {
            Some(path) => Some(
                crate::state::file_sha256(path).map_err(|e| Error::io("cannot read", path, e))?,
            ),
            None => None,
        };
        let report_files = if spec.page {
            ReportFiles::open_with_page(&common.report_dir, run_id)?
        } else {
            ReportFiles::open(&common.report_dir, run_id)?
        };
        let (password_path, dry_run) = match spec.password_file {
            Some((path, dry_run)) => (Some(path), dry_run),
            None => (None, false),
        };
        let password_file = PasswordFile::for_run(password_path, dry_run, state)?;
        if spec.record {
            state.begin_run(RunStart {
                run_id,
                pool: pool_id,
                command: spec.command,
                input: spec.input.zip(input_hash.as_deref()),
                at: started_at,
            })?;
        }
        Ok((report_files, password_file, read))
    }

    /// What the command's steps work with.
    pub fn opened(&self) -> Opened<'_> {
        Opened {
            run_id: &self.run_id,
            pool_id: &self.pool_id,
            started_at: self.started_at,
            report_files: &self.report_files,
            state: &self.state,
        }
    }

    /// The password file, for the one step that writes to it.
    pub fn take_password_file(&mut self) -> Option<PasswordFile> {
        self.password_file.take()
    }

    /// Ends the command: one that stopped before it reported leaves no empty report or password
    /// file behind; a recorded one has its ending and counts written to the state; the
    /// monitors are told how it ended.
    pub async fn close(self, result: Result<(Ending, Figures), Error>) -> Result<Ending, Error> {
        if result.is_err() {
            self.report_files.discard_if_empty();
            if let Some(path) = &self.password_path {
                PasswordFile::discard_if_empty(path);
            }
        }
        let (result, figures) = match result {
            Ok((ending, figures)) => (Ok((ending, figures.counts())), Some(figures)),
            Err(e) => (Err(e), None),
        };
        let ending = if self.record {
            finish(&self.state, &self.run_id, result)
        } else {
            result.map(|(ending, _)| ending)
        };
        self.monitors
            .ended(&End {
                run_id: &self.run_id,
                command: self.command,
                pool: &self.pool_id,
                started_at: self.started_at,
                finished_at: Utc::now(),
                exit_code: error::exit_code(&ending),
                failure: ending.as_ref().err().map(Error::kind),
                figures: figures.as_ref(),
            })
            .await;
        ending
    }
}

/// What a command has opened before it talks to Cognito.
pub(crate) struct Opened<'a> {
    pub run_id: &'a str,
    pub pool_id: &'a str,
    pub started_at: DateTime<Utc>,
    pub report_files: &'a ReportFiles,
    pub state: &'a Arc<State>,
}

impl Opened<'_> {
    /// `run`'s row context for the rows the help desk names: each read on its own (a handful of
    /// IDs never warrants a scan), recorded under this command's run, with the budget `send`'s
    /// caps allow for `rows` messages.
    pub fn desk_ctx(
        &self,
        calls: &Arc<Calls<Cognito>>,
        pool: &PoolInfo,
        policy: crate::plan::Policy,
        send: &crate::config::Sending,
        password_file: Option<PasswordFile>,
        rows: usize,
    ) -> Result<Ctx<Cognito>, Error> {
        let budget = Budget::for_run(
            pool,
            policy.delivery,
            send.caps,
            None,
            self.state,
            rows,
            Utc::now(),
        )?;
        Ok(Ctx {
            calls: Arc::clone(calls),
            policy,
            pool: pool.clone(),
            dry_run: false,
            found: crate::lookup::Found::PerRow(crate::lookup::PerRow::new(pool.case_sensitive)),
            memberships: None,
            budget,
            password_file,
            state: Arc::clone(self.state),
            run_id: self.run_id.to_string(),
            known: self.state.known(&pool.id)?.into(),
            cohort: None,
            reenable: false,
            suppression: crate::suppression::SuppressionList::of(pool),
        })
    }
}

fn require_pool(common: &Common) -> Result<&str, Error> {
    common.pool_id.as_deref().ok_or_else(|| {
        Error::Config("no user pool: pass --user-pool-id or set COGNITO_USER_POOL_ID".into())
    })
}

fn run_id() -> String {
    use rand::RngExt;
    let suffix: u16 = rand::rng().random();
    format!("{}-{suffix:04x}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// Records how the command ended in the state's `runs` table and passes the result on.
fn finish(
    state: &State,
    run_id: &str,
    result: Result<(Ending, String), Error>,
) -> Result<Ending, Error> {
    let (ending, counts) = match result {
        Ok((ending, counts)) => (Ok(ending), counts),
        Err(e) => (Err(e), String::new()),
    };
    state.finish_run(RunEnd {
        run_id,
        at: Utc::now(),
        exit_code: error::exit_code(&ending),
        counts: &counts,
    })?;
    ending
}

/// Which categories ask Cognito for their quota: all but those the settings file sets.
pub(crate) fn probe(common: &Common) -> Probe {
    if !common.use_provisioned_limits {
        return Probe::never();
    }
    Probe::ask(
        common
            .quotas
            .per_category
            .iter()
            .filter(|(_, (_, source))| *source == QuotaSource::ConfigFile)
            .map(|(category, _)| *category),
    )
}

/// The client, the limiter and the executor every call of the command goes through.
pub(crate) async fn connect(
    common: &Common,
    pool_id: &str,
    probe: Probe,
) -> Result<(Calls<Cognito>, Arc<Cancel>), Error> {
    let cognito = Cognito::connect(&common.connection, pool_id).await?;
    let cancel = Arc::new(Cancel::default());
    let limiter = Arc::new(Limiter::new(&common.quotas, common.rate_fraction));
    let exec = Arc::new(Executor::new(
        limiter,
        RetryPolicy {
            max_attempts: common.max_attempts,
            ..RetryPolicy::default()
        },
        Arc::clone(&cancel),
    ));
    Ok((Calls::new(cognito, exec, probe), cancel))
}

/// What a command that works on the pool opens first: the client behind the limiter and
/// executor (asking Cognito for its quotas), Ctrl-C and SIGTERM stopping it gracefully, and the
/// pool's settings.
pub(crate) async fn open_pool(
    common: &Common,
    pool_id: &str,
) -> Result<(Arc<Calls<Cognito>>, PoolInfo), Error> {
    let (calls, cancel) = connect(common, pool_id, probe(common)).await?;
    cancel.on_signals(Ending::Interrupted.exit_code());
    let pool = describe_pool(&calls).await?;
    Ok((Arc::new(calls), pool))
}

/// Stops a run whose invitations could not arrive; warns about what else the template check
/// found (a trigger that may replace the message, another validity than the pool's).
pub(crate) fn check_invitation(pool: &PoolInfo, delivery: Delivery) -> Result<(), Error> {
    let findings = invite::check(
        &pool.invitation,
        delivery,
        pool.temporary_password_validity_days,
    );
    for f in findings.iter().filter(|f| !f.stops_the_run()) {
        tracing::warn!("{f}");
    }
    match findings.into_iter().find(invite::Finding::stops_the_run) {
        Some(f) => Err(Error::Config(f.to_string())),
        None => Ok(()),
    }
}

/// For email through SES: the account's send quota (None for other senders and media), and
/// the rate emails are paced at (the settings' `email_rate`, else SES's `MaxSendRate`).
pub(crate) async fn send_quota<D: Directory>(
    calls: &Calls<D>,
    pool: &PoolInfo,
    settings: &RunSettings,
) -> Option<Result<SendQuota, String>> {
    if settings.delivery != Delivery::Email {
        return None;
    }
    let quota = match pool.ses_region() {
        Some(region) => Some(
            calls
                .send_quota(region)
                .await
                .map(|d| d.value)
                .map_err(|f| f.error.to_string()),
        ),
        None => None,
    };
    let ses_rate = quota
        .as_ref()
        .and_then(|q| q.as_ref().ok())
        .map(|q| q.max_send_rate);
    if let Some(rate) = settings.email_rate.or(ses_rate) {
        calls.exec.limiter.set_message_rate(rate);
    }
    quota
}

/// Reads the pool's settings (DescribeUserPool) and says what matters about them.
pub(crate) async fn describe_pool<D: Directory>(calls: &Calls<D>) -> Result<PoolInfo, Error> {
    let pool = calls.describe_pool().await?.value;
    tracing::info!(
        "pool {} ({}): about {} users, temporary passwords valid {} days, email via {}",
        pool.id,
        pool.name,
        pool.estimated_users,
        pool.temporary_password_validity_days,
        pool.email_sending_account
    );
    Ok(pool)
}

/// The run's report from its rows and what the executor counted.
pub(crate) fn run_report(
    opened: &Opened<'_>,
    command: (&str, bool),
    exec: &Executor,
    budget: &Budget,
    rows: Vec<RowReport>,
) -> Result<Report, Error> {
    let mut tally = crate::report::model::Tally::new(false);
    rows.iter().for_each(|r| tally.add(r));
    let mut report = report_of(opened, command, exec, budget, &tally)?;
    report.rows = rows;
    Ok(report)
}

/// The end of a help-desk write whose rows are the IDs someone asked for: its report written
/// and logged, its path on stdout, and how it ended ([`crate::report::model::ids_ending`]).
pub(crate) fn ids_report(
    opened: &Opened<'_>,
    command: &str,
    exec: &Executor,
    budget: &Budget,
    rows: Vec<RowReport>,
) -> Result<(Ending, Figures), Error> {
    rows_report(
        opened,
        (command, false),
        exec,
        budget,
        rows,
        crate::report::model::ids_ending,
    )
}

/// The end of a command whose rows are not a file's: its report written and logged, its path
/// on stdout, and how it ended by `ending`.
pub(crate) fn rows_report(
    opened: &Opened<'_>,
    command: (&str, bool),
    exec: &Executor,
    budget: &Budget,
    rows: Vec<RowReport>,
    ending: fn(&crate::report::Report) -> Ending,
) -> Result<(Ending, Figures), Error> {
    let report = run_report(opened, command, exec, budget, rows)?;
    opened.report_files.write(&report)?;
    crate::report::terminal::log_end(&report, opened.report_files);
    println!("{}", opened.report_files.json.display());
    let mut tally = crate::report::model::Tally::new(false);
    report.rows.iter().for_each(|r| tally.add(r));
    let figures = Figures::of_run(&report, &tally.deferred);
    Ok((ending(&report), figures))
}

/// The report of a run whose rows were written as they finished (they are not in it), from
/// what they added up to and what the executor counted.
pub(crate) fn report_of(
    opened: &Opened<'_>,
    (command, dry_run): (&str, bool),
    exec: &Executor,
    budget: &Budget,
    tally: &crate::report::model::Tally,
) -> Result<Report, Error> {
    let email_budget_frees_at = if tally.budget_deferred {
        budget.frees_at(opened.state, Utc::now())?
    } else {
        None
    };
    Ok(Report {
        run_id: opened.run_id.to_string(),
        command: command.into(),
        started_at: opened.started_at,
        finished_at: Utc::now(),
        user_pool_id: opened.pool_id.to_string(),
        dry_run,
        update: None,
        interrupted: exec.cancel.is_cancelled(),
        summary: tally.summary.clone(),
        calls: calls_by_name(exec, opened.state),
        throttles: throttles_by_name(exec, opened.state),
        email_budget_frees_at,
        sent_by: budget.sent_by().map(str::to_string),
        rows: Vec::new(),
        handed_over: Vec::new(),
        reminded: Vec::new(),
        stalled: None,
    })
}

/// The calls that reached AWS, by category: Cognito's (the executor's) and the state table's.
pub(crate) fn calls_by_name(exec: &Executor, state: &State) -> BTreeMap<String, u64> {
    let mut calls = exec.calls_by_name();
    calls.extend(state.calls().0);
    calls
}

/// The throttles AWS answered, by category that had any.
fn throttles_by_name(exec: &Executor, state: &State) -> BTreeMap<String, u64> {
    let mut throttles = exec.throttles_by_name();
    throttles.extend(state.calls().1);
    throttles
}
