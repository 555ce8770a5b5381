//! Write lanes: the store's writes queued on the state's runtime, a user's writes in one lane
//! and in order, different users' side by side; a settle is queued and returns, a write ahead
//! of a call (an intent) returns once it is on record, and a flush waits for every lane. The
//! first write that failed stays reported, as a failed commit of the SQLite file would be. Must
//! not say what a write is: the jobs come from the parts that know their items.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Dynamo, lock};
use crate::error::Error;

/// One queued write: its failure is said in words.
type Job = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Writes of different users go down different lanes, each in order; a user's writes share one.
const LANES: usize = 8;

enum Msg {
    Job(Job),
    /// Answered once every write queued before it in the lane is done.
    Barrier(std::sync::mpsc::Sender<()>),
}

/// The lanes, each a task on the state's runtime, and the first write that failed in any.
pub(super) struct Lanes {
    senders: Vec<mpsc::UnboundedSender<Msg>>,
    /// The first write that failed in a lane, reported by the next write that must be on
    /// record and by `flush`.
    failed: Arc<Mutex<Option<String>>>,
}

impl Lanes {
    /// Starts the lanes on `rt`.
    pub(super) fn start(rt: &tokio::runtime::Runtime) -> Lanes {
        let failed = Arc::new(Mutex::new(None));
        let senders = (0..LANES)
            .map(|_| {
                let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
                let failed = failed.clone();
                rt.spawn(async move {
                    while let Some(msg) = rx.recv().await {
                        match msg {
                            Msg::Job(job) => {
                                if let Err(e) = job.await {
                                    tracing::warn!("{e}");
                                    lock(&failed).get_or_insert(e);
                                }
                            }
                            Msg::Barrier(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                });
                tx
            })
            .collect();
        Lanes { senders, failed }
    }

    /// Queues `job` in the lane of `key`.
    fn send(&self, key: &str, job: Job) {
        let _ = self.senders[lane_of(key)].send(Msg::Job(job));
    }

    /// Notes a write that failed (or could not be queued); the first one is kept.
    fn fail(&self, e: String) {
        lock(&self.failed).get_or_insert(e);
    }

    /// The first write that failed, if any.
    pub(super) fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    /// Forgets the failure reported: the run's record says it ended badly, and is written.
    pub(super) fn forget_failure(&self) {
        lock(&self.failed).take();
    }

    /// Waits for every write queued so far, at most `limit` for each lane (`None`: as long as
    /// it takes); false when a lane was still busy at its limit.
    fn drained(&self, limit: Option<Duration>) -> bool {
        let waits: Vec<_> = self
            .senders
            .iter()
            .filter_map(|lane| {
                let (tx, rx) = std::sync::mpsc::channel();
                lane.send(Msg::Barrier(tx)).ok().map(|_| rx)
            })
            .collect();
        for rx in waits {
            match limit {
                None => {
                    let _ = rx.recv();
                }
                Some(limit) => {
                    if rx.recv_timeout(limit).is_err() {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// The lane of a user's key: the same for every write of the user, so they stay in order.
fn lane_of(key: &str) -> usize {
    let h = key
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    h % LANES
}

impl Dynamo {
    /// A write that need not be on record before the call returns (a settle): queued in the
    /// user's lane, after the user's earlier writes.
    pub(super) fn settle(
        &self,
        key: &str,
        job: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        if !self.writable {
            return;
        }
        if let Err(e) = self.check_lease() {
            self.lanes.fail(e.to_string());
            return;
        }
        self.lanes.send(key, Box::pin(job));
    }

    /// A write ahead of a call: in the user's lane, on record when this returns.
    pub(super) async fn write_ahead<T: Send + 'static>(
        &self,
        key: &str,
        job: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        self.check_lease()?;
        // A write that must be on record waits for nothing, but never follows a lost one.
        if let Some(e) = self.lanes.failure() {
            return Err(Error::State(format!(
                "{}: an earlier state write failed: {e}",
                self.table
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.lanes.send(
            key,
            Box::pin(async move {
                let _ = tx.send(job.await);
                Ok(())
            }),
        );
        rx.await
            .map_err(|_| Error::State("the state's runtime stopped".into()))?
    }

    /// A write on record when this returns, from a sync caller.
    pub(super) fn write_now(
        &self,
        key: &str,
        job: impl Future<Output = Result<(), String>> + Send + 'static,
    ) -> Result<(), Error> {
        if !self.writable {
            return Ok(());
        }
        self.check_lease()?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.lanes.send(
            key,
            Box::pin(async move {
                let _ = tx.send(job.await);
                Ok(())
            }),
        );
        rx.recv()
            .map_err(|_| Error::State("the state's runtime stopped".into()))?
            .map_err(Error::State)
    }

    /// Waits for every queued write; a write that failed stays reported, as a failed commit
    /// of the SQLite file would (the run must not go on as if it were on record).
    pub fn flush(&self) -> Result<(), Error> {
        self.flush_within(None)
    }

    /// [`Dynamo::flush`], waiting at most `limit` for each lane.
    pub(super) fn flush_within(&self, limit: Option<Duration>) -> Result<(), Error> {
        if !self.lanes.drained(limit) {
            return Err(Error::State(format!(
                "{}: writes still queued after {} s; the next run repairs them from what \
                 Cognito shows",
                self.table,
                limit.unwrap_or_default().as_secs()
            )));
        }
        match self.lanes.failure() {
            Some(e) => Err(Error::State(format!("{}: {e}", self.table))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_writes_share_one_lane_and_users_spread_over_them_all() {
        assert_eq!(lane_of("a@example.com"), lane_of("a@example.com"));
        assert_eq!(lane_of(""), 0);
        let used: std::collections::HashSet<usize> = (0..100)
            .map(|i| lane_of(&format!("provider{i:04}@example.com")))
            .collect();
        assert!(used.iter().all(|l| *l < LANES));
        assert_eq!(used.len(), LANES, "a cohort uses every lane");
    }

    #[test]
    fn a_lane_keeps_its_order_and_the_first_failure_stays_reported() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let lanes = Lanes::start(&rt);
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..20 {
            let seen = seen.clone();
            lanes.send(
                "a@x",
                Box::pin(async move {
                    // Later writes are quicker: only the lane keeps them in order.
                    tokio::time::sleep(Duration::from_millis(20 - i)).await;
                    lock(&seen).push(i);
                    Ok(())
                }),
            );
        }
        lanes.send("b@x", Box::pin(async { Err("first".to_string()) }));
        lanes.send("b@x", Box::pin(async { Err("second".to_string()) }));
        assert!(lanes.drained(None));
        assert_eq!(*lock(&seen), (0..20).collect::<Vec<_>>());
        assert_eq!(lanes.failure().as_deref(), Some("first"));
        lanes.forget_failure();
        assert_eq!(lanes.failure(), None);
        lanes.send(
            "c@x",
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            }),
        );
        assert!(
            !lanes.drained(Some(Duration::from_millis(50))),
            "a lane still busy at the limit"
        );
        rt.shutdown_background();
    }
}
