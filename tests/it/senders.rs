//! Who holds an email and who sends the messages, where the real Cognito differs from what the
//! documentation promises (`shared/real-cognito.md`, "Aliases and senders"): an email another
//! user holds is never verified for this one, a pool's custom sender Lambda is the one that
//! sends, and a reset by Cognito's own sender is accepted, not delivered.

use aws_sdk_cognitoidentityprovider::types::{
    AdminCreateUserConfigType, CustomEmailLambdaVersionConfigType,
    CustomEmailSenderLambdaVersionType, LambdaConfigType, MessageTemplateType,
};
use cognito_onboard::error::exit;

use crate::support::proxy::FaultKind;
use crate::support::*;

fn row_of<'a>(report: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key} in {report:#}"))
}

/// `--update` moves taro to hanako's address: asked first, nothing written, the row names
/// hanako. Cognito's own word that an email is taken (`AliasExistsException` on the update, or on
/// a create) says the same, not "failed".
#[test]
fn an_email_another_user_holds_is_never_verified_for_this_one() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let first = env.write(
        "p.csv",
        "username,email,name\ntaro,taro@example.jp,Taro\nhanako,hanako@example.jp,Hanako\n",
    );
    env.onboard_suppressed(&pool, &first);
    let proxy = env.proxy(|c| {
        c.fault_for(
            "AdminCreateUser",
            "jiro",
            FaultKind::Refuse("AliasExistsException"),
        )
    });
    let moved = env.write(
        "moved.csv",
        "username,email,name\ntaro,hanako@example.jp,Taro\nhanako,hanako@example.jp,Hanako\n\
         jiro,jiro@example.jp,Jiro\n",
    );
    let pw = env.path("jiro.csv");
    let r = env
        .command(&pool, ["run"])
        .arg(&moved)
        .args(["--update", "attributes", "--delivery", "suppress"])
        .arg("--password-file")
        .arg(&pw)
        .expect(exit::OK);
    let report = r.report();
    let taro = row_of(&report, "taro");
    assert_eq!(taro["outcome"], "attention", "{report:#}");
    assert!(
        taro["reason"]
            .as_str()
            .unwrap()
            .contains("the email hanako@example.jp is held by another user (hanako)"),
        "{report:#}"
    );
    let jiro = row_of(&report, "jiro");
    assert_eq!(jiro["outcome"], "attention", "{report:#}");
    assert!(
        jiro["reason"]
            .as_str()
            .unwrap()
            .contains("the email jiro@example.jp is held by another user"),
        "{report:#}"
    );
    assert_eq!(proxy.stats().received("AdminUpdateUserAttributes"), 0);
    let taro_now = env.get_user(&pool, "taro").unwrap();
    assert_eq!(
        attr(taro_now.user_attributes(), "email").as_deref(),
        Some("taro@example.jp")
    );

    // Cognito refuses the address as taken while it is written: the same words.
    let proxy = env.proxy(|c| {
        c.fault_for(
            "AdminUpdateUserAttributes",
            "taro",
            FaultKind::Refuse("AliasExistsException"),
        )
    });
    let renamed = env.write(
        "renamed.csv",
        "username,email,name\ntaro,taro.new@example.jp,Taro\n",
    );
    let r = env
        .command(&pool, ["run"])
        .arg(&renamed)
        .args(["--update", "attributes"])
        .expect(exit::OK);
    assert_eq!(proxy.stats().received("AdminUpdateUserAttributes"), 1);
    let report = r.report();
    let taro = row_of(&report, "taro");
    assert_eq!(taro["outcome"], "attention", "{report:#}");
    assert_eq!(taro["error_code"], "AliasExistsException", "{report:#}");
    assert!(
        taro["reason"]
            .as_str()
            .unwrap()
            .contains("the email taro.new@example.jp is held by another user"),
        "{report:#}"
    );
}

