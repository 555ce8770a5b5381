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

/// The sequence an operator's cohort goes through: onboarded, a `status` while everyone is
/// pending, then most of them sign in. The next `status` chose a pending-only listing (the
/// state last saw everyone pending) and then finds most providers gone from it: it reads them
/// by one full listing, not one AdminGetUser each. And a provider `status` saw confirmed counts
/// as read: the first `run` after it reads only the pending ones.
#[test]
fn status_after_most_sign_ins_lists_the_pool_instead_of_reading_each_and_run_reads_only_the_pending()
 {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let n = 180;
    let csv = env.write(
        "p.csv",
        (0..n).fold(String::from("email,name\n"), |mut s, i| {
            s.push_str(&format!("p{i:04}@example.jp,P {i}\n"));
            s
        }),
    );
    let passwords = env.onboard_suppressed(&pool, &csv);
    // The pool's other users (production's), which make a full listing cost more than a
    // pending-only one.
    env.populate(&pool, "other", 420, 8);
    let proxy = env.proxy(|c| c);
    env.command(&pool, ["status"]).expect(exit::OK);
    // 160 of 180 sign in.
    for (user, temporary) in passwords.iter().take(160) {
        env.complete_first_sign_in(&pool, user, temporary, "Own-Passw0rd!");
    }
    let before = reads(&proxy);
    let r = env.command(&pool, ["status"]).expect(exit::OK);
    let (gets, pages) = (reads(&proxy).0 - before.0, reads(&proxy).1 - before.1);
    let report = read_json(std::path::Path::new(r.stdout().trim()));
    assert_eq!(
        report["summary"]["newly_confirmed"], 160,
        "{:#}",
        report["summary"]
    );
    assert_eq!(report["refresh"], "pending_scan");
    assert_eq!(report["rest"], "scan", "{report:#}");
    // One page of the 20 still pending, then the whole pool (600 users: 10 pages, or one more
    // per part of a parallel scan): never 160 AdminGetUser.
    assert!(gets <= 2, "{gets} AdminGetUser");
    assert!(pages <= 1 + 10 + 16, "{pages} ListUsers pages");

    // The first run after it: the 160 confirmed were just read by status; only the 20 pending
    // are read.
    let before = reads(&proxy);
    let run = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(env.path("pw2.csv"))
        .expect(exit::OK)
        .report();
    let (gets, pages) = (reads(&proxy).0 - before.0, reads(&proxy).1 - before.1);
    assert_eq!(not_reread(&run).len(), 160, "{:#}", run["summary"]);
    assert!(
        gets + pages <= 20 + 2,
        "{gets} AdminGetUser, {pages} ListUsers pages"
    );
}
