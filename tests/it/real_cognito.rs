//! What the real Cognito does where moto is lenient (`shared/real-cognito.md`), shown through the
//! fault proxy answering as Cognito would: server errors after a write was carried out, Lambda
//! triggers refusing one user, and what a password must survive on its way to a person.

use cognito_onboard::error::exit;
use cognito_onboard::password::UNREADABLE;

use crate::support::proxy::FaultKind;
use crate::support::*;

fn cohort(n: usize) -> String {
    let mut s = String::from("email,name\n");
    for i in 0..n {
        s.push_str(&format!("p{i:05}@example.com,Provider {i}\n"));
    }
    s
}

/// Cognito may answer 500 to a write it made. Every create and every re-issue is answered 500
/// after moto carried it out: each provider exists once, got one invitation, and (in suppress
/// mode) every password in the password file signs in.
#[test]
fn a_server_error_after_a_write_never_duplicates_and_never_loses_a_password() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| {
        c.fault(
            Some("AdminCreateUser"),
            FaultKind::InternalErrorAfterForward,
            1.0,
        )
        .fault(
            Some("AdminSetUserPassword"),
            FaultKind::InternalErrorAfterForward,
            1.0,
        )
    });
    let csv = env.write("p.csv", cohort(4));
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 4, "{report:#}");
    let stats = proxy.stats();
    for i in 0..4 {
        assert_eq!(stats.invitations_to(&format!("p{i:05}@example.com")), 1);
    }
    assert_eq!(stats.creates, 4, "no create repeated");
    assert_eq!(env.users(&pool).len(), 4);

    // Suppress mode: the password Cognito holds is the one in the file.
    let csv = env.write("q.csv", "email,name\nkenji@example.com,Kenji\n");
    let file = env.path("pw.csv");
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&file)
        .expect(exit::OK);
    assert_eq!(r.report()["summary"]["created"], 1, "{:#}", r.report());
    let first = passwords(&file);
    assert_eq!(first.len(), 1);
    assert_eq!(
        env.sign_in(&pool, "kenji@example.com", &first[0].1),
        Ok(true)
    );
    // A re-issue by AdminSetUserPassword answered 500 after it was made, on every attempt:
    // its outcome stays unknown. The password goes to the file all the same (and signs in, as
    // moto did set it), and the state marks it lost so the next run sets another.
    let again = env.path("pw2.csv");
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args([
            "--delivery",
            "suppress",
            "--reissue",
            "always",
            "--password-file",
        ])
        .arg(&again)
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    let row = &report["rows"][0];
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains("in the password file in case it was"),
        "{report:#}"
    );
    let second = passwords(&again);
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].1, second[0].1);
    assert_eq!(
        env.sign_in(&pool, "kenji@example.com", &second[0].1),
        Ok(true),
        "the password in the file is the one Cognito holds"
    );
    let status = env
        .command(&pool, ["status", "--format", "json"])
        .expect(exit::OK);
    let shown: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let kenji = shown["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "kenji@example.com")
        .cloned()
        .unwrap();
    assert_eq!(kenji["standing"], "expired", "{kenji:#}");
    assert!(
        kenji["reason"].as_str().unwrap().contains("re-issues it"),
        "{kenji:#}"
    );
}

/// A pre sign-up trigger that refuses one provider fails that row only; the others are created.
#[test]
fn a_trigger_refusing_one_provider_fails_that_row_and_the_run_goes_on() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| {
        c.fault_for(
            "AdminCreateUser",
            "p00002@example.com",
            FaultKind::Refuse("UserLambdaValidationException"),
        )
    });
    let csv = env.write("p.csv", cohort(5));
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 4, "{report:#}");
    let failed = rows_with(&report, "failed");
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["key"], "p00002@example.com");
    assert_eq!(failed[0]["error_code"], "UserLambdaValidationException");
    assert!(
        failed[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("not on the partner list"),
        "the trigger's own message: {report:#}"
    );
    assert_eq!(proxy.stats().creates, 4);
}

