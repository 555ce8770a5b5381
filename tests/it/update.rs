//! `run --update`: an onboarded cohort, its CSV edited, brought in line with exactly the writes
//! the edits call for (counted at the fault proxy), and nothing touched the file does not manage.

use aws_sdk_cognitoidentityprovider::types::{AttributeDataType, SchemaAttributeType};
use cognito_onboard::error::exit;

use crate::support::proxy;
use crate::support::*;

const HEADER: &str = "username,email,name,custom:org,custom:tier,groups\n";

/// The cohort as first onboarded.
const BEFORE: [&str; 7] = [
    "u1,u1@example.jp,山田 太郎,Acme KK,gold,providers",
    "u2,u2@example.jp,Suzuki Hanako,Acme KK,gold,providers",
    "u3,u3@example.jp,Sato Ken,Old Org,gold,providers",
    "u4,u4@example.jp,Tanaka Yui,Acme KK,gold,pilot",
    "u5,u5@example.jp,Ito Mai,Beta GK,gold,providers",
    "u6,u6@example.jp,Kato Ryo,Acme KK,silver,providers",
    "u7,u7@example.jp,Abe Sora,Acme KK,gold,pilot;providers",
];

/// The same cohort, edited: two names changed (u1, u2), one organisation (u3), one group moved
/// (u4: pilot to providers, and its name), one cell emptied (u5's organisation), one immutable attribute
/// changed (u6's tier); u7 unchanged, and still in `pilot`, which keeps that group one the file
/// manages.
const AFTER: [&str; 7] = [
    "u1,u1@example.jp,山田 太郎 (Taro),Acme KK,gold,providers",
    "u2,u2@example.jp,Suzuki Hana,Acme KK,gold,providers",
    "u3,u3@example.jp,Sato Ken,New Org,gold,providers",
    "u4,u4@example.jp,Tanaka Yui K,Acme KK,gold,providers",
    "u5,u5@example.jp,Ito Mai,,gold,providers",
    "u6,u6@example.jp,Kato Ryo,Acme KK,gold,providers",
    "u7,u7@example.jp,Abe Sora,Acme KK,gold,pilot;providers",
];

/// Every write `run` can make to an existing or new user.
const WRITES: [&str; 6] = [
    "AdminUpdateUserAttributes",
    "AdminDeleteUserAttributes",
    "AdminAddUserToGroup",
    "AdminRemoveUserFromGroup",
    "AdminCreateUser",
    "AdminSetUserPassword",
];

fn assert_no_writes(proxy: &proxy::Proxy, what: &str) {
    let stats = proxy.stats();
    for op in WRITES {
        assert_eq!(stats.received(op), 0, "{what} sent {op}");
    }
}

/// `run CSV ARGS...` in suppress mode (nothing is sent; a new password file each time), which
/// must exit 0.
fn run_with(env: &TestEnv, pool: &Pool, csv: &std::path::Path, args: &[&str]) -> Run {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    env.command(pool, ["run"])
        .arg(csv)
        .args(args)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(env.path(&format!("unused-passwords-{n}.csv")))
        .expect(exit::OK)
}

fn csv(rows: &[&str]) -> String {
    let mut s = HEADER.to_string();
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

/// A free-form pool with a mutable `custom:org` and an immutable `custom:tier`, and an
/// `admins` group the CSV never names.
fn schema_pool(env: &TestEnv) -> Pool {
    env.pool_with(&["pilot", "providers", "admins"], |req| {
        req.schema(
            SchemaAttributeType::builder()
                .name("org")
                .attribute_data_type(AttributeDataType::String)
                .mutable(true)
                .build(),
        )
        .schema(
            SchemaAttributeType::builder()
                .name("tier")
                .attribute_data_type(AttributeDataType::String)
                .mutable(false)
                .build(),
        )
    })
}

fn add_to_group(env: &TestEnv, pool: &Pool, username: &str, group: &str) {
    env.rt.block_on(async {
        env.client
            .admin_add_user_to_group()
            .user_pool_id(&pool.id)
            .username(username)
            .group_name(group)
            .send()
            .await
            .expect("add to group");
    });
}

fn attribute(env: &TestEnv, pool: &Pool, username: &str, name: &str) -> Option<String> {
    let user = env.get_user(pool, username).expect("user exists");
    attr(user.user_attributes(), name)
}

/// What the report's rows say, by key: outcome and changed.
fn rows(report: &serde_json::Value) -> std::collections::BTreeMap<String, (String, Vec<String>)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let changed = r["changed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            (
                r["key"].as_str().unwrap().to_string(),
                (r["outcome"].as_str().unwrap().to_string(), changed),
            )
        })
        .collect()
}

