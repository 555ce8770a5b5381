//! The help desk's commands: `doctor` (and `doctor --fix`), `reissue` and `reset`, each a list
//! of named steps on the same executor, limiter, state, budget and report as `run`. Must not
//! decide (`diagnosis`, `plan`) or carry a row out itself (`onboard`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::budget::{Budget, Caps};
use crate::calls::Calls;
use crate::cli::{DoctorArgs, ReissueArgs, ResetArgs, StatusFormat};
use crate::cognito::{Cognito, Delivery, PoolInfo, UserStatus};
use crate::cohort;
use crate::config::{self, Common, FileConfig};
use crate::error::{Ending, Error};
use crate::help;
use crate::input::{self, ColumnRules, KeyMode, Record};
use crate::lookup;
use crate::onboard::{self, Ctx};
use crate::password_file::PasswordFile;
use crate::plan::Policy;
use crate::report::files::ReportFiles;
use crate::report::terminal as render;
use crate::report::terminal as report_log;
use crate::report::{self, Report, RowReport};
use crate::session::{
    Opened, check_invitation, finish, open_pool, require_pool, run_id, run_report,
};
use crate::state::{Access, State};

/// `doctor`: for each provider, one verdict and the facts behind it, with the remedy. Reads
/// only; the state is not locked.
pub(crate) async fn doctor(
    common: &Common,
    file: &FileConfig,
    args: &DoctorArgs,
) -> Result<Ending, Error> {
    let started_at = Utc::now();
    let run_id = run_id();
    let pool_id = require_pool(common)?.to_string();
    let ids = doctor_ids(args, file)?;
    // Only --fix writes, so only --fix takes the lock.
    let delivery = args
        .fix
        .then(|| config::delivery(args.send.delivery, args.send.password_file.as_deref(), file))
        .transpose()?;
    // A help-desk fix shares a DynamoDB state with a scheduled run instead of waiting for it.
    let access = if args.fix {
        Access::Shared
    } else {
        Access::Read
    };
    let state = Arc::new(State::open(&common.state, access)?);
    let report_files = ReportFiles::open(&common.report_dir, &run_id)?;
    let password_file = match delivery {
        Some(_) => PasswordFile::for_run(args.send.password_file.as_deref(), false, &state)?,
        None => None,
    };
    if args.fix {
        state.begin_run(&run_id, &pool_id, "doctor", None, started_at)?;
    }
    let result = async {
        let (calls, pool) = open_pool(common, &pool_id).await?;
        let facts = help::PoolFacts::new(
            &pool,
            help::budget_now(&pool, file.email_budget, &state, started_at)?,
        );
        let mut providers = examine_all(&calls, &pool, &facts, &state, &ids).await?;
        let mut fixes = Vec::new();
        if let Some(delivery) = delivery {
            let fix = Fix {
                common,
                file,
                calls: &calls,
                pool: &pool,
                state: &state,
                run_id: &run_id,
            };
            fixes = fix.apply(delivery, password_file, &providers).await?;
            if !fixes.is_empty() {
                // Judged on the state after the fixes.
                providers = examine_all(&calls, &pool, &facts, &state, &ids).await?;
            }
        }
        let mut summary = BTreeMap::new();
        for p in &providers {
            *summary.entry(p.verdict).or_insert(0) += 1;
        }
        let report = help::DoctorReport {
            run_id: run_id.clone(),
            command: "doctor",
            started_at,
            finished_at: Utc::now(),
            user_pool_id: pool.id.clone(),
            pool: facts,
            summary,
            calls: crate::session::calls_by_name(&calls.exec, &state),
            providers,
            fixes,
        };
        report_files.write_doctor(&report)?;
        match args.format {
            Some(StatusFormat::Json) => println!(
                "{}",
                serde_json::to_string_pretty(&report.providers).unwrap_or_default()
            ),
            Some(StatusFormat::Table) | None => print!("{}", render::doctor_table(&report)),
        }
        tracing::info!(
            "report: {} and {}",
            report_files.json.display(),
            report_files.csv.display()
        );
        let counts = serde_json::to_string(&report.summary).unwrap_or_default();
        Ok((report.ending(), counts))
    }
    .await;
    if args.fix {
        finish(&state, &run_id, result)
    } else {
        result.map(|(ending, _)| ending)
    }
}

