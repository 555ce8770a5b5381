//! The help desk: `doctor` gives every provider one verdict with its remedy, each state set up
//! in moto through the SDK (or by moving the state's clock), and exits 3 when someone needs an
//! action.

use cognito_onboard::error::exit;

use crate::support::proxy::FaultKind;
use crate::support::*;

fn verdicts(r: &Run) -> std::collections::BTreeMap<String, (String, String)> {
    doctor_verdicts(r)
        .into_iter()
        .map(|(id, verdict, remedy)| (id, (verdict, remedy)))
        .collect()
}

#[test]
fn doctor_gives_every_provider_a_verdict_and_a_remedy() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let mut csv = String::from("email,name\n");
    for i in 0..6 {
        csv.push_str(&format!("p{i}@example.jp,Provider {i}\n"));
    }
    let csv = env.write("p.csv", csv);
    let issued = env.onboard_suppressed(&pool, &csv);
    let temp = |u: &str| issued.iter().find(|(n, _)| n == u).unwrap().1.clone();
    // p1 confirmed; p2 confirmed with its email no longer verified; p3 disabled; p4 deleted;
    // p5 confirmed, then reset by an administrator.
    for u in ["p1@example.jp", "p2@example.jp", "p5@example.jp"] {
        env.complete_first_sign_in(&pool, u, &temp(u), "N3w-Passw0rd!");
    }
    env.rt.block_on(async {
        use aws_sdk_cognitoidentityprovider::types::AttributeType;
        let c = &env.client;
        c.admin_update_user_attributes()
            .user_pool_id(&pool.id)
            .username("p2@example.jp")
            .user_attributes(
                AttributeType::builder()
                    .name("email_verified")
                    .value("false")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        c.admin_disable_user()
            .user_pool_id(&pool.id)
            .username("p3@example.jp")
            .send()
            .await
            .unwrap();
        c.admin_delete_user()
            .user_pool_id(&pool.id)
            .username("p4@example.jp")
            .send()
            .await
            .unwrap();
        c.admin_reset_user_password()
            .user_pool_id(&pool.id)
            .username("p5@example.jp")
            .send()
            .await
            .unwrap();
    });
    let ids = [
        "p0@example.jp",
        "p1@example.jp",
        "p2@example.jp",
        "p3@example.jp",
        "p4@example.jp",
        "p5@example.jp",
        "nobody@example.jp",
    ];
    let r = env
        .command(&pool, ["doctor", "--format", "json"])
        .args(ids)
        .expect(exit::ROWS_FAILED);
    let v = verdicts(&r);
    let want = [
        (
            "p0@example.jp",
            "pending",
            "out of band (the password file)",
        ),
        ("p1@example.jp", "recoverable", "verified email"),
        ("p2@example.jp", "unrecoverable", "mark the email verified"),
        ("p3@example.jp", "disabled", "disabled"),
        ("p4@example.jp", "deleted", "deleted"),
        ("p5@example.jp", "reset_required", "ForgotPassword"),
        ("nobody@example.jp", "not_in_pool", "never invited"),
    ];
    for (id, verdict, says) in want {
        let (got, remedy) = &v[id];
        assert_eq!(got, verdict, "{id}: {remedy}");
        assert!(remedy.contains(says), "{id}: {remedy}");
    }
    // The table for people, and a report file for the record.
    let table = env
        .command(&pool, ["doctor", "p0@example.jp", "p1@example.jp"])
        .expect(exit::OK);
    assert!(
        table.stdout().contains("p0@example.jp  pending"),
        "{}",
        table.stdout()
    );
    assert!(
        table.stdout().contains("ForgotPassword: works"),
        "{}",
        table.stdout()
    );
    let reports: Vec<_> = std::fs::read_dir(env.path("reports"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(reports.len() >= 3, "a report per run");

    // A week later the invitation has expired.
    env.age_state(8 * 24);
    let r = env
        .command(&pool, ["doctor", "--format", "json", "p0@example.jp"])
        .expect(exit::ROWS_FAILED);
    let (verdict, remedy) = &verdicts(&r)["p0@example.jp"];
    assert_eq!(verdict, "expired", "{remedy}");
    assert!(remedy.contains("reissue"), "{remedy}");
}

/// A provider created earlier under another username is found by email.
#[test]
fn doctor_finds_a_provider_by_email_whatever_the_username() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    env.rt.block_on(async {
        use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
        env.client
            .admin_create_user()
            .user_pool_id(&pool.id)
            .username("taro")
            .user_attributes(
                AttributeType::builder()
                    .name("email")
                    .value("taro@example.jp")
                    .build()
                    .unwrap(),
            )
            .message_action(MessageActionType::Suppress)
            .send()
            .await
            .unwrap();
    });
    let r = env
        .command(&pool, ["doctor", "--format", "json", "taro@example.jp"])
        .expect(exit::OK);
    let shown: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(shown[0]["username"], "taro");
    assert_eq!(shown[0]["verdict"], "pending");
    let remedy = shown[0]["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("no-reply@verificationemail.com"),
        "{remedy}"
    );
    assert!(remedy.contains("spam folder"), "{remedy}");
    // The same from a CSV of providers.
    let csv = env.write(
        "who.csv",
        "email,name\ntaro@example.jp,Taro\nnobody@example.jp,N\n",
    );
    let r = env
        .command(&pool, ["doctor", "--format", "json", "--input"])
        .arg(&csv)
        .expect(exit::ROWS_FAILED);
    let v = verdicts(&r);
    assert_eq!(v["taro@example.jp"].0, "pending");
    assert_eq!(v["nobody@example.jp"].0, "not_in_pool");
}

/// "I deleted the email": `reissue` sends a new temporary password now (the old one no longer
/// signs in, the new one does), and refuses a confirmed provider and one not in the pool.
#[test]
fn reissue_replaces_the_temporary_password_now_and_refuses_the_others() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\np1@example.jp,B\n");
    let issued = env.onboard_suppressed(&pool, &csv);
    let temp = |u: &str| issued.iter().find(|(n, _)| n == u).unwrap().1.clone();
    env.complete_first_sign_in(
        &pool,
        "p1@example.jp",
        &temp("p1@example.jp"),
        "N3w-Passw0rd!",
    );
    let second = env.path("second.csv");
    let r = env
        .command(
            &pool,
            [
                "reissue",
                "p0@example.jp",
                "p1@example.jp",
                "nobody@example.jp",
            ],
        )
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&second)
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    assert_eq!(report["command"], "reissue");
    assert_eq!(report["summary"]["reissued"], 1, "{report:#}");
    assert_eq!(report["summary"]["attention"], 2, "{report:#}");
    let reasons: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[1].contains("use `reset`"), "{reasons:?}");
    assert!(reasons[2].contains("not in the pool"), "{reasons:?}");
    let new = passwords(&second);
    assert_eq!(new.len(), 1);
    assert_eq!(
        env.sign_in(&pool, "p0@example.jp", &temp("p0@example.jp")),
        Err("NotAuthorizedException".to_string()),
        "the old temporary password no longer signs in"
    );
    assert_eq!(env.sign_in(&pool, "p0@example.jp", &new[0].1), Ok(true));
    // Recorded as a re-issue, like any other.
    let d = env
        .command(&pool, ["doctor", "--format", "json", "p0@example.jp"])
        .expect(exit::OK);
    let shown: serde_json::Value = serde_json::from_str(&d.stdout()).unwrap();
    assert_eq!(shown[0]["invitations"].as_array().unwrap().len(), 2);
}

