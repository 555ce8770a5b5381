//! Fault-injecting HTTP proxy that stands between the CLI under test and moto, playing the part of
//! the real Cognito front door: per-category request quotas, seeded faults (500s, resets, delays),
//! the daily email limit, round-trip latency, and counters of what actually reached "Cognito".
//! Every proxy also checks every request against AWS's API models (`model.rs`) before anything
//! else, because moto accepts requests the real services refuse.
//!
//! Invalid requests fail the test. An invalid request is answered as AWS would (400
//! `InvalidParameterException` for Cognito, `ValidationException` for DynamoDB, an XML
//! `ValidationError` for SES), never reaches moto, and is recorded: [`Proxy::violations`].
//! Dropping a proxy that recorded violations panics with their list, unless the test declared
//! that it sends invalid requests on purpose with [`ProxyConfig::expect_invalid_requests`] (or,
//! on a running proxy such as `Moto::front()`, [`Proxy::expect_invalid_requests`]); such a test
//! asserts on [`Proxy::violations`] itself.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::model::{self, Checked, Service, Violation};

/// Cognito's documented per-account request quotas: (category, requests per second, operations).
pub const COGNITO_CATEGORIES: &[(&str, f64, &[&str])] = &[
    ("UserCreation", 50.0, &["AdminCreateUser"]),
    ("UserRead", 120.0, &["AdminGetUser"]),
    ("UserList", 30.0, &["ListUsers", "ListUsersInGroup"]),
    (
        "UserAccountRecovery",
        30.0,
        &["AdminSetUserPassword", "AdminResetUserPassword"],
    ),
    (
        "UserUpdate",
        25.0,
        &[
            "AdminUpdateUserAttributes",
            "AdminDeleteUserAttributes",
            "AdminDisableUser",
            "AdminEnableUser",
            "AdminDeleteUser",
        ],
    ),
    (
        "UserResourceUpdate",
        25.0,
        &["AdminAddUserToGroup", "AdminRemoveUserFromGroup"],
    ),
    (
        "UserPoolRead",
        15.0,
        &["DescribeUserPool", "GetProvisionedLimit"],
    ),
    (
        "UserPoolResourceRead",
        20.0,
        &["GetGroup", "ListGroups", "DescribeUserPoolClient"],
    ),
    (
        "UserAuthentication",
        120.0,
        &[
            "AdminInitiateAuth",
            "AdminRespondToAuthChallenge",
            "InitiateAuth",
        ],
    ),
];

/// The message Cognito returns when the default (Cognito-sent) email quota is exhausted.
pub const EMAIL_LIMIT_MESSAGE: &str = "Exceeded daily email limit for the operation or the account. If a higher limit is required, please configure your user pool to use your own Amazon SES configuration for sending email.";

const TARGET_PREFIX: &str = "AWSCognitoIdentityProviderService.";
const AMZ_JSON: &str = "application/x-amz-json-1.1";
/// Past this, moto is taken to be hung; the client gets a 502 instead of waiting forever.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The quota category Cognito puts `operation` in, or `None` for an uncategorised (never throttled) one.
pub fn category_of(operation: &str) -> Option<&'static str> {
    COGNITO_CATEGORIES
        .iter()
        .find(|(_, _, ops)| ops.contains(&operation))
        .map(|(category, _, _)| *category)
}

/// A token bucket's shape: refills continuously at `rate` tokens per second up to `burst` tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quota {
    /// Sustained requests per second.
    pub rate: f64,
    /// Bucket capacity; a full bucket lets this many requests through at once. Below 1, nothing passes.
    pub burst: f64,
}

impl Quota {
    /// A quota of `rate` requests per second with a burst of `rate`, as Cognito behaves.
    pub fn per_second(rate: f64) -> Self {
        Quota { rate, burst: rate }
    }
}

/// What an injected fault does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer 500 `InternalErrorException` without forwarding.
    InternalError,
    /// Answer 400 `AccessDeniedException` without forwarding, as IAM does for a missing permission.
    AccessDenied,
    /// Drop the connection (TCP reset, no response) without forwarding: moto never sees the request.
    ResetBeforeForward,
    /// Forward, let moto process it, then drop the connection (TCP reset) instead of answering.
    ResetAfterForward,
    /// Sleep this long, then forward and answer normally. Meant to outlast the client's timeout; the
    /// request still reaches moto afterwards even if the client has given up (and perhaps retried).
    Delay(Duration),
    /// Forward at once, then sleep this long before answering: moto has processed the request well
    /// before a client with a shorter timeout gives up on it.
    DelayAfterForward(Duration),
    /// Forward, let moto process it, then answer 500 `InternalErrorException`: a write that was
    /// made although the answer says it failed, as Cognito may do.
    InternalErrorAfterForward,
    /// Answer 400 with this error code without forwarding, as Cognito does when a Lambda trigger
    /// refuses one user (`UserLambdaValidationException`, ...).
    Refuse(&'static str),
    /// Answer a DynamoDB `TransactWriteItems` with `TransactionCanceledException` and these
    /// cancellation reasons, one per item, without forwarding (DynamoDB's way of saying an item
    /// was throttled or in another transaction).
    CancelTransaction(&'static [&'static str]),
    /// Answer 200 with this JSON body without forwarding: what AWS documents for an operation
    /// moto does not implement (GetLogDeliveryConfiguration, GetSuppressedDestination, ...).
    Answer(&'static str),
    /// Answer this HTTP status and error code without forwarding: AWS's documented error for an
    /// operation moto does not implement (SES v2's 404 `NotFoundException` for an address not on
    /// the suppression list, its 403 `AccessDeniedException` without the permission).
    Status(u16, &'static str),
}

/// A fault injected into a fraction of the requests for one operation, or for all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// The operation name (`AdminCreateUser`), or `None` for every operation.
    pub operation: Option<String>,
    /// What happens to a request the rule hits.
    pub kind: FaultKind,
    /// The chance, from 0 to 1, that a matching request is hit.
    pub probability: f64,
    /// Only requests for this username (or email, where email is the username).
    pub username: Option<String>,
    /// At most this many hits in a row on one request and its retries, so that a test of
    /// retries is not left to the odds of a long run of hits outlasting the client's attempts.
    pub in_a_row: Option<u32>,
}

