//! The runbook: each command as named steps in order. Settings are merged here, the runtime is
//! built here, and run-level errors are turned into exit codes here.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;

use crate::cli::{
    CheckArgs, Cli, Command, Delivery, Lookup as LookupChoice, RunArgs, StatusArgs, StatusFormat,
};
use crate::cognito::{Cognito, PoolInfo, RemoteUser, UsernameMode};
use crate::config::{self, Common, FileConfig, RunSettings};
use crate::error::{Error, exit};
use crate::executor::{Cancel, Executor, RetryPolicy};
use crate::input::{self, ColumnRules, KeyMode, Record, Reject, Row};
use crate::limiter::{Category, Limiter, Op, QuotaSource, Quotas};
use crate::logging::{self, Progress};
use crate::onboard::{Budget, Ctx, Lookup, Memberships, PasswordFile};
use crate::plan;
use crate::report::{self, Outcome, Report, ReportFiles, RowReport};
use crate::state::{self, Access, State};
use crate::status::{self, Refresh, Standing, StatusReport, StatusRow};

/// Cognito's own email sender allows this many emails a day per account.
pub const COGNITO_DEFAULT_DAILY_EMAILS: u32 = 50;

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> u8 {
    let file = match config::file_config(&cli.global) {
        Ok(f) => f,
        Err(e) => return fail_early(&e),
    };
    let tty = std::io::stderr().is_terminal();
    let (rate_fraction, concurrency, report_dir) = match &cli.command {
        Command::Run(a) => (a.rate_fraction, a.concurrency, a.report_dir.as_deref()),
        Command::Status(a) => (None, None, a.report_dir.as_deref()),
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
        Err(e) => return fail_early(&e),
    };
    logging::init(common.log_format, common.verbosity, common.progress);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail_early(&Error::Config(format!(
                "cannot start the async runtime: {e}"
            )));
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Check(args) => check(&common, &file, args).await,
            Command::Run(args) => {
                let settings = config::run(args, &file)?;
                run(&common, &settings, args).await
            }
            Command::Status(args) => status(&common, &file, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

fn fail_early(e: &Error) -> u8 {
    eprintln!("error: {e}");
    e.exit_code()
}

fn require_pool(common: &Common) -> Result<&str, Error> {
    common.pool_id.as_deref().ok_or_else(|| {
        Error::Config("no user pool: pass --user-pool-id or set COGNITO_USER_POOL_ID".into())
    })
}

/// Builds the limiter: the documented quotas, replaced by what Cognito reports for this account
/// where it answers, replaced by the settings file where the operator says so.
async fn limiter_for(common: &Common, cognito: &Cognito, used: &[Category]) -> Limiter {
    let mut quotas = Quotas::default();
    let probe = Limiter::new(&quotas, common.rate_fraction);
    if common.use_provisioned_limits {
        for category in used {
            if common.quotas.per_category.get(category).map(|(_, s)| *s)
                == Some(QuotaSource::ConfigFile)
            {
                continue;
            }
            probe.acquire(Op::GetProvisionedLimit.category()).await;
            match cognito.provisioned_limit(*category).await {
                Ok(rate) => {
                    tracing::debug!(category = category.name(), rate, "provisioned limit");
                    quotas.set(*category, rate, QuotaSource::Provisioned);
                }
                Err(e) => {
                    tracing::debug!(
                        "GetProvisionedLimit not answered ({e}); using the documented quotas"
                    );
                    break;
                }
            }
        }
    }
    for (category, (rate, source)) in &common.quotas.per_category {
        if *source == QuotaSource::ConfigFile {
            quotas.set(*category, *rate, *source);
        }
    }
    let limiter = Limiter::new(&quotas, common.rate_fraction);
    for c in used {
        tracing::debug!(
            category = c.name(),
            quota = quotas.get(*c),
            rate = limiter.current_rate(*c),
            "limiter"
        );
    }
    limiter
}

/// Attempts for the first call of a command: it doubles as the connectivity check, so a wrong
/// endpoint or a network outage is reported in seconds rather than after the full retry schedule.
const PROBE_ATTEMPTS: u32 = 3;

/// The retry layer with the run's settings.
fn executor(common: &Common, limiter: Arc<Limiter>, cancel: Arc<Cancel>) -> Executor {
    Executor::new(
        limiter,
        RetryPolicy {
            max_attempts: common.max_attempts,
            ..RetryPolicy::default()
        },
        cancel,
    )
}

/// Reads the pool's settings (DescribeUserPool).
async fn describe_pool(exec: &Executor, cognito: &Cognito) -> Result<PoolInfo, Error> {
    exec.call_with_attempts(
        Op::DescribeUserPool,
        PROBE_ATTEMPTS.min(exec.retry.max_attempts),
        || cognito.describe_pool(),
    )
    .await
    .map(|d| d.value)
    .map_err(|f| Error::Cognito(f.error.to_string()))
}

/// How rows are keyed in this pool, and the column rules from its schema.
fn rules_for(pool: &PoolInfo, columns: &[String]) -> Result<(KeyMode, ColumnRules), Error> {
    let has_username = columns.iter().any(|c| c == "username");
    let key_mode = match pool.username_mode {
        UsernameMode::Email => {
            if has_username {
                tracing::warn!(
                    "the pool uses email as the username; the username column is ignored"
                );
            }
            KeyMode::Email
        }
        UsernameMode::FreeForm if has_username => KeyMode::Username,
        UsernameMode::FreeForm => KeyMode::Email,
        UsernameMode::FreeFormEmailAlias => KeyMode::Username,
        UsernameMode::PhoneOnly => {
            return Err(Error::Config(format!(
                "pool {} uses phone numbers as usernames, which this tool does not support",
                pool.id
            )));
        }
    };
    let rules = ColumnRules {
        writable: Some(pool.writable_attributes()),
        required: pool
            .schema
            .iter()
            .filter(|(n, a)| a.required && n.as_str() != "email")
            .map(|(n, _)| n.clone())
            .collect(),
        max_len: pool
            .schema
            .iter()
            .filter_map(|(n, a)| a.max_length.map(|m| (n.clone(), m)))
            .collect(),
        email_usernames: pool.username_mode == UsernameMode::FreeForm,
    };
    Ok((key_mode, rules))
}

fn invalid_row(reject: &Reject) -> RowReport {
    let mut r = RowReport::new(
        reject.line,
        reject.key.clone().unwrap_or_default(),
        reject.email.clone(),
        Outcome::Invalid,
    );
    r.action = "none".into();
    r.reason = match &reject.column {
        Some(c) => format!("line {}, column {c}: {}", reject.line, reject.reason),
        None => format!("line {}: {}", reject.line, reject.reason),
    };
    r
}

/// Reads the whole CSV into valid rows and rejects.
fn read_cohort(
    reader: input::CohortReader<Box<dyn std::io::Read + Send>>,
    key_mode: KeyMode,
    rules: &ColumnRules,
    delivery: Delivery,
) -> Result<(Vec<Row>, Vec<Reject>), Error> {
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for record in reader.records(key_mode, rules)? {
        match record? {
            Record::Valid(row) => {
                if delivery == Delivery::Sms
                    && !row.attributes.iter().any(|(n, _)| n == "phone_number")
                {
                    rejects.push(Reject {
                        line: row.line,
                        column: Some("phone_number".into()),
                        key: Some(row.key.clone()),
                        email: Some(row.email.clone()),
                        reason: "--delivery sms needs a phone number".into(),
                    });
                } else {
                    rows.push(row);
                }
            }
            Record::Invalid(reject) => rejects.push(reject),
        }
    }
    Ok((rows, rejects))
}

/// Every page of a paginated listing, through the retry layer.
async fn all_pages<T, F, Fut>(exec: &Executor, op: Op, mut page: F) -> Result<Vec<T>, Error>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), crate::cognito::CallError>>,
{
    let mut out = Vec::new();
    let mut next = None;
    loop {
        let token = next.clone();
        let done = exec
            .call(op, || page(token.clone()))
            .await
            .map_err(|f| Error::Cognito(f.error.to_string()))?;
        let (items, token) = done.value;
        out.extend(items);
        match token {
            Some(t) if !t.is_empty() => next = Some(t),
            _ => return Ok(out),
        }
    }
}

/// Where the cohort names a group: the first few lines, and how many rows in all.
#[derive(Debug, Default)]
struct GroupUse {
    lines: Vec<u64>,
    rows: usize,
}

/// Records the groups of one row (constant memory per group, for `check` on huge files).
fn note_groups(uses: &mut BTreeMap<String, GroupUse>, row: &Row) {
    for g in &row.groups {
        let u = uses.entry(g.clone()).or_default();
        u.rows += 1;
        if u.lines.len() < 5 {
            u.lines.push(row.line);
        }
    }
}

fn group_uses(rows: &[Row]) -> BTreeMap<String, GroupUse> {
    let mut uses = BTreeMap::new();
    for row in rows {
        note_groups(&mut uses, row);
    }
    uses
}

/// Checks that every group the cohort names exists in the pool; the error names each missing
/// group with the lines that use it.
async fn check_groups(
    exec: &Executor,
    cognito: &Cognito,
    wanted: &BTreeMap<String, GroupUse>,
) -> Result<(), Error> {
    if wanted.is_empty() {
        return Ok(());
    }
    let existing: HashSet<String> = all_pages(exec, Op::ListGroups, |next| async {
        cognito.list_groups(next).await.map(|p| (p.names, p.next))
    })
    .await?
    .into_iter()
    .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(g, _)| !existing.contains(g.as_str()))
        .map(|(g, uses)| {
            let shown: Vec<String> = uses.lines.iter().map(u64::to_string).collect();
            let more = if uses.rows > uses.lines.len() {
                format!(" and {} more", uses.rows - uses.lines.len())
            } else {
                String::new()
            };
            let s = if uses.rows == 1 { "" } else { "s" };
            format!("{g} (line{s} {}{more}, column groups)", shown.join(", "))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut have: Vec<&String> = existing.iter().collect();
    have.sort();
    Err(Error::Config(format!(
        "groups not in pool {}: {}; the pool has: {}",
        cognito.pool_id(),
        missing.join(", "),
        if have.is_empty() {
            "no groups".to_string()
        } else {
            have.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    )))
}

/// The key a scanned user is matched to rows by.
fn scan_key(mode: UsernameMode, key_mode: KeyMode, user: &RemoteUser) -> Option<String> {
    match (mode, key_mode) {
        (UsernameMode::Email, _) => user.email.clone(),
        _ => Some(user.username.to_lowercase()),
    }
}

/// Every user of the pool. Large pools are read in parallel parts by the first hex digit of
/// `sub`, so the scan runs at the UserList quota rather than at one page per round trip.
async fn list_all_users(
    exec: &Arc<Executor>,
    cognito: &Cognito,
    pool_users: u64,
) -> Result<Vec<RemoteUser>, Error> {
    let pages = |filter: Option<String>| {
        let exec = Arc::clone(exec);
        let cognito = cognito.clone();
        async move {
            all_pages(&exec, Op::ListUsers, |next| {
                let cognito = cognito.clone();
                let filter = filter.clone();
                async move {
                    cognito
                        .list_users(filter.as_deref(), next)
                        .await
                        .map(|p| (p.users, p.next))
                }
            })
            .await
        }
    };
    if pool_users.div_ceil(60) < plan::PARTITION_FROM_PAGES {
        return pages(None).await;
    }
    let mut parts = tokio::task::JoinSet::new();
    for digit in "0123456789abcdef".chars() {
        parts.spawn(pages(Some(format!("sub ^= \"{digit}\""))));
    }
    let mut users = Vec::with_capacity(pool_users as usize);
    while let Some(part) = parts.join_next().await {
        match part {
            Ok(Ok(found)) => users.extend(found),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(Error::Cognito(format!("a scan task stopped: {e}"))),
        }
    }
    Ok(users)
}

async fn scan_users(
    exec: &Arc<Executor>,
    cognito: &Cognito,
    pool: &PoolInfo,
    key_mode: KeyMode,
    rows: &[Row],
) -> Result<BTreeMap<String, RemoteUser>, Error> {
    let wanted: HashSet<String> = rows.iter().map(|r| r.key.to_lowercase()).collect();
    let users = list_all_users(exec, cognito, pool.estimated_users).await?;
    Ok(users
        .into_iter()
        .filter_map(|u| scan_key(pool.username_mode, key_mode, &u).map(|k| (k, u)))
        .filter(|(k, _)| wanted.contains(k))
        .collect())
}

/// Reads the members of every group the cohort names, in the background.
fn spawn_memberships(
    exec: Arc<Executor>,
    cognito: Cognito,
    groups: BTreeSet<String>,
) -> watch::Receiver<Option<Arc<Memberships>>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut out = Memberships::new();
        for group in groups {
            let members = all_pages(&exec, Op::ListUsersInGroup, |next| {
                let cognito = cognito.clone();
                let group = group.clone();
                async move {
                    cognito
                        .list_users_in_group(&group, next)
                        .await
                        .map(|p| (p.names, p.next))
                }
            })
            .await;
            match members {
                Ok(names) => {
                    out.insert(group, names.into_iter().map(|n| n.to_lowercase()).collect());
                }
                Err(e) => {
                    // Adding a user to a group they are in is harmless: without the list, every
                    // existing user is simply added again.
                    tracing::warn!("could not list the members of group {group}: {e}");
                }
            }
        }
        let _ = tx.send(Some(Arc::new(out)));
    });
    rx
}

