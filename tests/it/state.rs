//! Runs that remember: `status`, expiry from the job's own invitation times, the re-issue cap,
//! the email budget across runs, the run lock and the state file's errors.

use std::time::{Duration, Instant};

use cognito_onboard::error::exit;

use crate::support::proxy::FaultKind;
use crate::support::*;

fn cohort(n: usize) -> String {
    let mut s = String::from("email,name\n");
    for i in 0..n {
        s.push_str(&format!("provider{i:04}@example.com,Provider {i}\n"));
    }
    s
}

#[test]
fn status_lists_each_confirmation_once() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write("p.csv", cohort(4));
    let pw = env.path("pw.csv");
    env.command(
        &pool,
        [
            "run",
            csv.to_str().unwrap(),
            "--delivery",
            "suppress",
            "--password-file",
            pw.to_str().unwrap(),
        ],
    )
    .expect(exit::OK);
    let issued = passwords(&pw);
    // The password file names Cognito's usernames (UUIDs here); sign two of them in.
    for (user, temp) in &issued[..2] {
        env.complete_first_sign_in(&pool, user, temp, "Fresh-Passw0rd!");
    }
    let confirmed_emails: Vec<String> = issued[..2]
        .iter()
        .map(|(u, _)| attr(env.get_user(&pool, u).unwrap().user_attributes(), "email").unwrap())
        .collect();

    let first = env.command(&pool, ["status"]).expect(exit::OK);
    let report = first.report();
    assert_eq!(report["summary"]["newly_confirmed"], 2, "{report:#}");
    assert_eq!(report["summary"]["pending"], 2);
    let mut newly: Vec<String> = report["newly_confirmed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    newly.sort();
    let mut want = confirmed_emails.clone();
    want.sort();
    assert_eq!(newly, want);
    assert_eq!(report["funnel"]["invited"], 4);
    assert_eq!(report["funnel"]["confirmed"], 2);
    assert!(report["funnel"]["median_hours_to_confirm"].is_number());
    let newly_csv = first
        .stdout()
        .trim()
        .replace(".json", "-newly-confirmed.csv");
    let text = std::fs::read_to_string(&newly_csv).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    for e in &want {
        assert!(text.contains(e.as_str()), "{text}");
    }

    let second = env
        .command(&pool, ["status", "--format", "table"])
        .expect(exit::OK);
    assert!(
        second.stdout().contains("newly confirmed: none"),
        "{}",
        second.stdout()
    );
    assert!(
        second.stdout().contains("2 confirmed, 2 pending"),
        "{}",
        second.stdout()
    );
}

#[test]
fn run_records_confirmations_for_status_and_status_with_a_cohort() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", cohort(3));
    let pw = env.path("pw.csv");
    env.command(
        &pool,
        [
            "run",
            csv.to_str().unwrap(),
            "--delivery",
            "suppress",
            "--password-file",
            pw.to_str().unwrap(),
        ],
    )
    .expect(exit::OK);
    let issued = passwords(&pw);
    let (user, temp) = issued
        .iter()
        .find(|(u, _)| u == "provider0000@example.com")
        .expect("provider0000 was issued a password");
    env.complete_first_sign_in(&pool, user, temp, "Fresh-Passw0rd!");
    // A run sees the confirmation first; status still reports it as new, once.
    env.command(&pool, ["run", csv.to_str().unwrap()])
        .expect(exit::OK);
    let other = env.write(
        "other.csv",
        "email\nprovider0000@example.com\nnobody@example.com\n",
    );
    let r = env
        .command(&pool, ["status", other.to_str().unwrap()])
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["newly_confirmed"], 1, "{report:#}");
    assert_eq!(report["summary"]["not_invited"], 1);
    assert_eq!(report["rows"].as_array().unwrap().len(), 2);
    let again = env.command(&pool, ["status"]).run();
    assert_eq!(again.report()["summary"]["newly_confirmed"], 0);
    assert_eq!(again.report()["summary"]["confirmed"], 1);
}

