//! The `run` and `check` commands against moto: create, re-run, dry run, re-issue, groups,
//! invalid rows, suppress delivery and exit codes.

use cognito_onboard::error::exit;

use crate::support::*;

const PROVIDERS: &str = "\u{feff}email,name,family_name,given_name,locale,groups
taro.yamada@example.com,山田 太郎,山田,太郎,ja,providers
 Hanako.Suzuki@Example.com ,鈴木 花子,鈴木,花子,ja,providers;beta
ichiro.sato@example.com,佐藤 一郎,佐藤,一郎,ja,
";

fn emails(env: &TestEnv, pool: &Pool) -> Vec<String> {
    let mut v: Vec<String> = env
        .users(pool)
        .iter()
        .filter_map(|u| attr(u.attributes(), "email"))
        .collect();
    v.sort();
    v
}

#[test]
fn creates_every_provider_then_a_second_run_sends_nothing() {
    let env = TestEnv::new();
    let pool = env.pool(true, &["providers", "beta"]);
    let csv = env.write("providers.csv", PROVIDERS);
    let first = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = first.report();
    assert_eq!(report["summary"]["created"], 3, "{report:#}");
    assert_eq!(report["dry_run"], false);
    assert_eq!(
        emails(&env, &pool),
        [
            "hanako.suzuki@example.com",
            "ichiro.sato@example.com",
            "taro.yamada@example.com"
        ]
    );
    for u in env.users(&pool) {
        assert_eq!(
            u.user_status().map(|s| s.as_str()),
            Some("FORCE_CHANGE_PASSWORD")
        );
        assert_eq!(
            attr(u.attributes(), "email_verified").as_deref(),
            Some("true")
        );
    }
    let hanako = env
        .get_user(&pool, "hanako.suzuki@example.com")
        .expect("hanako exists");
    assert_eq!(
        attr(hanako.user_attributes(), "name").as_deref(),
        Some("鈴木 花子")
    );
    assert_eq!(
        attr(hanako.user_attributes(), "locale").as_deref(),
        Some("ja")
    );
    let mut providers = env.group_members(&pool, "providers");
    providers.sort();
    assert_eq!(
        providers,
        ["hanako.suzuki@example.com", "taro.yamada@example.com"]
    );
    assert_eq!(
        env.group_members(&pool, "beta"),
        ["hanako.suzuki@example.com"]
    );
    let row = &report["rows"][1];
    assert_eq!(row["row"], 3);
    assert_eq!(row["key"], "hanako.suzuki@example.com");
    assert_eq!(row["status_after"], "FORCE_CHANGE_PASSWORD");
    assert!(row["temp_password_expires_at"].is_string());

    let second = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = second.report();
    assert_eq!(report["summary"]["skipped"], 3, "{report:#}");
    assert_eq!(report["summary"]["created"], 0);
    for write in [
        "UserCreation",
        "UserResourceUpdate",
        "UserUpdate",
        "UserAccountRecovery",
    ] {
        assert!(
            report["calls"][write].is_null(),
            "second run called {write}: {report:#}"
        );
    }
    assert!(
        rows_with(&report, "skipped")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("pending")
    );
    // The CSV report has the same rows.
    let csv_path = second
        .stdout()
        .lines()
        .last()
        .unwrap()
        .replace(".json", ".csv");
    let text = std::fs::read_to_string(csv_path).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn dry_run_reads_but_writes_nothing() {
    let env = TestEnv::new();
    let pool = env.pool(true, &["providers", "beta"]);
    let csv = env.write("providers.csv", PROVIDERS);
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .arg("--dry-run")
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["summary"]["created"], 3);
    assert!(
        report["rows"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("dry run: would create")
    );
    assert!(env.users(&pool).is_empty(), "a dry run created users");
    assert!(report["calls"]["UserCreation"].is_null());
}

#[test]
fn reissue_always_replaces_the_temporary_password() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\nkenji@example.com,Kenji\n");
    let first = env.onboard_suppressed(&pool, &csv);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, "kenji@example.com");
    assert_eq!(
        env.sign_in(&pool, "kenji@example.com", &first[0].1),
        Ok(true)
    );

    let second_pw = env.path("second.csv");
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
        .arg(&second_pw)
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["reissued"], 1, "{report:#}");
    assert_eq!(report["calls"]["UserAccountRecovery"], 1);
    let second = passwords(&second_pw);
    assert_ne!(first[0].1, second[0].1);
    assert_eq!(
        env.sign_in(&pool, "kenji@example.com", &first[0].1),
        Err("NotAuthorizedException".to_string())
    );
    assert_eq!(
        env.sign_in(&pool, "kenji@example.com", &second[0].1),
        Ok(true)
    );
}

