//! The store's plumbing: the SDK client of the table (the tool's attempt timeout, the SDK's own
//! retries off), the state's own runtime and how a sync caller waits on it, DynamoDB's answers
//! in words, and the few reads and writes every part of the store makes (one item, a prefix of
//! a partition, a batch). Must not know what an item means: that is `items`'.

use std::future::Future;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::Client;

use super::items::{Item, s};
use crate::error::Error;
use crate::state::Table;
use crate::state::paced::Db;

pub(super) fn sdk_error<E, R>(what: &str, e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
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
pub(super) fn conditional_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

/// The client for `table`, with the tool's attempt timeout and the SDK's retries off: the
/// executor retries and paces every call ([`Db::call`]).
pub(super) async fn client(table: &Table) -> Client {
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
pub(super) struct Rt(Option<tokio::runtime::Runtime>);

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

pub(super) fn runtime() -> Result<Rt, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("state")
        .enable_all()
        .build()
        .map(|rt| Rt(Some(rt)))
        .map_err(|e| Error::State(format!("cannot start the state's runtime: {e}")))
}

/// Runs `f` on `runtime` and waits for it from any thread, the tool's runtime included.
pub(super) fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    f: impl Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().expect("the state's runtime stopped")
}

/// One item, read consistently.
pub(super) async fn read_item(c: &Db, t: &str, pk: &str, sk: &str) -> Result<Option<Item>, String> {
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
pub(super) async fn query(
    c: &Db,
    table: &str,
    pk: String,
    prefix: &str,
    consistent: bool,
) -> Result<Vec<Item>, String> {
    c.all(query_of(c, table, &pk, prefix).consistent_read(consistent))
        .await
        .map_err(|e| sdk_error("cannot read the state", &e))
}

/// The query for the items of `pk` whose sort key starts with `prefix`.
fn query_of(
    c: &Db,
    table: &str,
    pk: &str,
    prefix: &str,
) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    c.query()
        .table_name(table)
        .key_condition_expression("pk = :p AND begins_with(sk, :s)")
        .expression_attribute_values(":p", s(pk))
        .expression_attribute_values(":s", s(prefix))
}

/// One page of [`query`] from `start`, and where the next starts.
pub(super) async fn query_page(
    c: &Db,
    table: &str,
    pk: String,
    prefix: &str,
    start: Option<Item>,
) -> Result<(Vec<Item>, Option<Item>), String> {
    // A page of 1 MB is a few thousand items, held parsed at once: 500 keep a walk over a large
    // pool small, and cost no more capacity (a read is charged by its size).
    c.page(
        query_of(c, table, &pk, prefix)
            .consistent_read(true)
            .limit(PAGE_ITEMS),
        start,
    )
    .await
    .map_err(|e| sdk_error("cannot read the state", &e))
}

/// Items a page of a walk over the table holds at most.
const PAGE_ITEMS: i32 = 500;

/// Puts `items`, 25 to a request, until DynamoDB has taken every one.
pub(super) async fn batch_put(c: &Db, t: &str, items: Vec<Item>) -> Result<(), String> {
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
