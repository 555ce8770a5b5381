//! The one retry layer: every Cognito call goes through [`Executor::call`], which takes a
//! rate-limiter permit for each attempt, retries throttling and passing faults with exponential
//! backoff and full jitter, and counts what reached Cognito. Also the run's cancellation flag.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use tokio::sync::Notify;

use crate::cognito::{CallError, ErrorClass};
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
        if self.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.notify.notified() => {}
        }
    }
}

/// A call that succeeded, and how many attempts it took.
#[derive(Debug)]
pub struct Done<T> {
    pub value: T,
    pub attempts: u32,
}

/// A call that failed for good.
#[derive(Debug, Clone)]
pub struct Failed {
    pub error: CallError,
    pub attempts: u32,
    /// Some attempt's answer was lost: the call may have been carried out.
    pub maybe_done: bool,
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

/// Runs calls with pacing and retries, and counts them.
pub struct Executor {
    pub limiter: Arc<Limiter>,
    pub retry: RetryPolicy,
    pub cancel: Arc<Cancel>,
    calls: BTreeMap<Category, AtomicU64>,
    /// A fatal error (credentials, permissions, pool gone) stops the run; the first one is kept.
    fatal: std::sync::Mutex<Option<CallError>>,
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
        }
    }

    /// Calls `f` until it succeeds, fails for good, or runs out of attempts.
    ///
    /// Throttling and passing faults are retried; an answer lost on a call whose repeat would do
    /// harm (a RESEND: a second message) is returned at once with `maybe_done`, for the caller to
    /// check. The email limit, row errors and fatal errors are never retried; a fatal error also
    /// cancels the run.
    pub async fn call<T, F, Fut>(&self, op: Op, f: F) -> Result<Done<T>, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        self.call_with_attempts(op, self.retry.max_attempts, f)
            .await
    }

    /// [`Executor::call`] with its own limit on attempts.
    pub async fn call_with_attempts<T, F, Fut>(
        &self,
        op: Op,
        max_attempts: u32,
        mut f: F,
    ) -> Result<Done<T>, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let category = op.category();
        let mut backoff = Backoff::new(
            self.retry.base,
            self.retry.cap,
            rand::rngs::StdRng::from_rng(&mut rand::rng()),
        );
        let mut attempts = 0;
        let mut maybe_done = false;
        loop {
            self.limiter.acquire(category).await;
            attempts += 1;
            if let Some(n) = self.calls.get(&category) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            let error = match f().await {
                Ok(value) => {
                    self.limiter.succeeded(category);
                    return Ok(Done { value, attempts });
                }
                Err(e) => e,
            };
            let retry = match error.class {
                ErrorClass::Throttled => {
                    self.limiter.throttled(category);
                    true
                }
                ErrorClass::Transient { ambiguous } => {
                    maybe_done |= ambiguous;
                    !(ambiguous && op.repeat_is_harmful())
                }
                ErrorClass::Fatal => {
                    self.fail_run(&error);
                    false
                }
                ErrorClass::EmailQuota
                | ErrorClass::NotFound
                | ErrorClass::Exists
                | ErrorClass::DeliveryFailed
                | ErrorClass::Permanent => false,
            };
            if !retry || attempts >= max_attempts || self.cancel.is_cancelled() {
                return Err(Failed {
                    error,
                    attempts,
                    maybe_done,
                });
            }
            let delay = backoff.next().unwrap_or(self.retry.cap);
            tracing::debug!(
                op = op.name(),
                attempt = attempts,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "retrying"
            );
            self.cancel.sleep(delay).await;
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
        for c in Category::ALL {
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

    fn err(op: Op, class: ErrorClass) -> CallError {
        CallError {
            op,
            class,
            code: None,
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
                async move { next.map_err(|c| err(op, c)) }
            })
            .await;
        let n = *calls.lock().unwrap();
        (result, n)
    }

    #[tokio::test]
    async fn throttling_and_faults_are_retried_until_success() {
        let (r, n) = run_script(
            Op::AdminCreateUser,
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
        let (r, n) = run_script(
            Op::AdminCreateUserResend,
            vec![Err(ErrorClass::Transient { ambiguous: false }), Ok(1)],
        )
        .await;
        assert_eq!((n, r.unwrap().value), (2, 1));
    }

    #[tokio::test]
    async fn a_fatal_error_cancels_the_run() {
        let ex = executor();
        let r: Result<Done<()>, Failed> = ex
            .call(Op::DescribeUserPool, || async {
                Err(err(Op::DescribeUserPool, ErrorClass::Fatal))
            })
            .await;
        assert!(r.is_err());
        assert!(ex.cancel.is_cancelled());
        assert_eq!(ex.fatal().unwrap().op, Op::DescribeUserPool);
        assert_eq!(ex.calls()[&Category::UserPoolRead], 1);
    }
}
