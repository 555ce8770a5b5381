//! `status`: refresh where every provider stands by the cheapest reads, record what changed,
//! report each provider's standing (what `run` would do now), and hand the newly confirmed over.
//! Must not classify (`standing`) or read (`status`, `lookup`) itself.

use std::collections::HashMap;

use chrono::Utc;

use crate::cli::StatusFormat;
use crate::cognito::{Delivery, PoolInfo, UsernameMode};
use crate::cohort::{self, Reader};
use crate::config::{Common, StatusSettings};
use crate::error::{Ending, Error};
use crate::executor::Executor;
use crate::handover;
use crate::input::{self, KeyMode};
use crate::lookup;
use crate::monitor::{Figures, Stall, stall};
use crate::plan::Policy;
use crate::report::terminal::{self as render, log_status_end};
use crate::session::{Opened, Session, Spec, calls_by_name, open_pool};
use crate::standing::{self, Standing, StatusReport};
use crate::state::{Access, Known};
use crate::status;

/// `status`: refresh where every provider stands by the cheapest reads, record what changed,
/// and report each provider's standing (what `run` would do now).
pub(crate) async fn run(common: &Common, settings: &StatusSettings) -> Result<Ending, Error> {
    let (session, reader) = Session::open(
        common,
        Spec {
            command: "status",
            access: Access::Write,
            input: settings.input.as_deref(),
            page: true,
            password_file: None,
            record: true,
            monitoring: Some(&settings.monitoring),
        },
        || match &settings.input {
            Some(path) => Ok(Some(input::open(path, &settings.input_options)?)),
            None => Ok(None),
        },
    )
    .await?;
    let result = refresh_status(common, settings, &session.opened(), reader).await;
    session.close(result).await
}

