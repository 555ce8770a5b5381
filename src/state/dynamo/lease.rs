//! The run lock of a shared table: a lease item (`LOCK`), taken only when there is none or it
//! has expired, renewed every third of its length while the process lives, trusted for five
//! sixths of it past its last confirmed renewal (the fence: a run that stalled past it writes
//! nothing more), and deleted when the process ends. Also who wrote an open intent, and whether
//! that writer may still be at work. Must not write anything but the lease item.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::Utc;

use super::Dynamo;
use super::client::{conditional_failed, read_item, sdk_error, wait};
use super::items::{LOCK, get_n, get_s, ms, n, s};
use crate::error::Error;
use crate::state::paced::Db;
use crate::state::{DYNAMODB_SCHEME, Table};

/// How long a help-desk command's open intent is taken to be alive: longer than any call
/// (attempts times the attempt timeout), so it is never settled under the command's feet.
pub(super) const DESK_INTENT_LIFE: chrono::Duration = chrono::Duration::minutes(10);

/// The run lock this process holds.
pub(super) struct Lease {
    pub(super) holder: String,
    lost: Arc<AtomicBool>,
    /// Until when (ms) this process may take the lease to be its own: the last renewal that
    /// DynamoDB confirmed, plus five sixths of the lease. Past it, another run may have it.
    valid_until: Arc<AtomicI64>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Whether this process may still take the lease to be its own at `now` (ms).
    fn holds(&self, now: i64) -> bool {
        !self.lost.load(Ordering::SeqCst) && now <= self.valid_until.load(Ordering::SeqCst)
    }

