//! The results report: a pure fold of row results into a summary and an ending, rendered as
//! JSON and CSV with the same rows. Never holds a password: nothing here has a field that could
//! carry one. Must not decide what happens to a row; it only records it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::cognito::UserStatus;
use crate::error::{Ending, Error};
use crate::standing::{Standing, StatusReport, StatusRow};

/// What finally happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Reissued,
    /// `run --update` changed an existing user's attributes or groups.
    Updated,
    Skipped,
    Deferred,
    Attention,
    Invalid,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Created,
        Outcome::Reissued,
        Outcome::Updated,
        Outcome::Skipped,
        Outcome::Deferred,
        Outcome::Attention,
        Outcome::Invalid,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Reissued => "reissued",
            Outcome::Updated => "updated",
            Outcome::Skipped => "skipped",
            Outcome::Deferred => "deferred",
            Outcome::Attention => "attention",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
        }
    }
}

/// What was decided for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    Create,
    Reissue,
    Skip,
    Attention,
    /// The help desk's `reset` of a confirmed provider's password.
    Reset,
    /// Nothing was decided: the row was invalid, not started, or its user could not be read.
    None,
}

impl Act {
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Create => "create",
            Act::Reissue => "reissue",
            Act::Skip => "skip",
            Act::Attention => "attention",
            Act::Reset => "reset",
            Act::None => "none",
        }
    }
}

/// Why a row was deferred to a later run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// The run's share of the email budget is spent.
    Budget,
    /// Cognito answered LimitExceededException: the account's daily email limit.
    MessageLimit,
    /// The run was stopped before this row started.
    NotStarted,
    /// The shared state is busy with this provider: another machine is inviting them right
    /// now, or DynamoDB kept throttling the intent.
    Busy,
}

impl Deferral {
    /// Whether the deferral means the message budget is spent (the report then says when it
    /// frees up).
    pub fn is_budget(self) -> bool {
        match self {
            Deferral::Budget | Deferral::MessageLimit => true,
            Deferral::NotStarted | Deferral::Busy => false,
        }
    }
}

/// One row of the report (read back from `run`'s rows file for its page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowReport {
    /// Line of the input file (header = 1).
    pub row: u64,
    pub key: String,
    pub username: Option<String>,
    pub email: Option<String>,
    /// The provider's name as the row gives it (`name`, else `family_name given_name`), so a
    /// person can find them; None when the row has neither.
    #[serde(default)]
    pub name: Option<String>,
    pub action: Act,
    pub outcome: Outcome,
    pub reason: String,
    /// What the run changed (or, in a dry run, would change) in an existing user: attribute
    /// names, `+group`, `-group`. Never values: the report travels further than the pool.
    pub changed: Vec<String>,
    pub status_before: Option<UserStatus>,
    pub status_after: Option<UserStatus>,
    pub temp_password_expires_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Why a deferred row was deferred (the reason says it in words).
    #[serde(skip)]
    pub deferral: Option<Deferral>,
}

impl RowReport {
    /// A row before anything is known about it.
    pub fn new(row: u64, key: String, email: Option<String>, outcome: Outcome) -> Self {
        RowReport {
            row,
            key,
            username: None,
            email,
            name: None,
            action: Act::None,
            outcome,
            reason: String::new(),
            changed: Vec::new(),
            status_before: None,
            status_after: None,
            temp_password_expires_at: None,
            attempts: 0,
            error_code: None,
            error_message: None,
            deferral: None,
        }
    }

    /// A row deferred to a later run, for `why`; `reason` says it in words.
    pub fn defer(&mut self, why: Deferral, reason: String) {
        self.outcome = Outcome::Deferred;
        self.deferral = Some(why);
        self.reason = reason;
    }
}

/// A finished (or interrupted) run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub user_pool_id: String,
    pub dry_run: bool,
    /// `run --update`'s mode ("attributes", "attributes,groups,clear-empty"); absent when the
    /// run only creates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    pub interrupted: bool,
    pub summary: BTreeMap<Outcome, u64>,
    /// Calls that reached AWS, per quota category (a DynamoDB state's under `StateTable`), and
    /// throttles seen.
    pub calls: BTreeMap<String, u64>,
    pub throttles: BTreeMap<String, u64>,
    /// With Cognito's own email sender: when the next invitation can go out, if the budget is spent.
    pub email_budget_frees_at: Option<DateTime<Utc>>,
    /// Who sends the messages of this run (Cognito's own sender, SES, SNS, the pool's custom
    /// sender Lambda, or nobody); absent where the run sends none and had no pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_by: Option<String>,
    pub rows: Vec<RowReport>,
    /// What `--on-confirmed` did, provider by provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handed_over: Vec<crate::handover::HandOver>,
}

