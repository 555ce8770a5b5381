//! Invitations written ahead and settled, on a shared table: an intent, its user's mark and,
//! when it sends a message, its ledger entry and a share (slot) of the sender's budget, in one
//! transaction, so that two machines never both invite one provider nor both spend the last
//! share; a settle that says what became of it, giving the share back when nothing was sent;
//! and `run --update`'s intents. Must not decide whether to invite (that is `plan`), and must
//! not keep a share for a message that certainly did not go out.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue as Av, Put, ReturnValue, TransactWriteItem, Update};
use aws_smithy_runtime_api::http::Response;
use chrono::{DateTime, Utc};

use super::client::{conditional_failed, query, read_item, sdk_error};
use super::items::{
    Item, get_n, get_s, id_sk, invitation_item, ledger_item, ledger_pk, ledger_sk, ms, n, new_id,
    pool_pk, s, slot_key, slot_of, slots_pk, update_item, user_sk,
};
use super::lease::{alive, lock_of};
use super::{Dynamo, lock};
use crate::cognito::UserStatus;
use crate::error::Error;
use crate::state::paced::{Answer, Db, busy_code};
use crate::state::{
    IntentAnswer, IntentRequest, Invited, Observation, Subject, UpdateIntent, UpdateOutcome,
};

/// How many times an intent's transaction is tried when a slot or a stale mark changed under
/// it (throttling and conflicts are the executor's to retry, within each try).
const TURNS: u32 = 8;

impl Dynamo {
    /// Notes which pool and user an intent belongs to, for its settle.
    pub(super) fn remember(&self, id: i64, pool_id: &str, key: &str) {
        lock(&self.pools).insert(id, (pool_id.to_string(), key.to_string()));
    }

    fn pool_of(&self, id: i64) -> Option<(String, String)> {
        lock(&self.pools).get(&id).cloned()
    }

    /// The intent and, when it sends a message, its ledger entry, in one transaction that
    /// also marks the user as being invited: it fails if another machine is inviting the same
    /// user right now, so two machines never both send one invitation. Under a `limit`, the
    /// transaction also claims one of its slots (a slot is free when unused for 24 hours), so
    /// two machines never both spend the last share: [`IntentAnswer::BudgetSpent`] when none is
    /// free.
    pub async fn intent(
        &self,
        who: Subject<'_>,
        request: IntentRequest<'_>,
    ) -> Result<IntentAnswer, Error> {
        if !self.writable {
            return Ok(IntentAnswer::NotRecorded);
        }
        let id = new_id(request.at);
        self.remember(id, who.pool, who.key);
        let pk = pool_pk(who.pool);
        // `State::intent` passes `counted` only for an invitation that sends a message: where
        // its message is counted, the sender's ledger and slots.
        let sender = request.counted.map(|c| c.sender.to_string());
        let slots = request.counted.and_then(|c| c.limit).map(|limit| {
            let sender = sender.as_deref().unwrap_or(request.medium.as_str());
            (sender.to_string(), limit)
        });
        let tx = IntentTx {
            c: self.client.clone(),
            t: self.table.clone(),
            invitation: invitation_item(
                &pk,
                id,
                who.key,
                &request,
                sender.as_deref(),
                &self.holder,
            ),
            ledger: sender
                .as_deref()
                .map(|sender| ledger_item(sender, ms(request.at), id, who.pool)),
            slots,
            pk,
            key: who.key.to_string(),
            id,
            at: request.at,
            me: self.holder.clone(),
        };
        self.write_ahead(who.key, tx.run()).await
    }