impl FaultRule {
    /// A rule for `operation` (`None` = all operations).
    pub fn new(operation: Option<&str>, kind: FaultKind, probability: f64) -> Self {
        FaultRule {
            operation: operation.map(str::to_owned),
            kind,
            probability,
            username: None,
            in_a_row: None,
        }
    }

    fn matches(&self, operation: &str, username: Option<&str>) -> bool {
        self.operation.as_deref().is_none_or(|op| op == operation)
            && self
                .username
                .as_deref()
                .is_none_or(|only| username == Some(only))
    }
}

/// How the proxy behaves. Built with [`ProxyConfig::new`] and the chained setters.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where moto listens.
    pub upstream: SocketAddr,
    /// Seed for the fault draws; the same seed and the same requests give the same faults.
    pub seed: u64,
    /// Round-trip time added to every request: half before it is looked at, half before the answer.
    pub latency: Duration,
    /// Token bucket per category name (see [`COGNITO_CATEGORIES`]); a category absent here is unlimited.
    pub quotas: HashMap<String, Quota>,
    /// Fault rules, tried in order; the first that hits a request decides its fault.
    pub faults: Vec<FaultRule>,
    /// How many invitation emails may be sent before `LimitExceededException`; `None` = unlimited.
    pub email_limit: Option<u64>,
    /// The test sends requests that break AWS's API models on purpose: they are still refused
    /// and recorded, but dropping the proxy does not panic over them.
    pub expect_invalid: bool,
}

impl ProxyConfig {
    /// A transparent proxy to `upstream`: seed 0, no latency, no quotas, no faults, no email limit.
    pub fn new(upstream: SocketAddr) -> Self {
        ProxyConfig {
            upstream,
            seed: 0,
            latency: Duration::ZERO,
            quotas: HashMap::new(),
            faults: Vec::new(),
            email_limit: None,
            expect_invalid: false,
        }
    }

    /// Declares that the test sends invalid requests on purpose (see the module's header).
    pub fn expect_invalid_requests(mut self) -> Self {
        self.expect_invalid = true;
        self
    }

    /// Sets the fault seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the round-trip latency added to every request.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Enforces Cognito's default quota for every category (burst = rate), replacing any set before.
    pub fn cognito_default_quotas(mut self) -> Self {
        for (category, rate, _) in COGNITO_CATEGORIES {
            self.quotas
                .insert((*category).to_owned(), Quota::per_second(*rate));
        }
        self
    }

    /// Enforces `rate` requests per second (burst = rate) on `category`.
    ///
    /// # Panics
    /// If `category` is not one of [`COGNITO_CATEGORIES`], so that a typo cannot silently disable a quota.
    pub fn quota(self, category: &str, rate: f64) -> Self {
        self.quota_with_burst(category, rate, rate)
    }

    /// Enforces `rate` requests per second with a bucket of `burst` on `category`.
    ///
    /// # Panics
    /// If `category` is not one of [`COGNITO_CATEGORIES`].
    pub fn quota_with_burst(mut self, category: &str, rate: f64, burst: f64) -> Self {
        assert!(
            COGNITO_CATEGORIES.iter().any(|(c, _, _)| *c == category),
            "unknown Cognito quota category {category:?}"
        );
        self.quotas
            .insert(category.to_owned(), Quota { rate, burst });
        self
    }

    /// Adds a fault rule for `operation` (`None` = all operations) hitting with `probability`.
    pub fn fault(mut self, operation: Option<&str>, kind: FaultKind, probability: f64) -> Self {
        self.faults
            .push(FaultRule::new(operation, kind, probability));
        self
    }

    /// Caps the rule added last at `hits` in a row on one request and its retries.
    ///
    /// # Panics
    /// If no rule was added before.
    pub fn in_a_row_at_most(mut self, hits: u32) -> Self {
        self.faults
            .last_mut()
            .expect("in_a_row_at_most follows a fault")
            .in_a_row = Some(hits);
        self
    }

    /// A fault for one operation on one username only, every time.
    pub fn fault_for(mut self, operation: &str, username: &str, kind: FaultKind) -> Self {
        let mut rule = FaultRule::new(Some(operation), kind, 1.0);
        rule.username = Some(username.to_owned());
        self.faults.push(rule);
        self
    }

    /// Allows `limit` invitation emails, after which message-sending calls get `LimitExceededException`.
    pub fn email_limit(mut self, limit: u64) -> Self {
        self.email_limit = Some(limit);
        self
    }
}

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// moto answered with this HTTP status, and the client got that answer.
    Forwarded(u16),
    /// Refused with `TooManyRequestsException`; never reached moto.
    Throttled,
    /// Refused with the email `LimitExceededException`; never reached moto.
    EmailLimited,
    /// Answered with an injected 500; never reached moto.
    InternalError,
    /// Connection reset before forwarding; never reached moto.
    ResetBeforeForward,
    /// moto answered with this status, but the client's connection was reset instead.
    ResetAfterForward(u16),
    /// Answered late (by a [`FaultKind::Delay`] or [`FaultKind::DelayAfterForward`]) with moto's status.
    Delayed(u16),
    /// moto could not be reached or did not answer in time; the client got a 502.
    UpstreamFailed,
    /// Broke the service's API model: refused with a validation error; never reached moto.
    Invalid,
}

impl Outcome {
    /// moto's status if the request reached it.
    pub fn upstream_status(self) -> Option<u16> {
        match self {
            Outcome::Forwarded(s) | Outcome::ResetAfterForward(s) | Outcome::Delayed(s) => Some(s),
            _ => None,
        }
    }

    /// Whether moto processed the request (whatever the client saw).
    pub fn reached_upstream(self) -> bool {
        self.upstream_status().is_some()
    }

    /// Whether moto processed the request and answered 2xx.
    pub fn succeeded_upstream(self) -> bool {
        self.upstream_status()
            .is_some_and(|s| (200..300).contains(&s))
    }

