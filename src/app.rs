//! The runbook: `check`, `run` and `status` as named steps in order (the help desk's commands
//! are `desk`'s, what every command opens is `session`'s), and the one place a command's result
//! becomes an exit code. Settings are merged and the runtime is built here. Must not hold the
//! steps themselves: each lives in the module named for what it owns.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use chrono::Utc;

use crate::budget::{Budget, Caps};
use crate::calls::Probe;
use crate::cli::{CheckArgs, Cli, Command, StatusArgs, StatusFormat};
use crate::cognito::{Delivery, UsernameMode};
use crate::cohort::{self, Reader};
use crate::config::{self, Common, FileConfig, RunSettings};
use crate::desk::{doctor, reissue, reset};
use crate::error::{self, Ending, Error};
use crate::handover;
use crate::input::{self, ColumnRules, KeyMode, Record};
use crate::invite;
use crate::logging;
use crate::lookup;
use crate::onboard::{self, Ctx};
use crate::password_file::PasswordFile;
use crate::plan::{self, Policy};
use crate::report::files::ReportFiles;
use crate::report::sink::{Sink, Tally};
use crate::report::terminal as render;
use crate::report::{self, terminal as report_log};
use crate::session::{
    Opened, check_invitation, connect, finish, open_pool, report_of, require_pool, run_id,
    send_quota, status_report,
};
use crate::standing::Standing;
use crate::state::{self, Access, State};
use crate::status;

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> u8 {
    // Generated from the command line's definition alone: no settings, no AWS, no state.
    match &cli.command {
        Command::Completions(a) => {
            crate::manual::completions(a.shell, &mut std::io::stdout());
            return error::exit::OK;
        }
        Command::Man => {
            return match crate::manual::man_page(&mut std::io::stdout()) {
                Ok(()) => error::exit::OK,
                Err(e) => fail_early(Error::io(
                    "cannot write the man page",
                    std::path::Path::new("-"),
                    e,
                )),
            };
        }
        _ => {}
    }
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
        Command::Check(_) | Command::State(_) | Command::Completions(_) | Command::Man => {
            (None, None, None)
        }
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
            Command::State(cmd) => state_command(&common, cmd),
            Command::Completions(_) | Command::Man => {
                unreachable!("answered before the settings are read")
            }
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
            &config::input_options(&args.input_args, file),
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
            print!("{}", render::pool(&pool, delivery, &findings));
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
        render::input(&shown, reader.describe(), reader.columns())
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

/// `state init|export|import`: the state's own table, and moving a state between stores.
fn state_command(common: &Common, cmd: &crate::cli::StateCommand) -> Result<Ending, Error> {
    use crate::cli::StateCommand;
    let state::Location::Dynamo(table) = &common.state else {
        return Err(Error::Config(format!(
            "state {}: --state must be dynamodb://TABLE (the file is the other side of export \
             and import; an SQLite file needs no init)",
            match cmd {
                StateCommand::Init => "init",
                StateCommand::Export(_) => "export",
                StateCommand::Import(_) => "import",
            }
        )));
    };
    let said = match cmd {
        StateCommand::Init => state::init_table(table)?,
        StateCommand::Export(f) => state::export(table, &f.file)?,
        StateCommand::Import(f) => state::import(&f.file, table)?,
    };
    tracing::info!("{said}");
    println!("{said}");
    Ok(Ending::Settled)
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
    let state = Arc::new(State::open(&common.state, access)?);
    let reader = input::open(&settings.input, &settings.input_options)?;
    tracing::info!(
        "reading {} ({})",
        settings.input.display(),
        reader.describe()
    );
    let input_hash = state::file_sha256(&settings.input)
        .map_err(|e| Error::io("cannot read", &settings.input, e))?;
    let report_files = ReportFiles::open_with_page(&common.report_dir, &run_id)?;
    let password_file =
        PasswordFile::for_run(settings.password_file.as_deref(), settings.dry_run, &state)?;
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
        // A run that stopped before it did anything leaves no empty report behind (nor does a
        // status, below).
        report_files.discard_if_empty();
        if let Some(path) = &settings.password_file {
            PasswordFile::discard_if_empty(path);
        }
    }
    finish(&state, &run_id, result)
}