    /// Updates an invitation item; `clear`: also clears the user's open intent (unless the
    /// caller's own write to the user does).
    fn settle_invitation_as(
        &self,
        id: i64,
        set: &'static str,
        values: Vec<(&'static str, Av)>,
        clear: bool,
    ) {
        let Some((pool_id, key)) = self.pool_of(id) else {
            tracing::warn!("an intent {id} this state never recorded was settled");
            return;
        };
        let (c, t) = (self.client.clone(), self.table.clone());
        let pk = pool_pk(&pool_id);
        self.settle(&key.clone(), async move {
            let mut u = c
                .update_item()
                .table_name(&t)
                .key("pk", s(&pk))
                .key("sk", s(&id_sk('I', id)))
                .update_expression(set)
                .return_values(ReturnValue::AllNew);
            for (k, v) in values {
                u = u.expression_attribute_values(k, v);
            }
            let out = c
                .call(u)
                .await
                .map_err(|e| sdk_error("cannot settle an invitation", &e))?;
            if let Some(unsent) = unsent_message(out.attributes().unwrap_or(&HashMap::new())) {
                return_to_budget(&c, &t, id, unsent).await?;
            }
            // Last: a mark left by a failure above is found stale by the next intent.
            if clear {
                clear_inviting(&c, &t, &pk, &key, id).await?;
            }
            Ok(())
        });
    }

    /// Updates an invitation and clears the user's open intent.
    fn settle_invitation(&self, id: i64, set: &'static str, values: Vec<(&'static str, Av)>) {
        self.settle_invitation_as(id, set, values, true);
    }

    pub fn settle_intent(
        &self,
        id: i64,
        sent_at: Option<DateTime<Utc>>,
        password_recorded: bool,
    ) -> Result<(), Error> {
        match sent_at {
            Some(at) => self.settle_invitation(
                id,
                "SET outcome = :o, sent_at = :t",
                vec![(":o", s("sent")), (":t", n(ms(at)))],
            ),
            None => self.settle_invitation(id, "SET outcome = :o", vec![(":o", s("failed"))]),
        }
        if password_recorded {
            self.password_recorded(id)?;
        }
        Ok(())
    }

    pub fn settle_undelivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        self.settle_invitation(
            id,
            "SET outcome = :o, sent_at = :t",
            vec![(":o", s("undelivered")), (":t", n(ms(at)))],
        );
        Ok(())
    }

    pub fn invitation_sent(&self, who: Subject<'_>, sent: Invited<'_>) -> Result<(), Error> {
        // Three calls, not five: the user's one update marks it invited, records its status
        // and clears the intent this run holds on it.
        if let Some(id) = sent.intent {
            self.settle_invitation_as(
                id,
                "SET outcome = :o, sent_at = :t",
                vec![(":o", s("sent")), (":t", n(ms(sent.at)))],
                false,
            );
        }
        let seen = Observation {
            username: Some(sent.username),
            email: Some(sent.email),
            status: Some(&UserStatus::ForceChangePassword),
            enabled: Some(true),
            run_id: sent.run_id,
            at: sent.at,
        };
        self.record_status(who, &seen, true);
        Ok(())
    }

    pub async fn update_intent(
        &self,
        who: Subject<'_>,
        update: UpdateIntent<'_>,
    ) -> Result<Option<i64>, Error> {
        if !self.writable {
            return Ok(None);
        }
        let id = new_id(update.at);
        self.remember(id, who.pool, who.key);
        let item = update_item(who.pool, id, who.key, &update);
        let (c, t) = (self.client.clone(), self.table.clone());
        self.write_ahead(who.key, async move {
            c.call(c.put_item().table_name(t).set_item(Some(item)))
                .await
                .map(|_| Some(id))
                .map_err(|e| {
                    Error::State(sdk_error("cannot record the update ahead of its calls", &e))
                })
        })
        .await
    }

    pub fn settle_update(
        &self,
        id: i64,
        outcome: UpdateOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let Some((pool_id, key)) = self.pool_of(id) else {
            return Ok(());
        };
        let (c, t) = (self.client.clone(), self.table.clone());
        self.settle(&key, async move {
            c.call(
                c.update_item()
                    .table_name(t)
                    .key("pk", s(&pool_pk(&pool_id)))
                    .key("sk", s(&id_sk('W', id)))
                    .update_expression("SET outcome = :o, done_at = :t")
                    .expression_attribute_values(":o", s(outcome.as_str()))
                    .expression_attribute_values(":t", n(ms(at))),
            )
            .await
            .map(drop)
            .map_err(|e| sdk_error("cannot settle an update", &e))
        });
        Ok(())
    }

    /// Marks the password recorded, the password file synced first.
    pub fn password_recorded(&self, id: i64) -> Result<(), Error> {
        let Some((pool_id, key)) = self.pool_of(id) else {
            return Ok(());
        };
        let (c, t, files) = (
            self.client.clone(),
            self.table.clone(),
            self.sync_first.clone(),
        );
        self.settle(&key, async move {
            let files: Vec<_> = lock(&files).clone();
            for f in files {
                // Off the state's one worker: a sync must not hold up the lanes or the lease.
                tokio::task::spawn_blocking(move || f.sync())
                    .await
                    .map_err(|e| format!("cannot sync a file before the state write: {e}"))?
                    .map_err(|e| format!("cannot sync a file before the state write: {e}"))?;
            }
            c.call(
                c.update_item()
                    .table_name(t)
                    .key("pk", s(&pool_pk(&pool_id)))
                    .key("sk", s(&id_sk('I', id)))
                    .update_expression("SET password_recorded = :r")
                    .expression_attribute_values(":r", Av::Bool(true)),
            )
            .await
            .map(drop)
            .map_err(|e| sdk_error("cannot mark a password recorded", &e))
        });
        Ok(())
    }
}