    /// Whether an injected fault (500, reset or delay) decided this outcome.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            Outcome::InternalError
                | Outcome::ResetBeforeForward
                | Outcome::ResetAfterForward(_)
                | Outcome::Delayed(_)
        )
    }
}

/// One request, as the proxy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When its fate was decided (after the inbound half of the latency), since the proxy started
    /// or its stats were last reset. Events are listed in completion order, so `at` is not sorted.
    pub at: Duration,
    /// The operation name, e.g. `AdminCreateUser`: the `X-Amz-Target`'s, a query request's
    /// `Action`, or a REST request's by its method and path (empty if none of those).
    pub operation: String,
    /// Its quota category, if any.
    pub category: Option<&'static str>,
    /// What became of it.
    pub outcome: Outcome,
}

/// Counters for one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Requests the proxy received.
    pub received: u64,
    /// Requests moto answered (any status), including reset-after-forward and delayed ones.
    pub forwarded: u64,
    /// Requests moto answered 2xx.
    pub succeeded: u64,
    /// Requests refused with `TooManyRequestsException`.
    pub throttled: u64,
    /// Requests hit by an injected fault (500, reset before or after forwarding, delay).
    pub faulted: u64,
    /// Requests refused by the email limit.
    pub email_limited: u64,
    /// Requests answered 502 because moto failed.
    pub upstream_failed: u64,
    /// Requests refused because they break the service's API model.
    pub invalid: u64,
}

/// A snapshot of what the proxy has seen since it started or its stats were last reset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Counters by operation name.
    pub per_operation: BTreeMap<String, OpStats>,
    /// `AdminCreateUser` calls without `MessageAction: RESEND` that moto answered 2xx.
    pub creates: u64,
    /// `AdminCreateUser` calls with `MessageAction: RESEND` that moto answered 2xx.
    pub resends: u64,
    /// Lower-cased username → message-sending creates and resends that moto answered 2xx.
    pub invitations_by_username: BTreeMap<String, u64>,
    /// Every distinct non-empty password seen in a request body, sorted.
    pub secrets: Vec<String>,
    /// Every request's fate, in completion order.
    pub events: Vec<Event>,
}

impl Stats {
    /// The counters for `operation` (zero if never seen).
    pub fn op(&self, operation: &str) -> OpStats {
        self.per_operation
            .get(operation)
            .copied()
            .unwrap_or_default()
    }

    /// Requests for `operation` the proxy received.
    pub fn received(&self, operation: &str) -> u64 {
        self.op(operation).received
    }

    /// Requests for `operation` that reached moto.
    pub fn forwarded(&self, operation: &str) -> u64 {
        self.op(operation).forwarded
    }

    /// Requests for `operation` that moto answered 2xx.
    pub fn succeeded(&self, operation: &str) -> u64 {
        self.op(operation).succeeded
    }

    /// Requests for `operation` refused with `TooManyRequestsException`.
    pub fn throttled(&self, operation: &str) -> u64 {
        self.op(operation).throttled
    }

    /// Requests for `operation` hit by an injected fault.
    pub fn faulted(&self, operation: &str) -> u64 {
        self.op(operation).faulted
    }

    /// Requests for `operation` refused because they break the service's API model.
    pub fn invalid(&self, operation: &str) -> u64 {
        self.op(operation).invalid
    }

    /// Requests refused with `TooManyRequestsException` across the operations of `category`.
    pub fn throttled_in(&self, category: &str) -> u64 {
        self.sum_in(category, |s| s.throttled)
    }

    /// Requests that reached moto across the operations of `category`.
    pub fn forwarded_in(&self, category: &str) -> u64 {
        self.sum_in(category, |s| s.forwarded)
    }

    /// Requests received across the operations of `category`.
    pub fn received_in(&self, category: &str) -> u64 {
        self.sum_in(category, |s| s.received)
    }

    fn sum_in(&self, category: &str, field: impl Fn(&OpStats) -> u64) -> u64 {
        self.per_operation
            .iter()
            .filter(|(op, _)| category_of(op) == Some(category))
            .map(|(_, s)| field(s))
            .sum()
    }

    /// Invitation emails sent in total (message-sending creates and resends that moto answered 2xx).
    pub fn invitations(&self) -> u64 {
        self.invitations_by_username.values().sum()
    }

    /// Invitation emails sent to `username` (compared lower-cased).
    pub fn invitations_to(&self, username: &str) -> u64 {
        self.invitations_by_username
            .get(&username.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// The captured secrets that occur in `text`, to assert that the tool's output leaks none.
    pub fn leaked_secrets<'a>(&'a self, text: &str) -> Vec<&'a str> {
        self.secrets
            .iter()
            .filter(|s| text.contains(s.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Requests of `category` that reached moto, bucketed by whole second of [`Event::at`].
    pub fn forwarded_per_second(&self, category: &str) -> Vec<u64> {
        let mut buckets: Vec<u64> = Vec::new();
        for e in self.reached_in(category) {
            let second = usize::try_from(e.at.as_secs()).unwrap_or(usize::MAX);
            if second >= buckets.len() {
                buckets.resize(second.saturating_add(1), 0);
            }
            if let Some(slot) = buckets.get_mut(second) {
                *slot += 1;
            }
        }
        buckets
    }

    /// The most requests of `category` that reached moto within any sliding `window`.
    pub fn max_forwarded_in_window(&self, category: &str, window: Duration) -> usize {
        let mut times: Vec<Duration> = self.reached_in(category).map(|e| e.at).collect();
        times.sort_unstable();
        let mut best = 0;
        let mut start = 0;
        for (end, t) in times.iter().enumerate() {
            while times
                .get(start)
                .is_some_and(|s| t.saturating_sub(*s) >= window)
            {
                start += 1;
            }
            best = best.max(end + 1 - start);
        }
        best
    }

    fn reached_in<'a>(&'a self, category: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events
            .iter()
            .filter(move |e| e.category == Some(category) && e.outcome.reached_upstream())
    }
}

/// A running proxy. Dropping it stops it: the listener, its connections and (for
/// [`Proxy::start_blocking`]) its runtime threads go with it.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
}

impl Proxy {
    /// Starts the proxy on 127.0.0.1 with an ephemeral port, on the caller's tokio runtime. That
    /// runtime must keep running while the tool talks to the proxy: a test that blocks its thread
    /// (e.g. waiting on the binary) on a current-thread runtime wants [`Proxy::start_blocking`].
    pub async fn start(config: ProxyConfig) -> io::Result<Proxy> {
        Self::launch(config, &Handle::current(), None)
    }

