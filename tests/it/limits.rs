//! Cognito's request limits as input validation: a username over `Username`'s length or
//! pattern is `invalid` in `check` and `run` and never sent, and a help-desk ID is trimmed and
//! checked before any call. The limits come from AWS's model: the product's constants are held
//! against the model botocore installs.

use cognito_onboard::error::exit;

use crate::support::*;

/// In a free-form pool keyed by username: 128 characters pass however many bytes they take; 129,
/// a space, or a zero-width space are each `invalid`, named, and never sent.
#[test]
fn usernames_cognito_refuses_are_invalid_in_check_and_run_and_never_sent() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c);
    let long_ok = "山".repeat(128);
    let too_long = "山".repeat(129);
    let csv = env.write(
        "p.csv",
        format!(
            "username,email,name\n\
             yamada,p0@example.jp,A\n\
             {long_ok},p1@example.jp,B\n\
             {too_long},p2@example.jp,C\n\
             zero\u{200B}width,p3@example.jp,D\n"
        ),
    );
    let check = env
        .command(&pool, ["check"])
        .arg(&csv)
        .expect(exit::ROWS_FAILED);
    let out = check.stdout();
    assert!(
        out.contains("line 4, column username: username is longer than 128 characters"),
        "{out}"
    );
    assert!(
        out.contains("line 5, column username: Cognito refuses this username (it contains the character U+200B"),
        "{out}"
    );
    assert_eq!(
        proxy.stats().received("AdminCreateUser"),
        0,
        "check writes nothing"
    );

    let pw = env.path("pw.csv");
    let run = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&pw)
        .expect(exit::ROWS_FAILED);
    let report = run.report();
    assert_eq!(rows_with(&report, "created").len(), 2, "{report:#}");
    assert_eq!(rows_with(&report, "invalid").len(), 2, "{report:#}");
    assert_eq!(proxy.stats().received("AdminCreateUser"), 2);
    assert!(env.get_user(&pool, &long_ok).is_some());
}

/// `doctor`, `reissue` and `reset` trim what was typed, and refuse an ID Cognito could never
/// find anyone by (a name with a space, 154 characters, an address whose filter would be 257)
/// with a line of its own and no request.
#[test]
fn help_desk_ids_are_trimmed_and_checked_before_any_call() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\n");
    env.onboard_suppressed(&pool, &csv);
    let proxy = env.proxy(|c| c);
    let long_id = "a".repeat(154);
    // 247 characters: `email = "…"` would be 257, one over ListUsers' limit.
    let long_email = format!(
        "{}@{}.{}.{}.example.jp",
        "b".repeat(64),
        "c".repeat(63),
        "d".repeat(53),
        "e".repeat(53)
    );
    assert_eq!(long_email.len(), 247);
    let r = env
        .command(&pool, ["doctor", "--format", "json"])
        .args([
            " p0@example.jp\u{3000}",
            "山田 太郎",
            &long_id,
            &long_email,
            " ",
        ])
        .expect(exit::ROWS_FAILED);
    let verdicts = doctor_verdicts(&r);
    assert_eq!(verdicts.len(), 5, "{verdicts:?}");
    assert_eq!(
        (verdicts[0].0.as_str(), verdicts[0].1.as_str()),
        ("p0@example.jp", "pending"),
        "the typed spaces are trimmed"
    );
    for (i, says) in [
        (1, "contains a space"),
        (2, "154 characters long"),
        (3, "not an email address Cognito could search for"),
        (4, "the ID is empty"),
    ] {
        assert_eq!(verdicts[i].1, "invalid_id", "{:?}", verdicts[i]);
        assert!(verdicts[i].2.contains(says), "{:?}", verdicts[i]);
        assert!(
            verdicts[i].2.contains("nothing was sent"),
            "{:?}",
            verdicts[i]
        );
    }
    let stats = proxy.stats();
    assert_eq!(stats.received("AdminGetUser"), 1, "only p0 was looked up");
    assert_eq!(stats.received("ListUsers"), 0);

    proxy.reset_stats();
    let r = env
        .command(&pool, ["reissue", "山田 太郎", &long_email])
        .args(["--delivery", "suppress", "--password-file"])
        .arg(env.path("reissued.csv"))
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    let invalid = rows_with(&report, "invalid");
    assert_eq!(invalid.len(), 2, "{report:#}");
    assert!(
        invalid[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("ID \"山田 太郎\": not a username Cognito could hold"),
        "{report:#}"
    );
    let r = env
        .command(&pool, ["reset", &long_id])
        .expect(exit::ROWS_FAILED);
    assert_eq!(rows_with(&r.report(), "invalid").len(), 1);
    let stats = proxy.stats();
    for op in [
        "AdminGetUser",
        "ListUsers",
        "AdminCreateUser",
        "AdminResetUserPassword",
    ] {
        assert_eq!(
            stats.received(op),
            0,
            "{op} sent for an ID that names nobody"
        );
    }
}

/// The product's limits are the model's: read from the `cognito-idp` model botocore installs,
/// for every operation the tool sends a username to, and for the `ListUsers` filter.
#[test]
fn the_products_limits_are_the_ones_in_awss_model() {
    use cognito_onboard::cognito::limits;
    use std::io::Read;
    let path =
        crate::support::model::botocore_data().join("cognito-idp/2016-04-18/service-2.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("the installed model"))
        .read_to_string(&mut text)
        .unwrap();
    let model: serde_json::Value = serde_json::from_str(&text).unwrap();
    let member_shape = |operation: &str, member: &str| -> serde_json::Value {
        let input = model["operations"][operation]["input"]["shape"]
            .as_str()
            .unwrap();
        let shape = model["shapes"][input]["members"][member]["shape"]
            .as_str()
            .unwrap_or_else(|| panic!("{operation}.{member} is in the model"));
        model["shapes"][shape].clone()
    };
    for operation in [
        "AdminCreateUser",
        "AdminGetUser",
        "AdminUpdateUserAttributes",
        "AdminResetUserPassword",
        "AdminSetUserPassword",
        "AdminAddUserToGroup",
    ] {
        let username = member_shape(operation, "Username");
        assert_eq!(username["max"], limits::USERNAME_MAX as u64, "{operation}");
        assert_eq!(username["pattern"], limits::USERNAME_PATTERN, "{operation}");
    }
    assert_eq!(
        member_shape("ListUsers", "Filter")["max"],
        limits::FILTER_MAX as u64
    );
    // And the validator, from the same model, agrees at the edges.
    let cognito = crate::support::model::model(crate::support::model::Service::CognitoIdp);
    let get = |username: &str| {
        cognito.validate(
            "AdminGetUser",
            &serde_json::json!({"UserPoolId": "eu-west-1_abc", "Username": username}),
        )
    };
    assert!(get(&"山".repeat(limits::USERNAME_MAX)).is_empty());
    assert!(!get(&"山".repeat(limits::USERNAME_MAX + 1)).is_empty());
    assert!(!get("山田 太郎").is_empty());
    assert!(limits::username_problem("山田 太郎").is_some());
}