/// One intent's transaction, owned, to be tried from the user's lane until it is on record or
/// refused.
struct IntentTx {
    c: Db,
    t: String,
    pk: String,
    key: String,
    id: i64,
    at: DateTime<Utc>,
    /// The pending invitation item.
    invitation: Item,
    /// Its entry in the sender's ledger, when its message is counted.
    ledger: Option<Item>,
    /// The sender whose slots it claims one of, and how many there are, under a limit.
    slots: Option<(String, u32)>,
    /// Who writes it: this process's lease holder, or `desk:…`.
    me: String,
}

/// What a refused transaction leads to.
enum Refused {
    /// The row's answer: on record after all, or deferred.
    Answer(IntentAnswer),
    /// The user's mark is a settled or dead intent's (`Some`), or gone (`None`): try again
    /// over it.
    Marked(Option<i64>),
    /// Another machine took the slot between the read and the write: pick another.
    SlotTaken,
}

impl IntentTx {
    /// Tries the transaction until it is on record or refused for a reason of the row's.
    async fn run(self) -> Result<IntentAnswer, Error> {
        // A slot another machine took between our read and our write, or a marker found
        // stale: read again and try again. (Throttling and conflicts are the executor's.)
        let mut stale = None;
        for turn in 0..TURNS {
            let slot = match &self.slots {
                None => None,
                Some((sender, limit)) => {
                    match free_slot(&self.c, &self.t, sender, *limit, self.at).await? {
                        Some(slot) => Some(slot),
                        None => {
                            return Ok(IntentAnswer::BudgetSpent(format!(
                                "all {limit} shares of {sender} in the last 24 hours are taken"
                            )));
                        }
                    }
                }
            };
            let failed = match self.commit(turn, slot, stale).await {
                Ok(_) => return Ok(IntentAnswer::Written(self.id)),
                Err(e) => e,
            };
            match self.refused(&failed, slot.is_some()).await? {
                Refused::Answer(answer) => return Ok(answer),
                Refused::Marked(mark) => stale = mark,
                Refused::SlotTaken => {}
            }
        }
        Ok(IntentAnswer::Busy(format!(
            "the state kept refusing the intent for {} (other machines writing the same items); \
             nothing was sent",
            self.key
        )))
    }

