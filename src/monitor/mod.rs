//! What a scheduled command tells the systems that watch it: a dead-man's-switch ping
//! ([`ping`]), a Prometheus textfile ([`textfile`]), a CloudWatch EMF record ([`emf`]) and a
//! termination message, all from one [`End`]; and how long a cohort has not moved ([`stall`]).
//! Must never change how a command ends: a monitor that fails is a warning. Must never carry a
//! name, an email or a password: [`Figures`] holds counts and times only.

pub mod emf;
pub mod ping;
pub mod stall;
pub mod textfile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::Error;
use crate::report::model::{Deferral, Outcome, Report};
use crate::report::status::{Funnel, StatusReport};

pub use stall::Stall;

/// Where a scheduled command's monitors are: `--ping-url`, `--metrics-file`, `--emf` and
/// `--termination-log` (or the settings of the same names).
#[derive(Debug, Clone, Default)]
pub struct Monitoring {
    pub ping_url: Option<String>,
    pub metrics_file: Option<PathBuf>,
    pub emf: bool,
    pub termination_log: Option<PathBuf>,
}

/// What a command's run added up to: counts and times, never a name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Rows by outcome (`run` and the help desk's writes), every outcome present.
    pub rows: BTreeMap<&'static str, u64>,
    /// Deferred rows by cause, every cause present (where rows are counted).
    pub deferred: BTreeMap<&'static str, u64>,
    /// Providers by standing (`status`).
    pub standings: BTreeMap<&'static str, u64>,
    /// `status`'s funnel over the providers the tool invited.
    pub funnel: Option<Funnel>,
    /// When the message budget frees up, where rows wait on it.
    pub email_budget_frees_at: Option<DateTime<Utc>>,
    /// Calls that reached AWS, and throttles, by quota category.
    pub calls: BTreeMap<String, u64>,
    pub throttles: BTreeMap<String, u64>,
    pub stall: Option<Stall>,
}

impl Figures {
    /// A run's (or a help-desk write's) figures, from its report and its deferrals by cause.
    pub fn of_run(report: &Report, deferred: &BTreeMap<Deferral, u64>) -> Figures {
        Figures {
            rows: Outcome::ALL
                .iter()
                .map(|o| (o.as_str(), report.summary.get(o).copied().unwrap_or(0)))
                .collect(),
            deferred: Deferral::ALL
                .iter()
                .map(|d| (d.as_str(), deferred.get(d).copied().unwrap_or(0)))
                .collect(),
            email_budget_frees_at: report.email_budget_frees_at,
            calls: report.calls.clone(),
            throttles: report.throttles.clone(),
            stall: report.stalled,
            ..Figures::default()
        }
    }

    /// `status`'s figures.
    pub fn of_status(report: &StatusReport) -> Figures {
        Figures {
            standings: report
                .summary
                .iter()
                .map(|(s, n)| (s.as_str(), *n))
                .collect(),
            funnel: Some(report.funnel.clone()),
            calls: report.calls.clone(),
            stall: report.stalled,
            ..Figures::default()
        }
    }

    /// The counts the state records for the run and the ping carries: a JSON object of the
    /// rows by outcome with `deferred_by` (causes with rows), or of the providers by standing.
    /// [`stall`] reads it back.
    pub fn counts(&self) -> String {
        let mut out = serde_json::Map::new();
        if self.rows.is_empty() {
            for (k, n) in &self.standings {
                out.insert((*k).into(), (*n).into());
            }
        } else {
            for (k, n) in &self.rows {
                out.insert((*k).into(), (*n).into());
            }
            let by: serde_json::Map<String, serde_json::Value> = self
                .deferred
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| ((*k).to_string(), (*n).into()))
                .collect();
            if !by.is_empty() {
                out.insert(stall::DEFERRED_BY.into(), by.into());
            }
        }
        serde_json::Value::Object(out).to_string()
    }
}

/// What a figure counts: each monitor names it in its own way (a metric and a label in the
/// metrics file, a metric name in the EMF record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Rows by outcome (the part is the outcome).
    Rows,
    /// Deferred rows by cause.
    Deferred,
    /// When the message budget frees up, in seconds since the epoch (0: no row waits on it).
    BudgetFrees,
    /// `status`'s funnel, by stage.
    Providers,
    /// Calls to AWS, by quota category.
    Calls,
    /// Throttled calls, by quota category.
    Throttles,
    /// Seconds nothing could be sent because of the budget.
    BudgetBlocked,
    /// Providers pending past their expiry.
    Expired,
    /// Runs the longest-waiting of them has waited.
    ExpiredRuns,
}