fn expected(
    pairs: &[(&str, &str, &[&str])],
) -> std::collections::BTreeMap<String, (String, Vec<String>)> {
    pairs
        .iter()
        .map(|(k, o, c)| {
            (
                k.to_string(),
                (o.to_string(), c.iter().map(|s| s.to_string()).collect()),
            )
        })
        .collect()
}

#[test]
fn an_edited_csv_makes_exactly_its_changes_and_a_rerun_makes_none() {
    let mut env = TestEnv::new();
    let pool = schema_pool(&env);
    let before = env.write("before.csv", csv(&BEFORE));
    let issued = env.onboard_suppressed(&pool, &before);
    // u1 has signed in: confirmed and pending providers are updated alike.
    let temp = &issued.iter().find(|(u, _)| u == "u1").unwrap().1;
    env.complete_first_sign_in(&pool, "u1", temp, "Confirmed-Pass-2026!");
    add_to_group(&env, &pool, "u4", "admins");
    add_to_group(&env, &pool, "u7", "admins");
    let proxy = env.proxy(|c| c);
    let after = env.write("after.csv", csv(&AFTER));
    let want = expected(&[
        ("u1", "updated", &["name"]),
        ("u2", "updated", &["name"]),
        ("u3", "updated", &["custom:org"]),
        ("u4", "updated", &["name", "+providers", "-pilot"]),
        ("u5", "skipped", &[]),
        ("u6", "attention", &[]),
        ("u7", "skipped", &[]),
    ]);

    // The dry run lists exactly the changes and writes nothing.
    let dry = env
        .command(&pool, ["run"])
        .arg(&after)
        // Per-row reads here (AdminGetUser), a ListUsers scan in the run below: both carry the
        // attributes compared.
        .args([
            "--update",
            "attributes,groups",
            "--dry-run",
            "--lookup",
            "get",
        ])
        .expect(exit::OK);
    let report = dry.report();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["update"], "attributes,groups");
    assert_eq!(rows(&report), want, "{report:#}");
    let u6 = &report["rows"][5];
    assert!(
        u6["reason"]
            .as_str()
            .unwrap()
            .contains("custom:tier differs"),
        "{u6:#}"
    );
    assert_no_writes(&proxy, "the dry run");
    assert_eq!(proxy.stats().received("AdminGetUser"), 7);
    proxy.reset_stats();

    // The run makes those writes, and only those.
    let r = run_with(&env, &pool, &after, &["--update", "attributes,groups"]);
    let report = r.report();
    assert_eq!(rows(&report), want, "{report:#}");
    assert_eq!(report["summary"]["updated"], 4, "{report:#}");
    let stats = proxy.stats();
    assert_eq!(stats.received("AdminGetUser"), 0, "looked up by a scan");
    assert_eq!(stats.received("AdminUpdateUserAttributes"), 4, "u1 to u4");
    assert_eq!(stats.received("AdminAddUserToGroup"), 1, "u4 to providers");
    assert_eq!(
        stats.received("AdminRemoveUserFromGroup"),
        1,
        "u4 from pilot"
    );
    assert_eq!(stats.received("AdminDeleteUserAttributes"), 0);
    assert_eq!(stats.received("AdminCreateUser"), 0);
    assert_eq!(stats.received("AdminSetUserPassword"), 0, "no re-issue");
    assert_eq!(
        attribute(&env, &pool, "u1", "name").as_deref(),
        Some("山田 太郎 (Taro)")
    );
    assert_eq!(
        attribute(&env, &pool, "u3", "custom:org").as_deref(),
        Some("New Org")
    );
    assert_eq!(
        attribute(&env, &pool, "u5", "custom:org").as_deref(),
        Some("Beta GK"),
        "an empty cell is no opinion"
    );
    assert_eq!(
        attribute(&env, &pool, "u6", "custom:tier").as_deref(),
        Some("silver")
    );
    let mut members = env.group_members(&pool, "providers");
    members.sort();
    assert_eq!(members.len(), 7, "{members:?}");
    assert_eq!(env.group_members(&pool, "pilot"), ["u7@example.jp"]);
    let mut admins = env.group_members(&pool, "admins");
    admins.sort();
    assert_eq!(
        admins,
        ["u4@example.jp", "u7@example.jp"],
        "a group the file never names is untouched"
    );
    // The report says which attributes changed, never their values (the provider's own name
    // is in its `name` column, which is there to find the person by).
    let csv_report = std::fs::read_to_string(
        std::path::Path::new(r.stdout().trim().lines().last().unwrap()).with_extension("csv"),
    )
    .unwrap();
    assert!(!csv_report.contains("New Org"), "{csv_report}");
    assert!(
        csv_report
            .lines()
            .next()
            .unwrap()
            .ends_with(",changed,name")
    );
    let u1 = csv_report
        .lines()
        .find(|l| l.contains("u1@example.jp"))
        .expect("u1's row");
    assert!(u1.ends_with(",name,山田 太郎 (Taro)"), "{u1}");

    // A re-run over the same CSV makes no write.
    proxy.reset_stats();
    let again = run_with(&env, &pool, &after, &["--update", "attributes,groups"]);
    let report = again.report();
    assert_eq!(report["summary"]["updated"], 0, "{report:#}");
    assert_no_writes(&proxy, "the re-run");

    // --clear-empty deletes only the emptied attribute.
    let cleared = run_with(
        &env,
        &pool,
        &after,
        &["--update", "attributes", "--clear-empty"],
    );
    let report = cleared.report();
    let by_key = rows(&report);
    assert_eq!(by_key["u5"], ("updated".into(), vec!["custom:org".into()]));
    assert_eq!(report["summary"]["updated"], 1, "{report:#}");
    assert_eq!(proxy.stats().received("AdminDeleteUserAttributes"), 1);
    assert_eq!(attribute(&env, &pool, "u5", "custom:org"), None);
    assert_eq!(
        attribute(&env, &pool, "u5", "name").as_deref(),
        Some("Ito Mai")
    );
}

