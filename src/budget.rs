//! The message budget: how many invitations a run may still send (Cognito's own email sender
//! allows 50 a day per account; `--email-budget` sets another cap), counted across runs from
//! the state, and handed out as [`Ticket`]s. Must not send anything or decide who is invited.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, Utc};

use crate::cognito::{Delivery, PoolInfo};
use crate::error::Error;
use crate::report::Deferral;
use crate::state::State;

/// Cognito's own email sender allows this many emails a day per account.
pub const COGNITO_DEFAULT_DAILY_EMAILS: u32 = 50;

/// The window the caps count over.
const WINDOW: Duration = Duration::hours(24);

/// How many invitations this run may still send.
pub struct Budget {
    delivery: Delivery,
    /// `None`: unlimited.
    remaining: Mutex<Option<u64>>,
    /// Cognito said the account's daily limit is reached: nothing more goes out in this run.
    stopped: AtomicBool,
}

/// A share of the budget, taken before an invitation is sent. Dropping it gives the share back;
/// [`Ticket::spend`] keeps it, once the message went out or may have.
#[must_use = "a ticket dropped unspent gives its share back"]
pub struct Ticket<'a> {
    /// `None`: the invitation sends no message, so it took nothing.
    budget: Option<&'a Budget>,
}

impl Ticket<'_> {
    /// The message went out, or may have (an answer was lost): the share stays spent.
    pub fn spend(mut self) {
        self.budget = None;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take()
            && let Some(n) = budget
                .remaining
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
        {
            *n += 1;
        }
    }
}

impl Budget {
    /// A budget of `remaining` messages (`None`: unlimited) for invitations by `delivery`.
    pub fn new(delivery: Delivery, remaining: Option<u64>) -> Self {
        Budget {
            delivery,
            remaining: Mutex::new(remaining),
            stopped: AtomicBool::new(false),
        }
    }

    /// The run's budget: `cap` (default 50 with Cognito's own email sender, unlimited
    /// otherwise) per rolling 24 hours, less what earlier runs sent in that window.
    pub fn for_run(
        pool: &PoolInfo,
        delivery: Delivery,
        cap: Option<u32>,
        state: &State,
        rows: usize,
        now: DateTime<Utc>,
    ) -> Result<Budget, Error> {
        if !delivery.sends_message() {
            return Ok(Budget::new(delivery, None));
        }
        let default = (delivery == Delivery::Email && pool.uses_cognito_email())
            .then_some(COGNITO_DEFAULT_DAILY_EMAILS);
        let Some(limit) = cap.or(default) else {
            return Ok(Budget::new(delivery, None));
        };
        let (used, _) = state.messages_since(now - WINDOW, delivery)?;
        let left = u64::from(limit).saturating_sub(used);
        tracing::info!(
            "{} budget: {limit} per 24 hours{}, {used} sent in the last 24 hours, {left} left",
            delivery.as_str(),
            if default.is_some() && cap.is_none() {
                " (Cognito's own sender, COGNITO_DEFAULT)"
            } else {
                ""
            }
        );
        if rows as u64 > left {
            tracing::warn!(
                "this cohort has {rows} rows and the budget allows {left} more invitations now: \
                 the rest are deferred to later runs"
            );
        }
        Ok(Budget::new(delivery, Some(left)))
    }

    /// A share for one invitation; `sends_message` false takes nothing.
    pub fn take(&self, sends_message: bool) -> Result<Ticket<'_>, Deferral> {
        if !sends_message {
            return Ok(Ticket { budget: None });
        }
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Deferral::EmailLimit);
        }
        let mut left = self.remaining.lock().unwrap_or_else(|e| e.into_inner());
        match left.as_mut() {
            None => Ok(Ticket { budget: None }),
            Some(0) => Err(Deferral::Budget),
            Some(n) => {
                *n -= 1;
                Ok(Ticket { budget: Some(self) })
            }
        }
    }

    /// Cognito's daily email limit was reached: no more invitations in this run.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// When the oldest invitation in the rolling window leaves it, freeing a share.
    pub fn frees_at(
        &self,
        state: &State,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        if !self.delivery.sends_message() {
            return Ok(None);
        }
        Ok(state
            .message_times_since(now - WINDOW, self.delivery)?
            .first()
            .map(|t| *t + WINDOW))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(b: &Budget) -> Option<u64> {
        *b.remaining.lock().unwrap()
    }

    #[test]
    fn a_ticket_gives_its_share_back_unless_spent() {
        let b = Budget::new(Delivery::Email, Some(2));
        let t = b.take(true).unwrap();
        assert_eq!(left(&b), Some(1));
        drop(t);
        assert_eq!(left(&b), Some(2), "dropped unspent: given back");
        b.take(true).unwrap().spend();
        b.take(true).unwrap().spend();
        assert_eq!(left(&b), Some(0));
        assert_eq!(b.take(true).err(), Some(Deferral::Budget));
        assert_eq!(left(&b), Some(0), "a refused take takes nothing");
    }

    #[test]
    fn an_invitation_without_a_message_takes_and_gives_back_nothing() {
        let b = Budget::new(Delivery::Email, Some(0));
        let t = b.take(false).expect("no message, no share needed");
        drop(t);
        assert_eq!(
            left(&b),
            Some(0),
            "nothing was taken, so nothing is given back"
        );
    }

    #[test]
    fn the_email_limit_stops_every_message_and_unlimited_never_runs_out() {
        let b = Budget::new(Delivery::Email, None);
        for _ in 0..1000 {
            b.take(true).unwrap().spend();
        }
        b.stop();
        assert_eq!(b.take(true).err(), Some(Deferral::EmailLimit));
        assert!(
            b.take(false).is_ok(),
            "a suppressed invitation sends nothing"
        );
    }
}
