//! The DynamoDB state's one way to call its table: each request through the executor, paced in
//! the `StateTable` category and retried there like Cognito's calls (throttling, passing
//! faults), and bound to its operation by its type, once. Must not know what an item means:
//! that is `dynamo`'s.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::{
    batch_write_item, create_table, delete_item, describe_table, get_item, put_item, query, scan,
    transact_write_items, update_item, update_time_to_live,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::http::Response;
use futures_util::future::BoxFuture;

use crate::cognito::{Fault, FaultKind, fault_of};
use crate::executor::{Cancel, Executor, RetryPolicy};
use crate::limiter::{Category, Limiter, Op, QuotaSource, Quotas, StateOp};

type Item = HashMap<String, AttributeValue>;

/// The state's retries: more attempts than Cognito's, with a shorter first wait, because a
/// state write holds up a row whose Cognito call is already paid for.
const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 10,
    base: Duration::from_millis(50),
    cap: Duration::from_secs(5),
};

/// What a request comes back with: its output, or the SDK's error for the caller to read.
pub(super) type Answer<R> =
    Result<<R as Request>::Output, SdkError<<R as Request>::Error, Response>>;

/// One request of the table, ready to send (and to send again: builders are cloned per attempt).
pub(super) trait Request: Clone + Send + Sync + 'static {
    const OP: StateOp;
    type Output: Send;
    type Error: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static;
    fn go(
        self,
    ) -> impl Future<Output = Result<Self::Output, SdkError<Self::Error, Response>>> + Send;
    /// A fault hidden in an answer: a transaction cancelled only because DynamoDB was
    /// throttling or another transaction held an item is retried like a throttled call.
    fn hidden_fault(_e: &Self::Error) -> Option<Fault> {
        None
    }
}

macro_rules! requests {
    ($($module:ident :: $builder:ident -> $output:ident, $error:ident => $op:ident;)*) => {$(
        impl Request for $module::builders::$builder {
            const OP: StateOp = StateOp::$op;
            type Output = $module::$output;
            type Error = $module::$error;
            fn go(
                self,
            ) -> impl Future<Output = Result<Self::Output, SdkError<Self::Error, Response>>> + Send
            {
                self.send()
            }
        }
    )*};
}

requests! {
    create_table::CreateTableFluentBuilder -> CreateTableOutput, CreateTableError => CreateTable;
    describe_table::DescribeTableFluentBuilder -> DescribeTableOutput, DescribeTableError => DescribeTable;
    update_time_to_live::UpdateTimeToLiveFluentBuilder -> UpdateTimeToLiveOutput, UpdateTimeToLiveError => UpdateTimeToLive;
    get_item::GetItemFluentBuilder -> GetItemOutput, GetItemError => GetItem;
    query::QueryFluentBuilder -> QueryOutput, QueryError => Query;
    scan::ScanFluentBuilder -> ScanOutput, ScanError => Scan;
    put_item::PutItemFluentBuilder -> PutItemOutput, PutItemError => PutItem;
    update_item::UpdateItemFluentBuilder -> UpdateItemOutput, UpdateItemError => UpdateItem;
    delete_item::DeleteItemFluentBuilder -> DeleteItemOutput, DeleteItemError => DeleteItem;
    batch_write_item::BatchWriteItemFluentBuilder -> BatchWriteItemOutput, BatchWriteItemError => BatchWriteItem;
}

impl Request for transact_write_items::builders::TransactWriteItemsFluentBuilder {
    const OP: StateOp = StateOp::TransactWriteItems;
    type Output = transact_write_items::TransactWriteItemsOutput;
    type Error = TransactWriteItemsError;
    fn go(
        self,
    ) -> impl Future<Output = Result<Self::Output, SdkError<Self::Error, Response>>> + Send {
        self.send()
    }

    fn hidden_fault(e: &TransactWriteItemsError) -> Option<Fault> {
        let TransactWriteItemsError::TransactionCanceledException(x) = e else {
            return None;
        };
        let reasons: Vec<&str> = x
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None"))
            .collect();
        busy_code(&reasons).map(|code| Fault {
            kind: FaultKind::Service { http_status: 400 },
            code: Some(code.into()),
            message: format!("transaction cancelled: {}", reasons.join(", ")),
        })
    }
}

