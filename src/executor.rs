//! The one path for every call: [`Executor::call`] takes a rate-limiter permit for each attempt,
//! classifies each fault for its operation, retries throttling and passing faults with
//! exponential backoff and full jitter, settles an ambiguous write by asking whether it went
//! through ([`Executor::call_verified`]), and counts what reached Cognito. Also the one bounded
//! fan-out ([`Executor::for_each_bounded`]) and the run's cancellation flag. Must not know what
//! a call does: no Cognito types beyond faults, no decisions.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use rand::{RngExt, SeedableRng};
use tokio::sync::Notify;

use crate::cognito::{CallError, ErrorClass, Fault};
use crate::limiter::{Category, Limiter, Op};

/// Full-jitter exponential backoff (the AWS Architecture Blog's "full jitter"): the n-th delay is
/// uniform in `[0, min(cap, base * 2^n)]`. A pure iterator over an injected random source, so
/// the schedule is tested on its own.
pub struct Backoff<R> {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: R,
}

impl<R: rand::Rng> Backoff<R> {
    pub fn new(base: Duration, cap: Duration, rng: R) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
            rng,
        }
    }
}

impl<R: rand::Rng> Iterator for Backoff<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        Some(Duration::from_nanos(self.rng.random_range(0..=nanos)))
    }
}

/// A run-wide stop flag: set by Ctrl-C, SIGTERM or a fatal error. Rows not yet started are not
/// started; rows in flight finish.
#[derive(Default)]
pub struct Cancel {
    flag: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps, but wakes early when the run is cancelled.
    pub async fn sleep(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.cancelled() => {}
        }
    }

    /// Returns once the run is cancelled (at once if it is).
    pub async fn cancelled(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a cancel between the two still wakes it.
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

impl Cancel {
    /// Ctrl-C and SIGTERM cancel the run gracefully; a second signal exits at once with
    /// `exit_code`.
    pub fn on_signals(self: &Arc<Self>, exit_code: u8) {
        let cancel = Arc::clone(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let term = std::future::pending::<()>();
            tokio::pin!(term);
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = &mut term => {}
            }
            tracing::warn!(
                "stopping: finishing the rows in flight, then writing the report (signal again to quit at once)"
            );
            cancel.cancel();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = &mut term => {}
            }
            std::process::exit(i32::from(exit_code));
        });
    }
}

/// A call that succeeded, and how many attempts it took.
#[derive(Debug)]
pub struct Done<T> {
    pub value: T,
    pub attempts: u32,
    /// An answer was lost, and asking Cognito afterwards showed the call had gone through.
    pub recovered: bool,
}

/// A task of [`Executor::for_each_bounded`] that panicked (a bug): which item, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    pub index: usize,
    pub message: String,
}

/// The verification of a call that has none.
type NoVerify<T> = fn() -> std::future::Ready<Result<Option<T>, Failed>>;

/// A call that failed for good.
#[derive(Debug, Clone)]
pub struct Failed {
    pub error: CallError,
    pub attempts: u32,
    /// Some attempt's answer was lost: the call may have been carried out.
    pub maybe_done: bool,
    /// The run was stopped before this call could be made, or made again: `error` is the last
    /// attempt's, if there was one. What the row had done stays; a later run finishes it.
    pub stopped: bool,
}

impl Failed {
    /// A call the run's stop kept from being made (again).
    fn stopped(op: Op, last: Option<CallError>, attempts: u32, maybe_done: bool) -> Failed {
        Failed {
            error: last.unwrap_or_else(|| CallError {
                op,
                class: ErrorClass::Transient { ambiguous: false },
                code: None,
                message: "not made: the run was stopped".into(),
            }),
            attempts,
            maybe_done,
            stopped: true,
        }
    }
}

// Here rather than in `error`, which sits below the executor and must not import it.
impl From<Failed> for crate::error::Error {
    /// A call that a run cannot do without (a pool read, a scan) failed for good.
    fn from(f: Failed) -> Self {
        crate::error::Error::Cognito(f.error.to_string())
    }
}