    /// Starts the proxy on its own background runtime, for synchronous tests that spawn the binary.
    /// Safe to call (and to drop the result) from inside another runtime too.
    pub fn start_blocking(config: ProxyConfig) -> io::Result<Proxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cognito-test-proxy")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Self::launch(config, &handle, Some(runtime))
    }

    fn launch(config: ProxyConfig, handle: &Handle, runtime: Option<Runtime>) -> io::Result<Proxy> {
        // Bound synchronously so that the port is known, and listening, before this returns.
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let _entered = handle.enter();
        let listener = TcpListener::from_std(std_listener)?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let shared = Arc::new(Shared {
            upstream: config.upstream,
            seed: config.seed,
            client,
            state: Mutex::new(State::new(&config)),
            tasks: Mutex::new(JoinSet::new()),
            dynamodb_writes: tokio::sync::Mutex::new(()),
        });
        lock(&shared.tasks).spawn_on(accept_loop(listener, Arc::clone(&shared)), handle);
        Ok(Proxy {
            addr,
            shared,
            runtime,
        })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL to give the tool, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let state = lock(&self.shared.state);
        let mut stats = state.stats.clone();
        stats.secrets = state.secrets.iter().cloned().collect();
        stats
    }

    /// Zeroes the counters and restarts the event clock. Quotas, the email count and the fault
    /// draws carry on.
    pub fn reset_stats(&self) {
        let mut state = lock(&self.shared.state);
        state.stats = Stats::default();
        state.secrets.clear();
        state.epoch = Instant::now();
    }

    /// Replaces the fault rules from the next request on.
    pub fn set_faults(&self, faults: Vec<FaultRule>) {
        lock(&self.shared.state).faults = faults;
    }

    /// Sets the email limit and starts a new "day": invitations sent so far no longer count.
    pub fn set_email_limit(&self, limit: Option<u64>) {
        let mut state = lock(&self.shared.state);
        state.email_limit = limit;
        state.emails_reserved = 0;
    }

    /// Replaces the quotas; every bucket starts again full.
    pub fn set_quotas(&self, quotas: HashMap<String, Quota>) {
        let mut state = lock(&self.shared.state);
        state.quotas = quotas;
        state.buckets.clear();
    }

    /// Changes the round-trip latency from the next request on.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.state).latency = latency;
    }

    /// Every request so far that broke its service's API model, in arrival order (kept across
    /// [`Proxy::reset_stats`]).
    pub fn violations(&self) -> Vec<Violation> {
        lock(&self.shared.state).violations.clone()
    }

    /// Declares, on a running proxy, that the test sends invalid requests on purpose: dropping
    /// the proxy no longer panics over the violations, before or after this call.
    pub fn expect_invalid_requests(&self) {
        lock(&self.shared.state).expect_invalid = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        lock(&self.shared.tasks).abort_all();
        if let Some(runtime) = self.runtime.take() {
            // Waiting for the threads would panic inside an async context, so only wait outside one.
            if Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
        }
        let state = lock(&self.shared.state);
        // A second panic while unwinding would abort the whole test binary.
        if !state.expect_invalid && !state.violations.is_empty() && !std::thread::panicking() {
            let list: Vec<String> = state.violations.iter().map(|v| format!("  {v}")).collect();
            panic!(
                "{} request(s) through the proxy at {} broke AWS's API model (moto accepts them, \
                 AWS would not); if the test means it, use expect_invalid_requests():\n{}",
                list.len(),
                self.addr,
                list.join("\n")
            );
        }
    }
}

struct Shared {
    upstream: SocketAddr,
    seed: u64,
    client: Client<HttpConnector, Full<Bytes>>,
    state: Mutex<State>,
    // Every task the proxy spawns lives here, so that dropping the proxy can abort them all.
    tasks: Mutex<JoinSet<()>>,
    /// Held while a DynamoDB write is with moto: moto checks a write's condition and applies it
    /// without a lock (and deep-copies the table for each transaction), so two concurrent
    /// conditional writes can both pass; the real service serializes them.
    dynamodb_writes: tokio::sync::Mutex<()>,
}

impl Shared {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }
}

struct State {
    latency: Duration,
    quotas: HashMap<String, Quota>,
    buckets: HashMap<&'static str, Bucket>,
    faults: Vec<FaultRule>,
    email_limit: Option<u64>,
    // Invitations sent plus those in flight, so that concurrent requests cannot overshoot the limit.
    emails_reserved: u64,
    fault_occurrences: HashMap<(String, String), u64>,
    // Hits in a row per operation and identity, for the rules capped with `in_a_row`.
    fault_streaks: HashMap<(String, String), u32>,
    next_request_id: u64,
    epoch: Instant,
    stats: Stats,
    secrets: BTreeSet<String>,
    expect_invalid: bool,
    violations: Vec<Violation>,
}

impl State {
    fn new(config: &ProxyConfig) -> Self {
        State {
            latency: config.latency,
            quotas: config.quotas.clone(),
            buckets: HashMap::new(),
            faults: config.faults.clone(),
            email_limit: config.email_limit,
            emails_reserved: 0,
            fault_occurrences: HashMap::new(),
            fault_streaks: HashMap::new(),
            next_request_id: 0,
            epoch: Instant::now(),
            stats: Stats::default(),
            secrets: BTreeSet::new(),
            expect_invalid: config.expect_invalid,
            violations: Vec::new(),
        }
    }

    fn op_stats(&mut self, operation: &str) -> &mut OpStats {
        self.stats
            .per_operation
            .entry(operation.to_owned())
            .or_default()
    }

