//! Cognito's request-rate quota categories, which operation falls in which, and one adaptive
//! rate limiter per category. Every attempt of every call takes a permit here first, the
//! DynamoDB state's calls too (in a category of their own). Must not retry or call anything:
//! the executor does.
//!
//! The quotas are per AWS account and Region and shared with production traffic, so the job
//! uses a fraction of each, and slows a category down further when Cognito says it is throttling
//! (multiplicative decrease, gentle recovery: AIMD, as TCP does).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

/// A Cognito request-rate quota category.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumCount,
    strum::VariantArray,
)]
pub enum Category {
    UserCreation,
    UserRead,
    UserList,
    UserAccountRecovery,
    UserUpdate,
    UserResourceUpdate,
    UserPoolRead,
    UserPoolResourceRead,
    /// Not Cognito's: SES's API quota, for reading the account's send quota.
    SesRead,
    /// Not Cognito's: SES v2's API, for reading the account's suppression list (one address a
    /// call, so its own category: a cohort's re-issues must not starve the send quota's read,
    /// nor the other way round).
    SesSuppression,
    /// Not Cognito's: the DynamoDB table of a shared state (`--state dynamodb://`).
    StateTable,
}

impl Category {
    /// Every variant, in declaration order (derived: a new one cannot be left out).
    pub const ALL: &'static [Category] = <Category as strum::VariantArray>::VARIANTS;

    /// Whether Cognito's GetProvisionedLimit knows the category.
    pub fn is_cognito(self) -> bool {
        !matches!(
            self,
            Category::SesRead | Category::SesSuppression | Category::StateTable
        )
    }

    /// Cognito's documented default quota, in requests per second per account and Region. The
    /// state table has no request quota: its figure is what DynamoDB serves one partition key
    /// (1,000 write units a second), as the state keeps each pool under one key.
    ///
    /// SES documents no request rate for GetSuppressedDestination: its API reference
    /// (<https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetSuppressedDestination.html>)
    /// names only `TooManyRequestsException` (429), and "Service quotas in Amazon SES"
    /// (<https://docs.aws.amazon.com/ses/latest/dg/quotas.html>) lists sending quotas, not API
    /// rates. SES's own reads that do document one (v1 GetSendQuota: "no more than once per
    /// second") allow 1 a second, so the suppression list is read at that conservative rate
    /// too (the run's fraction of it), and slowed further if SES throttles.
    pub fn default_quota(self) -> f64 {
        match self {
            Category::UserCreation => 50.0,
            Category::UserRead => 120.0,
            Category::UserList => 30.0,
            Category::UserAccountRecovery => 30.0,
            Category::UserUpdate => 25.0,
            Category::UserResourceUpdate => 25.0,
            Category::UserPoolRead => 15.0,
            Category::UserPoolResourceRead => 20.0,
            Category::SesRead => 1.0,
            Category::SesSuppression => 1.0,
            Category::StateTable => 1000.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Category::UserCreation => "UserCreation",
            Category::UserRead => "UserRead",
            Category::UserList => "UserList",
            Category::UserAccountRecovery => "UserAccountRecovery",
            Category::UserUpdate => "UserUpdate",
            Category::UserResourceUpdate => "UserResourceUpdate",
            Category::UserPoolRead => "UserPoolRead",
            Category::UserPoolResourceRead => "UserPoolResourceRead",
            Category::SesRead => "SesRead",
            Category::SesSuppression => "SesSuppression",
            Category::StateTable => "StateTable",
        }
    }
}

/// A DynamoDB operation of the shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, strum::VariantArray)]
pub enum StateOp {
    CreateTable,
    DescribeTable,
    UpdateTimeToLive,
    GetItem,
    Query,
    Scan,
    PutItem,
    UpdateItem,
    DeleteItem,
    BatchWriteItem,
    TransactWriteItems,
}

impl StateOp {
    /// Every variant, in declaration order (derived: a new one cannot be left out).
    pub const ALL: &'static [StateOp] = <StateOp as strum::VariantArray>::VARIANTS;