/// Passwords that travel by email avoid what HTML and fonts garble, and end with a letter or
/// digit, where the default template's period follows.
#[test]
fn emailed_temporary_passwords_survive_the_message() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(30));
    let config = env.write("s.toml", "email_budget = 1000\n");
    env.command(&pool, ["--config"])
        .arg(&config)
        .arg("run")
        .arg(&csv)
        .expect(exit::OK);
    let secrets = proxy.stats().secrets;
    assert_eq!(secrets.len(), 30, "one temporary password per create");
    for s in &secrets {
        assert!(
            !s.bytes().any(|b| UNREADABLE.contains(&b)),
            "unreadable character"
        );
        assert!(s.as_bytes().last().unwrap().is_ascii_alphanumeric());
    }
}

/// Cognito may hold back repeated messages to one address: `--reissue always` right after an
/// invitation sends nothing and says why.
#[test]
fn reissue_always_does_not_message_the_same_address_again_within_minutes() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(2));
    env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--reissue", "always"])
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["skipped"], 2, "{report:#}");
    assert!(
        report["rows"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not sent again yet"),
        "{report:#}"
    );
    assert_eq!(proxy.stats().resends, 0);
}

/// A user with no email can never be verified: attention, not a write that fails every run.
#[test]
fn a_user_without_an_email_is_attention_and_gets_no_email_verified_write() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    env.rt.block_on(async {
        env.client
            .admin_create_user()
            .user_pool_id(&pool.id)
            .username("taro")
            .message_action(aws_sdk_cognitoidentityprovider::types::MessageActionType::Suppress)
            .send()
            .await
            .unwrap();
    });
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", "username,email,name\ntaro,taro@example.jp,Taro\n");
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["attention"], 1, "{report:#}");
    assert!(
        report["rows"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no email"),
        "{report:#}"
    );
    assert_eq!(proxy.stats().received("AdminUpdateUserAttributes"), 0);
}

/// Creates a user directly in moto, as someone else did before the tool ran.
fn create_directly(env: &TestEnv, pool: &Pool, username: &str, email: &str) {
    use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
    env.rt.block_on(async {
        env.client
            .admin_create_user()
            .user_pool_id(&pool.id)
            .username(username)
            .user_attributes(
                AttributeType::builder()
                    .name("email")
                    .value(email)
                    .build()
                    .unwrap(),
            )
            .message_action(MessageActionType::Suppress)
            .send()
            .await
            .unwrap();
    });
}

/// The API's default pool is case-sensitive: `Taro.Yamada@Example.jp` already there is found
/// for the row `taro.yamada@example.jp`, per row and by scan alike, and nothing is created.
#[test]
fn a_provider_in_another_case_is_reported_not_duplicated_in_every_lookup_mode() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    create_directly(
        &env,
        &pool,
        "Taro.Yamada@Example.jp",
        "Taro.Yamada@Example.jp",
    );
    reported_in_every_lookup_mode(
        &mut env,
        &pool,
        "email,name\ntaro.yamada@example.jp,Taro\n",
        "Taro.Yamada@Example.jp",
    );
}

/// In a free-form pool keyed by email, a provider created earlier as `taro` is found by its
/// email and reported, not given a second account.
#[test]
fn a_provider_under_another_username_is_found_by_email_and_not_duplicated() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    create_directly(&env, &pool, "taro", "taro@example.jp");
    reported_in_every_lookup_mode(
        &mut env,
        &pool,
        "email,name\ntaro@example.jp,Taro\n",
        "as taro;",
    );
}

/// Runs `csv` per row and by scan: each time the one row is `attention` with a reason that says
/// `says`, and nothing is ever created.
fn reported_in_every_lookup_mode(env: &mut TestEnv, pool: &Pool, csv: &str, says: &str) {
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", csv);
    for lookup in ["get", "scan"] {
        let r = env
            .command(pool, ["run", "--lookup", lookup])
            .arg(&csv)
            .expect(exit::OK);
        let report = r.report();
        assert_eq!(report["summary"]["attention"], 1, "{lookup}: {report:#}");
        assert!(
            report["rows"][0]["reason"].as_str().unwrap().contains(says),
            "{lookup}: {report:#}"
        );
    }
    assert_eq!(proxy.stats().received("AdminCreateUser"), 0);
    assert_eq!(env.users(pool).len(), 1);
}

