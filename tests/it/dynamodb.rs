//! The state in DynamoDB (moto's, on the same server as the pool): the state suite run against
//! both stores, `state init/export/import`, a missing table, the lease between two "machines"
//! (processes in different directories sharing no file), and a killed run's lease taken over
//! only after it expires.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use cognito_onboard::cognito::{Delivery, UserStatus};
use cognito_onboard::error::exit;
use cognito_onboard::limiter::StateOp;
use cognito_onboard::state::{
    Access, Counted, IntentAnswer, IntentRequest, InviteKind, Invited, Known, Location,
    Observation, Offboard, Offboarded, RunEnd, RunStart, State, Subject, Table, UpdateIntent,
    UpdateOutcome, Updated,
};

use crate::support::*;

/// Hour `h` of the suite's history, which starts 14 hours before the test does: relative to the
/// clock, because the table's ledger expires (TTL) after 3 days, and moto enforces that against
/// the real date. Whole seconds, the stores' finest unit.
fn t(h: i64) -> DateTime<Utc> {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| Utc::now().timestamp() - 14 * 3600);
    Utc.timestamp_opt(start, 0).unwrap() + chrono::Duration::hours(h)
}

fn table(moto: &Moto, name: &str) -> Table {
    Table {
        name: name.to_string(),
        region: Some("eu-west-1".into()),
        profile: None,
        endpoint_url: Some(moto.url()),
        lease: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(10),
        rate: 1000.0,
    }
}

/// The SDK's credentials for moto, as the binary gets them in `TestEnv::cmd`.
fn moto_credentials() {
    // SAFETY: set once, to the same values, before any thread of this test reads them; every
    // test of this file sets the same.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
}

const POOL: &str = "eu-west-1_suite";
/// Cognito's own email sender of the suite's account, and SES of the same account.
const COGNITO_EMAIL: &str = "email:cognito:123456789012";
const SES_EMAIL: &str = "email:ses:123456789012";

fn counted(sender: &str) -> Option<Counted<'_>> {
    Some(Counted {
        sender,
        limit: Some(50),
    })
}

/// A user of the suite's pool.
fn who(key: &str) -> Subject<'_> {
    Subject::new(POOL, key)
}

/// An invitation by email counted against `counted`, as a run writes it ahead.
fn by_email<'a>(
    kind: InviteKind,
    counted: Option<Counted<'a>>,
    run_id: &'a str,
    at: DateTime<Utc>,
) -> IntentRequest<'a> {
    IntentRequest {
        kind,
        medium: Delivery::Email,
        counted,
        run_id,
        at,
    }
}

fn run_start<'a>(run_id: &'a str, command: &'a str, at: DateTime<Utc>) -> RunStart<'a> {
    RunStart {
        run_id,
        pool: POOL,
        command,
        input: None,
        at,
    }
}

fn run_end(run_id: &str, at: DateTime<Utc>) -> RunEnd<'_> {
    RunEnd {
        run_id,
        at,
        exit_code: 0,
        counts: "{}",
    }
}

/// The same history written to a store: every kind of write the tool makes, with fixed times.
/// Answers the ids of the invitations, by key.
fn write_history(state: &State, rt: &tokio::runtime::Runtime) -> HashMap<&'static str, i64> {
    let intent = |key: &str, kind, medium, at| {
        let request = IntentRequest {
            kind,
            medium,
            counted: counted(COGNITO_EMAIL),
            run_id: "r1",
            at,
        };
        rt.block_on(state.intent(who(key), request))
            .unwrap()
            .id()
            .expect("a writable state gives an id")
    };
    let mut ids = HashMap::new();
    state.begin_run(run_start("r1", "run", t(0))).unwrap();
    let a = intent("a@x", InviteKind::Create, Delivery::Email, t(1));
    let sent = Invited {
        intent: Some(a),
        username: "user-a",
        email: "a@x",
        run_id: "r1",
        at: t(1),
    };
    state.invitation_sent(who("a@x"), sent).unwrap();
    state
        .groups_done(who("a@x"), &["providers".to_string()])
        .unwrap();
    state.in_step(who("a@x"), "digest-a").unwrap();
    // The sent invitation closed a's intent: another one can be written (and fail).
    let again = intent("a@x", InviteKind::Resend, Delivery::Email, t(2));
    state.settle_intent(again, None, false).unwrap();
    let b = intent("b@x", InviteKind::Create, Delivery::Suppress, t(2));
    state.settle_intent(b, Some(t(2)), true).unwrap();
    state.mark_invited(who("b@x"), "user-b", "b@x").unwrap();
    let c = intent("c@x", InviteKind::Create, Delivery::Email, t(3));
    state.settle_intent(c, None, false).unwrap();
    // Left open: the run "died" around this call.
    let d = intent("d@x", InviteKind::Resend, Delivery::Email, t(3));
    let e = intent("e@x", InviteKind::Create, Delivery::Email, t(4));
    state.settle_undelivered(e, t(4)).unwrap();
    let confirmed = Observation {
        username: Some("user-a"),
        email: Some("a@x"),
        status: Some(&UserStatus::Confirmed),
        enabled: Some(true),
        run_id: "r1",
        at: t(5),
    };
    state.observe(who("a@x"), confirmed).unwrap();
    state
        .confirmations_reported(POOL, &["a@x".to_string()], t(6))
        .unwrap();
    state.handed_over(who("a@x"), t(6)).unwrap();
    let update = UpdateIntent {
        changes: &["name".into(), "+pilot".into()],
        run_id: "r1",
        at: t(7),
    };
    let u = rt
        .block_on(state.update_intent(who("a@x"), update))
        .unwrap()
        .unwrap();
    state.settle_update(u, UpdateOutcome::Done, t(7)).unwrap();
    let update = Updated {
        written: &["name".into()],
        email: Some("a2@x"),
        removed_groups: &["providers".into()],
        pending_since: None,
        at: t(7),
    };
    state.updated(who("a@x"), update).unwrap();
    let update = UpdateIntent {
        changes: &["name".into()],
        run_id: "r1",
        at: t(8),
    };
    rt.block_on(state.update_intent(who("b@x"), update))
        .unwrap();
    state.read_confirmed(who("a@x"), t(8)).unwrap();
    let gone = Observation {
        username: None,
        email: None,
        status: None,
        enabled: None,
        run_id: "r1",
        at: t(9),
    };
    state.observe(who("gone@x"), gone).unwrap();
    state.finish_run(run_end("r1", t(10))).unwrap();
    state.begin_run(run_start("s1", "status", t(11))).unwrap();
    state.finish_run(run_end("s1", t(12))).unwrap();
    // Another pool of the account: its messages count in the budget, its users are its own.
    let o = rt
        .block_on(state.intent(
            Subject::new("eu-west-1_other", "a@x"),
            by_email(InviteKind::Create, counted(COGNITO_EMAIL), "r1", t(4)),
        ))
        .unwrap()
        .id()
        .unwrap();
    state.settle_intent(o, Some(t(4)), false).unwrap();
    // A pool of the account that sends through SES: its email is not Cognito's to count.
    let ses = rt
        .block_on(state.intent(
            Subject::new("eu-west-1_ses", "f@x"),
            by_email(InviteKind::Create, counted(SES_EMAIL), "r1", t(4)),
        ))
        .unwrap()
        .id()
        .unwrap();
    state.settle_intent(ses, Some(t(4)), false).unwrap();
    // Offboarding: the list each provider last came from (only users the state holds), and
    // who disabled whom.
    let listed = ["a@x", "b@x", "nobody@x"].map(String::from);
    state.set_cohort(POOL, &listed, "list-1").unwrap();
    state.set_cohort(POOL, &listed[..1], "list-2").unwrap();
    state.reminded(who("a@x"), t(1)).unwrap();
    state
        .offboarded(
            who("b@x"),
            Offboarded {
                action: Offboard::Disable,
                run_id: "r9",
                at: t(9),
            },
        )
        .unwrap();
    state.flush().unwrap();
    ids.extend([("a", a), ("b", b), ("c", c), ("d", d), ("e", e)]);
    ids
}