/// The error a cancelled transaction stands for when every reason it gives is DynamoDB's own
/// (throttling, another transaction holding an item) and none is an item's condition: a
/// throttle if any reason is one, else a conflict. `None` when a condition failed (the caller's
/// to read) or no reason is given.
pub(super) fn busy_code(reasons: &[&str]) -> Option<&'static str> {
    const THROTTLED: [&str; 2] = ["ThrottlingError", "ProvisionedThroughputExceeded"];
    let given: Vec<&str> = reasons.iter().copied().filter(|r| *r != "None").collect();
    let busy = |r: &&str| THROTTLED.contains(r) || *r == "TransactionConflict";
    if given.is_empty() || !given.iter().all(busy) {
        return None;
    }
    Some(if given.iter().any(|r| THROTTLED.contains(r)) {
        "ThrottlingException"
    } else {
        "TransactionConflictException"
    })
}

/// A request whose answer comes in pages.
pub(super) trait Paged: Request {
    fn starting_at(self, key: Option<Item>) -> Self;
    fn page(out: &Self::Output) -> (&[Item], Option<&Item>);
}

impl Paged for query::builders::QueryFluentBuilder {
    fn starting_at(self, key: Option<Item>) -> Self {
        self.set_exclusive_start_key(key)
    }
    fn page(out: &query::QueryOutput) -> (&[Item], Option<&Item>) {
        (out.items(), out.last_evaluated_key())
    }
}

impl Paged for scan::builders::ScanFluentBuilder {
    fn starting_at(self, key: Option<Item>) -> Self {
        self.set_exclusive_start_key(key)
    }
    fn page(out: &scan::ScanOutput) -> (&[Item], Option<&Item>) {
        (out.items(), out.last_evaluated_key())
    }
}

/// The table's client and the executor its calls go through. Derefs to the client, so a
/// request is built as the SDK's documentation shows and sent with [`Db::call`].
#[derive(Clone)]
pub(super) struct Db {
    client: Client,
    exec: Arc<Executor>,
}

impl std::ops::Deref for Db {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Db {
    /// The client with an executor of its own: the state's calls have their own category, and
    /// must go on when the run is cancelled (a settle after Ctrl-C is what makes a re-run safe).
    pub(super) fn new(client: Client, rate: f64) -> Db {
        Db::retrying(client, rate, RETRY)
    }

    fn retrying(client: Client, rate: f64, retry: RetryPolicy) -> Db {
        let mut quotas = Quotas::default();
        quotas.set(Category::StateTable, rate, QuotaSource::ConfigFile);
        Db {
            client,
            exec: Arc::new(Executor::new(
                Arc::new(Limiter::new(&quotas, 1.0)),
                retry,
                Arc::new(Cancel::default()),
            )),
        }
    }

    /// Sends `request`: paced, and retried on throttling and passing faults as the executor
    /// classifies them. An answer about the items (a condition that did not hold, a cancelled
    /// transaction, a missing table) is not retried: it comes back at once, as the SDK's error,
    /// for the caller to read. So does the last fault once the attempts are spent.
    ///
    /// Boxed: the executor's futures nest deep, and the state's callers nest them further (a
    /// lane's job inside an intent inside a row), past what the compiler lays out in a release
    /// build.
    pub(super) fn call<R: Request>(&self, request: R) -> BoxFuture<'_, Answer<R>> {
        Box::pin(self.send(request))
    }

    async fn send<R: Request>(&self, request: R) -> Answer<R> {
        let op = Op::State(R::OP);
        let last = Mutex::new(None);
        let done = self
            .exec
            .call(op, || {
                let attempt = request.clone().go();
                let last = &last;
                async move {
                    let e = match attempt.await {
                        Ok(out) => return Ok(out),
                        Err(e) => e,
                    };
                    let fault = e
                        .as_service_error()
                        .and_then(R::hidden_fault)
                        .unwrap_or_else(|| fault_of(&e));
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    Err(fault)
                }
            })
            .await;
        done.map(|d| d.value).map_err(|_| {
            last.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("a failed call kept its error")
        })
    }