    /// Takes a token from the category's bucket; `false` means throttled.
    fn admit(&mut self, category: Option<&'static str>, now: Instant) -> bool {
        let Some(category) = category else {
            return true;
        };
        let Some(quota) = self.quotas.get(category).copied() else {
            return true;
        };
        self.buckets
            .entry(category)
            .or_insert_with(|| Bucket::new(quota, now))
            .try_take(now)
    }

    /// The fault for this request, drawn from an RNG keyed by the request's identity rather than by
    /// arrival order, so a concurrent client meets the same faults on the same users in every run.
    fn draw_fault(
        &mut self,
        seed: u64,
        operation: &str,
        username: Option<&str>,
        identity: String,
    ) -> Option<FaultKind> {
        if !self.faults.iter().any(|f| f.matches(operation, username)) {
            return None;
        }
        let key = (operation.to_owned(), identity);
        let counter = self.fault_occurrences.entry(key.clone()).or_insert(0);
        let occurrence = *counter;
        *counter += 1;
        let mut rng = fault_rng(seed, operation, &key.1, occurrence);
        let streak = self.fault_streaks.get(&key).copied().unwrap_or(0);
        let kind = self
            .faults
            .iter()
            .filter(|f| f.matches(operation, username))
            .filter(|f| f.in_a_row.is_none_or(|cap| streak < cap))
            .find(|f| rng.random::<f64>() < f.probability)
            .map(|f| f.kind);
        self.fault_streaks
            .insert(key, if kind.is_some() { streak + 1 } else { 0 });
        kind
    }

    fn record(&mut self, at: Instant, operation: &str, outcome: Outcome) {
        let at = at.saturating_duration_since(self.epoch);
        self.stats.events.push(Event {
            at,
            operation: operation.to_owned(),
            category: category_of(operation),
            outcome,
        });
    }
}