/// A pool whose email goes through a custom sender Lambda: the template (without `{####}`)
/// stops nothing, `check` and the report say the Lambda sends, no 50-a-day cap is assumed and
/// SES is not asked; an operator's budget still holds.
#[test]
fn a_custom_email_sender_sends_so_neither_the_template_nor_cognitos_cap_apply() {
    let mut env = TestEnv::new();
    let pool = env.pool_with(&[], |req| {
        req.lambda_config(
            LambdaConfigType::builder()
                .custom_email_sender(
                    CustomEmailLambdaVersionConfigType::builder()
                        .lambda_version(CustomEmailSenderLambdaVersionType::V10)
                        .lambda_arn("arn:aws:lambda:eu-west-1:123456789012:function:sender")
                        .build()
                        .unwrap(),
                )
                .kms_key_id(
                    "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                )
                .build(),
        )
        .admin_create_user_config(
            AdminCreateUserConfigType::builder()
                .invite_message_template(
                    MessageTemplateType::builder()
                        .email_message("Welcome, {username}.")
                        .email_subject("Welcome")
                        .build(),
                )
                .build(),
        )
    });
    let proxy = env.proxy(|c| c);
    let check = env.command(&pool, ["check"]).expect(exit::OK);
    let out = check.stdout();
    assert!(
        out.contains("invitations (email) sent by: the pool's custom email sender, a Lambda"),
        "{out}"
    );
    assert!(out.contains("template check does not apply"), "{out}");

    let mut csv = String::from("email,name\n");
    for i in 0..52 {
        csv.push_str(&format!("p{i:03}@example.jp,P{i}\n"));
    }
    let csv = env.write("p.csv", &csv);
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 52, "no 50 a day: {report:#}");
    assert!(
        report["sent_by"]
            .as_str()
            .unwrap()
            .contains("custom email sender"),
        "{report:#}"
    );
    assert_eq!(
        proxy.stats().received("GetSendQuota"),
        0,
        "SES is not asked"
    );

    // The operator's own budget still applies: 54 a day, 52 sent.
    let settings = env.write("settings.toml", "email_budget = 54\n");
    let more = env.write(
        "more.csv",
        "email,name\nq0@example.jp,Q0\nq1@example.jp,Q1\nq2@example.jp,Q2\n",
    );
    let r = env
        .command(&pool, ["--config", settings.to_str().unwrap(), "run"])
        .arg(&more)
        .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 2, "{report:#}");
    assert_eq!(report["summary"]["deferred"], 1, "{report:#}");
}

/// With Cognito's own sender a reset's code may be dropped while the call succeeds: the
/// report and `doctor` say it was accepted, not delivered, and the reset counts in the budget.
#[test]
fn a_reset_by_cognitos_own_sender_is_accepted_not_delivered_and_spends_the_budget() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\np1@example.jp,B\n");
    let issued = env.onboard_suppressed(&pool, &csv);
    for (u, temp) in &issued {
        env.complete_first_sign_in(&pool, u, temp, "N3w-Passw0rd!");
    }
    let settings = env.write("settings.toml", "email_budget = 1\n");
    let r = env
        .command(
            &pool,
            [
                "--config",
                settings.to_str().unwrap(),
                "reset",
                "p0@example.jp",
                "p1@example.jp",
            ],
        )
        .expect(exit::ROWS_FAILED);
    let report = r.report();
    let p0 = row_of(&report, "p0@example.jp");
    assert_eq!(p0["outcome"], "reissued", "{report:#}");
    assert!(
        p0["reason"]
            .as_str()
            .unwrap()
            .contains("accepted by Cognito; delivery not confirmed"),
        "{report:#}"
    );
    assert_eq!(
        row_of(&report, "p1@example.jp")["outcome"],
        "deferred",
        "one a day, and the first reset spent it: {report:#}"
    );

    let d = env
        .command(&pool, ["doctor", "--format", "json", "p0@example.jp"])
        .expect(exit::ROWS_FAILED);
    let shown: serde_json::Value = serde_json::from_str(&d.stdout()).unwrap();
    assert_eq!(shown[0]["verdict"], "reset_required", "{shown:#}");
    assert!(
        shown[0]["remedy"]
            .as_str()
            .unwrap()
            .contains("accepted by Cognito; delivery not confirmed"),
        "{shown:#}"
    );
}