/// Which lookup costs fewer quota-seconds for this cohort: one AdminGetUser per row, or a
/// ListUsers scan of the whole pool (60 users a page).
pub fn choose_lookup(
    choice: LookupChoice,
    cohort: usize,
    pool_users: u64,
    quotas: &Limiter,
) -> LookupChoice {
    match choice {
        LookupChoice::Get | LookupChoice::Scan => choice,
        LookupChoice::Auto => {
            let get = plan::quota_seconds(cohort as u64, quotas.current_rate(Category::UserRead));
            let scan = plan::quota_seconds(
                plan::scan_calls(pool_users),
                quotas.current_rate(Category::UserList),
            );
            if scan < get {
                LookupChoice::Scan
            } else {
                LookupChoice::Get
            }
        }
    }
}

fn run_id() -> String {
    use rand::RngExt;
    let suffix: u16 = rand::rng().random();
    format!("{}-{suffix:04x}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// Ctrl-C and SIGTERM stop the run gracefully; a second signal exits at once.
fn watch_signals(cancel: Arc<Cancel>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::pin!(term);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = &mut term => {}
        }
        tracing::warn!(
            "stopping: finishing the rows in flight, then writing the report (signal again to quit at once)"
        );
        cancel.cancel();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = &mut term => {}
        }
        std::process::exit(i32::from(exit::ABORTED));
    });
}