/// What is known, with the ids of open intents (which differ between stores) replaced.
fn comparable(mut known: HashMap<String, Known>) -> Vec<(String, Known)> {
    for k in known.values_mut() {
        if let Some(open) = &mut k.open_intent {
            open.id = 0;
        }
        k.open_updates = vec![0; k.open_updates.len()];
        for (id, _) in &mut k.open_offboards {
            *id = 0;
        }
    }
    let mut v: Vec<_> = known.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The assertions of the suite, on either store.
fn check_history(state: &State, ids: &HashMap<&str, i64>) -> Vec<(String, Known)> {
    let known = state.known(POOL).unwrap();
    let a = &known["a@x"];
    assert!(a.invited);
    assert_eq!(a.username.as_deref(), Some("user-a"));
    assert_eq!(
        a.email.as_deref(),
        Some("a2@x"),
        "updated() changed the email"
    );
    assert_eq!(a.last_status, Some(UserStatus::Confirmed));
    assert_eq!(a.confirmed_at, Some(t(5)));
    assert_eq!(a.confirmed_reported_at, Some(t(6)));
    assert_eq!(a.handed_over_at, Some(t(6)));
    assert_eq!(a.first_invited_at, Some(t(1)));
    assert_eq!(a.last_message_at, Some(t(1)));
    assert!(
        a.groups_done.is_empty(),
        "providers was removed by the update"
    );
    assert_eq!(a.last_written, ["name"]);
    assert_eq!(a.row_digest.as_deref(), Some("digest-a"));
    assert_eq!(a.last_read_at, Some(t(8)));
    assert!(a.open_intent.is_none() && a.open_updates.is_empty());
    let b = &known["b@x"];
    assert!(b.invited && !b.password_lost, "{b:?}");
    assert_eq!(b.open_updates.len(), 1);
    assert!(!known["c@x"].invited, "a failed intent invites nobody");
    let d = known["d@x"]
        .open_intent
        .as_ref()
        .expect("d's intent is open");
    assert_eq!((d.id, d.kind, d.at), (ids["d"], InviteKind::Resend, t(3)));
    assert!(
        known["e@x"].password_lost,
        "undelivered: nobody got the password"
    );
    assert_eq!(
        known["gone@x"].last_status,
        Some(UserStatus::parse("DELETED"))
    );
    // Sent a, e (undelivered), d (open) in this pool and one in the other; c was never sent;
    // b went to the password file.
    // SES's message is not among them.
    let (count, oldest) = state
        .messages_since(t(0), Delivery::Email, COGNITO_EMAIL)
        .unwrap();
    assert_eq!((count, oldest), (4, Some(t(1))));
    assert_eq!(
        state
            .message_times_since(t(0), Delivery::Email, COGNITO_EMAIL)
            .unwrap(),
        [t(1), t(3), t(4), t(4)]
    );
    assert_eq!(
        state
            .messages_since(t(3), Delivery::Email, COGNITO_EMAIL)
            .unwrap()
            .0,
        2
    );
    assert_eq!(
        state
            .messages_since(t(0), Delivery::Email, SES_EMAIL)
            .unwrap(),
        (1, Some(t(4)))
    );
    assert_eq!(state.last_status_run(POOL).unwrap(), Some(t(11)));
    let invitations = state.invitations_of(who("a@x")).unwrap();
    assert_eq!(invitations.len(), 2);
    assert_eq!(invitations[1].outcome, "failed");
    assert_eq!(
        (invitations[0].at, invitations[0].outcome.as_str()),
        (t(1), "sent")
    );
    assert_eq!(state.known("eu-west-1_other").unwrap().len(), 1);
    assert_eq!(
        a.cohort.as_deref(),
        Some("list-2"),
        "the list it last came from"
    );
    assert_eq!(a.created_run.as_deref(), Some("r1"));
    assert_eq!(
        a.reminded_for,
        Some(t(1)),
        "the invitation its reminder was for"
    );
    assert_eq!((a.disabled_run.as_deref(), a.disabled_at), (None, None));
    assert_eq!(b.cohort.as_deref(), Some("list-1"));
    assert_eq!(
        (b.disabled_run.as_deref(), b.disabled_at, b.last_enabled),
        (Some("r9"), Some(t(9)), Some(false))
    );
    assert!(
        !known.contains_key("nobody@x"),
        "a cohort creates no user: {:?}",
        known.get("nobody@x")
    );
    comparable(known)
}

#[test]
fn both_stores_pass_the_state_suite_and_export_and_import_lose_nothing() {
    moto_credentials();
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let file = Location::File(dir.path().join("suite.db"));
    let sqlite = State::open(&file, Access::Write).unwrap();
    let ids = write_history(&sqlite, &rt);
    let from_sqlite = check_history(&sqlite, &ids);
    drop(sqlite);

    let suite = table(&moto, "suite");
    cognito_onboard::state::init_table(&suite).unwrap();
    let dynamo = State::open(&Location::Dynamo(suite.clone()), Access::Write).unwrap();
    let ids = write_history(&dynamo, &rt);
    let from_dynamo = check_history(&dynamo, &ids);
    assert_eq!(from_sqlite, from_dynamo, "the two stores know the same");

    // A second writer is refused while the lease is held; a reader is not.
    let second = State::open(&Location::Dynamo(suite.clone()), Access::Write);
    assert!(
        matches!(second, Err(cognito_onboard::error::Error::Locked(_))),
        "a second writer got the lease"
    );
    // While its writer holds the lease, d's open intent is that run's, not another's to settle.
    let reader = State::open(&Location::Dynamo(suite.clone()), Access::Read).unwrap();
    assert!(reader.known(POOL).unwrap()["d@x"].open_intent.is_none());
    drop(reader);
    drop(dynamo);
    // Its writer gone (the lease released), the intent is a dead run's: the next one settles it.
    let reader = State::open(&Location::Dynamo(suite.clone()), Access::Read).unwrap();
    assert_eq!(comparable(reader.known(POOL).unwrap()), from_dynamo);
    drop(reader);

    // The table to a file, the file to a new table, and that table to a file again.
    let exported = dir.path().join("exported.db");
    let said = cognito_onboard::state::export(&suite, &exported).unwrap();
    assert!(
        said.contains("2 runs, 8 users, 8 invitations, 2 updates, 3 transitions"),
        "{said}"
    );
    let copy = State::open(&Location::File(exported.clone()), Access::Read).unwrap();
    let from_export = check_history(&copy, &ids);
    assert_eq!(from_export, from_dynamo);
    drop(copy);
    let again = table(&moto, "again");
    cognito_onboard::state::init_table(&again).unwrap();
    let said = cognito_onboard::state::import(&exported, &again).unwrap();
    assert!(
        said.contains("2 runs, 8 users, 8 invitations, 2 updates, 3 transitions"),
        "{said}"
    );
    let imported = State::open(&Location::Dynamo(again.clone()), Access::Read).unwrap();
    assert_eq!(check_history(&imported, &ids), from_dynamo);
    drop(imported);
    let round = dir.path().join("round.db");
    cognito_onboard::state::export(&again, &round).unwrap();
    assert_eq!(
        dump(&exported),
        dump(&round),
        "file -> table -> file keeps every row"
    );
    // Importing into a table that holds a state is refused.
    let err = cognito_onboard::state::import(&exported, &again).unwrap_err();
    assert!(err.to_string().contains("already holds a state"), "{err}");
}

/// Every row of every table of an SQLite state, as text, in order.
pub(crate) fn dump(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for table in ["runs", "users", "invitations", "updates", "transitions"] {
        let mut stmt = c
            .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        out.extend(rows.map(|r| format!("{table}: {}", r.unwrap())));
    }
    out
}

fn cohort(n: usize) -> String {
    let mut s = String::from("email,name\n");
    for i in 0..n {
        s.push_str(&format!("provider{i:04}@example.com,Provider {i}\n"));
    }
    s
}

/// `count` once it has stayed the same for half a second (requests in flight have landed), or
/// after 5 s.
fn settled(count: impl Fn() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = count();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_millis(500) {
            break;
        }
    }
    last
}

