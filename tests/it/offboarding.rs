//! Offboarding as an operator meets it: a cohort onboarded, the list edited, a dry run, the
//! run that disables those who left (counted at the proxy), a re-run that writes nothing, a
//! cap that stops the whole step, a second cohort never touched, `status` and `doctor` saying
//! who disabled whom, `enable` bringing a provider back with its password, `revoke` of a run
//! with providers who signed in, and a run killed during its disables resumed exactly once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cognito_onboard::error::exit;

use crate::support::*;

/// `n` providers from `from`, as a CSV.
fn cohort(from: usize, n: usize) -> String {
    (from..from + n).fold(String::from("email,name\n"), |mut s, i| {
        s.push_str(&format!("p{i:03}@example.jp,Provider {i}\n"));
        s
    })
}

fn email(i: usize) -> String {
    format!("p{i:03}@example.jp")
}

/// The rows of a report with `outcome`, by key.
fn keys(report: &serde_json::Value, outcome: &str) -> Vec<String> {
    let mut out: Vec<String> = rows_with(report, outcome)
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// The users of the pool that are disabled, by email.
fn disabled(env: &TestEnv, pool: &Pool) -> Vec<String> {
    let mut out: Vec<String> = env
        .users(pool)
        .iter()
        .filter(|u| !u.enabled())
        .filter_map(|u| attr(u.attributes(), "email"))
        .collect();
    out.sort();
    out
}

fn run_list(env: &TestEnv, pool: &Pool, csv: &Path, extra: &[&str]) -> TestCommand {
    env.command(pool, ["run"])
        .arg(csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(env.path(&format!("pw-{}.csv", rand_suffix())))
        .args(extra.iter().copied())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn providers_who_leave_the_list_are_disabled_once_within_the_cap_and_only_their_cohorts() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c);
    let list: PathBuf = env.write("cohort.csv", cohort(0, 20));
    let first = env.path("first-passwords.csv");
    env.command(&pool, ["run"])
        .arg(&list)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&first)
        .expect(exit::OK);
    let passwords = passwords(&first);
    assert_eq!(passwords.len(), 20);
    // One of those who will leave has signed in, with a password of their own.
    let (user, temporary) = passwords
        .iter()
        .find(|(u, _)| u == &email(18))
        .cloned()
        .unwrap();
    env.complete_first_sign_in(&pool, &user, &temporary, "Own-Passw0rd!");
    // A second list in the same pool, never to be touched by the first's offboarding.
    let other = env.write("other.csv", cohort(100, 4));
    run_list(&env, &pool, &other, &[]).expect(exit::OK);

    // The list loses three providers.
    env.write("cohort.csv", cohort(0, 17));
    let absent = [&["--absent", "disable", "--max-absent", "5"][..]].concat();
    let plan = run_list(&env, &pool, &list, &[&absent[..], &["--dry-run"]].concat())
        .expect(exit::OK)
        .report();
    let leaving = vec![email(17), email(18), email(19)];
    assert_eq!(keys(&plan, "disabled"), leaving, "{:#}", plan["summary"]);
    assert_eq!(
        proxy.stats().received("AdminDisableUser"),
        0,
        "a dry run writes nothing"
    );
    assert!(disabled(&env, &pool).is_empty());

    let done = run_list(&env, &pool, &list, &absent)
        .expect(exit::OK)
        .report();
    assert_eq!(keys(&done, "disabled"), leaving);
    let row = &rows_with(&done, "disabled")[0];
    assert!(
        row["reason"].as_str().unwrap().contains("cohort cohort"),
        "{row}"
    );
    assert_eq!(proxy.stats().received("AdminDisableUser"), 3);
    assert_eq!(disabled(&env, &pool), leaving);
    assert!(
        env.sign_in(&pool, &user, "Own-Passw0rd!").is_err(),
        "a disabled user cannot sign in"
    );

    // Again: nothing to write.
    let again = run_list(&env, &pool, &list, &absent)
        .expect(exit::OK)
        .report();
    assert!(keys(&again, "disabled").is_empty());
    assert_eq!(proxy.stats().received("AdminDisableUser"), 3);

    // A list that lost 12 more rows: more than the cap, so no one is disabled.
    env.write("cohort.csv", cohort(0, 5));
    let r = run_list(&env, &pool, &list, &absent).expect(exit::CAPPED);
    let held = r.report();
    assert_eq!(proxy.stats().received("AdminDisableUser"), 3);
    assert_eq!(disabled(&env, &pool), leaving);
    assert!(
        r.stderr().contains("12 providers would be taken off"),
        "{}",
        r.stderr()
    );
    let run_id = held["run_id"].as_str().unwrap();
    let list_file = env.path(&format!("reports/{run_id}-held-back.csv"));
    let held_back = std::fs::read_to_string(&list_file).unwrap();
    assert_eq!(held_back.lines().count(), 1 + 12, "{held_back}");

    // The other list's providers were never candidates.
    assert!(
        disabled(&env, &pool).iter().all(|e| !e.starts_with("p1")),
        "{:?}",
        disabled(&env, &pool)
    );

    // status: offboarded, not attention; doctor: who disabled them; enable: back, same password.
    env.write("cohort.csv", cohort(0, 20));
    let status = env.command(&pool, ["status"]).expect(exit::OK);
    let status = read_json(Path::new(status.stdout().trim()));
    assert_eq!(
        status["summary"]["offboarded"], 3,
        "{:#}",
        status["summary"]
    );
    assert_eq!(status["summary"]["attention"], 0);
    let doctor = env
        .command(&pool, ["doctor", &user, "--format", "json"])
        .run();
    let verdicts = doctor_verdicts(&doctor);
    assert_eq!(verdicts[0].1, "disabled");
    assert!(
        verdicts[0].2.contains("disabled by this tool's run") && verdicts[0].2.contains("enable"),
        "{verdicts:?}"
    );
    // Back in the list without --reenable: left disabled, and said why.
    let back = run_list(&env, &pool, &list, &[]).expect(exit::OK).report();
    let row = back["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == user.as_str())
        .unwrap()
        .clone();
    assert!(
        row["reason"].as_str().unwrap().contains("--reenable"),
        "{row}"
    );
    assert_eq!(disabled(&env, &pool), leaving);
    env.command(&pool, ["enable", &user]).expect(exit::OK);
    assert_eq!(proxy.stats().received("AdminEnableUser"), 1);
    assert_eq!(
        env.sign_in(&pool, &user, "Own-Passw0rd!"),
        Ok(false),
        "its old password"
    );
    // --reenable brings the other two back with the run.
    let back = run_list(&env, &pool, &list, &["--reenable"])
        .expect(exit::OK)
        .report();
    assert!(disabled(&env, &pool).is_empty(), "{:#}", back["summary"]);
}

#[test]
fn revoke_takes_back_a_runs_users_who_never_signed_in_and_delete_needs_its_confirmation() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c);
    let list = env.write("batch.csv", cohort(0, 5));
    let pw = env.path("batch-passwords.csv");
    let created = env
        .command(&pool, ["run"])
        .arg(&list)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&pw)
        .expect(exit::OK)
        .report();
    let run_id = created["run_id"].as_str().unwrap().to_string();
    for (user, temporary) in passwords(&pw).iter().take(2) {
        env.complete_first_sign_in(&pool, user, temporary, "Own-Passw0rd!");
    }
    let signed_in: Vec<String> = passwords(&pw)
        .iter()
        .take(2)
        .map(|(u, _)| u.clone())
        .collect();

    let plan = env
        .command(
            &pool,
            [
                "revoke",
                "--run",
                &run_id,
                "--max-absent",
                "10",
                "--dry-run",
            ],
        )
        .expect(exit::OK);
    let plan = read_json(Path::new(plan.stdout().trim()));
    assert_eq!(keys(&plan, "disabled").len(), 3, "{:#}", plan["rows"]);
    assert_eq!(proxy.stats().received("AdminDisableUser"), 0);

    let done = env
        .command(&pool, ["revoke", "--run", &run_id, "--max-absent", "10"])
        .expect(exit::OK);
    let done = read_json(Path::new(done.stdout().trim()));
    assert_eq!(keys(&done, "disabled").len(), 3);
    let left = rows_with(&done, "skipped");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter()
            .all(|r| r["reason"].as_str().unwrap().contains("signed in"))
    );
    let mut off = disabled(&env, &pool);
    off.sort();
    assert_eq!(off.len(), 3);
    assert!(signed_in.iter().all(|u| !off.contains(u)));

    // --delete without its confirmation is refused before anything is done.
    let refused = env
        .command(&pool, ["revoke", "--run", &run_id, "--delete"])
        .run();
    assert_eq!(refused.code(), Some(exit::USAGE), "{}", refused.stderr());
    assert!(
        refused.stderr().contains("--confirm-delete"),
        "{}",
        refused.stderr()
    );
    env.command(
        &pool,
        [
            "revoke",
            "--run",
            &run_id,
            "--delete",
            "--confirm-delete",
            "--max-absent",
            "10",
        ],
    )
    .expect(exit::OK);
    assert_eq!(proxy.stats().received("AdminDeleteUser"), 3);
    assert_eq!(
        env.users(&pool).len(),
        2,
        "only those who signed in are left"
    );
}