async fn run(common: &Common, settings: &RunSettings, _args: &RunArgs) -> Result<u8, Error> {
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
    let password_file = match (&settings.password_file, settings.dry_run) {
        (Some(path), false) => Some(PasswordFile::create(path)?),
        (Some(path), true) if path.exists() => {
            return Err(Error::Config(format!(
                "refusing to overwrite the password file {}",
                path.display()
            )));
        }
        _ => None,
    };
    state.begin_run(
        &run_id,
        &pool_id,
        "run",
        Some((&settings.input, &input_hash)),
        started_at,
    )?;
    let result = onboard_cohort(
        common,
        settings,
        OpenRun {
            run_id: run_id.clone(),
            pool_id,
            started_at,
            reader,
            report_files: &report_files,
            password_file,
            state: Arc::clone(&state),
        },
    )
    .await;
    if result.is_err() {
        // A run that stopped before it did anything leaves no empty report behind.
        report_files.discard_if_empty();
        if let Some(path) = &settings.password_file {
            discard_password_file(path);
        }
    }
    let (code, counts) = match &result {
        Ok((code, counts)) => (*code, counts.clone()),
        Err(e) => (e.exit_code(), String::new()),
    };
    state.finish_run(&run_id, Utc::now(), code, &counts)?;
    result.map(|(code, _)| code)
}

