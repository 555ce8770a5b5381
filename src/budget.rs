//! The message budget: how many invitations a run may still send by the medium that carries
//! them (Cognito's own email sender allows 50 a day per account; SES has the account's send
//! quota; SMS goes through SNS; `--email-budget` and `--sms-budget` set caps of their own),
//! counted across runs from the state, and handed out as [`Ticket`]s. Must not send anything or
//! decide who is invited.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, Utc};

use crate::cognito::{Delivery, PoolInfo, SendQuota, Sender};
use crate::error::Error;
use crate::report::Deferral;
use crate::state::State;

/// Cognito's own email sender allows this many emails a day per account.
pub const COGNITO_DEFAULT_DAILY_EMAILS: u32 = 50;

/// The window the caps count over.
const WINDOW: Duration = Duration::hours(24);

/// The caps the settings put on messages per rolling 24 hours (`None`: no cap of their own).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    pub email: Option<u32>,
    pub sms: Option<u32>,
}

/// How many invitations this run may still send.
pub struct Budget {
    delivery: Delivery,
    /// `None`: unlimited.
    remaining: Mutex<Option<u64>>,
    /// Cognito said the account's daily limit is reached: nothing more goes out in this run.
    stopped: AtomicBool,
    /// The cap per rolling 24 hours the remaining share was counted from, which a shared state
    /// also enforces invitation by invitation (another machine may be spending it too).
    limit: Option<u32>,
    /// What the messages count against ([`PoolInfo::sender`]); `None` for no message.
    sender: Option<String>,
    /// Who sends them, in words for the report ([`PoolInfo::sender_of`]).
    sent_by: Option<String>,
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
            limit: None,
            sender: None,
            sent_by: None,
        }
    }

    /// Who sends this run's messages, in words, where the pool is known.
    pub fn sent_by(&self) -> Option<&str> {
        self.sent_by.as_deref()
    }

    /// The run's budget for invitations by `delivery`, per rolling 24 hours:
    /// - email with Cognito's own sender: `caps.email` (default 50), less what earlier runs sent;
    /// - email through SES: the account's remaining send quota (`ses`, when it could be read),
    ///   and `caps.email` less what earlier runs sent, whichever is smaller;
    /// - SMS: `caps.sms` less what earlier runs sent (unlimited without it).
    ///
    /// "What earlier runs sent" is what went through the same sender of the same account, in
    /// every pool the state knows: Cognito's 50 a day are the account's, and SES or SMS
    /// messages do not count against them.
    pub fn for_run(
        pool: &PoolInfo,
        delivery: Delivery,
        caps: Caps,
        ses: Option<&Result<SendQuota, String>>,
        state: &State,
        rows: usize,
        now: DateTime<Utc>,
    ) -> Result<Budget, Error> {
        let sent_by = Some(pool.sender_of(delivery).to_string());
        let Some((cap, default)) = limits_of(pool, delivery, caps) else {
            return Ok(Budget {
                sent_by,
                ..Budget::new(delivery, None)
            });
        };
        let ses_left = ses_left(ses);
        let sender = pool.sender(delivery);
        let ours = match (cap.or(default), &sender) {
            (Some(limit), Some(sender)) => {
                let cognito_default = default.is_some() && cap.is_none();
                Some(left_of(
                    state,
                    delivery,
                    sender,
                    limit,
                    cognito_default,
                    now,
                )?)
            }
            _ => None,
        };
        let Some(left) = [ours, ses_left].into_iter().flatten().min() else {
            return Ok(Budget {
                sender,
                sent_by,
                ..Budget::new(delivery, None)
            });
        };
        // Expected of a cohort larger than a day's budget, every hour until it is through: said
        // as news, not as a warning (cron with -q would mail it each hour). A budget that lets
        // nothing through for hours is the stall the metrics and the report measure.
        if rows as u64 > left {
            tracing::info!(
                "this cohort has {rows} rows and the budget allows {left} more invitations now: \
                 the rest are deferred to later runs"
            );
        }
        Ok(Budget {
            limit: cap.or(default),
            sender,
            sent_by,
            ..Budget::new(delivery, Some(left))
        })
    }

    /// What an invitation that sends a message counts against, for the state's intent.
    pub fn counted(&self) -> Option<crate::state::Counted<'_>> {
        Some(crate::state::Counted {
            sender: self.sender.as_deref()?,
            limit: self.limit,
        })
    }

    /// A share for one invitation; `sends_message` false takes nothing.
    pub fn take(&self, sends_message: bool) -> Result<Ticket<'_>, Deferral> {
        if !sends_message {
            return Ok(Ticket { budget: None });
        }
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Deferral::MessageLimit);
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
        let Some(sender) = self
            .sender
            .as_deref()
            .filter(|_| self.delivery.sends_message())
        else {
            return Ok(None);
        };
        Ok(state
            .message_times_since(now - WINDOW, self.delivery, sender)?
            .first()
            .map(|t| *t + WINDOW))
    }
}