/// `doctor --fix` re-issues an expired invitation and marks an existing email verified, then
/// judges everyone again: both can now sign in or recover alone.
#[test]
fn doctor_fix_applies_the_safe_remedies_and_judges_again() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\np1@example.jp,B\n");
    let issued = env.onboard_suppressed(&pool, &csv);
    let p1 = issued
        .iter()
        .find(|(n, _)| n == "p1@example.jp")
        .unwrap()
        .1
        .clone();
    env.complete_first_sign_in(&pool, "p1@example.jp", &p1, "N3w-Passw0rd!");
    env.unverify_email(&pool, "p1@example.jp");
    env.age_state(8 * 24);
    let before = env
        .command(
            &pool,
            [
                "doctor",
                "--format",
                "json",
                "p0@example.jp",
                "p1@example.jp",
            ],
        )
        .expect(exit::ROWS_FAILED);
    let v = verdicts(&before);
    assert_eq!(v["p0@example.jp"].0, "expired");
    assert_eq!(v["p1@example.jp"].0, "unrecoverable");
    let fixed_pw = env.path("fixed.csv");
    let r = env
        .command(
            &pool,
            [
                "doctor",
                "--fix",
                "--format",
                "json",
                "p0@example.jp",
                "p1@example.jp",
            ],
        )
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&fixed_pw)
        .expect(exit::OK);
    let v = verdicts(&r);
    assert_eq!(v["p0@example.jp"].0, "pending", "{:?}", v);
    assert_eq!(v["p1@example.jp"].0, "recoverable", "{:?}", v);
    let new = passwords(&fixed_pw);
    assert_eq!(
        new.len(),
        1,
        "only the expired invitation got a new password"
    );
    assert_eq!(env.sign_in(&pool, "p0@example.jp", &new[0].1), Ok(true));
}

