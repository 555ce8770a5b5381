//! What every command opens and closes: the client behind the limiter and executor, the pool's
//! settings and invitation check, the run's record in the state, and the report it writes.
//! Must not hold a command's own steps (`app`, `desk`).

use std::collections::BTreeMap;
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
use crate::lookup;
use crate::report::files::ReportFiles;
use crate::report::{Report, RowReport};
use crate::standing::{self, Standing, StatusReport};
use crate::state::State;
use crate::status;

/// What a command has opened before it talks to Cognito.
pub(crate) struct Opened<'a> {
    pub run_id: &'a str,
    pub pool_id: &'a str,
    pub started_at: DateTime<Utc>,
    pub report_files: &'a ReportFiles,
    pub state: &'a Arc<State>,
}

pub(crate) fn require_pool(common: &Common) -> Result<&str, Error> {
    common.pool_id.as_deref().ok_or_else(|| {
        Error::Config("no user pool: pass --user-pool-id or set COGNITO_USER_POOL_ID".into())
    })
}

pub(crate) fn run_id() -> String {
    use rand::RngExt;
    let suffix: u16 = rand::rng().random();
    format!("{}-{suffix:04x}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// Records how the command ended in the state's `runs` table and passes the result on.
pub(crate) fn finish(
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

/// The status report from its rows and what the executor counted.
pub(crate) fn status_report(
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
        calls: calls_by_name(exec, opened.state),
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
