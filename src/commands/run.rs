//! `run`: lock the state, open the input and the outputs, onboard the cohort (a first pass over
//! the file, the lookups, then the rows streamed from a second pass, each reported as it
//! finishes), hand the newly confirmed over, and record how the run ended. Must not decide a
//! row (`plan`) or carry one out (`onboard`).

use std::sync::Arc;

use chrono::Utc;

use crate::budget::{Budget, Caps};
use std::collections::HashMap;

use crate::calls::Calls;
use crate::cognito::{Cognito, PoolInfo};
use crate::cohort::{self, Reader};
use crate::config::{Common, RunSettings};
use crate::error::{Ending, Error};
use crate::handover;
use crate::input::{self, ColumnRules, KeyMode};
use crate::lookup;
use crate::monitor::{Figures, Stall, stall};
use crate::offboard::{self, Absent, Candidate};
use crate::onboard::{self, Ctx};
use crate::password_file::PasswordFile;
use crate::plan::{self, Policy};
use crate::report::model::Tally;
use crate::report::sink::Sink;
use crate::report::{self, terminal as report_log};
use crate::session::{Opened, Session, Spec, check_invitation, open_pool, report_of, send_quota};
use crate::state::Offboard;
use crate::state::{self, Access};

/// `run`: lock the state, open the input and the outputs, onboard the cohort, and record how the
/// run ended.
pub(crate) async fn run(common: &Common, settings: &RunSettings) -> Result<Ending, Error> {
    let (mut session, reader) = Session::open(
        common,
        Spec {
            command: "run",
            // A dry run reads and writes nothing, so it takes no lock.
            access: if settings.dry_run {
                Access::Read
            } else {
                Access::Write
            },
            input: Some(&settings.input),
            page: true,
            password_file: settings
                .password_file
                .as_deref()
                .map(|p| (p, settings.dry_run)),
            record: true,
            monitoring: Some(&settings.monitoring),
        },
        || {
            let reader = input::open(&settings.input, &settings.input_options)?;
            tracing::info!(
                "reading {} ({})",
                settings.input.display(),
                reader.describe()
            );
            Ok(reader)
        },
    )
    .await?;
    let password_file = session.take_password_file();
    let result = onboard_cohort(common, settings, &session.opened(), reader, password_file).await;
    session.close(result).await
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
) -> Result<(Ending, Figures), Error> {
    let (calls, pool) = open_pool(common, opened.pool_id).await?;
    check_invitation(&pool, settings.delivery)?;
    // What the state knew at the start: both passes read their rows' history through it (a
    // shared table's users are copied once).
    let mut known = opened.state.known_of(&pool.id);
    let first = first_pass(&calls, &pool, settings, opened, &mut known, reader).await?;
    let (ctx, pass) = prepare(&calls, pool, settings, opened, first, password_file).await?;
    let command = ("run", settings.dry_run);
    let head = report_of(
        opened,
        command,
        &calls.exec,
        &ctx.budget,
        &Tally::new(false),
    )?;
    let keep_confirmed = settings.on_confirmed.is_some() && !settings.dry_run;
    let mut sink = Sink::start(opened.report_files, &head, keep_confirmed)?;
    if let Some(on) = settings.on_expiring.as_ref().filter(|_| !settings.dry_run) {
        sink.tally.expiring = Some((Utc::now() + on.within, Vec::new()));
    }
    let stream_error = second_pass(
        (common, settings),
        opened,
        &ctx,
        (&pass, &mut known),
        &mut sink,
    )
    .await;
    drop(known);
    let capped = match &pass.absent {
        Some(step) if stream_error.is_none() => {
            take_off_absent(settings, opened, &ctx, step, &mut sink).await?
        }
        _ => false,
    };
    let mut report = report_of(opened, command, &calls.exec, &ctx.budget, &sink.tally)?;
    report.update = ctx
        .policy
        .update
        .is_some()
        .then(|| ctx.policy.update_mode().label());
    if !settings.dry_run {
        report.stalled = stalled(opened, &ctx.pool.id, &sink.tally);
    }
    // What the state knows after the rows, for the hand-over and the reminders (read only
    // where one is due; a shared table's users are copied once for both).
    let mut after = opened.state.known_of(&ctx.pool.id);
    if let (Some(on), Some(confirmed)) = (&settings.on_confirmed, &sink.tally.confirmed) {
        report.handed_over = hand_over(on, opened, (&ctx.pool.id, &mut after), confirmed).await?;
    }
    if let (Some(on), Some((_, pending))) = (&settings.on_expiring, &sink.tally.expiring) {
        let keys: Vec<String> = pending.iter().map(|p| p.0.clone()).collect();
        let known = after.of(&keys)?;
        let due = handover::expiring_due(&ctx.pool.id, pending, &known, on.within, Utc::now());
        report.reminded = handover::remind(on, opened.state, due).await?;
    }
    let failed = std::mem::take(&mut sink.tally.failed);
    let figures = Figures::of_run(&report, &sink.tally.deferred);
    sink.finish(&report)?;
    report_log::log_end_with(&report, &failed, opened.report_files);
    println!("{}", opened.report_files.json.display());
    if let Some(e) = stream_error {
        return Err(e);
    }
    if let Some(e) = calls.exec.fatal() {
        return Err(Error::Cognito(e.to_string()));
    }
    let ending = match report::ending(&report.summary, report.interrupted) {
        Ending::Interrupted => Ending::Interrupted,
        _ if capped => Ending::Capped,
        ending => ending,
    };
    Ok((ending, figures))
}