/// What `run` has opened before it talks to Cognito.
struct OpenRun<'a> {
    run_id: String,
    pool_id: String,
    started_at: chrono::DateTime<Utc>,
    reader: input::CohortReader<Box<dyn std::io::Read + Send>>,
    report_files: &'a ReportFiles,
    password_file: Option<PasswordFile>,
    state: Arc<State>,
}

/// The run proper: pool, cohort, lookups, rows, report. Returns the exit code and the counts.
async fn onboard_cohort(
    common: &Common,
    settings: &RunSettings,
    open: OpenRun<'_>,
) -> Result<(u8, String), Error> {
    let OpenRun {
        run_id,
        pool_id,
        started_at,
        reader,
        report_files,
        password_file,
        state,
    } = open;
    let cognito = Cognito::connect(&common.connection, &pool_id).await?;
    let cancel = Arc::new(Cancel::default());
    watch_signals(Arc::clone(&cancel));
    let used = [
        Category::UserCreation,
        Category::UserRead,
        Category::UserList,
        Category::UserAccountRecovery,
        Category::UserUpdate,
        Category::UserResourceUpdate,
    ];
    let limiter = Arc::new(limiter_for(common, &cognito, &used).await);
    let exec = Arc::new(executor(common, Arc::clone(&limiter), Arc::clone(&cancel)));
    let pool = describe_pool(&exec, &cognito).await?;
    tracing::info!(
        "pool {} ({}): about {} users, temporary passwords valid {} days, email via {}",
        pool.id,
        pool.name,
        pool.estimated_users,
        pool.temporary_password_validity_days,
        pool.email_sending_account
    );
    let (key_mode, rules) = rules_for(&pool, reader.columns())?;
    let (rows, rejects) = read_cohort(reader, key_mode, &rules, settings.delivery)?;
    check_groups(&exec, &cognito, &group_uses(&rows)).await?;
    let budget = email_budget(&pool, settings, rows.len(), &state, started_at)?;
    let strategy = choose_lookup(settings.lookup, rows.len(), pool.estimated_users, &limiter);
    tracing::info!(
        "{} valid rows, {} invalid; looking users up with {}",
        rows.len(),
        rejects.len(),
        match strategy {
            LookupChoice::Scan => "a ListUsers scan",
            _ => "AdminGetUser per row",
        }
    );
    let lookup = match strategy {
        LookupChoice::Scan => {
            Lookup::Scanned(scan_users(&exec, &cognito, &pool, key_mode, &rows).await?)
        }
        _ => Lookup::PerRow,
    };
    let known = state.known(&pool.id)?;
    // Only groups the state does not already record as done for some row need their members read.
    let groups: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| {
            let done = known
                .get(&r.key)
                .map(|k| k.groups_done.as_slice())
                .unwrap_or(&[]);
            r.groups.iter().filter(move |g| !done.contains(g)).cloned()
        })
        .collect();
    let memberships =
        (!groups.is_empty()).then(|| spawn_memberships(Arc::clone(&exec), cognito.clone(), groups));
    let ctx = Arc::new(Ctx {
        cognito,
        exec: Arc::clone(&exec),
        policy: plan::Policy {
            reissue: settings.reissue,
            delivery: settings.delivery,
            validity: chrono::Duration::days(i64::from(pool.temporary_password_validity_days)),
            max_reissues: settings.max_reissues,
        },
        pool,
        dry_run: settings.dry_run,
        lookup,
        memberships,
        budget,
        password_file,
        state: Arc::clone(&state),
        run_id: run_id.clone(),
        known,
    });
    let mut reports: Vec<RowReport> = rejects.iter().map(invalid_row).collect();
    reports.extend(process_rows(&ctx, rows, common.concurrency, common.progress).await);
    reports.sort_by_key(|r| r.row);
    let interrupted = cancel.is_cancelled();
    let fatal = exec.fatal();
    let calls = exec
        .calls()
        .into_iter()
        .map(|(c, n)| (c.name().to_string(), n))
        .collect();
    let throttles = limiter
        .stats()
        .into_iter()
        .filter(|(_, s)| s.throttles > 0)
        .map(|(c, s)| (c.name().to_string(), s.throttles))
        .collect();
    let budget_deferred = reports
        .iter()
        .any(|r| r.outcome == Outcome::Deferred && r.reason.contains("budget"));
    let frees_at = if budget_deferred {
        budget_frees_at(&state, settings.delivery, Utc::now())?
    } else {
        None
    };
    let report = Report {
        run_id: run_id.clone(),
        command: "run".into(),
        started_at,
        finished_at: Utc::now(),
        user_pool_id: pool_id,
        dry_run: settings.dry_run,
        interrupted,
        summary: report::summarize(&reports),
        calls,
        throttles,
        email_budget_frees_at: frees_at,
        rows: reports,
    };
    report_files.write(&report)?;
    for r in report.rows.iter().filter(|r| r.outcome == Outcome::Failed) {
        tracing::warn!("line {}: {} failed: {}", r.row, r.key, r.reason);
    }
    if let Some(at) = frees_at {
        tracing::info!(
            "{} invitations deferred by the email budget; it frees up from {}",
            report.summary["deferred"],
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    tracing::info!("{}", report::one_line(&report));
    tracing::info!(
        "report: {} and {}",
        report_files.json.display(),
        report_files.csv.display()
    );
    println!("{}", report_files.json.display());
    let counts = serde_json::to_string(&report.summary).unwrap_or_default();
    if let Some(e) = fatal {
        return Err(Error::Cognito(e.to_string()));
    }
    Ok((report::exit_code(&report.rows, interrupted), counts))
}

/// Removes a password file that holds no password (only its header line).
fn discard_password_file(path: &std::path::Path) {
    if std::fs::read(path).is_ok_and(|b| b == b"username,temporary_password\n") {
        let _ = std::fs::remove_file(path);
    }
}

/// How the state file names the medium of a delivery that sends messages.
fn message_medium(delivery: Delivery) -> Option<&'static str> {
    match delivery {
        Delivery::Email => Some("email"),
        Delivery::Sms => Some("sms"),
        Delivery::Suppress => None,
    }
}

