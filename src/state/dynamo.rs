//! The state in one DynamoDB table, shared by every machine that onboards: the same contents
//! as the SQLite file, the run lock as a lease item, and conditional writes where two machines
//! could otherwise both act. Owns the key design and what each call reads and writes (every
//! call goes through `paced`, which paces and retries it); must not decide anything from what
//! it holds (that is `plan`), and must never store a password.
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

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as Av, BillingMode, KeySchemaElement, KeyType, Put,
    ReturnValue, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::paced::Db;
use super::{
    Access, Counted, DELETED, Invitation, InviteKind, Known, Record, StoredInvitation, SyncFirst,
    Table, UpdateOutcome, Value,
};
use crate::cognito::{Delivery, UserStatus};
use crate::error::Error;

type Item = HashMap<String, Av>;
type Job = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Writes of different users go down different lanes, each in order; a user's writes share one.
const LANES: usize = 8;

/// How long run records and ledger entries are kept (the table's TTL deletes them after).
const RUN_TTL_DAYS: i64 = 400;
const LEDGER_TTL_DAYS: i64 = 3;

/// The key of the lease item.
const LOCK: &str = "LOCK";

enum Msg {
    Job(Job),
    Barrier(std::sync::mpsc::Sender<()>),
}

/// The open table.
pub struct Dynamo {
    client: Db,
    table: String,
    writable: bool,
    /// The state's own runtime: the tool's runtime is single-threaded, and the state's sync
    /// methods wait for DynamoDB on this one instead of blocking it.
    runtime: Rt,
    lanes: Vec<mpsc::UnboundedSender<Msg>>,
    /// The first write that failed in a lane, reported by the next write that must be on
    /// record and by `flush`.
    failed: Arc<Mutex<Option<String>>>,
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

/// The run lock this process holds.
struct Lease {
    holder: String,
    lost: Arc<AtomicBool>,
    /// Until when (ms) this process may take the lease to be its own: the last renewal that
    /// DynamoDB confirmed, plus five sixths of the lease. Past it, another run may have it.
    valid_until: Arc<std::sync::atomic::AtomicI64>,
    renewal: tokio::task::JoinHandle<()>,
}

/// How long a help-desk command's open intent is taken to be alive: longer than any call
/// (attempts times the attempt timeout), so it is never settled under the command's feet.
const DESK_INTENT_LIFE: chrono::Duration = chrono::Duration::minutes(10);

/// A mutex's contents, even if a thread panicked holding it (what it guards stays consistent:
/// every holder writes whole values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
}

fn s(v: &str) -> Av {
    Av::S(v.to_string())
}

fn n(v: i64) -> Av {
    Av::N(v.to_string())
}