#[cfg(test)]
impl Report {
    /// A run of `run` in pool `eu-west-1_x` with no rows, for tests.
    pub fn empty(run_id: &str, started_at: DateTime<Utc>, finished_at: DateTime<Utc>) -> Report {
        Report {
            run_id: run_id.into(),
            command: "run".into(),
            started_at,
            finished_at,
            user_pool_id: "eu-west-1_x".into(),
            dry_run: false,
            update: None,
            interrupted: false,
            summary: BTreeMap::new(),
            calls: BTreeMap::new(),
            throttles: BTreeMap::new(),
            email_budget_frees_at: None,
            sent_by: None,
            rows: Vec::new(),
            handed_over: Vec::new(),
        }
    }
}

/// Counts per outcome, every outcome present (zero when none).
pub fn summarize(rows: &[RowReport]) -> BTreeMap<Outcome, u64> {
    let mut out: BTreeMap<Outcome, u64> = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
    for r in rows {
        *out.entry(r.outcome).or_default() += 1;
    }
    out
}

/// How a run ended: interrupted, or with some row invalid or failed, or settled.
pub fn ending(summary: &BTreeMap<Outcome, u64>, interrupted: bool) -> Ending {
    let count = |o: Outcome| summary.get(&o).copied().unwrap_or(0);
    if interrupted {
        Ending::Interrupted
    } else if count(Outcome::Invalid) + count(Outcome::Failed) > 0 {
        Ending::RowsFailed
    } else {
        Ending::Settled
    }
}

/// The one-line summary printed on stderr at the end.
pub fn one_line(report: &Report) -> String {
    let counts: Vec<String> = report
        .summary
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {}", k.as_str()))
        .collect();
    let secs = (report.finished_at - report.started_at).num_milliseconds() as f64 / 1000.0;
    format!(
        "{}{} rows in {secs:.1}s: {}",
        if report.dry_run { "dry run: " } else { "" },
        report.summary.values().sum::<u64>(),
        if counts.is_empty() {
            "nothing to do".to_string()
        } else {
            counts.join(", ")
        }
    )
}

/// Neutralises a cell that a spreadsheet would run as a formula (OWASP "CSV injection").
pub fn escape_cell(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

pub const CSV_COLUMNS: [&str; 15] = [
    "row",
    "key",
    "username",
    "email",
    "action",
    "outcome",
    "reason",
    "status_before",
    "status_after",
    "temp_password_expires_at",
    "attempts",
    "error_code",
    "error_message",
    // Last, so that scripts reading the columns by position before they were added still work.
    "changed",
    "name",
];

fn time(t: &Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn status(s: &Option<UserStatus>) -> String {
    s.as_ref()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}

/// One report row as the CSV's cells, formula-looking cells escaped.
pub fn csv_record(r: &RowReport) -> [String; CSV_COLUMNS.len()] {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    [
        r.row.to_string(),
        r.key.clone(),
        opt(&r.username),
        opt(&r.email),
        r.action.as_str().to_string(),
        r.outcome.as_str().to_string(),
        r.reason.clone(),
        status(&r.status_before),
        status(&r.status_after),
        time(&r.temp_password_expires_at),
        r.attempts.to_string(),
        opt(&r.error_code),
        opt(&r.error_message),
        r.changed.join(" "),
        opt(&r.name),
    ]
    .map(|c| escape_cell(&c).into_owned())
}

/// The UTF-8 BOM the CSV reports start with, so Excel reads the Japanese names right.
pub fn write_bom<W: Write>(out: &mut W) -> std::io::Result<()> {
    out.write_all("\u{feff}".as_bytes())
}

/// Writes the rows as CSV (UTF-8 with a BOM, so Excel reads the Japanese names right).
pub fn write_csv<W: Write>(mut out: W, rows: &[RowReport]) -> std::io::Result<()> {
    write_bom(&mut out)?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    for r in rows {
        w.write_record(csv_record(r))?;
    }
    w.flush()
}

/// Writes `status`'s rows as CSV (UTF-8 with BOM), formula-looking cells escaped.
pub fn write_status_csv<W: Write>(mut out: W, rows: &[StatusRow]) -> std::io::Result<()> {
    out.write_all("\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "key",
        "username",
        "email",
        "status",
        "standing",
        "reason",
        "first_invited_at",
        "last_invited_at",
        "reissues",
        "temp_password_expires_at",
        "confirmed_at",
        // Last, so that scripts reading the columns by position before it was added still work.
        "name",
    ])?;
    let t = time;
    for r in rows {
        let record = [
            r.key.clone(),
            r.username.clone().unwrap_or_default(),
            r.email.clone().unwrap_or_default(),
            r.status.clone().unwrap_or_default(),
            r.standing.as_str().to_string(),
            r.reason.clone(),
            t(&r.first_invited_at),
            t(&r.last_invited_at),
            r.reissues.to_string(),
            t(&r.temp_password_expires_at),
            t(&r.confirmed_at),
            r.name.clone().unwrap_or_default(),
        ];
        w.write_record(record.iter().map(|c| escape_cell(c).into_owned()))?;
    }
    w.flush()
}

/// What a run says on stderr at the end: each failed row, when the budget frees, the one-line
/// summary and where the report is.
pub fn log_end(report: &Report, files: &ReportFiles) {
    let failed: Vec<(u64, String, String)> = report
        .rows
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| (r.row, r.key.clone(), r.reason.clone()))
        .collect();
    log_end_with(report, &failed, files);
}