#[test]
fn expired_invitations_are_reissued_up_to_the_cap() {
    let mut env = TestEnv::new();
    // Free-form usernames: moto's RESEND misbehaves where email is the username (see
    // robustness.rs).
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(2));
    let csv = csv.to_str().unwrap();
    env.command(&pool, ["run", csv]).expect(exit::OK);
    assert_eq!(proxy.stats().creates, 2);
    // Not yet expired: nothing sent.
    let r = env.command(&pool, ["run", csv]).run();
    assert_eq!(r.report()["summary"]["skipped"], 2);
    env.age_state(8 * 24);
    let status = env.command(&pool, ["status"]).run();
    assert_eq!(
        status.report()["summary"]["expired"],
        2,
        "{:#}",
        status.report()
    );
    let r = env
        .command(&pool, ["run", csv, "--max-reissues", "1"])
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["reissued"], 2, "{report:#}");
    assert!(
        report["rows"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_eq!(proxy.stats().resends, 2);
    for i in 0..2 {
        let email = format!("provider{i:04}@example.com");
        env.undo_moto_resend(&pool, &email, &email);
    }
    // Freshly re-issued: pending again.
    let r = env
        .command(&pool, ["run", csv, "--max-reissues", "1"])
        .run();
    assert_eq!(
        r.report()["summary"]["skipped"],
        2,
        "{:#}\n{}",
        r.report(),
        r.stderr()
    );
    // Expired again, but the cap is reached: attention, nothing sent.
    env.age_state(8 * 24);
    let r = env
        .command(&pool, ["run", csv, "--max-reissues", "1"])
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["attention"], 2, "{report:#}");
    assert!(
        report["rows"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("--max-reissues")
    );
    assert_eq!(proxy.stats().resends, 2);
    assert_eq!(proxy.stats().invitations(), 4);
}

#[test]
fn the_email_budget_spreads_a_cohort_over_days() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(120));
    let csv = csv.to_str().unwrap();
    let mut created = Vec::new();
    for day in 0..4 {
        let r = env.command(&pool, ["run", csv]).expect(exit::OK);
        let report = r.report();
        created.push(report["summary"]["created"].as_u64().unwrap());
        let deferred = report["summary"]["deferred"].as_u64().unwrap();
        if deferred > 0 {
            assert!(
                report["email_budget_frees_at"].is_string(),
                "day {day}: {report:#}"
            );
        }
        env.age_state(25);
    }
    assert_eq!(created, [50, 50, 20, 0]);
    assert_eq!(proxy.stats().creates, 120);
    assert_eq!(env.users(&pool).len(), 120);
}

#[test]
fn a_second_run_on_the_same_state_exits_with_the_lock_code_and_changes_nothing() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let proxy = env.proxy(|c| c.latency(Duration::from_millis(200)));
    let csv = env.write("p.csv", cohort(15));
    let first = env
        .command(&pool, ["run", csv.to_str().unwrap(), "--concurrency", "1"])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().creates == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(proxy.stats().creates > 0, "the first run did not start");
    let reports_before = std::fs::read_dir(env.path("reports")).unwrap().count();
    let calls_before = proxy.stats().events.len();
    let second = env
        .command(&pool, ["run", csv.to_str().unwrap()])
        .expect(exit::LOCKED);
    assert!(
        second.stderr().contains("another cognito-onboard run"),
        "{}",
        second.stderr()
    );
    assert_eq!(
        std::fs::read_dir(env.path("reports")).unwrap().count(),
        reports_before
    );
    first.wait().expect_code(exit::OK);
    // Every call after the second run started came from the first (15 rows: 1 describe,
    // lookups and creates); the second made none.
    let second_calls = proxy.stats().events.len() - calls_before;
    assert!(second_calls <= 30, "{second_calls}");
    assert_eq!(proxy.stats().creates, 15);
}

