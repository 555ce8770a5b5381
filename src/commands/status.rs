//! `status`: refresh where every provider stands by the cheapest reads, record what changed,
//! report each provider's standing (what `run` would do now), and hand the newly confirmed over.
//! Must not classify (`standing`) or read (`status`, `lookup`) itself.

use std::collections::HashMap;
use std::io::Write;

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
use crate::plan::{Policy, Suppression};
use crate::report::page::StatusPage;
use crate::report::status::{RowsOnDisk, Tally};
use crate::report::terminal::{self as render, log_status_end};
use crate::session::{Opened, Session, Spec, calls_by_name, open_pool};
use crate::standing::{Standing, StatusReport};
use crate::state::Access;
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
    let (key_mode, work) = targets(opened, &pool, reader)?;
    let plan = status::plan(&work, &pool, &common.quotas, settings.all)?;
    tracing::info!(
        "refreshing {} providers by {:?} (estimated quota-seconds: per user {:.2}, scan {:.2}, pending scan {:.2})",
        if settings.all {
            "all".to_string()
        } else {
            plan.targets.to_string()
        },
        plan.refresh,
        plan.estimates["per_user"],
        plan.estimates["scan"],
        plan.estimates["pending_scan"]
    );
    let rest = status::read(
        &calls,
        &pool,
        key_mode,
        plan.refresh,
        settings.all,
        &work,
        common.concurrency,
    )
    .await?;
    let now = Utc::now();
    status::record(opened.state, &pool.id, &work, opened.run_id, now)?;
    let judge = settings.judge;
    let policy = Policy::new(judge.reissue, judge.delivery, judge.max_reissues, &pool);
    // What the state knows now, after the refresh was recorded (a shared table's users are
    // copied once for both walks).
    let mut known = opened.state.known_of(&pool.id);
    let list = crate::suppression::SuppressionList::of(&pool);
    let suppressions =
        status::suppressions(&calls, &list, &pool, &mut known, &work, &policy, now).await?;
    let classified = classify(
        settings,
        opened,
        (&pool.id, &mut known),
        &work,
        (&policy, &suppressions),
        now,
    )?;
    drop(known);
    drop(work);
    let mut report = status_report(opened, &pool, &calls.exec, common, plan, &classified)?;
    report.rest = rest;
    report.stalled = stalled(opened, &pool.id, &classified.tally, now);
    if let Some(on) = &settings.on_confirmed {
        report.handed_over =
            handover::hand_over(on, opened.state, &pool.id, classified.confirmed).await?;
    }
    if let Some(on) = &settings.on_expiring {
        report.reminded = handover::remind(on, opened.state, classified.expiring).await?;
    }
    let page = classified
        .page
        .map(|p| p.finish(&report, &opened.report_files.csv_name()));
    write_and_show(
        settings,
        opened,
        &pool.id,
        &report,
        page,
        classified.tally.key_width,
    )?;
    let figures = Figures::of_status(&report);
    if let Some(e) = calls.exec.fatal() {
        return Err(Error::Cognito(e.to_string()));
    }
    Ok((report.ending(calls.exec.cancel.is_cancelled()), figures))
}

/// What classifying every provider leaves: the rows (on disk), their tally, the page built
/// from them, and the providers due a hand-over or a reminder.
struct Classified {
    rows: RowsOnDisk,
    tally: Tally,
    /// The keys of the providers whose address is suppressed, and of those re-issued to the
    /// limit (few: the page and the report list them).
    suppressed: Vec<String>,
    reissue_limit: Vec<String>,
    page: Option<StatusPage>,
    confirmed: Vec<handover::Confirmed>,
    expiring: Vec<handover::Expiring>,
}