#[test]
fn reissue_always_by_email_resends_and_confirmed_users_are_left_alone() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email\na@example.com\nb@example.com\n");
    let issued = env.onboard_suppressed(&pool, &csv);
    let (user, temp) = issued.iter().find(|(u, _)| u == "b@example.com").unwrap();
    env.complete_first_sign_in(&pool, user, temp, "N3w-Passw0rd!");
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--reissue", "always"])
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["reissued"], 1, "{report:#}");
    assert_eq!(report["summary"]["skipped"], 1);
    let confirmed = &rows_with(&report, "skipped")[0];
    assert_eq!(confirmed["key"], "b@example.com");
    assert_eq!(confirmed["status_before"], "CONFIRMED");
    assert_eq!(report["calls"]["UserCreation"], 1, "one RESEND only");
    assert_eq!(
        env.sign_in(&pool, "b@example.com", "N3w-Passw0rd!"),
        Ok(false)
    );
}

#[test]
fn invalid_rows_are_reported_and_never_reach_cognito() {
    let env = TestEnv::new();
    let pool = env.pool(true, &["providers"]);
    let csv = env.write(
        "bad.csv",
        "email,name,phone_number,groups\n\
         good@example.com,Good,+819012345678,providers\n\
         ,No Email,,\n\
         not-an-email,Bad,,\n\
         GOOD@example.com ,Duplicate,,\n\
         phone@example.com,Phone,09012345678,\n\
         formula@example.com,=HYPERLINK(\"http://x\"),,\n\
         ok2@example.com,Second,,\n",
    );
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 2, "{report:#}");
    assert_eq!(report["summary"]["invalid"], 5);
    assert_eq!(emails(&env, &pool), ["good@example.com", "ok2@example.com"]);
    let invalid = rows_with(&report, "invalid");
    let lines: Vec<u64> = invalid.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7]);
    let reasons: Vec<&str> = invalid
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("column email"), "{reasons:?}");
    assert!(reasons[2].contains("duplicate of line 2"), "{reasons:?}");
    assert!(reasons[3].contains("column phone_number"), "{reasons:?}");
    assert!(reasons[4].contains("column name"), "{reasons:?}");
    // Who each row was about, for the help desk; not the name cell that was at fault.
    let names: Vec<Option<&str>> = invalid.iter().map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            Some("No Email"),
            Some("Bad"),
            Some("Duplicate"),
            Some("Phone"),
            None
        ]
    );
    assert_eq!(report["calls"]["UserCreation"], 2);
    let good = env.get_user(&pool, "good@example.com").unwrap();
    assert_eq!(
        attr(good.user_attributes(), "phone_number").as_deref(),
        Some("+819012345678")
    );
}

#[test]
fn a_group_missing_from_the_pool_stops_the_run_before_any_write() {
    let env = TestEnv::new();
    let pool = env.pool(true, &["providers"]);
    let csv = env.write(
        "g.csv",
        "email,groups\na@example.com,providers\nb@example.com,nosuchgroup\n",
    );
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::ABORTED);
    assert!(r.stderr().contains("nosuchgroup"), "{}", r.stderr());
    assert!(
        r.stderr().contains("providers"),
        "lists the valid groups: {}",
        r.stderr()
    );
    assert!(env.users(&pool).is_empty());
}