    /// Whether the call writes items: a 5xx answer to it may come after the write was made.
    pub fn is_write(self) -> bool {
        match self {
            StateOp::CreateTable
            | StateOp::UpdateTimeToLive
            | StateOp::PutItem
            | StateOp::UpdateItem
            | StateOp::DeleteItem
            | StateOp::BatchWriteItem
            | StateOp::TransactWriteItems => true,
            StateOp::DescribeTable | StateOp::GetItem | StateOp::Query | StateOp::Scan => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StateOp::CreateTable => "CreateTable",
            StateOp::DescribeTable => "DescribeTable",
            StateOp::UpdateTimeToLive => "UpdateTimeToLive",
            StateOp::GetItem => "GetItem",
            StateOp::Query => "Query",
            StateOp::Scan => "Scan",
            StateOp::PutItem => "PutItem",
            StateOp::UpdateItem => "UpdateItem",
            StateOp::DeleteItem => "DeleteItem",
            StateOp::BatchWriteItem => "BatchWriteItem",
            StateOp::TransactWriteItems => "TransactWriteItems",
        }
    }
}

/// Every AWS operation the tool calls: Cognito's, SES's one, and the DynamoDB state's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, strum::EnumCount)]
pub enum Op {
    DescribeUserPool,
    GetProvisionedLimit,
    ListGroups,
    ListUsers,
    ListUsersInGroup,
    AdminGetUser,
    AdminCreateUser,
    /// AdminCreateUser with MessageAction=RESEND: a new invitation to an existing user.
    AdminCreateUserResend,
    AdminSetUserPassword,
    AdminUpdateUserAttributes,
    AdminAddUserToGroup,
    /// SES GetSendQuota, for pools that send email through SES (`DEVELOPER`).
    GetSendQuota,
    /// AdminResetUserPassword: Cognito sends the confirmed user a code to set a new password.
    AdminResetUserPassword,
    /// AdminDeleteUserAttributes, for `--update attributes --clear-empty`.
    AdminDeleteUserAttributes,
    /// AdminRemoveUserFromGroup, for `--update groups`.
    AdminRemoveUserFromGroup,
    /// AdminDisableUser, for offboarding a provider who left the list: the user can no longer
    /// sign in and its tokens are revoked, but it stays in the pool (and can be enabled again).
    AdminDisableUser,
    /// AdminEnableUser, for re-enabling a provider who was offboarded and is back on the list.
    AdminEnableUser,
    /// AdminDeleteUser, for deleting a revoked provider who never signed in (nothing of theirs
    /// to keep). Cannot be undone; a user created again gets a new `sub`.
    AdminDeleteUser,
    /// GetLogDeliveryConfiguration, for the help desk: whether the pool sends its
    /// message-delivery errors (event source `userNotification`) to logs, and where.
    GetLogDeliveryConfiguration,
    /// SES v2 GetSuppressedDestination, for pools that send email through SES (`DEVELOPER`):
    /// whether an address is on the account's suppression list (SES drops every message to it).
    GetSuppressedDestination,
    /// A call of the DynamoDB state (`--state dynamodb://`).
    State(StateOp),
}

// `State(_)` is listed by `StateOp::ALL`.
crate::every_variant!(Op except 1);

impl Op {
    /// Cognito's operations and SES's; the state's are [`StateOp::ALL`].
    pub const ALL: [Op; 20] = [
        Op::DescribeUserPool,
        Op::GetProvisionedLimit,
        Op::ListGroups,
        Op::ListUsers,
        Op::ListUsersInGroup,
        Op::AdminGetUser,
        Op::AdminCreateUser,
        Op::AdminCreateUserResend,
        Op::AdminSetUserPassword,
        Op::AdminUpdateUserAttributes,
        Op::AdminAddUserToGroup,
        Op::GetSendQuota,
        Op::AdminResetUserPassword,
        Op::AdminDeleteUserAttributes,
        Op::AdminRemoveUserFromGroup,
        Op::AdminDisableUser,
        Op::AdminEnableUser,
        Op::AdminDeleteUser,
        Op::GetLogDeliveryConfiguration,
        Op::GetSuppressedDestination,
    ];