struct Bucket {
    quota: Quota,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(quota: Quota, now: Instant) -> Self {
        Bucket {
            quota,
            tokens: quota.burst,
            last: now,
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.quota.rate).min(self.quota.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A per-request RNG from a stable (FNV-1a) hash, so draws do not change with the std hasher.
fn fault_rng(seed: u64, operation: &str, identity: &str, occurrence: u64) -> StdRng {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&seed.to_le_bytes());
    feed(operation.as_bytes());
    feed(&[0]);
    feed(identity.as_bytes());
    feed(&[0]);
    feed(&occurrence.to_le_bytes());
    StdRng::seed_from_u64(hash)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not turn every later request into a panic too.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The operation named by `X-Amz-Target`, without the service prefix.
fn operation_of(headers: &HeaderMap) -> String {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    target
        .strip_prefix(TARGET_PREFIX)
        .unwrap_or_else(|| target.rsplit('.').next().unwrap_or(target))
        .to_owned()
}

/// The lower-cased user a request is about, wherever the operation puts it (SES v2's
/// suppression list: the address).
fn username_of(body: &Value) -> Option<String> {
    body.get("Username")
        .or_else(|| body.pointer("/AuthParameters/USERNAME"))
        .or_else(|| body.pointer("/ChallengeResponses/USERNAME"))
        .or_else(|| body.get("EmailAddress"))
        .and_then(Value::as_str)
        .map(str::to_lowercase)
}

/// Password values carried in a request body.
fn secrets_in(body: &Value) -> Vec<String> {
    [
        "/TemporaryPassword",
        "/Password",
        "/ProposedPassword",
        "/ChallengeResponses/NEW_PASSWORD",
    ]
    .iter()
    .filter_map(|p| body.pointer(p).and_then(Value::as_str))
    .filter(|s| !s.is_empty())
    .map(str::to_owned)
    .collect()
}

/// How an `AdminCreateUser` call counts towards creates, resends and invitation emails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CreateCall {
    resend: bool,
    sends_email: bool,
}

fn create_call(operation: &str, body: &Value) -> Option<CreateCall> {
    if operation != "AdminCreateUser" {
        return None;
    }
    let action = body.get("MessageAction").and_then(Value::as_str);
    let resend = action == Some("RESEND");
    let mediums: Vec<&str> = body
        .get("DesiredDeliveryMediums")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let by_email = mediums.is_empty() || mediums.contains(&"EMAIL");
    Some(CreateCall {
        resend,
        sends_email: (action.is_none() || resend) && by_email,
    })
}

enum Reply {
    Respond(Response<Full<Bytes>>),
    Reset,
}

enum Decision {
    Throttled,
    Fault(FaultKind),
    EmailLimited,
    Forward {
        fault: Option<FaultKind>,
        reserved_email: bool,
    },
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                shared.spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = ResettableIo {
        inner: TokioIo::new(stream),
        reset: Arc::clone(&reset),
    };
    let service =
        service_fn(move |req| serve_request(Arc::clone(&shared), Arc::clone(&reset), req));
    // An error here is the client going away or a deliberate reset; either way the connection is done.
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
}

async fn serve_request(
    shared: Arc<Shared>,
    reset: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> io::Result<Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    // Handled in a task of its own so that a client that times out cannot cancel what "Cognito"
    // does with the request, which keeps the counters independent of client timing.
    let (tx, rx) = oneshot::channel();
    let task_shared = Arc::clone(&shared);
    shared.spawn(async move {
        let _ = tx.send(handle(task_shared, parts, body).await);
    });
    match rx.await {
        Ok(Reply::Respond(response)) => Ok(response),
        Ok(Reply::Reset) => {
            reset.store(true, Ordering::SeqCst);
            // Failing the service makes hyper drop the connection without writing a response.
            Err(io::Error::other("injected connection reset"))
        }
        Err(_) => Err(io::Error::other("proxy shutting down")),
    }
}

async fn handle(shared: Arc<Shared>, parts: Parts, body: Bytes) -> Reply {
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let path = parts.uri.path();
    let rest = model::rest_request(parts.method.as_str(), path, parts.uri.query(), &body);
    let checked = model::validate_request(path, target, &body)
        .or_else(|| rest.as_ref().map(model::RestRequest::check));
    let operation = match (operation_of(&parts.headers), &checked) {
        (op, Some(c)) if op.is_empty() => c.operation.clone(),
        (op, _) => op,
    };
    let category = category_of(&operation);
    let invalid = checked.filter(|checked| !checked.violations.is_empty());
    // A REST request's input is its path, query and body together.
    let json: Value = match rest {
        Some(r) => r.input,
        None => serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let create = create_call(&operation, &json);
    let username = username_of(&json);

    let (latency, request_id) = {
        let mut state = lock(&shared.state);
        state.op_stats(&operation).received += 1;
        for secret in secrets_in(&json) {
            state.secrets.insert(secret);
        }
        if let Some(checked) = &invalid {
            state.op_stats(&operation).invalid += 1;
            state.violations.extend(checked.violations.iter().cloned());
        }
        state.next_request_id += 1;
        (state.latency, state.next_request_id)
    };
    let half_latency = latency / 2;
    sleep(half_latency).await;

    let decided_at = Instant::now();
    // Validation comes before quotas and faults: AWS refuses a malformed request before it
    // counts it against anything.
    if let Some(checked) = invalid {
        lock(&shared.state).record(decided_at, &operation, Outcome::Invalid);
        sleep(latency.saturating_sub(half_latency)).await;
        return Reply::Respond(validation_error(&checked, request_id));
    }
    let decision = {
        let mut state = lock(&shared.state);
        if !state.admit(category, decided_at) {
            Decision::Throttled
        } else {
            let identity = username
                .clone()
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            match state.draw_fault(shared.seed, &operation, username.as_deref(), identity) {
                Some(
                    kind @ (FaultKind::InternalError
                    | FaultKind::ResetBeforeForward
                    | FaultKind::AccessDenied
                    | FaultKind::Refuse(_)
                    | FaultKind::Answer(_)
                    | FaultKind::Status(..)
                    | FaultKind::CancelTransaction(_)),
                ) => Decision::Fault(kind),
                fault => {
                    let sends_email = create.is_some_and(|c| c.sends_email);
                    match state.email_limit {
                        Some(limit) if sends_email && state.emails_reserved >= limit => {
                            Decision::EmailLimited
                        }
                        _ => {
                            if sends_email {
                                state.emails_reserved += 1;
                            }
                            Decision::Forward {
                                fault,
                                reserved_email: sends_email,
                            }
                        }
                    }
                }
            }
        }
    };

    let reply = match decision {
        Decision::Throttled => {
            let mut state = lock(&shared.state);
            state.op_stats(&operation).throttled += 1;
            state.record(decided_at, &operation, Outcome::Throttled);
            Reply::Respond(aws_error(
                StatusCode::BAD_REQUEST,
                "TooManyRequestsException",
                "Rate exceeded",
                request_id,
            ))
        }
        Decision::EmailLimited => {
            let mut state = lock(&shared.state);
            state.op_stats(&operation).email_limited += 1;
            state.record(decided_at, &operation, Outcome::EmailLimited);
            Reply::Respond(aws_error(
                StatusCode::BAD_REQUEST,
                "LimitExceededException",
                EMAIL_LIMIT_MESSAGE,
                request_id,
            ))
        }
        Decision::Fault(kind) => {
            let mut state = lock(&shared.state);
            state.op_stats(&operation).faulted += 1;
            if kind == FaultKind::ResetBeforeForward {
                state.record(decided_at, &operation, Outcome::ResetBeforeForward);
                Reply::Reset
            } else if let FaultKind::Refuse(code) = kind {
                state.record(decided_at, &operation, Outcome::InternalError);
                Reply::Respond(aws_error(
                    StatusCode::BAD_REQUEST,
                    code,
                    "PreSignUp failed with error: not on the partner list (injected by the test proxy)",
                    request_id,
                ))
            } else if let FaultKind::Answer(body) = kind {
                state.record(decided_at, &operation, Outcome::InternalError);
                let body: Value = serde_json::from_str(body).expect("an answer is JSON");
                Reply::Respond(json_answer(StatusCode::OK, &body, request_id))
            } else if let FaultKind::Status(status, code) = kind {
                state.record(decided_at, &operation, Outcome::InternalError);
                let status = StatusCode::from_u16(status).expect("an HTTP status");
                let mut answer = aws_error(
                    status,
                    code,
                    "answered by the test proxy as AWS documents it",
                    request_id,
                );
                if let Ok(v) = HeaderValue::from_str(code) {
                    answer.headers_mut().insert("x-amzn-errortype", v);
                }
                Reply::Respond(answer)
            } else if let FaultKind::CancelTransaction(reasons) = kind {
                state.record(decided_at, &operation, Outcome::InternalError);
                Reply::Respond(cancelled_transaction(reasons, request_id))
            } else if kind == FaultKind::AccessDenied {
                state.record(decided_at, &operation, Outcome::InternalError);
                Reply::Respond(aws_error(
                    StatusCode::BAD_REQUEST,
                    "AccessDeniedException",
                    "User: arn:aws:iam::123456789012:user/onboard is not authorized to perform: \
                     cognito-idp:DescribeUserPool (injected by the test proxy)",
                    request_id,
                ))
            } else {
                state.record(decided_at, &operation, Outcome::InternalError);
                Reply::Respond(aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalErrorException",
                    "Internal error (injected by the test proxy)",
                    request_id,
                ))
            }
        }
        Decision::Forward {
            fault,
            reserved_email,
        } => {
            if let Some(FaultKind::Delay(d)) = fault {
                sleep(d).await;
            }
            let upstream = forward(&shared, &parts, body).await;
            let status = upstream.as_ref().ok().map(|r| r.status().as_u16());
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            {
                let mut state = lock(&shared.state);
                if reserved_email && !ok {
                    state.emails_reserved = state.emails_reserved.saturating_sub(1);
                }
                let op_stats = state.op_stats(&operation);
                if status.is_some() {
                    op_stats.forwarded += 1;
                } else {
                    op_stats.upstream_failed += 1;
                }
                if ok {
                    op_stats.succeeded += 1;
                }
                if status.is_some() && fault.is_some() {
                    op_stats.faulted += 1;
                }
                if let (true, Some(create)) = (ok, create) {
                    if create.resend {
                        state.stats.resends += 1;
                    } else {
                        state.stats.creates += 1;
                    }
                    if let (true, Some(name)) = (create.sends_email, username.clone()) {
                        *state.stats.invitations_by_username.entry(name).or_insert(0) += 1;
                    }
                }
                let outcome = match (status, fault) {
                    (None, _) => Outcome::UpstreamFailed,
                    (Some(s), Some(FaultKind::ResetAfterForward)) => Outcome::ResetAfterForward(s),
                    (Some(s), Some(FaultKind::Delay(_) | FaultKind::DelayAfterForward(_))) => {
                        Outcome::Delayed(s)
                    }
                    (Some(s), _) => Outcome::Forwarded(s),
                };
                state.record(decided_at, &operation, outcome);
            }
            if let Some(FaultKind::DelayAfterForward(d)) = fault {
                sleep(d).await;
            }
            match (upstream, fault) {
                (Ok(_), Some(FaultKind::ResetAfterForward)) => Reply::Reset,
                (Ok(_), Some(FaultKind::InternalErrorAfterForward)) => Reply::Respond(aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalErrorException",
                    "Internal error after the request was carried out (injected by the test proxy)",
                    request_id,
                )),
                (Ok(response), _) => Reply::Respond(response),
                (Err(e), _) => Reply::Respond(aws_error(
                    StatusCode::BAD_GATEWAY,
                    "ProxyUpstreamError",
                    &format!("test proxy could not reach moto: {e}"),
                    request_id,
                )),
            }
        }
    };
    sleep(latency.saturating_sub(half_latency)).await;
    reply
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    // Content-Length is recomputed from the buffered body, so it is dropped along with the
    // connection-level headers (moto's `Connection: close` must not close the client's connection).
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

async fn forward(shared: &Shared, parts: &Parts, body: Bytes) -> io::Result<Response<Full<Bytes>>> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = format!("http://{}{}", shared.upstream, path)
        .parse()
        .map_err(io::Error::other)?;
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) && name != header::HOST {
            headers.append(name.clone(), value.clone());
        }
    }
    let host = HeaderValue::from_str(&shared.upstream.to_string()).map_err(io::Error::other)?;
    headers.insert(header::HOST, host);

    let dynamodb_write = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
        .is_some_and(|op| {
            [
                "PutItem",
                "UpdateItem",
                "DeleteItem",
                "TransactWriteItems",
                "BatchWriteItem",
            ]
            .contains(&op)
        });
    let _one_at_a_time = match dynamodb_write {
        true => Some(shared.dynamodb_writes.lock().await),
        false => None,
    };
    let exchange = async {
        let response = shared
            .client
            .request(request)
            .await
            .map_err(io::Error::other)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
        Ok::<_, io::Error>((parts, body))
    };
    let (upstream_parts, upstream_body) = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| {
        io::Error::new(io::ErrorKind::TimedOut, "moto did not answer in time")
    })??;

    let mut response = Response::new(Full::new(upstream_body));
    *response.status_mut() = upstream_parts.status;
    let headers = response.headers_mut();
    for (name, value) in &upstream_parts.headers {
        if !is_hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    Ok(response)
}

