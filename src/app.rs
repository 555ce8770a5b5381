//! The runbook: each command as named steps in order, and the one place a command's result
//! becomes an exit code. Settings are merged, the runtime is built and signals are watched
//! here. Must not hold the steps themselves: each lives in the module named for what it owns.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::budget::{Budget, Caps};
use crate::calls::{Calls, Probe};
use crate::cli::{
    CheckArgs, Cli, Command, DoctorArgs, ReissueArgs, ResetArgs, StatusArgs, StatusFormat,
};
use crate::cognito::{Cognito, Delivery, Directory, PoolInfo, SendQuota, UserStatus, UsernameMode};
use crate::cohort::{self, Reader};
use crate::config::{self, Common, FileConfig, RunSettings};
use crate::error::{self, Ending, Error};
use crate::executor::{Cancel, Executor, RetryPolicy};
use crate::handover;
use crate::help;
use crate::input::{self, ColumnRules, KeyMode, Record};
use crate::invite;
use crate::limiter::{Limiter, QuotaSource};
use crate::logging;
use crate::lookup;
use crate::onboard::{self, Ctx};
use crate::password_file::PasswordFile;
use crate::plan::Policy;
use crate::render;
use crate::report::{self, Report, ReportFiles, RowReport};
use crate::standing::{self, Standing, StatusReport};
use crate::state::{self, Access, State};
use crate::status;

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> u8 {
    let file = match config::file_config(&cli.global) {
        Ok(f) => f,
        Err(e) => return fail_early(e),
    };
    let tty = std::io::stderr().is_terminal();
    let (rate_fraction, concurrency, report_dir) = match &cli.command {
        Command::Run(a) => (a.rate_fraction, a.concurrency, a.report_dir.as_deref()),
        Command::Status(a) => (None, None, a.report_dir.as_deref()),
        Command::Doctor(a) => (None, None, a.report_dir.as_deref()),
        Command::Reissue(a) => (None, None, a.report_dir.as_deref()),
        Command::Reset(a) => (None, None, a.report_dir.as_deref()),
        Command::Check(_) => (None, None, None),
    };
    let common = match config::common(
        &cli.global,
        &file,
        rate_fraction,
        concurrency,
        report_dir,
        tty,
    ) {
        Ok(c) => c,
        Err(e) => return fail_early(e),
    };
    logging::init(common.log_format, common.verbosity, common.progress);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail_early(Error::Config(format!(
                "cannot start the async runtime: {e}"
            )));
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Check(args) => check(&common, &file, args).await,
            Command::Run(args) => {
                let settings = config::run(args, &file)?;
                run(&common, &settings).await
            }
            Command::Status(args) => status(&common, &file, args).await,
            Command::Doctor(args) => doctor(&common, &file, args).await,
            Command::Reissue(args) => reissue(&common, &file, args).await,
            Command::Reset(args) => reset(&common, &file, args).await,
        }
    });
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    error::exit_code(&result)
}

/// A failure before logging is set up.
fn fail_early(e: Error) -> u8 {
    eprintln!("error: {e}");
    error::exit_code(&Err(e))
}

