//! How scheduled runs are watched, checked by the real consumers: the metrics file accepted by
//! `promtool check metrics` and served by a real `node_exporter`'s textfile collector while
//! `run` and `status` share it; the EMF record checked against the structure CloudWatch's
//! specification requires; the termination message; a stalled cohort made measurable; and a
//! SIGTERM while rows wait in backoff under a throttling proxy, ending within 20 seconds with
//! the report, the metrics and the ping written.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cognito_onboard::error::exit;

use crate::ping::{Mode, Monitor};
use crate::support::prom::{self, NodeExporter};
use crate::support::*;

fn suppressed(env: &TestEnv, pool: &Pool, args: &[&str], pw: &str) -> TestCommand {
    env.command(pool, args.iter().copied())
        .args(["--delivery", "suppress", "--password-file"])
        .arg(env.path(pw))
}

/// A report's time to the millisecond, as the state keeps times.
fn ms(v: &serde_json::Value) -> Option<i64> {
    v.as_str().map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    })
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = prom::samples(scrape, name)
        .into_iter()
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
    found.first().copied()
}

/// A run, then a status, then a run that cannot read its input, all into one file in a
/// textfile directory: promtool accepts the file each time; node_exporter serves both
/// commands' series; the failed run's exit code shows while its last success and the status's
/// figures stay.
#[test]
fn run_and_status_share_a_metrics_file_that_promtool_and_node_exporter_accept() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let dir = env.path("textfile");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("cognito_onboard.prom");
    let metrics = file.to_str().unwrap();
    let csv = env.write(
        "p.csv",
        "email,name\np0@example.jp,A\np1@example.jp,B\nnot-an-email,C\n",
    );
    let r = suppressed(
        &env,
        &pool,
        &["run", csv.to_str().unwrap(), "--metrics-file", metrics],
        "pw.csv",
    )
    .expect(exit::ROWS_FAILED);
    let report = r.report();
    let text = std::fs::read_to_string(&file).unwrap();
    prom::check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let run = [("pool", pool.id.as_str()), ("command", "run")];
    assert_eq!(
        value(&text, "cognito_onboard_last_run_exit_code", &run),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "cognito_onboard_last_success_timestamp_seconds",
            &run
        ),
        Some(0.0),
        "no run has succeeded yet"
    );
    assert_eq!(
        value(
            &text,
            "cognito_onboard_last_run_rows",
            &[("outcome", "created")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "cognito_onboard_last_run_rows",
            &[("outcome", "invalid")]
        ),
        Some(1.0)
    );
    let started = chrono::DateTime::parse_from_rfc3339(report["started_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0;
    assert_eq!(
        value(
            &text,
            "cognito_onboard_last_run_start_timestamp_seconds",
            &run
        ),
        Some(started)
    );
    assert_eq!(
        value(
            &text,
            "cognito_onboard_last_run_calls",
            &[("category", "UserCreation")]
        ),
        Some(report["calls"]["UserCreation"].as_u64().unwrap() as f64)
    );

    // The invalid row fixed: the run succeeds, and status writes its own series beside.
    let fixed = env.write("p.csv", "email,name\np0@example.jp,A\np1@example.jp,B\n");
    suppressed(
        &env,
        &pool,
        &["run", fixed.to_str().unwrap(), "--metrics-file", metrics],
        "pw2.csv",
    )
    .expect(exit::OK);
    env.command(&pool, ["status", "--metrics-file", metrics])
        .expect(exit::OK);
    let text = std::fs::read_to_string(&file).unwrap();
    prom::check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let succeeded = value(
        &text,
        "cognito_onboard_last_success_timestamp_seconds",
        &run,
    )
    .unwrap();
    assert!(succeeded > started, "{text}");

    // A run that cannot read its input: exit 1, the last success kept.
    let missing = env.path("missing.csv");
    suppressed(
        &env,
        &pool,
        &["run", missing.to_str().unwrap(), "--metrics-file", metrics],
        "pw3.csv",
    )
    .expect(exit::ABORTED);
    let text = std::fs::read_to_string(&file).unwrap();
    prom::check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));

    let exporter = NodeExporter::start(&dir);
    let scrape = exporter.scrape();
    assert_eq!(exporter.textfile_scrape_error(), 0.0, "{}", exporter.log());
    let status = [("pool", pool.id.as_str()), ("command", "status")];
    assert_eq!(
        value(&scrape, "cognito_onboard_last_run_exit_code", &run),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "cognito_onboard_last_run_exit_code", &status),
        Some(0.0)
    );
    assert_eq!(
        value(
            &scrape,
            "cognito_onboard_last_success_timestamp_seconds",
            &run
        ),
        Some(succeeded),
        "a failed run keeps the last success"
    );
    assert_eq!(
        value(
            &scrape,
            "cognito_onboard_providers",
            &[("stage", "invited")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &scrape,
            "cognito_onboard_providers",
            &[("stage", "pending")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &scrape,
            "cognito_onboard_last_run_rows",
            &[("outcome", "created")]
        ),
        None,
        "the failed run counted no rows"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || (n.ends_with(".prom") && n != "cognito_onboard.prom"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The requirements of CloudWatch's embedded metric format specification that a record must
/// meet for CloudWatch to extract its metrics
/// (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
fn check_emf(record: &serde_json::Value) -> Result<(), String> {
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let root = record.as_object().ok_or("the root is not an object")?;
    let aws = root["_aws"].as_object().ok_or("_aws is not an object")?;
    let ts = aws.get("Timestamp").ok_or("_aws.Timestamp is missing")?;
    if !ts.is_u64() {
        return Err(format!(
            "_aws.Timestamp is not milliseconds since the epoch: {ts}"
        ));
    }
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .ok_or("_aws.CloudWatchMetrics is not an array")?;
    if directives.is_empty() {
        return Err("no metric directive".into());
    }
    for d in directives {
        let ns = d["Namespace"].as_str().ok_or("Namespace is not a string")?;
        if ns.is_empty() || ns.len() > 1024 {
            return Err(format!("Namespace {ns:?}"));
        }
        let sets = d["Dimensions"]
            .as_array()
            .ok_or("Dimensions is not an array")?;
        for set in sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("a dimension set of more than 30".into());
            }
            for name in set {
                let name = name.as_str().ok_or("a dimension is not a string")?;
                let value = root
                    .get(name)
                    .ok_or(format!("dimension {name} is not at the top"))?;
                let value = value
                    .as_str()
                    .ok_or(format!("dimension {name} is not a string"))?;
                if value.is_empty() || value.len() > 1024 {
                    return Err(format!("dimension {name} = {value:?}"));
                }
            }
        }
        let metrics = d["Metrics"].as_array().ok_or("Metrics is not an array")?;
        if metrics.len() > 100 {
            return Err(format!(
                "{} metrics in one directive (at most 100)",
                metrics.len()
            ));
        }
        for m in metrics {
            let name = m["Name"].as_str().ok_or("a metric without a Name")?;
            if name.is_empty() || name.len() > 1024 {
                return Err(format!("metric name {name:?}"));
            }
            if let Some(unit) = m.get("Unit") {
                let unit = unit.as_str().ok_or("Unit is not a string")?;
                if !UNITS.contains(&unit) {
                    return Err(format!("{name}: unit {unit:?}"));
                }
            }
            match root.get(name) {
                Some(v) if v.is_number() => {}
                Some(serde_json::Value::Array(a)) if a.iter().all(|v| v.is_number()) => {}
                other => return Err(format!("{name}: no number at the top ({other:?})")),
            }
        }
    }
    Ok(())
}

/// `--log-format json --emf`: every line of stderr is JSON, and the last is one EMF record
/// with the run's figures; the checker refuses a record without what the specification
/// requires.
#[test]
fn the_emf_record_meets_the_specification_and_carries_the_runs_figures() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\nnot-an-email,B\n");
    let r = suppressed(
        &env,
        &pool,
        &[
            "--log-format",
            "json",
            "run",
            csv.to_str().unwrap(),
            "--emf",
        ],
        "pw.csv",
    )
    .expect(exit::ROWS_FAILED);
    let stderr = r.stderr();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let records: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert_eq!(records.len(), 1, "{stderr}");
    let emf = records[0];
    check_emf(emf).unwrap_or_else(|e| panic!("{e}: {emf:#}"));
    let d = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(d["Namespace"], "CognitoOnboard");
    assert_eq!(
        d["Dimensions"],
        serde_json::json!([["UserPoolId", "Command"]])
    );
    assert_eq!(emf["UserPoolId"], pool.id.as_str());
    assert_eq!(emf["Command"], "run");
    let report = r.report();
    assert_eq!(emf["RunId"], report["run_id"]);
    assert_eq!(emf["ExitCode"], 3);
    assert_eq!(emf["Succeeded"], 0);
    assert_eq!(emf["RowsCreated"], report["summary"]["created"]);
    assert_eq!(emf["RowsInvalid"], 1);
    assert_eq!(emf["CallsUserCreation"], report["calls"]["UserCreation"]);
    assert!(
        !emf.to_string().contains('@'),
        "no email in the record: {emf}"
    );

    // The checker can fail: each requirement taken away in turn.
    for (path, why) in [
        ("/_aws/Timestamp", "Timestamp"),
        ("/_aws/CloudWatchMetrics/0/Namespace", "Namespace"),
        ("/UserPoolId", "dimension UserPoolId"),
        ("/RowsCreated", "RowsCreated"),
    ] {
        let mut broken = emf.clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        broken
            .pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        let e = check_emf(&broken).expect_err(path);
        assert!(e.contains(why), "{path}: {e}");
    }
}

/// Rows wait on the email budget and nothing goes out for runs on end: the report and the
/// metrics say since when; providers left pending past their expiry are counted with the runs
/// they have waited; `status` says the same.
#[test]
fn a_stalled_cohort_is_measurable_in_the_report_and_the_metrics() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let metrics = env.path("m.prom");
    let csv = env.write(
        "p.csv",
        "email,name\np0@example.jp,A\np1@example.jp,B\np2@example.jp,C\n",
    );
    let run = |budget: &str| {
        env.command(
            &pool,
            [
                "run",
                csv.to_str().unwrap(),
                "--email-budget",
                budget,
                "--metrics-file",
                metrics.to_str().unwrap(),
            ],
        )
        .expect(exit::OK)
        .report()
    };
    let first = run("2");
    assert_eq!(first["summary"]["created"], 2);
    assert_eq!(
        first["stalled"]["budget_blocked_since"],
        serde_json::Value::Null
    );
    let second = run("2");
    assert_eq!(second["summary"]["deferred"], 1);
    assert_eq!(
        ms(&second["stalled"]["budget_blocked_since"]),
        ms(&second["started_at"])
    );
    let third = run("2");
    assert_eq!(
        ms(&third["stalled"]["budget_blocked_since"]),
        ms(&second["started_at"]),
        "blocked since the first run that sent nothing"
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    let blocked = value(
        &text,
        "cognito_onboard_budget_blocked_seconds",
        &[("command", "run")],
    )
    .unwrap();
    assert!(blocked > 0.0, "{text}");
    assert_eq!(
        value(
            &text,
            "cognito_onboard_last_run_deferred_rows",
            &[("cause", "budget")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &text,
            "cognito_onboard_email_budget_frees_timestamp_seconds",
            &[]
        )
        .unwrap()
            > 0.0
    );
    prom::check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let status = env
        .command(
            &pool,
            ["status", "--metrics-file", metrics.to_str().unwrap()],
        )
        .expect(exit::OK);
    let status = read_json(Path::new(status.stdout().trim()));
    assert_eq!(
        ms(&status["stalled"]["budget_blocked_since"]),
        ms(&second["started_at"])
    );

    // Eight days on, with re-issues turned off: the two invitations have expired and stay so.
    env.age_state(24 * 8);
    let never = env.write("never.toml", "reissue = \"never\"\n");
    let expired_run = || {
        env.command(
            &pool,
            [
                "--config",
                never.to_str().unwrap(),
                "run",
                csv.to_str().unwrap(),
                "--email-budget",
                "0",
                "--metrics-file",
                metrics.to_str().unwrap(),
            ],
        )
        .expect(exit::OK)
        .report()
    };
    let a = expired_run();

    assert_eq!(a["stalled"]["expired"], 2, "{:#}", a["stalled"]);
    assert_eq!(a["stalled"]["expired_for_runs"], 1);
    let b = expired_run();
    assert_eq!(b["stalled"]["expired_for_runs"], 2);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        value(
            &text,
            "cognito_onboard_expired_pending_runs",
            &[("command", "run")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "cognito_onboard_expired_providers",
            &[("command", "run")]
        ),
        Some(2.0)
    );
}

/// `--termination-log`: the one line Kubernetes shows for the pod: exit code and counts, or
/// the kind of failure; a run refused by the lock says so too.
#[test]
fn the_termination_log_says_how_the_run_ended() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let log = env.path("termination-log");
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\nnot-an-email,B\n");
    suppressed(
        &env,
        &pool,
        &[
            "run",
            csv.to_str().unwrap(),
            "--termination-log",
            log.to_str().unwrap(),
        ],
        "pw.csv",
    )
    .expect(exit::ROWS_FAILED);
    let line = std::fs::read_to_string(&log).unwrap();
    assert_eq!(line, "run exit 3: 1 created, 1 invalid\n");
    assert!(!line.contains('@'));

    let held = cognito_onboard::state::State::open(
        &cognito_onboard::state::Location::File(env.path("state.db")),
        cognito_onboard::state::Access::Write,
    )
    .unwrap();
    env.command(
        &pool,
        ["status", "--termination-log", log.to_str().unwrap()],
    )
    .expect(exit::LOCKED);
    drop(held);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "status exit 4: another run holds the state\n"
    );
}