/// The settings' cap and the sender's own default cap for invitations by `delivery`; `None`
/// for a suppressed invitation, which sends no message and so has no budget.
fn limits_of(
    pool: &PoolInfo,
    delivery: Delivery,
    caps: Caps,
) -> Option<(Option<u32>, Option<u32>)> {
    let limits = match delivery {
        Delivery::Suppress => return None,
        Delivery::Sms if pool.sender_of(delivery) == Sender::Sns => {
            tracing::warn!(
                "SMS goes through Amazon SNS: a new account has a $1.00 a month spend limit and \
                 a sandbox, and SNS may stop sending without Cognito reporting an error; set \
                 --sms-budget to stay inside them"
            );
            (caps.sms, None)
        }
        Delivery::Sms => (caps.sms, None),
        Delivery::Email if pool.uses_cognito_email() => {
            (caps.email, Some(COGNITO_DEFAULT_DAILY_EMAILS))
        }
        Delivery::Email => (caps.email, None),
    };
    Some(limits)
}

/// What the SES account has left today, when its quota could be read (logged, with a warning
/// for an account that looks like it is in the sandbox, or whose quota could not be read).
fn ses_left(ses: Option<&Result<SendQuota, String>>) -> Option<u64> {
    match ses {
        Some(Ok(quota)) => {
            if quota.looks_like_sandbox() {
                tracing::warn!(
                    "the SES account looks like it is in the sandbox ({} a day, {} a second): \
                     it delivers only to verified addresses",
                    quota.max_24_hour_send,
                    quota.max_send_rate
                );
            }
            tracing::info!(
                "SES send quota: {} a day, {} a second, {} sent in the last 24 hours",
                quota.max_24_hour_send,
                quota.max_send_rate,
                quota.sent_last_24_hours
            );
            Some(quota.remaining())
        }
        Some(Err(why)) => {
            tracing::warn!(
                "could not read the SES send quota ({why}); using email_budget and email_rate \
                 from the settings"
            );
            None
        }
        None => None,
    }
}