    /// One turn's transaction: the slot's claim (when there is one), the invitation, the
    /// user's mark over `stale`, the ledger entry, in that order ([`cancelled`] reads its
    /// reasons by it).
    async fn commit(
        &self,
        turn: u32,
        slot: Option<u32>,
        stale: Option<i64>,
    ) -> Answer<TransactWriteItemsFluentBuilder> {
        let mut invitation = self.invitation.clone();
        let mut items = Vec::new();
        if let (Some(slot), Some((sender, _))) = (slot, &self.slots) {
            invitation.insert("slot".into(), n(slot.into()));
            items.push(claim(&self.t, sender, slot, self.id, self.at));
        }
        items.push(put(&self.t, invitation));
        items.push(inviting(&self.t, &self.pk, &self.key, self.id, stale));
        if let Some(ledger) = &self.ledger {
            items.push(put(&self.t, ledger.clone()));
        }
        // One token a turn, so a retry of an attempt that committed unseen is answered as the
        // success it was (the SDK sets a token per call, and each attempt is a call here); a
        // new turn has new items, and so a new token.
        self.c
            .call(
                self.c
                    .transact_write_items()
                    .set_transact_items(Some(items))
                    .client_request_token(format!("{}-{turn}", self.id)),
            )
            .await
    }

    /// Why the transaction was refused, and what that makes of the row.
    async fn refused(
        &self,
        failed: &SdkError<TransactWriteItemsError, Response>,
        slotted: bool,
    ) -> Result<Refused, Error> {
        let reasons = reasons_of(failed);
        match cancelled(&reasons, slotted) {
            Cancelled::Marked => return self.marked().await,
            Cancelled::SlotTaken => return Ok(Refused::SlotTaken),
            Cancelled::Otherwise => {}
        }
        // Still throttled or conflicting after the executor's attempts: nothing was written,
        // so the row waits for a later run rather than stopping this one. An earlier attempt
        // may have committed unseen before the ones that failed.
        if matches!(marker(&self.c, &self.t, &self.pk, &self.key).await, Ok(Some((old, ..))) if old == self.id)
        {
            return Ok(Refused::Answer(IntentAnswer::Written(self.id)));
        }
        let given: Vec<&str> = reasons.iter().map(String::as_str).collect();
        if busy_code(&given).is_some() {
            return Ok(Refused::Answer(IntentAnswer::Busy(format!(
                "the state table stayed busy for {} ({}); nothing was sent",
                self.key,
                given.join(", ")
            ))));
        }
        Err(Error::State(sdk_error(
            "cannot record the invitation ahead of its call",
            failed,
        )))
    }

    /// The user is marked: by a live intent (another machine is inviting them now), or by one
    /// whose settle never cleared the mark. Read only here: a conflict is rare, and an intent
    /// is on the hot path.
    async fn marked(&self) -> Result<Refused, Error> {
        let holder_now = lock_of(&self.c, &self.t).await.map_err(Error::State)?;
        Ok(match marker(&self.c, &self.t, &self.pk, &self.key).await? {
            // Our own mark: an attempt of this intent committed and its answer was lost (a
            // retry that an expired or unhonoured client token could not answer as the
            // success it was). Atomic, so its slot and ledger are in.
            Some((old, ..)) if old == self.id => Refused::Answer(IntentAnswer::Written(self.id)),
            Some((old, holder, intent_at, pending))
                if pending && alive(&holder, intent_at, &holder_now, &self.me) =>
            {
                Refused::Answer(IntentAnswer::Busy(format!(
                    "intent {old} of {holder} is open for {}; nothing was sent",
                    self.key
                )))
            }
            Some((old, ..)) => Refused::Marked(Some(old)),
            None => Refused::Marked(None),
        })
    }
}

/// Which of an intent's conditions failed.
#[derive(Debug, PartialEq, Eq)]
enum Cancelled {
    /// The user's mark: another intent holds it.
    Marked,
    /// The slot's claim: another machine took the slot.
    SlotTaken,
    /// No condition of ours (throttling, a conflict, a fault).
    Otherwise,
}

/// Which condition failed, from a cancelled transaction's reasons: one per item, in the order
/// [`IntentTx::commit`] puts them (the slot's claim first when `slotted`, then the invitation,
/// then the user's mark).
fn cancelled(reasons: &[String], slotted: bool) -> Cancelled {
    let condition = |i: usize| reasons.get(i).map(String::as_str) == Some("ConditionalCheckFailed");
    let offset = usize::from(slotted);
    if condition(offset + 1) {
        Cancelled::Marked
    } else if slotted && condition(0) {
        Cancelled::SlotTaken
    } else {
        Cancelled::Otherwise
    }
}

