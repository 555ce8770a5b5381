//! `revoke`: takes back a cohort sent by mistake: the users a run created (or a file lists)
//! who never signed in are disabled, or with `--delete --confirm-delete` deleted; anyone who
//! signed in meanwhile is reported and left alone. The same cap, plan and report as `run
//! --absent`. Must not decide who is revocable (`offboard`).

use std::collections::HashMap;

use crate::budget::Budget;
use crate::cognito::PoolInfo;
use crate::cohort::{self, Reader};
use crate::config::{Common, RevokeSettings, Revoked};
use crate::error::{Ending, Error};
use crate::input;
use crate::offboard::{self, Candidate, Step};
use crate::report::model::{Outcome, RowReport};
use crate::session::{Opened, Session, open_pool, rows_report};
use crate::state::{Known, Offboard};

pub(crate) async fn run(common: &Common, settings: &RevokeSettings) -> Result<Ending, Error> {
    let (session, reader) =
        Session::open(
            common,
            super::enable::offboard_spec("revoke"),
            || match &settings.from {
                Revoked::Input(path, options) => Ok(Some(input::open(path, options)?)),
                Revoked::Run(_) => Ok(None),
            },
        )
        .await?;
    let opened = session.opened();
    let result = revoke(common, settings, &opened, reader).await;
    session.close(result).await
}

async fn revoke(
    common: &Common,
    settings: &RevokeSettings,
    opened: &Opened<'_>,
    reader: Option<Reader>,
) -> Result<(Ending, crate::monitor::Figures), Error> {
    let (calls, pool) = open_pool(common, opened.pool_id).await?;
    let known = opened.state.known(&pool.id)?;
    let action = if settings.delete {
        Offboard::Delete
    } else {
        Offboard::Disable
    };
    let (candidates, mut rows) = candidates(&pool, &known, settings, action, reader)?;
    let budget = Budget::new(crate::cognito::Delivery::Suppress, None);
    let considered = (candidates.len() + rows.len()) as u64;
    if let Err(capped) = offboard::check_cap(candidates.len() as u64, considered, settings.cap) {
        let held: Vec<RowReport> = candidates
            .iter()
            .map(|c| c.held_back(action, &capped.to_string()))
            .collect();
        let path = opened.report_files.write_held_back(opened.run_id, &held)?;
        tracing::error!("{capped}; the list: {}", path.display());
        rows.extend(held);
        let (_, figures) = rows_report(
            opened,
            ("revoke", settings.dry_run),
            &calls.exec,
            &budget,
            rows,
            |_| Ending::Capped,
        )?;
        return Ok((Ending::Capped, figures));
    }
    let step = Step {
        calls: &calls,
        state: opened.state,
        pool: &pool.id,
        run_id: opened.run_id,
        dry_run: settings.dry_run,
        only_pending: true,
    };
    for c in &candidates {
        if calls.exec.cancel.is_cancelled() {
            rows.push(c.not_started(action));
            continue;
        }
        rows.push(step.carry_out(c, action).await);
    }
    rows_report(
        opened,
        ("revoke", settings.dry_run),
        &calls.exec,
        &budget,
        rows,
        |r| crate::report::ending(&r.summary, r.interrupted),
    )
}

/// Who a revoke takes back, and the rows of those it leaves alone (signed in, or not this
/// tool's).
fn candidates(
    pool: &PoolInfo,
    known: &HashMap<String, Known>,
    settings: &RevokeSettings,
    action: Offboard,
    reader: Option<Reader>,
) -> Result<(Vec<Candidate>, Vec<RowReport>), Error> {
    let mut take = Vec::new();
    let mut left = Vec::new();
    match (&settings.from, reader) {
        (Revoked::Run(run), _) => {
            let mut keys: Vec<&String> = known.keys().collect();
            keys.sort();
            for key in keys {
                let k = &known[key];
                if k.created_run.as_deref() == Some(run.as_str())
                    && (k.confirmed_at.is_some() || offboard::revocable(k, run, action))
                {
                    consider(
                        &mut take,
                        &mut left,
                        key,
                        k,
                        format!("created by run {run}"),
                    );
                }
            }
        }
        (Revoked::Input(path, _), Some(reader)) => {
            let (key_mode, rules) = cohort::rules_for(pool, reader.columns())?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            for row in cohort::stream(reader, key_mode, &rules, crate::cognito::Delivery::Suppress)?
            {
                let Ok(row) = row? else { continue };
                match known.get(&row.key) {
                    Some(k) if k.created_run.is_some() => {
                        if k.confirmed_at.is_some() || offboard::takeable(k, action) {
                            consider(
                                &mut take,
                                &mut left,
                                &row.key,
                                k,
                                format!("line {} of {name}", row.line),
                            );
                        }
                    }
                    _ => {
                        let mut r = RowReport::new(
                            row.line,
                            row.key.clone(),
                            Some(row.email.clone()),
                            Outcome::Skipped,
                        );
                        r.reason = "not created by this tool: left alone".into();
                        left.push(r);
                    }
                }
            }
        }
        (Revoked::Input(..), None) => {}
    }
    Ok((take, left))
}

/// A user the state shows created by the tool: taken back, or left alone when it signed in.
fn consider(
    take: &mut Vec<Candidate>,
    left: &mut Vec<RowReport>,
    key: &str,
    k: &Known,
    why: String,
) {
    if k.confirmed_at.is_some() {
        let mut r = RowReport::new(0, key.to_string(), k.email.clone(), Outcome::Skipped);
        r.username = k.username.clone();
        r.reason = format!("{why}: signed in; left alone");
        left.push(r);
    } else {
        take.push(Candidate::of(key, k, why));
    }
}
