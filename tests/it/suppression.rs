//! No invitation into a dead address: in a pool that sends through SES, an address on the SES
//! account's suppression list (sesv2 GetSuppressedDestination, which moto does not implement:
//! the test proxy answers it as AWS documents it, after checking the request against AWS's SES
//! v2 model) gets no re-issue from `run` or `reissue`, and spends nothing; `doctor` gives it its
//! verdict and remedy, and `status` and its page list it. A pool that does not send through SES
//! makes no SES call at all; a list that cannot be read is said once, and re-issues go out.

use aws_sdk_cognitoidentityprovider::types::{EmailConfigurationType, EmailSendingAccountType};
use cognito_onboard::error::exit;

use crate::support::proxy::{FaultKind, Proxy};
use crate::support::*;

const IDENTITY: &str = "arn:aws:ses:eu-west-1:123456789012:identity/no-reply@example.jp";

/// SES's answer for an address on the list: it bounced, on 2026-11-30 09:15 UTC.
const BOUNCED: &str = r#"{"SuppressedDestination": {"EmailAddress": "p0@example.jp",
    "Reason": "BOUNCE", "LastUpdateTime": 1796030100,
    "Attributes": {"MessageId": "0100019a-bounce", "FeedbackId": "0100019a-feedback"}}}"#;

/// A free-form pool that sends its email through SES (moto's RESEND duplicates users where
/// email is the username).
fn ses_pool(env: &TestEnv) -> Pool {
    env.pool_with(&[], |req| {
        req.email_configuration(
            EmailConfigurationType::builder()
                .email_sending_account(EmailSendingAccountType::Developer)
                .source_arn(IDENTITY)
                .from("Data Platform <no-reply@example.jp>")
                .build(),
        )
    })
}

/// Providers invited (suppress mode: no message, no SES call) eight days ago: their temporary
/// passwords have expired.
fn expired(env: &TestEnv, pool: &Pool, csv: &str) -> std::path::PathBuf {
    let csv = env.write("p.csv", csv);
    env.onboard_suppressed(pool, &csv);
    env.age_state(24 * 8);
    csv
}

fn row<'a>(report: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key} in {report:#}"))
}

/// The JSON report a command that prints something else on stdout names on stderr.
fn logged_report(r: &Run) -> serde_json::Value {
    let err = r.stderr();
    let path = err
        .split_whitespace()
        .find(|w| w.ends_with(".json"))
        .unwrap_or_else(|| panic!("no report named on stderr:\n{err}"));
    read_json(std::path::Path::new(path))
}

/// Requests for SES's operations (v1 and v2) that reached the proxy.
fn ses_calls(proxy: &Proxy) -> u64 {
    let stats = proxy.stats();
    ["GetSuppressedDestination", "GetSendQuota", "SendEmail"]
        .iter()
        .map(|op| stats.received(op))
        .sum()
}