#[test]
fn a_corrupt_or_unwritable_state_file_is_a_clear_error() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write("p.csv", cohort(1));
    std::fs::write(env.path("state.db"), vec![0x5au8; 4096]).unwrap();
    let r = env
        .command(&pool, ["run", csv.to_str().unwrap()])
        .expect(exit::ABORTED);
    assert!(
        r.stderr().contains("not a cognito-onboard state database"),
        "{}",
        r.stderr()
    );
    let blocker = env.write("not-a-dir", "x");
    let r = env
        .command(&pool, ["run", csv.to_str().unwrap()])
        .env("COGNITO_ONBOARD_STATE", blocker.join("state.db"))
        .expect(exit::ABORTED);
    assert!(r.stderr().contains("not-a-dir"), "{}", r.stderr());
    assert!(env.users(&pool).is_empty());
    assert!(
        !env.path("reports").exists(),
        "no report for a run that could not start"
    );
}

#[test]
fn a_state_file_of_schema_one_is_migrated_by_a_run() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write("p.csv", cohort(1));
    {
        let conn = rusqlite::Connection::open(env.path("state.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, pool_id TEXT NOT NULL, command TEXT NOT NULL,
               input_path TEXT, input_sha256 TEXT, started_at INTEGER NOT NULL, finished_at INTEGER,
               exit_code INTEGER, counts TEXT);
             CREATE TABLE users (pool_id TEXT NOT NULL, key TEXT NOT NULL, username TEXT, email TEXT,
               invited INTEGER NOT NULL DEFAULT 0, groups_done TEXT NOT NULL DEFAULT '',
               last_status TEXT, last_enabled INTEGER, last_seen_at INTEGER, PRIMARY KEY (pool_id, key));
             CREATE TABLE invitations (id INTEGER PRIMARY KEY, pool_id TEXT NOT NULL, key TEXT NOT NULL,
               kind TEXT NOT NULL, medium TEXT NOT NULL, run_id TEXT NOT NULL, intent_at INTEGER NOT NULL,
               outcome TEXT NOT NULL DEFAULT 'pending', sent_at INTEGER,
               password_recorded INTEGER NOT NULL DEFAULT 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        // What a version-1 run left behind: one provider pending, one confirmed, one never seen.
        conn.execute(
            "INSERT INTO users (pool_id, key, username, email, invited, last_status, last_seen_at)
             VALUES (?1, 'pending@example.com', 'u-pending', 'pending@example.com', 1,
                     'FORCE_CHANGE_PASSWORD', 1700000000000),
                    (?1, 'confirmed@example.com', 'u-confirmed', 'confirmed@example.com', 1,
                     'CONFIRMED', 1700000500000),
                    (?1, 'unseen@example.com', NULL, 'unseen@example.com', 0, NULL, NULL)",
            [&pool.id],
        )
        .unwrap();
    }
    env.command(&pool, ["run", csv.to_str().unwrap()])
        .expect(exit::OK);
    let conn = rusqlite::Connection::open(env.path("state.db")).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        v as usize,
        cognito_onboard::state::SCHEMA_VERSION,
        "migrated to the current schema"
    );
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM transitions", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 1);
    // The migration turned each status seen by version 1 into a first transition, and nothing
    // else: the run's own transitions carry the run's id.
    let migrated: Vec<(String, String, Option<String>, String, i64)> = conn
        .prepare(
            "SELECT pool_id, key, from_status, to_status, observed_at FROM transitions
             WHERE run_id = 'migration' ORDER BY key",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        migrated,
        [
            (
                pool.id.clone(),
                "confirmed@example.com".to_string(),
                None,
                "CONFIRMED".to_string(),
                1700000500000
            ),
            (
                pool.id.clone(),
                "pending@example.com".to_string(),
                None,
                "FORCE_CHANGE_PASSWORD".to_string(),
                1700000000000
            ),
        ]
    );
    // A confirmation seen by version 1 dates from when it was seen; the rest are untouched.
    /// key, username, invited, last_status, confirmed_at
    type UserRow = (String, Option<String>, i64, Option<String>, Option<i64>);
    let users: Vec<UserRow> = conn
        .prepare(
            "SELECT key, username, invited, last_status, confirmed_at FROM users
             WHERE key IN ('pending@example.com', 'confirmed@example.com', 'unseen@example.com')
             ORDER BY key",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        users,
        [
            (
                "confirmed@example.com".to_string(),
                Some("u-confirmed".to_string()),
                1,
                Some("CONFIRMED".to_string()),
                Some(1700000500000)
            ),
            (
                "pending@example.com".to_string(),
                Some("u-pending".to_string()),
                1,
                Some("FORCE_CHANGE_PASSWORD".to_string()),
                None
            ),
            ("unseen@example.com".to_string(), None, 0, None, None),
        ]
    );
}