    /// Stops renewing the lease and deletes it, if it is still this process's (a lease taken
    /// over by another run is that run's).
    pub(super) fn release(self, rt: &tokio::runtime::Runtime, c: &Db, table: &str) {
        self.renewal.abort();
        let (c, t) = (c.clone(), table.to_string());
        let released = wait(rt, async move {
            c.call(
                c.delete_item()
                    .table_name(t)
                    .key("pk", s(LOCK))
                    .key("sk", s(LOCK))
                    .condition_expression("holder = :h")
                    .expression_attribute_values(":h", s(&self.holder)),
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

impl Dynamo {
    /// A run whose lease was taken over must write nothing more.
    pub(super) fn check_lease(&self) -> Result<(), Error> {
        if let Some(lease) = &self.lease
            && !lease.holds(ms(Utc::now()))
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
    pub(super) fn lock_holder(&self) -> Result<Option<(String, i64)>, Error> {
        let (c, t) = (self.client.clone(), self.table.clone());
        self.wait(async move { lock_of(&c, &t).await })
            .map_err(Error::State)
    }
}

/// A lease's length in milliseconds.
fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// Until when a lease renewed (or taken) at `renewed_at` is trusted: five sixths of its length,
/// so that a process whose renewals stopped stops writing before another run may take it.
fn trusted_until(renewed_at: i64, lease_ms: i64) -> i64 {
    renewed_at + lease_ms * 5 / 6
}

/// Whole seconds until `expires`, none once it is past.
fn seconds_left(expires: i64, now: i64) -> i64 {
    (expires - now).max(0) / 1000
}

/// Why a run could not take the lease: who holds it, and for how long yet.
fn held_elsewhere(table: &str, held: Option<(String, i64)>, now: i64) -> String {
    let who = held.as_ref().map(|(h, _)| h.clone());
    let left = held.map(|(_, e)| seconds_left(e, now));
    format!(
        "another cognito-onboard run holds the lease on {DYNAMODB_SCHEME}{table} ({}; it expires \
         in {} s unless renewed); this run changed nothing",
        who.map_or("holder unknown".to_string(), |w| format!("held by {w}")),
        left.map_or("?".to_string(), |l| l.to_string()),
    )
}

/// Takes the run lock: a lease item written only if there is none or it has expired, renewed
/// every third of its length while the process lives.
pub(super) fn take_lease(
    rt: &tokio::runtime::Runtime,
    c: &Db,
    table: &Table,
) -> Result<Lease, Error> {
    let holder = holder_id();
    let lease_ms = lease_ms(table.lease);
    let taken_at = ms(Utc::now());
    match put_lease(rt, c, &table.name, &holder, lease_ms, taken_at) {
        Ok(()) => {}
        Err(Some(e)) => return Err(Error::State(format!("{e}; this run changed nothing"))),
        Err(None) => {
            let (c2, t) = (c.clone(), table.name.clone());
            let held = wait(rt, async move { lock_of(&c2, &t).await }).unwrap_or(None);
            // Our own write, whose answer was lost and whose retry found it: ours.
            if held.as_ref().map(|(h, _)| h.as_str()) == Some(holder.as_str()) {
                return Ok(renew_lease(rt, c, table, holder, lease_ms, taken_at));
            }
            return Err(Error::Locked(held_elsewhere(
                &table.name,
                held,
                ms(Utc::now()),
            )));
        }
    }
    Ok(renew_lease(rt, c, table, holder, lease_ms, taken_at))
}

/// Writes the lease item for `holder` unless another run's lease is still running: `Err(None)`
/// when one is (the condition failed), `Err(Some(why))` when the call failed.
fn put_lease(
    rt: &tokio::runtime::Runtime,
    c: &Db,
    table: &str,
    holder: &str,
    lease_ms: i64,
    now: i64,
) -> Result<(), Option<String>> {
    let (c, t, h) = (c.clone(), table.to_string(), holder.to_string());
    wait(rt, async move {
        c.call(
            c.put_item()
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
    })
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
    let valid_until = Arc::new(AtomicI64::new(trusted_until(taken_at, lease_ms)));
    let renewal = rt.spawn(keep_renewing(
        c.clone(),
        table.name.clone(),
        holder.clone(),
        lease_ms,
        table.lease / 3,
        lost.clone(),
        valid_until.clone(),
    ));
    Lease {
        holder,
        lost,
        valid_until,
        renewal,
    }
}

/// Renews the lease every `every` until it is found taken over (then marks it `lost`), moving
/// `valid_until` on with each renewal DynamoDB confirms.
async fn keep_renewing(
    c: Db,
    t: String,
    h: String,
    lease_ms: i64,
    every: Duration,
    lost: Arc<AtomicBool>,
    valid_until: Arc<AtomicI64>,
) {
    loop {
        tokio::time::sleep(every).await;
        let now = ms(Utc::now());
        // A renewal that takes longer than this is no renewal: the lease may be gone.
        let renewed = tokio::time::timeout(
            every,
            c.call(
                c.update_item()
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
            Ok(_) => valid_until.store(trusted_until(now, lease_ms), Ordering::SeqCst),
            Err(e) if conditional_failed(&e) => {
                tracing::error!("the run lock's lease on {t} was taken over by another run");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A missed renewal is retried at the next tick; the lease outlasts two.
            Err(e) => tracing::warn!("{}", sdk_error("cannot renew the run lock", &e)),
        }
    }
}

/// The lease's holder and expiry (ms), as the table has them now; `None` when no run holds it.
pub(super) async fn lock_of(c: &Db, t: &str) -> Result<Option<(String, i64)>, String> {
    let item = read_item(c, t, LOCK, LOCK).await?;
    Ok(item.and_then(|i| Some((get_s(&i, "holder")?, get_n(&i, "expires_at")?))))
}

/// Whether a pending intent's writer may still be at work: the run holding the lease now, a
/// help-desk command (no lease) within its intent's life, or this process. Any other pending
/// intent is a dead run's, which the next run settles from what Cognito shows.
pub(super) fn alive(holder: &str, intent_at: i64, lock: &Option<(String, i64)>, me: &str) -> bool {
    alive_at(holder, intent_at, lock, me, ms(Utc::now()))
}

/// [`alive`], at `now` (ms).
fn alive_at(
    holder: &str,
    intent_at: i64,
    lock: &Option<(String, i64)>,
    me: &str,
    now: i64,
) -> bool {
    holder == me
        || lock
            .as_ref()
            .is_some_and(|(h, expires)| h == holder && *expires > now)
        || (holder.starts_with("desk:") && intent_at > now - DESK_INTENT_LIFE.num_milliseconds())
}

/// This process, by host, PID and a random part.
pub(super) fn holder_id() -> String {
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

    const MINUTE: i64 = 60_000;

    #[test]
    fn a_lease_is_trusted_for_five_sixths_of_its_length_past_its_last_renewal() {
        assert_eq!(lease_ms(Duration::from_secs(60)), MINUTE);
        assert_eq!(lease_ms(Duration::MAX), i64::MAX, "no overflow");
        assert_eq!(trusted_until(1_000, MINUTE), 1_000 + 50_000);
        // Renewed every third of its length: one missed renewal leaves it trusted still.
        let every = MINUTE / 3;
        assert!(trusted_until(0, MINUTE) > 2 * every);
        assert!(
            trusted_until(0, MINUTE) < MINUTE,
            "never as long as the lease itself"
        );
    }

    #[test]
    fn a_lost_or_stale_lease_holds_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let lease = |lost: bool| Lease {
            holder: "me".into(),
            lost: Arc::new(AtomicBool::new(lost)),
            valid_until: Arc::new(AtomicI64::new(5_000)),
            renewal: rt.spawn(async {}),
        };
        assert!(lease(false).holds(5_000));
        assert!(!lease(false).holds(5_001), "past its trusted time");
        assert!(!lease(true).holds(0), "taken over");
    }

    #[test]
    fn a_refused_run_is_told_who_holds_the_lease_and_for_how_long() {
        let said = held_elsewhere("t", Some(("host:1:ab".into(), 61_500)), 1_000);
        assert_eq!(
            said,
            "another cognito-onboard run holds the lease on dynamodb://t (held by host:1:ab; it \
             expires in 60 s unless renewed); this run changed nothing"
        );
        let said = held_elsewhere("t", None, 1_000);
        assert!(
            said.contains("(holder unknown; it expires in ? s unless renewed)"),
            "{said}"
        );
        assert_eq!(seconds_left(500, 1_000), 0, "expired: none left");
    }

    #[test]
    fn an_open_intent_is_alive_while_its_writer_may_be_at_work() {
        let now = 100 * MINUTE;
        let lock = Some(("run:1".to_string(), now + MINUTE));
        assert!(alive_at("me", 0, &None, "me", now), "this process's own");
        assert!(alive_at("run:1", 0, &lock, "me", now), "the lease's holder");
        let expired = Some(("run:1".to_string(), now));
        assert!(
            !alive_at("run:1", 0, &expired, "me", now),
            "its lease ran out"
        );
        assert!(!alive_at("run:2", now, &lock, "me", now), "a dead run's");
        let life = DESK_INTENT_LIFE.num_milliseconds();
        assert!(alive_at("desk:h:1", now - life + 1, &lock, "me", now));
        assert!(
            !alive_at("desk:h:1", now - life, &lock, "me", now),
            "a help-desk intent past its life"
        );
    }

    #[test]
    fn a_holder_names_its_host_and_process() {
        let id = holder_id();
        let parts: Vec<&str> = id.rsplitn(3, ':').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[0].len(), 8, "{id}");
        assert_eq!(parts[1], std::process::id().to_string());
        assert_ne!(holder_id(), id, "two takes never share a holder");
    }
}