#[test]
fn a_run_killed_during_its_disables_is_resumed_with_each_provider_disabled_once() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let list = env.write("cohort.csv", cohort(0, 30));
    run_list(&env, &pool, &list, &[]).expect(exit::OK);
    let proxy = env.proxy(|c| c.latency(Duration::from_millis(150)));
    env.write("cohort.csv", cohort(0, 20));
    let absent = ["--absent", "disable", "--max-absent", "10"];
    let mut child = run_list(&env, &pool, &list, &absent).spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().received("AdminDisableUser") < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill();
    let _ = child.wait();
    let before = proxy.stats().received("AdminDisableUser");
    assert!((4..10).contains(&before), "killed midway: {before}");
    let resumed = run_list(&env, &pool, &list, &absent)
        .expect(exit::OK)
        .report();
    assert_eq!(
        proxy.stats().received("AdminDisableUser"),
        10,
        "each of the ten disabled once: {:#}",
        resumed["summary"]
    );
    assert_eq!(disabled(&env, &pool).len(), 10);
    let again = run_list(&env, &pool, &list, &absent)
        .expect(exit::OK)
        .report();
    assert!(keys(&again, "disabled").is_empty());
    assert_eq!(proxy.stats().received("AdminDisableUser"), 10);
}

/// `revoke --input FILE`: the users a file lists that this tool created and that never signed
/// in; a user the file lists that the tool did not create is left alone, and the cap counts.
#[test]
fn revoke_by_file_takes_back_only_what_this_tool_created() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let list = env.write("wrong-pool.csv", cohort(0, 4));
    run_list(&env, &pool, &list, &[]).expect(exit::OK);
    // A provider this tool never created, listed in the same file.
    env.write(
        "wrong-pool.csv",
        format!("{}p900@example.jp,Not Ours\n", cohort(0, 4)),
    );
    let capped = env
        .command(
            &pool,
            [
                "revoke",
                "--input",
                list.to_str().unwrap(),
                "--max-absent",
                "3",
            ],
        )
        .expect(exit::CAPPED);
    assert!(disabled(&env, &pool).is_empty(), "{}", capped.stderr());
    let done = env
        .command(
            &pool,
            [
                "revoke",
                "--input",
                list.to_str().unwrap(),
                "--max-absent",
                "4",
            ],
        )
        .expect(exit::OK);
    let done = read_json(Path::new(done.stdout().trim()));
    assert_eq!(
        keys(&done, "disabled"),
        (0..4).map(email).collect::<Vec<_>>()
    );
    let left = rows_with(&done, "skipped");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not created by this tool")
    );
}