/// What `limit` leaves of `sender`'s messages in the last 24 hours, as the state counts them
/// across every pool (logged; `cognito_default`: the limit is Cognito's own sender's).
fn left_of(
    state: &State,
    delivery: Delivery,
    sender: &str,
    limit: u32,
    cognito_default: bool,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let (used, _) = state.messages_since(now - WINDOW, delivery, sender)?;
    let left = u64::from(limit).saturating_sub(used);
    tracing::info!(
        "{} budget: {limit} per 24 hours{}, {used} sent in the last 24 hours, {left} left",
        delivery.as_str(),
        if cognito_default {
            " (Cognito's own sender, COGNITO_DEFAULT)"
        } else {
            ""
        }
    );
    Ok(left)
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
        assert_eq!(b.take(true).err(), Some(Deferral::MessageLimit));
        assert!(
            b.take(false).is_ok(),
            "a suppressed invitation sends nothing"
        );
    }

    fn state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(
            &crate::state::Location::File(dir.path().join("s.db")),
            crate::state::Access::Write,
        )
        .unwrap();
        (dir, state)
    }

    fn ses_pool() -> PoolInfo {
        let mut pool = crate::cognito::memory::pool_info();
        pool.email_sending_account = "DEVELOPER".into();
        pool
    }

    #[test]
    fn ses_leaves_what_the_account_has_left_today_and_the_settings_may_cap_it_lower() {
        let (_dir, state) = state();
        let quota = Ok(SendQuota {
            max_24_hour_send: 1000.0,
            max_send_rate: 14.0,
            sent_last_24_hours: 990.0,
        });
        let b = Budget::for_run(
            &ses_pool(),
            Delivery::Email,
            Caps::default(),
            Some(&quota),
            &state,
            5,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(left(&b), Some(10));
        let capped = Caps {
            email: Some(3),
            sms: None,
        };
        let b = Budget::for_run(
            &ses_pool(),
            Delivery::Email,
            capped,
            Some(&quota),
            &state,
            5,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(left(&b), Some(3));
        // The quota could not be read: the settings decide.
        let denied: Result<SendQuota, String> = Err("AccessDeniedException".into());
        let b = Budget::for_run(
            &ses_pool(),
            Delivery::Email,
            capped,
            Some(&denied),
            &state,
            5,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(left(&b), Some(3));
        let b = Budget::for_run(
            &ses_pool(),
            Delivery::Email,
            Caps::default(),
            Some(&denied),
            &state,
            5,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(left(&b), None);
    }

    /// Sends one invitation by email from `pool`, through the budget as `run` does.
    fn send(state: &State, pool: &PoolInfo, key: &str) {
        let b = Budget::for_run(
            pool,
            Delivery::Email,
            Caps::default(),
            None,
            state,
            1,
            Utc::now(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let request = crate::state::IntentRequest {
            kind: crate::state::InviteKind::Create,
            medium: Delivery::Email,
            counted: b.counted(),
            run_id: "r",
            at: Utc::now(),
        };
        let id = rt
            .block_on(state.intent(crate::state::Subject::new(&pool.id, key), request))
            .unwrap()
            .id()
            .unwrap();
        state.settle_intent(id, Some(Utc::now()), false).unwrap();
    }

    #[test]
    fn cognitos_fifty_are_the_accounts_shared_by_its_pools_and_not_spent_by_ses_or_another_account()
    {
        let (_dir, state) = state();
        let cognito = crate::cognito::memory::pool_info();
        let mut sibling = cognito.clone();
        sibling.id = "eu-west-1_sibling".into();
        let mut ses = ses_pool();
        ses.id = "eu-west-1_ses".into();
        let mut elsewhere = cognito.clone();
        elsewhere.id = "eu-west-1_elsewhere".into();
        elsewhere.arn = Some("arn:aws:cognito-idp:eu-west-1:999999999999:userpool/x".into());
        send(&state, &sibling, "a");
        send(&state, &ses, "b");
        send(&state, &ses, "c");
        send(&state, &elsewhere, "d");
        let b = Budget::for_run(
            &cognito,
            Delivery::Email,
            Caps::default(),
            None,
            &state,
            1,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(left(&b), Some(49), "only the sibling pool's email counts");
        assert_eq!(b.counted().unwrap().limit, Some(50));
        assert_eq!(b.counted().unwrap().sender, "email:cognito:123456789012");
    }

    #[test]
    fn sms_has_its_own_cap_and_cognitos_sender_its_fifty() {
        let (_dir, state) = state();
        let caps = Caps {
            email: None,
            sms: Some(7),
        };
        let pool = crate::cognito::memory::pool_info();
        let sms = Budget::for_run(&pool, Delivery::Sms, caps, None, &state, 1, Utc::now()).unwrap();
        assert_eq!(left(&sms), Some(7));
        let email =
            Budget::for_run(&pool, Delivery::Email, caps, None, &state, 1, Utc::now()).unwrap();
        assert_eq!(left(&email), Some(u64::from(COGNITO_DEFAULT_DAILY_EMAILS)));
    }
}