    /// Every item a query or a scan finds, a page a call.
    pub(super) async fn all<R: Paged>(
        &self,
        request: R,
    ) -> Result<Vec<Item>, SdkError<R::Error, Response>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (found, next) = self.page(request.clone(), start.clone()).await?;
            items.extend(found);
            match next {
                Some(key) => start = Some(key),
                None => return Ok(items),
            }
        }
    }

    /// One page of `request` from `start`, and where the next starts (none at the end).
    pub(super) async fn page<R: Paged>(
        &self,
        request: R,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), SdkError<R::Error, Response>> {
        let page = self.call(request.starting_at(start.clone())).await?;
        let (found, next) = R::page(&page);
        let next = match next {
            // The same key again would page for ever (the SDK's paginators stop there too).
            Some(key) if !key.is_empty() && start.as_ref() != Some(key) => Some(key.clone()),
            _ => None,
        };
        Ok((found.to_vec(), next))
    }

    /// The calls that reached the table, and the throttles it answered, by category.
    pub(super) fn counts(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        (self.exec.calls_by_name(), self.exec.throttles_by_name())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    /// A `PutItem` that answers from a script: `Ok`, or the error code DynamoDB would send.
    #[derive(Clone)]
    struct Scripted(Arc<Mutex<VecDeque<Result<(), &'static str>>>>);

    impl Scripted {
        fn new(answers: &[Result<(), &'static str>]) -> Self {
            Scripted(Arc::new(Mutex::new(answers.iter().copied().collect())))
        }
        fn left(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl Request for Scripted {
        const OP: StateOp = StateOp::PutItem;
        type Output = PutItemOutput;
        type Error = PutItemError;
        fn go(
            self,
        ) -> impl Future<Output = Result<PutItemOutput, SdkError<PutItemError, Response>>> + Send
        {
            let next = self.0.lock().unwrap().pop_front().expect("an answer left");
            async move {
                next.map(|()| PutItemOutput::builder().build())
                    .map_err(|code| {
                        let meta = ErrorMetadata::builder()
                            .code(code)
                            .message("scripted")
                            .build();
                        let status = if code == "InternalServerError" {
                            500
                        } else {
                            400
                        };
                        SdkError::service_error(
                            PutItemError::generic(meta),
                            Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
                        )
                    })
            }
        }
    }

    fn db() -> Db {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        // The state's attempts, with waits short enough for a unit test.
        let retry = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            ..RETRY
        };
        Db::retrying(Client::from_conf(config), 1000.0, retry)
    }

    #[tokio::test]
    async fn throttles_and_passing_faults_are_retried_and_counted_in_the_states_category() {
        let db = db();
        let put = Scripted::new(&[
            Err("ProvisionedThroughputExceededException"),
            Err("InternalServerError"),
            Err("ThrottlingException"),
            Ok(()),
        ]);
        assert!(db.call(put.clone()).await.is_ok());
        assert_eq!(put.left(), 0);
        let (calls, throttles) = db.counts();
        assert_eq!(calls.get("StateTable"), Some(&4));
        assert_eq!(throttles.get("StateTable"), Some(&2));
    }

    #[tokio::test]
    async fn an_answer_about_the_items_comes_back_at_once_and_a_fault_after_the_last_attempt() {
        let db = db();
        let put = Scripted::new(&[Err("ConditionalCheckFailedException"), Ok(())]);
        let e = db.call(put.clone()).await.unwrap_err();
        assert_eq!(e.code(), Some("ConditionalCheckFailedException"));
        assert_eq!(put.left(), 1, "not retried");
        let put = Scripted::new(&[Err("ThrottlingException"); 10]);
        let e = db.call(put.clone()).await.unwrap_err();
        assert_eq!(e.code(), Some("ThrottlingException"), "the last fault");
        assert_eq!(put.left(), 0, "all {} attempts made", RETRY.max_attempts);
    }

    #[test]
    fn a_transaction_cancelled_only_for_capacity_or_a_conflict_is_a_fault() {
        let cancelled = |codes: &[&str]| {
            let mut x = TransactionCanceledException::builder();
            for code in codes {
                x = x.cancellation_reasons(CancellationReason::builder().code(*code).build());
            }
            TransactWriteItemsError::TransactionCanceledException(x.build())
        };
        let code = |codes: &[&str]| {
            <transact_write_items::builders::TransactWriteItemsFluentBuilder as Request>::hidden_fault(
                &cancelled(codes),
            )
            .and_then(|f| f.code)
        };
        assert_eq!(
            code(&["None", "ThrottlingError"]).as_deref(),
            Some("ThrottlingException")
        );
        assert_eq!(
            code(&["ProvisionedThroughputExceeded", "None"]).as_deref(),
            Some("ThrottlingException")
        );
        assert_eq!(
            code(&["TransactionConflict"]).as_deref(),
            Some("TransactionConflictException")
        );
        assert_eq!(
            code(&["TransactionConflict", "ThrottlingError"]).as_deref(),
            Some("ThrottlingException")
        );
        // A condition that failed is an answer, whatever else went wrong with the transaction.
        assert_eq!(code(&["ConditionalCheckFailed", "ThrottlingError"]), None);
        assert_eq!(code(&["None", "None"]), None);
    }
}