    /// The quota category each operation draws from. One exhaustive match, so a new operation
    /// cannot be added without being classified.
    ///
    /// AdminDisableUser, AdminEnableUser and AdminDeleteUser are in `UserUpdate` with
    /// AdminUpdateUserAttributes: "Quotas in Amazon Cognito",
    /// <https://docs.aws.amazon.com/cognito/latest/developerguide/quotas.html#category_operations>,
    /// describes the category as the operations used to manage users and user attributes (25
    /// requests per second, not adjustable). The copies of the page at hand leave its per-category
    /// operation lists out, so this placement rests on that description (inferred, as in the
    /// notes); the fault proxy's table (`tests/support/proxy.rs`) places them the same way.
    pub fn category(self) -> Category {
        match self {
            Op::AdminCreateUser | Op::AdminCreateUserResend => Category::UserCreation,
            Op::AdminGetUser => Category::UserRead,
            Op::ListUsers | Op::ListUsersInGroup => Category::UserList,
            Op::AdminSetUserPassword | Op::AdminResetUserPassword => Category::UserAccountRecovery,
            Op::AdminUpdateUserAttributes
            | Op::AdminDeleteUserAttributes
            | Op::AdminDisableUser
            | Op::AdminEnableUser
            | Op::AdminDeleteUser => Category::UserUpdate,
            Op::AdminAddUserToGroup | Op::AdminRemoveUserFromGroup => Category::UserResourceUpdate,
            Op::DescribeUserPool | Op::GetProvisionedLimit | Op::GetLogDeliveryConfiguration => {
                Category::UserPoolRead
            }
            Op::ListGroups => Category::UserPoolResourceRead,
            Op::GetSendQuota => Category::SesRead,
            Op::GetSuppressedDestination => Category::SesSuppression,
            Op::State(_) => Category::StateTable,
        }
    }

    /// Whether the call sends a message to the provider (and so spends the email budget).
    pub fn sends_message(self) -> bool {
        match self {
            Op::AdminCreateUser | Op::AdminCreateUserResend | Op::AdminResetUserPassword => true,
            Op::DescribeUserPool
            | Op::GetProvisionedLimit
            | Op::ListGroups
            | Op::ListUsers
            | Op::ListUsersInGroup
            | Op::AdminGetUser
            | Op::AdminSetUserPassword
            | Op::AdminUpdateUserAttributes
            | Op::AdminAddUserToGroup
            | Op::AdminDeleteUserAttributes
            | Op::AdminRemoveUserFromGroup
            | Op::AdminDisableUser
            | Op::AdminEnableUser
            | Op::AdminDeleteUser
            | Op::GetLogDeliveryConfiguration
            | Op::GetSuppressedDestination
            | Op::GetSendQuota
            | Op::State(_) => false,
        }
    }

    /// A rate Cognito enforces on this operation alone, per pool, below its category's: ListGroups
    /// is capped at 5 requests per second per pool (quotas page, footnote); GetProvisionedLimit
    /// is spaced at one a second, as an emulator of it paces it.
    pub fn own_cap(self) -> Option<f64> {
        match self {
            Op::ListGroups => Some(5.0),
            Op::GetProvisionedLimit => Some(1.0),
            Op::DescribeUserPool
            | Op::ListUsers
            | Op::ListUsersInGroup
            | Op::AdminGetUser
            | Op::AdminCreateUser
            | Op::AdminCreateUserResend
            | Op::AdminSetUserPassword
            | Op::AdminUpdateUserAttributes
            | Op::AdminAddUserToGroup
            | Op::GetSendQuota
            | Op::AdminResetUserPassword
            | Op::AdminDeleteUserAttributes
            | Op::AdminRemoveUserFromGroup
            | Op::AdminDisableUser
            | Op::AdminEnableUser
            | Op::AdminDeleteUser
            | Op::GetLogDeliveryConfiguration
            | Op::GetSuppressedDestination
            | Op::State(_) => None,
        }
    }

    /// Whether the run can do without the call's answer (it falls back on documented quotas or
    /// the settings), so that no refusal of it is fatal.
    pub fn optional(self) -> bool {
        matches!(
            self,
            Op::GetProvisionedLimit
                | Op::GetSendQuota
                | Op::GetLogDeliveryConfiguration
                | Op::GetSuppressedDestination
        )
    }

    /// Whether the call changes the pool (or the state's table): a 5xx answer to it may come
    /// after the change was made.
    pub fn is_write(self) -> bool {
        match self {
            Op::AdminCreateUser
            | Op::AdminCreateUserResend
            | Op::AdminSetUserPassword
            | Op::AdminUpdateUserAttributes
            | Op::AdminAddUserToGroup
            | Op::AdminDeleteUserAttributes
            | Op::AdminRemoveUserFromGroup
            | Op::AdminResetUserPassword
            | Op::AdminDisableUser
            | Op::AdminEnableUser
            | Op::AdminDeleteUser => true,
            Op::DescribeUserPool
            | Op::GetProvisionedLimit
            | Op::ListGroups
            | Op::ListUsers
            | Op::ListUsersInGroup
            | Op::AdminGetUser
            | Op::GetLogDeliveryConfiguration
            | Op::GetSuppressedDestination
            | Op::GetSendQuota => false,
            Op::State(op) => op.is_write(),
        }
    }

