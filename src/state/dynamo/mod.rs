//! The state in one DynamoDB table, shared by every machine that onboards: the same contents
//! as the SQLite file, the run lock as a lease item, and conditional writes where two machines
//! could otherwise both act. Owns the store and what it reads (what is known of a pool, the
//! help desk's invitations, the message ledger, runs); its parts own the key design (`items`),
//! the plumbing (`client`), `state init` (`init`), the lease (`lease`), the write lanes
//! (`lanes`), intents and the budget (`intents`), user items (`users`) and export and import
//! (`transfer`). Every call goes through `paced`, which paces and retries it. Must not decide
//! anything from what it holds (that is `plan`), and must never store a password.
//!
//! Keys (`pk`, `sk`, both strings):
//!
//! | item | pk | sk |
//! |---|---|---|
//! | the run lock (lease) | `LOCK` | `LOCK` |
//! | a user the job knows | `P#<pool>` | `U#<key>` |
//! | an invitation (write-ahead intent and result) | `P#<pool>` | `I#<id>` |
//! | a `run --update` intent | `P#<pool>` | `W#<id>` |
//! | a status transition | `P#<pool>` | `T#<id>` |
//! | a run | `R#<pool>` | `<started, ms>#<run id>` |
//! | a message sent (the budget's ledger, every pool) | `M#<sender>` | `<at, ms>#<id>` |
//! | a share of the budget, taken for 24 hours | `B#<sender>` | `S#<slot>` |
//!
//! Ids are the intent's time in milliseconds times a million plus a random part: unique across
//! machines, and in time order. Runs and ledger entries carry `expires` (epoch seconds), the
//! table's TTL attribute.

mod client;
mod init;
mod intents;
mod items;
mod lanes;
mod lease;
mod transfer;
mod users;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use init::init_table;

use self::client::{client, query, query_page, runtime, sdk_error, wait};
use self::items::{
    Item, get_n, get_s, get_t, known_of, ledger_after, ledger_pk, ms, n, pool_pk, run_item,
    runs_pk, s, stored_invitation,
};
use self::lanes::Lanes;
use self::lease::{Lease, alive, holder_id, take_lease};
use super::paced::Db;
use super::spill::Spill;
use super::{Access, Invitation, Known, PastRun, RunEnd, RunStart, Subject, SyncFirst, Table};
use crate::cognito::Delivery;
use crate::error::Error;

/// The open table.
pub struct Dynamo {
    client: Db,
    table: String,
    writable: bool,
    /// The state's own runtime: the tool's runtime is single-threaded, and the state's sync
    /// methods wait for DynamoDB on this one instead of blocking it.
    runtime: client::Rt,
    lanes: Lanes,
    /// The pool (its item's partition) and the user of each intent's id.
    pools: Mutex<HashMap<i64, (String, String)>>,
    /// The sort key of each run this process began.
    runs: Mutex<HashMap<String, (String, String)>>,
    sync_first: Arc<Mutex<Vec<Arc<dyn SyncFirst>>>>,
    lease: Option<Lease>,
    /// Who writes this process's intents: the lease's holder, or `desk:…` for a command that
    /// shares the table without the lease.
    holder: String,
}

