//! The table's key design, as pure functions: the keys of every kind of item (the table of
//! them is in the store's header, `dynamo/mod.rs`), ids, expiries, the items the store writes,
//! and an item read back as what the state knows or as a record of the SQLite schema (`state
//! export` and `import`). Must not call DynamoDB: whatever reads or writes an item lives beside.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue as Av;
use chrono::{DateTime, Utc};

use crate::cognito::{Delivery, UserStatus};
use crate::state::{
    IntentRequest, InviteKind, Known, Record, RunStart, StoredInvitation, TABLES, UpdateIntent,
    Value,
};

pub(super) type Item = HashMap<String, Av>;

/// How long run records and ledger entries are kept (the table's TTL deletes them after).
pub(super) const RUN_TTL_DAYS: i64 = 400;
pub(super) const LEDGER_TTL_DAYS: i64 = 3;

/// The key of the lease item.
pub(super) const LOCK: &str = "LOCK";

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
}

pub(super) fn s(v: &str) -> Av {
    Av::S(v.to_string())
}

pub(super) fn n(v: i64) -> Av {
    Av::N(v.to_string())
}

pub(super) fn list(v: &[String]) -> Av {
    Av::L(v.iter().map(|g| s(g)).collect())
}

pub(super) fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn get_t(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    get_n(item, name).and_then(from_ms)
}

pub(super) fn get_bool(item: &Item, name: &str) -> Option<bool> {
    item.get(name).and_then(|v| v.as_bool().ok()).copied()
}