    /// Whether a call whose answer was lost must be checked before it is repeated: a repeated
    /// RESEND sends a second message, a repeated create is refused as a duplicate of the user
    /// it did create, and a repeated delete as UserNotFoundException for the user it did delete.
    /// `calls` makes these with [`Executor::call_verified`], which reads the user to find out.
    /// Disabling or enabling again would be harmless, but the user's `Enabled` read back answers
    /// exactly, so they are checked too. (AdminSetUserPassword is repeated with the same
    /// password, which is harmless; whether it moves `UserLastModifiedDate` is not documented,
    /// so it is not a check.)
    ///
    /// [`Executor::call_verified`]: crate::executor::Executor::call_verified
    pub fn checked_when_lost(self) -> bool {
        match self {
            Op::AdminCreateUser
            | Op::AdminCreateUserResend
            | Op::AdminResetUserPassword
            | Op::AdminDisableUser
            | Op::AdminEnableUser
            | Op::AdminDeleteUser => true,
            Op::DescribeUserPool
            | Op::GetProvisionedLimit
            | Op::ListGroups
            | Op::ListUsers
            | Op::ListUsersInGroup
            | Op::AdminGetUser
            | Op::AdminSetUserPassword
            | Op::AdminUpdateUserAttributes
            | Op::AdminAddUserToGroup
            | Op::AdminDeleteUserAttributes
            | Op::AdminRemoveUserFromGroup
            | Op::GetLogDeliveryConfiguration
            | Op::GetSuppressedDestination
            | Op::GetSendQuota => false,
            // Repeated, as the SDK's own retries would: a state write is idempotent or
            // conditional, and a repeat whose condition fails because the first one landed is
            // read as such (the lease) or defers the row, nothing sent (an intent).
            Op::State(_) => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::DescribeUserPool => "DescribeUserPool",
            Op::GetProvisionedLimit => "GetProvisionedLimit",
            Op::ListGroups => "ListGroups",
            Op::ListUsers => "ListUsers",
            Op::ListUsersInGroup => "ListUsersInGroup",
            Op::AdminGetUser => "AdminGetUser",
            Op::AdminCreateUser => "AdminCreateUser",
            Op::AdminCreateUserResend => "AdminCreateUser(RESEND)",
            Op::AdminSetUserPassword => "AdminSetUserPassword",
            Op::AdminUpdateUserAttributes => "AdminUpdateUserAttributes",
            Op::AdminAddUserToGroup => "AdminAddUserToGroup",
            Op::GetSendQuota => "GetSendQuota",
            Op::AdminResetUserPassword => "AdminResetUserPassword",
            Op::AdminDeleteUserAttributes => "AdminDeleteUserAttributes",
            Op::AdminRemoveUserFromGroup => "AdminRemoveUserFromGroup",
            Op::AdminDisableUser => "AdminDisableUser",
            Op::AdminEnableUser => "AdminEnableUser",
            Op::AdminDeleteUser => "AdminDeleteUser",
            Op::GetLogDeliveryConfiguration => "GetLogDeliveryConfiguration",
            Op::GetSuppressedDestination => "GetSuppressedDestination",
            Op::State(op) => op.name(),
        }
    }
}

/// Where a category's quota came from, for the log and the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaSource {
    Documented,
    ConfigFile,
    Provisioned,
}

/// The full quota of each category before the fraction is applied.
#[derive(Debug, Clone)]
pub struct Quotas {
    pub per_category: BTreeMap<Category, (f64, QuotaSource)>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            per_category: Category::ALL
                .iter()
                .map(|c| (*c, (c.default_quota(), QuotaSource::Documented)))
                .collect(),
        }
    }
}

impl Quotas {
    pub fn get(&self, category: Category) -> f64 {
        self.per_category
            .get(&category)
            .map(|(rate, _)| *rate)
            .unwrap_or_else(|| category.default_quota())
    }

    pub fn set(&mut self, category: Category, rate: f64, source: QuotaSource) {
        self.per_category.insert(category, (rate, source));
    }
}