/// What someone else did is not the tool's: a departed provider an administrator disabled is no
/// candidate (and does not count against the cap, run after run), and one the tool disabled
/// that an administrator enabled again is the tool's to disable again when it leaves the list.
#[test]
fn someone_elses_disable_or_enable_is_not_taken_for_the_tools() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c);
    let list = env.write("cohort.csv", cohort(0, 10));
    run_list(&env, &pool, &list, &[]).expect(exit::OK);
    let admin = |op: &str, i: usize| {
        let (client, id, user) = (&env.client, pool.id.clone(), email(i));
        env.rt
            .block_on(async {
                match op {
                    "disable" => client
                        .admin_disable_user()
                        .user_pool_id(id)
                        .username(user)
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    _ => client
                        .admin_enable_user()
                        .user_pool_id(id)
                        .username(user)
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                }
            })
            .expect("the administrator's call");
    };
    // p009 leaves and an administrator disables it; p008 leaves too. A cap of 1 is enough:
    // p009 needs no write, so it does not count, and is recorded as someone else's.
    admin("disable", 9);
    env.write("cohort.csv", cohort(0, 8));
    let absent = ["--absent", "disable", "--max-absent", "1"];
    let r = run_list(&env, &pool, &list, &absent)
        .expect(exit::OK)
        .report();
    assert_eq!(keys(&r, "disabled"), [email(8)], "{:#}", r["rows"]);
    assert_eq!(proxy.stats().received("AdminDisableUser"), 1);
    let r = run_list(&env, &pool, &list, &absent)
        .expect(exit::OK)
        .report();
    assert!(
        keys(&r, "disabled").is_empty(),
        "p009 is no longer a candidate"
    );

    // The administrator enables p008 again; it is back in the list, then leaves it again.
    admin("enable", 8);
    env.write("cohort.csv", cohort(0, 9));
    run_list(&env, &pool, &list, &[]).expect(exit::OK);
    env.write("cohort.csv", cohort(0, 8));
    let r = run_list(&env, &pool, &list, &absent)
        .expect(exit::OK)
        .report();
    assert_eq!(keys(&r, "disabled"), [email(8)], "{:#}", r["rows"]);
    assert_eq!(proxy.stats().received("AdminDisableUser"), 2);
}