/// `cognito-onboard ARGS` on a "machine" of its own: its own directory, the shared table.
fn on_machine(
    env: &TestEnv,
    pool: &Pool,
    machine: &Path,
    table: &str,
    args: &[&str],
) -> TestCommand {
    std::fs::create_dir_all(machine).unwrap();
    env.command(pool, args)
        .env("COGNITO_ONBOARD_STATE", format!("dynamodb://{table}"))
        .current_dir(machine)
}

#[test]
fn a_missing_table_stops_the_run_before_any_cognito_write() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(2));
    let r = on_machine(
        &env,
        &pool,
        &env.path("m1"),
        "missing",
        &["run", csv.to_str().unwrap()],
    )
    .expect(exit::ABORTED);
    assert!(
        r.stderr().contains("run `cognito-onboard state init`"),
        "{}",
        r.stderr()
    );
    assert_eq!(proxy.stats().creates, 0);
    assert_eq!(proxy.stats().received("AdminCreateUser"), 0);
    assert!(
        !env.path("m1/reports").exists(),
        "no report of a run that never started"
    );
    // `state init` makes it, once.
    let init =
        on_machine(&env, &pool, &env.path("m1"), "missing", &["state", "init"]).expect(exit::OK);
    assert!(
        init.stdout().contains("created the DynamoDB table missing"),
        "{}",
        init.stdout()
    );
    // Again (an init container runs it every time): the table it made is no error.
    let again =
        on_machine(&env, &pool, &env.path("m1"), "missing", &["state", "init"]).expect(exit::OK);
    assert!(
        again
            .stdout()
            .contains("exists already with the state's key schema"),
        "{}",
        again.stdout()
    );
    // A table of the same name with another key is someone else's: an error, left alone.
    env.rt.block_on(async {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(env.moto.url())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&config)
            .create_table()
            .table_name("orders")
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
    });
    let other = on_machine(&env, &pool, &env.path("m1"), "orders", &["state", "init"])
        .expect(exit::ABORTED);
    assert!(
        other.stderr().contains("another key schema (id HASH)"),
        "{}",
        other.stderr()
    );
}