/// A cancelled transaction's reasons, item by item (`None` for an item that was fine); none
/// for any other failure.
fn reasons_of(failed: &SdkError<TransactWriteItemsError, Response>) -> Vec<String> {
    match failed.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(x)) => x
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None").to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// `item`, put as one item of a transaction.
fn put(t: &str, item: Item) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(t)
                .set_item(Some(item))
                .build()
                .expect("table and item are set"),
        )
        .build()
}

/// The user's mark for intent `id`: set if there is none, or if it is `stale` (a settled or
/// dead intent's, whose settle never cleared it).
fn inviting(t: &str, pk: &str, key: &str, id: i64, stale: Option<i64>) -> TransactWriteItem {
    let u = Update::builder()
        .table_name(t)
        .key("pk", s(pk))
        .key("sk", s(&user_sk(key)))
        .update_expression("SET inviting = :id")
        .expression_attribute_values(":id", n(id));
    let u = match stale {
        None => u.condition_expression("attribute_not_exists(inviting)"),
        Some(old) => u
            .condition_expression("inviting = :stale")
            .expression_attribute_values(":stale", n(old)),
    };
    TransactWriteItem::builder()
        .update(u.build().expect("table, key and expression are set"))
        .build()
}

/// The budget's slot `slot` of `sender`, as one transaction item: taken for `id` at `at` if it
/// is free (never used, or used 24 hours ago or more).
fn claim(t: &str, sender: &str, slot: u32, id: i64, at: DateTime<Utc>) -> TransactWriteItem {
    let (pk, sk) = slot_key(sender, slot.into());
    TransactWriteItem::builder()
        .update(
            Update::builder()
                .table_name(t)
                .key("pk", pk)
                .key("sk", sk)
                .update_expression("SET used_at = :at, id = :id")
                .condition_expression("attribute_not_exists(used_at) OR used_at <= :cutoff")
                .expression_attribute_values(":at", n(ms(at)))
                .expression_attribute_values(":id", n(id))
                .expression_attribute_values(":cutoff", n(ms(at - chrono::Duration::hours(24))))
                .build()
                .expect("table, key and expression are set"),
        )
        .build()
}

/// A free slot of the first `limit` of `sender`'s, picked at random so that machines claiming
/// at once rarely pick the same; `None` when every one was used in the last 24 hours.
async fn free_slot(
    c: &Db,
    t: &str,
    sender: &str,
    limit: u32,
    at: DateTime<Utc>,
) -> Result<Option<u32>, Error> {
    let used = query(c, t, slots_pk(sender), "S#", true)
        .await
        .map_err(Error::State)?;
    let free = free_slots(&used, limit, ms(at - chrono::Duration::hours(24)));
    Ok((!free.is_empty()).then(|| free[rand::random_range(0..free.len())]))
}

/// The slots of the first `limit` not used after `cutoff` (ms), of the slot items `used`; none
/// once as many slots as the limit were used after it.
fn free_slots(used: &[Item], limit: u32, cutoff: i64) -> Vec<u32> {
    let taken: HashSet<u32> = used
        .iter()
        .filter(|i| get_n(i, "used_at").is_some_and(|u| u > cutoff))
        .filter_map(|i| slot_of(&get_s(i, "sk")?))
        .collect();
    // Slots past the limit count too (a run with a higher cap used them).
    if taken.len() >= limit as usize {
        return Vec::new();
    }
    (0..limit).filter(|k| !taken.contains(k)).collect()
}

/// A message that certainly did not go out, as its settled invitation has it: what it counted
/// against (its sender, or its medium for an item that recorded none), when, and the slot it
/// holds, if any.
#[derive(Debug, PartialEq, Eq)]
struct Unsent {
    sender: String,
    at: i64,
    slot: Option<i64>,
}