fn aws_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: u64,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": kind, "message": message });
    json_answer(status, &body, request_id)
}

/// An answer with a JSON body, as AWS's JSON protocols send one.
fn json_answer(status: StatusCode, body: &Value, request_id: u64) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    if let Ok(id) = HeaderValue::from_str(&format!("test-proxy-{request_id}")) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

/// The service's answer to a request that breaks its API model.
fn validation_error(checked: &Checked, request_id: u64) -> Response<Full<Bytes>> {
    let message = model::aws_message(&checked.violations);
    let code = checked.service.error_code();
    let mut response = match checked.service {
        Service::CognitoIdp | Service::DynamoDb => {
            let body = serde_json::json!({ "__type": code, "message": message });
            json_answer(StatusCode::BAD_REQUEST, &body, request_id)
        }
        // restJson1 names the error in a header too.
        Service::SesV2 => {
            let body = serde_json::json!({ "__type": code, "message": message });
            let mut answer = json_answer(StatusCode::BAD_REQUEST, &body, request_id);
            answer.headers_mut().insert(
                "x-amzn-errortype",
                HeaderValue::from_static("BadRequestException"),
            );
            answer
        }
        Service::Ses => {
            let body = format!(
                "<ErrorResponse xmlns=\"http://ses.amazonaws.com/doc/2010-12-01/\">\
                 <Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>\
                 <RequestId>test-proxy-{request_id}</RequestId></ErrorResponse>",
                xml_escape(&message)
            );
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            response
        }
    };
    if checked.service == Service::DynamoDb {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
    }
    response
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// DynamoDB's answer to a transaction it cancelled, with a reason per item.
fn cancelled_transaction(reasons: &[&str], request_id: u64) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}] \
             (injected by the test proxy)",
            reasons.join(", ")
        ),
        "CancellationReasons": reasons
            .iter()
            .map(|r| serde_json::json!({ "Code": r }))
            .collect::<Vec<_>>(),
    });
    json_answer(StatusCode::BAD_REQUEST, &body, request_id)
}

/// The client connection, which aborts with a TCP reset instead of a FIN when asked to, so that
/// an injected reset looks to the client like a dropped connection rather than a clean close.
struct ResettableIo {
    inner: TokioIo<TcpStream>,
    reset: Arc<AtomicBool>,
}

impl ResettableIo {
    fn resetting(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }
}

impl Drop for ResettableIo {
    fn drop(&mut self) {
        if self.resetting() {
            // Zero linger makes close() send RST and discard anything unsent.
            let _ = self.inner.inner().set_zero_linger();
        }
    }
}

impl hyper::rt::Read for ResettableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ResettableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.resetting() {
            // A FIN first would let the client see a clean EOF before the reset.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    // A harness-less bench that includes this file is checked with cfg(test) but has its #[test]
    // functions stripped, which would leave this import unused.
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn every_category_resolves_and_unknown_operations_are_uncategorised() {
        for (category, _, ops) in COGNITO_CATEGORIES {
            for op in *ops {
                assert_eq!(category_of(op), Some(*category));
            }
        }
        assert_eq!(category_of("CreateUserPool"), None);
        assert_eq!(category_of(""), None);
    }

