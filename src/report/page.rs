//! The report page: `<run-id>.html`, one self-contained file for a person to open from a mail
//! attachment or a file share (summary, onboarding funnel, time to confirm, who needs an action,
//! the newly confirmed, the table). Renders from a report, pure; must not read the state, talk
//! to Cognito, or hold more than a page's worth of rows (a run's rows come one at a time).
//!
//! Nothing in the page can run: every value goes through [`Esc`], the page has no `<script>`,
//! and its Content-Security-Policy forbids scripts, so even a missed escape runs nothing. No
//! network either: inline CSS and SVG, system fonts only. No password: the reports carry none.
//!
//! Where a `run`'s row stands in the funnel ([`run_stage`]), at the run's end time `at`:
//!
//! | the row | stage |
//! |---|---|
//! | outcome `disabled` or `deleted` (offboarded: left its list, or revoked) | not in the funnel |
//! | outcome `attention` | attention |
//! | `status_after` CONFIRMED | confirmed |
//! | `status_after` FORCE_CHANGE_PASSWORD, `temp_password_expires_at` after `at` (or unknown) | pending |
//! | `status_after` FORCE_CHANGE_PASSWORD, `temp_password_expires_at` at or before `at` | expired |
//! | any other `status_after` (RESET_REQUIRED, UNCONFIRMED, ...) | attention |
//! | no `status_after` (invalid, failed before it was read, a dry run's create, a deferred create) | not in the funnel |
//!
//! `invited` is the sum of the four stages: every provider the run saw in the pool. A `status`
//! page takes the funnel from [`super::status::Funnel`] (invited: the providers this tool
//! invited). Time to confirm comes only from `status` (first invitation to when the tool first
//! saw the provider confirmed); a run's rows carry no confirmation times, and its page says so.

use std::borrow::Cow;
use std::fmt::{self, Display, Write as _};
use std::io::{self, Write};

use chrono::{DateTime, Utc};

use super::status::{Standing, StatusReport, StatusRow};
use crate::cognito::UserStatus;
use crate::report::{Outcome, Report, RowReport};

/// Rows of the full table on a page, at most; the CSV has every row.
pub const TABLE_CAP: usize = 10_000;
/// Rows of the "needs an action" and "newly confirmed" lists, at most.
pub const LIST_CAP: usize = 1_000;

/// HTML-escapes text for an element's content or a quoted attribute value: `& < > " '`.
pub struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `s` escaped (see [`Esc`]).
pub fn escape(s: &str) -> Cow<'_, str> {
    if s.contains(['&', '<', '>', '"', '\'']) {
        Esc(s).to_string().into()
    } else {
        s.into()
    }
}

/// A stage of the onboarding funnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Confirmed,
    Pending,
    Expired,
    Attention,
}

/// Where a `run`'s row stands in the funnel at `at` (the module's table); None: not in it.
pub fn run_stage(row: &RowReport, at: DateTime<Utc>) -> Option<Stage> {
    if matches!(row.outcome, Outcome::Disabled | Outcome::Deleted) {
        return None;
    }
    if row.outcome == Outcome::Attention {
        return Some(Stage::Attention);
    }
    match row.status_after.as_ref()? {
        UserStatus::Confirmed => Some(Stage::Confirmed),
        UserStatus::ForceChangePassword => match row.temp_password_expires_at {
            Some(t) if t <= at => Some(Stage::Expired),
            _ => Some(Stage::Pending),
        },
        _ => Some(Stage::Attention),
    }
}

/// The funnel's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunnelCounts {
    pub invited: u64,
    pub confirmed: u64,
    pub pending: u64,
    pub expired: u64,
    pub attention: u64,
}

impl FunnelCounts {
    fn add(&mut self, stage: Stage) {
        self.invited += 1;
        *match stage {
            Stage::Confirmed => &mut self.confirmed,
            Stage::Pending => &mut self.pending,
            Stage::Expired => &mut self.expired,
            Stage::Attention => &mut self.attention,
        } += 1;
    }

    fn bars(&self) -> [(&'static str, u64); 5] {
        [
            ("invited", self.invited),
            ("confirmed", self.confirmed),
            ("pending", self.pending),
            ("expired", self.expired),
            ("attention", self.attention),
        ]
    }
}

/// The histogram's buckets of time to confirm: label and upper bound in hours (exclusive).
pub const BUCKETS: [(&str, i64); 5] = [
    ("< 1 day", 24),
    ("1–2 days", 48),
    ("2–3 days", 72),
    ("3–7 days", 168),
    ("7 days or more", i64::MAX),
];

/// The bucket of a time to confirm, in seconds (negative times, a clock's doing, go first).
pub fn bucket(seconds: i64) -> usize {
    BUCKETS
        .iter()
        .position(|(_, hours)| seconds < hours.saturating_mul(3600))
        .unwrap_or(BUCKETS.len() - 1)
}

/// Rows kept up to a cap, and how many there were.
#[derive(Debug, Clone)]
pub struct Capped {
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<String>>,
    /// A class per kept row (an outcome or a standing, for its colour).
    pub classes: Vec<&'static str>,
    pub total: u64,
    cap: usize,
}

impl Capped {
    fn new(columns: &'static [&'static str], cap: usize) -> Self {
        Capped {
            columns,
            rows: Vec::new(),
            classes: Vec::new(),
            total: 0,
            cap,
        }
    }

    fn push(&mut self, class: &'static str, cells: impl FnOnce() -> Vec<String>) {
        self.total += 1;
        if self.rows.len() < self.cap {
            self.rows.push(cells());
            self.classes.push(class);
        }
    }