/// p0's address bounced, p1's did not: `run` re-issues p1 only; p0's row is attention with the
/// reason and date, and no AdminCreateUser goes out for it. `reissue` refuses it the same way;
/// `doctor` gives the suppressed verdict with its remedy and names SES as the sender; `status`
/// and its page list p0 among the suppressed.
#[test]
fn a_suppressed_address_is_not_reissued_spends_nothing_and_the_help_desk_sees_why() {
    let mut env = TestEnv::new();
    let pool = ses_pool(&env);
    let csv = expired(
        &env,
        &pool,
        "email,name\np0@example.jp,Ada\np1@example.jp,Bo\n",
    );
    let proxy = env.proxy(|c| {
        c.fault_for(
            "GetSuppressedDestination",
            "p0@example.jp",
            FaultKind::Answer(BOUNCED),
        )
        .fault(
            Some("GetSuppressedDestination"),
            FaultKind::Status(404, "NotFoundException"),
            1.0,
        )
    });
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = r.report();
    let p0 = row(&report, "p0@example.jp");
    assert_eq!(p0["outcome"], "attention", "{report:#}");
    let reason = p0["reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "suppression list (BOUNCE: a message to it bounced, since 2026-11-30T09:15:00Z)"
        ),
        "{reason}"
    );
    assert!(reason.contains("nothing spent"), "{reason}");
    assert_eq!(p0["stuck"]["suppressed"]["reason"], "BOUNCE", "{p0:#}");
    assert_eq!(row(&report, "p1@example.jp")["outcome"], "reissued");
    assert_eq!(report["calls"]["SesSuppression"], 2, "{report:#}");
    let stats = proxy.stats();
    assert_eq!(stats.received("GetSuppressedDestination"), 2);
    assert_eq!(
        stats.invitations_to("p0@example.jp"),
        0,
        "nothing sent to p0"
    );
    assert_eq!(stats.invitations_to("p1@example.jp"), 1);
    assert_eq!(stats.received("AdminCreateUser"), 1, "p1's RESEND only");
    env.undo_moto_resend(&pool, "p1@example.jp", "p1@example.jp");

    // The help desk's re-issue: refused for the same reason, nothing sent.
    proxy.reset_stats();
    let again = env
        .command(&pool, ["reissue", "p0@example.jp"])
        .expect(exit::ROWS_FAILED)
        .report();
    assert_eq!(
        row(&again, "p0@example.jp")["outcome"],
        "attention",
        "{again:#}"
    );
    assert_eq!(proxy.stats().received("AdminCreateUser"), 0);
    assert_eq!(proxy.stats().received("GetSuppressedDestination"), 1);

    // The verdict, its remedy, and who sends.
    let doctor = env
        .command(&pool, ["doctor", "p0@example.jp"])
        .expect(exit::ROWS_FAILED);
    let out = doctor.stdout();
    assert!(out.contains("p0@example.jp  suppressed"), "{out}");
    assert!(out.contains("correct the address in the list"), "{out}");
    assert!(out.contains("delete-suppressed-destination"), "{out}");
    assert!(
        out.contains("email on the SES suppression list: BOUNCE since 2026-11-30T09:15:00Z"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "sent by Amazon SES, identity {IDENTITY}, From Data Platform <no-reply@example.jp>"
        )),
        "{out}"
    );
    let facts = logged_report(&doctor);
    assert_eq!(facts["providers"][0]["verdict"], "suppressed");
    assert_eq!(facts["providers"][0]["suppressed"]["reason"], "BOUNCE");
    assert_eq!(
        facts["providers"][0]["invitations"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the first invitation: no re-issue recorded for p0 {facts:#}"
    );
    assert_eq!(
        facts["pool"]["email_budget"]["used_last_24_hours"], 1,
        "p1's"
    );
    assert_eq!(facts["pool"]["suppression_list"], "read");

    // `status` and its page list p0 among the suppressed (p1, pending again, is not read).
    proxy.reset_stats();
    let status = env.command(&pool, ["status"]).expect(exit::OK);
    let report = status.report();
    assert_eq!(report["suppressed"], serde_json::json!(["p0@example.jp"]));
    assert_eq!(row(&report, "p0@example.jp")["standing"], "attention");
    assert_eq!(proxy.stats().received("GetSuppressedDestination"), 1);
    assert!(
        status
            .stderr()
            .contains("1 providers' addresses are on the SES suppression list"),
        "{}",
        status.stderr()
    );
    let page_path = status
        .stdout()
        .lines()
        .rev()
        .find(|l| l.ends_with(".json"))
        .map(|l| std::path::PathBuf::from(l).with_extension("html"))
        .unwrap();
    let page = std::fs::read_to_string(&page_path).unwrap();
    let needs = &page[page.find("id=\"needs-action\"").unwrap()..];
    let needs = &needs[..needs.find("</section>").unwrap()];
    let listed = &needs[needs
        .find("id=\"suppressed\"")
        .expect("the suppressed list")..];
    assert!(
        listed.contains("p0@example.jp") && listed.contains("BOUNCE"),
        "{needs}"
    );
    assert!(!listed.contains("p1@example.jp"), "{needs}");
}

/// The proxy answers NotFoundException, SES's word for an address not on the list: the
/// help desk's re-issue goes out, after one read.
#[test]
fn an_address_not_on_the_list_is_reissued() {
    let mut env = TestEnv::new();
    let pool = ses_pool(&env);
    expired(&env, &pool, "email,name\np0@example.jp,Ada\n");
    let proxy = env.proxy(|c| {
        c.fault(
            Some("GetSuppressedDestination"),
            FaultKind::Status(404, "NotFoundException"),
            1.0,
        )
    });
    let report = env
        .command(&pool, ["reissue", "p0@example.jp"])
        .expect(exit::OK)
        .report();
    assert_eq!(
        row(&report, "p0@example.jp")["outcome"],
        "reissued",
        "{report:#}"
    );
    assert_eq!(proxy.stats().received("GetSuppressedDestination"), 1);
    assert_eq!(proxy.stats().invitations_to("p0@example.jp"), 1);
}

/// Without the permission (403 AccessDeniedException), the list is said once to be unread and
/// not asked again; the re-issues go out as before, and `doctor` says the list is unknown.
#[test]
fn a_suppression_list_that_cannot_be_read_is_said_once_and_reissues_go_out() {
    let mut env = TestEnv::new();
    let pool = ses_pool(&env);
    let csv = expired(
        &env,
        &pool,
        "email,name\np0@example.jp,Ada\np1@example.jp,Bo\n",
    );
    let proxy = env.proxy(|c| {
        c.fault(
            Some("GetSuppressedDestination"),
            FaultKind::Status(403, "AccessDeniedException"),
            1.0,
        )
    });
    let r = env.command(&pool, ["run"]).arg(&csv).expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["reissued"], 2, "{report:#}");
    assert_eq!(
        r.stderr()
            .matches("suppression list could not be read")
            .count(),
        1,
        "{}",
        r.stderr()
    );
    assert_eq!(proxy.stats().received("GetSuppressedDestination"), 1);
    assert_eq!(proxy.stats().invitations_to("p0@example.jp"), 1);
    env.undo_moto_resend(&pool, "p0@example.jp", "p0@example.jp");
    env.undo_moto_resend(&pool, "p1@example.jp", "p1@example.jp");

    let doctor = env
        .command(&pool, ["doctor", "p0@example.jp", "p1@example.jp"])
        .expect(exit::OK);
    assert!(
        doctor
            .stdout()
            .contains("whether SES suppresses the providers' addresses is unknown"),
        "{}",
        doctor.stdout()
    );
    assert_eq!(
        doctor
            .stderr()
            .matches("suppression list could not be read")
            .count(),
        1,
        "{}",
        doctor.stderr()
    );
    assert_eq!(
        logged_report(&doctor)["pool"]["suppression_list"]["unknown"]["why"]
            .as_str()
            .map(|w| w.contains("AccessDeniedException")),
        Some(true)
    );
}

