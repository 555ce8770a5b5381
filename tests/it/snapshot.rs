//! Snapshots (insta) of what people read: the help of each command, and both report formats of
//! a run whose rows end in several outcomes. Values that differ from run to run (ids, times,
//! moto's usernames) are redacted; everything else must match `snapshots/` exactly.

use cognito_onboard::error::exit;

use crate::support::*;

#[test]
fn help_of_each_command() {
    for (name, args) in [
        ("help", &["--help"][..]),
        ("help_run", &["run", "--help"]),
        ("help_check", &["check", "--help"]),
        ("help_status", &["status", "--help"]),
    ] {
        let r = binary(args).expect(exit::OK);
        assert_eq!(r.stderr(), "", "{name}");
        insta::assert_snapshot!(name, r.stdout());
    }
}

/// Three providers to create (one with a group), one already in the pool, one invalid row.
const COHORT: &str = "email,name,groups
taro.yamada@example.com,山田 太郎,providers
hanako.suzuki@example.com,鈴木 花子,
existing000000@example.com,Already There,
not-an-email,Broken,
ichiro.sato@example.com,佐藤 一郎,
";

/// Replaces a string by `placeholder`, leaving a null (or anything else) as it is, so that a
/// value appearing or vanishing still shows in the snapshot.
fn when_present(placeholder: &'static str) -> insta::internals::Redaction {
    insta::dynamic_redaction(move |value, _| {
        if value.as_str().is_some() {
            placeholder.into()
        } else {
            value
        }
    })
}

/// Replaces every RFC 3339 time in `text` (`2026-12-08T20:16:00Z`, with or without a fraction
/// or an offset) by `[time]`: some reasons say until when a password is valid.
fn mask_times(text: &str) -> String {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let fits = |b: &[u8]| {
        b.len() >= SHAPE.len()
            && SHAPE.iter().zip(b).all(|(s, c)| {
                if *s == b'd' {
                    c.is_ascii_digit()
                } else {
                    s == c
                }
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0, 0);
    while i < bytes.len() {
        if !fits(&bytes[i..]) {
            i += 1;
            continue;
        }
        let mut end = i + SHAPE.len();
        if bytes.get(end) == Some(&b'.') {
            end += 1;
            while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        match bytes.get(end) {
            Some(b'Z') => end += 1,
            Some(b'+' | b'-') if bytes.len() >= end + 6 => end += 6,
            _ => {}
        }
        out.push_str(&text[copied..i]);
        out.push_str("[time]");
        (i, copied) = (end, end);
    }
    out.push_str(&text[copied..]);
    out
}

#[test]
fn times_are_masked_wherever_they_are() {
    assert_eq!(
        mask_times("valid until 2026-12-08T20:16:00Z; then 2026-12-08T20:16:00.123+09:00."),
        "valid until [time]; then [time]."
    );
    assert_eq!(mask_times("line 5, 山田 2026-12"), "line 5, 山田 2026-12");
}

/// The CSV report with the same values as the JSON one replaced.
fn normalise_csv(text: &str, pool_id: &str) -> String {
    let text = text
        .strip_prefix('\u{feff}')
        .expect("the CSV report starts with a BOM");
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().expect("header").clone();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&headers).unwrap();
    for record in r.records() {
        let record = record.expect("record");
        let cells: Vec<String> = headers
            .iter()
            .zip(record.iter())
            .map(|(column, cell)| match column {
                "username" | "temp_password_expires_at" if !cell.is_empty() => {
                    format!("[{column}]")
                }
                _ => mask_times(&cell.replace(pool_id, "[pool_id]")),
            })
            .collect();
        w.write_record(&cells).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

#[test]
fn both_report_formats_of_a_run() {
    let env = TestEnv::new();
    let pool = env.pool(true, &["providers"]);
    env.populate(&pool, "existing", 1, 1);
    let csv = env.write("cohort.csv", COHORT);
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    assert_eq!(report["user_pool_id"], pool.id.as_str());
    insta::assert_json_snapshot!("report_json", report, {
        ".run_id" => "[run_id]",
        ".started_at" => "[time]",
        ".finished_at" => "[time]",
        ".user_pool_id" => "[pool_id]",
        ".email_budget_frees_at" => when_present("[time]"),
        ".rows[].temp_password_expires_at" => when_present("[time]"),
        ".rows[].username" => when_present("[username]"),
        ".rows[].reason" => insta::dynamic_redaction(|value, _| match value.as_str() {
            Some(reason) => mask_times(reason).into(),
            None => value,
        }),
    });
    let json_path = r
        .stdout()
        .lines()
        .rev()
        .find(|l| l.ends_with(".json"))
        .expect("report path")
        .to_string();
    let text = std::fs::read_to_string(json_path.replace(".json", ".csv")).expect("CSV report");
    insta::assert_snapshot!("report_csv", normalise_csv(&text, &pool.id));
}