#[test]
fn a_run_or_status_that_stops_at_the_pool_leaves_no_empty_report() {
    let env = TestEnv::new();
    let gone = Pool {
        id: "eu-west-1_NoSuchPool1".into(),
        client_id: String::new(),
    };
    let csv = env.write("p.csv", "email\na@example.com\n");
    for args in [vec!["run", csv.to_str().unwrap()], vec!["status"]] {
        let r = env.command(&gone, &args).expect(exit::ABORTED);
        assert!(r.stderr().contains("NoSuchPool1"), "{}", r.stderr());
        let left: Vec<_> = std::fs::read_dir(env.path("reports"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}

#[test]
fn an_unknown_attribute_column_lists_the_valid_names() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write(
        "u.csv",
        "email,nickname,favourite_colour\na@example.com,A,blue\n",
    );
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::ABORTED);
    assert!(r.stderr().contains("favourite_colour"), "{}", r.stderr());
    assert!(
        r.stderr().contains("given_name"),
        "lists valid names: {}",
        r.stderr()
    );
    assert!(env.users(&pool).is_empty());
}

#[test]
fn suppress_delivery_writes_a_private_password_file_and_never_overwrites_it() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write("p.csv", "email\nx@example.com\ny@example.com\n");
    let pw = env.path("pw.csv");
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&pw)
        .expect(exit::OK);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let issued = passwords(&pw);
    assert_eq!(issued.len(), 2);
    for (user, temp) in &issued {
        assert_eq!(env.sign_in(&pool, user, temp), Ok(true), "{user}");
        assert!(!r.stderr().contains(temp.as_str()) && !r.stdout().contains(temp.as_str()));
        let report_text = std::fs::read_to_string(r.stdout().trim()).unwrap();
        assert!(!report_text.contains(temp.as_str()));
    }
    let before = std::fs::read(&pw).unwrap();
    let csv2 = env.write("p2.csv", "email\nz@example.com\n");
    let again = env
        .command(&pool, ["run"])
        .arg(&csv2)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&pw)
        .expect(exit::ABORTED);
    assert!(
        again.stderr().contains("refusing to overwrite"),
        "{}",
        again.stderr()
    );
    assert_eq!(std::fs::read(&pw).unwrap(), before);
    assert!(env.get_user(&pool, "z@example.com").is_none());
}

#[test]
fn shift_jis_from_japanese_excel_is_read() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let (bytes, _, _) =
        encoding_rs::SHIFT_JIS.encode("email,name\ntakahashi@example.com,髙橋 ①郎\n");
    let csv = env.write("sjis.csv", &bytes);
    env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let u = env.get_user(&pool, "takahashi@example.com").unwrap();
    assert_eq!(
        attr(u.user_attributes(), "name").as_deref(),
        Some("髙橋 ①郎")
    );
}

#[test]
fn free_form_usernames_come_from_the_username_column() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write(
        "u.csv",
        "username,email\nprovider-001,one@example.com\nprovider-002,two@example.com\n",
    );
    env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let u = env
        .get_user(&pool, "provider-001")
        .expect("created under its username");
    assert_eq!(
        attr(u.user_attributes(), "email").as_deref(),
        Some("one@example.com")
    );
    // A second run finds them by username, per row or by scan.
    for lookup in ["get", "scan"] {
        let r = env
            .command(&pool, ["run"])
            .arg(&csv)
            .args(["--lookup", lookup])
            .expect(exit::OK);
        assert_eq!(r.report()["summary"]["skipped"], 2, "{lookup}");
    }
}