/// What `doctor --fix` works with.
struct Fix<'a> {
    common: &'a Common,
    file: &'a FileConfig,
    calls: &'a Arc<Calls<Cognito>>,
    pool: &'a PoolInfo,
    state: &'a Arc<State>,
    run_id: &'a str,
}

impl Fix<'_> {
    /// Applies the safe remedy to every provider that has one, through `run`'s row state
    /// machine with `run`'s policy: an expired or lost invitation is re-issued, an existing
    /// email marked verified. Returns what was done, row by row.
    async fn apply(
        &self,
        delivery: Delivery,
        password_file: Option<PasswordFile>,
        providers: &[help::Examined],
    ) -> Result<Vec<RowReport>, Error> {
        let rows: Vec<_> = (1..)
            .zip(providers)
            .filter(|(_, p)| p.fixable())
            .filter_map(|(line, p)| {
                let (user, key) = p.found.as_ref()?;
                Some(help::row(line, &p.id, user, key.clone(), self.pool))
            })
            .collect();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        check_invitation(self.pool, delivery)?;
        let (reissue, _, max_reissues) = config::run_defaults(self.file);
        let policy = Policy::new(reissue, delivery, max_reissues, self.pool);
        let (fixes, _) = carry_out(
            self.common,
            self.calls,
            self.pool,
            self.state,
            self.run_id,
            policy,
            self.file,
            password_file,
            rows,
        )
        .await?;
        Ok(fixes)
    }
}

/// Examines each provider, in order.
async fn examine_all(
    calls: &Calls<Cognito>,
    pool: &PoolInfo,
    facts: &help::PoolFacts,
    state: &State,
    ids: &[String],
) -> Result<Vec<help::Examined>, Error> {
    let known = state.known(&pool.id)?;
    let mut out = Vec::with_capacity(ids.len());
    for typed in ids {
        out.push(match help::checked_id(typed) {
            Ok(id) => help::examine(calls, pool, facts, state, &known, &id, Utc::now()).await?,
            Err(why) => help::invalid(typed, why),
        });
    }
    Ok(out)
}

/// `reissue`: a new invitation now for each provider still in `FORCE_CHANGE_PASSWORD`, sent
/// exactly as `run` sends one (budget, write-ahead intent, state, report), whatever the expiry
/// or `--max-reissues`: an operator asked. Anyone else is refused with the reason.
pub(crate) async fn reissue(
    common: &Common,
    file: &FileConfig,
    args: &ReissueArgs,
) -> Result<Ending, Error> {
    let delivery = config::delivery(args.send.delivery, args.send.password_file.as_deref(), file)?;
    let mut desk = Desk::open(common, &args.send, "reissue")?;
    let password_file = desk.password_file.take();
    let opened = desk.opened();
    let (state, run_id, pool_id, report_files) = (
        opened.state,
        opened.run_id,
        opened.pool_id,
        opened.report_files,
    );
    let result = async {
        let (calls, pool) = open_pool(common, pool_id).await?;
        check_invitation(&pool, delivery)?;
        let known = state.known(&pool.id)?;
        let mut refused = Vec::new();
        let mut rows = Vec::new();
        for (line, typed) in (1..).zip(&args.ids) {
            let id = match help::checked_id(typed) {
                Ok(id) => id,
                Err(why) => {
                    refused.push(help::invalid_id(line, typed, &why));
                    continue;
                }
            };
            match help::find(&calls, &known, &id).await? {
                (Some(user), key) if user.status == UserStatus::ForceChangePassword => {
                    rows.push(help::row(line, &id, &user, key, &pool));
                }
                (user, _) => refused.push(help::refused(line, &id, user.as_ref())),
            }
        }
        let (reissue, _, max_reissues) = config::run_defaults(file);
        let policy = Policy::new(reissue, delivery, max_reissues, &pool).explicit_reissue();
        let (mut reports, budget) = carry_out(
            common,
            &calls,
            &pool,
            state,
            run_id,
            policy,
            file,
            password_file,
            rows,
        )
        .await?;
        reports.extend(refused);
        reports.sort_by_key(|r| r.row);
        let report = run_report(&opened, ("reissue", false), &calls.exec, &budget, reports)?;
        report_files.write(&report)?;
        report_log::log_end(&report, report_files);
        println!("{}", report_files.json.display());
        let counts = serde_json::to_string(&report.summary).unwrap_or_default();
        Ok((desk_ending(&report), counts))
    }
    .await;
    desk.close(result)
}

