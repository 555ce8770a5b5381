//! The `status` command's reads and writes: which providers to refresh, reading them by the
//! cheapest refresh, and recording what was seen in the state. Where each provider stands is
//! `standing`'s pure classification; must not classify here.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::calls::Calls;
use crate::cognito::{Directory, PoolInfo, UserStatus};
use crate::error::Error;
use crate::input::{KeyMode, Row};
use crate::lookup::{self, Read, Refresh};
use crate::plan::{Policy, Suppression, username_for};
use crate::standing::{self, StatusRow, Who};
use crate::state::{Known, Observation, State, Subject};

/// One provider `status` refreshes: its key, the name to read it by, and the row's email.
pub struct Target {
    pub key: String,
    pub username: String,
    pub email: Option<String>,
}

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
/// ([`standing::screened_address`]), by key: one GetSuppressedDestination each, in their
/// order. None is read for a pool that does not send through SES, nor for anyone else.
pub async fn suppressions<D: Directory>(
    calls: &Calls<D>,
    list: &crate::suppression::SuppressionList,
    pool: &PoolInfo,
    read: (&[Target], &BTreeMap<String, Read>),
    known: &HashMap<String, Known>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> HashMap<String, Suppression> {
    let (targets, results) = read;
    let sender = pool.sender_of(policy.delivery);
    let empty = Known::default();
    let mut out = HashMap::new();
    for t in targets {
        let Some(Ok(remote)) = results.get(&t.key) else {
            continue;
        };
        let k = known.get(&t.key).unwrap_or(&empty);
        let who = t.who(policy);
        if let Some(email) =
            standing::screened_address(who, remote.as_ref(), k, policy, sender, now)
        {
            out.insert(t.key.clone(), list.read(calls, email).await);
        }
    }
    out
}

/// The providers to refresh: the CSV's rows, or else every provider the tool invited.
pub fn targets(
    rows: Option<Vec<Row>>,
    known: &HashMap<String, Known>,
    pool: &PoolInfo,
) -> Vec<Target> {
    match rows {
        Some(rows) => rows
            .into_iter()
            .map(|row| Target {
                username: known
                    .get(&row.key)
                    .and_then(|k| k.username.clone())
                    .unwrap_or_else(|| username_for(pool.username_mode, &row)),
                email: Some(row.email),
                key: row.key,
            })
            .collect(),
        None => known
            .iter()
            .filter(|(_, k)| k.invited)
            .map(|(key, k)| Target {
                key: key.clone(),
                username: k.username.clone().unwrap_or_else(|| key.clone()),
                email: k.email.clone(),
            })
            .collect(),
    }
}

/// The refresh's plan: the strategy and what each would have cost.
pub struct Plan {
    pub refresh: Refresh,
    pub estimates: BTreeMap<&'static str, f64>,
}

/// Chooses the cheapest refresh for these targets (`all`: the whole pool, so a scan).
pub fn plan(
    targets: &[Target],
    known: &HashMap<String, Known>,
    pool: &PoolInfo,
    quotas: &crate::limiter::Quotas,
    all: bool,
) -> Plan {
    use crate::limiter::Category;
    let pending = targets
        .iter()
        .filter(|t| {
            known.get(&t.key).and_then(|k| k.last_status.as_ref())
                == Some(&UserStatus::ForceChangePassword)
        })
        .count() as u64;
    let (refresh, estimates) = lookup::choose_refresh(
        targets.len() as u64,
        pending,
        pool.estimated_users,
        quotas.get(Category::UserRead),
        quotas.get(Category::UserList),
        all,
    );
    Plan { refresh, estimates }
}

/// Reads every target by `refresh`. With `all`, users of the pool that the tool does not track
/// become targets too. After a pending-only listing, the targets it did not find are read the
/// cheaper way for their number ([`lookup::rest_by`]), which is answered with the reads.
pub async fn read<D: Directory>(
    calls: &Calls<D>,
    pool: &PoolInfo,
    key_mode: KeyMode,
    refresh: Refresh,
    all: bool,
    targets: &mut Vec<Target>,
    concurrency: usize,
) -> Result<(BTreeMap<String, Read>, Option<Refresh>), Error> {
    let pairs = |ts: &mut dyn Iterator<Item = &Target>| -> Vec<(String, String)> {
        ts.map(|t| (t.key.clone(), t.username.clone())).collect()
    };
    if refresh == Refresh::PerUser {
        let read = lookup::read_each(calls, pairs(&mut targets.iter()), concurrency).await;
        return Ok((read, None));
    }
    let users = match refresh {
        Refresh::PendingScan => lookup::pending_users(calls, false).await?,
        Refresh::Scan | Refresh::PerUser => {
            lookup::all_users(calls, pool.estimated_users, false).await?
        }
    };
    let mut by_key: BTreeMap<String, crate::cognito::RemoteUser> = users
        .into_iter()
        .filter_map(|u| lookup::scan_key(pool.username_mode, key_mode, &u).map(|k| (k, u)))
        .collect();
    if all {
        let tracked: HashSet<String> = targets.iter().map(|t| t.key.to_lowercase()).collect();
        for (key, user) in &by_key {
            if !tracked.contains(key) {
                targets.push(Target {
                    key: key.clone(),
                    username: user.username.clone(),
                    email: user.email.clone(),
                });
            }
        }
    }
    let mut results = BTreeMap::new();
    let mut missing = Vec::new();
    for t in targets.iter() {
        match by_key.remove(&t.key.to_lowercase()) {
            Some(user) => {
                results.insert(t.key.clone(), Ok(Some(user)));
            }
            None if refresh == Refresh::Scan => {
                results.insert(t.key.clone(), Ok(None));
            }
            // Not pending any more (or never was): read on its own.
            None => missing.push(t),
        }
    }
    if missing.is_empty() {
        return Ok((results, None));
    }
    let limiter = &calls.exec.limiter;
    let rest = lookup::rest_by(
        missing.len() as u64,
        pool.estimated_users,
        limiter.current_rate(crate::limiter::Category::UserRead),
        limiter.current_rate(crate::limiter::Category::UserList),
    );
    if rest == Refresh::Scan {
        tracing::info!(
            "{} providers were not among the pending users: a full listing reads them for fewer \
             quota-seconds than one AdminGetUser each",
            missing.len()
        );
        results.extend(list_the_rest(calls, pool, key_mode, missing).await?);
        return Ok((results, Some(Refresh::Scan)));
    }
    let missing = pairs(&mut missing.into_iter());
    results.extend(lookup::read_each(calls, missing, concurrency).await);
    Ok((results, Some(Refresh::PerUser)))
}

/// The providers a pending-only listing did not find, read by one full listing (absent from it:
/// not in the pool).
async fn list_the_rest<D: Directory>(
    calls: &Calls<D>,
    pool: &PoolInfo,
    key_mode: KeyMode,
    missing: Vec<&Target>,
) -> Result<Vec<(String, Read)>, Error> {
    let mut everyone: BTreeMap<String, crate::cognito::RemoteUser> =
        lookup::all_users(calls, pool.estimated_users, false)
            .await?
            .into_iter()
            .filter_map(|u| lookup::scan_key(pool.username_mode, key_mode, &u).map(|k| (k, u)))
            .collect();
    Ok(missing
        .into_iter()
        .map(|t| (t.key.clone(), Ok(everyone.remove(&t.key.to_lowercase()))))
        .collect())
}

/// Records what each read showed (a user gone from the pool only if the tool invited it).
pub fn record(
    state: &State,
    pool_id: &str,
    targets: &[Target],
    results: &BTreeMap<String, Read>,
    known: &HashMap<String, Known>,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    for t in targets {
        let Some(Ok(remote)) = results.get(&t.key) else {
            continue;
        };
        let was_invited = known.get(&t.key).is_some_and(|k| k.invited);
        if remote.is_none() && !was_invited {
            continue;
        }
        let seen = Observation {
            username: remote.as_ref().map(|u| u.username.as_str()),
            email: remote.as_ref().and_then(|u| u.email.as_deref()),
            status: remote.as_ref().map(|u| &u.status),
            enabled: remote.as_ref().map(|u| u.enabled),
            run_id,
            at: now,
        };
        state.observe(Subject::new(pool_id, &t.key), seen)?;
        // A read is a read: `run` does not read a provider `status` just saw confirmed again
        // until its row changes or its re-read period is over.
        if remote
            .as_ref()
            .is_some_and(|u| u.status == UserStatus::Confirmed)
        {
            state.read_confirmed(Subject::new(pool_id, &t.key), now)?;
        }
    }
    Ok(())
}

/// Each target's row of the report, sorted by key. Takes the targets and reads, and lets each
/// go as its row is made, so that they and the rows are never all held at once.
/// `suppressions`: what the SES suppression list said of the providers it was read for
/// ([`suppressions`]); anyone else is classified as not suppressed.
pub fn rows(
    targets: Vec<Target>,
    mut results: BTreeMap<String, Read>,
    suppressions: &HashMap<String, Suppression>,
    known: &HashMap<String, Known>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<StatusRow> {
    let empty = Known::default();
    let mut rows: Vec<StatusRow> = Vec::with_capacity(targets.len());
    rows.extend(targets.into_iter().map(|t| {
        let k = known.get(&t.key).unwrap_or(&empty);
        match results.remove(&t.key) {
            Some(Ok(remote)) => standing::classify(
                t.who(policy),
                remote.as_ref(),
                suppressions.get(&t.key).unwrap_or(&Suppression::Clear),
                k,
                policy,
                now,
            ),
            Some(Err(e)) => {
                standing::unread(&t.key, &t.username, k, format!("could not read: {e}"))
            }
            None => standing::unread(
                &t.key,
                &t.username,
                k,
                "not read: the refresh was stopped".into(),
            ),
        }
    }));
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows
}
