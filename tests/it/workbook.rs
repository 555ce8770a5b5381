//! Workbooks as input, as an operator meets them: the sample workbook onboarded by `run` and
//! followed by `status`, a sheet chosen with `--sheet`, and the note a number column leaves in
//! the log. The malformed workbooks are in the bad-input corpus (`bad_input.rs`).

use cognito_onboard::error::exit;

use crate::support::*;

fn sample() -> std::path::PathBuf {
    root().join("samples/providers.xlsx")
}

#[test]
fn the_sample_workbook_is_onboarded_and_followed_like_its_csv() {
    let env = TestEnv::new();
    let pool = env.pool(true, &["providers", "beta"]);
    let check = env.command(&pool, ["check"]).arg(sample()).expect(exit::OK);
    assert!(
        check
            .stdout()
            .contains(r#"(Excel workbook (.xlsx), sheet "Providers")"#),
        "{}",
        check.stdout()
    );
    assert!(check.stdout().contains("10 valid rows, 0 invalid"));

    let run = env.command(&pool, ["run"]).arg(sample()).expect(exit::OK);
    let report = run.report();
    assert_eq!(report["summary"]["created"], 10, "{report:#}");
    // Lines are the rows Excel shows: the header is row 1.
    let lines: Vec<u64> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, (2..=11).collect::<Vec<u64>>());
    let sato = env
        .get_user(&pool, "ichiro.sato@example.com")
        .expect("the trimmed, lower-cased email is the username");
    assert_eq!(
        attr(sato.user_attributes(), "name").as_deref(),
        Some("佐藤 一郎")
    );
    // A phone column formatted as Text keeps its +.
    assert_eq!(
        attr(sato.user_attributes(), "phone_number").as_deref(),
        Some("+819010000004")
    );
    let mut beta = env.group_members(&pool, "beta");
    beta.sort();
    assert_eq!(
        beta,
        [
            "daisuke.kato@example.com",
            "hanako.suzuki@example.com",
            "kenji.watanabe@example.com"
        ]
    );

    let again = env.command(&pool, ["run"]).arg(sample()).expect(exit::OK);
    assert_eq!(again.report()["summary"]["skipped"], 10);

    let status = env
        .command(&pool, ["status"])
        .arg(sample())
        .expect(exit::OK);
    let report = status.report();
    assert_eq!(report["funnel"]["invited"], 10, "{report:#}");
    assert_eq!(report["funnel"]["pending"], 10, "{report:#}");
}

#[test]
fn sheet_chooses_the_worksheet_and_a_sheet_that_is_not_there_is_named_with_the_others() {
    let env = TestEnv::new();
    let pool = env.pool(true, &["providers"]);
    let book = root().join("tests/corpus/workbook-two-sheets.xlsx");
    let run = env
        .command(&pool, ["run"])
        .arg(&book)
        .args(["--sheet", "providers"])
        .expect(exit::OK);
    assert_eq!(run.report()["summary"]["created"], 2);
    assert!(
        env.get_user(&pool, "hanako@workbook-two-sheets.test")
            .is_some()
    );

    let wrong = env
        .command(&pool, ["run"])
        .arg(&book)
        .args(["--sheet", "Provider"])
        .expect(exit::ABORTED);
    assert!(
        wrong
            .stderr()
            .contains(r#"has no sheet "Provider"; its sheets are: "Instructions", "Providers""#),
        "{}",
        wrong.stderr()
    );

    let csv = env.write("p.csv", "email\nx@workbook-sheet.test\n");
    let on_csv = env
        .command(&pool, ["check"])
        .arg(&csv)
        .args(["--sheet", "Providers"])
        .expect(exit::ABORTED);
    assert!(on_csv.stderr().contains("--sheet applies to workbooks"));
    assert!(env.get_user(&pool, "x@workbook-sheet.test").is_none());
}

#[test]
fn a_number_in_a_text_column_is_taken_as_its_digits_and_the_log_says_so_once() {
    let env = TestEnv::new();
    let pool = env.pool(true, &["providers"]);
    let out = env
        .command(&pool, ["check"])
        .arg(root().join("tests/corpus/workbook-cells.xlsx"))
        .expect(exit::ROWS_FAILED);
    let stderr = out.stderr();
    let said = stderr
        .matches("numbers in this column are taken as their digits")
        .count();
    assert_eq!(said, 1, "{stderr}");
    assert!(
        stderr
            .contains(r#"line 11, column nickname (E): the workbook stores "42" here as a number"#),
        "{stderr}"
    );
}

/// The committed workbooks are what `scripts/workbooks.py` writes: regenerated into a scratch
/// root, every one reads exactly as the committed one does.
#[test]
fn the_committed_workbooks_are_what_the_script_writes() {
    let scratch = tempfile::tempdir().unwrap();
    let at = scratch.path();
    std::fs::create_dir_all(at.join("samples")).unwrap();
    std::fs::create_dir_all(at.join("tests/corpus")).unwrap();
    std::fs::copy(
        root().join("samples/providers.csv"),
        at.join("samples/providers.csv"),
    )
    .unwrap();
    let out = std::process::Command::new(python())
        .arg(root().join("scripts/workbooks.py"))
        .arg(at)
        .output()
        .expect("the venv's python (make venv)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = |path: &std::path::Path| {
        let run = binary(["check".as_ref(), path.as_os_str()]).run();
        let text = format!("{:?}\n{}\n{}", run.code(), run.stdout(), run.stderr());
        // Only the path and the log's timestamps may differ.
        text.replace(&path.display().to_string(), "FILE")
            .lines()
            .map(|l| match l.split_once("Z ") {
                Some((stamp, rest)) if stamp.starts_with("20") => rest.to_owned(),
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
    };
    for name in [
        "samples/providers.xlsx",
        "tests/corpus/workbook-empty.xlsx",
        "tests/corpus/workbook-no-header.xlsx",
        "tests/corpus/workbook-two-sheets.xlsx",
        "tests/corpus/workbook-password.xlsx",
        "tests/corpus/csv-renamed.xlsx",
        "tests/corpus/workbook-cells.xlsx",
        "tests/corpus/workbook.ods",
    ] {
        assert_eq!(check(&at.join(name)), check(&root().join(name)), "{name}");
    }
}