/// The run's invitation budget: `--email-budget` (default 50 with Cognito's own email sender,
/// unlimited otherwise) per rolling 24 hours, less what earlier runs sent in that window.
fn email_budget(
    pool: &PoolInfo,
    settings: &RunSettings,
    rows: usize,
    state: &State,
    now: chrono::DateTime<Utc>,
) -> Result<Budget, Error> {
    let Some(medium) = message_medium(settings.delivery) else {
        return Ok(Budget::new(None));
    };
    let default = (settings.delivery == Delivery::Email && pool.uses_cognito_email())
        .then_some(COGNITO_DEFAULT_DAILY_EMAILS);
    let Some(limit) = settings.email_budget.or(default) else {
        return Ok(Budget::new(None));
    };
    let (used, _) = state.messages_since(now - chrono::Duration::hours(24), medium)?;
    let left = u64::from(limit).saturating_sub(used);
    tracing::info!(
        "{medium} budget: {limit} per 24 hours{}, {used} sent in the last 24 hours, {left} left",
        if default.is_some() && settings.email_budget.is_none() {
            " (Cognito's own sender, COGNITO_DEFAULT)"
        } else {
            ""
        }
    );
    if rows as u64 > left {
        tracing::warn!(
            "this cohort has {rows} rows and the budget allows {left} more invitations now: \
             the rest are deferred to later runs"
        );
    }
    Ok(Budget::new(Some(left)))
}

/// When the oldest invitation in the rolling window leaves it, freeing the budget.
fn budget_frees_at(
    state: &State,
    delivery: Delivery,
    now: chrono::DateTime<Utc>,
) -> Result<Option<chrono::DateTime<Utc>>, Error> {
    let Some(medium) = message_medium(delivery) else {
        return Ok(None);
    };
    let day = chrono::Duration::hours(24);
    Ok(state
        .message_times_since(now - day, medium)?
        .first()
        .map(|t| *t + day))
}

/// Runs the rows with bounded concurrency; rows not started when the run stops are deferred.
async fn process_rows(
    ctx: &Arc<Ctx>,
    rows: Vec<Row>,
    concurrency: usize,
    bar: bool,
) -> Vec<RowReport> {
    let progress = Progress::start("onboarding", rows.len() as u64, bar);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(rows.len());
    let mut not_started = Vec::new();
    let cancel = Arc::clone(&ctx.exec.cancel);
    let mut rows = rows.into_iter();
    for row in rows.by_ref() {
        let permit = tokio::select! {
            p = Arc::clone(&semaphore).acquire_owned() => p,
            _ = wait_cancelled(&cancel) => { not_started.push(row); break; }
        };
        let Ok(permit) = permit else {
            not_started.push(row);
            break;
        };
        if cancel.is_cancelled() {
            not_started.push(row);
            break;
        }
        while let Some(done) = tasks.try_join_next() {
            if let Ok(r) = done {
                progress.inc();
                out.push(r);
            }
        }
        let ctx = Arc::clone(ctx);
        tasks.spawn(async move {
            let r = ctx.process(row).await;
            drop(permit);
            r
        });
    }
    not_started.extend(rows);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(r) => {
                progress.inc();
                out.push(r);
            }
            Err(e) => tracing::error!("a row task stopped unexpectedly: {e}"),
        }
    }
    for row in not_started {
        let mut r = RowReport::new(row.line, row.key, Some(row.email), Outcome::Deferred);
        r.action = "none".into();
        r.reason = "not started: the run was stopped before this row".into();
        out.push(r);
    }
    out
}