/// The unsent message of a settled invitation's item; `None` unless it failed.
fn unsent_message(item: &Item) -> Option<Unsent> {
    if get_s(item, "outcome").as_deref() != Some("failed") {
        return None;
    }
    let at = get_n(item, "intent_at")?;
    let medium = get_s(item, "medium")?;
    Some(Unsent {
        sender: get_s(item, "sender").unwrap_or(medium),
        at,
        slot: get_n(item, "slot"),
    })
}

/// Certainly not sent: the message no longer counts against the budget (its slot is given
/// back, its ledger entry deleted).
async fn return_to_budget(c: &Db, t: &str, id: i64, unsent: Unsent) -> Result<(), String> {
    if let Some(slot) = unsent.slot {
        release(c, t, &unsent.sender, slot, id).await?;
    }
    c.call(
        c.delete_item()
            .table_name(t)
            .key("pk", s(&ledger_pk(&unsent.sender)))
            .key("sk", s(&ledger_sk(unsent.at, id))),
    )
    .await
    .map(drop)
    .map_err(|e| sdk_error("cannot return a message to the budget", &e))
}

/// Gives a slot back, if `id` still holds it.
async fn release(c: &Db, t: &str, sender: &str, slot: i64, id: i64) -> Result<(), String> {
    let (pk, sk) = slot_key(sender, slot);
    match c
        .call(
            c.update_item()
                .table_name(t)
                .key("pk", pk)
                .key("sk", sk)
                .update_expression("SET used_at = :zero")
                .condition_expression("id = :id")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":id", n(id)),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if conditional_failed(&e) => Ok(()),
        Err(e) => Err(sdk_error("cannot give a budget share back", &e)),
    }
}

/// The intent marking a user, if any: its id, writer, time and whether it is still pending.
async fn marker(
    c: &Db,
    t: &str,
    pk: &str,
    key: &str,
) -> Result<Option<(i64, String, i64, bool)>, Error> {
    let user = read_item(c, t, pk, &user_sk(key))
        .await
        .map_err(Error::State)?;
    let Some(id) = user.as_ref().and_then(|i| get_n(i, "inviting")) else {
        return Ok(None);
    };
    let intent = read_item(c, t, pk, &id_sk('I', id))
        .await
        .map_err(Error::State)?;
    let item = intent.as_ref();
    Ok(Some((
        id,
        item.and_then(|i| get_s(i, "holder")).unwrap_or_default(),
        item.and_then(|i| get_n(i, "intent_at")).unwrap_or(0),
        item.and_then(|i| get_s(i, "outcome")).as_deref() == Some("pending"),
    )))
}