/// What the attempts of one call so far say about a write whose answer may have been lost.
#[derive(Debug, Default)]
struct Lost {
    /// Some attempt's answer was lost: the call may have been carried out.
    maybe_done: bool,
    /// An answer was lost before this attempt: a late "already exists" may be that attempt.
    /// (A timeout fires while the request waits in the server's queue, and it lands after its
    /// check found nothing.)
    before: bool,
}

/// The retry policy.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
        }
    }
}

/// Rows in a row refused with the same trigger error before the run stops: one refusal is that
/// provider's, but a trigger that refuses everyone (broken, or misconfigured) would otherwise
/// fail every row of the cohort one call at a time.
pub const TRIGGER_REFUSALS_TO_STOP: u32 = 20;

/// The errors a pool's Lambda triggers answer for one user.
const TRIGGER_CODES: [&str; 3] = [
    "UserLambdaValidationException",
    "UnexpectedLambdaException",
    "InvalidLambdaResponseException",
];

/// Runs calls with pacing and retries, and counts them.
pub struct Executor {
    pub limiter: Arc<Limiter>,
    pub retry: RetryPolicy,
    pub cancel: Arc<Cancel>,
    calls: BTreeMap<Category, AtomicU64>,
    /// A fatal error (credentials, permissions, pool gone) stops the run; the first one is kept.
    fatal: std::sync::Mutex<Option<CallError>>,
    /// The last trigger error's code and how many calls in a row answered it.
    refusals: std::sync::Mutex<(Option<String>, u32)>,
}