/// `check`: describe the pool (when one is given) and validate the input, writing nothing.
async fn check(common: &Common, file: &FileConfig, args: &CheckArgs) -> Result<Ending, Error> {
    let reader = match &args.input {
        Some(path) => Some(input::open(
            path,
            config::input_encoding(&args.input_args, file),
        )?),
        None => None,
    };
    let mut template_error = None;
    let connected = match &common.pool_id {
        Some(pool_id) => {
            let (calls, _) = connect(common, pool_id, Probe::never()).await?;
            let pool = calls.describe_pool().await?.value;
            let (_, delivery, _) = config::run_defaults(file);
            let findings = invite::check(
                &pool.invitation,
                delivery,
                pool.temporary_password_validity_days,
            );
            print!("{}", render::pool(&pool, &findings));
            template_error = findings
                .into_iter()
                .find(invite::Finding::stops_the_run)
                .map(|f| Error::Config(f.to_string()));
            Some((calls, pool))
        }
        None => None,
    };
    let Some(reader) = reader else {
        return template_error.map_or(Ok(Ending::Settled), Err);
    };
    let (key_mode, rules) = match &connected {
        Some((_, pool)) => cohort::rules_for(pool, reader.columns())?,
        None if reader.columns().iter().any(|c| c == "username") => {
            (KeyMode::Username, ColumnRules::default())
        }
        None => (KeyMode::Email, ColumnRules::default()),
    };
    let shown = args
        .input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    print!(
        "{}",
        render::input(&shown, reader.encoding_name(), reader.columns())
    );
    let (mut valid, mut invalid) = (0u64, 0u64);
    let mut groups = BTreeMap::new();
    for record in reader.records(key_mode, &rules)? {
        match record? {
            Record::Valid(row) => {
                valid += 1;
                cohort::note_groups(&mut groups, &row);
            }
            Record::Invalid(reject) => {
                invalid += 1;
                println!("  {}", cohort::invalid_row(&reject).reason);
            }
        }
    }
    println!("  {valid} valid rows, {invalid} invalid");
    if let Some((calls, pool)) = &connected {
        if !groups.is_empty() {
            cohort::check_groups(calls, &groups).await?;
            println!("  every group exists in the pool");
        }
        if let Some(warning) = render::email_days(pool, valid) {
            print!("{warning}");
        }
    }
    if let Some(e) = template_error {
        return Err(e);
    }
    Ok(if invalid > 0 {
        Ending::RowsFailed
    } else {
        Ending::Settled
    })
}

/// `run`: lock the state, open the input and the outputs, onboard the cohort, and record how the
/// run ended.
async fn run(common: &Common, settings: &RunSettings) -> Result<Ending, Error> {
    let started_at = Utc::now();
    let run_id = run_id();
    let pool_id = require_pool(common)?.to_string();
    // The lock comes first: a second run must change nothing, not even create a report.
    let access = if settings.dry_run {
        Access::Read
    } else {
        Access::Write
    };
    let state = Arc::new(State::open(&common.state_path, access)?);
    let reader = input::open(&settings.input, settings.encoding)?;
    tracing::info!(
        "reading {} ({})",
        settings.input.display(),
        reader.encoding_name()
    );
    let input_hash = state::file_sha256(&settings.input)
        .map_err(|e| Error::io("cannot read", &settings.input, e))?;
    let report_files = ReportFiles::open(&common.report_dir, &run_id)?;
    let password_file = PasswordFile::for_run(settings.password_file.as_deref(), settings.dry_run)?;
    state.begin_run(
        &run_id,
        &pool_id,
        "run",
        Some((&settings.input, &input_hash)),
        started_at,
    )?;
    let opened = Opened {
        run_id: &run_id,
        pool_id: &pool_id,
        started_at,
        report_files: &report_files,
        state: &state,
    };
    let result = onboard_cohort(common, settings, &opened, reader, password_file).await;
    if result.is_err() {
        // A run that stopped before it did anything leaves no empty report behind.
        report_files.discard_if_empty();
        if let Some(path) = &settings.password_file {
            PasswordFile::discard_if_empty(path);
        }
    }
    finish(&state, &run_id, result)
}

/// What a command has opened before it talks to Cognito.
struct Opened<'a> {
    run_id: &'a str,
    pool_id: &'a str,
    started_at: DateTime<Utc>,
    report_files: &'a ReportFiles,
    state: &'a Arc<State>,
}

