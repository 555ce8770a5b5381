//! Incremental cron runs: a re-run reads what may have changed (new rows, changed rows, pending
//! providers, periodic re-reads), not the whole cohort; `--refresh full` reads everyone. Reads
//! are counted at the fault proxy.

use cognito_onboard::error::exit;

use crate::support::proxy;
use crate::support::*;

/// Reads a run made of the pool's users: AdminGetUser calls and ListUsers pages.
fn reads(proxy: &proxy::Proxy) -> (u64, u64) {
    let stats = proxy.stats();
    (stats.received("AdminGetUser"), stats.received("ListUsers"))
}

fn not_reread(report: &serde_json::Value) -> Vec<String> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().contains("not re-read"))
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_rerun_reads_only_what_may_have_changed_and_rereads_everyone_within_refresh_after() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let mut csv = String::from("email,name\n");
    for i in 0..12 {
        csv.push_str(&format!("p{i:02}@example.jp,Provider {i}\n"));
    }
    let cohort = env.write("p.csv", &csv);
    let issued = env.onboard_suppressed(&pool, &cohort);
    // Nine of the twelve sign in; p09 to p11 stay pending.
    for (username, temp) in issued.iter().filter(|(u, _)| u.as_str() < "p09") {
        env.complete_first_sign_in(&pool, username, temp, "Confirmed-Pass-2026!");
    }
    let proxy = env.proxy(|c| c);
    let run = |env: &TestEnv, args: &[&str]| {
        env.command(&pool, ["run"])
            .arg(&cohort)
            .args(args)
            .expect(exit::OK)
            .report()
    };
    // The first re-run reads everyone: the state last saw them all pending.
    let first = run(&env, &[]);
    assert!(not_reread(&first).is_empty(), "{first:#}");
    assert_eq!(first["summary"]["skipped"], 12);

    // The second reads only the three pending; the nine confirmed are not read at all.
    proxy.reset_stats();
    let second = run(&env, &[]);
    let skipped = not_reread(&second);
    assert_eq!(skipped.len(), 9, "{second:#}");
    assert!(skipped.iter().all(|k| k.as_str() < "p09"), "{skipped:?}");
    let (gets, pages) = reads(&proxy);
    assert!(
        gets + pages <= 3 + 1,
        "three pending rows cost at most three reads or one page, not {gets} gets and {pages} pages"
    );
    let row = &second["rows"][0];
    assert_eq!(row["status_after"], "CONFIRMED");
    assert!(
        row["reason"].as_str().unwrap().contains("last seen 20"),
        "{row:#}"
    );

    // A changed row is read again.
    proxy.reset_stats();
    let edited = csv.replace("p03@example.jp,Provider 3", "p03@example.jp,Provider Three");
    let edited = env.write("edited.csv", &edited);
    let changed = env
        .command(&pool, ["run"])
        .arg(&edited)
        .expect(exit::OK)
        .report();
    let skipped = not_reread(&changed);
    assert_eq!(skipped.len(), 8, "{changed:#}");
    assert!(!skipped.contains(&"p03@example.jp".to_string()));

    // A provider deleted by someone else is noticed at its periodic re-read at the latest.
    env.rt.block_on(async {
        env.client
            .admin_delete_user()
            .user_pool_id(&pool.id)
            .username("p00@example.jp")
            .send()
            .await
            .unwrap()
    });
    let unnoticed = run(&env, &[]);
    assert!(not_reread(&unnoticed).contains(&"p00@example.jp".to_string()));

    // --refresh full reads everyone now.
    proxy.reset_stats();
    let full = env
        .command(&pool, ["run"])
        .arg(&cohort)
        .args(["--refresh", "full"])
        .expect(exit::OK)
        .report();
    assert!(not_reread(&full).is_empty(), "{full:#}");
    assert_eq!(full["rows"][0]["outcome"], "attention", "deleted: {full:#}");

    // Past refresh_after every confirmed provider is due again.
    env.age_state(8 * 24);
    let aged = run(&env, &[]);
    assert!(not_reread(&aged).is_empty(), "{aged:#}");
    // And with a short refresh_after, the second run after a read skips nobody whose re-read
    // is due: at 1 minute, none is skipped an hour later.
    env.age_state(1);
    let short = run(&env, &["--refresh-after", "1m"]);
    assert!(not_reread(&short).is_empty(), "{short:#}");
}