    /// What the page says when rows were left out, naming the file that has them all.
    pub fn cap_note(&self, file: &str) -> Option<String> {
        (self.total > self.rows.len() as u64).then(|| {
            format!(
                "the first {} of {} rows; every row is in {file}",
                thousands(self.rows.len() as u64),
                thousands(self.total)
            )
        })
    }
}

/// Everything a report page shows.
#[derive(Debug, Clone)]
pub struct Page {
    /// `run` or `status`.
    pub command: &'static str,
    pub run_id: String,
    pub pool_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Said first, in words: a dry run, an interrupted run.
    pub notes: Vec<String>,
    /// Counts by outcome (run) or standing (status), every one present.
    pub summary: Vec<(&'static str, u64)>,
    pub funnel: FunnelCounts,
    pub median_hours_to_confirm: Option<f64>,
    /// Counts per [`BUCKETS`]; None where the report has no confirmation times (a run).
    pub histogram: Option<[u64; BUCKETS.len()]>,
    pub needs_action: Capped,
    /// The help desk's questions listed on their own in the needs-action section, shown only
    /// where some provider is in them.
    pub asked: Asked,
    /// None on a run's page (`status` finds who is newly confirmed).
    pub newly_confirmed: Option<Capped>,
    pub table: Capped,
    /// The CSV with every row (a file name, next to the page).
    pub csv_name: String,
}

/// What the help desk will be asked, listed apart from the rest of what needs an action.
#[derive(Debug, Clone)]
pub struct Asked {
    /// Providers whose address SES drops (the account's suppression list).
    pub suppressed: Capped,
    /// Providers re-issued `--max-reissues` times without signing in.
    pub reissue_limit: Capped,
}

impl Asked {
    /// The lists of a `run` page (`line` first) or a `status` page.
    fn new(with_line: bool) -> Self {
        let (suppressed, limit) = match with_line {
            true => (RUN_SUPPRESSED_COLUMNS, RUN_LIMIT_COLUMNS),
            false => (&RUN_SUPPRESSED_COLUMNS[1..], &RUN_LIMIT_COLUMNS[1..]),
        };
        Asked {
            suppressed: Capped::new(suppressed, LIST_CAP),
            reissue_limit: Capped::new(limit, LIST_CAP),
        }
    }

    /// Lists a provider stuck as `stuck` says; `head`: who it is (its line on a run's page,
    /// key, name, email), made only when it is listed.
    fn add(
        &mut self,
        stuck: Option<&super::model::Stuck>,
        head: impl Fn() -> Vec<String>,
        expires: Option<DateTime<Utc>>,
        class: &'static str,
    ) {
        let head = || head().into_iter();
        match stuck {
            Some(super::model::Stuck::Suppressed(s)) => self.suppressed.push(class, || {
                head()
                    .chain([s.reason.as_str().to_string(), time(Some(s.since))])
                    .collect()
            }),
            Some(super::model::Stuck::ReissueLimit { reissues }) => {
                self.reissue_limit.push(class, || {
                    head()
                        .chain([reissues.to_string(), time(expires)])
                        .collect()
                })
            }
            None => {}
        }
    }
}

const RUN_SUPPRESSED_COLUMNS: &[&str] = &["line", "key", "name", "email", "suppressed", "since"];
const RUN_LIMIT_COLUMNS: &[&str] = &[
    "line",
    "key",
    "name",
    "email",
    "reissues",
    "password expired",
];

const RUN_COLUMNS: &[&str] = &[
    "line",
    "key",
    "name",
    "username",
    "email",
    "action",
    "outcome",
    "reason",
    "status after",
    "password expires",
    "attempts",
    "error",
];
const RUN_ACTION_COLUMNS: &[&str] = &["line", "key", "name", "outcome", "reason", "error"];
const STATUS_COLUMNS: &[&str] = &[
    "key",
    "name",
    "username",
    "email",
    "status",
    "standing",
    "reason",
    "first invited",
    "reissues",
    "password expires",
    "confirmed",
];
const STATUS_ACTION_COLUMNS: &[&str] = &["key", "name", "standing", "status", "reason"];
const NEWLY_COLUMNS: &[&str] = &[
    "key",
    "name",
    "username",
    "email",
    "first invited",
    "confirmed",
];

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The note a cohort that does not move gets, if it does not.
fn stalled(
    stall: Option<&super::model::Stall>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let words = stall?.words(now);
    (!words.is_empty()).then(|| format!("The cohort has stalled: {}.", words.join("; ")))
}

/// A `run`'s page, built as its rows are read back one at a time.
pub struct RunPage {
    page: Page,
}

impl RunPage {
    /// Starts the page of `report` (its `rows` empty; its summary final); `csv_name` is the
    /// CSV report's file name.
    pub fn new(report: &Report, csv_name: &str) -> Self {
        let mut notes = Vec::new();
        if report.dry_run {
            notes.push(
                "Dry run: nothing was written to Cognito; the outcomes say what a run would do."
                    .into(),
            );
        }
        if report.interrupted {
            notes.push(
                "The run was interrupted: rows not started are deferred to the next run.".into(),
            );
        }
        if let Some(at) = report.email_budget_frees_at {
            notes.push(format!(
                "The email budget is spent; deferred invitations can go out from {}.",
                time(Some(at))
            ));
        }
        notes.extend(stalled(report.stalled.as_ref(), report.finished_at));
        RunPage {
            page: Page {
                command: "run",
                run_id: report.run_id.clone(),
                pool_id: report.user_pool_id.clone(),
                started_at: report.started_at,
                finished_at: report.finished_at,
                notes,
                summary: Outcome::ALL
                    .iter()
                    .map(|o| (o.as_str(), report.summary.get(o).copied().unwrap_or(0)))
                    .collect(),
                funnel: FunnelCounts::default(),
                median_hours_to_confirm: None,
                histogram: None,
                needs_action: Capped::new(RUN_ACTION_COLUMNS, LIST_CAP),
                asked: Asked::new(true),
                newly_confirmed: None,
                table: Capped::new(RUN_COLUMNS, TABLE_CAP),
                csv_name: csv_name.to_string(),
            },
        }
    }