/// One figure: what it counts, the part of it (an outcome, a cause, a stage, a category), its
/// value.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure<'a> {
    pub family: Family,
    pub part: Option<&'a str>,
    pub value: f64,
}

impl<'a> Figure<'a> {
    fn new(family: Family, part: Option<&'a str>, value: f64) -> Figure<'a> {
        Figure {
            family,
            part,
            value,
        }
    }
}

impl Figures {
    /// Every figure, in the order the monitors show them: rows and their causes and the budget
    /// (`run`), the funnel (`status`), calls and throttles for each category either has, and
    /// the stall.
    pub fn each(&self) -> Vec<Figure<'_>> {
        let mut out = Vec::new();
        if !self.rows.is_empty() {
            for (outcome, n) in &self.rows {
                out.push(Figure::new(Family::Rows, Some(outcome), *n as f64));
            }
            for (cause, n) in &self.deferred {
                out.push(Figure::new(Family::Deferred, Some(cause), *n as f64));
            }
            let frees = self.email_budget_frees_at.map(seconds).unwrap_or(0.0);
            out.push(Figure::new(Family::BudgetFrees, None, frees));
        }
        if let Some(f) = &self.funnel {
            for (stage, n) in [
                ("invited", f.invited),
                ("confirmed", f.confirmed),
                ("pending", f.pending),
                ("expired", f.expired),
                ("attention", f.attention),
            ] {
                out.push(Figure::new(Family::Providers, Some(stage), n as f64));
            }
        }
        let categories: std::collections::BTreeSet<&String> =
            self.calls.keys().chain(self.throttles.keys()).collect();
        for category in categories {
            let n = |m: &BTreeMap<String, u64>| m.get(category).copied().unwrap_or(0) as f64;
            out.push(Figure::new(Family::Calls, Some(category), n(&self.calls)));
            out.push(Figure::new(
                Family::Throttles,
                Some(category),
                n(&self.throttles),
            ));
        }
        if let Some(stall) = &self.stall {
            out.push(Figure::new(
                Family::BudgetBlocked,
                None,
                stall.budget_blocked_seconds,
            ));
            out.push(Figure::new(Family::Expired, None, stall.expired as f64));
            out.push(Figure::new(
                Family::ExpiredRuns,
                None,
                stall.expired_for_runs as f64,
            ));
        }
        out
    }
}

/// Seconds since the epoch, to the millisecond: how every monitor gives a time.
pub fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// How a command ended, as every monitor is told it.
#[derive(Debug, Clone)]
pub struct End<'a> {
    pub run_id: &'a str,
    pub command: &'a str,
    pub pool: &'a str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub exit_code: u8,
    /// What stopped the command, in a word or two ([`Error::kind`]); None when it ran to its
    /// end.
    pub failure: Option<&'static str>,
    /// What it added up to; None when it stopped before it counted anything.
    pub figures: Option<&'a Figures>,
}