/// The run proper: pool, cohort, lookups, rows, report. Returns how it ended and the counts.
async fn onboard_cohort(
    common: &Common,
    settings: &RunSettings,
    opened: &Opened<'_>,
    reader: Reader,
    password_file: Option<PasswordFile>,
) -> Result<(Ending, String), Error> {
    let (calls, cancel) = connect(common, opened.pool_id, probe(common)).await?;
    let calls = Arc::new(calls);
    cancel.on_signals(Ending::Interrupted.exit_code());
    let pool = describe_pool(&calls).await?;
    check_invitation(&pool, settings.delivery)?;
    let (key_mode, rules) = cohort::rules_for(&pool, reader.columns())?;
    let (rows, rejects) = cohort::read_cohort(reader, key_mode, &rules, settings.delivery)?;
    cohort::check_groups(&calls, &cohort::group_uses(&rows)).await?;
    let ses = send_quota(&calls, &pool, settings).await;
    let budget = Budget::for_run(
        &pool,
        settings.delivery,
        Caps {
            email: settings.email_budget,
            sms: settings.sms_budget,
        },
        ses.as_ref(),
        opened.state,
        rows.len(),
        opened.started_at,
    )?;
    let known = opened.state.known(&pool.id)?;
    let names = rows.iter().flat_map(|r| {
        let remembered = known.get(&r.key).and_then(|k| k.username.clone());
        [
            Some(onboard::username_for(pool.username_mode, r)),
            Some(r.email.clone()),
            remembered,
        ]
        .into_iter()
        .flatten()
    });
    let found = lookup::find(
        &calls,
        &pool,
        key_mode,
        settings.lookup,
        &rows,
        names,
        rejects.len(),
    )
    .await?;
    let memberships = cohort::memberships_to_read(&rows, &known)
        .map(|groups| lookup::spawn_memberships(Arc::clone(&calls), groups));
    let ctx = Ctx {
        calls: Arc::clone(&calls),
        policy: Policy::new(
            settings.reissue,
            settings.delivery,
            settings.max_reissues,
            &pool,
        ),
        pool,
        dry_run: settings.dry_run,
        found,
        memberships,
        budget,
        password_file,
        state: Arc::clone(opened.state),
        run_id: opened.run_id.to_string(),
        known,
    };
    let mut reports: Vec<RowReport> = rejects.iter().map(cohort::invalid_row).collect();
    reports.extend(onboard::process_rows(&ctx, rows, common.concurrency, common.progress).await);
    reports.sort_by_key(|r| r.row);
    let mut report = run_report(
        opened,
        ("run", settings.dry_run),
        &calls.exec,
        &ctx.budget,
        reports,
    )?;
    if let (Some(on), false) = (&settings.on_confirmed, settings.dry_run) {
        let known = opened.state.known(&ctx.pool.id)?;
        let seen = report
            .rows
            .iter()
            .filter(|r| r.status_before == Some(UserStatus::Confirmed))
            .map(|r| (r.key.as_str(), r.username.as_deref(), r.email.as_deref()));
        let due = handover::due(&ctx.pool.id, seen, &known);
        report.handed_over = handover::hand_over(on, opened.state, &ctx.pool.id, due).await?;
    }
    opened.report_files.write(&report)?;
    report::log_end(&report, opened.report_files);
    println!("{}", opened.report_files.json.display());
    let counts = serde_json::to_string(&report.summary).unwrap_or_default();
    if let Some(e) = calls.exec.fatal() {
        return Err(Error::Cognito(e.to_string()));
    }
    Ok((report::ending(&report.summary, report.interrupted), counts))
}

/// `status`: refresh where every provider stands by the cheapest reads, record what changed,
/// and report each provider's standing (what `run` would do now).
async fn status(common: &Common, file: &FileConfig, args: &StatusArgs) -> Result<Ending, Error> {
    let started_at = Utc::now();
    let run_id = run_id();
    let pool_id = require_pool(common)?.to_string();
    let state = Arc::new(State::open(&common.state_path, Access::Write)?);
    let reader = match &args.input {
        Some(path) => Some(input::open(
            path,
            config::input_encoding(&args.input_args, file),
        )?),
        None => None,
    };
    let input_hash = match &args.input {
        Some(path) => {
            Some(state::file_sha256(path).map_err(|e| Error::io("cannot read", path, e))?)
        }
        None => None,
    };
    let report_files = ReportFiles::open(&common.report_dir, &run_id)?;
    state.begin_run(
        &run_id,
        &pool_id,
        "status",
        args.input.as_deref().zip(input_hash.as_deref()),
        started_at,
    )?;
    let opened = Opened {
        run_id: &run_id,
        pool_id: &pool_id,
        started_at,
        report_files: &report_files,
        state: &state,
    };
    let result = refresh_status(common, file, args, &opened, reader).await;
    finish(&state, &run_id, result)
}