/// SIGTERM while rows wait in backoff on a throttled quota: no new row starts, no call is
/// made again, the rows waiting are deferred as stopped, and the report, the metrics file, the
/// termination message and the ping are all written, within 20 seconds of the signal.
#[test]
fn sigterm_with_rows_in_backoff_ends_within_twenty_seconds_with_every_output_written() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    // Cognito allows one creation a second; the tool believes it may make 50.
    let proxy = env.proxy(|c| c.quota_with_burst("UserCreation", 1.0, 1.0));
    let settings = env.write(
        "settings.toml",
        "rate_fraction = 1.0\nconcurrency = 16\nmax_attempts = 20\nemail_budget = 100000\n[quotas]\nUserCreation = 50\n",
    );
    let metrics = env.path("m.prom");
    let log = env.path("termination-log");
    let monitor = Monitor::start(Mode::Answer);
    let csv = env.write(
        "p.csv",
        (0..200).fold(String::from("email,name\n"), |mut s, i| {
            s.push_str(&format!("p{i:04}@example.jp,P {i}\n"));
            s
        }),
    );
    let child = env
        .command(
            &pool,
            [
                "--config",
                settings.to_str().unwrap(),
                "run",
                csv.to_str().unwrap(),
                "--metrics-file",
                metrics.to_str().unwrap(),
                "--termination-log",
                log.to_str().unwrap(),
                "--ping-url",
                &monitor.url(),
            ],
        )
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.stats().op("AdminCreateUser").throttled < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        proxy.stats().op("AdminCreateUser").throttled >= 30,
        "rows are in backoff: {:?}",
        proxy.stats().op("AdminCreateUser")
    );
    let signalled = Instant::now();
    // SAFETY: sends SIGTERM to our own child by its pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let received_at_signal = proxy.stats().received("AdminCreateUser");
    let out = child.wait();
    let took = signalled.elapsed();
    out.expect_code(exit::ABORTED);
    eprintln!("SIGTERM to exit: {:.2} s", took.as_secs_f64());
    assert!(took < Duration::from_secs(20), "{took:?}");
    let stats = proxy.stats();
    // At most the calls already on their way when the signal arrived.
    assert!(
        stats.received("AdminCreateUser") <= received_at_signal + 16,
        "{} after {received_at_signal}",
        stats.received("AdminCreateUser")
    );

    let report = read_json(Path::new(out.stdout().trim()));
    assert_eq!(report["interrupted"], true);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 200, "no row missing from the report");
    let by: BTreeMap<String, usize> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
        m
    });
    assert_eq!(
        by.get("failed"),
        None,
        "a stopped row is deferred, not failed: {by:?}"
    );
    let stopped = rows
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().starts_with("stopped: "))
        .count();
    assert!(
        stopped >= 1,
        "rows waiting in backoff were deferred as stopped: {by:?}"
    );
    assert_eq!(
        report["summary"]["created"].as_u64().unwrap() as usize,
        env.users(&pool).len()
    );

    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        value(
            &text,
            "cognito_onboard_last_run_exit_code",
            &[("command", "run")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "cognito_onboard_last_run_deferred_rows",
            &[("cause", "stopped")]
        ),
        Some(stopped as f64)
    );
    assert!(
        value(
            &text,
            "cognito_onboard_last_run_throttles",
            &[("category", "UserCreation")]
        )
        .unwrap()
            >= 30.0
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .starts_with("run exit 1: ")
    );
    let last = monitor.seen().last().cloned().unwrap();
    assert!(last.1.ends_with("/1"), "{last:?}");
}