/// [`log_end`] for a report whose rows were written as they finished: `failed` names the first
/// failed rows (line, key, reason).
pub fn log_end_with(report: &Report, failed: &[(u64, String, String)], files: &ReportFiles) {
    for (line, key, reason) in failed {
        tracing::warn!("line {line}: {key} failed: {reason}");
    }
    let shown = failed.len() as u64;
    let all = report.summary.get(&Outcome::Failed).copied().unwrap_or(0);
    if all > shown {
        tracing::warn!("and {} more failed rows: see the report", all - shown);
    }
    if let Some(at) = report.email_budget_frees_at {
        tracing::info!(
            "{} invitations deferred by the email budget; it frees up from {}",
            report.summary[&Outcome::Deferred],
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    }
    tracing::info!("{}", one_line(report));
    tracing::info!("report: {}", files.listed());
}

/// What `status` says on stderr at the end.
pub fn log_status_end(report: &StatusReport, files: &ReportFiles, newly_path: &Path) {
    let s = |standing| report.summary.get(&standing).copied().unwrap_or(0);
    tracing::info!(
        "{} providers: {} newly confirmed, {} confirmed, {} pending, {} expired, {} attention, {} not invited; {:.2} quota-seconds",
        report.rows.len(),
        s(Standing::NewlyConfirmed),
        s(Standing::Confirmed),
        s(Standing::Pending),
        s(Standing::Expired),
        s(Standing::Attention),
        s(Standing::NotInvited),
        report.quota_seconds
    );
    tracing::info!(
        "report: {}; newly confirmed: {}",
        files.listed(),
        newly_path.display()
    );
}

/// Writes `doctor`'s providers as CSV (UTF-8 with BOM), formula-looking cells escaped.
pub fn write_doctor_csv<W: Write>(
    mut out: W,
    providers: &[crate::help::Examined],
) -> std::io::Result<()> {
    out.write_all("\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "id",
        "username",
        "verdict",
        "remedy",
        "status",
        "enabled",
        "email",
        "email_verified",
        "phone_number",
        "phone_number_verified",
        "invitations",
        "temp_password_expires_at",
        "forgot_password_works",
        "budget_spent",
    ])?;
    let b = |v: Option<bool>| v.map(|b| b.to_string()).unwrap_or_default();
    for p in providers {
        let record = [
            p.id.clone(),
            p.username.clone().unwrap_or_default(),
            p.verdict.as_str().to_string(),
            p.remedy.clone(),
            p.status.clone().unwrap_or_default(),
            b(p.enabled),
            p.email.clone().unwrap_or_default(),
            b(p.email_verified),
            p.phone_number.clone().unwrap_or_default(),
            b(p.phone_number_verified),
            p.invitations.len().to_string(),
            time(&p.temp_password_expires_at),
            p.forgot_password_works.to_string(),
            p.budget_spent.to_string(),
        ];
        w.write_record(record.iter().map(|c| escape_cell(c).into_owned()))?;
    }
    w.flush()
}

/// The report's files, created (empty) before any work so a bad path fails first: the JSON, the
/// CSV and, for `run` and `status`, the page (`<run-id>.html`, see [`crate::page`]).
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub json: PathBuf,
    pub csv: PathBuf,
    pub html: Option<PathBuf>,
}

impl ReportFiles {
    /// Creates the directory and the JSON and CSV files now.
    pub fn open(dir: &Path, run_id: &str) -> Result<Self, Error> {
        Self::create(dir, run_id, false)
    }