    /// Adds the next row, in line order.
    pub fn add(&mut self, r: &RowReport) {
        let page = &mut self.page;
        if let Some(stage) = run_stage(r, page.finished_at) {
            page.funnel.add(stage);
        }
        let class = r.outcome.as_str();
        page.asked.add(
            r.stuck.as_ref(),
            || {
                vec![
                    r.row.to_string(),
                    r.key.clone(),
                    opt(&r.name),
                    opt(&r.email),
                ]
            },
            r.temp_password_expires_at,
            class,
        );
        if matches!(
            r.outcome,
            Outcome::Attention | Outcome::Failed | Outcome::Invalid
        ) {
            page.needs_action.push(class, || {
                vec![
                    r.row.to_string(),
                    r.key.clone(),
                    opt(&r.name),
                    class.to_string(),
                    r.reason.clone(),
                    opt(&r.error_message),
                ]
            });
        }
        page.table.push(class, || {
            vec![
                r.row.to_string(),
                r.key.clone(),
                opt(&r.name),
                opt(&r.username),
                opt(&r.email),
                r.action.as_str().to_string(),
                class.to_string(),
                r.reason.clone(),
                r.status_after
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                time(r.temp_password_expires_at),
                r.attempts.to_string(),
                [r.error_code.as_deref(), r.error_message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": "),
            ]
        });
    }

    pub fn finish(self) -> Page {
        self.page
    }
}

fn status_cells(r: &StatusRow) -> Vec<String> {
    vec![
        r.key.clone(),
        opt(&r.name),
        opt(&r.username),
        opt(&r.email),
        opt(&r.status),
        r.standing.as_str().to_string(),
        r.reason.clone(),
        time(r.first_invited_at),
        r.reissues.to_string(),
        time(r.temp_password_expires_at),
        time(r.confirmed_at),
    ]
}

/// Why a provider of a `status` report needs an action, if one does: attention, expired,
/// unread, and the help desk's next calls (a pending invitation that expires within a day).
fn action(r: &StatusRow, now: DateTime<Utc>) -> Option<String> {
    if r.expires_soon(now) {
        return Some(format!(
            "expires within a day ({}): a reminder now saves a call (--on-expiring)",
            time(r.temp_password_expires_at)
        ));
    }
    matches!(
        r.standing,
        Standing::Attention | Standing::Expired | Standing::Unknown
    )
    .then(|| r.reason.clone())
}

/// A `status` report's page, built as the rows are classified: the histogram's bins and the
/// capped lists, never the rows.
pub struct StatusPage {
    now: DateTime<Utc>,
    histogram: [u64; BUCKETS.len()],
    needs_action: Capped,
    asked: Asked,
    table: Capped,
    newly: Capped,
}

impl StatusPage {
    /// `now`: what "expires within a day" is counted from.
    pub fn new(now: DateTime<Utc>) -> StatusPage {
        StatusPage {
            now,
            histogram: [0; BUCKETS.len()],
            needs_action: Capped::new(STATUS_ACTION_COLUMNS, LIST_CAP),
            asked: Asked::new(false),
            table: Capped::new(STATUS_COLUMNS, TABLE_CAP),
            newly: Capped::new(NEWLY_COLUMNS, LIST_CAP),
        }
    }

    pub fn add(&mut self, r: &StatusRow) {
        if let (Some(i), Some(c)) = (r.first_invited_at, r.confirmed_at)
            && c >= i
        {
            self.histogram[bucket((c - i).num_seconds())] += 1;
        }
        let class = r.standing.as_str();
        self.asked.add(
            r.stuck.as_ref(),
            || vec![r.key.clone(), opt(&r.name), opt(&r.email)],
            r.temp_password_expires_at,
            class,
        );
        if let Some(reason) = action(r, self.now) {
            self.needs_action.push(class, || {
                vec![
                    r.key.clone(),
                    opt(&r.name),
                    class.to_string(),
                    opt(&r.status),
                    reason,
                ]
            });
        }
        self.table.push(class, || status_cells(r));
        if r.standing == Standing::NewlyConfirmed {
            self.newly.push("newly_confirmed", || {
                vec![
                    r.key.clone(),
                    opt(&r.name),
                    opt(&r.username),
                    opt(&r.email),
                    time(r.first_invited_at),
                    time(r.confirmed_at),
                ]
            });
        }
    }