/// A confirmed provider lost the password: `reset` has Cognito send a code where one can
/// arrive (the user is then RESET_REQUIRED), refuses where it never could, and `--temporary`
/// puts a new temporary password in the password file instead.
#[test]
fn reset_sends_a_code_where_it_can_arrive_and_otherwise_a_temporary_password() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write(
        "p.csv",
        "email,name\np0@example.jp,A\np1@example.jp,B\np2@example.jp,C\n",
    );
    let issued = env.onboard_suppressed(&pool, &csv);
    let temp = |u: &str| issued.iter().find(|(n, _)| n == u).unwrap().1.clone();
    for u in ["p0@example.jp", "p1@example.jp"] {
        env.complete_first_sign_in(&pool, u, &temp(u), "N3w-Passw0rd!");
    }
    env.unverify_email(&pool, "p1@example.jp");
    let r = env
        .command(
            &pool,
            ["reset", "p0@example.jp", "p1@example.jp", "p2@example.jp"],
        )
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows[0]["outcome"], "reissued", "{report:#}");
    assert_eq!(rows[0]["action"], "reset");
    assert!(
        rows[0]["reason"].as_str().unwrap().contains("code"),
        "{report:#}"
    );
    assert_eq!(rows[1]["outcome"], "attention");
    assert!(
        rows[1]["reason"].as_str().unwrap().contains("never arrive"),
        "{report:#}"
    );
    assert_eq!(rows[2]["outcome"], "attention");
    assert!(
        rows[2]["reason"].as_str().unwrap().contains("reissue"),
        "{report:#}"
    );
    let p0 = env.get_user(&pool, "p0@example.jp").unwrap();
    assert_eq!(p0.user_status().map(|s| s.as_str()), Some("RESET_REQUIRED"));

    let file = env.path("temporary.csv");
    env.command(&pool, ["reset", "--temporary", "p1@example.jp"])
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&file)
        .expect(exit::OK);
    let new = passwords(&file);
    assert_eq!(new.len(), 1);
    assert_eq!(env.sign_in(&pool, "p1@example.jp", &new[0].1), Ok(true));
    assert_eq!(
        env.sign_in(&pool, "p1@example.jp", "N3w-Passw0rd!"),
        Err("NotAuthorizedException".to_string()),
        "the lost password no longer signs in"
    );
}