impl Executor {
    pub fn new(limiter: Arc<Limiter>, retry: RetryPolicy, cancel: Arc<Cancel>) -> Self {
        Executor {
            limiter,
            retry,
            cancel,
            calls: Category::ALL
                .iter()
                .map(|c| (*c, AtomicU64::new(0)))
                .collect(),
            fatal: std::sync::Mutex::new(None),
            refusals: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Counts trigger refusals in a row (any other answer of a write breaks the run of them);
    /// at [`TRIGGER_REFUSALS_TO_STOP`] the run stops, as the trigger refuses everyone.
    fn note_refusal(&self, op: Op, error: Option<&CallError>) {
        if !op.is_write() {
            return;
        }
        let code = error
            .and_then(|e| e.code.as_deref())
            .filter(|c| TRIGGER_CODES.contains(c));
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        match code {
            None => *refusals = (None, 0),
            Some(code) if refusals.0.as_deref() == Some(code) => refusals.1 += 1,
            Some(code) => *refusals = (Some(code.to_string()), 1),
        }
        if refusals.1 == TRIGGER_REFUSALS_TO_STOP
            && let Some(e) = error
        {
            drop(refusals);
            self.fail_run(&CallError {
                message: format!(
                    "{TRIGGER_REFUSALS_TO_STOP} rows in a row were refused by the pool's Lambda \
                     trigger; it refuses everyone, so the run stops (last: {})",
                    e.message
                ),
                ..e.clone()
            });
        }
    }

    /// Waits for the message rate's permit, or for the run's stop (the call that follows is
    /// then not made).
    pub async fn pace_message(&self) {
        tokio::select! {
            biased;
            _ = self.limiter.acquire_message() => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// Calls `f` until it succeeds, fails for good, or runs out of attempts.
    ///
    /// Throttling and passing faults are retried; an answer lost on a call that must be checked
    /// rather than repeated (see [`Op::checked_when_lost`]) is returned at once with
    /// `maybe_done`: such calls go through [`Executor::call_verified`]. The email limit, row errors and fatal errors are
    /// never retried; a fatal error also cancels the run.
    pub async fn call<T, F, Fut>(&self, op: Op, f: F) -> Result<Done<T>, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        self.attempt(op, self.retry.max_attempts, f, None::<NoVerify<T>>)
            .await
    }

    /// [`Executor::call`] with its own limit on attempts.
    pub async fn call_with_attempts<T, F, Fut>(
        &self,
        op: Op,
        max_attempts: u32,
        f: F,
    ) -> Result<Done<T>, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        self.attempt(op, max_attempts, f, None::<NoVerify<T>>).await
    }

    /// A write that must not be repeated blindly. When an attempt's answer is lost, `verify`
    /// asks Cognito whether it went through: if it did, the call succeeded (`recovered`); if it
    /// did not, the write is tried again. A failure that follows a lost answer is verified too,
    /// so a write that did go through is never reported as failed.
    pub async fn call_verified<T, F, Fut, V, VFut>(
        &self,
        op: Op,
        f: F,
        verify: V,
    ) -> Result<Done<T>, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
        V: FnMut() -> VFut,
        VFut: Future<Output = Result<Option<T>, Failed>>,
    {
        self.attempt(op, self.retry.max_attempts, f, Some(verify))
            .await
    }

    async fn attempt<T, F, Fut, V, VFut>(
        &self,
        op: Op,
        max_attempts: u32,
        mut f: F,
        mut verify: Option<V>,
    ) -> Result<Done<T>, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
        V: FnMut() -> VFut,
        VFut: Future<Output = Result<Option<T>, Failed>>,
    {
        let category = op.category();
        let mut backoff = Backoff::new(
            self.retry.base,
            self.retry.cap,
            rand::rngs::StdRng::from_rng(&mut rand::rng()),
        );
        let mut attempts = 0;
        let mut lost = Lost::default();
        let mut last: Option<CallError> = None;
        loop {
            if !self.permit(op).await {
                return Err(Failed::stopped(op, last, attempts, lost.maybe_done));
            }
            attempts += 1;
            let error = match f().await {
                Ok(value) => {
                    self.limiter.succeeded(category);
                    self.note_refusal(op, None);
                    return Ok(Done {
                        value,
                        attempts,
                        recovered: false,
                    });
                }
                Err(fault) => CallError::new(op, fault),
            };
            let mut retry = self.react(op, &error, &mut lost);
            if lost.maybe_done
                && let Some(verify) = verify.as_mut()
            {
                match verify().await {
                    Ok(Some(value)) => {
                        return Ok(Done {
                            value,
                            attempts,
                            recovered: true,
                        });
                    }
                    // It did not go through: the write is as if never sent, and may be repeated.
                    Ok(None) => {
                        lost.maybe_done = false;
                        retry |= matches!(error.class, ErrorClass::Transient { .. });
                    }
                    Err(unknown) => {
                        return Err(Failed {
                            attempts: attempts + unknown.attempts,
                            maybe_done: true,
                            ..unknown
                        });
                    }
                }
            }
            if !retry || attempts >= max_attempts {
                return Err(Failed {
                    error,
                    attempts,
                    maybe_done: lost.maybe_done,
                    stopped: false,
                });
            }
            let delay = backoff.next().unwrap_or(self.retry.cap);
            tracing::debug!(op = op.name(), attempt = attempts, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
            self.cancel.sleep(delay).await;
            last = Some(error);
        }
    }

    /// Waits for `op`'s quota and counts the call; false once the run is stopped. Then no call
    /// begins, and none waits for its quota: a call in the air is awaited, so that what it did
    /// is known and recorded.
    async fn permit(&self, op: Op) -> bool {
        let permitted = !self.cancel.is_cancelled()
            && tokio::select! {
                biased;
                _ = self.limiter.acquire_op(op) => true,
                _ = self.cancel.cancelled() => false,
            };
        if permitted && let Some(n) = self.calls.get(&op.category()) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        permitted
    }

    /// What a failed attempt means: whether it is tried again, what it tells the limiter (a
    /// throttle slows the category down) and the run (a fatal error stops it), and whether a
    /// write may have been carried out unseen.
    fn react(&self, op: Op, error: &CallError, lost: &mut Lost) -> bool {
        if error.class != ErrorClass::Throttled {
            self.note_refusal(op, Some(error));
        }
        match error.class {
            ErrorClass::Throttled => {
                self.limiter.throttled(op.category());
                true
            }
            ErrorClass::Transient { ambiguous } => {
                lost.maybe_done |= ambiguous;
                lost.before |= ambiguous;
                !(ambiguous && op.checked_when_lost())
            }
            ErrorClass::Fatal => {
                self.fail_run(error);
                false
            }
            // "Already exists" after a lost attempt may be that attempt, landed late: check
            // again before taking it for someone else's.
            ErrorClass::Exists => {
                lost.maybe_done |= lost.before;
                false
            }
            // Likewise "not found" after a lost delete: the delete may have landed late.
            ErrorClass::NotFound if op == Op::AdminDeleteUser => {
                lost.maybe_done |= lost.before;
                false
            }
            ErrorClass::EmailQuota
            | ErrorClass::NotFound
            | ErrorClass::DeliveryFailed
            | ErrorClass::Permanent => false,
        }
    }

    /// Runs `f` over `items`, at most `limit` at a time, in this task; `done` receives each
    /// result as it finishes. Once the run is cancelled no new item starts (those in flight
    /// finish) and the items never started are returned. A panicking item is a bug: it is
    /// logged and reported as [`Panicked`], and the others go on.
    pub async fn for_each_bounded<T, R, F, Fut>(
        &self,
        items: impl IntoIterator<Item = T>,
        limit: usize,
        f: F,
        done: impl FnMut(Result<R, Panicked>),
    ) -> Vec<T>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = R>,
    {
        let mut not_started = Vec::new();
        self.for_each_bounded_then(items, limit, f, done, |item| not_started.push(item))
            .await;
        not_started
    }

    /// [`Executor::for_each_bounded`] over a stream too long to hold: the items never started
    /// go to `not_started` one by one, as they are drawn.
    pub async fn for_each_bounded_then<T, R, F, Fut>(
        &self,
        items: impl IntoIterator<Item = T>,
        limit: usize,
        mut f: F,
        mut done: impl FnMut(Result<R, Panicked>),
        mut not_started: impl FnMut(T),
    ) where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = R>,
    {
        let limit = limit.max(1);
        let mut items = items.into_iter().enumerate();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < limit {
                if self.cancel.is_cancelled() {
                    items.by_ref().for_each(|(_, item)| not_started(item));
                    break;
                }
                let Some((index, item)) = items.next() else {
                    break;
                };
                let task = std::panic::AssertUnwindSafe(f(item)).catch_unwind();
                in_flight.push(async move { (index, task.await) });
            }
            let Some((index, result)) = in_flight.next().await else {
                return;
            };
            done(result.map_err(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!("a task stopped unexpectedly: {message}");
                Panicked { index, message }
            }));
        }
    }

    fn fail_run(&self, error: &CallError) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(error.clone());
        }
        self.cancel.cancel();
    }

    /// The fatal error that stopped the run, if any.
    pub fn fatal(&self) -> Option<CallError> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// [`Executor::calls`] keyed by the category's name, for the reports.
    pub fn calls_by_name(&self) -> BTreeMap<String, u64> {
        self.calls()
            .into_iter()
            .map(|(c, n)| (c.name().to_string(), n))
            .collect()
    }

    /// Throttles Cognito answered, per category that had any, for the reports.
    pub fn throttles_by_name(&self) -> BTreeMap<String, u64> {
        self.limiter
            .stats()
            .into_iter()
            .filter(|(_, s)| s.throttles > 0)
            .map(|(c, s)| (c.name().to_string(), s.throttles))
            .collect()
    }

    /// Attempts that reached the limiter (and so Cognito), per category.
    pub fn calls(&self) -> BTreeMap<Category, u64> {
        self.calls
            .iter()
            .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::Quotas;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn backoff_is_bounded_by_the_doubling_ceiling_and_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        let delays: Vec<Duration> = Backoff::new(base, cap, StdRng::seed_from_u64(3))
            .take(40)
            .collect();
        for (n, d) in delays.iter().enumerate() {
            let ceiling = (base * 2u32.pow(n.min(20) as u32)).min(cap);
            assert!(*d <= ceiling, "delay {n} = {d:?} above {ceiling:?}");
        }
        // Full jitter spreads the late delays over the whole range up to the cap.
        let late: Vec<_> = delays[10..].iter().collect();
        assert!(late.iter().any(|d| **d < cap / 4));
        assert!(late.iter().any(|d| **d > cap / 2));
    }

    #[test]
    fn backoff_is_reproducible_with_a_seed() {
        let a: Vec<_> = Backoff::new(
            Duration::from_millis(50),
            Duration::from_secs(1),
            StdRng::seed_from_u64(9),
        )
        .take(10)
        .collect();
        let b: Vec<_> = Backoff::new(
            Duration::from_millis(50),
            Duration::from_secs(1),
            StdRng::seed_from_u64(9),
        )
        .take(10)
        .collect();
        assert_eq!(a, b);
    }

    fn executor() -> Executor {
        let mut quotas = Quotas::default();
        for &c in Category::ALL {
            quotas.set(c, 10_000.0, crate::limiter::QuotaSource::ConfigFile);
        }
        Executor::new(
            Arc::new(Limiter::new(&quotas, 1.0)),
            RetryPolicy {
                max_attempts: 4,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
            Arc::new(Cancel::default()),
        )
    }

    /// A fault that [`classify`](crate::cognito::classify) puts in `class`.
    fn fault(class: ErrorClass) -> Fault {
        use crate::cognito::FaultKind;
        let (kind, code) = match class {
            ErrorClass::Throttled => (400, "TooManyRequestsException"),
            ErrorClass::Transient { ambiguous: false } => (500, "InternalErrorException"),
            ErrorClass::Transient { ambiguous: true } => {
                return Fault {
                    kind: FaultKind::Timeout,
                    code: None,
                    message: "x".into(),
                };
            }
            ErrorClass::EmailQuota => (400, "LimitExceededException"),
            ErrorClass::NotFound => (400, "UserNotFoundException"),
            ErrorClass::Exists => (400, "UsernameExistsException"),
            ErrorClass::DeliveryFailed => (400, "CodeDeliveryFailureException"),
            ErrorClass::Permanent => (400, "InvalidParameterException"),
            ErrorClass::Fatal => (400, "AccessDeniedException"),
        };
        Fault {
            kind: FaultKind::Service { http_status: kind },
            code: Some(code.into()),
            message: "x".into(),
        }
    }

    async fn run_script(
        op: Op,
        script: Vec<Result<u32, ErrorClass>>,
    ) -> (Result<Done<u32>, Failed>, usize) {
        let ex = executor();
        let script = Mutex::new(script.into_iter());
        let calls = Mutex::new(0usize);
        let result = ex
            .call(op, || {
                *calls.lock().unwrap() += 1;
                let next = script.lock().unwrap().next().expect("script long enough");
                async move { next.map_err(fault) }
            })
            .await;
        let n = *calls.lock().unwrap();
        (result, n)
    }

    #[tokio::test]
    async fn throttling_and_faults_are_retried_until_success() {
        let (r, n) = run_script(
            Op::AdminAddUserToGroup,
            vec![
                Err(ErrorClass::Throttled),
                Err(ErrorClass::Transient { ambiguous: false }),
                Err(ErrorClass::Transient { ambiguous: true }),
                Ok(7),
            ],
        )
        .await;
        let done = r.unwrap();
        assert_eq!((done.value, done.attempts, n), (7, 4, 4));
    }

    #[tokio::test]
    async fn attempts_are_capped() {
        let (r, n) = run_script(Op::AdminGetUser, vec![Err(ErrorClass::Throttled); 10]).await;
        let f = r.unwrap_err();
        assert_eq!((f.attempts, n), (4, 4));
        assert_eq!(f.error.class, ErrorClass::Throttled);
    }

    #[tokio::test]
    async fn the_email_limit_and_row_errors_are_never_retried() {
        for class in [
            ErrorClass::EmailQuota,
            ErrorClass::Exists,
            ErrorClass::NotFound,
            ErrorClass::DeliveryFailed,
            ErrorClass::Permanent,
        ] {
            let (r, n) = run_script(Op::AdminCreateUser, vec![Err(class), Ok(1)]).await;
            assert_eq!(n, 1, "{class:?}");
            assert_eq!(r.unwrap_err().error.class, class);
        }
    }

    #[tokio::test]
    async fn a_lost_resend_is_handed_back_not_repeated() {
        let (r, n) = run_script(
            Op::AdminCreateUserResend,
            vec![Err(ErrorClass::Transient { ambiguous: true }), Ok(1)],
        )
        .await;
        assert_eq!(n, 1);
        assert!(r.unwrap_err().maybe_done);
        // A 500 to a RESEND may come after the message went out: handed back the same way.
        let (r, n) = run_script(
            Op::AdminCreateUserResend,
            vec![Err(ErrorClass::Transient { ambiguous: false }), Ok(1)],
        )
        .await;
        assert_eq!(n, 1);
        assert!(r.unwrap_err().maybe_done);
        // Throttling means it was not carried out: repeated.
        let (r, n) = run_script(
            Op::AdminCreateUserResend,
            vec![Err(ErrorClass::Throttled), Ok(1)],
        )
        .await;
        assert_eq!((n, r.unwrap().value), (2, 1));
    }

    #[tokio::test]
    async fn a_trigger_that_refuses_everyone_stops_the_run_and_one_refusal_does_not() {
        async fn refuse(ex: &Executor, op: Op) -> Result<Done<()>, Failed> {
            ex.call(op, || async {
                Err(Fault {
                    kind: crate::cognito::FaultKind::Service { http_status: 400 },
                    code: Some("UserLambdaValidationException".into()),
                    message: "PreSignUp failed".into(),
                })
            })
            .await
        }
        let ex = executor();
        for _ in 0..TRIGGER_REFUSALS_TO_STOP - 1 {
            let f = refuse(&ex, Op::AdminCreateUser).await.unwrap_err();
            assert_eq!(f.attempts, 1, "a refusal is not retried");
        }
        assert!(!ex.cancel.is_cancelled());
        // A create that goes through breaks the run of refusals.
        ex.call(Op::AdminCreateUser, || async { Ok(()) })
            .await
            .unwrap();
        for _ in 0..TRIGGER_REFUSALS_TO_STOP - 1 {
            let _ = refuse(&ex, Op::AdminCreateUser).await;
        }
        assert!(!ex.cancel.is_cancelled());
        let _ = refuse(&ex, Op::AdminCreateUser).await;
        assert!(ex.cancel.is_cancelled());
        let fatal = ex.fatal().unwrap();
        assert!(
            fatal.message.contains("refuses everyone"),
            "{}",
            fatal.message
        );
    }

    #[tokio::test]
    async fn a_fatal_error_cancels_the_run() {
        let ex = executor();
        let r: Result<Done<()>, Failed> = ex
            .call(Op::DescribeUserPool, || async {
                Err(fault(ErrorClass::Fatal))
            })
            .await;
        assert!(r.is_err());
        assert!(ex.cancel.is_cancelled());
        assert_eq!(ex.fatal().unwrap().op, Op::DescribeUserPool);
        assert_eq!(ex.calls()[&Category::UserPoolRead], 1);
    }

    /// Runs a verified write: `script` answers the write's attempts, `went` answers each
    /// verification. Returns the result, the writes made and the verifications made.
    async fn run_verified(
        script: Vec<Result<u32, ErrorClass>>,
        went: Vec<Option<u32>>,
    ) -> (Result<Done<u32>, Failed>, usize, usize) {
        run_verified_op(Op::AdminCreateUserResend, script, went).await
    }

    async fn run_verified_op(
        op: Op,
        script: Vec<Result<u32, ErrorClass>>,
        went: Vec<Option<u32>>,
    ) -> (Result<Done<u32>, Failed>, usize, usize) {
        let ex = executor();
        let script = Mutex::new(script.into_iter());
        let went = Mutex::new(went.into_iter());
        let (writes, checks) = (Mutex::new(0usize), Mutex::new(0usize));
        let result = ex
            .call_verified(
                op,
                || {
                    *writes.lock().unwrap() += 1;
                    let next = script.lock().unwrap().next().expect("script long enough");
                    async move { next.map_err(fault) }
                },
                || {
                    *checks.lock().unwrap() += 1;
                    let next = went
                        .lock()
                        .unwrap()
                        .next()
                        .expect("verifications long enough");
                    async move { Ok(next) }
                },
            )
            .await;
        let (w, c) = (*writes.lock().unwrap(), *checks.lock().unwrap());
        (result, w, c)
    }

    #[tokio::test]
    async fn a_lost_write_that_went_through_is_a_success_and_not_repeated() {
        let lost = Err(ErrorClass::Transient { ambiguous: true });
        let (r, writes, checks) = run_verified(vec![lost, Ok(2)], vec![Some(1)]).await;
        let done = r.unwrap();
        assert_eq!(
            (done.value, done.recovered, writes, checks),
            (1, true, 1, 1)
        );
    }

    #[tokio::test]
    async fn a_lost_delete_that_landed_late_is_found_done_not_failed_as_not_found() {
        let lost = Err(ErrorClass::Transient { ambiguous: true });
        // Checked while still there, repeated, refused as not found: checked again, gone.
        let (r, writes, checks) = run_verified_op(
            Op::AdminDeleteUser,
            vec![lost, Err(ErrorClass::NotFound)],
            vec![None, Some(0)],
        )
        .await;
        let done = r.unwrap();
        assert_eq!((done.recovered, writes, checks), (true, 2, 2));
        // With nothing lost before it, "not found" is the answer.
        let (r, _, checks) =
            run_verified_op(Op::AdminDeleteUser, vec![Err(ErrorClass::NotFound)], vec![]).await;
        assert_eq!(
            (r.unwrap_err().error.class, checks),
            (ErrorClass::NotFound, 0)
        );
    }

    #[tokio::test]
    async fn a_lost_write_that_did_not_go_through_is_repeated() {
        let lost = Err(ErrorClass::Transient { ambiguous: true });
        let (r, writes, checks) = run_verified(vec![lost, Ok(2)], vec![None]).await;
        let done = r.unwrap();
        assert_eq!(
            (done.value, done.recovered, writes, checks),
            (2, false, 2, 1)
        );
    }

    #[tokio::test]
    async fn every_lost_answer_is_checked_before_the_write_is_repeated() {
        let lost = Err(ErrorClass::Transient { ambiguous: true });
        // Checked and not gone through, repeated, refused, checked again and still not this
        // write's: a plain failure, nothing maybe done.
        let (r, writes, checks) =
            run_verified(vec![lost, Err(ErrorClass::Exists)], vec![None, None]).await;
        let f = r.unwrap_err();
        assert_eq!(
            (f.error.class, f.maybe_done, writes, checks),
            (ErrorClass::Exists, false, 2, 2)
        );
        // The lost write landed after its check (it waited in the server's queue): the repeat
        // is refused as existing, and the second check finds the first write.
        let (r, writes, checks) =
            run_verified(vec![lost, Err(ErrorClass::Exists)], vec![None, Some(3)]).await;
        let done = r.unwrap();
        assert_eq!(
            (done.value, done.recovered, writes, checks),
            (3, true, 2, 2)
        );
        // Without a lost attempt before it, "exists" is not checked: someone else's user.
        let (r, writes, checks) = run_verified(vec![Err(ErrorClass::Exists)], vec![]).await;
        assert_eq!((r.unwrap_err().maybe_done, writes, checks), (false, 1, 0));
        // Lost twice; the second check finds that the repeat went through.
        let (r, writes, checks) = run_verified(vec![lost, lost], vec![None, Some(5)]).await;
        let done = r.unwrap();
        assert_eq!(
            (done.value, done.recovered, writes, checks),
            (5, true, 2, 2)
        );
        // Lost on every attempt and never gone through: a failure, and no message went out.
        let (r, writes, checks) = run_verified(vec![lost; 4], vec![None; 4]).await;
        let f = r.unwrap_err();
        assert_eq!((f.attempts, writes, checks), (4, 4, 4));
        assert!(!f.maybe_done);
    }

    #[tokio::test]
    async fn a_call_in_backoff_when_the_run_stops_is_not_made_again() {
        let mut ex = executor();
        ex.retry.base = Duration::from_secs(60);
        ex.retry.cap = Duration::from_secs(60);
        let ex = Arc::new(ex);
        let calls = Arc::new(AtomicU32::new(0));
        let (ex2, calls2) = (Arc::clone(&ex), Arc::clone(&calls));
        let call = tokio::spawn(async move {
            ex2.call(Op::AdminCreateUser, || {
                calls2.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(fault(ErrorClass::Throttled)) }
            })
            .await
        });
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let stopped_at = std::time::Instant::now();
        ex.cancel.cancel();
        let f = call.await.unwrap().unwrap_err();
        assert!(f.stopped, "{f:?}");
        assert_eq!(f.attempts, 1, "no attempt after the stop");
        assert_eq!(
            f.error.class,
            ErrorClass::Throttled,
            "the last attempt's error"
        );
        assert!(
            stopped_at.elapsed() < Duration::from_secs(1),
            "not after its backoff"
        );
    }

    #[tokio::test]
    async fn a_call_waiting_for_its_quota_when_the_run_stops_is_not_made() {
        let mut quotas = Quotas::default();
        quotas.set(
            Category::UserCreation,
            0.01,
            crate::limiter::QuotaSource::ConfigFile,
        );
        let ex = Arc::new(Executor::new(
            Arc::new(Limiter::new(&quotas, 1.0)),
            RetryPolicy::default(),
            Arc::new(Cancel::default()),
        ));
        let made = Arc::new(AtomicU32::new(0));
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let (ex, made) = (Arc::clone(&ex), Arc::clone(&made));
            waiting.push(tokio::spawn(async move {
                ex.call(Op::AdminCreateUser, || {
                    made.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<(), Fault>(()) }
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        ex.cancel.cancel();
        let mut results = Vec::new();
        for w in waiting {
            results.push(w.await);
        }
        let stopped = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(f)) if f.stopped && f.attempts == 0))
            .count();
        assert!(
            made.load(Ordering::SeqCst) <= 2,
            "the quota's burst at most"
        );
        assert!(stopped >= 1, "those still waiting are not made");
        assert!(
            ex.call(Op::AdminGetUser, || async { Ok::<(), Fault>(()) })
                .await
                .unwrap_err()
                .stopped
        );
    }

    #[tokio::test]
    async fn a_verification_that_fails_leaves_the_write_maybe_done() {
        let ex = executor();
        let r: Result<Done<u32>, Failed> = ex
            .call_verified(
                Op::AdminCreateUserResend,
                || async { Err(fault(ErrorClass::Transient { ambiguous: true })) },
                || async {
                    Err(Failed {
                        error: CallError::new(Op::AdminGetUser, fault(ErrorClass::Permanent)),
                        attempts: 1,
                        maybe_done: false,
                        stopped: false,
                    })
                },
            )
            .await;
        let f = r.unwrap_err();
        assert!(f.maybe_done);
        assert_eq!((f.attempts, f.error.op), (2, Op::AdminGetUser));
    }

    #[tokio::test]
    async fn the_fan_out_is_bounded_and_reports_every_item() {
        let ex = executor();
        let running = Mutex::new((0usize, 0usize));
        let mut seen = Vec::new();
        let left = ex
            .for_each_bounded(
                0..20u32,
                3,
                |i| {
                    let running = &running;
                    async move {
                        {
                            let mut r = running.lock().unwrap();
                            r.0 += 1;
                            r.1 = r.1.max(r.0);
                        }
                        tokio::time::sleep(Duration::from_millis(u64::from(i % 4))).await;
                        running.lock().unwrap().0 -= 1;
                        i * 2
                    }
                },
                |r| seen.push(r.unwrap()),
            )
            .await;
        assert!(left.is_empty());
        seen.sort();
        assert_eq!(seen, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(
            running.lock().unwrap().1,
            3,
            "at most 3 at a time, and 3 were used"
        );
    }

    #[tokio::test]
    async fn cancelling_stops_new_items_and_hands_them_back() {
        let ex = executor();
        let mut finished = Vec::new();
        let left = ex
            .for_each_bounded(
                0..10u32,
                2,
                |i| {
                    let ex = &ex;
                    async move {
                        if i == 3 {
                            ex.cancel.cancel();
                        }
                        i
                    }
                },
                |r| finished.push(r.unwrap()),
            )
            .await;
        finished.sort();
        // Item 4 was already in flight beside item 3 (two at a time): it finishes too.
        assert_eq!(finished, vec![0, 1, 2, 3, 4]);
        assert_eq!(left, vec![5, 6, 7, 8, 9]);
    }

    #[tokio::test]
    async fn a_panicking_item_is_reported_and_the_others_go_on() {
        let ex = executor();
        let mut results = Vec::new();
        ex.for_each_bounded(
            0..4u32,
            4,
            |i| async move {
                assert!(i != 2, "item two is broken");
                i
            },
            |r| results.push(r),
        )
        .await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
        let broken: Vec<_> = results.into_iter().filter_map(Result::err).collect();
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].index, 2);
        assert!(broken[0].message.contains("item two is broken"));
    }
}