    /// The page of `report`, whose rows were added; `csv_name` is the CSV report's file name.
    pub fn finish(self, report: &StatusReport, csv_name: &str) -> Page {
        let f = &report.funnel;
        Page {
            command: "status",
            run_id: report.run_id.clone(),
            pool_id: report.user_pool_id.clone(),
            started_at: report.started_at,
            finished_at: report.finished_at,
            notes: report
                .previous_status_at
                .map(|t| {
                    format!(
                        "Newly confirmed: since the previous status report, {}.",
                        time(Some(t))
                    )
                })
                .into_iter()
                .chain(stalled(report.stalled.as_ref(), report.finished_at))
                .collect(),
            summary: Standing::ALL
                .iter()
                .map(|s| (s.as_str(), report.summary.get(s).copied().unwrap_or(0)))
                .collect(),
            funnel: FunnelCounts {
                invited: f.invited,
                confirmed: f.confirmed,
                pending: f.pending,
                expired: f.expired,
                attention: f.attention,
            },
            median_hours_to_confirm: f.median_hours_to_confirm,
            histogram: Some(self.histogram),
            needs_action: self.needs_action,
            asked: self.asked,
            newly_confirmed: Some(self.newly),
            table: self.table,
            csv_name: csv_name.to_string(),
        }
    }
}

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg: #f6f7f9;
  --confirmed: #2e7d4f; --pending: #3b6fb6; --expired: #c77c12; --attention: #b3261e; --invited: #56607a; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", "Hiragino Sans", "Hiragino Kaku Gothic ProN",
  "Noto Sans CJK JP", "Noto Sans JP", "Yu Gothic", Meiryo, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
.meta { color: var(--muted); margin: 0 0 20px; }
.meta code { font-size: 13px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin: 0 0 20px; }
.row2 { display: flex; gap: 20px; flex-wrap: wrap; }
.row2 > section { flex: 1 1 420px; }
.note { color: var(--muted); font-style: italic; margin: 8px 0 0; }
.notes p { margin: 0 0 6px; font-weight: 600; }
ul.counts { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 10px; }
ul.counts li { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; min-width: 96px; }
ul.counts b { display: block; font-size: 20px; }
ul.counts li.zero { color: var(--muted); }
svg text { font: inherit; font-size: 13px; fill: var(--ink); }
svg .bar-invited { fill: var(--invited); } svg .bar-confirmed { fill: var(--confirmed); }
svg .bar-pending { fill: var(--pending); } svg .bar-expired { fill: var(--expired); }
svg .bar-attention { fill: var(--attention); } svg .bar-hist { fill: var(--confirmed); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg); position: sticky; top: 0; }
td { overflow-wrap: break-word; }
th.c-reason { min-width: 11em; }
tr.failed td, tr.invalid td, tr.attention td, tr.unknown td { background: #fdf1f0; }
tr.expired td, tr.deferred td { background: #fdf6ea; }
tr.newly_confirmed td { background: #eef7f1; }
footer { color: var(--muted); font-size: 12px; }
"#;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Writes the page, every value escaped.
pub fn render<W: Write>(page: &Page, out: &mut W) -> io::Result<()> {
    let mut s = String::with_capacity(64 * 1024);
    head(&mut s, &format!("{} {}", page.command, page.run_id));
    let _ = write!(
        s,
        "<h1>Onboarding report: <code>{}</code></h1>\n<p class=\"meta\">run <code>{}</code> · pool <code>{}</code> · {} to {}</p>\n",
        Esc(page.command),
        Esc(&page.run_id),
        Esc(&page.pool_id),
        Esc(&time(Some(page.started_at))),
        Esc(&time(Some(page.finished_at))),
    );
    summary(&mut s, page);
    s.push_str("<div class=\"row2\">\n");
    funnel_svg(&mut s, page);
    histogram_svg(&mut s, page);
    s.push_str("</div>\n");
    out.write_all(s.as_bytes())?;
    s.clear();
    let title = format!("Needs an action ({})", thousands(page.needs_action.total));
    open_section(&mut s, "needs-action", &title);
    table_body(
        &mut s,
        "needs-action",
        &page.needs_action,
        "Nobody: nothing needs a person.",
        &page.csv_name,
    );
    asked(&mut s, &page.asked, &page.csv_name);
    s.push_str("</section>\n");
    if let Some(newly) = &page.newly_confirmed {
        let title = format!(
            "Newly confirmed ({}): send them the API credentials",
            thousands(newly.total)
        );
        table(
            &mut s,
            "newly-confirmed",
            &title,
            newly,
            "Nobody confirmed since the previous status report.",
            &page.csv_name,
        );
    } else {
        s.push_str("<section id=\"newly-confirmed\"><h2>Newly confirmed</h2><p class=\"note\">A run does not follow confirmations: the <code>status</code> page lists the newly confirmed.</p></section>\n");
    }
    out.write_all(s.as_bytes())?;
    s.clear();
    let title = format!("Every row ({})", thousands(page.table.total));
    table(
        &mut s,
        "rows",
        &title,
        &page.table,
        "No rows.",
        &page.csv_name,
    );
    let _ = write!(
        s,
        "<footer>Written by cognito-onboard {}. The same rows are in {}. No password is ever in this page.</footer>\n</body>\n</html>\n",
        Esc(env!("CARGO_PKG_VERSION")),
        Esc(&page.csv_name)
    );
    out.write_all(s.as_bytes())
}

/// The summary: the page's notes, then a count per outcome (or standing), zeros greyed.
fn summary(s: &mut String, page: &Page) {
    s.push_str("<section id=\"summary\"><h2>Summary</h2>\n");
    if !page.notes.is_empty() {
        s.push_str("<div class=\"notes\">");
        for n in &page.notes {
            let _ = write!(s, "<p>{}</p>", Esc(n));
        }
        s.push_str("</div>\n");
    }
    s.push_str("<ul class=\"counts\">");
    for (name, n) in &page.summary {
        let _ = write!(
            s,
            "<li class=\"{}\" id=\"summary-{}\"><b>{}</b>{}</li>",
            if *n == 0 { "zero" } else { "some" },
            Esc(name),
            n,
            Esc(&name.replace('_', " "))
        );
    }
    let _ = write!(
        s,
        "</ul>\n<p class=\"note\">{} rows in all.</p></section>\n",
        thousands(page.summary.iter().map(|(_, n)| n).sum())
    );
}

fn head(s: &mut String, title: &str) {
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"referrer\" content=\"no-referrer\">\n<title>cognito-onboard {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        Esc(title)
    );
}

/// A page that says the run has not finished, written when it starts: a run killed later
/// leaves this, not an empty file.
pub fn render_unfinished<W: Write>(run_id: &str, csv_name: &str, out: &mut W) -> io::Result<()> {
    let mut s = String::new();
    head(&mut s, &format!("run {run_id}"));
    let _ = write!(
        s,
        "<h1>Onboarding report: <code>run</code></h1>\n<p class=\"meta\">run <code>{}</code></p>\n<section id=\"summary\"><h2>Not finished</h2><p>The run has not finished (or was killed): its finished rows are in {}.</p></section>\n</body>\n</html>\n",
        Esc(run_id),
        Esc(csv_name)
    );
    out.write_all(s.as_bytes())
}

fn funnel_svg(s: &mut String, page: &Page) {
    let bars = page.funnel.bars();
    let max = bars.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (90.0, 380.0, 34.0);
    let height = row_h * bars.len() as f64 + 8.0;
    let _ = write!(
        s,
        "<section id=\"funnel\"><h2>Onboarding funnel</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"100%\" viewBox=\"0 0 540 {height}\" aria-labelledby=\"funnel-title\"><title id=\"funnel-title\">{}</title>\n",
        Esc(&bars
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", "))
    );
    for (i, (name, n)) in bars.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let w = if *n == 0 {
            0.0
        } else {
            (bar_w * *n as f64 / max as f64).max(2.0)
        };
        let _ = writeln!(
            s,
            "<text x=\"0\" y=\"{ty}\">{name}</text><rect class=\"bar-{name}\" x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"24\" rx=\"3\"/><text class=\"count\" id=\"funnel-{name}\" x=\"{cx:.1}\" y=\"{ty}\">{n}</text>",
            ty = y + 17.0,
            cx = label_w + w + 8.0,
        );
    }
    s.push_str("</svg>\n");
    let _ = match page.command {
        "status" => write!(
            s,
            "<p class=\"note\">Over the providers this tool invited; confirmed includes the newly confirmed.</p>"
        ),
        _ => write!(
            s,
            "<p class=\"note\">Over the rows whose user this run saw in the pool; invalid rows, failed reads and creates not yet made are not in it.</p>"
        ),
    };
    s.push_str("</section>\n");
}