/// The cron sample's way of being quiet (`-q`, stdout to /dev/null, cron mails what is left):
/// a run that settled with rows waiting on the email budget says nothing, nor does one refused
/// because the previous run holds the lock; one with a row that failed names it.
#[test]
fn a_quiet_run_says_nothing_on_success_and_names_what_failed() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\np1@example.jp,B\n");
    let quiet = |csv: &Path, code: u8| {
        env.command(&pool, ["-q", "run"])
            .arg(csv)
            .args(["--email-budget", "1"])
            .expect(code)
            .stderr()
    };
    let settled = quiet(&csv, exit::OK);
    assert_eq!(settled, "", "a settled run mails nothing");
    let held = cognito_onboard::state::State::open(
        &cognito_onboard::state::Location::File(env.path("state.db")),
        cognito_onboard::state::Access::Write,
    )
    .unwrap();
    assert_eq!(quiet(&csv, exit::LOCKED), "", "exit 4 is not news");
    drop(held);
    let bad = env.write("bad.csv", "email,name\np0@example.jp,A\nnot-an-email,B\n");
    let failed = quiet(&bad, exit::ROWS_FAILED);
    assert!(failed.contains("line 3"), "{failed}");
    assert!(
        !failed.contains("p0@example.jp"),
        "only what failed: {failed}"
    );
}