/// The requests `stats` saw for Cognito (any operation with a quota category) and for DynamoDB.
fn cognito_and_dynamodb_calls(stats: &proxy::Stats) -> (u64, u64) {
    let (mut cognito, mut dynamodb) = (0, 0);
    for (op, s) in &stats.per_operation {
        if proxy::category_of(op).is_some() {
            cognito += s.received;
        } else if StateOp::ALL.iter().any(|s| s.name() == op) {
            dynamodb += s.received;
        }
    }
    (cognito, dynamodb)
}

#[test]
fn the_states_calls_follow_aws_endpoint_url_unless_the_dynamodb_one_or_the_flag_says_otherwise() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let moto = env.endpoint.clone();
    let proxy = env.proxy(|c| c);
    let at_proxy = env.endpoint.clone();
    let csv = env.write("p.csv", cohort(3));
    let m = env.path("m");
    std::fs::create_dir_all(&m).unwrap();
    let by_env = |args: &[&str]| {
        env.command_by_env(&pool, args)
            .env("COGNITO_ONBOARD_STATE", "dynamodb://endpoints")
            .current_dir(&m)
    };
    let counted = |before: (u64, u64)| {
        let now = cognito_and_dynamodb_calls(&proxy.stats());
        (now.0 - before.0, now.1 - before.1)
    };
    // AWS_ENDPOINT_URL alone sends both services to it.
    let before = cognito_and_dynamodb_calls(&proxy.stats());
    by_env(&["state", "init"])
        .env("AWS_ENDPOINT_URL", &at_proxy)
        .expect(exit::OK);
    let first = by_env(&["run", csv.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", &at_proxy)
        .expect(exit::OK);
    assert_eq!(
        first.report()["summary"]["created"],
        3,
        "{}",
        first.stderr()
    );
    let (cognito, dynamodb) = counted(before);
    assert!(cognito > 0 && dynamodb > 0, "{cognito} and {dynamodb}");
    assert_eq!(proxy.stats().invitations(), 3);

    // AWS_ENDPOINT_URL_DYNAMODB takes the state's calls alone; Cognito's follow AWS_ENDPOINT_URL.
    let before = cognito_and_dynamodb_calls(&proxy.stats());
    let again = by_env(&["run", csv.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", &moto)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &at_proxy)
        .expect(exit::OK);
    assert_eq!(
        again.report()["summary"]["skipped"],
        3,
        "{}",
        again.stderr()
    );
    let (cognito, dynamodb) = counted(before);
    assert_eq!(cognito, 0, "Cognito's calls went to AWS_ENDPOINT_URL");
    assert!(
        dynamodb > 0,
        "the state's calls went to AWS_ENDPOINT_URL_DYNAMODB"
    );

    // --endpoint-url wins over both, for both services, as it does in the AWS CLI.
    let before = cognito_and_dynamodb_calls(&proxy.stats());
    let flagged = by_env(&["--endpoint-url", &moto, "run", csv.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", &at_proxy)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &at_proxy)
        .expect(exit::OK);
    assert_eq!(
        flagged.report()["summary"]["skipped"],
        3,
        "{}",
        flagged.stderr()
    );
    assert_eq!(counted(before), (0, 0));
}

#[test]
fn an_unreachable_store_stops_the_run_before_any_cognito_write() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(2));
    // A port nothing listens on: every connection is refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let m = env.path("m");
    std::fs::create_dir_all(&m).unwrap();
    let started = Instant::now();
    let r = env
        .command_by_env(&pool, ["run", csv.to_str().unwrap()])
        .env("COGNITO_ONBOARD_STATE", "dynamodb://far")
        .env("AWS_ENDPOINT_URL", &env.endpoint)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &closed)
        .current_dir(&m)
        .expect(exit::ABORTED);
    eprintln!("gave up after {:?}", started.elapsed());
    assert!(
        r.stderr().contains("cannot reach the state table far")
            && r.stderr().contains("Connection refused")
            && r.stderr().contains("this run changed nothing"),
        "{}",
        r.stderr()
    );
    assert_eq!(proxy.stats().received("AdminCreateUser"), 0);
    assert!(
        !m.join("reports").exists(),
        "no report of a run that never started"
    );
}

#[test]
fn two_machines_share_one_table_one_runs_and_the_other_exits_4() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    // Slow creates, so the first run is still working when the second starts.
    let proxy = env.proxy(|c| c.quota("UserCreation", 5.0));
    let csv = env.write("p.csv", cohort(20));
    on_machine(&env, &pool, &env.path("a"), "shared", &["state", "init"]).expect(exit::OK);
    let first = on_machine(
        &env,
        &pool,
        &env.path("a"),
        "shared",
        &["run", csv.to_str().unwrap(), "--concurrency", "2"],
    )
    .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().creates == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(proxy.stats().creates > 0, "the first run did not start");
    let second = on_machine(
        &env,
        &pool,
        &env.path("b"),
        "shared",
        &["run", csv.to_str().unwrap()],
    )
    .expect(exit::LOCKED);
    assert!(
        second
            .stderr()
            .contains("holds the lease on dynamodb://shared"),
        "{}",
        second.stderr()
    );
    assert!(
        !env.path("b/reports").exists(),
        "the second run wrote a report"
    );
    first.wait().expect_code(exit::OK);
    assert_eq!(proxy.stats().creates, 20);
    // The lease was released: machine b now runs, and finds everyone invited by machine a.
    let rerun = on_machine(
        &env,
        &pool,
        &env.path("b"),
        "shared",
        &["run", csv.to_str().unwrap()],
    )
    .expect(exit::OK);
    assert_eq!(
        rerun.report()["summary"]["skipped"],
        20,
        "{}",
        rerun.stderr()
    );
    assert_eq!(proxy.stats().creates, 20, "no second invitation");
    assert_eq!(proxy.stats().invitations(), 20);
}

#[test]
fn a_killed_runs_lease_blocks_until_it_expires_then_the_next_run_resumes() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let proxy = env.proxy(|c| c.quota("UserCreation", 4.0));
    let csv = env.write("p.csv", cohort(12));
    let lease = ["--state-lease", "6s"];
    on_machine(&env, &pool, &env.path("a"), "killed", &["state", "init"]).expect(exit::OK);
    let mut first = on_machine(
        &env,
        &pool,
        &env.path("a"),
        "killed",
        &[
            "run",
            csv.to_str().unwrap(),
            "--concurrency",
            "2",
            lease[0],
            lease[1],
        ],
    )
    .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().creates < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill(); // SIGKILL: no release, no flush
    let killed_at = Instant::now();
    let _ = first.wait();
    // A create the killed run had sent may still be with moto: count once nothing moves.
    let created_by_first = settled(|| proxy.stats().creates);
    assert!(
        created_by_first < 12,
        "the first run finished before it was killed"
    );

    let blocked = on_machine(
        &env,
        &pool,
        &env.path("b"),
        "killed",
        &["run", csv.to_str().unwrap(), lease[0], lease[1]],
    )
    .expect(exit::LOCKED);
    assert!(
        blocked.stderr().contains("holds the lease"),
        "{}",
        blocked.stderr()
    );
    assert_eq!(
        proxy.stats().creates,
        created_by_first,
        "the blocked run wrote"
    );

    // After the lease's length, with no renewal, the next run takes it over.
    let deadline = Instant::now() + Duration::from_secs(40);
    let resumed = loop {
        let r = on_machine(
            &env,
            &pool,
            &env.path("b"),
            "killed",
            &["run", csv.to_str().unwrap(), lease[0], lease[1]],
        )
        .run();
        if r.code() != Some(exit::LOCKED) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    resumed.expect_code(exit::OK);
    assert!(
        killed_at.elapsed() >= Duration::from_secs(3),
        "the lease was taken over before it expired"
    );
    assert_eq!(env.users(&pool).len(), 12);
    for i in 0..12 {
        let email = format!("provider{i:04}@example.com");
        assert!(
            proxy.stats().invitations_to(&email) <= 1,
            "{email} was invited twice"
        );
    }
    assert_eq!(proxy.stats().invitations(), 12, "one invitation each");
}

#[test]
fn a_help_desk_reissue_during_a_scheduled_run_shares_the_email_budget() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    // Slow creates (re-issues are creates too), so the two overlap.
    let proxy = env.proxy(|c| c.quota("UserCreation", 3.0));
    let settings = env.write("settings.toml", "email_budget = 6\n");
    let config = ["--config", settings.to_str().unwrap()];
    let (a, b) = (env.path("scheduler"), env.path("help-desk"));
    on_machine(&env, &pool, &a, "budget", &["state", "init"]).expect(exit::OK);
    // Three providers invited earlier without a message (their passwords went to a file).
    let early = env.write("early.csv", cohort(3));
    let pw = env.path("pw.csv");
    on_machine(
        &env,
        &pool,
        &a,
        "budget",
        &[
            "run",
            early.to_str().unwrap(),
            "--delivery",
            "suppress",
            "--password-file",
            pw.to_str().unwrap(),
        ],
    )
    .expect(exit::OK);
    proxy.reset_stats();
    // The scheduled run invites six new providers; the help desk re-issues the three by email.
    let all = env.write("all.csv", cohort(9));
    let mut run_args = config.to_vec();
    run_args.extend(["run", all.to_str().unwrap(), "--concurrency", "2"]);
    let scheduled = on_machine(&env, &pool, &a, "budget", &run_args).spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().creates == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut desk_args = config.to_vec();
    desk_args.push("reissue");
    let early_emails: Vec<String> = (0..3)
        .map(|i| format!("provider{i:04}@example.com"))
        .collect();
    desk_args.extend(early_emails.iter().map(String::as_str));
    let desk = on_machine(&env, &pool, &b, "budget", &desk_args).run();
    let scheduled = scheduled.wait();
    assert!(
        matches!(desk.code(), Some(exit::OK) | Some(exit::ROWS_FAILED)),
        "{}",
        desk.stderr()
    );
    assert!(
        matches!(scheduled.code(), Some(exit::OK) | Some(exit::ROWS_FAILED)),
        "{}",
        scheduled.stderr()
    );
    // Nine invitations wanted, six allowed in 24 hours, across both machines.
    assert_eq!(
        proxy.stats().invitations(),
        6,
        "run:\n{}\ndesk:\n{}",
        scheduled.stderr(),
        desk.stderr()
    );
    let deferred = |r: &Run| r.report()["summary"]["deferred"].as_u64().unwrap_or(0);
    assert_eq!(deferred(&scheduled) + deferred(&desk), 3);
}