/// The run proper: pool, a first pass over the file (groups, counts, what to read), lookups,
/// then the rows streamed from a second pass, each reported as it finishes. Returns how it
/// ended and the counts.
async fn onboard_cohort(
    common: &Common,
    settings: &RunSettings,
    opened: &Opened<'_>,
    reader: Reader,
    password_file: Option<PasswordFile>,
) -> Result<(Ending, String), Error> {
    let (calls, pool) = open_pool(common, opened.pool_id).await?;
    check_invitation(&pool, settings.delivery)?;
    let (key_mode, rules) = cohort::rules_for(&pool, reader.columns())?;
    let columns = reader.columns().to_vec();
    let known = opened.state.known(&pool.id)?;
    let survey = cohort::survey(
        cohort::stream(reader, key_mode, &rules, settings.delivery)?,
        pool.username_mode,
        &rereading(settings, &known, opened.started_at),
        settings.update.groups,
    )?;
    cohort::check_groups(&calls, &survey.groups).await?;
    tracing::info!(
        "{} valid rows, {} invalid; {} confirmed and unchanged, not re-read (--refresh {})",
        survey.valid,
        survey.invalid,
        survey.not_reread,
        match settings.refresh {
            plan::Refresh::Auto => "auto",
            plan::Refresh::Full => "full",
        }
    );
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
        survey.to_read as usize,
        opened.started_at,
    )?;
    let policy = Policy::new(
        settings.reissue,
        settings.delivery,
        settings.max_reissues,
        &pool,
    )
    .updating(
        settings.update,
        &pool,
        input::attribute_columns(&columns),
        survey.managed,
    );
    let found = lookup::find(
        &calls,
        &pool,
        key_mode,
        settings.lookup,
        &lookup::ToRead {
            rows: survey.to_read,
            pending: survey.pending,
            names: &survey.names,
            attributes: settings.update.attributes,
        },
    )
    .await?;
    drop(survey.names);
    let memberships = (!survey.memberships.is_empty())
        .then(|| lookup::spawn_memberships(Arc::clone(&calls), survey.memberships));
    let ctx = Ctx {
        calls: Arc::clone(&calls),
        policy,
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
    let command = ("run", settings.dry_run);
    let keep_confirmed = settings.on_confirmed.is_some() && !settings.dry_run;
    let head = report_of(
        opened,
        command,
        &calls.exec,
        &ctx.budget,
        &Tally::new(false),
    )?;
    let mut sink = Sink::start(opened.report_files, &head, keep_confirmed)?;
    // The second pass: the same rows, now processed and reported one by one.
    let stream_error = std::cell::RefCell::new(None);
    let items = {
        let rereading = rereading(settings, &ctx.known, opened.started_at);
        let stream_error = &stream_error;
        cohort::stream(
            input::open(&settings.input, &settings.input_options)?,
            key_mode,
            &rules,
            settings.delivery,
        )?
        .map_while(move |row| match row {
            Ok(Ok(row)) => Some(match rereading.not_reread(&row) {
                Some(r) => onboard::Item::Reported(r),
                None => onboard::Item::Process(row),
            }),
            Ok(Err(reject)) => Some(onboard::Item::Reported(cohort::invalid_row(&reject))),
            Err(e) => {
                stream_error.borrow_mut().get_or_insert(e);
                None
            }
        })
    };
    let total = survey.valid + survey.invalid;
    onboard::process_stream(
        &ctx,
        items,
        total,
        common.concurrency,
        common.progress,
        |seq, r| sink.push(seq, r),
    )
    .await;
    if sink.tally.rows != total {
        tracing::warn!(
            "{} changed during the run: {total} rows at the start, {} now",
            settings.input.display(),
            sink.tally.rows
        );
    }
    let mut report = report_of(opened, command, &calls.exec, &ctx.budget, &sink.tally)?;
    let update = ctx.policy.update_mode();
    report.update = ctx.policy.update.is_some().then(|| update.label());
    if let (Some(on), Some(confirmed)) = (&settings.on_confirmed, &sink.tally.confirmed) {
        let known = opened.state.known(&ctx.pool.id)?;
        let seen = confirmed
            .iter()
            .map(|(k, u, e)| (k.as_str(), u.as_deref(), e.as_deref()));
        let due = handover::due(&ctx.pool.id, seen, &known);
        report.handed_over = handover::hand_over(on, opened.state, &ctx.pool.id, due).await?;
    }
    let failed = std::mem::take(&mut sink.tally.failed);
    sink.finish(&report)?;
    report_log::log_end_with(&report, &failed, opened.report_files);
    println!("{}", opened.report_files.json.display());
    let counts = serde_json::to_string(&report.summary).unwrap_or_default();
    if let Some(e) = stream_error.into_inner() {
        return Err(e);
    }
    if let Some(e) = calls.exec.fatal() {
        return Err(Error::Cognito(e.to_string()));
    }
    Ok((report::ending(&report.summary, report.interrupted), counts))
}

/// How this run decides which rows to read again.
fn rereading<'a>(
    settings: &RunSettings,
    known: &'a std::collections::HashMap<String, state::Known>,
    now: chrono::DateTime<Utc>,
) -> cohort::Rereading<'a> {
    cohort::Rereading {
        known,
        label: settings.update.label(),
        refresh: settings.refresh,
        refresh_after: settings.refresh_after,
        now,
    }
}

/// `status`: refresh where every provider stands by the cheapest reads, record what changed,
/// and report each provider's standing (what `run` would do now).
async fn status(common: &Common, file: &FileConfig, args: &StatusArgs) -> Result<Ending, Error> {
    let started_at = Utc::now();
    let run_id = run_id();
    let pool_id = require_pool(common)?.to_string();
    let state = Arc::new(State::open(&common.state, Access::Write)?);
    let reader = match &args.input {
        Some(path) => Some(input::open(
            path,
            &config::input_options(&args.input_args, file),
        )?),
        None => None,
    };
    let input_hash = match &args.input {
        Some(path) => {
            Some(state::file_sha256(path).map_err(|e| Error::io("cannot read", path, e))?)
        }
        None => None,
    };
    let report_files = ReportFiles::open_with_page(&common.report_dir, &run_id)?;
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
    if result.is_err() {
        report_files.discard_if_empty();
    }
    finish(&state, &run_id, result)
}

async fn refresh_status(
    common: &Common,
    file: &FileConfig,
    args: &StatusArgs,
    opened: &Opened<'_>,
    reader: Option<Reader>,
) -> Result<(Ending, String), Error> {
    let on_confirmed = config::on_confirmed(&args.hand_over, file)?;
    let (calls, pool) = open_pool(common, opened.pool_id).await?;
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
    // What was just recorded (confirmations, transitions) is read back; the first copy goes
    // first, so that two are never held at once.
    drop(known);
    let known = opened.state.known(&pool.id)?;
    let (reissue, delivery, max_reissues) = config::run_defaults(file);
    let policy = Policy::new(reissue, delivery, max_reissues, &pool);
    let rows = status::rows(targets, results, &known, &policy, now);
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
    report_log::log_status_end(&report, opened.report_files, &newly_path);
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
    Ok((report.ending(calls.exec.cancel.is_cancelled()), counts))
}