/// `--absent disable`: the cohort's members no longer in the list are disabled, one by one,
/// unless more would be than the cap allows (or rows without a readable key leave who is
/// absent unknown): then none is, the list goes next to the report, and the answer is true.
async fn take_off_absent(
    settings: &RunSettings,
    opened: &Opened<'_>,
    ctx: &Ctx<Cognito>,
    step: &AbsentStep,
    sink: &mut Sink,
) -> Result<bool, Error> {
    if step.candidates.is_empty() {
        return Ok(false);
    }
    let take = offboard::Step {
        calls: &ctx.calls,
        state: &ctx.state,
        pool: &ctx.pool.id,
        run_id: &ctx.run_id,
        dry_run: ctx.dry_run,
        only_pending: false,
    };
    if step.keyless > 0 {
        let why = format!(
            "{} rows have no readable key, so who is absent is not known",
            step.keyless
        );
        return hold_back(
            opened,
            &step.candidates.iter().collect::<Vec<_>>(),
            &why,
            sink,
        );
    }
    // The cap counts those who would be written: one already disabled or gone (by someone
    // else) is recorded as such and is no candidate again. Reading stops once more than the
    // cap would need a write.
    let limit = settings.offboarding.cap.limit(step.members);
    let mut to_write = Vec::new();
    for (i, c) in step.candidates.iter().enumerate() {
        if ctx.calls.exec.cancel.is_cancelled() {
            sink.append(c.not_started(Offboard::Disable));
            continue;
        }
        match take.read(c, Offboard::Disable).await {
            Ok(seen) if seen.nothing_to_disable() => {
                sink.append(take.carry_out_seen(c, Offboard::Disable, seen).await);
            }
            seen => to_write.push((c, seen)),
        }
        if to_write.len() as u64 > limit {
            let capped = offboard::Capped {
                would: (to_write.len() + step.candidates.len() - i - 1) as u64,
                limit,
                cap: settings.offboarding.cap,
                members: step.members,
            };
            let held: Vec<&Candidate> = to_write
                .iter()
                .map(|(c, _)| *c)
                .chain(&step.candidates[i + 1..])
                .collect();
            return hold_back(opened, &held, &capped.to_string(), sink);
        }
    }
    for (c, seen) in to_write {
        let r = match seen {
            _ if ctx.calls.exec.cancel.is_cancelled() => c.not_started(Offboard::Disable),
            Ok(seen) => take.carry_out_seen(c, Offboard::Disable, seen).await,
            Err(failed) => *failed,
        };
        sink.append(r);
    }
    Ok(false)
}

/// The absent step held back: nobody disabled, the list next to the report, and said why.
fn hold_back(
    opened: &Opened<'_>,
    candidates: &[&Candidate],
    why: &str,
    sink: &mut Sink,
) -> Result<bool, Error> {
    let rows: Vec<_> = candidates
        .iter()
        .map(|c| c.held_back(Offboard::Disable, why))
        .collect();
    let path = opened.report_files.write_held_back(opened.run_id, &rows)?;
    tracing::error!(
        "--absent disable held back: {why}; the list: {}",
        path.display()
    );
    rows.into_iter().for_each(|r| sink.append(r));
    Ok(true)
}

/// How long the cohort has not moved, as of this run's end.
fn stalled(opened: &Opened<'_>, pool: &str, tally: &Tally) -> Option<Stall> {
    let seen = stall::Seen {
        command: "run",
        started_at: opened.started_at,
        now: Utc::now(),
        waited_on_budget: tally.budget_deferred,
        sent: tally.sent(),
        expired: tally.expired,
        oldest_expiry: tally.oldest_expiry,
    };
    stall::measure(opened.state, pool, seen)
}

/// What the first pass over the file learnt, and how its rows are read.
struct FirstPass {
    key_mode: KeyMode,
    rules: ColumnRules,
    columns: Vec<String>,
    survey: cohort::Survey,
    absent: Option<AbsentStep>,
}