/// `--on-confirmed` hands each confirmed provider over exactly once across runs: a failing or
/// timed-out command is tried again on the next run, a successful one never again; `run`
/// hands over the confirmed providers it reads too.
#[test]
fn on_confirmed_hands_each_provider_over_exactly_once() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\np1@example.jp,B\n");
    let issued = env.onboard_suppressed(&pool, &csv);
    let temp = |u: &str| issued.iter().find(|(n, _)| n == u).unwrap().1.clone();
    env.complete_first_sign_in(
        &pool,
        "p0@example.jp",
        &temp("p0@example.jp"),
        "N3w-Passw0rd!",
    );
    let handed = |r: &Run| r.report()["handed_over"].clone();

    // A command that fails, then one that runs out of time: not handed over.
    let r = env
        .command(&pool, ["status", "--on-confirmed", "exit 3"])
        .expect(exit::OK);
    assert_eq!(handed(&r)[0]["exit_code"], 3, "{:#}", r.report());
    assert_eq!(handed(&r)[0]["handed_over"], false);
    let started = std::time::Instant::now();
    let r = env
        .command(
            &pool,
            [
                "status",
                "--on-confirmed",
                "sleep 30",
                "--on-confirmed-timeout",
                "1",
            ],
        )
        .expect(exit::OK);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "stopped on its limit"
    );
    assert_eq!(handed(&r)[0]["timed_out"], true, "{:#}", r.report());

    // Then it works: once, with the provider on stdin.
    let ok = "cat >> handed.jsonl";
    let r = env
        .command(&pool, ["status", "--on-confirmed", ok])
        .expect(exit::OK);
    assert_eq!(handed(&r)[0]["handed_over"], true, "{:#}", r.report());
    env.command(&pool, ["status", "--on-confirmed", ok])
        .expect(exit::OK);
    let lines = std::fs::read_to_string(env.path("handed.jsonl")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 1, "exactly once: {lines:?}");
    let given: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(given["username"], "p0@example.jp");
    assert_eq!(given["pool"], pool.id.as_str());
    assert!(
        given["invited_at"].is_string() && given["confirmed_at"].is_string(),
        "{given}"
    );

    // `run` reads statuses too: p1, confirmed since, is handed over by the next run.
    env.complete_first_sign_in(
        &pool,
        "p1@example.jp",
        &temp("p1@example.jp"),
        "N3w-Passw0rd!",
    );
    env.command(&pool, ["run", "--on-confirmed", ok])
        .arg(&csv)
        .expect(exit::OK);
    let lines = std::fs::read_to_string(env.path("handed.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.lines().nth(1).unwrap().contains("p1@example.jp"),
        "{lines}"
    );
}

/// The `--on-confirmed` command inherits the tool's environment but for its AWS credentials:
/// the command is the operator's, the credentials can write to the pool. A variable named with
/// `--on-confirmed-env` (or `on_confirmed_env` in the settings) is given after all.
#[test]
fn on_confirmed_inherits_no_aws_credentials_unless_given_on_purpose() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\n");
    let issued = env.onboard_suppressed(&pool, &csv);
    env.complete_first_sign_in(&pool, "p0@example.jp", &issued[0].1, "N3w-Passw0rd!");
    let status = |args: &[&str]| {
        env.command(&pool, ["status"])
            .args(args)
            .env("AWS_SESSION_TOKEN", "the-tools-session-token")
            .env("WEBHOOK_URL", "http://127.0.0.1:9/hook")
    };
    let seen = |file: &str| std::fs::read_to_string(env.path(file)).unwrap();

    // Exits 1, so p0 is not handed over and the next command sees p0 again.
    status(&["--on-confirmed", "env > plain.env; exit 1"]).expect(exit::OK);
    let plain = seen("plain.env");
    for withheld in [
        "AWS_ACCESS_KEY_ID=",
        "AWS_SECRET_ACCESS_KEY=",
        "AWS_SESSION_TOKEN=",
    ] {
        assert!(!plain.contains(withheld), "{withheld} reached the command");
    }
    for kept in [
        "WEBHOOK_URL=http://127.0.0.1:9/hook",
        "AWS_REGION=eu-west-1",
        "PATH=",
    ] {
        assert!(plain.contains(kept), "{kept} is missing:\n{plain}");
    }

    let settings = env.write(
        "settings.toml",
        "on_confirmed_env = [\"AWS_ACCESS_KEY_ID\"]\n",
    );
    status(&[
        "--config",
        settings.to_str().unwrap(),
        "--on-confirmed",
        "env > filed.env; exit 1",
    ])
    .expect(exit::OK);
    let filed = seen("filed.env");
    assert!(filed.contains("AWS_ACCESS_KEY_ID=test"), "{filed}");
    assert!(!filed.contains("AWS_SESSION_TOKEN="), "{filed}");

    // The command line wins over the settings file.
    status(&[
        "--config",
        settings.to_str().unwrap(),
        "--on-confirmed",
        "env > given.env",
        "--on-confirmed-env",
        "AWS_SESSION_TOKEN",
    ])
    .expect(exit::OK);
    let given = seen("given.env");
    assert!(
        given.contains("AWS_SESSION_TOKEN=the-tools-session-token"),
        "{given}"
    );
    assert!(!given.contains("AWS_ACCESS_KEY_ID="), "{given}");

    // Naming a variable that is never withheld is a mistake worth saying.
    let r = status(&["--on-confirmed", "true", "--on-confirmed-env", "PATH"]).expect(exit::ABORTED);
    assert!(
        r.stderr().contains("PATH is not withheld"),
        "{}",
        r.stderr()
    );
}

