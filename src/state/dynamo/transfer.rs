//! `state export` and `state import` on the table's side: every record of the state read out
//! (not the lease, not the ledger, which are the table's own), and records written into a
//! table that holds no state yet, with the ledger entries and budget slots of the last days'
//! messages, so that the budget carries over. Must never write into a table that holds a state.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Dynamo;
use super::client::{batch_put, sdk_error};
use super::items::{
    Item, LEDGER_TTL_DAYS, LOCK, from_item, get_s, item_of, ledger_item, ms, n, record_order,
    slot_key, to_item,
};
use crate::cognito::Delivery;
use crate::error::Error;
use crate::state::{DYNAMODB_SCHEME, Record, Value};

impl Dynamo {
    /// Every record of the state (not the lease, not the ledger), for `state export`.
    pub(crate) fn dump(&self) -> Result<Vec<Record>, Error> {
        self.flush()?;
        let (c, t) = (self.client.clone(), self.table.clone());
        let items: Vec<Item> = self
            .wait(async move {
                c.all(c.scan().table_name(t).consistent_read(true))
                    .await
                    .map_err(|e| sdk_error("cannot read the state table", &e))
            })
            .map_err(Error::State)?;
        let mut records: Vec<Record> = items.iter().filter_map(from_item).collect();
        records.sort_by_key(record_order);
        Ok(records)
    }

    /// Writes `records` into this table, which must hold no state yet, with a ledger entry for
    /// each message-sending invitation of the last days, so the budget carries over.
    pub(crate) fn load(&self, records: &[Record]) -> Result<(), Error> {
        if self.holds_state()? {
            return Err(Error::Config(format!(
                "{DYNAMODB_SCHEME}{} already holds a state: import only into a new table (state \
                 init)",
                self.table
            )));
        }
        let mut items: Vec<Item> = records.iter().filter_map(to_item).collect();
        items.extend(carried_budget(records, Utc::now()));
        let (c, t) = (self.client.clone(), self.table.clone());
        self.wait(async move { batch_put(&c, &t, items).await })
            .map_err(Error::State)
    }

    /// Whether the table holds anything but a lease: an import goes only into a new table.
    fn holds_state(&self) -> Result<bool, Error> {
        let (c, t) = (self.client.clone(), self.table.clone());
        self.wait(async move {
            c.call(c.scan().table_name(t).limit(2))
                .await
                .map(|o| {
                    o.items()
                        .iter()
                        .any(|i| get_s(i, "pk").as_deref() != Some(LOCK))
                })
                .map_err(|e| sdk_error("cannot read the state table", &e))
        })
        .map_err(Error::State)
    }
}

/// The ledger entries of the message-sending invitations among `records` of the last days (the
/// ledger's life), and the slots the last 24 hours' messages took, per sender, so that the
/// budget's conditional claims carry over as its count does.
fn carried_budget(records: &[Record], now: DateTime<Utc>) -> Vec<Item> {
    let recent = ms(now - chrono::Duration::days(LEDGER_TTL_DAYS));
    let day_ago = ms(now - chrono::Duration::hours(24));
    let mut items = Vec::new();
    let mut slots: HashMap<String, u32> = HashMap::new();
    for r in records.iter().filter(|r| r.table == "invitations") {
        let text = |name: &str| match r.values.get(name) {
            Some(Value::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let int = |name: &str| match r.values.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        let medium = Delivery::parse(&text("medium")).unwrap_or(Delivery::Email);
        let at = int("sent_at").or(int("intent_at")).unwrap_or(0);
        let sender = Some(text("sender"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| medium.as_str().to_string());
        if medium.sends_message()
            && ["create", "resend"].contains(&text("kind").as_str())
            && ["sent", "pending", "undelivered"].contains(&text("outcome").as_str())
            && at > recent
            && let Some(id) = int("id")
        {
            if at > day_ago {
                let slot = slots.entry(sender.clone()).or_default();
                let (pk, sk) = slot_key(&sender, (*slot).into());
                items.push(item_of([
                    ("pk", pk),
                    ("sk", sk),
                    ("used_at", n(at)),
                    ("id", n(id)),
                ]));
                *slot += 1;
            }
            items.push(ledger_item(&sender, at, id, &text("pool_id")));
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::super::items::{get_n, s};
    use super::*;

    fn invitation(id: i64, at: DateTime<Utc>, fields: &[(&str, &str)]) -> Record {
        let mut values: std::collections::BTreeMap<String, Value> = [
            ("id", Value::Int(id)),
            ("pool_id", Value::Text("p".into())),
            ("kind", Value::Text("create".into())),
            ("medium", Value::Text("email".into())),
            ("outcome", Value::Text("sent".into())),
            ("sent_at", Value::Int(ms(at))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in fields {
            values.insert(k.to_string(), Value::Text(v.to_string()));
        }
        Record {
            table: "invitations",
            values,
        }
    }

    #[test]
    fn the_days_messages_carry_their_slots_and_the_last_days_their_ledger() {
        let now = Utc::now();
        let hours = |h: i64| now - chrono::Duration::hours(h);
        let records = [
            invitation(1, hours(1), &[("sender", "email:cognito:1")]),
            invitation(2, hours(2), &[("sender", "email:cognito:1")]),
            // Two days ago: in the ledger (3 days), no longer in the budget's 24 hours.
            invitation(3, hours(48), &[("sender", "email:cognito:1")]),
            // Older than the ledger keeps.
            invitation(4, hours(24 * 4), &[("sender", "email:cognito:1")]),
            // No sender recorded: its medium's.
            invitation(5, hours(3), &[("medium", "sms")]),
            invitation(6, hours(1), &[("outcome", "failed")]),
            invitation(7, hours(1), &[("medium", "suppress")]),
            invitation(8, hours(1), &[("kind", "set_password")]),
        ];
        let items = carried_budget(&records, now);
        let keys: Vec<(String, String)> = items
            .iter()
            .map(|i| (get_s(i, "pk").unwrap(), get_s(i, "sk").unwrap()))
            .collect();
        let pks: Vec<&str> = keys.iter().map(|(pk, _)| pk.as_str()).collect();
        assert_eq!(
            pks,
            [
                "B#email:cognito:1",
                "M#email:cognito:1",
                "B#email:cognito:1",
                "M#email:cognito:1",
                "M#email:cognito:1",
                "B#sms",
                "M#sms",
            ]
        );
        assert_eq!(keys[0].1, "S#00000");
        assert_eq!(keys[2].1, "S#00001", "a sender's slots are taken in turn");
        assert_eq!(keys[5].1, "S#00000", "each sender has slots of its own");
        assert_eq!(items[0]["used_at"], n(ms(hours(1))));
        assert_eq!(get_n(&items[1], "id"), Some(1));
        assert_eq!(items[1]["pool_id"], s("p"));
        let other = Record {
            table: "users",
            values: Default::default(),
        };
        assert!(carried_budget(&[other], now).is_empty());
    }
}
