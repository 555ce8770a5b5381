//! The metrics file (`--metrics-file`): the Prometheus text format node_exporter's textfile
//! collector serves, written after every `run` and `status` by replacing the file at once (a
//! temporary file in the same directory, then a rename) under a lock beside it, so that `run`
//! and `status` may share one file: each rewrites only its own series and keeps the other's,
//! and the last success survives a failed run. Must not read anything but the file it writes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{End, Family, seconds};

/// Which command writes a metric's series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Both do, each under its own `command` label.
    Each,
    /// Only this command does; the series carry no `command` label.
    Only(&'static str),
}

/// One metric: its name, what it means, and who writes it. Every one is a gauge: each run
/// replaces the figures of the run before.
struct Metric {
    name: &'static str,
    help: &'static str,
    owner: Owner,
}

macro_rules! metrics {
    ($($id:ident = $name:literal, $owner:expr, $help:literal;)*) => {
        $(const $id: &str = $name;)*
        const METRICS: &[Metric] = &[$(Metric { name: $name, help: $help, owner: $owner }),*];
    };
}

metrics! {
    START = "cognito_onboard_last_run_start_timestamp_seconds", Owner::Each,
        "When the last run of the command started, in seconds since the epoch.";
    END = "cognito_onboard_last_run_end_timestamp_seconds", Owner::Each,
        "When the last run of the command ended, in seconds since the epoch.";
    DURATION = "cognito_onboard_last_run_duration_seconds", Owner::Each,
        "How long the last run of the command took.";
    EXIT = "cognito_onboard_last_run_exit_code", Owner::Each,
        "The last run's exit code: 0 settled, 1 aborted or interrupted, 3 some rows failed, 5 --absent disable held back by its cap (4, another run holds the state, is never written).";
    SUCCESS = "cognito_onboard_last_success_timestamp_seconds", Owner::Each,
        "When the last run that exited 0 ended, in seconds since the epoch (0: none yet); kept across failed runs.";
    ROWS = "cognito_onboard_last_run_rows", Owner::Only("run"),
        "The last run's rows by outcome.";
    DEFERRED = "cognito_onboard_last_run_deferred_rows", Owner::Only("run"),
        "The last run's rows deferred to a later run, by cause: budget (the tool's share of the message budget), message_limit (Cognito's daily limit), not_started and stopped (the run was stopped), busy (the shared state was busy with the provider).";
    BUDGET_FREES = "cognito_onboard_email_budget_frees_timestamp_seconds", Owner::Only("run"),
        "When the message budget frees up for the rows that wait on it, in seconds since the epoch (0: no row waits on it).";
    PROVIDERS = "cognito_onboard_providers", Owner::Only("status"),
        "The onboarding funnel over the providers the tool invited, as the last status read it: invited, and of them confirmed, pending, expired and attention.";
    CALLS = "cognito_onboard_last_run_calls", Owner::Each,
        "Calls the last run made to AWS, by quota category (StateTable: a DynamoDB state's).";
    THROTTLES = "cognito_onboard_last_run_throttles", Owner::Each,
        "Calls of the last run that AWS throttled, by quota category.";
    BLOCKED = "cognito_onboard_budget_blocked_seconds", Owner::Each,
        "How long nothing could be sent because of the message budget, as of the last run: every run in that time had invitations waiting on the budget and sent none (0: not blocked).";
    EXPIRED = "cognito_onboard_expired_providers", Owner::Each,
        "Providers still pending on an invitation that has expired, as the last run saw them.";
    EXPIRED_RUNS = "cognito_onboard_expired_pending_runs", Owner::Each,
        "Runs of `run` since the oldest of those expiries: how many runs the longest-waiting provider has stayed pending past its expiry (0: none expired).";
}