fn histogram_svg(s: &mut String, page: &Page) {
    s.push_str("<section id=\"time-to-confirm\"><h2>Time to confirm</h2>\n");
    let Some(counts) = page.histogram else {
        s.push_str("<p class=\"note\">A run's rows carry no confirmation times: the <code>status</code> page shows how long providers took to confirm.</p></section>\n");
        return;
    };
    if counts.iter().all(|n| *n == 0) {
        s.push_str("<p class=\"note\">Nobody has confirmed yet.</p></section>\n");
        return;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    let (col_w, top, chart_h) = (100.0, 20.0, 150.0);
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"100%\" viewBox=\"0 0 520 {}\" aria-labelledby=\"hist-title\"><title id=\"hist-title\">{}</title>",
        top + chart_h + 30.0,
        Esc(&BUCKETS
            .iter()
            .zip(counts)
            .map(|((label, _), n)| format!("{label}: {n}"))
            .collect::<Vec<_>>()
            .join(", "))
    );
    for (i, ((label, _), n)) in BUCKETS.iter().zip(counts).enumerate() {
        let h = chart_h * n as f64 / max as f64;
        let x = i as f64 * col_w + 10.0;
        let _ = writeln!(
            s,
            "<rect class=\"bar-hist\" x=\"{x}\" y=\"{y:.1}\" width=\"{bw}\" height=\"{h:.1}\" rx=\"3\"/><text class=\"count\" id=\"hist-{i}\" x=\"{cx}\" y=\"{ty:.1}\" text-anchor=\"middle\">{n}</text><text x=\"{cx}\" y=\"{ly}\" text-anchor=\"middle\">{}</text>",
            Esc(label),
            y = top + chart_h - h,
            bw = col_w - 20.0,
            cx = x + (col_w - 20.0) / 2.0,
            ty = top + chart_h - h - 5.0,
            ly = top + chart_h + 20.0,
        );
    }
    s.push_str("</svg>\n");
    if let Some(m) = page.median_hours_to_confirm {
        let _ = write!(
            s,
            "<p class=\"note\">Median {m:.1} hours from the first invitation to when this tool first saw the provider confirmed (an upper bound: it sees confirmations when it looks).</p>"
        );
    }
    s.push_str("</section>\n");
}

/// How a column's cells may wrap.
enum Wrap {
    /// One word or a time: a state, a count, "2026-12-02 10:16 UTC". A table wider than the
    /// window scrolls sideways.
    Never,
    /// An address, broken anywhere once the column is 10em wide, rather than widening the table.
    Address,
    /// Text, at its spaces.
    AtSpaces,
}

fn wrapping(column: &str) -> Wrap {
    match column {
        "action" | "outcome" | "status" | "status after" | "standing" | "line" | "attempts"
        | "reissues" | "first invited" | "password expires" | "confirmed" | "suppressed"
        | "since" | "password expired" => Wrap::Never,
        "key" | "email" | "username" => Wrap::Address,
        _ => Wrap::AtSpaces,
    }
}

/// The help desk's questions, each list under its own heading inside the needs-action
/// section, only where someone is in it (a page without them is as it was).
fn asked(s: &mut String, asked: &Asked, csv_name: &str) {
    let lists = [
        (
            "suppressed",
            &asked.suppressed,
            "Address suppressed by SES: no invitation reaches them; correct the address in the \
             list, or remove it from the suppression list once it is known to work",
        ),
        (
            "reissue-limit",
            &asked.reissue_limit,
            "Re-issued to the limit (--max-reissues) without signing in: not invited again",
        ),
    ];
    for (id, rows, title) in lists.into_iter().filter(|(_, rows, _)| rows.total > 0) {
        let _ = writeln!(
            s,
            "<div id=\"{id}\"><h3>{} ({})</h3>",
            Esc(title),
            thousands(rows.total)
        );
        table_body(s, id, rows, "", csv_name);
        s.push_str("</div>\n");
    }
}