/// The cost of a first run and of a re-run of 1,000 providers on a DynamoDB state, in calls
/// and request units (on-demand: a write of an item under 1 KB is 1 write unit, 2 in a
/// transaction; a strongly consistent read is 1 read unit per 4 KB). Run by hand
/// (`cargo test --test it dynamodb_cost -- --ignored --nocapture`); docs/state.md has its
/// figures.
#[test]
#[ignore = "a measurement of about a minute: run by hand"]
fn dynamodb_cost_of_a_1000_provider_run() {
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let proxy = env.proxy(|c| c);
    let csv = env.write("p.csv", cohort(1000));
    let m = env.path("m");
    on_machine(&env, &pool, &m, "cost", &["state", "init"]).expect(exit::OK);
    let ops = [
        "TransactWriteItems",
        "PutItem",
        "UpdateItem",
        "GetItem",
        "Query",
        "DeleteItem",
        "DescribeTable",
    ];
    let mut per_run = Vec::new();
    for run in ["first run", "re-run"] {
        proxy.reset_stats();
        on_machine(&env, &pool, &m, "cost", &["run", csv.to_str().unwrap()])
            .args(["--delivery", "suppress", "--password-file"])
            .arg(env.path(&format!("pw-{}.csv", per_run.len())))
            .expect(exit::OK);
        let stats = proxy.stats();
        let calls: Vec<(&str, u64)> = ops.iter().map(|op| (*op, stats.received(op))).collect();
        eprintln!("{run}: {calls:?}");
        per_run.push(calls);
    }
    let writes = |calls: &[(&str, u64)]| {
        calls
            .iter()
            .filter(|(op, _)| ["PutItem", "UpdateItem", "DeleteItem"].contains(op))
            .map(|(_, n)| n)
            .sum::<u64>()
            + calls[0].1 * 2 * 2
    };
    let (first, rerun) = (writes(&per_run[0]), writes(&per_run[1]));
    eprintln!("write units: first run about {first}, re-run about {rerun}");
    assert!(
        first <= 1000 * 12,
        "more than 12 write units a provider: {first}"
    );
    assert!(
        rerun <= 1000 * 6,
        "a re-run writes more than 6 units a provider: {rerun}"
    );
}