/// The lowest share of its target a throttled category is slowed to.
const MIN_SHARE: f64 = 0.1;
/// Multiplicative decrease on a throttle.
const DECREASE: f64 = 0.7;
/// Successes needed (as a share of the current rate, i.e. about one second's worth) before the
/// rate creeps back up by one tenth of the target.
const RECOVER_AFTER_SECONDS: f64 = 1.0;

struct Adaptive {
    target: f64,
    current: f64,
    successes: f64,
    limiter: Arc<Gcra>,
    throttles: u64,
    /// Permits that may go back to back: [`CATEGORY_BURST`] for a quota category, one for a
    /// hard per-second cap (an operation's own, a message rate).
    burst: u32,
}

/// A quota category's burst: one permit of slack (see [`build`]).
const CATEGORY_BURST: u32 = 2;

/// A GCRA limiter on the monotonic clock, so its waits can be slept on the tokio timer.
type Gcra = RateLimiter<
    NotKeyed,
    InMemoryState,
    MonotonicClock,
    NoOpMiddleware<<MonotonicClock as Clock>::Instant>,
>;

/// One category's limiter.
struct CategoryLimiter {
    state: Mutex<Adaptive>,
    /// Callers queue here, first come first served, so only one of them at a time sleeps
    /// until the next permit: a crowd of sleepers re-checking one permit costs a wake-up each.
    turn: tokio::sync::Mutex<()>,
    /// Callers waiting for a permit now (for the progress line).
    waiting: std::sync::atomic::AtomicU64,
}

/// Counts a caller as waiting until it has its permit (or is dropped while waiting).
struct Waiting<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Waiting<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicU64) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl CategoryLimiter {
    fn at(rate: f64) -> Self {
        CategoryLimiter {
            state: Mutex::new(Adaptive {
                target: rate,
                current: rate,
                successes: 0.0,
                limiter: build(rate, 1),
                throttles: 0,
                burst: 1,
            }),
            turn: tokio::sync::Mutex::new(()),
            waiting: Default::default(),
        }
    }

    /// Waits for a permit, in arrival order.
    async fn wait(&self) {
        let _waiting = Waiting::enter(&self.waiting);
        let _turn = self.turn.lock().await;
        loop {
            // Re-read each time: a throttle may have replaced the limiter with a slower one.
            let limiter = Arc::clone(&self.state.lock().unwrap_or_else(|e| e.into_inner()).limiter);
            match limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    tokio::time::sleep(not_until.wait_time_from(MonotonicClock.now())).await;
                }
            }
        }
    }
}

fn build(rate: f64, burst: u32) -> Arc<Gcra> {
    // A quota category gets a burst of two: a batch job should pace, not spike, inside a quota
    // it shares; but with a burst of one every permit claimed late (a timer wakes a millisecond
    // or so after the permit is due) pushes all later ones back, and at 40 a second that
    // lateness alone cost 5% of the rate. One permit of slack lets a late claim catch up, so the
    // average rate is the configured one. A hard per-second cap (SES's MaxSendRate, ListGroups'
    // 5 a second) keeps a burst of one: two messages must never leave within one interval.
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    Arc::new(RateLimiter::direct_with_clock(quota, MonotonicClock))
}

/// The rate limiters of all categories.
pub struct Limiter {
    categories: BTreeMap<Category, CategoryLimiter>,
    /// Operations with a cap of their own ([`Op::own_cap`]), paced on top of their category.
    ops: BTreeMap<Op, CategoryLimiter>,
    /// Messages, when their medium has a rate of its own.
    messages: std::sync::OnceLock<CategoryLimiter>,
    fraction: f64,
}

/// What the limiter did, for the report and the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryStats {
    pub target_per_second: f64,
    pub final_per_second: f64,
    pub throttles: u64,
}

impl Limiter {
    /// A limiter per category at `fraction` of its quota.
    pub fn new(quotas: &Quotas, fraction: f64) -> Self {
        let categories = Category::ALL
            .iter()
            .map(|c| {
                let target = quotas.get(*c) * fraction;
                (
                    *c,
                    CategoryLimiter {
                        state: Mutex::new(Adaptive {
                            target,
                            current: target,
                            successes: 0.0,
                            limiter: build(target, CATEGORY_BURST),
                            throttles: 0,
                            burst: CATEGORY_BURST,
                        }),
                        turn: tokio::sync::Mutex::new(()),
                        waiting: Default::default(),
                    },
                )
            })
            .collect();
        let ops = Op::ALL
            .iter()
            .filter_map(|op| {
                op.own_cap()
                    .map(|cap| (*op, CategoryLimiter::at(cap * fraction)))
            })
            .collect();
        Limiter {
            categories,
            ops,
            messages: std::sync::OnceLock::new(),
            fraction,
        }
    }