/// Classifies each provider in key order with what the state knows of it now, and writes its
/// row as soon as it is made: the rows go to disk, and only their tally, the page's bins and
/// capped lists, and who is due a hand-over or a reminder are kept.
fn classify(
    settings: &StatusSettings,
    opened: &Opened<'_>,
    (pool_id, known): (&str, &mut crate::state::KnownOf<'_>),
    work: &status::Workset,
    (policy, suppressions): (&Policy, &HashMap<String, Suppression>),
    now: chrono::DateTime<Utc>,
) -> Result<Classified, Error> {
    let mut rows = opened.report_files.status_rows()?;
    let mut tally = Tally::new();
    let mut page = opened
        .report_files
        .html
        .as_ref()
        .map(|_| StatusPage::new(now));
    let (mut confirmed, mut expiring) = (Vec::new(), Vec::new());
    let (mut suppressed, mut reissue_limit) = (Vec::new(), Vec::new());
    status::each_with_known(known, work, |j, known| {
        let screened = suppressions
            .get(&j.target.key)
            .unwrap_or(&Suppression::Clear);
        let row = status::row(&j, known, policy, screened, now);
        match &row.stuck {
            Some(s) if s.suppressed().is_some() => suppressed.push(row.key.clone()),
            Some(s) if s.at_reissue_limit() => reissue_limit.push(row.key.clone()),
            _ => {}
        }
        tally.add(&row, now);
        if let Some(page) = &mut page {
            page.add(&row);
        }
        let seen = (
            row.key.as_str(),
            row.username.as_deref(),
            row.email.as_deref(),
        );
        if settings.on_confirmed.is_some()
            && matches!(row.standing, Standing::Confirmed | Standing::NewlyConfirmed)
        {
            confirmed.extend(handover::confirmed(pool_id, seen, known));
        }
        if let (Some(on), Standing::Pending, Some(at)) = (
            &settings.on_expiring,
            row.standing,
            row.temp_password_expires_at,
        ) {
            let pending = (
                row.key.clone(),
                row.username.clone(),
                row.email.clone(),
                row.name.clone(),
                at,
            );
            expiring.extend(handover::expiring(pool_id, &pending, known, on.within, now));
        }
        rows.push(&row)
            .map_err(|e| Error::io("cannot write report", rows.path(), e))
    })?;
    let path = rows.path().to_path_buf();
    let rows = rows
        .finish()
        .map_err(|e| Error::io("cannot write report", &path, e))?;
    Ok(Classified {
        rows,
        tally,
        suppressed,
        reissue_limit,
        page,
        confirmed,
        expiring,
    })
}

/// How long the cohort has not moved: the runs' series blocked on the budget, and the
/// providers pending past their expiry now.
fn stalled(
    opened: &Opened<'_>,
    pool: &str,
    tally: &Tally,
    now: chrono::DateTime<Utc>,
) -> Option<Stall> {
    let seen = stall::Seen {
        command: "status",
        started_at: opened.started_at,
        now,
        waited_on_budget: false,
        sent: 0,
        expired: tally.summary.get(&Standing::Expired).copied().unwrap_or(0),
        oldest_expiry: tally.oldest_expiry,
    };
    stall::measure(opened.state, pool, seen)
}

/// The providers to refresh (the file's, or every one the state knows), gathered on disk, and
/// how scans match them: keys of free-form pools are usernames or emails, so a scan matches
/// them by username.
fn targets(
    opened: &Opened<'_>,
    pool: &PoolInfo,
    reader: Option<Reader>,
) -> Result<(KeyMode, status::Workset), Error> {
    let (state, dir) = (opened.state, opened.report_files.json.parent());
    let (mut key_mode, work, known_any) = match reader {
        Some(reader) => {
            let (key_mode, rules) = cohort::rules_for(pool, reader.columns())?;
            let rows =
                cohort::stream(reader, key_mode, &rules, Delivery::Email)?.filter_map(|record| {
                    match record {
                        Ok(Ok(row)) => Some(Ok(row)),
                        Ok(Err(reject)) => {
                            tracing::warn!("{}", cohort::invalid_row(&reject).reason);
                            None
                        }
                        Err(e) => Some(Err(e)),
                    }
                });
            let (work, any) = status::gather(state, pool, Some(rows), dir)?;
            (key_mode, work, any)
        }
        None => {
            let (work, any) =
                status::gather(state, pool, None::<std::iter::Empty<Result<_, Error>>>, dir)?;
            (KeyMode::Email, work, any)
        }
    };
    if key_mode == KeyMode::Email && pool.username_mode != UsernameMode::Email && known_any {
        key_mode = KeyMode::Username;
    }
    Ok((key_mode, work))
}

/// Writes the report (and the newly confirmed list), records who was reported newly confirmed,
/// and shows it as asked.
fn write_and_show(
    settings: &StatusSettings,
    opened: &Opened<'_>,
    pool_id: &str,
    report: &StatusReport,
    page: Option<crate::report::page::Page>,
    key_width: usize,
) -> Result<(), Error> {
    let newly_path = opened
        .report_files
        .write_status(report, page, opened.run_id)?;
    let mut keys = Vec::new();
    let mut recorded = Ok(());
    let mut record = |keys: &mut Vec<String>| {
        if recorded.is_ok() {
            recorded =
                opened
                    .state
                    .confirmations_reported(pool_id, &std::mem::take(keys), Utc::now());
        }
    };
    report
        .newly_confirmed
        .each(|r| {
            keys.push(r.key);
            if keys.len() == 1000 {
                record(&mut keys);
            }
            Ok(())
        })
        .map_err(|e| Error::io("cannot read the report back", &opened.report_files.json, e))?;
    record(&mut keys);
    recorded?;
    log_status_end(report, opened.report_files, &newly_path);
    let mut out = std::io::stdout().lock();
    // Standard output closed early (a pager quit) is not the run's failure.
    let _ = match settings.format {
        Some(StatusFormat::Table) => render::status_table(report, key_width, &mut out),
        Some(StatusFormat::Json) => serde_json::to_writer_pretty(&mut out, report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        None => writeln!(out, "{}", opened.report_files.json.display()),
    };
    Ok(())
}

/// The status report from its tally, its rows on disk, and what the executor counted.
fn status_report(
    opened: &Opened<'_>,
    pool: &PoolInfo,
    exec: &Executor,
    common: &Common,
    plan: status::Plan,
    classified: &Classified,
) -> Result<StatusReport, Error> {
    let calls = exec.calls();
    let quota_seconds = calls
        .iter()
        .map(|(c, n)| lookup::quota_seconds(*n, common.quotas.get(*c)))
        .filter(|q| q.is_finite())
        .sum::<f64>();
    let tally = &classified.tally;
    let newly = tally
        .summary
        .get(&Standing::NewlyConfirmed)
        .copied()
        .unwrap_or(0);
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
        summary: tally.summary.clone(),
        funnel: tally.funnel(),
        newly_confirmed: classified.rows.only(Standing::NewlyConfirmed, newly),
        rows: classified.rows.clone(),
        suppressed: classified.suppressed.clone(),
        reissue_limit: classified.reissue_limit.clone(),
        handed_over: Vec::new(),
        reminded: Vec::new(),
        stalled: None,
        expires_soon: tally.expires_soon,
    })
}