/// What a help-desk write opens before it talks to Cognito: the state (locked), the report
/// files, the password file, and the run's record in the state.
struct Desk {
    run_id: String,
    pool_id: String,
    started_at: DateTime<Utc>,
    state: Arc<State>,
    report_files: ReportFiles,
    password_file: Option<PasswordFile>,
    password_path: Option<std::path::PathBuf>,
}

impl Desk {
    fn open(common: &Common, send: &crate::cli::SendArgs, command: &str) -> Result<Desk, Error> {
        let started_at = Utc::now();
        let run_id = run_id();
        let pool_id = require_pool(common)?.to_string();
        let state = Arc::new(State::open(&common.state, Access::Shared)?);
        let report_files = ReportFiles::open(&common.report_dir, &run_id)?;
        let password_file = PasswordFile::for_run(send.password_file.as_deref(), false, &state)?;
        state.begin_run(&run_id, &pool_id, command, None, started_at)?;
        Ok(Desk {
            run_id,
            pool_id,
            started_at,
            state,
            report_files,
            password_file,
            password_path: send.password_file.clone(),
        })
    }

    fn opened(&self) -> Opened<'_> {
        Opened {
            run_id: &self.run_id,
            pool_id: &self.pool_id,
            started_at: self.started_at,
            report_files: &self.report_files,
            state: &self.state,
        }
    }

    /// Records how the command ended; a command that did nothing leaves no empty files.
    fn close(self, result: Result<(Ending, String), Error>) -> Result<Ending, Error> {
        if result.is_err() {
            self.report_files.discard_if_empty();
            if let Some(path) = &self.password_path {
                PasswordFile::discard_if_empty(path);
            }
        }
        finish(&self.state, &self.run_id, result)
    }
}

/// The help desk's writes, carried out by `run`'s own row state machine (budget, write-ahead
/// intent, state, report) with `policy`. Returns the rows' reports and the budget they drew on.
#[allow(clippy::too_many_arguments)]
async fn carry_out(
    common: &Common,
    calls: &Arc<Calls<Cognito>>,
    pool: &PoolInfo,
    state: &Arc<State>,
    run_id: &str,
    policy: Policy,
    file: &FileConfig,
    password_file: Option<PasswordFile>,
    rows: Vec<input::Row>,
) -> Result<(Vec<RowReport>, Budget), Error> {
    let ctx = desk_ctx(
        calls,
        pool,
        state,
        run_id,
        policy,
        file,
        password_file,
        rows.len(),
    )?;
    let reports = onboard::process_rows(&ctx, rows, common.concurrency, false).await;
    Ok((reports, ctx.budget))
}

/// `run`'s row context for the help desk's writes.
#[allow(clippy::too_many_arguments)]
fn desk_ctx(
    calls: &Arc<Calls<Cognito>>,
    pool: &PoolInfo,
    state: &Arc<State>,
    run_id: &str,
    policy: Policy,
    file: &FileConfig,
    password_file: Option<PasswordFile>,
    rows: usize,
) -> Result<Ctx<Cognito>, Error> {
    let budget = Budget::for_run(
        pool,
        policy.delivery,
        Caps {
            email: file.email_budget,
            sms: file.sms_budget,
        },
        None,
        state,
        rows,
        Utc::now(),
    )?;
    Ok(Ctx {
        calls: Arc::clone(calls),
        policy,
        pool: pool.clone(),
        dry_run: false,
        found: lookup::Found::PerRow(lookup::PerRow::new(pool.case_sensitive)),
        memberships: None,
        budget,
        password_file,
        state: Arc::clone(state),
        run_id: run_id.to_string(),
        known: state.known(&pool.id)?,
    })
}