async fn refresh_status(
    common: &Common,
    file: &FileConfig,
    args: &StatusArgs,
    opened: &Opened<'_>,
    reader: Option<Reader>,
) -> Result<(Ending, String), Error> {
    let on_confirmed = config::on_confirmed(
        args.hand_over.on_confirmed.as_ref(),
        args.hand_over.on_confirmed_timeout,
        file,
    )?;
    let (calls, cancel) = connect(common, opened.pool_id, probe(common)).await?;
    cancel.on_signals(Ending::Interrupted.exit_code());
    let pool = describe_pool(&calls).await?;
    let known = opened.state.known(&pool.id)?;
    let (mut key_mode, rows) = match reader {
        Some(reader) => {
            let (key_mode, rules) = cohort::rules_for(&pool, reader.columns())?;
            let (rows, rejects) = cohort::read_cohort(reader, key_mode, &rules, Delivery::Email)?;
            for r in &rejects {
                tracing::warn!("{}", cohort::invalid_row(r).reason);
            }
            (key_mode, Some(rows))
        }
        None => (KeyMode::Email, None),
    };
    let mut targets = status::targets(rows, &known, &pool);
    if key_mode == KeyMode::Email && pool.username_mode != UsernameMode::Email && !known.is_empty()
    {
        // Keys of free-form pools are usernames or emails; scans match them by username.
        key_mode = KeyMode::Username;
    }
    let plan = status::plan(&targets, &known, &pool, &common.quotas, args.all);
    tracing::info!(
        "refreshing {} providers by {:?} (estimated quota-seconds: per user {:.2}, scan {:.2}, pending scan {:.2})",
        if args.all {
            "all".to_string()
        } else {
            targets.len().to_string()
        },
        plan.refresh,
        plan.estimates["per_user"],
        plan.estimates["scan"],
        plan.estimates["pending_scan"]
    );
    let results = status::read(
        &calls,
        &pool,
        key_mode,
        plan.refresh,
        args.all,
        &mut targets,
        common.concurrency,
    )
    .await?;
    let now = Utc::now();
    status::record(
        opened.state,
        &pool.id,
        &targets,
        &results,
        &known,
        opened.run_id,
        now,
    )?;
    let known = opened.state.known(&pool.id)?;
    let (reissue, delivery, max_reissues) = config::run_defaults(file);
    let policy = Policy::new(reissue, delivery, max_reissues, &pool);
    let rows = status::rows(&targets, &results, &known, &policy, now);
    let mut report = status_report(opened, &pool, &calls.exec, common, plan, rows)?;
    if let Some(on) = &on_confirmed {
        let seen = report
            .rows
            .iter()
            .filter(|r| matches!(r.standing, Standing::Confirmed | Standing::NewlyConfirmed))
            .map(|r| (r.key.as_str(), r.username.as_deref(), r.email.as_deref()));
        let due = handover::due(&pool.id, seen, &known);
        report.handed_over = handover::hand_over(on, opened.state, &pool.id, due).await?;
    }
    let newly_path = opened.report_files.write_status(&report, opened.run_id)?;
    opened.state.confirmations_reported(
        &pool.id,
        &report
            .newly_confirmed
            .iter()
            .map(|r| r.key.clone())
            .collect::<Vec<_>>(),
        now,
    )?;
    report::log_status_end(&report, opened.report_files, &newly_path);
    match args.format {
        Some(StatusFormat::Table) => print!("{}", render::status_table(&report)),
        Some(StatusFormat::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        None => println!("{}", opened.report_files.json.display()),
    }
    let counts = serde_json::to_string(&report.summary).unwrap_or_default();
    if let Some(e) = calls.exec.fatal() {
        return Err(Error::Cognito(e.to_string()));
    }
    Ok((report.ending(cancel.is_cancelled()), counts))
}

/// `doctor`: for each provider, one verdict and the facts behind it, with the remedy. Reads
/// only; the state is not locked.
async fn doctor(common: &Common, file: &FileConfig, args: &DoctorArgs) -> Result<Ending, Error> {
    let started_at = Utc::now();
    let run_id = run_id();
    let pool_id = require_pool(common)?.to_string();
    let ids = doctor_ids(args, file)?;
    // Only --fix writes, so only --fix takes the lock.
    let delivery = args
        .fix
        .then(|| config::delivery(args.send.delivery, args.send.password_file.as_deref(), file))
        .transpose()?;
    let access = if args.fix {
        Access::Write
    } else {
        Access::Read
    };
    let state = Arc::new(State::open(&common.state_path, access)?);
    let report_files = ReportFiles::open(&common.report_dir, &run_id)?;
    let password_file = match delivery {
        Some(_) => PasswordFile::for_run(args.send.password_file.as_deref(), false)?,
        None => None,
    };
    if args.fix {
        state.begin_run(&run_id, &pool_id, "doctor", None, started_at)?;
    }
    let result = async {
        let (calls, _) = connect(common, &pool_id, probe(common)).await?;
        let calls = Arc::new(calls);
        let pool = describe_pool(&calls).await?;
        let facts = help::PoolFacts::new(
            &pool,
            help::budget_now(&pool, file.email_budget, &state, started_at)?,
        );
        let mut providers = examine_all(&calls, &pool, &facts, &state, &ids).await?;
        let mut fixes = Vec::new();
        if let Some(delivery) = delivery {
            let known = state.known(&pool.id)?;
            let mut rows = Vec::new();
            for (line, p) in (1..).zip(&providers) {
                if p.fixable() {
                    let (user, key) = help::find(&calls, &known, &p.id).await?;
                    if let Some(user) = user {
                        rows.push(help::row(line, &p.id, &user, key, &pool));
                    }
                }
            }
            if !rows.is_empty() {
                check_invitation(&pool, delivery)?;
                let (reissue, _, max_reissues) = config::run_defaults(file);
                let policy = Policy::new(reissue, delivery, max_reissues, &pool);
                fixes = carry_out(
                    common,
                    &calls,
                    &pool,
                    &state,
                    &run_id,
                    policy,
                    file,
                    password_file,
                    rows,
                )
                .await?
                .0;
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
            calls: calls.exec.calls_by_name(),
            providers,
            fixes,
        };
        report_files.write_with(
            &|f| {
                serde_json::to_writer_pretty(&mut *f, &report).map_err(std::io::Error::other)?;
                std::io::Write::write_all(f, b"\n")
            },
            &|f| report::write_doctor_csv(&mut *f, &report.providers),
        )?;
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
    for id in ids {
        out.push(help::examine(calls, pool, facts, state, &known, id, Utc::now()).await?);
    }
    Ok(out)
}

/// `reissue`: a new invitation now for each provider still in `FORCE_CHANGE_PASSWORD`, sent
/// exactly as `run` sends one (budget, write-ahead intent, state, report), whatever the expiry
/// or `--max-reissues`: an operator asked. Anyone else is refused with the reason.
async fn reissue(common: &Common, file: &FileConfig, args: &ReissueArgs) -> Result<Ending, Error> {
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
        let (calls, cancel) = connect(common, pool_id, probe(common)).await?;
        let calls = Arc::new(calls);
        cancel.on_signals(Ending::Interrupted.exit_code());
        let pool = describe_pool(&calls).await?;
        check_invitation(&pool, delivery)?;
        let known = state.known(&pool.id)?;
        let mut refused = Vec::new();
        let mut rows = Vec::new();
        for (line, id) in (1..).zip(&args.ids) {
            match help::find(&calls, &known, id).await? {
                (Some(user), key) if user.status == UserStatus::ForceChangePassword => {
                    rows.push(help::row(line, id, &user, key, &pool));
                }
                (user, _) => refused.push(help::refused(line, id, user.as_ref())),
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
        report::log_end(&report, report_files);
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
        let state = Arc::new(State::open(&common.state_path, Access::Write)?);
        let report_files = ReportFiles::open(&common.report_dir, &run_id)?;
        let password_file = PasswordFile::for_run(send.password_file.as_deref(), false)?;
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
async fn reset(common: &Common, file: &FileConfig, args: &ResetArgs) -> Result<Ending, Error> {
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
        let (calls, cancel) = connect(common, pool_id, probe(common)).await?;
        let calls = Arc::new(calls);
        cancel.on_signals(Ending::Interrupted.exit_code());
        let pool = describe_pool(&calls).await?;
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
        for (line, id) in (1..).zip(&args.ids) {
            let (user, _) = help::find(&calls, &known, id).await?;
            reports.push(match user {
                Some(user) => {
                    let r = RowReport::new(
                        line,
                        id.clone(),
                        user.email.clone(),
                        report::Outcome::Skipped,
                    );
                    ctx.reset(r, &user, args.temporary).await
                }
                None => help::refused(line, id, None),
            });
        }
        let report = run_report(&opened, ("reset", false), &calls.exec, &ctx.budget, reports)?;
        report_files.write(&report)?;
        report::log_end(&report, report_files);
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

// ---- the steps ----

/// The providers `doctor` examines: the IDs given, or the rows of `--input` (by username where
/// the CSV has one, else by email).
fn doctor_ids(args: &DoctorArgs, file: &FileConfig) -> Result<Vec<String>, Error> {
    let mut ids = args.ids.clone();
    if let Some(path) = &args.input {
        let reader = input::open(path, config::input_encoding(&args.input_args, file))?;
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
    state.finish_run(run_id, Utc::now(), error::exit_code(&ending), &counts)?;
    ending
}

/// Which categories ask Cognito for their quota: all but those the settings file sets.
fn probe(common: &Common) -> Probe {
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
async fn connect(
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

/// Stops a run whose invitations could not arrive; warns about what else the template check
/// found (a trigger that may replace the message, another validity than the pool's).
fn check_invitation(pool: &PoolInfo, delivery: Delivery) -> Result<(), Error> {
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
async fn send_quota<D: Directory>(
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
async fn describe_pool<D: Directory>(calls: &Calls<D>) -> Result<PoolInfo, Error> {
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
fn run_report(
    opened: &Opened<'_>,
    (command, dry_run): (&str, bool),
    exec: &Executor,
    budget: &Budget,
    rows: Vec<RowReport>,
) -> Result<Report, Error> {
    let budget_deferred = rows
        .iter()
        .any(|r| r.deferral.is_some_and(|d| d.is_budget()));
    let email_budget_frees_at = if budget_deferred {
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
        interrupted: exec.cancel.is_cancelled(),
        summary: report::summarize(&rows),
        calls: exec.calls_by_name(),
        throttles: exec.throttles_by_name(),
        email_budget_frees_at,
        rows,
        handed_over: Vec::new(),
    })
}

/// The status report from its rows and what the executor counted.
fn status_report(
    opened: &Opened<'_>,
    pool: &PoolInfo,
    exec: &Executor,
    common: &Common,
    plan: status::Plan,
    rows: Vec<standing::StatusRow>,
) -> Result<StatusReport, Error> {
    let calls = exec.calls();
    let quota_seconds = calls
        .iter()
        .map(|(c, n)| lookup::quota_seconds(*n, common.quotas.get(*c)))
        .filter(|q| q.is_finite())
        .sum::<f64>();
    Ok(StatusReport {
        run_id: opened.run_id.to_string(),
        command: "status",
        started_at: opened.started_at,
        finished_at: Utc::now(),
        user_pool_id: pool.id.clone(),
        previous_status_at: opened.state.last_status_run(&pool.id)?,
        refresh: plan.refresh,
        estimated_quota_seconds: plan.estimates,
        quota_seconds: (quota_seconds * 1000.0).round() / 1000.0,
        calls: exec.calls_by_name(),
        summary: standing::summarize(&rows),
        funnel: standing::funnel(&rows),
        newly_confirmed: rows
            .iter()
            .filter(|r| r.standing == Standing::NewlyConfirmed)
            .cloned()
            .collect(),
        rows,
        handed_over: Vec::new(),
    })
}