/// The help desk's email budget follows `run`'s precedence: `--email-budget` on the command line
/// wins over the settings file's `email_budget` (the help desk once read the file directly).
#[test]
fn the_help_desks_email_budget_on_the_command_line_wins_over_the_file() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\np1@example.jp,B\n");
    env.onboard_suppressed(&pool, &csv);
    let settings = env.write("settings.toml", "email_budget = 5\n");
    let r = env
        .command(
            &pool,
            [
                "--config",
                settings.to_str().unwrap(),
                "reissue",
                "--email-budget",
                "1",
                "p0@example.jp",
                "p1@example.jp",
            ],
        )
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    assert_eq!(report["summary"]["reissued"], 1, "{report:#}");
    assert_eq!(report["summary"]["deferred"], 1, "{report:#}");
}

/// Where the pool logs its message-delivery errors, in `doctor`'s answer: read with
/// GetLogDeliveryConfiguration, answered here by the test proxy as AWS documents it (moto does
/// not implement it); without an answer it is said once to be unknown and the verdicts stand.
/// Cognito's own sender gets its advice.
#[test]
fn doctor_names_where_delivery_errors_are_logged_and_the_advice_for_cognitos_sender() {
    const ANSWER: &str = r#"{"LogDeliveryConfiguration": {"UserPoolId": "eu-west-1_x",
        "LogConfigurations": [{"LogLevel": "ERROR", "EventSource": "userNotification",
        "CloudWatchLogsConfiguration": {"LogGroupArn":
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/cognito/onboard"}}]}}"#;
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\n");
    env.onboard_suppressed(&pool, &csv);
    let unknown = env.command(&pool, ["doctor", "p0@example.jp"]).run();
    assert_eq!(unknown.code(), Some(exit::OK), "{}", unknown.stderr());
    assert!(
        unknown
            .stdout()
            .contains("whether delivery errors are logged is unknown"),
        "{}",
        unknown.stdout()
    );
    assert_eq!(
        unknown
            .stderr()
            .matches("message-delivery errors is unknown")
            .count(),
        1,
        "{}",
        unknown.stderr()
    );
    assert!(unknown.stdout().contains("look in spam and quarantine"));

    let proxy = env.proxy(|c| {
        c.fault(
            Some("GetLogDeliveryConfiguration"),
            FaultKind::Answer(ANSWER),
            1.0,
        )
    });
    let logged = env
        .command(&pool, ["doctor", "p0@example.jp"])
        .expect(exit::OK);
    assert!(
        logged.stdout().contains(
            "delivery errors logged to arn:aws:logs:eu-west-1:123456789012:log-group:/aws/cognito/onboard (ERROR)"
        ),
        "{}",
        logged.stdout()
    );
    assert_eq!(proxy.stats().received("GetLogDeliveryConfiguration"), 1);
}