impl End<'_> {
    /// The ping's body: the counts, or the kind of failure.
    pub fn counts(&self) -> String {
        match (self.figures, self.failure) {
            (Some(f), _) => f.counts(),
            (None, Some(kind)) => kind.to_string(),
            (None, None) => String::new(),
        }
    }

    /// One line a person reads (Kubernetes shows it as the pod's termination message): the
    /// exit code, the counts that are not zero, the deferrals' causes and when the budget frees
    /// up; or the kind of failure.
    pub fn line(&self) -> String {
        let mut line = format!("{} exit {}", self.command, self.exit_code);
        if let Some(kind) = self.failure {
            line.push_str(&format!(": {kind}"));
        }
        let Some(f) = self.figures else {
            return line;
        };
        let nonzero = |m: &BTreeMap<&'static str, u64>| {
            m.iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
        };
        let counts = if f.rows.is_empty() {
            nonzero(&f.standings)
        } else {
            nonzero(&f.rows)
        };
        line.push_str(&format!(
            ": {}",
            if counts.is_empty() {
                "nothing to do".to_string()
            } else {
                counts.join(", ")
            }
        ));
        let causes = nonzero(&f.deferred);
        if !causes.is_empty() {
            line.push_str(&format!(" (deferred: {})", causes.join(", ")));
        }
        if let Some(at) = f.email_budget_frees_at {
            line.push_str(&format!(
                "; the message budget frees up from {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        if let Some(stall) = &f.stall {
            for words in stall.words(self.finished_at) {
                line.push_str(&format!("; {words}"));
            }
        }
        line
    }

    fn duration_seconds(&self) -> f64 {
        (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0
    }
}

/// A command's monitors, opened with it.
pub struct Monitors {
    ping: Option<ping::Ping>,
    settings: Monitoring,
}

impl Monitors {
    /// The monitors `settings` names for the run `run_id`; a ping URL that is not http(s) is a
    /// configuration error, found before anything is done.
    pub fn new(settings: Option<&Monitoring>, run_id: &str) -> Result<Monitors, Error> {
        let settings = settings.cloned().unwrap_or_default();
        let ping = settings
            .ping_url
            .as_deref()
            .map(|url| ping::Ping::new(url, run_id))
            .transpose()?;
        Ok(Monitors { ping, settings })
    }

    /// The command holds the state and begins.
    pub async fn started(&self) {
        if let Some(ping) = &self.ping {
            ping.start().await;
        }
    }

    /// The command has ended: each monitor told, the local ones first (the ping may take a
    /// few seconds).
    pub async fn ended(&self, end: &End<'_>) {
        if let Some(path) = &self.settings.termination_log {
            write_termination_log(path, &end.line());
        }
        if let Some(path) = &self.settings.metrics_file
            && let Err(e) = textfile::write(path, end)
        {
            tracing::warn!("the metrics file was not written ({e}); the run goes on");
        }
        if self.settings.emf {
            emf::emit(end);
        }
        if let Some(ping) = &self.ping {
            ping.finish(end.exit_code, &end.counts()).await;
        }
    }

    /// The command was refused before it began (another run holds the state): only the
    /// termination message says so; the metrics and the check belong to the run that holds it.
    pub fn refused(&self, command: &str, e: &Error) {
        if let Some(path) = &self.settings.termination_log {
            write_termination_log(
                path,
                &format!("{command} exit {}: {}", e.exit_code(), e.kind()),
            );
        }
    }
}

/// Kubernetes reads at most 4096 bytes of a termination message.
const TERMINATION_MAX: usize = 4096;

fn write_termination_log(path: &Path, line: &str) {
    let mut text = line.to_string();
    if text.len() > TERMINATION_MAX - 1 {
        let mut cut = TERMINATION_MAX - 4;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text.push('\n');
    if let Err(e) = std::fs::write(path, text) {
        tracing::warn!(
            "the termination log {} was not written ({e})",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        let mut report = Report::empty(
            "r1",
            "2026-12-01T10:00:00Z".parse().unwrap(),
            "2026-12-01T10:00:30Z".parse().unwrap(),
        );
        report.summary = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
        report.summary.insert(Outcome::Created, 2);
        report.summary.insert(Outcome::Deferred, 3);
        let deferred = BTreeMap::from([(Deferral::Budget, 3)]);
        Figures::of_run(&report, &deferred)
    }

    #[test]
    fn the_counts_name_every_outcome_and_the_causes_that_had_rows() {
        let counts: serde_json::Value = serde_json::from_str(&figures().counts()).unwrap();
        assert_eq!(counts["created"], 2);
        assert_eq!(counts["failed"], 0);
        assert_eq!(counts["deferred_by"], serde_json::json!({"budget": 3}));
    }

    #[test]
    fn the_line_says_the_exit_code_the_counts_and_why_rows_wait() {
        let f = figures();
        let end = End {
            run_id: "r1",
            command: "run",
            pool: "eu-west-1_x",
            started_at: "2026-12-01T10:00:00Z".parse().unwrap(),
            finished_at: "2026-12-01T10:00:30Z".parse().unwrap(),
            exit_code: 0,
            failure: None,
            figures: Some(&f),
        };
        assert_eq!(
            end.line(),
            "run exit 0: 2 created, 3 deferred (deferred: 3 budget)"
        );
        let stopped = End {
            exit_code: 1,
            failure: Some("input error"),
            figures: None,
            ..end
        };
        assert_eq!(stopped.line(), "run exit 1: input error");
        assert_eq!(stopped.counts(), "input error");
    }

    #[test]
    fn a_termination_message_fits_what_kubernetes_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        write_termination_log(&path, &"日本".repeat(3000));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= TERMINATION_MAX, "{}", text.len());
        assert!(text.ends_with("…\n"));
    }
}