/// A pool with Cognito's own sender: `run`'s re-issue, `reissue`, `status` and `doctor` make no
/// SES call at all (SES's list cannot hold Cognito's own mail back). `status` and its page list
/// the provider re-issued to the limit without signing in.
#[test]
fn a_pool_that_does_not_send_through_ses_makes_no_ses_call() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = expired(
        &env,
        &pool,
        "email,name\np0@example.jp,Ada\np1@example.jp,Bo\n",
    );
    let proxy = env.proxy(|c| {
        c.fault(
            Some("GetSuppressedDestination"),
            FaultKind::Answer(BOUNCED),
            1.0,
        )
    });
    let report = env
        .command(&pool, ["run"])
        .arg(&csv)
        .expect(exit::OK)
        .report();
    assert_eq!(report["summary"]["reissued"], 2, "{report:#}");
    env.undo_moto_resend(&pool, "p0@example.jp", "p0@example.jp");
    env.undo_moto_resend(&pool, "p1@example.jp", "p1@example.jp");
    env.age_state(24 * 8);
    env.command(&pool, ["reissue", "p0@example.jp"])
        .expect(exit::OK);
    env.undo_moto_resend(&pool, "p0@example.jp", "p0@example.jp");
    // p1, re-issued once and expired again, has had its share at `max_reissues = 1`; p0, just
    // re-issued, is pending: only p1 is listed among those re-issued to the limit.
    let settings = env.write("settings.toml", "max_reissues = 1\n");
    let settings = settings.to_str().unwrap();
    let status = env
        .command(&pool, ["--config", settings, "status"])
        .expect(exit::OK);
    let report = status.report();
    assert!(report.get("suppressed").is_none(), "{report:#}");
    assert_eq!(
        report["reissue_limit"],
        serde_json::json!(["p1@example.jp"])
    );
    assert_eq!(
        row(&report, "p1@example.jp")["stuck"]["reissue_limit"]["reissues"],
        1
    );
    assert!(
        status
            .stderr()
            .contains("1 providers were re-issued to the limit"),
        "{}",
        status.stderr()
    );
    let page = std::fs::read_to_string(
        status
            .stdout()
            .lines()
            .rev()
            .find(|l| l.ends_with(".json"))
            .map(|l| std::path::PathBuf::from(l).with_extension("html"))
            .unwrap(),
    )
    .unwrap();
    let listed = &page[page.find("id=\"reissue-limit\"").expect("the list")..];
    let listed = &listed[..listed.find("</div>").unwrap()];
    assert!(
        listed.contains("p1@example.jp") && !listed.contains("p0@example.jp"),
        "{listed}"
    );
    assert!(!page.contains("id=\"suppressed\""));
    env.command(&pool, ["doctor", "p0@example.jp", "p1@example.jp"])
        .run();
    assert!(proxy.stats().invitations_to("p0@example.jp") >= 2);
    assert_eq!(ses_calls(&proxy), 0, "{:?}", proxy.stats().per_operation);
}
