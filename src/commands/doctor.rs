//! `doctor`: for each provider, one verdict and the facts behind it, with the remedy; with
//! `--fix`, the safe remedies carried out by `run`'s own row state machine, then everyone judged
//! again. Reads only, unless `--fix`. Must not decide (`diagnosis`) or carry a row out itself
//! (`onboard`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;

use crate::calls::Calls;
use crate::cli::StatusFormat;
use crate::cognito::{Cognito, PoolInfo};
use crate::cohort;
use crate::config::{Common, DoctorSettings, Sending};
use crate::error::{Ending, Error};
use crate::help;
use crate::input::{self, ColumnRules, KeyMode, Record};
use crate::monitor::Figures;
use crate::onboard;
use crate::password_file::PasswordFile;
use crate::plan::Policy;
use crate::report::RowReport;
use crate::report::terminal as render;
use crate::session::{Opened, Session, Spec, check_invitation, open_pool};
use crate::state::{Access, State};

/// `doctor`: for each provider, one verdict and the facts behind it, with the remedy. Reads
/// only; the state is not locked.
pub(crate) async fn run(common: &Common, settings: &DoctorSettings) -> Result<Ending, Error> {
    let ids = doctor_ids(settings)?;
    // Only --fix writes, so only --fix takes the lock (shared with a scheduled run: a help-desk
    // fix does not wait for one) and is recorded as a run.
    let fix = settings.fix.as_ref();
    let (mut session, ()) = Session::open(
        common,
        Spec {
            command: "doctor",
            access: if fix.is_some() {
                Access::Shared
            } else {
                Access::Read
            },
            input: None,
            page: false,
            password_file: fix
                .and_then(|f| f.password_file.as_deref())
                .map(|p| (p, false)),
            record: fix.is_some(),
            monitoring: None,
        },
        || Ok(()),
    )
    .await?;
    let password_file = session.take_password_file();
    let opened = session.opened();
    let state = opened.state;
    let result = async {
        let (calls, pool) = open_pool(common, opened.pool_id).await?;
        let mut facts = help::PoolFacts::new(
            &pool,
            help::budget_now(&pool, settings.email_budget, state, opened.started_at)?,
            help::delivery_errors(&calls).await,
        );
        let mut providers = examine_all(&calls, &pool, &facts, state, &ids).await?;
        let mut fixes = Vec::new();
        if let Some(send) = fix {
            let fix = Fix {
                common,
                settings,
                calls: &calls,
                pool: &pool,
                opened: &opened,
            };
            fixes = fix.apply(send, password_file, &providers).await?;
            if !fixes.is_empty() {
                // Judged on the state after the fixes.
                providers = examine_all(&calls, &pool, &facts, state, &ids).await?;
            }
        }
        facts.settle_suppression_list();
        let mut summary = BTreeMap::new();
        for p in &providers {
            *summary.entry(p.verdict).or_insert(0) += 1;
        }
        let report = help::DoctorReport {
            run_id: opened.run_id.to_string(),
            command: "doctor",
            started_at: opened.started_at,
            finished_at: Utc::now(),
            user_pool_id: pool.id.clone(),
            pool: facts,
            summary,
            calls: crate::session::calls_by_name(&calls.exec, state),
            providers,
            fixes,
        };
        write_and_show(settings, &opened, &report)?;
        Ok((report.ending(), figures(&report)))
    }
    .await;
    session.close(result).await
}

/// Writes the report and shows the verdicts as asked (a table, or JSON for scripts).
fn write_and_show(
    settings: &DoctorSettings,
    opened: &crate::session::Opened<'_>,
    report: &help::DoctorReport,
) -> Result<(), Error> {
    opened.report_files.write_doctor(report)?;
    match settings.format {
        Some(StatusFormat::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&report.providers).unwrap_or_default()
        ),
        Some(StatusFormat::Table) | None => print!("{}", render::doctor_table(report)),
    }
    tracing::info!(
        "report: {} and {}",
        opened.report_files.json.display(),
        opened.report_files.csv.display()
    );
    Ok(())
}

/// What `doctor --fix` works with.
struct Fix<'a> {
    common: &'a Common,
    settings: &'a DoctorSettings,
    calls: &'a Arc<Calls<Cognito>>,
    pool: &'a PoolInfo,
    opened: &'a Opened<'a>,
}

impl Fix<'_> {
    /// Applies the safe remedy to every provider that has one, through `run`'s row state
    /// machine with `run`'s policy: an expired or lost invitation is re-issued, an existing
    /// email marked verified. Returns what was done, row by row.
    async fn apply(
        &self,
        send: &Sending,
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
        check_invitation(self.pool, send.delivery)?;
        let judge = self.settings.judge;
        let policy = Policy::new(judge.reissue, send.delivery, judge.max_reissues, self.pool);
        let ctx = self.opened.desk_ctx(
            self.calls,
            self.pool,
            policy,
            send,
            password_file,
            rows.len(),
        )?;
        Ok(onboard::process_rows(&ctx, rows, self.common.concurrency, false).await)
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

/// The providers `doctor` examines: the IDs given, or the rows of `--input` (by username where
/// the CSV has one, else by email).
fn doctor_ids(settings: &DoctorSettings) -> Result<Vec<String>, Error> {
    let mut ids = settings.ids.clone();
    if let Some(path) = &settings.input {
        let reader = input::open(path, &settings.input_options)?;
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

/// What `doctor` tells the state's record of it: its providers by verdict, and its calls.
fn figures(report: &help::DoctorReport) -> Figures {
    Figures {
        standings: report
            .summary
            .iter()
            .map(|(v, n)| (v.as_str(), *n))
            .collect(),
        calls: report.calls.clone(),
        ..Figures::default()
    }
}