#[test]
fn users_needing_attention_are_reported_and_left_alone() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write(
        "a.csv",
        "email\nreset@example.com\noff@example.com\nunverified@example.com\n",
    );
    let issued = env.onboard_suppressed(&pool, &csv);
    for user in ["unverified@example.com", "reset@example.com"] {
        let temp = &issued.iter().find(|(u, _)| u == user).unwrap().1;
        env.complete_first_sign_in(&pool, user, temp, "An0ther-Pass!");
    }
    env.rt.block_on(async {
        env.client
            .admin_reset_user_password()
            .user_pool_id(&pool.id)
            .username("reset@example.com")
            .send()
            .await
            .unwrap();
        env.client
            .admin_disable_user()
            .user_pool_id(&pool.id)
            .username("off@example.com")
            .send()
            .await
            .unwrap();
        env.client
            .admin_update_user_attributes()
            .user_pool_id(&pool.id)
            .username("unverified@example.com")
            .user_attributes(
                aws_sdk_cognitoidentityprovider::types::AttributeType::builder()
                    .name("email_verified")
                    .value("false")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--reissue", "always", "--lookup", "get"])
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["attention"], 2, "{report:#}");
    let attention = rows_with(&report, "attention");
    assert!(
        attention[0]["reason"]
            .as_str()
            .unwrap()
            .contains("RESET_REQUIRED")
    );
    assert!(
        attention[1]["reason"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    let fixed = &rows_with(&report, "skipped")[0];
    assert!(
        fixed["reason"]
            .as_str()
            .unwrap()
            .contains("email_verified set"),
        "{fixed}"
    );
    let u = env.get_user(&pool, "unverified@example.com").unwrap();
    assert_eq!(
        attr(u.user_attributes(), "email_verified").as_deref(),
        Some("true")
    );
    assert!(
        report["calls"]["UserCreation"].is_null(),
        "nothing re-sent: {report:#}"
    );
}

#[test]
fn exit_codes_for_run_level_problems() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write("p.csv", "email\na@example.com\n");
    // Usage error.
    env.command(&pool, ["run", "--no-such-flag"])
        .expect(exit::USAGE);
    // Pool that does not exist.
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--user-pool-id", "eu-west-1_doesnotexist"])
        .expect(exit::ABORTED);
    assert!(
        r.stderr().contains("ResourceNotFoundException"),
        "{}",
        r.stderr()
    );
    // No pool at all.
    let r = env
        .command(&pool, ["run"])
        .arg(&csv)
        .env_remove("COGNITO_USER_POOL_ID")
        .expect(exit::ABORTED);
    assert!(r.stderr().contains("--user-pool-id"), "{}", r.stderr());
    // Missing input file.
    let r = env
        .command(&pool, ["run", "missing.csv"])
        .expect(exit::ABORTED);
    assert!(r.stderr().contains("missing.csv"), "{}", r.stderr());
    // No email column.
    let bad = env.write("h.csv", "mail,name\na@example.com,A\n");
    let r = env.command(&pool, ["run"]).arg(&bad).expect(exit::ABORTED);
    assert!(r.stderr().contains("email"), "{}", r.stderr());
    assert!(env.users(&pool).is_empty());
}

#[test]
fn check_validates_without_writing() {
    let env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write("c.csv", "email,name\na@example.com,A\nbroken,B\n");
    let r = env
        .command(&pool, ["check"])
        .arg(&csv)
        .expect(exit::ROWS_FAILED);
    let out = r.stdout();
    assert!(out.contains("temporary passwords valid: 7 days"), "{out}");
    assert!(out.contains("line 3, column email"), "{out}");
    assert!(out.contains("1 valid rows, 1 invalid"), "{out}");
    assert!(env.users(&pool).is_empty());
    assert!(!env.path("reports").exists(), "check wrote a report");
}

#[test]
fn a_large_pool_is_scanned_in_parallel_parts_by_sub() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    // 33 pages of users: past the point where the scan is split by the first digit of `sub`.
    env.populate(&pool, "member", 33 * 60, 8);
    let proxy = env.proxy(|c| c);
    let csv = env.write(
        "p.csv",
        "email\nmember000007@example.com\nmember001500@example.com\nnewcomer@example.com\n",
    );
    let r = env
        .command(
            &pool,
            [
                "run",
                csv.to_str().unwrap(),
                "--lookup",
                "scan",
                "--email-budget",
                "10",
            ],
        )
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["skipped"], 2, "{report:#}");
    assert_eq!(report["summary"]["created"], 1);
    let stats = proxy.stats();
    // 16 parts of about 124 users: 3 pages each (moto's subs are random UUIDs).
    let pages = stats.succeeded("ListUsers");
    assert!((32..=64).contains(&pages), "{pages} ListUsers pages");
    let status = env.command(&pool, ["status", "--all"]).expect(exit::OK);
    let report = status.report();
    assert_eq!(report["refresh"], "scan");
    assert_eq!(
        report["rows"].as_array().unwrap().len(),
        33 * 60 + 1,
        "every user of the pool, once"
    );
}