#[test]
fn the_states_throttled_calls_are_retried_and_nothing_is_lost() {
    use crate::support::proxy::FaultKind;
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let csv = env.write("p.csv", cohort(10));
    let m = env.path("m");
    // The table first, on an honest endpoint; then DynamoDB throttles a third of the state's
    // writes and reads, as it does a hot partition or a table over its capacity. Never more than
    // three times in a row on one call: a longer run would outlast the ten attempts by chance
    // (a CI run once met ten in a row), and the test is of the retries, not of the odds.
    let moto_url = env.endpoint.clone();
    on_machine(&env, &pool, &m, "throttled", &["state", "init"]).expect(exit::OK);
    let proxy = env.proxy(|c| {
        c.seed(7)
            .fault(
                Some("UpdateItem"),
                FaultKind::Refuse("ProvisionedThroughputExceededException"),
                0.3,
            )
            .in_a_row_at_most(3)
            // Every intent, twice: ten draws at 0.3 would leave them all alone one run in 35.
            .fault(
                Some("TransactWriteItems"),
                FaultKind::Refuse("ThrottlingException"),
                1.0,
            )
            .in_a_row_at_most(2)
            .fault(Some("Query"), FaultKind::Refuse("ThrottlingException"), 0.3)
            .in_a_row_at_most(3)
    });
    assert_ne!(env.endpoint, moto_url);
    let first = on_machine(
        &env,
        &pool,
        &m,
        "throttled",
        &["run", csv.to_str().unwrap()],
    )
    .expect(exit::OK);
    assert_eq!(
        first.report()["summary"]["created"],
        10,
        "{}",
        first.stderr()
    );
    let stats = proxy.stats();
    assert!(stats.faulted("UpdateItem") > 0, "about 40 draws at 0.3");
    // Each intent twice, and twice more for one that went round again for a budget slot.
    assert!(stats.faulted("TransactWriteItems") >= 2 * 10);
    // The executor met them, in the state's own quota category, and the report says so.
    let report = first.report();
    let throttled = report["throttles"]["StateTable"].as_u64().unwrap_or(0);
    assert!(
        throttled > 0 && report["calls"]["StateTable"].as_u64() > Some(throttled),
        "{:#}",
        report["throttles"]
    );
    // Everything the run recorded is there: a re-run skips everyone and sends nothing.
    let again = on_machine(
        &env,
        &pool,
        &m,
        "throttled",
        &["run", csv.to_str().unwrap()],
    )
    .expect(exit::OK);
    assert_eq!(
        again.report()["summary"]["skipped"],
        10,
        "{}",
        again.stderr()
    );
    assert_eq!(proxy.stats().invitations(), 10);
    let status = on_machine(&env, &pool, &m, "throttled", &["status"]).expect(exit::OK);
    assert_eq!(status.report()["summary"]["pending"], 10);
}