    #[test]
    fn token_bucket_allows_burst_then_refills_at_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(Quota::per_second(10.0), start);
        let passed = (0..100).filter(|_| bucket.try_take(start)).count();
        assert_eq!(passed, 10);
        let later = start + Duration::from_millis(500);
        let passed = (0..100).filter(|_| bucket.try_take(later)).count();
        assert_eq!(passed, 5);
        let much_later = later + Duration::from_secs(60);
        let passed = (0..100).filter(|_| bucket.try_take(much_later)).count();
        assert_eq!(passed, 10, "refill is capped at the burst");
    }

    #[test]
    fn message_sending_creates_are_classified() {
        let classify = |body: Value| create_call("AdminCreateUser", &body);
        let sends = |resend| {
            Some(CreateCall {
                resend,
                sends_email: true,
            })
        };
        let silent = |resend| {
            Some(CreateCall {
                resend,
                sends_email: false,
            })
        };
        assert_eq!(classify(serde_json::json!({"Username": "a"})), sends(false));
        assert_eq!(
            classify(serde_json::json!({"MessageAction": "RESEND"})),
            sends(true)
        );
        assert_eq!(
            classify(serde_json::json!({"MessageAction": "SUPPRESS"})),
            silent(false)
        );
        assert_eq!(
            classify(serde_json::json!({"DesiredDeliveryMediums": ["SMS"]})),
            silent(false)
        );
        assert_eq!(
            classify(
                serde_json::json!({"MessageAction": "RESEND", "DesiredDeliveryMediums": ["SMS", "EMAIL"]})
            ),
            sends(true)
        );
        assert_eq!(create_call("AdminGetUser", &serde_json::json!({})), None);
    }

    #[test]
    fn secrets_and_usernames_are_extracted() {
        let body = serde_json::json!({
            "Username": "Alice@Example.org",
            "TemporaryPassword": "T3mp!pass",
            "ChallengeResponses": {"NEW_PASSWORD": "N3w!pass", "USERNAME": "x"},
            "Password": "",
        });
        assert_eq!(secrets_in(&body), vec!["T3mp!pass", "N3w!pass"]);
        assert_eq!(username_of(&body).as_deref(), Some("alice@example.org"));
        let auth = serde_json::json!({"AuthParameters": {"USERNAME": "Bob"}});
        assert_eq!(username_of(&auth).as_deref(), Some("bob"));
    }

    #[test]
    fn operation_comes_from_the_target_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(operation_of(&headers), "");
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AWSCognitoIdentityProviderService.AdminCreateUser"),
        );
        assert_eq!(operation_of(&headers), "AdminCreateUser");
    }

    #[test]
    fn fault_draws_depend_on_seed_and_request_identity_only() {
        let config = ProxyConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)))
            .fault(Some("AdminCreateUser"), FaultKind::InternalError, 0.3)
            .fault(None, FaultKind::ResetBeforeForward, 0.3);
        let run = |seed: u64, users: &[&str]| {
            let mut state = State::new(&config);
            let mut draws: Vec<(String, Option<FaultKind>)> = users
                .iter()
                .map(|u| {
                    (
                        u.to_string(),
                        state.draw_fault(seed, "AdminCreateUser", None, u.to_string()),
                    )
                })
                .collect();
            draws.sort_by(|a, b| a.0.cmp(&b.0));
            draws
        };
        let users: Vec<String> = (0..200).map(|i| format!("user{i}")).collect();
        let forward: Vec<&str> = users.iter().map(String::as_str).collect();
        let backward: Vec<&str> = forward.iter().rev().copied().collect();
        assert_eq!(
            run(7, &forward),
            run(7, &backward),
            "arrival order must not matter"
        );
        assert_ne!(run(7, &forward), run(8, &forward));
        let hits = run(7, &forward).iter().filter(|(_, f)| f.is_some()).count();
        assert!(
            (70..135).contains(&hits),
            "about 51% should be hit, got {hits}/200"
        );
        let only_creates = ProxyConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1))).fault(
            Some("AdminCreateUser"),
            FaultKind::InternalError,
            1.0,
        );
        let mut state = State::new(&only_creates);
        assert_eq!(state.draw_fault(7, "AdminGetUser", None, "a".into()), None);
        assert_eq!(
            state.draw_fault(7, "AdminCreateUser", None, "a".into()),
            Some(FaultKind::InternalError)
        );
    }

    #[test]
    fn a_capped_rule_hits_one_request_at_most_so_many_times_in_a_row() {
        let config = ProxyConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)))
            .fault(
                Some("UpdateItem"),
                FaultKind::Refuse("ThrottlingException"),
                1.0,
            )
            .in_a_row_at_most(2);
        let mut state = State::new(&config);
        let mut draw = |body: &str| {
            state
                .draw_fault(7, "UpdateItem", None, body.into())
                .is_some()
        };
        let a: Vec<bool> = (0..6).map(|_| draw("a")).collect();
        assert_eq!(a, [true, true, false, true, true, false]);
        // Another request keeps its own count.
        assert!(draw("b"));
    }

    #[test]
    fn window_and_per_second_helpers_count_only_what_reached_moto() {
        let event = |ms: u64, outcome| Event {
            at: Duration::from_millis(ms),
            operation: "AdminCreateUser".into(),
            category: Some("UserCreation"),
            outcome,
        };
        let stats = Stats {
            events: vec![
                event(0, Outcome::Forwarded(200)),
                event(900, Outcome::Forwarded(400)),
                event(950, Outcome::Throttled),
                event(1100, Outcome::ResetAfterForward(200)),
                event(2500, Outcome::Delayed(200)),
            ],
            ..Stats::default()
        };
        assert_eq!(stats.forwarded_per_second("UserCreation"), vec![2, 1, 1]);
        assert_eq!(
            stats.max_forwarded_in_window("UserCreation", Duration::from_secs(1)),
            2
        );
        assert_eq!(stats.forwarded_per_second("UserRead"), Vec::<u64>::new());
    }
}