    /// [`ReportFiles::open`], and the page too.
    pub fn open_with_page(dir: &Path, run_id: &str) -> Result<Self, Error> {
        Self::create(dir, run_id, true)
    }

    fn create(dir: &Path, run_id: &str, page: bool) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("cannot create report directory", dir, e))?;
        // Absolute paths, so the names printed at the end work from any directory.
        let dir = &std::fs::canonicalize(dir)
            .map_err(|e| Error::io("cannot open report directory", dir, e))?;
        let files = ReportFiles {
            json: dir.join(format!("{run_id}.json")),
            csv: dir.join(format!("{run_id}.csv")),
            html: page.then(|| dir.join(format!("{run_id}.html"))),
        };
        for path in files.paths() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Error::io("cannot create report file", path, e))?;
        }
        Ok(files)
    }

    /// Every file of the report.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.json, &self.csv].into_iter().chain(&self.html)
    }

    /// The files' names for a log line: "a.json, a.csv and a.html".
    pub fn listed(&self) -> String {
        let names: Vec<String> = self.paths().map(|p| p.display().to_string()).collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// The CSV's file name, as the page names it.
    pub fn csv_name(&self) -> String {
        self.csv
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Removes the files if nothing was written to them (a run that stopped before any work).
    pub fn discard_if_empty(&self) {
        for path in self.paths() {
            if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Writes a run's report to both files.
    pub fn write(&self, report: &Report) -> Result<(), Error> {
        self.write_with(
            &|f| {
                serde_json::to_writer_pretty(&mut *f, report).map_err(std::io::Error::other)?;
                f.write_all(b"\n")
            },
            &|f| write_csv(&mut *f, &report.rows),
        )
    }

    /// Writes `status`'s report to both files, and its newly confirmed providers to
    /// `<run-id>-newly-confirmed.csv`; returns that file's path.
    pub fn write_status(&self, report: &StatusReport, run_id: &str) -> Result<PathBuf, Error> {
        let newly = self
            .json
            .with_file_name(format!("{run_id}-newly-confirmed.csv"));
        self.write_with(
            &|f| {
                serde_json::to_writer_pretty(&mut *f, report).map_err(std::io::Error::other)?;
                f.write_all(b"\n")
            },
            &|f| write_status_csv(&mut *f, &report.rows),
        )?;
        write_atomic(&newly, &|f| {
            write_status_csv(&mut *f, &report.newly_confirmed)
        })?;
        if let Some(html) = &self.html {
            let page = crate::page::status_page(report, &self.csv_name());
            write_atomic(html, &|f| crate::page::render(&page, f))?;
        }
        Ok(newly)
    }

    /// Writes `doctor`'s report to both files.
    pub fn write_doctor(&self, report: &crate::help::DoctorReport) -> Result<(), Error> {
        self.write_with(
            &|f| {
                serde_json::to_writer_pretty(&mut *f, report).map_err(std::io::Error::other)?;
                f.write_all(b"\n")
            },
            &|f| write_doctor_csv(&mut *f, &report.providers),
        )
    }

    /// Writes both files with the given writers.
    pub fn write_with(&self, json: &WriteFn<'_>, csv: &WriteFn<'_>) -> Result<(), Error> {
        write_atomic(&self.json, json)?;
        write_atomic(&self.csv, csv)
    }
}

/// Something that writes a whole file.
pub type WriteFn<'a> = dyn Fn(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()> + 'a;

/// Writes a file through a temporary name and a rename, so a reader never sees half of it. The
/// temporary name is the process's own, and goes away if the write fails: no half-written file
/// is left behind under either name.
pub fn write_atomic(path: &Path, f: &WriteFn<'_>) -> Result<(), Error> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let file =
        std::fs::File::create(&tmp).map_err(|e| Error::io("cannot write report", &tmp, e))?;
    // Serializers write in small pieces: one syscall each without a buffer.
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let written = f(&mut out)
        .and_then(|_| out.into_inner().map_err(|e| e.into_error()))
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::io("cannot write report", path, e))
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| Error::io("cannot write report", path, e))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_that_fails_half_way_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.html");
        let failed = write_atomic(&path, &|f| {
            use std::io::Write;
            f.write_all(b"<html>")?;
            Err(std::io::Error::other("the page could not be rendered"))
        });
        assert!(failed.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        write_atomic(&path, &|f| {
            use std::io::Write;
            f.write_all(b"<html></html>")
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"<html></html>");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn row(n: u64, outcome: Outcome) -> RowReport {
        RowReport {
            row: n,
            key: format!("p{n}@example.com"),
            username: Some(format!("p{n}@example.com")),
            email: Some(format!("p{n}@example.com")),
            name: Some(format!("山田 {n}")),
            action: Act::Create,
            outcome,
            reason: "created".into(),
            changed: Vec::new(),
            status_before: None,
            status_after: Some(UserStatus::ForceChangePassword),
            temp_password_expires_at: None,
            attempts: 1,
            error_code: None,
            error_message: None,
            deferral: None,
        }
    }

    #[test]
    fn formula_cells_are_escaped_and_others_left_alone() {
        assert_eq!(escape_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(escape_cell("+81 90"), "'+81 90");
        assert_eq!(escape_cell("-1"), "'-1");
        assert_eq!(escape_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(escape_cell("\tx"), "'\tx");
        assert_eq!(escape_cell("山田 太郎"), "山田 太郎");
        assert_eq!(escape_cell("a=b"), "a=b");
        assert_eq!(escape_cell(""), "");
    }

    #[test]
    fn csv_has_the_header_the_rows_and_escapes() {
        let mut r = row(2, Outcome::Invalid);
        r.reason = "=cmd|' /C calc'!A0".into();
        let mut buf = Vec::new();
        write_csv(&mut buf, &[r, row(3, Outcome::Created)]).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "\u{feff}row,key,username,email,action,outcome,reason,status_before,status_after,temp_password_expires_at,attempts,error_code,error_message,changed,name"
        );
        assert_eq!(
            lines.next().unwrap(),
            "2,p2@example.com,p2@example.com,p2@example.com,create,invalid,'=cmd|' /C calc'!A0,,FORCE_CHANGE_PASSWORD,,1,,,,山田 2"
        );
        assert!(lines.next().unwrap().starts_with("3,p3@example.com"));
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn summary_counts_every_outcome() {
        let rows = [
            row(2, Outcome::Created),
            row(3, Outcome::Created),
            row(4, Outcome::Invalid),
        ];
        let s = summarize(&rows);
        assert_eq!(s[&Outcome::Created], 2);
        assert_eq!(s[&Outcome::Invalid], 1);
        assert_eq!(s[&Outcome::Failed], 0);
        assert_eq!(s.len(), Outcome::ALL.len());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["created"], 2, "keyed by the outcome's name: {json}");
    }

    #[test]
    fn how_a_run_ended() {
        let end = |rows: &[RowReport], interrupted| ending(&summarize(rows), interrupted);
        assert_eq!(
            end(
                &[row(2, Outcome::Created), row(3, Outcome::Deferred)],
                false
            ),
            Ending::Settled
        );
        assert_eq!(end(&[row(2, Outcome::Attention)], false), Ending::Settled);
        assert_eq!(
            end(&[row(2, Outcome::Created), row(3, Outcome::Failed)], false),
            Ending::RowsFailed
        );
        assert_eq!(end(&[row(2, Outcome::Invalid)], false), Ending::RowsFailed);
        assert_eq!(end(&[row(2, Outcome::Created)], true), Ending::Interrupted);
    }

    #[test]
    fn the_page_is_one_of_the_files_listed_and_discarded_with_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let files = ReportFiles::open_with_page(dir.path(), "r1").unwrap();
        let html = files.html.clone().expect("a page");
        assert!(html.exists());
        assert!(
            files
                .listed()
                .ends_with(&format!("r1.csv and {}", html.display()))
        );
        files.discard_if_empty();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let plain = ReportFiles::open(dir.path(), "r2").unwrap();
        assert!(plain.html.is_none());
        assert!(
            plain
                .listed()
                .ends_with(&format!(" and {}", plain.csv.display())),
            "{}",
            plain.listed()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn report_files_refuse_to_overwrite_and_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let files = ReportFiles::open(dir.path(), "r1").unwrap();
        assert!(ReportFiles::open(dir.path(), "r1").is_err());
        let now = Utc::now();
        let rows = vec![row(2, Outcome::Created)];
        let report = Report {
            summary: summarize(&rows),
            rows,
            ..Report::empty("r1", now, now)
        };
        files.write(&report).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
        assert_eq!(json["summary"]["created"], 1);
        assert_eq!(json["rows"][0]["action"], "create");
        assert_eq!(json["rows"][0]["status_after"], "FORCE_CHANGE_PASSWORD");
        assert!(json["rows"][0].get("deferral").is_none());
        assert_eq!(json["rows"][0]["outcome"], "created");
        assert_eq!(json["rows"][0]["row"], 2);
        assert!(
            one_line(&report).contains("1 created"),
            "{}",
            one_line(&report)
        );
    }
}