fn open_section(s: &mut String, id: &str, title: &str) {
    let _ = writeln!(s, "<section id=\"{id}\"><h2>{}</h2>", Esc(title));
}

fn table(s: &mut String, id: &str, title: &str, rows: &Capped, empty: &str, csv_name: &str) {
    open_section(s, id, title);
    table_body(s, id, rows, empty, csv_name);
    s.push_str("</section>\n");
}

/// A list's table (or, when it is empty, `empty`), without its section.
fn table_body(s: &mut String, id: &str, rows: &Capped, empty: &str, csv_name: &str) {
    if rows.total == 0 {
        let _ = writeln!(s, "<p class=\"note\">{}</p>", Esc(empty));
        return;
    }
    if let Some(note) = rows.cap_note(csv_name) {
        let _ = writeln!(s, "<p class=\"note cap\">{}</p>", Esc(&note));
    }
    // How each column's cells wrap, by position (a class on every cell would weigh on a page
    // of 10,000 rows).
    let mut style = String::new();
    for (i, c) in rows.columns.iter().enumerate() {
        let wrap = match wrapping(c) {
            Wrap::Never => "white-space:nowrap",
            Wrap::Address => "overflow-wrap:anywhere;min-width:10em",
            Wrap::AtSpaces => continue,
        };
        let _ = write!(style, "#{id} td:nth-child({}){{{wrap}}}", i + 1);
    }
    if !style.is_empty() {
        let _ = writeln!(s, "<style>{style}</style>");
    }
    s.push_str("<div class=\"scroll\"><table><thead><tr>");
    for c in rows.columns {
        let _ = write!(
            s,
            "<th class=\"c-{}\">{}</th>",
            Esc(&c.replace(' ', "-")),
            Esc(c)
        );
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (cells, class) in rows.rows.iter().zip(&rows.classes) {
        let _ = write!(s, "<tr class=\"{}\">", Esc(class));
        for c in cells {
            let _ = write!(s, "<td>{}</td>", Esc(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use std::collections::BTreeMap;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn report() -> Report {
        Report::empty("20261201T120000Z-abcd", at() - Duration::minutes(3), at())
    }

    fn row(
        line: u64,
        outcome: Outcome,
        after: Option<UserStatus>,
        expires: Option<DateTime<Utc>>,
    ) -> RowReport {
        let mut r = RowReport::new(line, format!("p{line}@example.jp"), None, outcome);
        r.status_after = after;
        r.temp_password_expires_at = expires;
        r
    }

    fn html(page: &Page) -> String {
        let mut out = Vec::new();
        render(page, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_the_five_characters_and_nothing_else() {
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            escape("\"><img src=x onerror=alert(1)>"),
            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(escape("a & b's"), "a &amp; b&#39;s");
        assert_eq!(escape("山田 太郎"), "山田 太郎");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape(""), "");
    }

    #[test]
    fn hostile_values_in_a_name_key_or_reason_are_text_on_the_page() {
        let hostile = [
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
        ];
        let mut page = RunPage::new(&report(), "r.csv");
        for (i, h) in hostile.iter().enumerate() {
            let mut r = row(2 + i as u64, Outcome::Invalid, None, None);
            r.key = h.to_string();
            r.username = Some(h.to_string());
            r.reason = format!("line {}: not an email: {h}", 2 + i);
            r.error_message = Some(h.to_string());
            page.add(&r);
        }
        let text = html(&page.finish());
        assert!(!text.contains("<script"), "{text}");
        assert!(!text.contains("<img"), "{text}");
        assert!(!text.contains("alert(1)>"), "{text}");
        assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(text.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(text.contains(&format!("content=\"{CSP}\"")));
        assert!(text.contains("<meta charset=\"utf-8\">"));
    }

    /// One case per row of the module's table.
    #[test]
    fn funnel_stage_of_a_run_row_follows_the_table() {
        use UserStatus::*;
        let later = Some(at() + Duration::days(6));
        let earlier = Some(at() - Duration::hours(1));
        let cases = [
            (
                "attention",
                row(2, Outcome::Attention, Some(Confirmed), None),
                Some(Stage::Attention),
            ),
            (
                "attention, no status",
                row(2, Outcome::Attention, None, None),
                Some(Stage::Attention),
            ),
            (
                "confirmed",
                row(2, Outcome::Skipped, Some(Confirmed), None),
                Some(Stage::Confirmed),
            ),
            (
                "created, valid",
                row(2, Outcome::Created, Some(ForceChangePassword), later),
                Some(Stage::Pending),
            ),
            (
                "pending, expiry unknown",
                row(2, Outcome::Skipped, Some(ForceChangePassword), None),
                Some(Stage::Pending),
            ),
            (
                "expired, deferred",
                row(2, Outcome::Deferred, Some(ForceChangePassword), earlier),
                Some(Stage::Expired),
            ),
            (
                "expires at the end",
                row(2, Outcome::Skipped, Some(ForceChangePassword), Some(at())),
                Some(Stage::Expired),
            ),
            (
                "another status",
                row(2, Outcome::Failed, Some(ResetRequired), None),
                Some(Stage::Attention),
            ),
            (
                "offboarded",
                row(0, Outcome::Disabled, Some(Confirmed), None),
                None,
            ),
            (
                "revoked",
                row(0, Outcome::Deleted, Some(ForceChangePassword), later),
                None,
            ),
            ("invalid", row(2, Outcome::Invalid, None, None), None),
            ("dry run create", row(2, Outcome::Created, None, None), None),
            ("failed read", row(2, Outcome::Failed, None, None), None),
        ];
        for (case, r, want) in cases {
            assert_eq!(run_stage(&r, at()), want, "{case}");
        }
        let mut page = RunPage::new(&report(), "r.csv");
        page.add(&row(2, Outcome::Created, Some(ForceChangePassword), later));
        page.add(&row(3, Outcome::Skipped, Some(Confirmed), None));
        page.add(&row(
            4,
            Outcome::Skipped,
            Some(ForceChangePassword),
            earlier,
        ));
        page.add(&row(5, Outcome::Attention, None, None));
        page.add(&row(6, Outcome::Invalid, None, None));
        let page = page.finish();
        assert_eq!(
            page.funnel,
            FunnelCounts {
                invited: 4,
                confirmed: 1,
                pending: 1,
                expired: 1,
                attention: 1
            }
        );
        assert_eq!(page.needs_action.total, 2, "attention and invalid");
        assert!(page.histogram.is_none());
        let text = html(&page);
        assert!(text.contains("id=\"funnel-invited\" x=\""), "{text}");
        assert!(text.contains("rows carry no confirmation times"), "{text}");
    }

    #[test]
    fn time_to_confirm_buckets() {
        let h = 3600;
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(-5), 0, "a clock's skew counts as quick");
        assert_eq!(bucket(24 * h - 1), 0);
        assert_eq!(bucket(24 * h), 1);
        assert_eq!(bucket(48 * h), 2);
        assert_eq!(bucket(71 * h), 2);
        assert_eq!(bucket(72 * h), 3);
        assert_eq!(bucket(7 * 24 * h - 1), 3);
        assert_eq!(bucket(7 * 24 * h), 4);
        assert_eq!(bucket(400 * 24 * h), 4);
    }

    /// The page of a `status` report of these rows, made as `status` makes it.
    fn status_page_of(rows: &[StatusRow]) -> Page {
        let tally = super::super::status::Tally::of(rows);
        let report = StatusReport {
            run_id: "s1".into(),
            command: "status",
            started_at: at(),
            finished_at: at(),
            user_pool_id: "eu-west-1_x".into(),
            previous_status_at: None,
            refresh: crate::report::status::Refresh::PerUser,
            rest: None,
            estimated_quota_seconds: BTreeMap::new(),
            quota_seconds: 0.0,
            calls: BTreeMap::new(),
            summary: tally.summary.clone(),
            funnel: tally.funnel(),
            newly_confirmed: Default::default(),
            rows: Default::default(),
            handed_over: Vec::new(),
            reminded: Vec::new(),
            stalled: None,
            expires_soon: 0,
            suppressed: Vec::new(),
            reissue_limit: Vec::new(),
        };
        let mut page = StatusPage::new(at());
        rows.iter().for_each(|r| page.add(r));
        page.finish(&report, "s1.csv")
    }

    #[test]
    fn a_status_page_draws_the_histogram_from_invitation_to_confirmation() {
        let mk = |standing, invited_h: i64, confirmed_h: Option<i64>| StatusRow {
            key: format!("k{invited_h}"),
            username: Some("山田太郎".into()),
            email: None,
            name: Some("山田 太郎".into()),
            status: None,
            standing,
            reason: String::new(),
            first_invited_at: Some(at() - Duration::hours(invited_h)),
            last_invited_at: None,
            reissues: 0,
            temp_password_expires_at: None,
            confirmed_at: confirmed_h.map(|h| at() - Duration::hours(h)),
            stuck: None,
        };
        let rows = vec![
            mk(Standing::NewlyConfirmed, 10, Some(8)),
            mk(Standing::Confirmed, 50, Some(20)),
            mk(Standing::Confirmed, 300, Some(10)),
            mk(Standing::Pending, 5, None),
            mk(Standing::Expired, 200, None),
        ];
        let page = status_page_of(&rows);
        assert_eq!(page.histogram, Some([1, 1, 0, 0, 1]));
        assert_eq!(page.funnel.invited, 5);
        assert_eq!(page.funnel.confirmed, 3);
        assert_eq!(page.needs_action.total, 1, "the expired one");
        assert_eq!(page.newly_confirmed.as_ref().unwrap().total, 1);
        let text = html(&page);
        assert!(text.contains("id=\"hist-0\""), "{text}");
        assert!(text.contains("山田太郎"));
    }

    #[test]
    fn states_and_counts_stay_on_one_line_and_addresses_break_in_their_own_column() {
        let mut page = RunPage::new(&report(), "r.csv");
        page.add(&row(2, Outcome::Invalid, None, None));
        let text = html(&page.finish());
        let at = |column: &str| RUN_COLUMNS.iter().position(|c| *c == column).unwrap() + 1;
        for column in ["outcome", "status after", "line"] {
            let rule = format!("#rows td:nth-child({}){{white-space:nowrap}}", at(column));
            assert!(text.contains(&rule), "{rule}");
        }
        let rule = format!(
            "#rows td:nth-child({}){{overflow-wrap:anywhere;min-width:10em}}",
            at("email")
        );
        assert!(text.contains(&rule), "{rule}");
        let reason = format!("#rows td:nth-child({})", at("reason"));
        assert!(!text.contains(&reason), "the reason wraps at its spaces");
    }

    #[test]
    fn a_stalled_cohort_is_said_first_and_a_moving_one_is_not() {
        let mut stalled = report();
        stalled.stalled = Some(crate::report::model::Stall {
            budget_blocked_since: Some(stalled.finished_at - chrono::Duration::hours(26)),
            budget_blocked_seconds: 26.0 * 3600.0,
            expired: 2,
            oldest_expiry: Some(stalled.finished_at - chrono::Duration::days(2)),
            expired_for_runs: 48,
        });
        let text = html(&RunPage::new(&stalled, "r.csv").finish());
        assert!(
            text.contains(
                "The cohort has stalled: nothing sent for 26.0 h because of the message budget; \
                 2 pending past expiry, the longest for 48 run(s)."
            ),
            "{text}"
        );
        let mut moving = report();
        moving.stalled = Some(crate::report::model::Stall {
            budget_blocked_since: None,
            budget_blocked_seconds: 0.0,
            expired: 0,
            oldest_expiry: None,
            expired_for_runs: 0,
        });
        assert!(!html(&RunPage::new(&moving, "r.csv").finish()).contains("stalled"));
    }

    #[test]
    fn a_status_page_lists_the_invitations_that_expire_within_a_day() {
        let mk = |key: &str, hours: i64| StatusRow {
            key: key.into(),
            username: None,
            email: None,
            name: None,
            status: Some("FORCE_CHANGE_PASSWORD".into()),
            standing: Standing::Pending,
            reason: "pending".into(),
            first_invited_at: Some(at() - Duration::days(6)),
            last_invited_at: Some(at() - Duration::days(6)),
            reissues: 0,
            temp_password_expires_at: Some(at() + Duration::hours(hours)),
            confirmed_at: None,
            stuck: None,
        };
        let rows = vec![mk("soon@x", 12), mk("later@x", 72)];
        let page = status_page_of(&rows);
        assert_eq!(page.needs_action.total, 1);
        let text = html(&page);
        assert!(text.contains("soon@x") && text.contains("expires within a day"));
    }

    /// The help desk's questions: a suppressed address and a provider re-issued to the limit
    /// are listed apart, inside the needs-action section, on a run's page and a status page;
    /// a page where nobody is in them shows neither list.
    #[test]
    fn suppressed_addresses_and_the_reissue_limit_are_listed_in_the_needs_action_section() {
        use crate::cognito::{Suppressed, SuppressionReason};
        use crate::report::Stuck;
        let gone = Stuck::Suppressed(Suppressed {
            reason: SuppressionReason::Complaint,
            since: at() - Duration::days(2),
        });
        let mut page = RunPage::new(&report(), "r.csv");
        let mut dead = row(
            2,
            Outcome::Attention,
            Some(UserStatus::ForceChangePassword),
            None,
        );
        dead.stuck = Some(gone.clone());
        let mut capped = row(
            3,
            Outcome::Attention,
            Some(UserStatus::ForceChangePassword),
            None,
        );
        capped.stuck = Some(Stuck::ReissueLimit { reissues: 3 });
        page.add(&dead);
        page.add(&capped);
        page.add(&row(4, Outcome::Attention, None, None));
        let page = page.finish();
        assert_eq!(page.needs_action.total, 3);
        assert_eq!(page.asked.suppressed.total, 1);
        assert_eq!(page.asked.reissue_limit.total, 1);
        assert_eq!(page.asked.suppressed.rows[0][4], "COMPLAINT");
        assert_eq!(page.asked.reissue_limit.rows[0][4], "3");
        let text = html(&page);
        let section = &text[text.find("id=\"needs-action\"").unwrap()..];
        let section = &section[..section.find("</section>").unwrap()];
        assert!(section.contains("id=\"suppressed\"") && section.contains("p2@example.jp"));
        assert!(section.contains("id=\"reissue-limit\"") && section.contains("p3@example.jp"));

        let mk = |key: &str, stuck: Option<Stuck>| StatusRow {
            key: key.into(),
            username: None,
            email: Some(key.into()),
            name: None,
            status: Some("FORCE_CHANGE_PASSWORD".into()),
            standing: Standing::Attention,
            reason: "attention".into(),
            first_invited_at: Some(at() - Duration::days(30)),
            last_invited_at: Some(at() - Duration::days(9)),
            reissues: 3,
            temp_password_expires_at: Some(at() - Duration::days(2)),
            confirmed_at: None,
            stuck,
        };
        let rows = vec![
            mk("dead@x", Some(gone)),
            mk("capped@x", Some(Stuck::ReissueLimit { reissues: 3 })),
        ];
        let page = status_page_of(&rows);
        assert_eq!(
            page.asked.suppressed.rows,
            vec![vec![
                "dead@x".to_string(),
                String::new(),
                "dead@x".to_string(),
                "COMPLAINT".to_string(),
                "2026-11-29 12:00 UTC".to_string(),
            ]]
        );
        assert_eq!(page.asked.reissue_limit.rows[0][0], "capped@x");
        let mut rows = rows;
        rows.iter_mut().for_each(|r| r.stuck = None);
        let text = html(&status_page_of(&rows));
        assert!(!text.contains("id=\"suppressed\"") && !text.contains("id=\"reissue-limit\""));
    }

    #[test]
    fn the_table_stops_at_the_cap_and_says_where_every_row_is() {
        let mut page = RunPage::new(&report(), "20261201T120000Z-abcd.csv");
        for line in 2..(TABLE_CAP as u64 + 2 + 5) {
            page.add(&row(line, Outcome::Invalid, None, None));
        }
        let page = page.finish();
        assert_eq!(page.table.rows.len(), TABLE_CAP);
        assert_eq!(page.table.total, TABLE_CAP as u64 + 5);
        assert_eq!(page.needs_action.rows.len(), LIST_CAP);
        let text = html(&page);
        assert!(
            text.contains(
                "the first 10,000 of 10,005 rows; every row is in 20261201T120000Z-abcd.csv"
            ),
            "cap note"
        );
        assert!(text.contains("the first 1,000 of 10,005 rows"));
        assert_eq!(
            text.matches("<tr class=\"invalid\">").count(),
            TABLE_CAP + LIST_CAP
        );
        let mut small = RunPage::new(&report(), "r.csv");
        small.add(&row(2, Outcome::Invalid, None, None));
        assert_eq!(small.finish().table.cap_note("r.csv"), None);
    }
}