/// The README's alert rules are `samples/prometheus/alerts.yml` word for word; promtool accepts
/// them and their unit tests pass (and fail with a threshold moved); and every metric they
/// name is one a real run writes.
#[test]
fn the_readmes_alert_rules_pass_promtool_and_name_metrics_a_run_writes() {
    let dir = root().join("samples/prometheus");
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```yaml\n{rules}```\n")),
        "the README's rules differ from samples/prometheus/alerts.yml"
    );
    prom::check_rules(&dir.join("alerts.yml")).unwrap_or_else(|e| panic!("{e}"));
    prom::test_rules(&dir.join("alerts.test.yml")).unwrap_or_else(|e| panic!("{e}"));
    let moved = tempfile::tempdir().unwrap();
    std::fs::write(
        moved.path().join("alerts.yml"),
        rules.replace("> 2 * 3600", "> 3 * 3600"),
    )
    .unwrap();
    std::fs::copy(
        dir.join("alerts.test.yml"),
        moved.path().join("alerts.test.yml"),
    )
    .unwrap();
    assert!(
        prom::test_rules(&moved.path().join("alerts.test.yml")).is_err(),
        "the rule tests pass whatever the threshold"
    );

    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let metrics = env.path("m.prom");
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\n");
    suppressed(
        &env,
        &pool,
        &[
            "run",
            csv.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
        "pw.csv",
    )
    .expect(exit::OK);
    let written = std::fs::read_to_string(&metrics).unwrap();
    let named: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("cognito_onboard_"))
        .collect();
    assert_eq!(named.len(), 4, "{named:?}");
    for name in named {
        assert!(
            written.contains(&format!("\n{name}{{")),
            "{name} is not in what a run writes:\n{written}"
        );
    }
}