#[test]
fn without_update_an_edited_csv_changes_no_existing_user() {
    let mut env = TestEnv::new();
    let pool = schema_pool(&env);
    env.onboard_suppressed(&pool, &env.write("before.csv", csv(&BEFORE)));
    let proxy = env.proxy(|c| c);
    let r = run_with(&env, &pool, &env.write("after.csv", csv(&AFTER)), &[]);
    let report = r.report();
    assert!(report.get("update").is_none(), "{report:#}");
    let by_key = rows(&report);
    let u4 = &report["rows"][3]["reason"];
    assert!(
        u4.as_str().unwrap().ends_with("; added to group providers"),
        "no attribute named: {u4}"
    );
    for (key, (outcome, changed)) in &by_key {
        if key == "u4" {
            // Create-only still adds a missing group, as it always did.
            assert_eq!(
                (outcome.as_str(), changed.as_slice()),
                ("updated", &["+providers".to_string()][..])
            );
        } else {
            assert_eq!(outcome, "skipped", "{key}: {report:#}");
        }
    }
    let stats = proxy.stats();
    assert_eq!(stats.received("AdminUpdateUserAttributes"), 0);
    assert_eq!(stats.received("AdminRemoveUserFromGroup"), 0);
    let mut pilot = env.group_members(&pool, "pilot");
    pilot.sort();
    assert_eq!(pilot, ["u4@example.jp", "u7@example.jp"]);
}

/// In a free-form pool whose rows carry a username, a new email is written with
/// `email_verified=true`, so the provider can still recover the account; where the email is
/// the key, a new email is a new provider and the old user stays.
#[test]
fn a_changed_email_is_written_verified_where_the_username_is_the_key() {
    let mut env = TestEnv::new();
    let pool = schema_pool(&env);
    env.onboard_suppressed(&pool, &env.write("before.csv", csv(&BEFORE[..2])));
    let proxy = env.proxy(|c| c);
    let edited = [
        "u1,taro.new@example.jp,山田 太郎,Acme KK,gold,providers",
        BEFORE[1],
    ];
    let after = env.write("after.csv", csv(&edited));
    let r = run_with(&env, &pool, &after, &["--update", "attributes"]);
    let report = r.report();
    assert_eq!(
        rows(&report)["u1"],
        ("updated".into(), vec!["email".to_string()]),
        "{report:#}"
    );
    assert_eq!(proxy.stats().received("AdminUpdateUserAttributes"), 1);
    assert_eq!(
        attribute(&env, &pool, "u1", "email").as_deref(),
        Some("taro.new@example.jp")
    );
    assert_eq!(
        attribute(&env, &pool, "u1", "email_verified").as_deref(),
        Some("true")
    );
    // Without --update the same row is a mismatch for a person to look at.
    let edited_again = ["u2,hanako.new@example.jp,Suzuki Hanako,Acme KK,gold,providers"];
    let r = run_with(
        &env,
        &pool,
        &env.write("again.csv", csv(&edited_again)),
        &[],
    );
    assert_eq!(rows(&r.report())["u2"].0, "attention");
    assert_eq!(
        attribute(&env, &pool, "u2", "email").as_deref(),
        Some("u2@example.jp")
    );

    // Keyed by email (no username column): the new address is a new provider.
    let by_email = env.write(
        "by-email.csv",
        "email,name\nhanako.new@example.jp,Suzuki Hanako\n",
    );
    let r = run_with(&env, &pool, &by_email, &["--update", "attributes"]);
    assert_eq!(r.report()["summary"]["created"], 1, "{:#}", r.report());
    assert_eq!(
        attribute(&env, &pool, "u2", "email").as_deref(),
        Some("u2@example.jp"),
        "the old user stays as it is"
    );
}