/// The refresh proper: what to read, read it by the cheapest way, record it, judge it, report.
async fn refresh_status(
    common: &Common,
    settings: &StatusSettings,
    opened: &Opened<'_>,
    reader: Option<Reader>,
) -> Result<(Ending, Figures), Error> {
    let (calls, pool) = open_pool(common, opened.pool_id).await?;
    let known = opened.state.known(&pool.id)?;
    let (key_mode, mut targets) = targets(&pool, &known, reader)?;
    let plan = status::plan(&targets, &known, &pool, &common.quotas, settings.all);
    tracing::info!(
        "refreshing {} providers by {:?} (estimated quota-seconds: per user {:.2}, scan {:.2}, pending scan {:.2})",
        if settings.all {
            "all".to_string()
        } else {
            targets.len().to_string()
        },
        plan.refresh,
        plan.estimates["per_user"],
        plan.estimates["scan"],
        plan.estimates["pending_scan"]
    );
    let (results, rest) = status::read(
        &calls,
        &pool,
        key_mode,
        plan.refresh,
        settings.all,
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
    let judge = settings.judge;
    let policy = Policy::new(judge.reissue, judge.delivery, judge.max_reissues, &pool);
    let suppressions = status::suppressions(
        &calls,
        &crate::suppression::SuppressionList::of(&pool),
        &pool,
        (&targets, &results),
        &known,
        &policy,
        now,
    )
    .await;
    let rows = status::rows(targets, results, &suppressions, &known, &policy, now);
    let mut report = status_report(opened, &pool, &calls.exec, common, plan, rows)?;
    report.rest = rest;
    report.stalled = stalled(opened, &pool.id, &report.rows, now);
    if let Some(on) = &settings.on_confirmed {
        report.handed_over = hand_over(on, opened, &pool.id, &report, &known).await?;
    }
    if let Some(on) = &settings.on_expiring {
        report.reminded = remind_expiring(on, opened, &pool.id, &report, &known, now).await?;
    }
    write_and_show(settings, opened, &pool.id, &report, now)?;
    let figures = Figures::of_status(&report);
    if let Some(e) = calls.exec.fatal() {
        return Err(Error::Cognito(e.to_string()));
    }
    Ok((report.ending(calls.exec.cancel.is_cancelled()), figures))
}

/// Runs `--on-expiring` for the pending providers whose invitation expires soon and has had no
/// reminder yet.
async fn remind_expiring(
    on: &handover::OnExpiring,
    opened: &Opened<'_>,
    pool_id: &str,
    report: &StatusReport,
    known: &HashMap<String, Known>,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<handover::HandOver>, Error> {
    let pending: Vec<handover::Pending> = report
        .rows
        .iter()
        .filter(|r| r.standing == Standing::Pending)
        .filter_map(|r| {
            let at = r.temp_password_expires_at?;
            Some((
                r.key.clone(),
                r.username.clone(),
                r.email.clone(),
                r.name.clone(),
                at,
            ))
        })
        .collect();
    let due = handover::expiring_due(pool_id, &pending, known, on.within, now);
    handover::remind(on, opened.state, due).await
}

/// How long the cohort has not moved: the runs' series blocked on the budget, and the
/// providers pending past their expiry now.
fn stalled(
    opened: &Opened<'_>,
    pool: &str,
    rows: &[crate::standing::StatusRow],
    now: chrono::DateTime<Utc>,
) -> Option<Stall> {
    let expired: Vec<_> = rows
        .iter()
        .filter(|r| r.standing == Standing::Expired)
        .collect();
    let seen = stall::Seen {
        command: "status",
        started_at: opened.started_at,
        now,
        waited_on_budget: false,
        sent: 0,
        expired: expired.len() as u64,
        oldest_expiry: expired
            .iter()
            .filter_map(|r| r.temp_password_expires_at)
            .min(),
    };
    stall::measure(opened.state, pool, seen)
}

/// The providers to refresh (the file's, or every one the state knows) and how scans match
/// them: keys of free-form pools are usernames or emails, so a scan matches them by username.
fn targets(
    pool: &PoolInfo,
    known: &HashMap<String, Known>,
    reader: Option<Reader>,
) -> Result<(KeyMode, Vec<status::Target>), Error> {
    let (mut key_mode, rows) = match reader {
        Some(reader) => {
            let (key_mode, rules) = cohort::rules_for(pool, reader.columns())?;
            let (rows, rejects) = cohort::read_cohort(reader, key_mode, &rules, Delivery::Email)?;
            for r in &rejects {
                tracing::warn!("{}", cohort::invalid_row(r).reason);
            }
            (key_mode, Some(rows))
        }
        None => (KeyMode::Email, None),
    };
    let targets = status::targets(rows, known, pool);
    if key_mode == KeyMode::Email && pool.username_mode != UsernameMode::Email && !known.is_empty()
    {
        key_mode = KeyMode::Username;
    }
    Ok((key_mode, targets))
}

/// Runs `--on-confirmed` for the confirmed providers not handed over yet.
async fn hand_over(
    on: &handover::OnConfirmed,
    opened: &Opened<'_>,
    pool_id: &str,
    report: &StatusReport,
    known: &HashMap<String, Known>,
) -> Result<Vec<handover::HandOver>, Error> {
    let seen = report
        .rows
        .iter()
        .filter(|r| matches!(r.standing, Standing::Confirmed | Standing::NewlyConfirmed))
        .map(|r| (r.key.as_str(), r.username.as_deref(), r.email.as_deref()));
    let due = handover::due(pool_id, seen, known);
    handover::hand_over(on, opened.state, pool_id, due).await
}

/// Writes the report (and the newly confirmed list), records who was reported newly confirmed,
/// and shows it as asked.
fn write_and_show(
    settings: &StatusSettings,
    opened: &Opened<'_>,
    pool_id: &str,
    report: &StatusReport,
    now: chrono::DateTime<Utc>,
) -> Result<(), Error> {
    let newly_path = opened.report_files.write_status(report, opened.run_id)?;
    opened.state.confirmations_reported(
        pool_id,
        &report
            .newly_confirmed
            .iter()
            .map(|r| r.key.clone())
            .collect::<Vec<_>>(),
        now,
    )?;
    log_status_end(report, opened.report_files, &newly_path);
    match settings.format {
        Some(StatusFormat::Table) => print!("{}", render::status_table(report)),
        Some(StatusFormat::Json) => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        None => println!("{}", opened.report_files.json.display()),
    }
    Ok(())
}

/// The keys of the rows stuck as `which` says.
fn keys_of(rows: &[standing::StatusRow], which: fn(&crate::report::Stuck) -> bool) -> Vec<String> {
    rows.iter()
        .filter(|r| r.stuck.as_ref().is_some_and(which))
        .map(|r| r.key.clone())
        .collect()
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
        rest: None,
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
        suppressed: keys_of(&rows, |s| s.suppressed().is_some()),
        reissue_limit: keys_of(&rows, crate::report::Stuck::at_reissue_limit),
        rows,
        handed_over: Vec::new(),
        reminded: Vec::new(),
        stalled: None,
    })
}