#[test]
fn a_transaction_cancelled_for_throttling_is_retried_and_one_that_stays_so_defers_its_row() {
    use crate::support::proxy::{FaultKind, FaultRule};
    const THROTTLED: FaultKind = FaultKind::CancelTransaction(&["None", "ThrottlingError"]);
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let m = env.path("m");
    on_machine(&env, &pool, &m, "cancelled", &["state", "init"]).expect(exit::OK);
    // DynamoDB cancels each intent's transaction three times over, an item throttled, then
    // takes it.
    let proxy = env.proxy(|c| {
        c.fault(Some("TransactWriteItems"), THROTTLED, 1.0)
            .in_a_row_at_most(3)
    });
    let csv = env.write("p.csv", cohort(4));
    let first = on_machine(
        &env,
        &pool,
        &m,
        "cancelled",
        &["run", csv.to_str().unwrap()],
    )
    .expect(exit::OK);
    let report = first.report();
    assert_eq!(report["summary"]["created"], 4, "{}", first.stderr());
    // Every cancellation the proxy made was met as a throttle and retried: three for each
    // intent, and three more for any intent that went round again (two rows claiming the same
    // budget slot at once).
    let injected = proxy.stats().faulted("TransactWriteItems");
    assert!(injected >= 12, "{injected}");
    assert_eq!(
        report["throttles"]["StateTable"], injected,
        "{:#}",
        report["throttles"]
    );
    assert_eq!(proxy.stats().invitations(), 4);
    // Cancelled for good: the row waits for a later run, nothing is sent, the others go on.
    proxy.set_faults(vec![FaultRule::new(
        Some("TransactWriteItems"),
        THROTTLED,
        1.0,
    )]);
    let late = env.write("q.csv", "email,name\nlate@example.com,Late\n");
    let second = on_machine(
        &env,
        &pool,
        &m,
        "cancelled",
        &["run", late.to_str().unwrap()],
    )
    .run();
    let report = second.report();
    let row = &report["rows"][0];
    assert_eq!(row["outcome"], "deferred", "{row:#}\n{}", second.stderr());
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains("another run or help-desk command"),
        "{row:#}"
    );
    assert_eq!(proxy.stats().invitations(), 4, "nothing sent to late@");
    assert!(
        second
            .stderr()
            .contains("the state table stayed busy for late@example.com"),
        "{}",
        second.stderr()
    );
    assert_eq!(second.code(), Some(exit::OK), "a deferral is not a failure");
}

#[test]
fn a_dead_writers_mark_is_taken_over_and_a_live_ones_defers_the_other_machine() {
    moto_credentials();
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let marks = table(&moto, "marks");
    cognito_onboard::state::init_table(&marks).unwrap();
    let at = Utc::now();
    let intent = |state: &State, key: &str| {
        rt.block_on(state.intent(
            who(key),
            by_email(InviteKind::Resend, counted(COGNITO_EMAIL), "r", at),
        ))
    };
    // A run that dies with its intent open (its lease released or expired).
    let dead = State::open(&Location::Dynamo(marks.clone()), Access::Write).unwrap();
    intent(&dead, "z@x").unwrap().id().unwrap();
    drop(dead);
    // The next writer's intent for the same provider is not refused for ever.
    let run = State::open(&Location::Dynamo(marks.clone()), Access::Write).unwrap();
    intent(&run, "z@x")
        .unwrap()
        .id()
        .expect("a dead run's mark is stale");
    // While this run lives, a help-desk command's intent for the provider is deferred, not
    // failed, and nothing is written for it.
    let desk = State::open(&Location::Dynamo(marks.clone()), Access::Shared).unwrap();
    match intent(&desk, "z@x") {
        Ok(IntentAnswer::Busy(why)) => assert!(why.contains("z@x"), "{why}"),
        other => panic!("the desk's intent was not deferred: {other:?}"),
    }
    // Another provider is the desk's to invite.
    intent(&desk, "y@x").unwrap().id().unwrap();
    drop(desk);
    drop(run);
}

#[test]
fn an_imported_state_carries_the_days_budget_into_the_tables_claims() {
    moto_credentials();
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("day.db");
    let now = Utc::now();
    let limited = |limit| {
        Some(Counted {
            sender: COGNITO_EMAIL,
            limit: Some(limit),
        })
    };
    let sqlite = State::open(&Location::File(file.clone()), Access::Write).unwrap();
    for key in ["p@x", "q@x", "r@x"] {
        let id = rt
            .block_on(sqlite.intent(who(key), by_email(InviteKind::Create, limited(3), "r", now)))
            .unwrap()
            .id()
            .unwrap();
        sqlite.settle_intent(id, Some(now), false).unwrap();
    }
    drop(sqlite);
    let day = table(&moto, "day");
    cognito_onboard::state::init_table(&day).unwrap();
    cognito_onboard::state::import(&file, &day).unwrap();
    let state = State::open(&Location::Dynamo(day), Access::Write).unwrap();
    let invite = |key, limit| {
        rt.block_on(state.intent(
            who(key),
            by_email(InviteKind::Create, limited(limit), "r2", now),
        ))
    };
    assert!(
        matches!(invite("s@x", 3), Ok(IntentAnswer::BudgetSpent(_))),
        "the three imported messages of today spend a budget of three"
    );
    invite("s@x", 4)
        .unwrap()
        .id()
        .expect("a fourth share is free");
}

