//! The `status` command's reads and writes: which providers to refresh, reading them by the
//! cheapest refresh, recording what was seen in the state, and handing each provider, in key
//! order, to be classified, through a working set on disk ([`workset`]) so that no pass holds
//! the state, the listing or the rows whole. Where each provider stands is `standing`'s pure
//! classification; must not classify here.

mod workset;

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};

use crate::calls::Calls;
use crate::cognito::{Directory, PoolInfo, RemoteUser, Sender, UserStatus};
use crate::error::Error;
use crate::input::{KeyMode, Row};
use crate::lookup::{self, Refresh};
use crate::plan::{Policy, Suppression, username_for};
use crate::standing::{self, Who};
use crate::state::{Known, KnownOf, Observation, State, Subject};
pub use workset::{Joined, Target, Workset};

/// How many targets a pass takes at a time.
const SLICE: usize = 1000;

impl Target {
    /// The name the provider has, or would be created with, in the pool.
    fn name<'a>(&'a self, policy: &Policy) -> &'a str {
        match (&self.email, policy.email_is_username) {
            (Some(email), true) => email,
            (None, true) => &self.key,
            (_, false) => &self.username,
        }
    }

    fn who<'a>(&'a self, policy: &Policy) -> Who<'a> {
        Who {
            key: &self.key,
            name: self.name(policy),
            email: self.email.as_deref(),
        }
    }
}

