//! `--on-expiring DURATION COMMAND`: a reminder through the operator's own channel before a
//! temporary password expires, once per invitation (again after a re-issue, not after a
//! success), retried when it fails or hangs, never holding the run up beyond its time limit;
//! and the sample that mails it through SES, its request checked against AWS's SES v2 model.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cognito_onboard::error::exit;

use crate::support::model::{Service, model};
use crate::support::*;

/// A reminder command that appends its stdin to `seen.jsonl`, fails while `fail` exists, and
/// hangs while `hang` exists.
fn reminder(env: &TestEnv) -> String {
    let dir = env.path("reminder");
    std::fs::create_dir_all(&dir).unwrap();
    format!(
        "d={}; input=$(cat); if [ -e $d/hang ]; then sleep 30; fi; if [ -e $d/fail ]; then exit 7; fi; printf '%s\\n' \"$input\" >> $d/seen.jsonl",
        dir.display()
    )
}

fn seen(env: &TestEnv) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.path("reminder/seen.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run(env: &TestEnv, pool: &Pool, csv: &Path, extra: &[&str]) -> serde_json::Value {
    let pw = env.path(&format!("pw-{}.csv", seen(env).len() * 100 + extra.len()));
    let _ = std::fs::remove_file(&pw);
    env.command(pool, ["run"])
        .arg(csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&pw)
        .args(extra.iter().copied())
        .expect(exit::OK)
        .report()
}

#[test]
fn a_reminder_runs_once_per_invitation_before_it_expires_and_is_retried_until_it_succeeds() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,Ada\np1@example.jp,Bo\n");
    let passwords = env.onboard_suppressed(&pool, &csv);
    let command = reminder(&env);
    let expiring = ["--on-expiring", "1d", command.as_str()];

    // Fresh invitations (7 days) are not due.
    run(&env, &pool, &csv, &expiring);
    assert!(seen(&env).is_empty());

    // Six and a half days on: both expire within a day.
    env.age_state(24 * 6 + 12);
    std::fs::write(env.path("reminder/fail"), "").unwrap();
    let failed = run(&env, &pool, &csv, &expiring);
    assert_eq!(failed["reminded"].as_array().unwrap().len(), 2);
    assert!(
        failed["reminded"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["exit_code"] == 7)
    );
    std::fs::remove_file(env.path("reminder/fail")).unwrap();
    // Hanging: stopped at its time limit, the run not held up.
    std::fs::write(env.path("reminder/hang"), "").unwrap();
    let started = Instant::now();
    let hung = run(
        &env,
        &pool,
        &csv,
        &[&expiring[..], &["--on-confirmed-timeout", "1"]].concat(),
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        hung["reminded"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["timed_out"] == true)
    );
    std::fs::remove_file(env.path("reminder/hang")).unwrap();
    assert!(seen(&env).is_empty(), "nothing recorded yet");

    // Now it succeeds: once for each, with what the provider needs to know, never a password.
    let done = run(&env, &pool, &csv, &expiring);
    let got = seen(&env);
    assert_eq!(got.len(), 2, "{done:#}");
    assert!(
        done["reminded"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["handed_over"] == true)
    );
    let first = got.iter().find(|p| p["email"] == "p0@example.jp").unwrap();
    assert_eq!(first["name"], "Ada");
    assert_eq!(first["pool"], pool.id.as_str());
    for key in ["username", "invited_at", "expires_at"] {
        assert!(first[key].is_string(), "{key}: {first}");
    }
    let text = std::fs::read_to_string(env.path("reminder/seen.jsonl")).unwrap();
    for (_, password) in &passwords {
        assert!(
            !text.contains(password.as_str()),
            "a password reached the reminder"
        );
    }
    // Not again for the same invitation, from run or status.
    run(&env, &pool, &csv, &expiring);
    env.command(&pool, ["status", "--on-expiring", "1d", &command])
        .expect(exit::OK);
    assert_eq!(seen(&env).len(), 2);

    // A re-issue is a new invitation: when it nears its expiry, it gets a reminder of its own.
    let pw = env.path("reissue-pw.csv");
    env.command(
        &pool,
        [
            "reissue",
            "p0@example.jp",
            "--delivery",
            "suppress",
            "--password-file",
        ],
    )
    .arg(&pw)
    .expect(exit::OK);
    env.age_state(24 * 6 + 12);
    let status = env
        .command(&pool, ["status", "--on-expiring", "1d", &command])
        .expect(exit::OK);
    let got = seen(&env);
    assert_eq!(got.len(), 3, "{}", status.stderr());
    assert_eq!(got[2]["email"], "p0@example.jp");
}

/// The sample (`samples/remind-expiring.sh`) through `run --on-expiring`: it mails through
/// `aws sesv2 send-email`, here a stand-in on PATH that records its arguments, which are then
/// checked against AWS's SES v2 model for SendEmail.
#[test]
fn the_reminder_sample_asks_ses_for_a_valid_send_email() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,山田 太郎\n");
    env.onboard_suppressed(&pool, &csv);
    env.age_state(24 * 6 + 12);
    let bin: PathBuf = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("aws");
    let record = env.path("aws-args.txt");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > {}\n",
            record.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sample = root().join("samples/remind-expiring.sh");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let r = env
        .command(
            &pool,
            ["status", "--on-expiring", "1d", sample.to_str().unwrap()],
        )
        .env("PATH", &path)
        .env("REMINDER_FROM", "onboarding@example.jp")
        .expect(exit::OK);
    let report = read_json(Path::new(r.stdout().trim()));
    assert_eq!(report["reminded"][0]["handed_over"], true, "{}", r.stderr());
    let args: Vec<String> = std::fs::read_to_string(&record)
        .unwrap()
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    assert_eq!(&args[..2], ["sesv2", "send-email"]);
    let value = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
    let request = serde_json::json!({
        "FromEmailAddress": value("--from-email-address"),
        "Destination": serde_json::from_str::<serde_json::Value>(&value("--destination")).unwrap(),
        "Content": serde_json::from_str::<serde_json::Value>(&value("--content")).unwrap(),
    });
    let violations = model(Service::SesV2).validate("SendEmail", &request);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(request["Destination"]["ToAddresses"][0], "p0@example.jp");
    let text = request["Content"]["Simple"]["Body"]["Text"]["Data"]
        .as_str()
        .unwrap();
    assert!(
        text.contains("山田 太郎") && text.contains("expires on"),
        "{text}"
    );
    // The checker can fail: a message without a subject breaks the model.
    let mut broken = request.clone();
    broken["Content"]["Simple"]
        .as_object_mut()
        .unwrap()
        .remove("Subject");
    assert!(
        !model(Service::SesV2)
            .validate("SendEmail", &broken)
            .is_empty()
    );
}
