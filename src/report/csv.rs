//! The reports as CSV: a run's rows, `status`'s and `doctor`'s, UTF-8 with a BOM (Excel), cells
//! that a spreadsheet would run as formulas escaped. Must not decide what a row says.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::model::RowReport;
use super::status::RowsOnDisk;
use crate::cognito::UserStatus;

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
pub fn write_status_csv<W: Write>(mut out: W, rows: &RowsOnDisk) -> std::io::Result<()> {
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
    rows.each(|r| {
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
        Ok(w.write_record(record.iter().map(|c| escape_cell(c).into_owned()))?)
    })?;
    w.flush()
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

#[cfg(test)]
mod tests {
    use super::super::model::Outcome;
    use super::*;

    fn row(n: u64, outcome: Outcome) -> RowReport {
        RowReport::sample(n, outcome)
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
}