#[test]
fn a_run_killed_at_any_moment_is_resumed_without_a_second_invitation() {
    // The full crash test (500 rows, 10 seeded kill points) lives in the robustness tests;
    // this one kills a small run right after its first invitation reached Cognito.
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let proxy = env.proxy(|c| {
        c.fault(
            Some("AdminCreateUser"),
            FaultKind::DelayAfterForward(Duration::from_secs(3)),
            1.0,
        )
    });
    let csv = env.write("p.csv", cohort(3));
    let mut child = env
        .command(&pool, ["run", csv.to_str().unwrap(), "--concurrency", "1"])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().creates == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill();
    child.wait();
    proxy.set_faults(Vec::new());
    let r = env
        .command(&pool, ["run", csv.to_str().unwrap()])
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 2, "{report:#}");
    assert_eq!(
        report["summary"]["skipped"], 1,
        "the killed row's user exists and is pending"
    );
    let stats = proxy.stats();
    for i in 0..3 {
        assert_eq!(
            stats.invitations_to(&format!("provider{i:04}@example.com")),
            1,
            "{stats:?}"
        );
    }
}

/// `run` writes each row's report as it finishes: a run killed with SIGKILL leaves every row
/// finished so far in the CSV, in line order, and a JSON that says the run did not finish and
/// where its rows are.
#[test]
fn a_killed_run_leaves_every_finished_row_in_its_report() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let _proxy = env.proxy(|c| c.latency(Duration::from_millis(40)));
    let csv = env.write("p.csv", cohort(80));
    let mut child = env
        .command(&pool, ["run", csv.to_str().unwrap(), "--concurrency", "2"])
        .args(["--delivery", "suppress", "--password-file"])
        .arg(env.path("pw.csv"))
        .spawn();
    let reports = env.path("reports");
    let report_csv = || {
        std::fs::read_dir(&reports).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "csv"))
        })
    };
    let data_lines = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let path = loop {
        if let Some(p) = report_csv()
            && data_lines(&p) >= 10
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no rows reported in time");
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill();
    child.wait();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let lines: Vec<u64> = reader
        .records()
        .map(|r| r.expect("every written row is whole")[0].parse().unwrap())
        .collect();
    assert!(
        (10..80).contains(&lines.len()),
        "killed mid-run: {} rows",
        lines.len()
    );
    let expected: Vec<u64> = (2..2 + lines.len() as u64).collect();
    assert_eq!(lines, expected, "every finished row, in line order");
    let json = read_json(&path.with_extension("json"));
    assert_eq!(json["complete"], false, "{json:#}");
    let rows_file = std::path::PathBuf::from(json["rows_file"].as_str().unwrap());
    let kept = std::fs::read_to_string(rows_file).unwrap();
    assert!(
        kept.lines().count() >= lines.len(),
        "the JSON rows are kept too"
    );
    for line in kept.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("one whole row a line");
        assert!(row["outcome"].is_string());
    }
}