    /// Paces every message (an email or SMS invitation) at `rate` per second, on top of the
    /// calls' categories: SES's `MaxSendRate`, or the settings' `email_rate`.
    pub fn set_message_rate(&self, rate: f64) {
        let _ = self.messages.set(CategoryLimiter::at(rate * self.fraction));
    }

    /// Waits for a permit to send one message (immediately when messages are not paced).
    pub async fn acquire_message(&self) {
        if let Some(messages) = self.messages.get() {
            messages.wait().await;
        }
    }

    /// Waits for a permit for one call of `op`: its category's, then its own cap's.
    pub async fn acquire_op(&self, op: Op) {
        self.acquire(op.category()).await;
        if let Some(cap) = self.ops.get(&op) {
            cap.wait().await;
        }
    }

    /// Replaces a category's quota (with what Cognito reports for the account): the category
    /// then paces at the run's fraction of it.
    pub fn set_quota(&self, category: Category, quota: f64) {
        if let Some(mut s) = self.state(category) {
            let target = quota * self.fraction;
            s.target = target;
            s.current = target;
            s.successes = 0.0;
            s.limiter = build(target, s.burst);
        }
    }

    fn state(&self, category: Category) -> Option<std::sync::MutexGuard<'_, Adaptive>> {
        self.categories
            .get(&category)
            .map(|c| c.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits for a permit in this category, in arrival order.
    pub async fn acquire(&self, category: Category) {
        if let Some(cat) = self.categories.get(&category) {
            cat.wait().await;
        }
    }

    /// Cognito throttled a call in this category: slow the whole category down.
    pub fn throttled(&self, category: Category) {
        if let Some(mut s) = self.state(category) {
            s.throttles += 1;
            let floor = s.target * MIN_SHARE;
            let next = (s.current * DECREASE).max(floor);
            if next < s.current {
                s.current = next;
                s.limiter = build(next, s.burst);
            }
            s.successes = 0.0;
        }
    }

    /// A call in this category went through: after about a second of clean calls, step back up.
    pub fn succeeded(&self, category: Category) {
        if let Some(mut s) = self.state(category) {
            if s.current >= s.target {
                return;
            }
            s.successes += 1.0;
            if s.successes >= s.current * RECOVER_AFTER_SECONDS {
                let next = (s.current + s.target * 0.1).min(s.target);
                s.current = next;
                s.limiter = build(next, s.burst);
                s.successes = 0.0;
            }
        }
    }

    /// The calls waiting for a permit now, by what holds them (a quota category, an operation's
    /// own cap, or the message rate), busiest first; only those with a caller waiting. A caller
    /// past its category waiting on its operation's cap counts once, there.
    pub fn waiting(&self) -> Vec<(&'static str, u64)> {
        let count = |l: &CategoryLimiter| l.waiting.load(std::sync::atomic::Ordering::Relaxed);
        let mut out: Vec<(&'static str, u64)> = self
            .categories
            .iter()
            .map(|(c, l)| (c.name(), count(l)))
            .chain(self.ops.iter().map(|(op, l)| (op.name(), count(l))))
            .chain(self.messages.get().map(|l| ("message rate", count(l))))
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }

    /// The current rate of a category, in requests per second.
    pub fn current_rate(&self, category: Category) -> f64 {
        self.state(category).map(|s| s.current).unwrap_or(0.0)
    }

    pub fn stats(&self) -> BTreeMap<Category, CategoryStats> {
        Category::ALL
            .iter()
            .filter_map(|c| {
                self.state(*c).map(|s| {
                    (
                        *c,
                        CategoryStats {
                            target_per_second: s.target,
                            final_per_second: s.current,
                            throttles: s.throttles,
                        },
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the count checked at compile time (`every_variant!`), distinct elements that are none
    /// of the state's make `Op::ALL` every Cognito and SES operation.
    #[test]
    fn op_all_is_every_operation_but_the_states_once() {
        let distinct: std::collections::BTreeSet<Op> = Op::ALL.iter().copied().collect();
        assert_eq!(distinct.len(), Op::ALL.len(), "listed twice");
        assert!(Op::ALL.iter().all(|op| !matches!(op, Op::State(_))));
    }

    /// The sample IAM policy grants every operation the tool calls, so an operator who copies
    /// it never meets AccessDeniedException for a feature they use.
    #[test]
    fn the_sample_iam_policy_grants_every_operation() {
        let policy = include_str!("../samples/iam-policy.json");
        for op in Op::ALL {
            let action = match op {
                Op::AdminCreateUserResend => "cognito-idp:AdminCreateUser".to_string(),
                Op::GetSendQuota => "ses:GetSendQuota".to_string(),
                Op::GetSuppressedDestination => "ses:GetSuppressedDestination".to_string(),
                other => format!("cognito-idp:{}", other.name()),
            };
            assert!(
                policy.contains(&format!("\"{action}\"")),
                "{action} is missing from samples/iam-policy.json"
            );
        }
    }

    /// The state table's sample policy grants every DynamoDB operation the state calls; a
    /// transaction is authorised by the actions of its items (their puts and updates).
    #[test]
    fn the_state_tables_sample_policy_grants_every_operation() {
        let policy = include_str!("../samples/iam-policy-dynamodb.json");
        for &op in StateOp::ALL {
            let actions: &[&str] = match op {
                StateOp::TransactWriteItems => &["PutItem", "UpdateItem"],
                other => &[other.name()],
            };
            for action in actions {
                assert!(
                    policy.contains(&format!("\"dynamodb:{action}\"")),
                    "dynamodb:{action} is missing from samples/iam-policy-dynamodb.json"
                );
            }
        }
    }

    #[test]
    fn a_quota_can_be_replaced_once_cognito_reports_it() {
        let limiter = Limiter::new(&Quotas::default(), 0.5);
        assert_eq!(limiter.current_rate(Category::UserCreation), 25.0);
        limiter.set_quota(Category::UserCreation, 200.0);
        assert_eq!(limiter.current_rate(Category::UserCreation), 100.0);
        assert_eq!(
            limiter.stats()[&Category::UserCreation].target_per_second,
            100.0
        );
        assert_eq!(limiter.current_rate(Category::UserRead), 60.0);
    }

    #[test]
    fn every_operation_has_the_documented_category() {
        assert_eq!(Op::AdminCreateUser.category(), Category::UserCreation);
        assert_eq!(Op::AdminCreateUserResend.category(), Category::UserCreation);
        assert_eq!(Op::AdminGetUser.category(), Category::UserRead);
        assert_eq!(Op::ListUsers.category(), Category::UserList);
        assert_eq!(Op::ListUsersInGroup.category(), Category::UserList);
        assert_eq!(
            Op::AdminAddUserToGroup.category(),
            Category::UserResourceUpdate
        );
        assert_eq!(
            Op::AdminSetUserPassword.category(),
            Category::UserAccountRecovery
        );
        assert_eq!(
            Op::AdminUpdateUserAttributes.category(),
            Category::UserUpdate
        );
        assert_eq!(Op::DescribeUserPool.category(), Category::UserPoolRead);
        assert_eq!(Op::ListGroups.category(), Category::UserPoolResourceRead);
        assert_eq!(Op::AdminDisableUser.category(), Category::UserUpdate);
        assert_eq!(Op::AdminEnableUser.category(), Category::UserUpdate);
        assert_eq!(Op::AdminDeleteUser.category(), Category::UserUpdate);
    }

    /// Every listed operation draws from a quota category Cognito enforces (and so one the
    /// quota probe asks about), but SES's, which draw from SES's: the send quota's read and the
    /// suppression list's each from a category of its own.
    #[test]
    fn every_listed_operation_draws_from_a_cognito_category_but_ses_own() {
        for op in Op::ALL {
            let category = op.category();
            match op {
                Op::GetSendQuota => assert_eq!(category, Category::SesRead),
                Op::GetSuppressedDestination => {
                    assert_eq!(category, Category::SesSuppression);
                    assert!(!category.is_cognito());
                }
                _ => assert!(category.is_cognito(), "{op:?} is in {category:?}"),
            }
        }
    }

    /// The suppression list's read sends nothing, changes nothing, and a refusal of it (no
    /// permission) is never fatal: it is paced at SES's conservative 1 a second.
    #[test]
    fn the_suppression_lists_read_is_optional_and_paced_at_one_a_second() {
        let op = Op::GetSuppressedDestination;
        assert!(op.optional());
        assert!(!op.is_write() && !op.sends_message() && !op.checked_when_lost());
        assert_eq!(Category::SesSuppression.default_quota(), 1.0);
        let limiter = Limiter::new(&Quotas::default(), 0.8);
        assert!((limiter.current_rate(Category::SesSuppression) - 0.8).abs() < 1e-9);
    }

    /// Offboarding's writes are writes (a 5xx may come after the change), send nothing, and a
    /// lost answer to one is read back rather than repeated.
    #[test]
    fn offboarding_writes_are_checked_when_their_answer_is_lost() {
        for op in [
            Op::AdminDisableUser,
            Op::AdminEnableUser,
            Op::AdminDeleteUser,
        ] {
            assert!(op.is_write(), "{op:?}");
            assert!(op.checked_when_lost(), "{op:?}");
            assert!(!op.sends_message(), "{op:?}");
            assert_eq!(op.own_cap(), None, "{op:?}");
        }
    }

    #[test]
    fn only_invitations_spend_the_email_budget() {
        assert!(Op::AdminCreateUser.sends_message());
        assert!(Op::AdminCreateUserResend.sends_message());
        assert!(!Op::AdminSetUserPassword.sends_message());
        assert!(!Op::AdminGetUser.sends_message());
    }

    #[test]
    fn throttling_slows_a_category_and_success_brings_it_back() {
        let limiter = Limiter::new(&Quotas::default(), 0.8);
        assert!((limiter.current_rate(Category::UserCreation) - 40.0).abs() < 1e-9);
        limiter.throttled(Category::UserCreation);
        assert!((limiter.current_rate(Category::UserCreation) - 28.0).abs() < 1e-9);
        assert!((limiter.current_rate(Category::UserRead) - 96.0).abs() < 1e-9);
        for _ in 0..200 {
            limiter.throttled(Category::UserCreation);
        }
        assert!((limiter.current_rate(Category::UserCreation) - 4.0).abs() < 1e-9);
        for _ in 0..10_000 {
            limiter.succeeded(Category::UserCreation);
        }
        assert!((limiter.current_rate(Category::UserCreation) - 40.0).abs() < 1e-9);
        assert_eq!(limiter.stats()[&Category::UserCreation].throttles, 201);
    }

    #[tokio::test]
    async fn callers_waiting_for_a_permit_are_counted_by_category_until_they_go() {
        let mut quotas = Quotas::default();
        quotas.set(Category::UserCreation, 0.5, QuotaSource::ConfigFile);
        let limiter = Arc::new(Limiter::new(&quotas, 1.0));
        assert!(limiter.waiting().is_empty());
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let l = Arc::clone(&limiter);
                tokio::spawn(async move { l.acquire(Category::UserCreation).await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // A burst of two went through; three wait.
        assert_eq!(limiter.waiting(), [("UserCreation", 3)]);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        assert!(
            limiter.waiting().is_empty(),
            "a caller that gave up is not counted"
        );
    }

    #[tokio::test]
    async fn acquire_paces_at_the_configured_rate() {
        let mut quotas = Quotas::default();
        quotas.set(Category::UserCreation, 10.0, QuotaSource::ConfigFile);
        let limiter = Limiter::new(&quotas, 1.0);
        let start = std::time::Instant::now();
        for _ in 0..12 {
            limiter.acquire(Category::UserCreation).await;
        }
        // governor reads the real clock, so this measures real pacing of 10 permits at 10/s
        // after a burst of two.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    }

    #[tokio::test]
    async fn list_groups_is_paced_at_its_own_cap_below_its_category() {
        // UserPoolResourceRead allows 20/s; ListGroups alone 5/s per pool.
        let limiter = Limiter::new(&Quotas::default(), 1.0);
        let start = std::time::Instant::now();
        for _ in 0..7 {
            limiter.acquire_op(Op::ListGroups).await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
        let start = std::time::Instant::now();
        for _ in 0..7 {
            limiter.acquire_op(Op::DescribeUserPool).await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "no cap of its own"
        );
    }

    #[test]
    fn only_the_documented_operations_have_a_cap_of_their_own() {
        let capped: Vec<Op> = Op::ALL
            .into_iter()
            .filter(|op| op.own_cap().is_some())
            .collect();
        assert_eq!(capped, vec![Op::GetProvisionedLimit, Op::ListGroups]);
    }
}