/// One sample: its metric, its labels in order, its value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    metric: &'static str,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes the command's series into the file at `path`, keeping every other series in it.
pub fn write(path: &Path, end: &End<'_>) -> std::io::Result<()> {
    let (dir, name) = split(path)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!(".{name}.lock")))?;
    // Two commands sharing the file (run and status, an hourly and a daily job) must not each
    // keep the file as it was before the other wrote.
    lock.lock()?;
    let before = match fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let text = render(&merge(before, end));
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn split(path: &Path) -> std::io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| std::io::Error::other("the metrics file needs a file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// The file's samples after this command's end: the ones it does not own as they were, its
/// own replaced, and its last success carried over when this run did not succeed.
fn merge(before: Vec<Sample>, end: &End<'_>) -> Vec<Sample> {
    let mine = |s: &Sample| {
        s.label("pool") == Some(end.pool)
            && match s.label("command") {
                Some(command) => command == end.command,
                None => matches!(owner(s.metric), Some(Owner::Only(c)) if c == end.command),
            }
    };
    let last_success = before
        .iter()
        .find(|s| s.metric == SUCCESS && mine(s))
        .map(|s| s.value);
    let mut out: Vec<Sample> = before.into_iter().filter(|s| !mine(s)).collect();
    out.extend(series(end, last_success));
    out
}

fn owner(metric: &str) -> Option<Owner> {
    METRICS.iter().find(|m| m.name == metric).map(|m| m.owner)
}

/// This command's series.
fn series(end: &End<'_>, last_success: Option<f64>) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut push = |metric: &'static str, extra: &[(&str, &str)], value: f64| {
        let mut labels = vec![("pool".to_string(), end.pool.to_string())];
        if owner(metric) == Some(Owner::Each) {
            labels.push(("command".into(), end.command.into()));
        }
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        out.push(Sample {
            metric,
            labels,
            value,
        });
    };
    push(START, &[], seconds(end.started_at));
    push(END, &[], seconds(end.finished_at));
    push(DURATION, &[], end.duration_seconds());
    push(EXIT, &[], f64::from(end.exit_code));
    let success = if end.exit_code == 0 {
        seconds(end.finished_at)
    } else {
        last_success.unwrap_or(0.0)
    };
    push(SUCCESS, &[], success);
    let Some(f) = end.figures else {
        return out;
    };
    for figure in f.each() {
        let (metric, label) = match figure.family {
            Family::Rows => (ROWS, "outcome"),
            Family::Deferred => (DEFERRED, "cause"),
            Family::BudgetFrees => (BUDGET_FREES, ""),
            Family::Providers => (PROVIDERS, "stage"),
            Family::Calls => (CALLS, "category"),
            Family::Throttles => (THROTTLES, "category"),
            Family::BudgetBlocked => (BLOCKED, ""),
            Family::Expired => (EXPIRED, ""),
            Family::ExpiredRuns => (EXPIRED_RUNS, ""),
        };
        match figure.part {
            Some(part) => push(metric, &[(label, part)], figure.value),
            None => push(metric, &[], figure.value),
        }
    }
    out
}

/// The file: each metric's `# HELP` and `# TYPE`, then its samples, in the catalog's order.
fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for metric in METRICS {
        let mut these: Vec<&Sample> = samples.iter().filter(|s| s.metric == metric.name).collect();
        if these.is_empty() {
            continue;
        }
        these.sort_by(|a, b| a.labels.cmp(&b.labels));
        out.push_str(&format!(
            "# HELP {} {}\n",
            metric.name,
            escape_help(metric.help)
        ));
        out.push_str(&format!("# TYPE {} gauge\n", metric.name));
        for s in these {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            out.push_str(&format!(
                "{}{{{}}} {}\n",
                s.metric,
                labels.join(","),
                s.value
            ));
        }
    }
    out
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The samples of a file this module wrote; a line it cannot read, or of a metric it does not
/// know, is dropped (the file is rewritten whole).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let open = line.find('{')?;
    let metric = METRICS.iter().find(|m| m.name == &line[..open])?.name;
    let mut labels = Vec::new();
    let mut chars = line[open + 1..].char_indices();
    let rest_at;
    loop {
        let mut key = String::new();
        let mut c = chars.next()?;
        if c.1 == '}' {
            rest_at = open + 1 + c.0 + 1;
            break;
        }
        if c.1 == ',' {
            c = chars.next()?;
            if c.1 == '}' {
                rest_at = open + 1 + c.0 + 1;
                break;
            }
        }
        while c.1 != '=' {
            key.push(c.1);
            c = chars.next()?;
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '"' => break,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        labels.push((key, value));
    }
    let value = line[rest_at..].split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        metric,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use crate::monitor::{Figures, Stall};
    use crate::report::model::{Deferral, Outcome, Report};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn run_figures() -> Figures {
        let mut report = Report::empty("r1", t("2026-12-01T10:00:00Z"), t("2026-12-01T10:00:30Z"));
        report.summary = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
        report.summary.insert(Outcome::Created, 2);
        report.summary.insert(Outcome::Deferred, 3);
        report.calls = BTreeMap::from([("UserCreation".into(), 5), ("UserRead".into(), 2)]);
        report.throttles = BTreeMap::from([("UserCreation".into(), 1)]);
        report.email_budget_frees_at = Some(t("2026-12-02T09:00:00Z"));
        report.stalled = Some(Stall {
            budget_blocked_since: None,
            budget_blocked_seconds: 0.0,
            expired: 1,
            oldest_expiry: Some(t("2026-11-20T00:00:00Z")),
            expired_for_runs: 7,
        });
        Figures::of_run(&report, &BTreeMap::from([(Deferral::Budget, 3)]))
    }

    fn end<'a>(command: &'a str, exit_code: u8, figures: Option<&'a Figures>) -> End<'a> {
        End {
            run_id: "r1",
            command,
            pool: "eu-west-1_x",
            started_at: t("2026-12-01T10:00:00Z"),
            finished_at: t("2026-12-01T10:00:30.5Z"),
            exit_code,
            failure: None,
            figures,
        }
    }

    fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
    }

    #[test]
    fn a_run_writes_its_figures_with_help_and_type_and_reads_back_the_same() {
        let f = run_figures();
        let text = render(&merge(Vec::new(), &end("run", 0, Some(&f))));
        assert!(text.contains("# TYPE cognito_onboard_last_run_rows gauge\n"));
        assert!(
            text.contains(
                "cognito_onboard_last_run_rows{pool=\"eu-west-1_x\",outcome=\"created\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "cognito_onboard_last_run_duration_seconds{pool=\"eu-west-1_x\",command=\"run\"} 30.5\n"
        ));
        let back = parse(&text);
        assert_eq!(render(&back), text, "what it writes it reads back");
        assert_eq!(value(&back, DEFERRED, &[("cause", "budget")]), Some(3.0));
        assert_eq!(
            value(&back, THROTTLES, &[("category", "UserCreation")]),
            Some(1.0)
        );
        assert_eq!(
            value(&back, THROTTLES, &[("category", "UserRead")]),
            Some(0.0)
        );
        assert_eq!(value(&back, EXPIRED_RUNS, &[("command", "run")]), Some(7.0));
        assert_eq!(
            value(&back, SUCCESS, &[("command", "run")]),
            Some(1796119230.5)
        );
        assert_eq!(value(&back, BUDGET_FREES, &[]), Some(1796202000.0));
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_the_other_commands_series() {
        let f = run_figures();
        let status = Figures {
            funnel: Some(crate::report::status::Funnel {
                invited: 4,
                confirmed: 1,
                pending: 2,
                expired: 1,
                attention: 0,
                median_hours_to_confirm: None,
            }),
            ..Figures::default()
        };
        let first = merge(Vec::new(), &end("run", 0, Some(&f)));
        let both = merge(first, &end("status", 0, Some(&status)));
        let failed = End {
            failure: Some("Cognito error"),
            finished_at: t("2026-12-01T11:00:00Z"),
            ..end("run", 1, None)
        };
        let after = parse(&render(&merge(both, &failed)));
        assert_eq!(value(&after, EXIT, &[("command", "run")]), Some(1.0));
        assert_eq!(
            value(&after, SUCCESS, &[("command", "run")]),
            Some(1796119230.5)
        );
        assert_eq!(
            value(&after, ROWS, &[("outcome", "created")]),
            None,
            "no figures: none kept"
        );
        assert_eq!(value(&after, PROVIDERS, &[("stage", "pending")]), Some(2.0));
        assert_eq!(value(&after, EXIT, &[("command", "status")]), Some(0.0));
        let never = merge(Vec::new(), &failed);
        assert_eq!(value(&never, SUCCESS, &[("command", "run")]), Some(0.0));
    }

    #[test]
    fn another_pools_series_are_kept_and_label_values_are_escaped() {
        let f = run_figures();
        let other = End {
            pool: "eu-west-1_\"odd\\\n",
            ..end("run", 3, Some(&f))
        };
        let text = render(&merge(Vec::new(), &other));
        assert!(text.contains("pool=\"eu-west-1_\\\"odd\\\\\\n\""), "{text}");
        let both = parse(&render(&merge(parse(&text), &end("run", 0, Some(&f)))));
        assert_eq!(
            value(&both, EXIT, &[("pool", "eu-west-1_\"odd\\\n")]),
            Some(3.0)
        );
        assert_eq!(value(&both, EXIT, &[("pool", "eu-west-1_x")]), Some(0.0));
    }

    #[test]
    fn the_file_is_replaced_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cognito_onboard.prom");
        let f = run_figures();
        write(&path, &end("run", 0, Some(&f))).unwrap();
        write(&path, &end("run", 3, Some(&f))).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(
            "cognito_onboard_last_run_exit_code{pool=\"eu-west-1_x\",command=\"run\"} 3\n"
        ));
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        assert!(write(&dir.path().join("missing/x.prom"), &end("run", 0, None)).is_err());
    }

    #[test]
    fn every_metric_is_named_in_the_conventional_way() {
        for m in METRICS {
            assert!(m.name.starts_with("cognito_onboard_"), "{}", m.name);
            assert!(!m.name.ends_with("_total"), "a gauge: {}", m.name);
            assert!(!m.help.is_empty());
        }
    }
}