fn list(v: &[String]) -> Av {
    Av::L(v.iter().map(|g| s(g)).collect())
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn get_t(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    get_n(item, name).and_then(from_ms)
}

fn get_bool(item: &Item, name: &str) -> Option<bool> {
    item.get(name).and_then(|v| v.as_bool().ok()).copied()
}

fn get_list(item: &Item, name: &str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

/// An item from its attributes.
fn item_of<const N: usize>(attributes: [(&str, Av); N]) -> Item {
    attributes
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The ledger entry of a message counted against `sender`, sent (or about to be) at `at`.
fn ledger_item(sender: &str, at: i64, id: i64, pool_id: &str) -> Item {
    item_of([
        ("pk", s(&format!("M#{sender}"))),
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

fn ledger_sk(at: i64, id: i64) -> String {
    format!("{at:013}#{id:019}")
}

/// The budget's slots of `sender`, and slot `slot` among them.
fn slot_key(sender: &str, slot: i64) -> (Av, Av) {
    (s(&format!("B#{sender}")), s(&format!("S#{slot:05}")))
}

fn pool_pk(pool_id: &str) -> String {
    format!("P#{pool_id}")
}

fn user_sk(key: &str) -> String {
    format!("U#{key}")
}

fn id_sk(prefix: char, id: i64) -> String {
    format!("{prefix}#{id:019}")
}

/// A new id: the time in milliseconds, times a million, plus a random part.
fn new_id(at: DateTime<Utc>) -> i64 {
    ms(at) * 1_000_000 + rand::random_range(0..1_000_000)
}

fn expires(at: DateTime<Utc>, days: i64) -> Av {
    n((at + chrono::Duration::days(days)).timestamp())
}

fn sdk_error<E, R>(what: &str, e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + crate::cognito::HttpStatus + 'static,
{
    // DynamoDB's own answer in its words, or the chain of causes of a call that got none: what
    // the executor sees (the SDK's rendering adds the raw response, which says nothing more).
    match crate::cognito::fault_of(e) {
        crate::cognito::Fault {
            code: Some(code),
            message,
            ..
        } if !message.is_empty() => format!("{what}: {code}: {message}"),
        crate::cognito::Fault {
            code: Some(code), ..
        } => format!("{what}: {code}"),
        fault => format!("{what}: {}", fault.message),
    }
}

/// A write whose condition did not hold.
fn conditional_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

/// The client for `table`, with the tool's attempt timeout and the SDK's retries off: the
/// executor retries and paces every call ([`Db::call`]).
async fn client(table: &Table) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(table.attempt_timeout)
                .connect_timeout(Duration::from_secs(5).min(table.attempt_timeout))
                .build(),
        );
    if let Some(profile) = &table.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &table.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &table.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    Client::new(&config)
}

/// The state's own runtime, shut down without waiting when dropped (a runtime dropped the
/// usual way from inside the tool's runtime panics).
struct Rt(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Rt {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("the runtime lives until dropped")
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn runtime() -> Result<Rt, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("state")
        .enable_all()
        .build()
        .map(|rt| Rt(Some(rt)))
        .map_err(|e| Error::State(format!("cannot start the state's runtime: {e}")))
}

/// Runs `f` on `runtime` and waits for it from any thread, the tool's runtime included.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    f: impl Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().expect("the state's runtime stopped")
}

/// `state init`: creates the table (on-demand capacity, `expires` as its TTL attribute) and
/// waits until it is active. An existing table is an error, so nothing is changed by mistake.
pub fn init_table(table: &Table) -> Result<String, Error> {
    let rt = runtime()?;
    let t = table.clone();
    let result = wait(&rt, async move {
        let c = Db::new(client(&t).await, t.rate);
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("name and type are set")
        };
        let created = c
            .call(
                c.create_table()
                    .table_name(&t.name)
                    .attribute_definitions(attr("pk"))
                    .attribute_definitions(attr("sk"))
                    .key_schema(key("pk", KeyType::Hash))
                    .key_schema(key("sk", KeyType::Range))
                    .billing_mode(BillingMode::PayPerRequest),
            )
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                // An init container or a pipeline runs `state init` every time: a table this
                // command made before is its answer, not an error. One with another key schema
                // is someone else's table, and stays an error.
                let d = c
                    .call(c.describe_table().table_name(&t.name))
                    .await
                    .map_err(|e| sdk_error("cannot read the existing table", &e))?;
                let keys: Vec<(String, String)> = d
                    .table()
                    .map(|t| t.key_schema())
                    .unwrap_or_default()
                    .iter()
                    .map(|k| {
                        (
                            k.attribute_name().to_string(),
                            k.key_type().as_str().to_string(),
                        )
                    })
                    .collect();
                let types: HashMap<String, String> = d
                    .table()
                    .map(|t| t.attribute_definitions())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        (
                            a.attribute_name().to_string(),
                            a.attribute_type().as_str().to_string(),
                        )
                    })
                    .collect();
                return if state_key_schema(&keys, &types) {
                    Ok(format!(
                        "the table {} exists already with the state's key schema (pk, sk); \
                         nothing was changed",
                        t.name
                    ))
                } else {
                    Err(format!(
                        "the table {} exists already with another key schema ({}): it is not a \
                         cognito-onboard state table; nothing was changed",
                        t.name,
                        keys.iter()
                            .map(|(n, k)| format!("{n} {k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                };
            }
            Err(e) => return Err(sdk_error("cannot create the table", &e)),
        }
        for _ in 0..120 {
            let d = c
                .call(c.describe_table().table_name(&t.name))
                .await
                .map_err(|e| sdk_error("cannot read the new table", &e))?;
            if d.table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE")
            {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        c.call(
            c.update_time_to_live()
                .table_name(&t.name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name("expires")
                        .build()
                        .expect("name and flag are set"),
                ),
        )
        .await
        .map_err(|e| sdk_error("cannot turn on the table's TTL", &e))?;
        Ok::<_, String>(format!(
            "created the DynamoDB table {} (on-demand capacity, TTL on `expires`); turn on \
             point-in-time recovery for it: aws dynamodb update-continuous-backups --table-name {} \
             --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true",
            t.name, t.name
        ))
    });
    result.map_err(Error::State)
}

/// Whether a table's key is the state's: `pk` (hash) and `sk` (range), both strings.
fn state_key_schema(keys: &[(String, String)], types: &HashMap<String, String>) -> bool {
    let mut keys = keys.to_vec();
    keys.sort();
    keys == [("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        && ["pk", "sk"]
            .iter()
            .all(|k| types.get(*k).map(String::as_str) == Some("S"))
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
        let failed = Arc::new(Mutex::new(None));
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
                let failed = failed.clone();
                rt.spawn(async move {
                    while let Some(msg) = rx.recv().await {
                        match msg {
                            Msg::Job(job) => {
                                if let Err(e) = job.await {
                                    tracing::warn!("{e}");
                                    lock(&failed).get_or_insert(e);
                                }
                            }
                            Msg::Barrier(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                });
                tx
            })
            .collect();
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
            failed,
            pools: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            sync_first: Arc::new(Mutex::new(Vec::new())),
            lease,
            holder,
        })
    }

    /// The calls that reached the table, and the throttles it answered, by category.
    pub fn calls(
        &self,
    ) -> (
        std::collections::BTreeMap<String, u64>,
        std::collections::BTreeMap<String, u64>,
    ) {
        self.client.counts()
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    fn wait<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        wait(self.rt(), f)
    }

    fn lane(&self, key: &str) -> &mpsc::UnboundedSender<Msg> {
        let h = key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.lanes[h % LANES]
    }

    /// A write that need not be on record before the call returns (a settle): queued in the
    /// user's lane, after the user's earlier writes.
    fn settle(&self, key: &str, job: impl Future<Output = Result<(), String>> + Send + 'static) {
        if !self.writable {
            return;
        }
        if let Err(e) = self.check_lease() {
            lock(&self.failed).get_or_insert(e.to_string());
            return;
        }
        let _ = self.lane(key).send(Msg::Job(Box::pin(job)));
    }

    /// A write ahead of a call: in the user's lane, on record when this returns.
    async fn write_ahead<T: Send + 'static>(
        &self,
        key: &str,
        job: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        self.check_lease()?;
        // A write that must be on record waits for nothing, but never follows a lost one.
        if let Some(e) = lock(&self.failed).as_ref() {
            return Err(Error::State(format!(
                "{}: an earlier state write failed: {e}",
                self.table
            )));
        }
        let (tx, rx) = oneshot::channel();
        let _ = self.lane(key).send(Msg::Job(Box::pin(async move {
            let _ = tx.send(job.await);
            Ok(())
        })));
        rx.await
            .map_err(|_| Error::State("the state's runtime stopped".into()))?
    }

    /// A write on record when this returns, from a sync caller.
    fn write_now(
        &self,
        key: &str,
        job: impl Future<Output = Result<(), String>> + Send + 'static,
    ) -> Result<(), Error> {
        if !self.writable {
            return Ok(());
        }
        self.check_lease()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = self.lane(key).send(Msg::Job(Box::pin(async move {
            let _ = tx.send(job.await);
            Ok(())
        })));
        rx.recv()
            .map_err(|_| Error::State("the state's runtime stopped".into()))?
            .map_err(Error::State)
    }

    /// A run whose lease was taken over must write nothing more.
    fn check_lease(&self) -> Result<(), Error> {
        if let Some(lease) = &self.lease
            && (lease.lost.load(Ordering::SeqCst)
                || ms(Utc::now()) > lease.valid_until.load(Ordering::SeqCst))
        {
            return Err(Error::State(format!(
                "the run lock's lease on {} was lost (the run stalled longer than the lease?); \
                 stopping before another write",
                self.table
            )));
        }
        Ok(())
    }

    /// The lease's holder and expiry (ms), as the table has them now.
    fn lock_holder(&self) -> Result<Option<(String, i64)>, Error> {
        let (c, t) = (self.client.clone(), self.table.clone());
        self.wait(async move { lock_of(&c, &t).await })
            .map_err(Error::State)
    }

    /// Notes which pool and user an intent belongs to, for its settle.
    fn remember(&self, id: i64, pool_id: &str, key: &str) {
        lock(&self.pools).insert(id, (pool_id.to_string(), key.to_string()));
    }

    fn pool_of(&self, id: i64) -> Option<(String, String)> {
        lock(&self.pools).get(&id).cloned()
    }

    /// Every item of `pk` whose sort key starts with `prefix`.
    fn query(&self, pk: String, prefix: &'static str) -> Result<Vec<Item>, Error> {
        let (c, t) = (self.client.clone(), self.table.clone());
        self.wait(async move { query(&c, &t, pk, prefix, true).await })
            .map_err(Error::State)
    }

    /// Waits for every queued write; a write that failed stays reported, as a failed commit
    /// of the SQLite file would (the run must not go on as if it were on record).
    pub fn flush(&self) -> Result<(), Error> {
        self.flush_within(None)
    }

    /// [`Dynamo::flush`], waiting at most `limit` for each lane.
    fn flush_within(&self, limit: Option<Duration>) -> Result<(), Error> {
        let waits: Vec<_> = self
            .lanes
            .iter()
            .filter_map(|lane| {
                let (tx, rx) = std::sync::mpsc::channel();
                lane.send(Msg::Barrier(tx)).ok().map(|_| rx)
            })
            .collect();
        for rx in waits {
            match limit {
                None => {
                    let _ = rx.recv();
                }
                Some(limit) => {
                    if rx.recv_timeout(limit).is_err() {
                        return Err(Error::State(format!(
                            "{}: writes still queued after {} s; the next run repairs them from \
                             what Cognito shows",
                            self.table,
                            limit.as_secs()
                        )));
                    }
                }
            }
        }
        match lock(&self.failed).as_ref() {
            Some(e) => Err(Error::State(format!("{}: {e}", self.table))),
            None => Ok(()),
        }
    }

    pub fn sync_first(&self, file: Arc<dyn SyncFirst>) {
        lock(&self.sync_first).push(file);
    }

    pub fn begin_run(
        &self,
        run_id: &str,
        pool_id: &str,
        command: &str,
        input: Option<(&Path, &str)>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        if !self.writable {
            return Ok(());
        }
        let pk = format!("R#{pool_id}");
        let sk = format!("{:013}#{run_id}", ms(at));
        lock(&self.runs).insert(run_id.to_string(), (pk.clone(), sk.clone()));
        let mut item = item_of([
            ("pk", s(&pk)),
            ("sk", s(&sk)),
            ("run_id", s(run_id)),
            ("pool_id", s(pool_id)),
            ("command", s(command)),
            ("started_at", n(ms(at))),
            ("expires", expires(at, RUN_TTL_DAYS)),
        ]);
        if let Some((path, hash)) = input {
            item.insert("input_path".into(), s(&path.display().to_string()));
            item.insert("input_sha256".into(), s(hash));
        }
        let (c, t) = (self.client.clone(), self.table.clone());
        self.write_now(run_id, async move {
            c.call(c.put_item().table_name(t).set_item(Some(item)))
                .await
                .map(drop)
                .map_err(|e| sdk_error("cannot record the run", &e))
        })
    }

    pub fn finish_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        exit_code: u8,
        counts: &str,
    ) -> Result<(), Error> {
        let Some((pk, sk)) = self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run_id)
            .cloned()
        else {
            return Ok(());
        };
        // The run's record says how it ended, and a write of its that failed ends it badly.
        let flushed = self.flush();
        let exit_code = if flushed.is_err() && exit_code == 0 {
            crate::error::exit::ABORTED
        } else {
            exit_code
        };
        let (c, t, counts) = (self.client.clone(), self.table.clone(), counts.to_string());
        lock(&self.failed).take();
        let recorded = self.write_now(run_id, async move {
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
        self.flush()?;
        let pk = pool_pk(pool_id);
        let mut out: HashMap<String, Known> = HashMap::new();
        for item in self.query(pk.clone(), "U#")? {
            let Some(key) = get_s(&item, "sk").and_then(|k| k.strip_prefix("U#").map(String::from))
            else {
                continue;
            };
            out.insert(
                key,
                Known {
                    username: get_s(&item, "username"),
                    email: get_s(&item, "email"),
                    invited: get_bool(&item, "invited").unwrap_or(false),
                    groups_done: get_list(&item, "groups_done"),
                    last_status: get_s(&item, "last_status").map(|s| UserStatus::parse(&s)),
                    last_enabled: get_bool(&item, "last_enabled"),
                    last_seen_at: get_t(&item, "last_seen_at"),
                    confirmed_at: get_t(&item, "confirmed_at"),
                    confirmed_reported_at: get_t(&item, "confirmed_reported_at"),
                    handed_over_at: get_t(&item, "handed_over_at"),
                    row_digest: get_s(&item, "row_digest"),
                    last_written: get_list(&item, "last_written"),
                    last_written_at: get_t(&item, "last_written_at"),
                    pending_since: get_t(&item, "pending_since"),
                    last_read_at: get_t(&item, "last_read_at"),
                    ..Known::default()
                },
            );
        }
        let holder_now = self.lock_holder()?;
        let mut pools = lock(&self.pools);
        for item in self.query(pk.clone(), "I#")? {
            let (Some(key), Some(i)) = (get_s(&item, "key"), stored_invitation(&item)) else {
                continue;
            };
            // Another machine's intent that may still be at work is not this run's to settle.
            let holder = get_s(&item, "holder").unwrap_or_default();
            if i.outcome == "pending"
                && holder != self.holder
                && alive(&holder, ms(i.intent_at), &holder_now, &self.holder)
            {
                continue;
            }
            pools.insert(i.id, (pool_id.to_string(), key.clone()));
            out.entry(key).or_default().fold(i);
        }
        for item in self.query(pk, "W#")? {
            let (Some(key), Some(id)) = (get_s(&item, "key"), get_n(&item, "id")) else {
                continue;
            };
            if get_s(&item, "outcome").as_deref() == Some("pending") {
                pools.insert(id, (pool_id.to_string(), key.clone()));
                out.entry(key).or_default().open_updates.push(id);
            }
        }
        Ok(out)
    }

    pub fn invitations_of(&self, pool_id: &str, key: &str) -> Result<Vec<Invitation>, Error> {
        Ok(self
            .query(pool_pk(pool_id), "I#")?
            .iter()
            .filter(|item| get_s(item, "key").as_deref() == Some(key))
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

    /// The intent and, when it sends a message, its ledger entry, in one transaction that
    /// also marks the user as being invited: it fails if another machine is inviting the same
    /// user right now, so two machines never both send one invitation. Under a `limit`, the
    /// transaction also claims one of its slots (a slot is free when unused for 24 hours), so
    /// two machines never both spend the last share: `Error::BudgetSpent` when none is free.
    #[allow(clippy::too_many_arguments)]
    pub async fn intent(
        &self,
        pool_id: &str,
        key: &str,
        kind: InviteKind,
        medium: Delivery,
        counted: Option<Counted<'_>>,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, Error> {
        if !self.writable {
            return Ok(None);
        }
        let id = new_id(at);
        self.remember(id, pool_id, key);
        let pk = pool_pk(pool_id);
        // `State::intent` passes `counted` only for an invitation that sends a message.
        let limit = counted.and_then(|c| c.limit);
        // Where its message is counted: the sender's ledger and slots.
        let sender = counted.map(|c| c.sender.to_string());
        let mut invitation = item_of([
            ("pk", s(&pk)),
            ("sk", s(&id_sk('I', id))),
            ("id", n(id)),
            ("key", s(key)),
            ("kind", s(kind.as_str())),
            ("medium", s(medium.as_str())),
            ("run_id", s(run_id)),
            ("intent_at", n(ms(at))),
            ("outcome", s("pending")),
            ("password_recorded", Av::Bool(false)),
            ("holder", s(&self.holder)),
        ]);
        if let Some(sender) = &sender {
            invitation.insert("sender".into(), s(sender));
        }
        let table = self.table.clone();
        let put = move |item: Item| {
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&table)
                        .set_item(Some(item))
                        .build()
                        .expect("table and item are set"),
                )
                .build()
        };
        // The user's marker: set if there is none, or if it is `stale` (a settled or dead
        // intent's, whose settle never cleared it).
        let (table, user_pk, user_key) = (self.table.clone(), pk.clone(), user_sk(key));
        let inviting = move |stale: Option<i64>| {
            let u = Update::builder()
                .table_name(&table)
                .key("pk", s(&user_pk))
                .key("sk", s(&user_key))
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
        };
        let me = self.holder.clone();
        let ledger = sender
            .as_deref()
            .map(|sender| ledger_item(sender, ms(at), id, pool_id));
        let (c, t, key_owned) = (self.client.clone(), self.table.clone(), key.to_string());
        self.write_ahead(key, async move {
            // A slot another machine took between our read and our write, or a marker found
            // stale: read again and try again. (Throttling and conflicts are the executor's.)
            let mut stale = None;
            for turn in 0..8 {
                let slot = match limit {
                    None => None,
                    Some(limit) => {
                        let sender = sender.as_deref().unwrap_or(medium.as_str());
                        match free_slot(&c, &t, sender, limit, at).await? {
                            Some(slot) => Some(slot),
                            None => {
                                return Err(Error::BudgetSpent(format!(
                                    "all {limit} shares of {sender} in the last 24 hours are taken"
                                )));
                            }
                        }
                    }
                };
                let mut invitation = invitation.clone();
                let mut items = Vec::new();
                if let Some(slot) = slot {
                    invitation.insert("slot".into(), n(slot.into()));
                    let sender = sender.as_deref().unwrap_or(medium.as_str());
                    items.push(claim(&t, sender, slot, id, at));
                }
                items.push(put(invitation));
                items.push(inviting(stale));
                if let Some(ledger) = &ledger {
                    items.push(put(ledger.clone()));
                }
                // One token a turn, so a retry of an attempt that committed unseen is answered
                // as the success it was (the SDK sets a token per call, and each attempt is a
                // call here); a new turn has new items, and so a new token.
                let failed = match c
                    .call(
                        c.transact_write_items()
                            .set_transact_items(Some(items))
                            .client_request_token(format!("{id}-{turn}")),
                    )
                    .await
                {
                    Ok(_) => return Ok(Some(id)),
                    Err(e) => e,
                };
                let reasons: Vec<String> = match failed.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(x)) => x
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_string())
                        .collect(),
                    _ => Vec::new(),
                };
                let condition =
                    |i: usize| reasons.get(i).map(String::as_str) == Some("ConditionalCheckFailed");
                let offset = usize::from(slot.is_some());
                if condition(offset + 1) {
                    // The user is marked: by a live intent (another machine is inviting them
                    // now), or by one whose settle never cleared the mark.
                    // Read only here: a conflict is rare, and an intent is on the hot path.
                    let holder_now = lock_of(&c, &t).await.map_err(Error::State)?;
                    match marker(&c, &t, &pk, &key_owned).await? {
                        // Our own mark: an attempt of this intent committed and its answer was
                        // lost (a retry that an expired or unhonoured client token could not
                        // answer as the success it was). Atomic, so its slot and ledger are in.
                        Some((old, ..)) if old == id => return Ok(Some(id)),
                        Some((old, holder, intent_at, pending))
                            if pending && alive(&holder, intent_at, &holder_now, &me) =>
                        {
                            return Err(Error::Busy(format!(
                                "intent {old} of {holder} is open for {key_owned}; nothing was sent"
                            )));
                        }
                        Some((old, ..)) => stale = Some(old),
                        None => stale = None,
                    }
                    continue;
                }
                if slot.is_some() && condition(0) {
                    continue;
                }
                // Still throttled or conflicting after the executor's attempts: nothing was
                // written, so the row waits for a later run rather than stopping this one.
                // An earlier attempt may have committed unseen before the ones that failed.
                if matches!(marker(&c, &t, &pk, &key_owned).await, Ok(Some((old, ..))) if old == id)
                {
                    return Ok(Some(id));
                }
                let given: Vec<&str> = reasons.iter().map(String::as_str).collect();
                if super::paced::busy_code(&given).is_some() {
                    return Err(Error::Busy(format!(
                        "the state table stayed busy for {key_owned} ({}); nothing was sent",
                        given.join(", ")
                    )));
                }
                return Err(Error::State(sdk_error(
                    "cannot record the invitation ahead of its call",
                    &failed,
                )));
            }
            Err(Error::Busy(format!(
                "the state kept refusing the intent for {key_owned} (other machines writing the \
                 same items); nothing was sent"
            )))
        })
        .await
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
            if get_s(out.attributes().unwrap_or(&HashMap::new()), "outcome").as_deref()
                == Some("failed")
                && let Some(at) = out.attributes().and_then(|a| get_n(a, "intent_at"))
                && let Some(medium) = out.attributes().and_then(|a| get_s(a, "medium"))
            {
                let medium = out
                    .attributes()
                    .and_then(|a| get_s(a, "sender"))
                    .unwrap_or(medium);
                // Certainly not sent: it no longer counts against the budget.
                if let Some(slot) = out.attributes().and_then(|a| get_n(a, "slot")) {
                    release(&c, &t, &medium, slot, id).await?;
                }
                c.call(
                    c.delete_item()
                        .table_name(&t)
                        .key("pk", s(&format!("M#{medium}")))
                        .key("sk", s(&ledger_sk(at, id))),
                )
                .await
                .map_err(|e| sdk_error("cannot return a message to the budget", &e))?;
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

    #[allow(clippy::too_many_arguments)]
    pub fn invitation_sent(
        &self,
        id: Option<i64>,
        sent_at: DateTime<Utc>,
        pool_id: &str,
        key: &str,
        username: &str,
        email: &str,
        run_id: &str,
    ) -> Result<(), Error> {
        // Three calls, not five: the user's one update marks it invited, records its status
        // and clears the intent this run holds on it.
        if let Some(id) = id {
            self.settle_invitation_as(
                id,
                "SET outcome = :o, sent_at = :t",
                vec![(":o", s("sent")), (":t", n(ms(sent_at)))],
                false,
            );
        }
        self.record_status(
            pool_id,
            key,
            Some(username),
            Some(email),
            UserStatus::ForceChangePassword.as_str().to_string(),
            Some(true),
            run_id,
            sent_at,
            true,
        );
        Ok(())
    }

    pub async fn update_intent(
        &self,
        pool_id: &str,
        key: &str,
        changes: &[String],
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, Error> {
        if !self.writable {
            return Ok(None);
        }
        let id = new_id(at);
        self.remember(id, pool_id, key);
        let item = item_of([
            ("pk", s(&pool_pk(pool_id))),
            ("sk", s(&id_sk('W', id))),
            ("id", n(id)),
            ("key", s(key)),
            ("changes", list(changes)),
            ("run_id", s(run_id)),
            ("intent_at", n(ms(at))),
            ("outcome", s("pending")),
        ]);
        let (c, t) = (self.client.clone(), self.table.clone());
        self.write_ahead(key, async move {
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

    /// Updates the user's item (created if missing) with `expression`.
    fn update_user(
        &self,
        pool_id: &str,
        key: &str,
        expression: String,
        values: Vec<(&'static str, Av)>,
    ) {
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, sk) = (pool_pk(pool_id), user_sk(key));
        self.settle(key, async move {
            let mut u = c
                .update_item()
                .table_name(t)
                .key("pk", s(&pk))
                .key("sk", s(&sk))
                .update_expression(expression);
            for (k, v) in values {
                u = u.expression_attribute_values(k, v);
            }
            c.call(u)
                .await
                .map(drop)
                .map_err(|e| sdk_error("cannot record a user", &e))
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub fn updated(
        &self,
        pool_id: &str,
        key: &str,
        written: &[String],
        email: Option<&str>,
        removed_groups: &[String],
        pending_since: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        if !self.writable {
            return Ok(());
        }
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, sk) = (pool_pk(pool_id), user_sk(key));
        let (written, email, removed) = (
            written.to_vec(),
            email.map(str::to_string),
            removed_groups.to_vec(),
        );
        self.settle(key, async move {
            for _ in 0..GUARDED_ATTEMPTS {
                let current = read_item(&c, &t, &pk, &sk).await?;
                let groups: Vec<String> = current
                    .as_ref()
                    .map(|i| get_list(i, "groups_done"))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|g| !removed.contains(g))
                    .collect();
                let mut expression =
                    String::from("SET groups_done = :g, last_written = :w, last_written_at = :t");
                let mut u = c
                    .update_item()
                    .table_name(&t)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .expression_attribute_values(":g", list(&groups))
                    .expression_attribute_values(":w", list(&written))
                    .expression_attribute_values(":t", n(ms(at)));
                if let Some(p) = pending_since {
                    expression.push_str(", pending_since = if_not_exists(pending_since, :p)");
                    u = u.expression_attribute_values(":p", n(ms(p)));
                }
                if let Some(email) = &email {
                    expression.push_str(", email = :e");
                    u = u.expression_attribute_values(":e", s(email));
                }
                match c
                    .call(guard_groups(
                        u.update_expression(expression),
                        current.as_ref(),
                    ))
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e) if conditional_failed(&e) => continue,
                    Err(e) => return Err(sdk_error("cannot record an update", &e)),
                }
            }
            Err("the user's groups kept changing under this write".into())
        });
        Ok(())
    }

    pub fn read_confirmed(&self, pool_id: &str, key: &str, at: DateTime<Utc>) -> Result<(), Error> {
        self.update_user(
            pool_id,
            key,
            "SET last_read_at = :t".into(),
            vec![(":t", n(ms(at)))],
        );
        Ok(())
    }

    pub fn in_step(&self, pool_id: &str, key: &str, digest: &str) -> Result<(), Error> {
        self.update_user(
            pool_id,
            key,
            "SET row_digest = :d".into(),
            vec![(":d", s(digest))],
        );
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

    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        pool_id: &str,
        key: &str,
        username: Option<&str>,
        email: Option<&str>,
        status: Option<&UserStatus>,
        enabled: Option<bool>,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let status = status.map_or(DELETED, UserStatus::as_str).to_string();
        self.record_status(
            pool_id, key, username, email, status, enabled, run_id, at, false,
        );
        Ok(())
    }

    /// Records a status seen, and a transition when it differs from the last one; `invited`:
    /// also marks the user as invited by this tool and clears its open intent.
    #[allow(clippy::too_many_arguments)]
    fn record_status(
        &self,
        pool_id: &str,
        key: &str,
        username: Option<&str>,
        email: Option<&str>,
        status: String,
        enabled: Option<bool>,
        run_id: &str,
        at: DateTime<Utc>,
        invited: bool,
    ) {
        if !self.writable {
            return;
        }
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, sk, key_owned, run_id) = (
            pool_pk(pool_id),
            user_sk(key),
            key.to_string(),
            run_id.to_string(),
        );
        let (username, email) = (username.map(str::to_string), email.map(str::to_string));
        self.settle(key, async move {
            // The transition goes on record before the status it leads to: a write lost in
            // between leaves the old status, and the next observation records the change again
            // (never a change with no transition, nor a confirmation with no time).
            let before = read_item(&c, &t, &pk, &sk).await?;
            let last = before.as_ref().and_then(|i| get_s(i, "last_status"));
            let changed = last.as_deref() != Some(status.as_str());
            if changed {
                let mut transition = c
                    .put_item()
                    .table_name(&t)
                    .item("pk", s(&pk))
                    .item("sk", s(&id_sk('T', new_id(at))))
                    .item("key", s(&key_owned))
                    .item("to_status", s(&status))
                    .item("observed_at", n(ms(at)))
                    .item("run_id", s(&run_id));
                if let Some(last) = &last {
                    transition = transition.item("from_status", s(last));
                }
                c.call(transition)
                    .await
                    .map_err(|e| sdk_error("cannot record a transition", &e))?;
            }
            let mut set = vec!["last_status = :s", "last_seen_at = :t"];
            let mut u = c
                .update_item()
                .table_name(&t)
                .key("pk", s(&pk))
                .key("sk", s(&sk))
                .expression_attribute_values(":s", s(&status))
                .expression_attribute_values(":t", n(ms(at)));
            if let Some(v) = &username {
                set.push("username = :u");
                u = u.expression_attribute_values(":u", s(v));
            }
            if let Some(v) = &email {
                set.push("email = :e");
                u = u.expression_attribute_values(":e", s(v));
            }
            if invited {
                set.push("invited = :i");
                u = u.expression_attribute_values(":i", Av::Bool(true));
            }
            let mut remove = Vec::new();
            match enabled {
                Some(v) => {
                    set.push("last_enabled = :en");
                    u = u.expression_attribute_values(":en", Av::Bool(v));
                }
                None => remove.push("last_enabled"),
            }
            if invited {
                remove.push("inviting");
            }
            if changed && status == UserStatus::Confirmed.as_str() {
                set.push("confirmed_at = :t");
                remove.push("confirmed_reported_at");
            }
            let mut expression = format!("SET {}", set.join(", "));
            if !remove.is_empty() {
                expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
            }
            c.call(u.update_expression(expression))
                .await
                .map(drop)
                .map_err(|e| sdk_error("cannot record a status", &e))
        });
    }

    pub fn mark_invited(
        &self,
        pool_id: &str,
        key: &str,
        username: &str,
        email: &str,
    ) -> Result<(), Error> {
        self.update_user(
            pool_id,
            key,
            "SET invited = :i, username = :u, email = :e".into(),
            vec![
                (":i", Av::Bool(true)),
                (":u", s(username)),
                (":e", s(email)),
            ],
        );
        Ok(())
    }

    pub fn groups_done(&self, pool_id: &str, key: &str, groups: &[String]) -> Result<(), Error> {
        if groups.is_empty() || !self.writable {
            return Ok(());
        }
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, sk, groups) = (pool_pk(pool_id), user_sk(key), groups.to_vec());
        self.settle(key, async move {
            // Read, then write only if no one changed the groups in between.
            for _ in 0..GUARDED_ATTEMPTS {
                let current = read_item(&c, &t, &pk, &sk).await?;
                let before = current.as_ref().map(|i| get_list(i, "groups_done"));
                let mut all = before.clone().unwrap_or_default();
                for g in &groups {
                    if !all.contains(g) {
                        all.push(g.clone());
                    }
                }
                let u = c
                    .update_item()
                    .table_name(&t)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .update_expression("SET groups_done = :g")
                    .expression_attribute_values(":g", list(&all));
                match c.call(guard_groups(u, current.as_ref())).await {
                    Ok(_) => return Ok(()),
                    Err(e) if conditional_failed(&e) => continue,
                    Err(e) => return Err(sdk_error("cannot record groups", &e)),
                }
            }
            Err("the user's groups kept changing under this write".into())
        });
        Ok(())
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
        let ledgers = [format!("M#{sender}"), format!("M#{}", medium.as_str())];
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
                                .expression_attribute_values(
                                    ":s",
                                    s(&format!("{:013}#", ms(since) + 1)),
                                )
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

    pub fn confirmations_reported(
        &self,
        pool_id: &str,
        keys: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        for key in keys {
            self.update_user(
                pool_id,
                key,
                "SET confirmed_reported_at = :t".into(),
                vec![(":t", n(ms(at)))],
            );
        }
        self.flush()
    }

    pub fn handed_over(&self, pool_id: &str, key: &str, at: DateTime<Utc>) -> Result<(), Error> {
        self.update_user(
            pool_id,
            key,
            "SET handed_over_at = :t".into(),
            vec![(":t", n(ms(at)))],
        );
        self.flush()
    }

    pub fn last_status_run(&self, pool_id: &str) -> Result<Option<DateTime<Utc>>, Error> {
        let (c, t) = (self.client.clone(), self.table.clone());
        let pk = format!("R#{pool_id}");
        let items = self
            .wait(async move {
                c.all(
                    c.query()
                        .table_name(t)
                        .key_condition_expression("pk = :p")
                        .filter_expression("command = :c AND attribute_exists(finished_at)")
                        .expression_attribute_values(":p", s(&pk))
                        .expression_attribute_values(":c", s("status"))
                        .scan_index_forward(false)
                        .consistent_read(true),
                )
                .await
                .map_err(|e| sdk_error("cannot read the runs", &e))
            })
            .map_err(Error::State)?;
        Ok(items.iter().filter_map(|i| get_t(i, "started_at")).max())
    }
}

/// Columns the SQLite schema keeps as 0 or 1, and as lines of text, that an item holds as a
/// boolean and as a list.
const BOOLEAN_COLUMNS: [&str; 3] = ["invited", "last_enabled", "password_recorded"];
const LIST_COLUMNS: [&str; 3] = ["groups_done", "last_written", "changes"];
/// Attributes that belong to the table's own workings, not to the state's contents.
const WORKINGS: [&str; 6] = ["pk", "sk", "expires", "inviting", "slot", "holder"];

/// A record of the SQLite schema as an item.
fn to_item(r: &Record) -> Option<Item> {
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
            format!("R#{pool}"),
            format!("{:013}#{}", int("started_at")?, text("run_id")?),
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
fn from_item(item: &Item) -> Option<Record> {
    let pk = get_s(item, "pk")?;
    let sk = get_s(item, "sk")?;
    let mut values = std::collections::BTreeMap::new();
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
        // Ids and start times order each table as SQLite's rowids did.
        let order = |r: &Record| {
            let t = super::TABLES.iter().position(|t| *t == r.table);
            let at = match r.values.get(if r.table == "runs" {
                "started_at"
            } else {
                "id"
            }) {
                Some(Value::Int(i)) => *i,
                _ => 0,
            };
            (t, at)
        };
        records.sort_by_key(order);
        Ok(records)
    }

    /// Writes `records` into this table, which must hold no state yet, with a ledger entry for
    /// each message-sending invitation of the last days, so the budget carries over.
    pub(crate) fn load(&self, records: &[Record]) -> Result<(), Error> {
        let (c, t) = (self.client.clone(), self.table.clone());
        let any = self
            .wait(async move {
                c.call(c.scan().table_name(t).limit(2))
                    .await
                    .map(|o| {
                        o.items()
                            .iter()
                            .any(|i| get_s(i, "pk").as_deref() != Some(LOCK))
                    })
                    .map_err(|e| sdk_error("cannot read the state table", &e))
            })
            .map_err(Error::State)?;
        if any {
            return Err(Error::Config(format!(
                "{DYNAMODB}{} already holds a state: import only into a new table (state init)",
                self.table
            )));
        }
        let mut items: Vec<Item> = records.iter().filter_map(to_item).collect();
        let recent = ms(Utc::now() - chrono::Duration::days(LEDGER_TTL_DAYS));
        let day_ago = ms(Utc::now() - chrono::Duration::hours(24));
        // The slots the last 24 hours' messages took, per sender, so that the budget's
        // conditional claims carry over as its count does.
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
        let (c, t) = (self.client.clone(), self.table.clone());
        self.wait(async move { batch_put(&c, &t, items).await })
            .map_err(Error::State)
    }
}

/// Puts `items`, 25 to a request, until DynamoDB has taken every one.
async fn batch_put(c: &Db, t: &str, items: Vec<Item>) -> Result<(), String> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    for chunk in items.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .expect("the item is set"),
                    )
                    .build()
            })
            .collect();
        for attempt in 0..10 {
            let out = c
                .call(c.batch_write_item().request_items(t, requests))
                .await
                .map_err(|e| sdk_error("cannot write the state table", &e))?;
            requests = out
                .unprocessed_items()
                .and_then(|u| u.get(t))
                .cloned()
                .unwrap_or_default();
            if requests.is_empty() {
                break;
            }
            if attempt == 9 {
                return Err("DynamoDB left items unwritten after 10 attempts".into());
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
        }
    }
    Ok(())
}

impl Drop for Dynamo {
    fn drop(&mut self) {
        if let Err(e) = self.flush_within(Some(Duration::from_secs(30))) {
            tracing::warn!("{e}");
        }
        if let Some(lease) = self.lease.take() {
            lease.renewal.abort();
            let (c, t) = (self.client.clone(), self.table.clone());
            let released = self.wait(async move {
                c.call(
                    c.delete_item()
                        .table_name(t)
                        .key("pk", s(LOCK))
                        .key("sk", s(LOCK))
                        .condition_expression("holder = :h")
                        .expression_attribute_values(":h", s(&lease.holder)),
                )
                .await
            });
            if let Err(e) = released
                && !conditional_failed(&e)
            {
                tracing::warn!("{}", sdk_error("cannot release the run lock's lease", &e));
            }
        }
    }
}

/// An invitation item as stored.
fn stored_invitation(item: &Item) -> Option<StoredInvitation> {
    Some(StoredInvitation {
        id: get_n(item, "id")?,
        kind: InviteKind::parse(&get_s(item, "kind")?),
        medium: Delivery::parse(&get_s(item, "medium")?).unwrap_or(Delivery::Email),
        intent_at: get_t(item, "intent_at")?,
        outcome: get_s(item, "outcome")?,
        sent_at: get_t(item, "sent_at"),
        password_recorded: get_bool(item, "password_recorded").unwrap_or(false),
    })
}

/// How often a read-then-write of a user's groups is tried when another machine changed them
/// in between.
const GUARDED_ATTEMPTS: usize = 5;

/// Makes `u` apply only if the user's groups are still as `before` had them.
fn guard_groups(
    u: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    before: Option<&Item>,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    match before.and_then(|i| i.get("groups_done")) {
        Some(old) => u
            .condition_expression("groups_done = :old_groups")
            .expression_attribute_values(":old_groups", old.clone()),
        None => u.condition_expression("attribute_not_exists(groups_done)"),
    }
}

/// The lease's holder and expiry (ms), as the table has them now; `None` when no run holds it.
async fn lock_of(c: &Db, t: &str) -> Result<Option<(String, i64)>, String> {
    let item = read_item(c, t, LOCK, LOCK).await?;
    Ok(item.and_then(|i| Some((get_s(&i, "holder")?, get_n(&i, "expires_at")?))))
}

/// One item, read consistently.
async fn read_item(c: &Db, t: &str, pk: &str, sk: &str) -> Result<Option<Item>, String> {
    c.call(
        c.get_item()
            .table_name(t)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true),
    )
    .await
    .map(|o| o.item().cloned())
    .map_err(|e| sdk_error("cannot read the state", &e))
}

/// Every item of `pk` whose sort key starts with `prefix`, in sort-key order.
async fn query(
    c: &Db,
    table: &str,
    pk: String,
    prefix: &str,
    consistent: bool,
) -> Result<Vec<Item>, String> {
    c.all(
        c.query()
            .table_name(table)
            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
            .expression_attribute_values(":p", s(&pk))
            .expression_attribute_values(":s", s(prefix))
            .consistent_read(consistent),
    )
    .await
    .map_err(|e| sdk_error("cannot read the state", &e))
}

/// The budget's slot `slot` of `medium`, as one transaction item: taken for `id` at `at` if it
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

/// A free slot of the first `limit` of `medium`'s, picked at random so that machines claiming
/// at once rarely pick the same; `None` when every one was used in the last 24 hours.
async fn free_slot(
    c: &Db,
    t: &str,
    sender: &str,
    limit: u32,
    at: DateTime<Utc>,
) -> Result<Option<u32>, Error> {
    let used = query(c, t, format!("B#{sender}"), "S#", true)
        .await
        .map_err(Error::State)?;
    let cutoff = ms(at - chrono::Duration::hours(24));
    let taken: std::collections::HashSet<u32> = used
        .iter()
        .filter(|i| get_n(i, "used_at").is_some_and(|u| u > cutoff))
        .filter_map(|i| get_s(i, "sk")?.strip_prefix("S#")?.parse().ok())
        .collect();
    // Slots past the limit count too (a run with a higher cap used them).
    if taken.len() >= limit as usize {
        return Ok(None);
    }
    let free: Vec<u32> = (0..limit).filter(|k| !taken.contains(k)).collect();
    Ok((!free.is_empty()).then(|| free[rand::random_range(0..free.len())]))
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

/// Whether a pending intent's writer may still be at work: the run holding the lease now, a
/// help-desk command (no lease) within its intent's life, or this process. Any other pending
/// intent is a dead run's, which the next run settles from what Cognito shows.
fn alive(holder: &str, intent_at: i64, lock: &Option<(String, i64)>, me: &str) -> bool {
    let now = ms(Utc::now());
    holder == me
        || lock
            .as_ref()
            .is_some_and(|(h, expires)| h == holder && *expires > now)
        || (holder.starts_with("desk:") && intent_at > now - DESK_INTENT_LIFE.num_milliseconds())
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

/// Takes the run lock: a lease item written only if there is none or it has expired, renewed
/// every third of its length while the process lives.
fn take_lease(rt: &tokio::runtime::Runtime, c: &Db, table: &Table) -> Result<Lease, Error> {
    let holder = holder_id();
    let lease_ms = i64::try_from(table.lease.as_millis()).unwrap_or(i64::MAX);
    let (c2, t, h) = (c.clone(), table.name.clone(), holder.clone());
    let taken_at = ms(Utc::now());
    let taken = wait(rt, async move {
        let now = taken_at;
        c2.call(
            c2.put_item()
                .table_name(&t)
                .item("pk", s(LOCK))
                .item("sk", s(LOCK))
                .item("holder", s(&h))
                .item("taken_at", n(now))
                .item("expires_at", n(now + lease_ms))
                .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
                .expression_attribute_values(":now", n(now)),
        )
        .await
        .map(drop)
        .map_err(|e| {
            if conditional_failed(&e) {
                None
            } else {
                Some(sdk_error("cannot take the run lock", &e))
            }
        })
    });
    match taken {
        Ok(()) => {}
        Err(Some(e)) => return Err(Error::State(format!("{e}; this run changed nothing"))),
        Err(None) => {
            let (c2, t) = (c.clone(), table.name.clone());
            let held = wait(rt, async move { lock_of(&c2, &t).await }).unwrap_or(None);
            let who = held.as_ref().map(|(h, _)| h.clone());
            // Our own write, whose answer was lost and whose retry found it: ours.
            if who.as_deref() == Some(holder.as_str()) {
                return Ok(renew_lease(rt, c, table, holder, lease_ms, taken_at));
            }
            let left = held.map(|(_, e)| (e - ms(Utc::now())).max(0) / 1000);
            return Err(Error::Locked(format!(
                "another cognito-onboard run holds the lease on {DYNAMODB}{} ({}; it expires in \
                 {} s unless renewed); this run changed nothing",
                table.name,
                who.map_or("holder unknown".to_string(), |w| format!("held by {w}")),
                left.map_or("?".to_string(), |l| l.to_string()),
            )));
        }
    }
    Ok(renew_lease(rt, c, table, holder, lease_ms, taken_at))
}

/// The lease, taken at `taken_at`, renewed every third of its length while the process lives.
fn renew_lease(
    rt: &tokio::runtime::Runtime,
    c: &Db,
    table: &Table,
    holder: String,
    lease_ms: i64,
    taken_at: i64,
) -> Lease {
    let lost = Arc::new(AtomicBool::new(false));
    let valid_until = Arc::new(std::sync::atomic::AtomicI64::new(
        taken_at + lease_ms * 5 / 6,
    ));
    let (c2, t, h, lost2, valid2) = (
        c.clone(),
        table.name.clone(),
        holder.clone(),
        lost.clone(),
        valid_until.clone(),
    );
    let every = table.lease / 3;
    let renewal = rt.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let now = ms(Utc::now());
            // A renewal that takes longer than this is no renewal: the lease may be gone.
            let renewed = tokio::time::timeout(
                every,
                c2.call(
                    c2.update_item()
                        .table_name(&t)
                        .key("pk", s(LOCK))
                        .key("sk", s(LOCK))
                        .update_expression("SET expires_at = :e")
                        .condition_expression("holder = :h")
                        .expression_attribute_values(":e", n(now + lease_ms))
                        .expression_attribute_values(":h", s(&h)),
                ),
            )
            .await;
            let Ok(renewed) = renewed else {
                tracing::warn!("the run lock's renewal on {t} took too long; trying again");
                continue;
            };
            match renewed {
                Ok(_) => valid2.store(now + lease_ms * 5 / 6, Ordering::SeqCst),
                Err(e) if conditional_failed(&e) => {
                    tracing::error!("the run lock's lease on {t} was taken over by another run");
                    lost2.store(true, Ordering::SeqCst);
                    return;
                }
                // A missed renewal is retried at the next tick; the lease outlasts two.
                Err(e) => tracing::warn!("{}", sdk_error("cannot renew the run lock", &e)),
            }
        }
    });
    Lease {
        holder,
        lost,
        valid_until,
        renewal,
    }
}

const DYNAMODB: &str = super::DYNAMODB_SCHEME;

/// This process, by host, PID and a random part.
fn holder_id() -> String {
    format!(
        "{}:{}:{:08x}",
        hostname(),
        std::process::id(),
        rand::random::<u32>()
    )
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(keys: &[(&str, &str)], types: &[(&str, &str)]) -> bool {
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let types = types
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        state_key_schema(&keys, &types)
    }

    #[test]
    fn only_the_states_own_key_schema_is_taken_for_a_table_init_made() {
        let strings = [("pk", "S"), ("sk", "S")];
        assert!(schema(&[("pk", "HASH"), ("sk", "RANGE")], &strings));
        assert!(schema(&[("sk", "RANGE"), ("pk", "HASH")], &strings));
        assert!(!schema(&[("pk", "HASH")], &strings), "no range key");
        assert!(!schema(&[("id", "HASH"), ("sk", "RANGE")], &strings));
        assert!(!schema(&[("sk", "HASH"), ("pk", "RANGE")], &strings));
        assert!(!schema(
            &[("pk", "HASH"), ("sk", "RANGE")],
            &[("pk", "S"), ("sk", "N")]
        ));
    }
}
