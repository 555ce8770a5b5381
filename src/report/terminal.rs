//! What people read on a terminal: `check`'s description of the pool and the input, the
//! tables of `status` and `doctor`, and the lines a command logs at its end. Values in, text
//! out. Must not read or decide anything.

use std::path::Path;

use chrono::SecondsFormat;

use super::files::ReportFiles;
use super::model::{Named, Outcome, Report};
use super::status::{Standing, StatusReport};
use crate::budget::COGNITO_DEFAULT_DAILY_EMAILS;
use crate::cognito::{Delivery, PoolInfo};
use crate::help::DoctorReport;
use crate::invite::Finding;

/// `check`'s description of the pool, with what the invitation template check found.
pub fn pool(pool: &PoolInfo, delivery: Delivery, findings: &[Finding]) -> String {
    let p = &pool.policy;
    let classes: String = [
        (p.require_uppercase, ", upper-case"),
        (p.require_lowercase, ", lower-case"),
        (p.require_numbers, ", digits"),
        (p.require_symbols, ", symbols"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    let mut out = format!(
        "pool {} ({})\n  estimated users: {}\n  username: {:?}\n  password policy: at least {} characters{classes}\n  temporary passwords valid: {} days\n  email sending account: {}\n",
        pool.id,
        pool.name,
        pool.estimated_users,
        pool.username_mode,
        p.minimum_length,
        pool.temporary_password_validity_days,
        pool.email_sending_account
    );
    out.push_str(&format!(
        "  invitations ({}) sent by: {}\n",
        delivery.as_str(),
        pool.sender_of(delivery)
    ));
    out.push_str(&format!(
        "  invitation email subject: {}\n",
        pool.invitation
            .email_subject
            .as_deref()
            .unwrap_or("(Cognito's default)")
    ));
    for f in findings {
        let level = if f.stops_the_run() {
            "error"
        } else {
            "warning"
        };
        out.push_str(&format!("  {level}: {f}\n"));
    }
    out
}

/// `check`'s header for the input file.
pub fn input(path: &str, encoding: &str, columns: &[String]) -> String {
    format!(
        "input: {path} ({encoding})\n  columns: {}\n",
        columns
            .iter()
            .map(|c| c.escape_debug().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `check`'s warning when Cognito's own sender would take days to send the invitations.
pub fn email_days(pool: &PoolInfo, valid: u64) -> Option<String> {
    let cap = u64::from(COGNITO_DEFAULT_DAILY_EMAILS);
    (pool.uses_cognito_email() && valid > cap).then(|| {
        format!(
            "  warning: Cognito's own email sender allows {cap} emails a day; up to {valid} invitations will take {} days\n",
            valid.div_ceil(cap)
        )
    })
}

/// A plain table for a terminal, written to `out` a row at a time; `key_width`: the widest
/// key, in characters.
pub fn status_table(
    report: &StatusReport,
    key_width: usize,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let width = key_width.max(3);
    writeln!(
        out,
        "{:<width$}  {:<22}  {:<15}  detail",
        "key", "status", "standing"
    )?;
    report.rows.each(|r| {
        writeln!(
            out,
            "{:<width$}  {:<22}  {:<15}  {}",
            r.key,
            r.status.as_deref().unwrap_or("-"),
            r.standing.as_str(),
            r.reason
        )
    })?;
    let f = &report.funnel;
    writeln!(
        out,
        "\nfunnel: {} invited, {} confirmed, {} pending, {} expired, {} attention; median time to confirm: {}",
        f.invited,
        f.confirmed,
        f.pending,
        f.expired,
        f.attention,
        f.median_hours_to_confirm
            .map(|h| format!("{h} h"))
            .unwrap_or_else(|| "-".into())
    )?;
    write!(out, "newly confirmed: ")?;
    if report.newly_confirmed.is_empty() {
        write!(out, "none")?;
    }
    let mut first = true;
    report.newly_confirmed.each(|r| {
        write!(out, "{}{}", if first { "" } else { ", " }, r.key)?;
        first = false;
        Ok(())
    })?;
    writeln!(out)
}

/// `doctor`'s answer on a terminal: per provider, the verdict and remedy, then the facts.
pub fn doctor_table(report: &DoctorReport) -> String {
    let mut out = String::new();
    for p in &report.providers {
        out.push_str(&doctor_provider(p));
    }
    out.push_str(&doctor_pool(&report.pool));
    out
}

/// One provider of `doctor`'s table: verdict and remedy, then the facts behind them.
fn doctor_provider(p: &crate::help::Examined) -> String {
    let time = crate::report::wording::time;
    let mut out = format!("{}  {}\n  {}\n", p.id, p.verdict.as_str(), p.remedy);
    match (&p.username, &p.status) {
        (Some(u), Some(s)) => out.push_str(&format!(
            "  user {u}: {s}, {}\n",
            if p.enabled == Some(false) {
                "disabled"
            } else {
                "enabled"
            }
        )),
        _ => out.push_str("  not in the pool\n"),
    }
    if p.exists {
        let yes = |v: Option<bool>| {
            if v == Some(true) {
                "verified"
            } else {
                "not verified"
            }
        };
        out.push_str(&format!(
            "  email: {} ({}); phone: {}\n",
            p.email.as_deref().unwrap_or("none"),
            yes(p.email_verified),
            match &p.phone_number {
                Some(n) => format!("{n} ({})", yes(p.phone_number_verified)),
                None => "none".into(),
            }
        ));
    }
    if let Some(s) = &p.suppressed {
        out.push_str(&format!(
            "  email on the SES suppression list: {} since {}\n",
            s.reason.as_str(),
            time(s.since)
        ));
    }
    for i in &p.invitations {
        out.push_str(&format!(
            "  invitation: {} by {} at {} ({}), run {}\n",
            i.kind.as_str(),
            i.medium.as_str(),
            time(i.at),
            i.outcome,
            i.run_id
        ));
    }
    if let Some(at) = p.temp_password_expires_at {
        out.push_str(&format!("  temporary password valid until {}\n", time(at)));
    }
    out.push_str(&format!(
        "  ForgotPassword: {}\n",
        if p.forgot_password_works {
            "works"
        } else {
            "does not work"
        }
    ));
    out
}

/// The pool's line under `doctor`'s table: how it recovers, who sends, the day's emails.
fn doctor_pool(f: &crate::help::PoolFacts) -> String {
    format!(
        "\npool: recovery by {}; email ({}) sent by {}; {} emails in the last 24 hours{}{}; {}{}\n{}",
        match (f.account_recovery.by_email, f.account_recovery.by_phone) {
            (true, true) => "verified email or phone",
            (true, false) => "verified email",
            (false, true) => "verified phone",
            (false, false) => "an administrator only",
        },
        f.email_sending_account,
        f.sent_by,
        f.email_budget.used_last_24_hours,
        f.email_budget
            .limit
            .map(|l| format!(" of {l}"))
            .unwrap_or_default(),
        match (f.email_budget.spent(), f.email_budget.frees_at) {
            (true, Some(at)) => format!("; spent until {}", crate::report::wording::time(at)),
            _ => String::new(),
        },
        match &f.delivery_errors {
            crate::help::DeliveryErrors::LoggedTo { destination, level } => {
                format!("delivery errors logged to {destination} ({level})")
            }
            crate::help::DeliveryErrors::NotLogged => "delivery errors not logged \
                (SetLogDeliveryConfiguration with event source userNotification logs them)"
                .to_string(),
            crate::help::DeliveryErrors::Unknown { .. } => {
                "whether delivery errors are logged is unknown".to_string()
            }
        },
        match &f.suppression_list {
            crate::help::SuppressionRead::NotSes => String::new(),
            crate::help::SuppressionRead::Read => {
                "; SES suppression list read for each provider".to_string()
            }
            crate::help::SuppressionRead::Unknown { .. } => {
                "; whether SES suppresses the providers' addresses is unknown (the suppression \
                 list could not be read)"
                    .to_string()
            }
        },
        f.sender_advice
            .as_ref()
            .map(|a| format!("{a}\n"))
            .unwrap_or_default()
    )
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

/// What a run says on stderr at the end: each failed row, when the budget frees, the one-line
/// summary and where the report is.
pub fn log_end(report: &Report, files: &ReportFiles) {
    let failed: Vec<Named> = report
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed | Outcome::Invalid))
        .map(|r| (r.row, r.key.clone(), r.outcome, r.reason.clone()))
        .collect();
    log_end_with(report, &failed, files);
}

/// [`log_end`] for a report whose rows were written as they finished: `failed` names the first
/// rows that failed or were invalid, as warnings (what a quiet scheduled run still says).
pub fn log_end_with(report: &Report, failed: &[Named], files: &ReportFiles) {
    for (line, key, outcome, reason) in failed {
        tracing::warn!("line {line}: {key} {}: {reason}", outcome.as_str());
    }
    let shown = failed.len() as u64;
    let count = |o: Outcome| report.summary.get(&o).copied().unwrap_or(0);
    let all = count(Outcome::Failed) + count(Outcome::Invalid);
    if all > shown {
        tracing::warn!(
            "and {} more failed or invalid rows: see the report",
            all - shown
        );
    }
    if let Some(at) = report.email_budget_frees_at {
        tracing::info!(
            "{} invitations deferred by the email budget; it frees up from {}",
            report.summary[&Outcome::Deferred],
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    }
    if let Some(stall) = &report.stalled {
        for words in stall.words(report.finished_at) {
            tracing::info!("the cohort has stalled: {words}");
        }
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
    let soon = report.expires_soon;
    if soon > 0 {
        tracing::info!(
            "{soon} pending invitations expire within a day: the help desk's next calls (the page lists them; --on-expiring reminds them)"
        );
    }
    if !report.suppressed.is_empty() {
        tracing::info!(
            "{} providers' addresses are on the SES suppression list: no invitation reaches them (the page lists them; correct the address, or remove it from the list once it works)",
            report.suppressed.len()
        );
    }
    if !report.reissue_limit.is_empty() {
        tracing::info!(
            "{} providers were re-issued to the limit (--max-reissues) without signing in: the page lists them",
            report.reissue_limit.len()
        );
    }
    tracing::info!(
        "report: {}; newly confirmed: {}",
        files.listed(),
        newly_path.display()
    );
}