/// What the SES suppression list says of each provider `run` would re-issue through SES
/// ([`standing::screened_address`]), by key: one GetSuppressedDestination each. A first walk
/// finds them (few: the expired); none is read for anyone else, and a pool that does not send
/// through SES is not walked at all (only SES's messages are dropped by SES's list:
/// [`crate::plan::checks_suppression`]).
pub async fn suppressions<D: Directory>(
    calls: &Calls<D>,
    list: &crate::suppression::SuppressionList,
    pool: &PoolInfo,
    view: &mut KnownOf<'_>,
    work: &Workset,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Suppression>, Error> {
    let sender = pool.sender_of(policy.delivery);
    let mut screened = Vec::new();
    if sender == Sender::Ses {
        each_with_known(view, work, |j, k| {
            if let Some(Ok(remote)) = &j.found
                && let Some(email) = standing::screened_address(
                    j.target.who(policy),
                    remote.as_ref(),
                    k,
                    policy,
                    sender,
                    now,
                )
            {
                screened.push((j.target.key.clone(), email.to_string()));
            }
            Ok(())
        })?;
    }
    let mut out = HashMap::new();
    for (key, email) in screened {
        out.insert(key, list.read(calls, &email).await);
    }
    Ok(out)
}

/// The providers to refresh, in a new working set: the CSV's rows (`rows`), or else every
/// provider the tool invited; with what the state knew of each (the name it created them with,
/// whether it last saw them pending). Answers too whether the state knows anyone in the pool.
pub fn gather(
    state: &State,
    pool: &PoolInfo,
    rows: Option<impl Iterator<Item = Result<Row, Error>>>,
    dir: Option<&std::path::Path>,
) -> Result<(Workset, bool), Error> {
    let work = Workset::new(dir)?;
    let from_file = rows.is_some();
    if let Some(rows) = rows {
        let mut slice = Vec::with_capacity(SLICE);
        for row in rows {
            let row = row?;
            let username = username_for(pool.username_mode, &row);
            let target = Target {
                key: row.key,
                username,
                email: Some(row.email),
            };
            slice.push((target, false, false));
            if slice.len() == SLICE {
                work.add(&std::mem::take(&mut slice))?;
            }
        }
        work.add(&slice)?;
    }
    let mut view = state.known_of(&pool.id);
    let mut known = view.in_order();
    let mut any = false;
    loop {
        let slice = known.next_slice()?;
        if slice.is_empty() {
            return Ok((work, any));
        }
        any = true;
        let pending = |k: &Known| k.last_status.as_ref() == Some(&UserStatus::ForceChangePassword);
        if from_file {
            let seen: Vec<_> = slice
                .into_iter()
                .map(|(key, k)| (key, k.username.clone(), pending(&k), k.invited))
                .collect();
            work.know(&seen)?;
        } else {
            let invited: Vec<_> = slice
                .into_iter()
                .filter(|(_, k)| k.invited)
                .map(|(key, k)| {
                    let target = Target {
                        username: k.username.clone().unwrap_or_else(|| key.clone()),
                        email: k.email.clone(),
                        key,
                    };
                    (target, pending(&k), true)
                })
                .collect();
            work.add(&invited)?;
        }
    }
}

/// The refresh's plan: the strategy and what each would have cost.
pub struct Plan {
    pub refresh: Refresh,
    pub estimates: std::collections::BTreeMap<&'static str, f64>,
    /// How many providers it refreshes.
    pub targets: u64,
}

/// Chooses the cheapest refresh for the working set's targets (`all`: the whole pool, so a
/// scan).
pub fn plan(
    work: &Workset,
    pool: &PoolInfo,
    quotas: &crate::limiter::Quotas,
    all: bool,
) -> Result<Plan, Error> {
    use crate::limiter::Category;
    let (targets, pending) = work.counts()?;
    let (refresh, estimates) = lookup::choose_refresh(
        targets,
        pending,
        pool.estimated_users,
        quotas.get(Category::UserRead),
        quotas.get(Category::UserList),
        all,
    );
    Ok(Plan {
        refresh,
        estimates,
        targets,
    })
}

/// Reads every target by `refresh`, into the working set. With `all`, users of the pool that
/// the tool does not track become targets too. After a pending-only listing, the targets it did
/// not find are read the cheaper way for their number ([`lookup::rest_by`]), which is answered.
pub async fn read<D: Directory>(
    calls: &Calls<D>,
    pool: &PoolInfo,
    key_mode: KeyMode,
    refresh: Refresh,
    all: bool,
    work: &Workset,
    concurrency: usize,
) -> Result<Option<Refresh>, Error> {
    if refresh == Refresh::PerUser {
        read_each(calls, work, concurrency).await?;
        return Ok(None);
    }
    if refresh == Refresh::PendingScan {
        list(calls, pool, key_mode, work, true).await?;
    } else {
        list(calls, pool, key_mode, work, false).await?;
    }
    if all {
        work.adopt_listed()?;
    }
    if refresh == Refresh::Scan {
        work.unlisted_are_absent()?;
        return Ok(None);
    }
    // Not pending any more (or never were): read the cheaper way for their number.
    let left = work.unanswered()?;
    if left == 0 {
        return Ok(None);
    }
    let limiter = &calls.exec.limiter;
    let rest = lookup::rest_by(
        left,
        pool.estimated_users,
        limiter.current_rate(crate::limiter::Category::UserRead),
        limiter.current_rate(crate::limiter::Category::UserList),
    );
    if rest == Refresh::Scan {
        tracing::info!(
            "{left} providers were not among the pending users: a full listing reads them for \
             fewer quota-seconds than one AdminGetUser each"
        );
        list(calls, pool, key_mode, work, false).await?;
        work.unlisted_are_absent()?;
    } else {
        read_each(calls, work, concurrency).await?;
    }
    Ok(Some(rest))
}

/// Lists the pool's users (`pending`: only those in `FORCE_CHANGE_PASSWORD`) into the working
/// set a page at a time, each under the key a row would name it by.
async fn list<D: Directory>(
    calls: &Calls<D>,
    pool: &PoolInfo,
    key_mode: KeyMode,
    work: &Workset,
    pending: bool,
) -> Result<(), Error> {
    let mut failed = None;
    let page = |users: Vec<RemoteUser>| {
        let found = users
            .into_iter()
            .filter_map(|u| {
                lookup::scan_key(pool.username_mode, key_mode, &u).map(|k| (k, Ok(Some(u))))
            })
            .collect();
        if let Err(e) = work.found(found) {
            failed.get_or_insert(e);
        }
    };
    if pending {
        lookup::pending_each(calls, false, page).await?;
    } else {
        lookup::each_user(calls, pool.estimated_users, false, page).await?;
    }
    failed.map_or(Ok(()), Err)
}

/// Reads each target nothing has answered for with AdminGetUser, a slice at a time, until none
/// is left or the run is stopped.
async fn read_each<D: Directory>(
    calls: &Calls<D>,
    work: &Workset,
    concurrency: usize,
) -> Result<(), Error> {
    let mut after: Option<String> = None;
    loop {
        let slice = work.unanswered_after(after.as_deref(), SLICE)?;
        let Some((last, _)) = slice.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        let read = lookup::read_each(calls, slice, concurrency).await;
        work.found(read.into_iter().collect())?;
        if calls.exec.cancel.is_cancelled() {
            return Ok(());
        }
    }
}

/// Records what each read showed (a user gone from the pool only if the tool invited it).
pub fn record(
    state: &State,
    pool_id: &str,
    work: &Workset,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    each_joined(work, |j| {
        let Some(Ok(remote)) = &j.found else {
            return Ok(());
        };
        if remote.is_none() && !j.invited {
            return Ok(());
        }
        let key = &j.target.key;
        let seen = Observation {
            username: remote.as_ref().map(|u| u.username.as_str()),
            email: remote.as_ref().and_then(|u| u.email.as_deref()),
            status: remote.as_ref().map(|u| &u.status),
            enabled: remote.as_ref().map(|u| u.enabled),
            run_id,
            at: now,
        };
        state.observe(Subject::new(pool_id, key), seen)?;
        // A read is a read: `run` does not read a provider `status` just saw confirmed again
        // until its row changes or its re-read period is over.
        if remote
            .as_ref()
            .is_some_and(|u| u.status == UserStatus::Confirmed)
        {
            state.read_confirmed(Subject::new(pool_id, key), now)?;
        }
        Ok(())
    })
}

/// Each target of the working set, in key order, a slice at a time.
fn each_joined(
    work: &Workset,
    mut f: impl FnMut(Joined) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut after: Option<String> = None;
    loop {
        let slice = work.joined_after(after.as_deref(), SLICE)?;
        let Some(last) = slice.last() else {
            return Ok(());
        };
        after = Some(last.target.key.clone());
        for j in slice {
            f(j)?;
        }
    }
}

/// Each target with what it was read as and what `view` knows of it (made after [`record`],
/// what the state knows now), in key order: the state's users are walked beside the targets,
/// a slice of each at a time, so that neither is held whole.
pub fn each_with_known(
    view: &mut KnownOf<'_>,
    work: &Workset,
    mut f: impl FnMut(Joined, &Known) -> Result<(), Error>,
) -> Result<(), Error> {
    let empty = Known::default();
    let mut known = view.in_order();
    let mut ahead: VecDeque<(String, Known)> = VecDeque::new();
    let mut exhausted = false;
    each_joined(work, |j| {
        let key = j.target.key.as_str();
        loop {
            if ahead.is_empty() && !exhausted {
                ahead.extend(known.next_slice()?);
                exhausted = ahead.is_empty();
            }
            match ahead.front() {
                Some((k, _)) if k.as_str() < key => {
                    ahead.pop_front();
                }
                _ => break,
            }
        }
        match ahead.front() {
            Some((k, _)) if k == key => {
                let (_, k) = ahead.pop_front().expect("front exists");
                f(j, &k)
            }
            _ => f(j, &empty),
        }
    })
}

/// A target's row of the report.
/// A target's row of the report; `suppression`: what the SES suppression list said of its
/// address ([`suppressions`]; `Clear` where it was not read).
pub fn row(
    j: &Joined,
    known: &Known,
    policy: &Policy,
    suppression: &Suppression,
    now: DateTime<Utc>,
) -> standing::StatusRow {
    let t = &j.target;
    match &j.found {
        Some(Ok(remote)) => standing::classify(
            t.who(policy),
            remote.as_ref(),
            suppression,
            known,
            policy,
            now,
        ),
        Some(Err(e)) => {
            standing::unread(&t.key, &t.username, known, format!("could not read: {e}"))
        }
        None => standing::unread(
            &t.key,
            &t.username,
            known,
            "not read: the refresh was stopped".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Access, Location};

    /// A file state that invited every other one of `n` providers, `p00000@example.com`, ...
    fn state_of(n: usize) -> (tempfile::TempDir, State, PoolInfo) {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&Location::File(dir.path().join("s.db")), Access::Write).unwrap();
        let pool = crate::cognito::memory::pool_info();
        for i in (0..n).step_by(2) {
            let key = format!("p{i:05}@example.com");
            state
                .mark_invited(Subject::new(&pool.id, &key), &format!("u{i}"), &key)
                .unwrap();
        }
        (dir, state, pool)
    }

    #[test]
    fn without_a_file_the_targets_are_the_invited_and_each_meets_its_own_history() {
        let n = SLICE * 2 + 11;
        let (_dir, state, pool) = state_of(n);
        let (work, known_any) = gather(&state, &pool, None::<std::iter::Empty<_>>, None).unwrap();
        assert!(known_any);
        assert_eq!(work.counts().unwrap(), (n.div_ceil(2) as u64, 0));
        let mut seen = Vec::new();
        each_with_known(&mut state.known_of(&pool.id), &work, |j, k| {
            let i: usize = j.target.key[1..6].parse().unwrap();
            assert_eq!(j.target.username, format!("u{i}"));
            assert_eq!(k.username.as_deref(), Some(format!("u{i}").as_str()));
            assert!(j.invited && j.found.is_none());
            seen.push(i);
            Ok(())
        })
        .unwrap();
        let expected: Vec<usize> = (0..n).step_by(2).collect();
        assert_eq!(seen, expected, "every target once, in key order");
    }

    #[test]
    fn a_files_rows_meet_the_history_of_theirs_and_none_of_another() {
        let n = SLICE + 21;
        let (_dir, state, pool) = state_of(n);
        // Every row, in reverse, and one the state never saw ahead of them all in key order.
        let rows: Vec<Result<Row, Error>> = (0..n)
            .rev()
            .map(|i| format!("p{i:05}@example.com"))
            .chain(["a-new@example.com".to_string()])
            .map(|key| {
                Ok(Row {
                    line: 2,
                    key: key.clone(),
                    email: key,
                    username: None,
                    attributes: Vec::new(),
                    groups: Vec::new(),
                })
            })
            .collect();
        let (work, _) = gather(&state, &pool, Some(rows.into_iter()), None).unwrap();
        assert_eq!(work.counts().unwrap(), ((n + 1) as u64, 0));
        let mut count = 0;
        each_with_known(&mut state.known_of(&pool.id), &work, |j, k| {
            count += 1;
            match j.target.key[1..6].parse::<usize>() {
                Ok(i) if i.is_multiple_of(2) => {
                    assert!(j.invited);
                    assert_eq!(
                        j.target.username,
                        format!("u{i}"),
                        "the name it was created with"
                    );
                    assert_eq!(k.username.as_deref(), Some(format!("u{i}").as_str()));
                }
                _ => {
                    assert!(!j.invited, "{}", j.target.key);
                    assert_eq!(k, &Known::default(), "{}", j.target.key);
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(count, n + 1);
    }
}