/// `reset`: for a confirmed provider who lost the password, Cognito's code to the verified
/// address, or with `--temporary` a new temporary password to the password file. Anyone else,
/// and anyone a code could never reach, is refused with the reason.
pub(crate) async fn reset(
    common: &Common,
    file: &FileConfig,
    args: &ResetArgs,
) -> Result<Ending, Error> {
    let delivery = config::delivery(args.send.delivery, args.send.password_file.as_deref(), file)?;
    if args.temporary && delivery != Delivery::Suppress {
        return Err(Error::Config(
            "reset --temporary sends nothing: pass --delivery suppress --password-file PATH".into(),
        ));
    }
    let mut desk = Desk::open(common, &args.send, "reset")?;
    let password_file = desk.password_file.take();
    let opened = desk.opened();
    let (state, run_id, pool_id, report_files) = (
        opened.state,
        opened.run_id,
        opened.pool_id,
        opened.report_files,
    );
    let result = async {
        let (calls, pool) = open_pool(common, pool_id).await?;
        let known = state.known(&pool.id)?;
        let (reissue, _, max_reissues) = config::run_defaults(file);
        let policy = Policy::new(reissue, delivery, max_reissues, &pool);
        let ctx = desk_ctx(
            &calls,
            &pool,
            state,
            run_id,
            policy,
            file,
            password_file,
            args.ids.len(),
        )?;
        let mut reports = Vec::new();
        for (line, typed) in (1..).zip(&args.ids) {
            let id = match help::checked_id(typed) {
                Ok(id) => id,
                Err(why) => {
                    reports.push(help::invalid_id(line, typed, &why));
                    continue;
                }
            };
            let (user, key) = help::find(&calls, &known, &id).await?;
            reports.push(match user {
                Some(user) => {
                    // The state's key, so that what the reset records (a `--temporary`
                    // intent) is found by the runs that follow.
                    let r = RowReport::new(
                        line,
                        key.unwrap_or_else(|| id.clone()),
                        user.email.clone(),
                        report::Outcome::Skipped,
                    );
                    ctx.reset(r, &user, args.temporary).await
                }
                None => help::refused(line, &id, None),
            });
        }
        let report = run_report(&opened, ("reset", false), &calls.exec, &ctx.budget, reports)?;
        report_files.write(&report)?;
        report_log::log_end(&report, report_files);
        println!("{}", report_files.json.display());
        let counts = serde_json::to_string(&report.summary).unwrap_or_default();
        Ok((desk_ending(&report), counts))
    }
    .await;
    desk.close(result)
}

/// How a help-desk write ended: every ID done, or some refused, deferred or failed.
fn desk_ending(report: &Report) -> Ending {
    match report::ending(&report.summary, report.interrupted) {
        Ending::Settled
            if report
                .rows
                .iter()
                .any(|r| r.outcome != report::Outcome::Reissued) =>
        {
            Ending::RowsFailed
        }
        ending => ending,
    }
}

/// The providers `doctor` examines: the IDs given, or the rows of `--input` (by username where
/// the CSV has one, else by email).
fn doctor_ids(args: &DoctorArgs, file: &FileConfig) -> Result<Vec<String>, Error> {
    let mut ids = args.ids.clone();
    if let Some(path) = &args.input {
        let reader = input::open(path, &config::input_options(&args.input_args, file))?;
        let key_mode = if reader.columns().iter().any(|c| c == "username") {
            KeyMode::Username
        } else {
            KeyMode::Email
        };
        for record in reader.records(key_mode, &ColumnRules::default())? {
            match record? {
                Record::Valid(row) => ids.push(row.username.unwrap_or(row.email)),
                Record::Invalid(reject) => {
                    tracing::warn!("{}", cohort::invalid_row(&reject).reason)
                }
            }
        }
    }
    if ids.is_empty() {
        return Err(Error::Config(
            "name at least one provider: doctor ID... (email or username) or doctor --input FILE"
                .into(),
        ));
    }
    Ok(ids)
}