async fn wait_cancelled(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        cancel.sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn check(common: &Common, file: &FileConfig, args: &CheckArgs) -> Result<u8, Error> {
    let encoding = config::input_encoding(&args.input_args, file);
    let reader = match &args.input {
        Some(path) => Some(input::open(path, encoding)?),
        None => None,
    };
    let mut key_mode = KeyMode::Email;
    let mut rules = ColumnRules::default();
    let mut pool_info = None;
    let mut cognito_parts = None;
    if let Some(pool_id) = &common.pool_id {
        let cognito = Cognito::connect(&common.connection, pool_id).await?;
        let limiter = Arc::new(Limiter::new(&common.quotas, common.rate_fraction));
        let exec = executor(common, limiter, Arc::new(Cancel::default()));
        let pool = describe_pool(&exec, &cognito).await?;
        println!("pool {} ({})", pool.id, pool.name);
        println!("  estimated users: {}", pool.estimated_users);
        println!("  username: {:?}", pool.username_mode);
        println!(
            "  password policy: at least {} characters{}{}{}{}",
            pool.policy.minimum_length,
            if pool.policy.require_uppercase {
                ", upper-case"
            } else {
                ""
            },
            if pool.policy.require_lowercase {
                ", lower-case"
            } else {
                ""
            },
            if pool.policy.require_numbers {
                ", digits"
            } else {
                ""
            },
            if pool.policy.require_symbols {
                ", symbols"
            } else {
                ""
            },
        );
        println!(
            "  temporary passwords valid: {} days",
            pool.temporary_password_validity_days
        );
        println!("  email sending account: {}", pool.email_sending_account);
        if let Some(r) = &reader {
            let (k, ru) = rules_for(&pool, r.columns())?;
            key_mode = k;
            rules = ru;
        }
        pool_info = Some(pool);
        cognito_parts = Some((cognito, exec));
    } else if let Some(r) = &reader
        && r.columns().iter().any(|c| c == "username")
    {
        key_mode = KeyMode::Username;
    }
    let Some(reader) = reader else {
        return Ok(exit::OK);
    };
    println!(
        "input: {} ({})",
        args.input
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        reader.encoding_name()
    );
    println!(
        "  columns: {}",
        reader
            .columns()
            .iter()
            .map(|c| c.escape_debug().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut valid = 0u64;
    let mut invalid = 0u64;
    let mut groups = BTreeMap::new();
    for record in reader.records(key_mode, &rules)? {
        match record? {
            Record::Valid(row) => {
                valid += 1;
                note_groups(&mut groups, &row);
            }
            Record::Invalid(reject) => {
                invalid += 1;
                println!("  {}", invalid_row(&reject).reason);
            }
        }
    }
    println!("  {valid} valid rows, {invalid} invalid");
    if let (Some((cognito, exec)), false) = (&cognito_parts, groups.is_empty()) {
        check_groups(exec, cognito, &groups).await?;
        println!("  every group exists in the pool");
    }
    if let Some(pool) = &pool_info
        && pool.uses_cognito_email()
        && valid > u64::from(COGNITO_DEFAULT_DAILY_EMAILS)
    {
        println!(
            "  warning: Cognito's own email sender allows {COGNITO_DEFAULT_DAILY_EMAILS} emails a day; up to {valid} invitations will take {} days",
            valid.div_ceil(u64::from(COGNITO_DEFAULT_DAILY_EMAILS))
        );
    }
    Ok(if invalid > 0 {
        exit::ROWS_FAILED
    } else {
        exit::OK
    })
}

/// One provider `status` refreshes: its key, and the name to read it by.
struct Target {
    key: String,
    username: String,
}

/// Reads each target with AdminGetUser, `concurrency` at a time.
async fn read_each(
    exec: &Arc<Executor>,
    cognito: &Cognito,
    targets: Vec<(String, String)>,
    concurrency: usize,
) -> BTreeMap<String, Result<Option<RemoteUser>, String>> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, username) in targets {
        let exec = Arc::clone(exec);
        let cognito = cognito.clone();
        let semaphore = Arc::clone(&semaphore);
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let got = exec
                .call(Op::AdminGetUser, || cognito.get_user(&username))
                .await
                .map(|d| d.value)
                .map_err(|f| f.error.to_string());
            (key, got)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((key, got)) = done {
            out.insert(key, got);
        }
    }
    out
}

/// `status`: refresh where every provider stands, record transitions, report.
async fn status(common: &Common, file: &FileConfig, args: &StatusArgs) -> Result<u8, Error> {
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
    let result = refresh_status(
        common,
        args,
        &state,
        reader,
        &report_files,
        &run_id,
        &pool_id,
        started_at,
    )
    .await;
    let (code, counts) = match &result {
        Ok((code, counts)) => (*code, counts.clone()),
        Err(e) => (e.exit_code(), String::new()),
    };
    state.finish_run(&run_id, Utc::now(), code, &counts)?;
    result.map(|(code, _)| code)
}

#[allow(clippy::too_many_arguments)]
async fn refresh_status(
    common: &Common,
    args: &StatusArgs,
    state: &Arc<State>,
    reader: Option<input::CohortReader<Box<dyn std::io::Read + Send>>>,
    report_files: &ReportFiles,
    run_id: &str,
    pool_id: &str,
    started_at: chrono::DateTime<Utc>,
) -> Result<(u8, String), Error> {
    let cognito = Cognito::connect(&common.connection, pool_id).await?;
    let cancel = Arc::new(Cancel::default());
    watch_signals(Arc::clone(&cancel));
    let limiter =
        Arc::new(limiter_for(common, &cognito, &[Category::UserRead, Category::UserList]).await);
    let exec = Arc::new(executor(common, Arc::clone(&limiter), Arc::clone(&cancel)));
    let pool = describe_pool(&exec, &cognito).await?;
    let known = state.known(&pool.id)?;
    let mut key_mode = KeyMode::Email;
    let mut targets: Vec<Target> = match reader {
        Some(reader) => {
            let (k, rules) = rules_for(&pool, reader.columns())?;
            key_mode = k;
            let (rows, rejects) = read_cohort(reader, key_mode, &rules, Delivery::Email)?;
            for r in &rejects {
                tracing::warn!("{}", invalid_row(r).reason);
            }
            rows.iter()
                .map(|row| Target {
                    key: row.key.clone(),
                    username: known
                        .get(&row.key)
                        .and_then(|k| k.username.clone())
                        .unwrap_or_else(|| match pool.username_mode {
                            UsernameMode::Email | UsernameMode::PhoneOnly => row.email.clone(),
                            _ => row.username.clone().unwrap_or_else(|| row.email.clone()),
                        }),
                })
                .collect()
        }
        None => known
            .iter()
            .filter(|(_, k)| k.invited)
            .map(|(key, k)| Target {
                key: key.clone(),
                username: k.username.clone().unwrap_or_else(|| key.clone()),
            })
            .collect(),
    };
    if key_mode == KeyMode::Email && pool.username_mode != UsernameMode::Email && !known.is_empty()
    {
        // Keys of free-form pools are usernames or emails; scans match them by username.
        key_mode = KeyMode::Username;
    }
    let pending = targets
        .iter()
        .filter(|t| {
            known.get(&t.key).and_then(|k| k.last_status.as_deref())
                == Some("FORCE_CHANGE_PASSWORD")
        })
        .count() as u64;
    let read_quota = common.quotas.get(Category::UserRead);
    let list_quota = common.quotas.get(Category::UserList);
    let (refresh, estimates) = status::choose_refresh(
        targets.len() as u64,
        pending,
        pool.estimated_users,
        read_quota,
        list_quota,
        args.all,
    );
    tracing::info!(
        "refreshing {} providers by {:?} (estimated quota-seconds: per user {:.2}, scan {:.2}, pending scan {:.2})",
        if args.all {
            "all".to_string()
        } else {
            targets.len().to_string()
        },
        refresh,
        estimates["per_user"],
        estimates["scan"],
        estimates["pending_scan"]
    );
    let mut results: BTreeMap<String, Result<Option<RemoteUser>, String>> = BTreeMap::new();
    match refresh {
        Refresh::PerUser => {
            let pairs = targets
                .iter()
                .map(|t| (t.key.clone(), t.username.clone()))
                .collect();
            results = read_each(&exec, &cognito, pairs, common.concurrency).await;
        }
        Refresh::Scan | Refresh::PendingScan => {
            let users = if refresh == Refresh::PendingScan {
                let filter = "cognito:user_status = \"FORCE_CHANGE_PASSWORD\"";
                all_pages(&exec, Op::ListUsers, |next| async {
                    cognito
                        .list_users(Some(filter), next)
                        .await
                        .map(|p| (p.users, p.next))
                })
                .await?
            } else {
                list_all_users(&exec, &cognito, pool.estimated_users).await?
            };
            let mut by_key: BTreeMap<String, RemoteUser> = users
                .into_iter()
                .filter_map(|u| scan_key(pool.username_mode, key_mode, &u).map(|k| (k, u)))
                .collect();
            if args.all {
                let tracked: HashSet<String> =
                    targets.iter().map(|t| t.key.to_lowercase()).collect();
                for (key, user) in &by_key {
                    if !tracked.contains(key) {
                        targets.push(Target {
                            key: key.clone(),
                            username: user.username.clone(),
                        });
                    }
                }
            }
            let mut missing = Vec::new();
            for t in &targets {
                match by_key.remove(&t.key.to_lowercase()) {
                    Some(user) => {
                        results.insert(t.key.clone(), Ok(Some(user)));
                    }
                    None if refresh == Refresh::Scan => {
                        results.insert(t.key.clone(), Ok(None));
                    }
                    None => missing.push((t.key.clone(), t.username.clone())),
                }
            }
            results.extend(read_each(&exec, &cognito, missing, common.concurrency).await);
        }
    }
    let now = Utc::now();
    for t in &targets {
        let Some(Ok(remote)) = results.get(&t.key) else {
            continue;
        };
        let was_invited = known.get(&t.key).is_some_and(|k| k.invited);
        if remote.is_none() && !was_invited {
            continue;
        }
        state.observe(
            &pool.id,
            &t.key,
            remote.as_ref().map(|u| u.username.as_str()),
            remote.as_ref().and_then(|u| u.email.as_deref()),
            remote.as_ref().map(|u| u.status.as_str()),
            remote.as_ref().map(|u| u.enabled),
            run_id,
            now,
        )?;
    }
    let known = state.known(&pool.id)?;
    let validity = chrono::Duration::days(i64::from(pool.temporary_password_validity_days));
    let empty = crate::state::Known::default();
    let mut rows: Vec<StatusRow> = targets
        .iter()
        .map(|t| {
            let k = known.get(&t.key).unwrap_or(&empty);
            match results.get(&t.key) {
                Some(Ok(remote)) => status::classify(&t.key, remote.as_ref(), k, validity, now),
                Some(Err(e)) => StatusRow {
                    key: t.key.clone(),
                    username: Some(t.username.clone()),
                    email: k.email.clone(),
                    status: None,
                    standing: Standing::Unknown,
                    reason: format!("could not read: {e}"),
                    first_invited_at: k.first_invited_at,
                    last_invited_at: k.last_invited_at,
                    reissues: k.reissues,
                    temp_password_expires_at: None,
                    confirmed_at: k.confirmed_at,
                },
                None => StatusRow {
                    key: t.key.clone(),
                    username: Some(t.username.clone()),
                    email: k.email.clone(),
                    status: None,
                    standing: Standing::Unknown,
                    reason: "not read: the refresh was stopped".into(),
                    first_invited_at: k.first_invited_at,
                    last_invited_at: k.last_invited_at,
                    reissues: k.reissues,
                    temp_password_expires_at: None,
                    confirmed_at: k.confirmed_at,
                },
            }
        })
        .collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let newly: Vec<StatusRow> = rows
        .iter()
        .filter(|r| r.standing == Standing::NewlyConfirmed)
        .cloned()
        .collect();
    let calls = exec.calls();
    let quota_seconds = calls
        .iter()
        .map(|(c, n)| plan::quota_seconds(*n, common.quotas.get(*c)))
        .filter(|q| q.is_finite())
        .sum::<f64>();
    let report = StatusReport {
        run_id: run_id.to_string(),
        command: "status",
        started_at,
        finished_at: Utc::now(),
        user_pool_id: pool.id.clone(),
        previous_status_at: state.last_status_run(&pool.id)?,
        refresh,
        estimated_quota_seconds: estimates,
        quota_seconds: (quota_seconds * 1000.0).round() / 1000.0,
        calls: calls
            .into_iter()
            .map(|(c, n)| (c.name().to_string(), n))
            .collect(),
        summary: status::summarize(&rows),
        funnel: status::funnel(&rows),
        newly_confirmed: newly.clone(),
        rows,
    };
    let newly_path = report_files
        .json
        .with_file_name(format!("{run_id}-newly-confirmed.csv"));
    report_files.write_with(
        &|f| {
            serde_json::to_writer_pretty(&mut *f, &report).map_err(std::io::Error::other)?;
            std::io::Write::write_all(f, b"\n")
        },
        &|f| status::write_csv(&mut *f, &report.rows),
    )?;
    crate::report::write_atomic(&newly_path, &|f| status::write_csv(&mut *f, &newly))?;
    state.confirmations_reported(
        &pool.id,
        &newly.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
        now,
    )?;
    let s = &report.summary;
    tracing::info!(
        "{} providers: {} newly confirmed, {} confirmed, {} pending, {} expired, {} attention, {} not invited; {:.2} quota-seconds",
        report.rows.len(),
        s["newly_confirmed"],
        s["confirmed"],
        s["pending"],
        s["expired"],
        s["attention"],
        s["not_invited"],
        report.quota_seconds
    );
    tracing::info!(
        "report: {} and {}; newly confirmed: {}",
        report_files.json.display(),
        report_files.csv.display(),
        newly_path.display()
    );
    match args.format {
        Some(StatusFormat::Table) => print!("{}", status::table(&report)),
        Some(StatusFormat::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        None => println!("{}", report_files.json.display()),
    }
    let counts = serde_json::to_string(&report.summary).unwrap_or_default();
    if let Some(e) = exec.fatal() {
        return Err(Error::Cognito(e.to_string()));
    }
    let code = if cancel.is_cancelled() {
        exit::ABORTED
    } else if report.summary["unknown"] > 0 {
        exit::ROWS_FAILED
    } else {
        exit::OK
    };
    Ok((code, counts))
}