pub(super) fn get_list(item: &Item, name: &str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

/// An item from its attributes.
pub(super) fn item_of<const N: usize>(attributes: [(&str, Av); N]) -> Item {
    attributes
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The partition of a pool's users, invitations, updates and transitions.
pub(super) fn pool_pk(pool_id: &str) -> String {
    format!("P#{pool_id}")
}

pub(super) fn user_sk(key: &str) -> String {
    format!("U#{key}")
}

/// The sort key of an item kept by id (`I` invitation, `W` update, `T` transition): zero-padded,
/// so that sort-key order is id order, and so time order.
pub(super) fn id_sk(prefix: char, id: i64) -> String {
    format!("{prefix}#{id:019}")
}

/// The partition of a pool's runs.
pub(super) fn runs_pk(pool_id: &str) -> String {
    format!("R#{pool_id}")
}

/// A run's sort key: its start, so that a pool's runs read in time order.
pub(super) fn run_sk(started_ms: i64, run_id: &str) -> String {
    format!("{started_ms:013}#{run_id}")
}

/// The budget's ledger of `sender`: every message counted against it, every pool.
pub(super) fn ledger_pk(sender: &str) -> String {
    format!("M#{sender}")
}

pub(super) fn ledger_sk(at: i64, id: i64) -> String {
    format!("{at:013}#{id:019}")
}

/// The ledger's sort keys after `since_ms`: every entry of a later millisecond.
pub(super) fn ledger_after(since_ms: i64) -> String {
    format!("{:013}#", since_ms + 1)
}

/// The partition of the budget's slots of `sender`.
pub(super) fn slots_pk(sender: &str) -> String {
    format!("B#{sender}")
}

/// The budget's slots of `sender`, and slot `slot` among them.
pub(super) fn slot_key(sender: &str, slot: i64) -> (Av, Av) {
    (s(&slots_pk(sender)), s(&format!("S#{slot:05}")))
}

/// A slot's number from its sort key.
pub(super) fn slot_of(sk: &str) -> Option<u32> {
    sk.strip_prefix("S#")?.parse().ok()
}

/// A new id: the time in milliseconds, times a million, plus a random part.
pub(super) fn new_id(at: DateTime<Utc>) -> i64 {
    id_at(ms(at), rand::random_range(0..1_000_000))
}

/// The id of the millisecond `at` with the random part `salt` (below a million): unique across
/// machines, and ordered by time before anything else.
fn id_at(at: i64, salt: i64) -> i64 {
    at * 1_000_000 + salt
}

/// The TTL attribute of an item kept `days` after `at`.
pub(super) fn expires(at: DateTime<Utc>, days: i64) -> Av {
    n((at + chrono::Duration::days(days)).timestamp())
}

/// The ledger entry of a message counted against `sender`, sent (or about to be) at `at`.
pub(super) fn ledger_item(sender: &str, at: i64, id: i64, pool_id: &str) -> Item {
    item_of([
        ("pk", s(&ledger_pk(sender))),
        ("sk", s(&ledger_sk(at, id))),
        ("at", n(at)),
        ("id", n(id)),
        ("pool_id", s(pool_id)),
        (
            "expires",
            expires(from_ms(at).unwrap_or_default(), LEDGER_TTL_DAYS),
        ),
    ])
}

/// A run's item as `begin_run` writes it, and its key (the item's `pk` and `sk`).
pub(super) fn run_item(run: &RunStart<'_>) -> (Item, (String, String)) {
    let pk = runs_pk(run.pool);
    let sk = run_sk(ms(run.at), run.run_id);
    let mut item = item_of([
        ("pk", s(&pk)),
        ("sk", s(&sk)),
        ("run_id", s(run.run_id)),
        ("pool_id", s(run.pool)),
        ("command", s(run.command)),
        ("started_at", n(ms(run.at))),
        ("expires", expires(run.at, RUN_TTL_DAYS)),
    ]);
    if let Some((path, hash)) = run.input {
        item.insert("input_path".into(), s(&path.display().to_string()));
        item.insert("input_sha256".into(), s(hash));
    }
    (item, (pk, sk))
}

/// An invitation's item as its intent writes it: pending, its password not yet recorded, by
/// `holder`, and counted against `sender` when its message is counted.
pub(super) fn invitation_item(
    pk: &str,
    id: i64,
    key: &str,
    request: &IntentRequest<'_>,
    sender: Option<&str>,
    holder: &str,
) -> Item {
    let mut invitation = item_of([
        ("pk", s(pk)),
        ("sk", s(&id_sk('I', id))),
        ("id", n(id)),
        ("key", s(key)),
        ("kind", s(request.kind.as_str())),
        ("medium", s(request.medium.as_str())),
        ("run_id", s(request.run_id)),
        ("intent_at", n(ms(request.at))),
        ("outcome", s("pending")),
        ("password_recorded", Av::Bool(false)),
        ("holder", s(holder)),
    ]);
    if let Some(sender) = sender {
        invitation.insert("sender".into(), s(sender));
    }
    invitation
}

/// A `run --update` intent's item: pending until settled.
pub(super) fn update_item(pool_id: &str, id: i64, key: &str, update: &UpdateIntent<'_>) -> Item {
    item_of([
        ("pk", s(&pool_pk(pool_id))),
        ("sk", s(&id_sk('W', id))),
        ("id", n(id)),
        ("key", s(key)),
        ("changes", list(update.changes)),
        ("run_id", s(update.run_id)),
        ("intent_at", n(ms(update.at))),
        ("outcome", s("pending")),
    ])
}

/// A user's item as what is known of it (its invitations and updates are folded in after),
/// with its key; `None` for an item that is not a user's.
pub(super) fn known_of(item: &Item) -> Option<(String, Known)> {
    let key = get_s(item, "sk")?.strip_prefix("U#").map(String::from)?;
    Some((
        key,
        Known {
            username: get_s(item, "username"),
            email: get_s(item, "email"),
            invited: get_bool(item, "invited").unwrap_or(false),
            groups_done: get_list(item, "groups_done"),
            last_status: get_s(item, "last_status").map(|s| UserStatus::parse(&s)),
            last_enabled: get_bool(item, "last_enabled"),
            last_seen_at: get_t(item, "last_seen_at"),
            confirmed_at: get_t(item, "confirmed_at"),
            confirmed_reported_at: get_t(item, "confirmed_reported_at"),
            handed_over_at: get_t(item, "handed_over_at"),
            row_digest: get_s(item, "row_digest"),
            last_written: get_list(item, "last_written"),
            last_written_at: get_t(item, "last_written_at"),
            pending_since: get_t(item, "pending_since"),
            last_read_at: get_t(item, "last_read_at"),
            cohort: get_s(item, "cohort"),
            disabled_at: get_t(item, "disabled_at"),
            disabled_run: get_s(item, "disabled_run"),
            reminded_for: get_t(item, "reminded_for"),
            ..Known::default()
        },
    ))
}

/// An invitation item as stored.
pub(super) fn stored_invitation(item: &Item) -> Option<StoredInvitation> {
    Some(StoredInvitation {
        id: get_n(item, "id")?,
        kind: InviteKind::parse(&get_s(item, "kind")?),
        medium: Delivery::parse(&get_s(item, "medium")?).unwrap_or(Delivery::Email),
        intent_at: get_t(item, "intent_at")?,
        outcome: get_s(item, "outcome")?,
        sent_at: get_t(item, "sent_at"),
        password_recorded: get_bool(item, "password_recorded").unwrap_or(false),
        run_id: get_s(item, "run_id").unwrap_or_default(),
    })
}

/// Columns the SQLite schema keeps as 0 or 1, and as lines of text, that an item holds as a
/// boolean and as a list.
const BOOLEAN_COLUMNS: [&str; 3] = ["invited", "last_enabled", "password_recorded"];
const LIST_COLUMNS: [&str; 3] = ["groups_done", "last_written", "changes"];
/// Attributes that belong to the table's own workings, not to the state's contents.
const WORKINGS: [&str; 6] = ["pk", "sk", "expires", "inviting", "slot", "holder"];

/// A record of the SQLite schema as an item.
pub(super) fn to_item(r: &Record) -> Option<Item> {
    let text = |name: &str| match r.values.get(name) {
        Some(Value::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let int = |name: &str| match r.values.get(name) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    };
    let pool = text("pool_id")?;
    let (pk, sk, skip): (String, String, &[&str]) = match r.table {
        "runs" => (
            runs_pk(&pool),
            run_sk(int("started_at")?, &text("run_id")?),
            &[],
        ),
        "users" => (pool_pk(&pool), user_sk(&text("key")?), &["pool_id", "key"]),
        "invitations" => (pool_pk(&pool), id_sk('I', int("id")?), &["pool_id"]),
        "updates" => (pool_pk(&pool), id_sk('W', int("id")?), &["pool_id"]),
        "transitions" => (pool_pk(&pool), id_sk('T', int("id")?), &["pool_id"]),
        _ => return None,
    };
    let mut item: Item = [("pk".to_string(), s(&pk)), ("sk".to_string(), s(&sk))].into();
    for (name, v) in &r.values {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let av = match v {
            Value::Int(i) if BOOLEAN_COLUMNS.contains(&name.as_str()) => Av::Bool(*i != 0),
            Value::Text(t) if LIST_COLUMNS.contains(&name.as_str()) => {
                Av::L(t.split('\n').filter(|l| !l.is_empty()).map(s).collect())
            }
            Value::Int(i) => n(*i),
            Value::Text(t) => s(t),
        };
        item.insert(name.clone(), av);
    }
    if r.table == "runs" {
        let started = from_ms(int("started_at")?)?;
        item.insert("expires".into(), expires(started, RUN_TTL_DAYS));
    }
    Some(item)
}

/// An item as a record of the SQLite schema; `None` for the lease and the ledger, which are
/// the table's own.
pub(super) fn from_item(item: &Item) -> Option<Record> {
    let pk = get_s(item, "pk")?;
    let sk = get_s(item, "sk")?;
    let mut values = BTreeMap::new();
    let table = if let Some(pool) = pk.strip_prefix("R#") {
        values.insert("pool_id".to_string(), Value::Text(pool.to_string()));
        "runs"
    } else if let Some(pool) = pk.strip_prefix("P#") {
        values.insert("pool_id".to_string(), Value::Text(pool.to_string()));
        let (table, rest) = match sk.split_once('#')? {
            ("U", key) => ("users", key),
            ("I", id) => ("invitations", id),
            ("W", id) => ("updates", id),
            ("T", id) => ("transitions", id),
            _ => return None,
        };
        if table == "users" {
            values.insert("key".to_string(), Value::Text(rest.to_string()));
        } else {
            values.insert("id".to_string(), Value::Int(rest.parse().ok()?));
        }
        table
    } else {
        return None;
    };
    for (name, av) in item {
        if WORKINGS.contains(&name.as_str()) || values.contains_key(name) {
            continue;
        }
        let v = match av {
            Av::Bool(b) => Value::Int(i64::from(*b)),
            Av::L(l) => Value::Text(
                l.iter()
                    .filter_map(|v| v.as_s().ok().cloned())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Av::N(v) => Value::Int(v.parse().ok()?),
            Av::S(v) => Value::Text(v.clone()),
            _ => continue,
        };
        values.insert(name.clone(), v);
    }
    Some(Record { table, values })
}

/// Where a record goes in an export: ids and start times order each table as SQLite's rowids
/// did, and the tables go in the order they are moved.
pub(super) fn record_order(r: &Record) -> (Option<usize>, i64) {
    let t = TABLES.iter().position(|t| *t == r.table);
    let at = match r.values.get(if r.table == "runs" {
        "started_at"
    } else {
        "id"
    }) {
        Some(Value::Int(i)) => *i,
        _ => 0,
    };
    (t, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, 0, 0).unwrap()
    }

    fn record(table: &'static str, values: &[(&str, Value)]) -> Record {
        Record {
            table,
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn text(v: &str) -> Value {
        Value::Text(v.to_string())
    }

    #[test]
    fn keys_sort_as_the_header_says() {
        assert_eq!(pool_pk("eu-west-1_a"), "P#eu-west-1_a");
        assert_eq!(user_sk("a@x"), "U#a@x");
        assert_eq!(id_sk('I', 42), "I#0000000000000000042");
        assert_eq!(runs_pk("p"), "R#p");
        assert_eq!(run_sk(1_700_000_000_000, "r1"), "1700000000000#r1");
        assert_eq!(ledger_pk("email:cognito:1"), "M#email:cognito:1");
        assert_eq!(ledger_sk(5, 7), "0000000000005#0000000000000000007");
        assert_eq!(
            slot_key("sms:1", 3),
            (s("B#sms:1"), s("S#00003")),
            "a sender's slots share its partition"
        );
        assert_eq!(slot_of("S#00003"), Some(3));
        assert_eq!(slot_of("X#00003"), None);
        // Zero-padded: text order is number order, whatever the number of digits.
        assert!(id_sk('I', 9) < id_sk('I', 10));
        assert!(run_sk(999, "z") < run_sk(1000, "a"));
        assert!(ledger_sk(999, 5) < ledger_sk(1000, 1));
    }

    #[test]
    fn the_ledger_after_a_time_starts_at_its_next_millisecond() {
        let since = 1_000;
        assert!(
            ledger_sk(since, i64::MAX) < ledger_after(since),
            "at `since`: not after"
        );
        assert!(ledger_sk(since + 1, 0) > ledger_after(since));
    }

    #[test]
    fn ids_order_by_time_before_their_random_part() {
        assert!(id_at(1_001, 0) > id_at(1_000, 999_999));
        assert_eq!(
            id_at(1_000, 5) / 1_000_000,
            1_000,
            "the time is the id's millions"
        );
        let id = new_id(at(1));
        assert_eq!(id / 1_000_000, ms(at(1)));
        assert!(new_id(at(2)) > id);
    }

    #[test]
    fn an_expiry_is_in_epoch_seconds() {
        assert_eq!(
            expires(at(0), 3),
            n((at(0) + chrono::Duration::days(3)).timestamp())
        );
        let entry = ledger_item("sms:1", ms(at(1)), 9, "p");
        assert_eq!(
            get_n(&entry, "expires"),
            Some(at(1).timestamp() + 3 * 86_400)
        );
        assert_eq!(get_s(&entry, "pk").as_deref(), Some("M#sms:1"));
        assert_eq!(get_s(&entry, "pool_id").as_deref(), Some("p"));
    }

    #[test]
    fn a_user_item_reads_as_what_is_known_and_other_items_do_not() {
        let item = item_of([
            ("pk", s("P#p")),
            ("sk", s("U#a@x")),
            ("username", s("u")),
            ("invited", Av::Bool(true)),
            ("groups_done", list(&["g1".into(), "g2".into()])),
            ("last_status", s("CONFIRMED")),
            ("confirmed_at", n(ms(at(3)))),
        ]);
        let (key, known) = known_of(&item).unwrap();
        assert_eq!(key, "a@x");
        assert_eq!(known.username.as_deref(), Some("u"));
        assert!(known.invited);
        assert_eq!(known.groups_done, ["g1", "g2"]);
        assert_eq!(known.last_status, Some(UserStatus::Confirmed));
        assert_eq!(known.confirmed_at, Some(at(3)));
        assert_eq!(known.last_enabled, None);
        let mut invitation = item.clone();
        invitation.insert("sk".into(), s(&id_sk('I', 1)));
        assert!(known_of(&invitation).is_none());
    }

    #[test]
    fn an_intents_items_read_back_as_what_they_record() {
        let request = IntentRequest {
            kind: InviteKind::Resend,
            medium: Delivery::Sms,
            counted: None,
            run_id: "r1",
            at: at(2),
        };
        let item = invitation_item("P#p", 77, "a@x", &request, Some("sms:1"), "host:1:ab");
        let stored = stored_invitation(&item).unwrap();
        assert_eq!(
            (stored.id, stored.kind, stored.medium, stored.intent_at),
            (77, InviteKind::Resend, Delivery::Sms, at(2))
        );
        assert_eq!((stored.outcome.as_str(), stored.sent_at), ("pending", None));
        assert!(!stored.password_recorded);
        assert_eq!(get_s(&item, "sender").as_deref(), Some("sms:1"));
        assert_eq!(get_s(&item, "holder").as_deref(), Some("host:1:ab"));
        let uncounted = invitation_item("P#p", 78, "a@x", &request, None, "h");
        assert!(!uncounted.contains_key("sender"));

        let changes = ["name".to_string(), "+pilot".to_string()];
        let update = UpdateIntent {
            changes: &changes,
            run_id: "r1",
            at: at(3),
        };
        let item = update_item("p", 79, "a@x", &update);
        assert_eq!(get_s(&item, "sk").as_deref(), Some("W#0000000000000000079"));
        assert_eq!(get_list(&item, "changes"), changes);
        assert_eq!(get_s(&item, "outcome").as_deref(), Some("pending"));
    }

    #[test]
    fn a_runs_item_carries_its_input_and_its_expiry() {
        let path = std::path::Path::new("/in/p.csv");
        let run = RunStart {
            run_id: "r1",
            pool: "p",
            command: "run",
            input: Some((path, "abc")),
            at: at(1),
        };
        let (item, (pk, sk)) = run_item(&run);
        assert_eq!((pk.as_str(), sk), ("R#p", run_sk(ms(at(1)), "r1")));
        assert_eq!(get_s(&item, "input_path").as_deref(), Some("/in/p.csv"));
        assert_eq!(get_s(&item, "input_sha256").as_deref(), Some("abc"));
        assert_eq!(
            get_n(&item, "expires"),
            Some((at(1) + chrono::Duration::days(RUN_TTL_DAYS)).timestamp())
        );
        let back = from_item(&item).unwrap();
        assert_eq!(back.table, "runs");
        assert_eq!(back.values["started_at"], Value::Int(ms(at(1))));
        assert!(!back.values.contains_key("expires"), "the table's own");
    }

    #[test]
    fn records_of_every_table_survive_the_trip_through_an_item() {
        let records = [
            record(
                "users",
                &[
                    ("pool_id", text("p")),
                    ("key", text("a@x")),
                    ("invited", Value::Int(1)),
                    ("last_enabled", Value::Int(0)),
                    ("groups_done", text("g1\ng2")),
                    ("last_written", text("name")),
                    ("confirmed_at", Value::Int(5)),
                ],
            ),
            record(
                "invitations",
                &[
                    ("pool_id", text("p")),
                    ("id", Value::Int(12)),
                    ("key", text("a@x")),
                    ("password_recorded", Value::Int(1)),
                    ("sender", text("email:cognito:1")),
                ],
            ),
            record(
                "updates",
                &[
                    ("pool_id", text("p")),
                    ("id", Value::Int(13)),
                    ("changes", text("name\n+pilot")),
                ],
            ),
            record(
                "transitions",
                &[
                    ("pool_id", text("p")),
                    ("id", Value::Int(14)),
                    ("to_status", text("CONFIRMED")),
                ],
            ),
            record(
                "runs",
                &[
                    ("pool_id", text("p")),
                    ("run_id", text("r1")),
                    ("started_at", Value::Int(ms(at(1)))),
                    ("exit_code", Value::Int(0)),
                ],
            ),
        ];
        for r in &records {
            let item = to_item(r).unwrap_or_else(|| panic!("{r:?}"));
            assert_eq!(from_item(&item).as_ref(), Some(r));
        }
        let user = to_item(&records[0]).unwrap();
        assert_eq!(user["invited"], Av::Bool(true), "0 or 1 is a boolean");
        assert_eq!(
            get_list(&user, "groups_done"),
            ["g1", "g2"],
            "lines are a list"
        );
        assert!(!user.contains_key("key"), "the key is in the sort key");
    }

    #[test]
    fn the_tables_workings_and_foreign_items_are_no_records() {
        let mut item = item_of([
            ("pk", s("P#p")),
            ("sk", s(&id_sk('I', 5))),
            ("id", n(5)),
            ("inviting", n(5)),
            ("slot", n(2)),
            ("holder", s("h")),
        ]);
        let r = from_item(&item).unwrap();
        assert_eq!(r.values.keys().collect::<Vec<_>>(), ["id", "pool_id"]);
        item.insert("sk".into(), s("X#5"));
        assert!(from_item(&item).is_none(), "no table has an X");
        for (pk, sk) in [(LOCK, LOCK), ("M#sms:1", "x"), ("B#sms:1", "S#00001")] {
            assert!(from_item(&item_of([("pk", s(pk)), ("sk", s(sk))])).is_none());
        }
        assert!(to_item(&record("notes", &[("pool_id", text("p"))])).is_none());
    }

    #[test]
    fn an_export_orders_tables_as_they_move_and_rows_by_id_or_start() {
        let mut records = [
            record("transitions", &[("id", Value::Int(1))]),
            record("users", &[("key", text("b"))]),
            record("invitations", &[("id", Value::Int(9))]),
            record("invitations", &[("id", Value::Int(3))]),
            record("runs", &[("started_at", Value::Int(20))]),
            record("runs", &[("started_at", Value::Int(10))]),
        ];
        records.sort_by_key(record_order);
        let order: Vec<(&str, i64)> = records
            .iter()
            .map(|r| (r.table, record_order(r).1))
            .collect();
        assert_eq!(
            order,
            [
                ("runs", 10),
                ("runs", 20),
                ("users", 0),
                ("invitations", 3),
                ("invitations", 9),
                ("transitions", 1)
            ]
        );
    }
}