/// The first pass: the pool's rules for the file's columns, what the state knows, and the
/// survey of the rows (groups, counts, which to read); the groups are checked to exist.
async fn first_pass(
    calls: &Arc<Calls<Cognito>>,
    pool: &PoolInfo,
    settings: &RunSettings,
    opened: &Opened<'_>,
    known: &mut state::KnownOf<'_>,
    reader: Reader,
) -> Result<FirstPass, Error> {
    let (key_mode, rules) = cohort::rules_for(pool, reader.columns())?;
    let columns = reader.columns().to_vec();
    let off = &settings.offboarding;
    // Keyed as the survey compares them: lower-cased where the pool ignores case.
    let fold_case = !pool.case_sensitive;
    let folded = |k: &str| {
        if fold_case {
            k.to_lowercase()
        } else {
            k.to_string()
        }
    };
    let members: Option<HashMap<String, String>> = match off.absent {
        Absent::Disable => Some(
            members_of(known, &off.cohort)?
                .into_iter()
                .map(|k| (folded(&k), k))
                .collect(),
        ),
        _ => None,
    };
    let mut survey = cohort::survey(
        cohort::with_known(
            known,
            cohort::stream(reader, key_mode, &rules, settings.delivery)?,
        ),
        pool.username_mode,
        &rereading(settings, opened.started_at),
        settings.update.groups,
        members.as_ref().map(|m| m.keys().cloned().collect()),
        fold_case,
    )?;
    let absent = match survey.absent.take() {
        Some(folded_keys) => Some(absent_step(
            known,
            off,
            folded_keys,
            members.unwrap_or_default(),
            survey.keyless,
        )?),
        None => None,
    };
    if let Some(step) = &absent {
        tracing::info!(
            "cohort {}: {} of its {} providers are not in the list (--absent disable)",
            off.cohort,
            step.candidates.len(),
            step.members
        );
    }
    cohort::check_groups(calls, &survey.groups).await?;
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
    Ok(FirstPass {
        key_mode,
        rules,
        columns,
        survey,
        absent,
    })
}

/// `--absent disable`'s candidates: the cohort's members (`members`, by their folded keys)
/// whose folded keys the list did not have, each with what the state knows of it.
fn absent_step(
    known: &mut state::KnownOf<'_>,
    off: &crate::config::Offboarding,
    folded_keys: std::collections::HashSet<String>,
    members: HashMap<String, String>,
    keyless: u64,
) -> Result<AbsentStep, Error> {
    let mut keys: Vec<String> = folded_keys
        .into_iter()
        .filter_map(|k| members.get(&k).cloned())
        .collect();
    keys.sort();
    let known = known.of(&keys)?;
    let why = format!("not in the list of cohort {}", off.cohort);
    Ok(AbsentStep {
        candidates: keys
            .iter()
            .filter_map(|k| Some(Candidate::of(k, known.get(k)?, why.clone())))
            .collect(),
        members: members.len() as u64,
        keyless,
    })
}

/// The members of `cohort` (see [`offboard::member`]), walking the state a slice at a time.
fn members_of(known: &mut state::KnownOf<'_>, cohort: &str) -> Result<Vec<String>, Error> {
    let mut walk = known.in_order();
    let mut out = Vec::new();
    loop {
        let slice = walk.next_slice()?;
        if slice.is_empty() {
            return Ok(out);
        }
        out.extend(offboard::members(slice, cohort));
    }
}

/// `--absent disable`'s step: the cohort's members the list no longer has.
struct AbsentStep {
    candidates: Vec<Candidate>,
    /// The cohort's members before the run, for the cap.
    members: u64,
    /// Invalid rows whose key could not be read: who is absent is not known while there are
    /// some.
    keyless: u64,
}

/// How the second pass reads the file again.
struct SecondPass {
    key_mode: KeyMode,
    rules: ColumnRules,
    /// The rows the first pass counted.
    total: u64,
    absent: Option<AbsentStep>,
}

/// `run`'s policy on `pool`, comparing with the file's `columns` and managed groups where it
/// updates.
fn policy(
    settings: &RunSettings,
    pool: &PoolInfo,
    columns: &[String],
    managed: std::collections::BTreeSet<String>,
) -> Policy {
    Policy::new(
        settings.reissue,
        settings.delivery,
        settings.max_reissues,
        pool,
    )
    .updating(
        settings.update,
        pool,
        input::attribute_columns(columns),
        managed,
    )
}

