//! Capabilities tested in the order a user meets them, on the real binary: every command that
//! writes a state, one after the other on one DynamoDB state, then the state moved out, in and
//! out again. Each request on the way is checked against AWS's model by the proxy in front of
//! moto (`tests/support/model.rs`).

use std::path::Path;

use cognito_onboard::error::exit;

use crate::support::*;

/// `cognito-onboard ARGS` with the state in the DynamoDB table `table`.
fn on_table(env: &TestEnv, pool: &Pool, table: &str, args: &[&str]) -> TestCommand {
    env.command(pool, args)
        .env("COGNITO_ONBOARD_STATE", format!("dynamodb://{table}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// run (with an input file), run --update, status, reissue, reset and doctor --fix on one
/// DynamoDB state; then `state export`, `state import` into a new table and `state export`
/// again, and the two files compared table by table, row by row. This sequence is what found
/// `state export` failing after any real run (a run records its input's SHA-256, in a column
/// the loader refused).
#[test]
fn every_command_on_a_dynamodb_state_then_export_import_export_keeps_every_row() {
    let env = TestEnv::new();
    let pool = env.pool(false, &["providers"]);
    let table = "journey";
    on_table(&env, &pool, table, &["state", "init"]).expect(exit::OK);
    // Run by an init container or a pipeline every time: a table it made is its answer.
    let again = on_table(&env, &pool, table, &["state", "init"]).expect(exit::OK);
    assert!(
        again
            .stdout()
            .contains("exists already with the state's key schema"),
        "{}",
        again.stdout()
    );

    let csv = env.write(
        "providers.csv",
        "email,name,groups\n\
         p0@example.jp,山田 太郎,providers\n\
         p1@example.jp,Provider One,providers\n\
         p2@example.jp,Provider Two,\n\
         p3@example.jp,Provider Three,\n",
    );
    let pw = env.path("first.csv");
    on_table(
        &env,
        &pool,
        table,
        &[
            "run",
            s(&csv),
            "--delivery",
            "suppress",
            "--password-file",
            s(&pw),
        ],
    )
    .expect(exit::OK);
    let issued = passwords(&pw);
    assert_eq!(issued.len(), 4);
    let temp = |u: &str| issued.iter().find(|(n, _)| n == u).unwrap().1.clone();
    for u in ["p0@example.jp", "p1@example.jp"] {
        env.complete_first_sign_in(&pool, u, &temp(u), "N3w-Passw0rd!");
    }

    // The sheet changes: a name is corrected, a group added.
    let edited = env.write(
        "providers.csv",
        "email,name,groups\n\
         p0@example.jp,山田 太郎,providers\n\
         p1@example.jp,Provider One,providers\n\
         p2@example.jp,Provider 2,providers\n\
         p3@example.jp,Provider Three,\n",
    );
    let update = on_table(
        &env,
        &pool,
        table,
        &["run", s(&edited), "--update", "attributes,groups"],
    )
    .expect(exit::OK);
    assert_eq!(
        update.report()["summary"]["updated"],
        1,
        "{}",
        update.stderr()
    );
    let status = on_table(&env, &pool, table, &["status"]).expect(exit::OK);
    assert!(status.report().to_string().contains("p0@example.jp"));

    let pw2 = env.path("reissued.csv");
    on_table(
        &env,
        &pool,
        table,
        &[
            "reissue",
            "p3@example.jp",
            "--delivery",
            "suppress",
            "--password-file",
            s(&pw2),
        ],
    )
    .expect(exit::OK);
    assert_eq!(passwords(&pw2).len(), 1);
    on_table(&env, &pool, table, &["reset", "p1@example.jp"]).expect(exit::OK);
    env.unverify_email(&pool, "p0@example.jp");
    let fixed = on_table(
        &env,
        &pool,
        table,
        &["doctor", "--fix", "--format", "json", "p0@example.jp"],
    )
    .expect(exit::OK);
    assert!(fixed.stdout().contains("recoverable"), "{}", fixed.stdout());

    // Out, in, and out again.
    let first = env.path("first.db");
    on_table(&env, &pool, table, &["state", "export", s(&first)]).expect(exit::OK);
    let sha: Option<String> = rusqlite::Connection::open(&first)
        .unwrap()
        .query_row(
            "SELECT input_sha256 FROM runs WHERE input_sha256 IS NOT NULL LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(sha.is_some_and(|h| h.len() == 64), "a run's input hash");
    on_table(&env, &pool, "journey-copy", &["state", "init"]).expect(exit::OK);
    on_table(&env, &pool, "journey-copy", &["state", "import", s(&first)]).expect(exit::OK);
    let second = env.path("second.db");
    on_table(
        &env,
        &pool,
        "journey-copy",
        &["state", "export", s(&second)],
    )
    .expect(exit::OK);
    let (a, b) = (
        crate::dynamodb::dump(&first),
        crate::dynamodb::dump(&second),
    );
    for table in ["runs", "users", "invitations", "updates", "transitions"] {
        let rows = |d: &[String]| {
            d.iter()
                .filter(|r| r.starts_with(&format!("{table}: ")))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert!(!rows(&a).is_empty(), "{table} holds rows after the journey");
        assert_eq!(rows(&a), rows(&b), "{table}, row for row");
    }
    // Each command above is a run on record.
    let runs: Vec<String> = rusqlite::Connection::open(&second)
        .unwrap()
        .prepare("SELECT command FROM runs ORDER BY started_at")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for command in ["run", "status", "reissue", "reset", "doctor"] {
        assert!(runs.iter().any(|c| c == command), "{command} in {runs:?}");
    }
}

/// What `state export` and `state import` refuse: an export over a file, an export that fails
/// (it leaves no file), and imports of files that hold no state: each exit 1, the table untouched.
#[test]
fn export_and_import_refuse_what_holds_no_state_and_leave_no_file_behind() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let missing = env.path("missing.db");
    let r =
        on_table(&env, &pool, "absent", &["state", "export", s(&missing)]).expect(exit::ABORTED);
    assert!(r.stderr().contains("state init"), "{}", r.stderr());
    let left: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("missing.db"))
        .collect();
    assert!(left.is_empty(), "a failed export left {left:?}");

    on_table(&env, &pool, "target", &["state", "init"]).expect(exit::OK);
    let empty = env.write("empty.db", "");
    let text = env.write("text.db", "email,name\na@example.jp,A\n");
    let other = env.path("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('x');")
        .unwrap();
    // The file a failed export used to leave behind: this version's schema, no rows.
    let blank = env.path("blank.db");
    drop(
        cognito_onboard::state::State::open(
            &cognito_onboard::state::Location::File(blank.clone()),
            cognito_onboard::state::Access::Write,
        )
        .unwrap(),
    );
    for (file, says) in [
        (&empty, "is empty"),
        (&text, "is not an SQLite file"),
        (&other, "schema version is 0"),
        (&blank, "holds no state"),
    ] {
        let r =
            on_table(&env, &pool, "target", &["state", "import", s(file)]).expect(exit::ABORTED);
        assert!(
            r.stderr().contains(says),
            "{}: {}",
            file.display(),
            r.stderr()
        );
    }
    // Nothing was imported: a real state still goes in.
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\n");
    let pw = env.path("pw.csv");
    let state = env.path("state.db");
    env.command(
        &pool,
        [
            "run",
            s(&csv),
            "--delivery",
            "suppress",
            "--password-file",
            s(&pw),
        ],
    )
    .env("COGNITO_ONBOARD_STATE", &state)
    .expect(exit::OK);
    let r = on_table(&env, &pool, "target", &["state", "import", s(&state)]).expect(exit::OK);
    assert!(r.stdout().contains("1 runs, 1 users"), "{}", r.stdout());
}