/// A mutex's contents, even if a thread panicked holding it (what it guards stays consistent:
/// every holder writes whole values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dynamo {
    /// Opens the table: it must exist; with `Access::Write` the run lock's lease is taken (and
    /// renewed while the run works), or the run stops with `Error::Locked`.
    pub fn open(table: &Table, access: Access) -> Result<Dynamo, Error> {
        let rt = runtime()?;
        let t = table.clone();
        let client = wait(&rt, async move {
            let c = Db::new(client(&t).await, t.rate);
            match c.call(c.describe_table().table_name(&t.name)).await {
                Ok(_) => Ok(c),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    Err(Error::State(format!(
                        "the state table {} does not exist in {}: run `cognito-onboard state init` \
                         to create it; this run changed nothing",
                        t.name,
                        t.region.as_deref().unwrap_or("the configured region")
                    )))
                }
                Err(e) => Err(Error::State(format!(
                    "{}; this run changed nothing",
                    sdk_error(&format!("cannot reach the state table {}", t.name), &e)
                ))),
            }
        })?;
        let lanes = Lanes::start(&rt);
        let lease = match access {
            Access::Write => Some(take_lease(&rt, &client, table)?),
            Access::Shared | Access::Read => None,
        };
        let holder = match &lease {
            Some(l) => l.holder.clone(),
            None => format!("desk:{}", holder_id()),
        };
        Ok(Dynamo {
            client,
            table: table.name.clone(),
            writable: access != Access::Read,
            runtime: rt,
            lanes,
            pools: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            sync_first: Arc::new(Mutex::new(Vec::new())),
            lease,
            holder,
        })
    }

    /// The calls that reached the table, and the throttles it answered, by category.
    pub fn calls(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        self.client.counts()
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    fn wait<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        wait(self.rt(), f)
    }

    /// Every item of `pk` whose sort key starts with `prefix`.
    fn query(&self, pk: String, prefix: &'static str) -> Result<Vec<Item>, Error> {
        let (c, t) = (self.client.clone(), self.table.clone());
        self.wait(async move { query(&c, &t, pk, prefix, true).await })
            .map_err(Error::State)
    }

    pub fn sync_first(&self, file: Arc<dyn SyncFirst>) {
        lock(&self.sync_first).push(file);
    }

    pub fn begin_run(&self, run: RunStart<'_>) -> Result<(), Error> {
        if !self.writable {
            return Ok(());
        }
        let (item, key) = run_item(&run);
        lock(&self.runs).insert(run.run_id.to_string(), key);
        let (c, t) = (self.client.clone(), self.table.clone());
        self.write_now(run.run_id, async move {
            c.call(c.put_item().table_name(t).set_item(Some(item)))
                .await
                .map(drop)
                .map_err(|e| sdk_error("cannot record the run", &e))
        })
    }

    pub fn finish_run(&self, run: RunEnd<'_>) -> Result<(), Error> {
        let Some((pk, sk)) = lock(&self.runs).get(run.run_id).cloned() else {
            return Ok(());
        };
        // The run's record says how it ended, and a write of its that failed ends it badly.
        let flushed = self.flush();
        let exit_code = if flushed.is_err() && run.exit_code == 0 {
            crate::error::exit::ABORTED
        } else {
            run.exit_code
        };
        let (c, t, counts, at) = (
            self.client.clone(),
            self.table.clone(),
            run.counts.to_string(),
            run.at,
        );
        self.lanes.forget_failure();
        let recorded = self.write_now(run.run_id, async move {
            c.call(
                c.update_item()
                    .table_name(t)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .update_expression("SET finished_at = :f, exit_code = :e, counts = :c")
                    .expression_attribute_values(":f", n(ms(at)))
                    .expression_attribute_values(":e", n(exit_code.into()))
                    .expression_attribute_values(":c", s(&counts)),
            )
            .await
            .map(drop)
            .map_err(|e| sdk_error("cannot record the end of the run", &e))
        });
        flushed.and(recorded)
    }

    pub fn known(&self, pool_id: &str) -> Result<HashMap<String, Known>, Error> {
        let mut out: HashMap<String, Known> = HashMap::new();
        self.known_pages(pool_id, |page| {
            for (key, part) in page {
                part.apply(out.entry(key).or_default());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// What is known of a pool's users, copied to a scratch file in `dir` a page at a time
    /// ([`Spill`]): never held whole.
    pub fn known_spilled(
        &self,
        pool_id: &str,
        dir: Option<&std::path::Path>,
    ) -> Result<Spill, Error> {
        let spill = Spill::new(dir)?;
        self.known_pages(pool_id, |page| spill.change(page, |k, part| part.apply(k)))?;
        Ok(spill)
    }

    /// What is known of a pool's users, a page of the table at a time: the users' items, then
    /// their invitations, oldest first, then the updates a killed run left open. Notes the
    /// pool and user of each intent and update left open, for their settles.
    fn known_pages(
        &self,
        pool_id: &str,
        mut each: impl FnMut(Vec<(String, Part)>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.flush()?;
        let pk = pool_pk(pool_id);
        self.query_pages(pk.clone(), "U#", |items| {
            each(
                items
                    .iter()
                    .filter_map(known_of)
                    .map(|(key, k)| (key, Part::User(Box::new(k))))
                    .collect(),
            )
        })?;
        let holder_now = self.lock_holder()?;
        self.query_pages(pk.clone(), "I#", |items| {
            let mut page = Vec::with_capacity(items.len());
            for item in items {
                let (Some(key), Some(i)) = (get_s(&item, "key"), stored_invitation(&item)) else {
                    continue;
                };
                // Another machine's intent that may still be at work is not this run's to
                // settle.
                let holder = get_s(&item, "holder").unwrap_or_default();
                if i.outcome == "pending"
                    && holder != self.holder
                    && alive(&holder, ms(i.intent_at), &holder_now, &self.holder)
                {
                    continue;
                }
                if i.outcome == "pending" {
                    self.remember(i.id, pool_id, &key);
                }
                page.push((key, Part::Invitation(i)));
            }
            each(page)
        })?;
        self.query_pages(pk, "W#", |items| {
            let mut page = Vec::new();
            for item in items {
                let (Some(key), Some(id)) = (get_s(&item, "key"), get_n(&item, "id")) else {
                    continue;
                };
                if get_s(&item, "outcome").as_deref() == Some("pending") {
                    self.remember(id, pool_id, &key);
                    page.push((key, Part::Open(id, items::get_list(&item, "changes"))));
                }
            }
            each(page)
        })
    }

    /// Every item of `pk` whose sort key starts with `prefix`, handed to `each` a page at a
    /// time.
    fn query_pages(
        &self,
        pk: String,
        prefix: &'static str,
        mut each: impl FnMut(Vec<Item>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut start = None;
        loop {
            let (c, t, pk) = (self.client.clone(), self.table.clone(), pk.clone());
            let (items, next) = self
                .wait(async move { query_page(&c, &t, pk, prefix, start).await })
                .map_err(Error::State)?;
            each(items)?;
            match next {
                Some(next) => start = Some(next),
                None => return Ok(()),
            }
        }
    }

    pub fn invitations_of(&self, who: Subject<'_>) -> Result<Vec<Invitation>, Error> {
        Ok(self
            .query(pool_pk(who.pool), "I#")?
            .iter()
            .filter(|item| get_s(item, "key").as_deref() == Some(who.key))
            .filter_map(|item| {
                let i = stored_invitation(item)?;
                Some(Invitation {
                    kind: i.kind,
                    medium: i.medium,
                    at: i.sent_at.unwrap_or(i.intent_at),
                    outcome: i.outcome,
                    run_id: get_s(item, "run_id").unwrap_or_default(),
                })
            })
            .collect())
    }

    /// The sender's ledger, and the ledger of its medium (entries imported from a state that
    /// recorded no sender).
    pub fn message_times_since(
        &self,
        since: DateTime<Utc>,
        medium: Delivery,
        sender: &str,
    ) -> Result<Vec<DateTime<Utc>>, Error> {
        self.flush()?;
        let (c, t) = (self.client.clone(), self.table.clone());
        let ledgers = [ledger_pk(sender), ledger_pk(medium.as_str())];
        let items = self
            .wait(async move {
                let mut all = Vec::new();
                for pk in ledgers {
                    let items: Vec<Item> = c
                        .all(
                            c.query()
                                .table_name(&t)
                                .key_condition_expression("pk = :p AND sk > :s")
                                .expression_attribute_values(":p", s(&pk))
                                .expression_attribute_values(":s", s(&ledger_after(ms(since))))
                                .consistent_read(true),
                        )
                        .await
                        .map_err(|e| sdk_error("cannot read the message ledger", &e))?;
                    all.extend(items);
                }
                Ok::<_, String>(all)
            })
            .map_err(Error::State)?;
        let mut times: Vec<DateTime<Utc>> = items.iter().filter_map(|i| get_t(i, "at")).collect();
        times.sort();
        Ok(times)
    }

    pub fn recent_runs(
        &self,
        pool_id: &str,
        command: &str,
        limit: usize,
    ) -> Result<Vec<PastRun>, Error> {
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, command) = (runs_pk(pool_id), command.to_string());
        let items = self
            .wait(async move {
                c.all(
                    c.query()
                        .table_name(t)
                        .key_condition_expression("pk = :p")
                        .filter_expression("command = :c AND attribute_exists(finished_at)")
                        .expression_attribute_values(":p", s(&pk))
                        .expression_attribute_values(":c", s(&command))
                        .scan_index_forward(false)
                        .consistent_read(true),
                )
                .await
                .map_err(|e| sdk_error("cannot read the runs", &e))
            })
            .map_err(Error::State)?;
        let mut runs: Vec<PastRun> = items
            .iter()
            .filter_map(|i| {
                Some(PastRun {
                    started_at: get_t(i, "started_at")?,
                    exit_code: get_n(i, "exit_code").and_then(|e| u8::try_from(e).ok()),
                    counts: get_s(i, "counts"),
                })
            })
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        runs.truncate(limit);
        Ok(runs)
    }
}

impl Drop for Dynamo {
    fn drop(&mut self) {
        if let Err(e) = self.flush_within(Some(Duration::from_secs(30))) {
            tracing::warn!("{e}");
        }
        if let Some(lease) = self.lease.take() {
            lease.release(self.rt(), &self.client, &self.table);
        }
    }
}

/// One piece of what is known of a user, as the table stores it apart.
enum Part {
    User(Box<Known>),
    Invitation(super::StoredInvitation),
    Open(i64, Vec<String>),
}

impl Part {
    fn apply(self, k: &mut Known) {
        match self {
            Part::User(user) => *k = *user,
            Part::Invitation(i) => k.fold(i),
            Part::Open(id, changes) => k.open(id, &changes),
        }
    }
}