/// An intent's transaction that committed but whose answer was lost is retried with the same
/// client token, which moto does not honour (and a token expires after ten minutes anyway): the
/// retry fails its condition on the user's mark, and that mark is the intent's own. The row
/// goes on instead of being deferred as "busy" with its budget share taken and unused. And a
/// share taken by an intent that sent nothing is given back when the intent is settled.
#[test]
fn an_intent_that_finds_its_own_mark_carries_on_and_an_unsent_ones_share_is_given_back() {
    use crate::support::proxy::FaultKind;
    let mut env = TestEnv::new();
    let pool = env.pool(true, &[]);
    let proxy = env.proxy(|c| {
        c.fault(
            Some("TransactWriteItems"),
            FaultKind::ResetAfterForward,
            1.0,
        )
        .in_a_row_at_most(1)
        .fault_for(
            "AdminCreateUser",
            "provider0003@example.com",
            FaultKind::Refuse("UserLambdaValidationException"),
        )
    });
    let machine = env.path("m");
    on_machine(&env, &pool, &machine, "own", &["state", "init"]).expect(exit::OK);
    let settings = env.write("settings.toml", "email_budget = 5\n");
    let config = settings.to_str().unwrap();
    let four = env.write("four.csv", cohort(4));
    let r = on_machine(
        &env,
        &pool,
        &machine,
        "own",
        &["--config", config, "run", four.to_str().unwrap()],
    )
    .expect(exit::ROWS_FAILED);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 3, "{report:#}");
    assert_eq!(report["summary"]["deferred"], 0, "{report:#}");
    assert_eq!(
        report["summary"]["failed"], 1,
        "the refused one: {report:#}"
    );
    assert!(
        proxy.stats().faulted("TransactWriteItems") >= 4,
        "every intent's first answer was lost"
    );
    assert_eq!(proxy.stats().invitations(), 3);

    // 3 sent of 5 a day: two more go out, the refused one's share among them.
    proxy.set_faults(Vec::new());
    let six = env.write("six.csv", cohort(6).replace("provider0003", "provider0099"));
    let r = on_machine(
        &env,
        &pool,
        &machine,
        "own",
        &["--config", config, "run", six.to_str().unwrap()],
    )
    .expect(exit::OK);
    let report = r.report();
    assert_eq!(report["summary"]["created"], 2, "{report:#}");
    assert_eq!(report["summary"]["deferred"], 1, "the sixth: {report:#}");
    assert_eq!(proxy.stats().invitations(), 5);
}

/// Offboarding with the state in a table: the help desk's `enable` on another machine, the
/// absent step on this one, each write made once, and a re-run on a third machine (the table
/// is the memory, not the disk) that writes nothing.
#[test]
fn offboarding_with_a_dynamodb_state_disables_once_whichever_machine_runs() {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c);
    on_machine(&env, &pool, &env.path("a"), "offboard", &["state", "init"]).expect(exit::OK);
    let list = env.write("providers.csv", cohort(8));
    let run = |machine: &str, extra: &[&str]| {
        let pw = env.path(&format!("{machine}-passwords.csv"));
        let mut args = vec![
            "run",
            list.to_str().unwrap(),
            "--delivery",
            "suppress",
            "--password-file",
            pw.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        on_machine(&env, &pool, &env.path(machine), "offboard", &args)
    };
    run("a", &[]).expect(exit::OK);
    env.write("providers.csv", cohort(6));
    let absent = ["--absent", "disable", "--max-absent", "2"];
    let done = run("b", &absent).expect(exit::OK).report();
    assert_eq!(
        rows_with(&done, "disabled").len(),
        2,
        "{:#}",
        done["summary"]
    );
    assert_eq!(proxy.stats().received("AdminDisableUser"), 2);
    let again = run("c", &absent).expect(exit::OK).report();
    assert!(rows_with(&again, "disabled").is_empty());
    assert_eq!(proxy.stats().received("AdminDisableUser"), 2);
    on_machine(
        &env,
        &pool,
        &env.path("d"),
        "offboard",
        &["enable", "provider0007@example.com"],
    )
    .expect(exit::OK);
    assert_eq!(proxy.stats().received("AdminEnableUser"), 1);
}

/// A run reads what a shared table knows of the pool's users once, into a copy on disk that
/// both its passes share, by key and in key order: what the copy hands out is what the table
/// holds, and reading it again costs no call; a new view reads the table again.
#[test]
fn a_view_of_a_shared_table_copies_the_pools_users_once_and_hands_out_what_the_table_knows() {
    moto_credentials();
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let suite = table(&moto, "views");
    cognito_onboard::state::init_table(&suite).unwrap();
    let dynamo = State::open(&Location::Dynamo(suite), Access::Write).unwrap();
    dynamo.scratch_in(dir.path());
    write_history(&dynamo, &rt);
    let whole = dynamo.known(POOL).unwrap();
    assert!(whole.len() > 2, "{whole:?}");
    let calls = || dynamo.calls().0.values().sum::<u64>();

    let mut view = dynamo.known_of(POOL);
    let keys: Vec<String> = whole.keys().cloned().chain(["nobody@x".into()]).collect();
    let before = calls();
    let by_key = view.of(&keys).unwrap();
    let copied = calls() - before;
    assert!(copied > 0, "the first read copies the table");
    assert_eq!(
        by_key, whole,
        "by key, what the table knows; nobody is left out"
    );
    let mut in_order = Vec::new();
    let mut walk = view.in_order();
    loop {
        let slice = walk.next_slice().unwrap();
        if slice.is_empty() {
            break;
        }
        in_order.extend(slice);
    }
    assert_eq!(
        calls() - before,
        copied,
        "the walk reads the copy, not the table"
    );
    let mut sorted: Vec<(String, Known)> = whole.clone().into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(in_order, sorted, "in key order, every user once");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the copy's file is unlinked while it is in use"
    );
    drop(view);
    let again = calls();
    dynamo.known_of(POOL).of(&keys[..1]).unwrap();
    assert!(calls() > again, "a new view reads the table again");
}
