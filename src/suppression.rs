//! The SES account's suppression list, read for the address an invitation is about to go to:
//! one GetSuppressedDestination per address, in the region of the pool's SES identity, and only
//! where [`plan::checks_suppression`] asks for it (so never for a pool that does not send
//! through SES). A read that fails is said once; a refused one (no permission) is not asked
//! again in the command, which goes on as it did before the list was read at all. Never fatal.
//! Must not decide what the answer means (that is [`plan::screen`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::calls::Calls;
use crate::cognito::{Directory, ErrorClass, PoolInfo};
use crate::plan::{self, Suppression};

/// The suppression list of the pool's SES account, for one command.
#[derive(Debug, Default)]
pub struct SuppressionList {
    /// The region of the pool's SES identity; none where the pool does not send through SES.
    region: Option<String>,
    /// Why the list could not be read, once a read was refused: not asked again.
    refused: Mutex<Option<String>>,
    /// Some read failed, and that was said.
    said: AtomicBool,
    /// Whether a read has been answered: until then reads go one at a time, so that a list the
    /// permissions refuse is asked once, not once for every row in flight.
    answered: tokio::sync::Mutex<bool>,
}

impl SuppressionList {
    /// The list of the SES account `pool` sends its email through.
    pub fn of(pool: &PoolInfo) -> Self {
        SuppressionList {
            region: pool.ses_region().map(str::to_string),
            ..SuppressionList::default()
        }
    }

    /// The screened decision: `d` as it stands, unless it sends a message through SES to
    /// `email`, which is then read on the list first ([`plan::screen`]).
    pub async fn screen<D: Directory>(
        &self,
        calls: &Calls<D>,
        pool: &PoolInfo,
        delivery: crate::cognito::Delivery,
        d: plan::Decision,
        email: Option<&str>,
    ) -> plan::Decision {
        if !plan::checks_suppression(&d, pool.sender_of(delivery)) {
            return d;
        }
        let Some(email) = email else {
            return d;
        };
        let found = self.read(calls, email).await;
        plan::screen(d, &found)
    }

    /// Whether `email` is on the list: [`Suppression::Unknown`] when it cannot be read.
    pub async fn read<D: Directory>(&self, calls: &Calls<D>, email: &str) -> Suppression {
        let Some(region) = &self.region else {
            self.say_once("the pool names no SES identity (EmailConfiguration.SourceArn)");
            return Suppression::Unknown;
        };
        let mut answered = self.answered.lock().await;
        if *answered {
            drop(answered);
        } else {
            *answered = true;
        }
        if self.lock().is_some() {
            return Suppression::Unknown;
        }
        match calls.suppressed(region, email).await {
            Ok(done) => match done.value {
                Some(s) => Suppression::Suppressed(s),
                None => Suppression::Clear,
            },
            Err(f) if f.stopped => Suppression::Unknown,
            Err(f) => {
                // A refusal (no permission, a bad request) answers every address the same way;
                // a passing failure (throttled to the end, a server error) only this one.
                if f.error.class == ErrorClass::Permanent {
                    *self.lock() = Some(f.error.to_string());
                }
                self.say_once(&f.error.to_string());
                Suppression::Unknown
            }
        }
    }

    /// Why the list could not be read, where a read was refused.
    pub fn refused(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn say_once(&self, why: &str) {
        if !self.said.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the SES suppression list could not be read ({why}): invitations are re-issued \
                 without checking it; grant ses:GetSuppressedDestination (samples/iam-policy.json) \
                 so that none goes to an address SES drops"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cognito::memory::{self, MemoryPool, Script};
    use crate::executor::{Cancel, Executor, RetryPolicy};
    use crate::limiter::{Limiter, Quotas};

    fn calls() -> Calls<MemoryPool> {
        let exec = Arc::new(Executor::new(
            Arc::new(Limiter::new(&Quotas::default(), 1.0)),
            RetryPolicy::default(),
            Arc::new(Cancel::default()),
        ));
        Calls::new(MemoryPool::default(), exec, crate::calls::Probe::never())
    }

    fn ses_pool() -> PoolInfo {
        let mut pool = memory::pool_info();
        pool.email_sending_account = "DEVELOPER".into();
        pool.email_source_arn =
            Some("arn:aws:ses:eu-west-1:123456789012:identity/no-reply@example.jp".into());
        pool
    }

    /// Rows in flight at once wait for the first read's answer: a refused list is asked once,
    /// and every row goes on as unknown.
    #[tokio::test]
    async fn a_refusal_is_asked_once_however_many_rows_are_in_flight() {
        let calls = calls();
        calls
            .dir
            .script("suppressed", Script::Refuse("AccessDeniedException"));
        let list = SuppressionList::of(&ses_pool());
        let reads = futures_util::future::join_all(
            ["a@x.jp", "b@x.jp", "c@x.jp"].map(|e| list.read(&calls, e)),
        )
        .await;
        assert!(
            reads.iter().all(|r| *r == Suppression::Unknown),
            "{reads:?}"
        );
        assert_eq!(calls.dir.calls("suppressed"), 1);
        assert!(list.refused().unwrap().contains("AccessDeniedException"));
    }

    /// A pool that does not send through SES has no list to read: nothing is asked.
    #[tokio::test]
    async fn a_pool_without_ses_asks_nothing() {
        let calls = calls();
        let list = SuppressionList::of(&memory::pool_info());
        assert_eq!(list.read(&calls, "a@x.jp").await, Suppression::Unknown);
        assert_eq!(calls.dir.calls("suppressed"), 0);
    }
}