/// What the rows are carried out with: the message budget (SES's quota read where it applies),
/// `run`'s policy, and the users the rows name, looked up the cheapest way. Takes the first
/// pass whole, so that what only the lookups need (every name in the file) is dropped before
/// the rows are carried out.
async fn prepare(
    calls: &Arc<Calls<Cognito>>,
    pool: PoolInfo,
    settings: &RunSettings,
    opened: &Opened<'_>,
    first: FirstPass,
    password_file: Option<PasswordFile>,
) -> Result<(Ctx<Cognito>, SecondPass), Error> {
    let FirstPass {
        key_mode,
        rules,
        columns,
        survey,
        absent,
    } = first;
    let ses = send_quota(calls, &pool, settings).await;
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
    let policy = policy(settings, &pool, &columns, survey.managed);
    let found = lookup::find(
        calls,
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
        .then(|| lookup::spawn_memberships(Arc::clone(calls), survey.memberships));
    let ctx = Ctx {
        calls: Arc::clone(calls),
        policy,
        suppression: crate::suppression::SuppressionList::of(&pool),
        pool,
        dry_run: settings.dry_run,
        found,
        memberships,
        budget,
        password_file,
        state: Arc::clone(opened.state),
        run_id: opened.run_id.to_string(),
        known: Default::default(),
        cohort: Some(settings.offboarding.cohort.clone()),
        reenable: settings.offboarding.reenable,
    };
    let pass = SecondPass {
        key_mode,
        rules,
        total: survey.valid + survey.invalid,
        absent,
    };
    Ok((ctx, pass))
}

/// The second pass: the same rows, read again from the file, processed and reported one by one
/// as they finish. Answers the error that stopped the file's reading, if one did.
async fn second_pass(
    (common, settings): (&Common, &RunSettings),
    opened: &Opened<'_>,
    ctx: &Ctx<Cognito>,
    (pass, known): (&SecondPass, &mut state::KnownOf<'_>),
    sink: &mut Sink,
) -> Option<Error> {
    let stream_error = std::cell::RefCell::new(None);
    let rows = match input::open(&settings.input, &settings.input_options)
        .map_err(Error::from)
        .and_then(|reader| cohort::stream(reader, pass.key_mode, &pass.rules, settings.delivery))
    {
        Ok(rows) => rows,
        Err(e) => return Some(e),
    };
    let items = {
        let rereading = rereading(settings, opened.started_at);
        let stream_error = &stream_error;
        let rows = cohort::with_known(known, rows);
        rows.map_while(move |row| match row {
            Ok((Ok(row), known)) => Some(match rereading.not_reread(&row, known.as_ref()) {
                Some(r) => {
                    // Not read, so not settled by its row: its list is recorded here.
                    record_cohort(ctx, &row.key, known.as_ref());
                    onboard::Item::Reported(r)
                }
                None => {
                    // Held while the row is on its way, let go when it is reported.
                    if let Some(known) = known {
                        ctx.known.hold(&row.key, known);
                    }
                    onboard::Item::Process(row)
                }
            }),
            Ok((Err(reject), _)) => Some(onboard::Item::Reported(cohort::invalid_row(&reject))),
            Err(e) => {
                stream_error.borrow_mut().get_or_insert(e);
                None
            }
        })
    };
    let total = pass.total;
    onboard::process_stream(
        ctx,
        items,
        total,
        common.concurrency,
        common.progress,
        |seq, r| {
            ctx.known.release(&r.key);
            sink.push(seq, r)
        },
    )
    .await;
    if sink.tally.rows != total {
        tracing::warn!(
            "{} changed during the run: {total} rows at the start, {} now",
            settings.input.display(),
            sink.tally.rows
        );
    }
    stream_error.into_inner()
}

/// Records that the provider `key` last came from this run's list, where the state says
/// otherwise.
fn record_cohort(ctx: &Ctx<Cognito>, key: &str, known: Option<&state::Known>) {
    let (Some(cohort), Some(known)) = (&ctx.cohort, known) else {
        return;
    };
    if ctx.dry_run || known.cohort.as_deref() == Some(cohort.as_str()) {
        return;
    }
    if let Err(e) = ctx
        .state
        .set_cohort(&ctx.pool.id, &[key.to_string()], cohort)
    {
        tracing::warn!("{e}");
    }
}

/// Runs `--on-confirmed` for the providers this run saw confirmed and had not handed over.
async fn hand_over(
    on: &handover::OnConfirmed,
    opened: &Opened<'_>,
    (pool_id, after): (&str, &mut state::KnownOf<'_>),
    confirmed: &[crate::report::model::Seen],
) -> Result<Vec<handover::HandOver>, Error> {
    let keys: Vec<String> = confirmed.iter().map(|(k, ..)| k.clone()).collect();
    let known = after.of(&keys)?;
    let seen = confirmed
        .iter()
        .map(|(k, u, e)| (k.as_str(), u.as_deref(), e.as_deref()));
    let due = handover::due(pool_id, seen, &known);
    handover::hand_over(on, opened.state, pool_id, due).await
}

/// How this run decides which rows to read again.
fn rereading(settings: &RunSettings, now: chrono::DateTime<Utc>) -> cohort::Rereading {
    cohort::Rereading {
        label: settings.update.label(),
        refresh: settings.refresh,
        refresh_after: settings.refresh_after,
        now,
    }
}