/// Clears the user's open intent, if it is still `id`'s.
async fn clear_inviting(c: &Db, t: &str, pk: &str, key: &str, id: i64) -> Result<(), String> {
    match c
        .call(
            c.update_item()
                .table_name(t)
                .key("pk", s(pk))
                .key("sk", s(&user_sk(key)))
                .update_expression("REMOVE inviting")
                .condition_expression("inviting = :id")
                .expression_attribute_values(":id", n(id)),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if conditional_failed(&e) => Ok(()),
        Err(e) => Err(sdk_error("cannot clear an open intent", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::items::item_of;
    use super::*;

    fn reasons(r: &[&str]) -> Vec<String> {
        r.iter().map(|r| r.to_string()).collect()
    }

    const FAILED: &str = "ConditionalCheckFailed";

    #[test]
    fn a_cancelled_intent_is_read_by_the_place_of_its_failed_condition() {
        // Without a slot: the invitation, the mark, the ledger entry.
        assert_eq!(
            cancelled(&reasons(&["None", FAILED, "None"]), false),
            Cancelled::Marked
        );
        assert_eq!(
            cancelled(&reasons(&[FAILED, "None", "None"]), false),
            Cancelled::Otherwise,
            "the invitation's put has no condition of ours to fail"
        );
        // With a slot: its claim first.
        assert_eq!(
            cancelled(&reasons(&["None", "None", FAILED, "None"]), true),
            Cancelled::Marked
        );
        assert_eq!(
            cancelled(&reasons(&[FAILED, "None", "None", "None"]), true),
            Cancelled::SlotTaken
        );
        assert_eq!(
            cancelled(&reasons(&[FAILED, "None", FAILED, "None"]), true),
            Cancelled::Marked,
            "a marked user is answered before a slot is picked again"
        );
        assert_eq!(
            cancelled(&reasons(&["ThrottlingError", "None", "None"]), false),
            Cancelled::Otherwise
        );
        assert_eq!(
            cancelled(&[], true),
            Cancelled::Otherwise,
            "no reasons given"
        );
    }

    fn slot(number: u32, used_at: i64) -> Item {
        let (pk, sk) = slot_key("sms:1", number.into());
        item_of([
            ("pk", pk),
            ("sk", sk),
            ("used_at", n(used_at)),
            ("id", n(1)),
        ])
    }

    #[test]
    fn a_slot_is_free_when_unused_since_the_cutoff_and_none_past_the_limit() {
        let cutoff = 1_000;
        assert_eq!(
            free_slots(&[], 3, cutoff),
            [0, 1, 2],
            "a new sender's are all free"
        );
        let used = [slot(0, cutoff + 1), slot(2, cutoff), slot(1, 0)];
        assert_eq!(
            free_slots(&used, 3, cutoff),
            [1, 2],
            "used at the cutoff or before: free again"
        );
        let full = [slot(0, 2_000), slot(1, 2_000), slot(2, 2_000)];
        assert!(free_slots(&full, 3, cutoff).is_empty());
        // A run with a higher cap used slots past this one's: they count against it too.
        let beyond = [slot(5, 2_000), slot(6, 2_000)];
        assert!(free_slots(&beyond, 2, cutoff).is_empty());
        assert_eq!(free_slots(&beyond, 3, cutoff), [0, 1, 2]);
        // A slot given back (used_at 0) is free.
        assert_eq!(free_slots(&[slot(0, 0)], 1, cutoff), [0]);
    }

    #[test]
    fn only_a_failed_invitation_returns_its_message_to_the_budget() {
        let settled = |outcome: &str| {
            item_of([
                ("outcome", s(outcome)),
                ("intent_at", n(5)),
                ("medium", s("email")),
                ("sender", s("email:cognito:1")),
                ("slot", n(3)),
            ])
        };
        assert_eq!(
            unsent_message(&settled("failed")),
            Some(Unsent {
                sender: "email:cognito:1".into(),
                at: 5,
                slot: Some(3)
            })
        );
        for outcome in ["sent", "undelivered", "pending"] {
            assert_eq!(unsent_message(&settled(outcome)), None, "{outcome}");
        }
        // Imported from a version that recorded no sender, and no slot: its medium's ledger.
        let old = item_of([
            ("outcome", s("failed")),
            ("intent_at", n(5)),
            ("medium", s("sms")),
        ]);
        assert_eq!(
            unsent_message(&old),
            Some(Unsent {
                sender: "sms".into(),
                at: 5,
                slot: None
            })
        );
    }

    #[test]
    fn a_claim_takes_a_slot_free_for_24_hours_and_a_mark_only_over_a_stale_one() {
        use chrono::TimeZone;
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let claimed = claim("t", "sms:1", 4, 99, at);
        let u = claimed.update().unwrap();
        assert_eq!(u.key()["sk"], s("S#00004"));
        let values = u.expression_attribute_values().unwrap();
        assert_eq!(values[":cutoff"], n(ms(at) - 24 * 3_600_000));
        assert_eq!(values[":id"], n(99));
        let fresh = inviting("t", "P#p", "a@x", 7, None);
        let u = fresh.update().unwrap();
        assert_eq!(u.key()["sk"], s("U#a@x"));
        assert_eq!(
            u.condition_expression(),
            Some("attribute_not_exists(inviting)")
        );
        let over = inviting("t", "P#p", "a@x", 7, Some(3));
        let u = over.update().unwrap();
        assert_eq!(u.condition_expression(), Some("inviting = :stale"));
        assert_eq!(u.expression_attribute_values().unwrap()[":stale"], n(3));
    }
}