/// A provider whose email was changed after the tool invited it is found by the username the
/// state remembers: "another email", not "deleted".
#[test]
fn a_provider_whose_email_changed_is_found_by_the_remembered_username() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write("p.csv", "email,name\nold@example.jp,Taro\n");
    env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let username = env.users(&pool)[0].username().unwrap().to_string();
    env.rt.block_on(async {
        use aws_sdk_cognitoidentityprovider::types::AttributeType;
        env.client
            .admin_update_user_attributes()
            .user_pool_id(&pool.id)
            .username(&username)
            .user_attributes(
                AttributeType::builder()
                    .name("email")
                    .value("new@example.jp")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = r.report();
    let reason = report["rows"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("new@example.jp"), "{report:#}");
    assert!(!reason.contains("deleted"), "{report:#}");
}

/// An invitation template without `{####}` delivers nothing on the real Cognito: `run` stops
/// before the first create, and `check` says so with the template's subject.
#[test]
fn a_template_without_the_password_placeholder_stops_the_run_before_any_create() {
    use aws_sdk_cognitoidentityprovider::types::{AdminCreateUserConfigType, MessageTemplateType};
    let mut env = TestEnv::new();
    let pool = env.pool_with(&[], |req| {
        req.admin_create_user_config(
            AdminCreateUserConfigType::builder()
                .invite_message_template(
                    MessageTemplateType::builder()
                        .email_subject("Welcome to the data platform")
                        .email_message("Hello {username}, your account is ready (valid 7 days).")
                        .build(),
                )
                .build(),
        )
    });
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(2));
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::ABORTED);
    assert!(r.stderr().contains("{####}"), "{}", r.stderr());
    assert_eq!(proxy.stats().received("AdminCreateUser"), 0);
    let check = env
        .command(&pool, ["check"])
        .arg(&csv)
        .expect(exit::ABORTED);
    let out = check.stdout();
    assert!(
        out.contains("invitation email subject: Welcome to the data platform"),
        "{out}"
    );
    assert!(
        out.contains("error: the pool's email invitation template"),
        "{out}"
    );
    // Suppress sends no message: the template does not matter.
    let file = env.path("pw.csv");
    env.command(&pool, ["run"])
        .arg(&csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&file)
        .expect(exit::OK);
}

/// A pool that sends through SES: the account's send quota is read (moto answers the SES
/// sandbox's 200 a day at 1 a second), the sandbox is named, and invitations are paced at the
/// run's share of `MaxSendRate`.
#[test]
fn email_through_ses_is_paced_at_the_accounts_send_rate() {
    use aws_sdk_cognitoidentityprovider::types::{EmailConfigurationType, EmailSendingAccountType};
    let mut env = TestEnv::new();
    let pool = env.pool_with(&[], |req| {
        req.email_configuration(
            EmailConfigurationType::builder()
                .email_sending_account(EmailSendingAccountType::Developer)
                .source_arn("arn:aws:ses:eu-west-1:123456789012:identity/no-reply@example.jp")
                .build(),
        )
    });
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(4));
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 4, "{report:#}");
    assert_eq!(report["calls"]["SesRead"], 1, "{report:#}");
    assert!(r.stderr().contains("sandbox"), "{}", r.stderr());
    let creates: Vec<_> = proxy
        .stats()
        .events
        .iter()
        .filter(|e| e.operation == "AdminCreateUser" && e.outcome.reached_upstream())
        .map(|e| e.at)
        .collect();
    assert_eq!(creates.len(), 4);
    for pair in creates.windows(2) {
        // 0.8 of SES's 1 a second: one every 1.25 s; never two within a second.
        assert!(
            pair[1] - pair[0] >= std::time::Duration::from_millis(1000),
            "{creates:?}"
        );
    }
}
