//! Reading users from the pool: which strategy costs fewer quota-seconds (per-user
//! AdminGetUser, a full ListUsers scan, a pending-only scan), the scans themselves (in parallel
//! parts for large pools), bounded per-user reads, and group memberships. Must not decide what
//! to do with a user.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use crate::calls::Calls;
use crate::cognito::PoolInfo;
use crate::cognito::{Directory, RemoteUser, UserStatus, UsernameMode};
use crate::error::Error;
use crate::input::KeyMode;
use crate::limiter::Category;

/// How `run` reads existing users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lookup {
    /// Whichever costs fewer quota-seconds for this cohort.
    Auto,
    /// One AdminGetUser per row.
    Get,
    /// A ListUsers scan of the whole pool.
    Scan,
}

/// Quota-seconds that `calls` calls cost at `rate` requests per second: the time they occupy
/// a category's quota.
pub fn quota_seconds(calls: u64, rate: f64) -> f64 {
    if rate <= 0.0 {
        f64::INFINITY
    } else {
        calls as f64 / rate
    }
}

/// The first hex digit of `sub` (a UUID) splits a pool into this many disjoint parts that
/// ListUsers can read at the same time (`sub ^= "a"`).
pub const SCAN_PARTITIONS: u64 = 16;

/// Pools with at least this many pages of users are scanned in parallel parts: one page after
/// another is bound by the round trip, not by the quota.
pub const PARTITION_FROM_PAGES: u64 = 32;

/// ListUsers calls a full scan of a pool this size costs (60 users a page; a partitioned scan
/// pays one partial page per part).
pub fn scan_calls(pool_users: u64) -> u64 {
    let pages = pool_users.div_ceil(60).max(1);
    if pages >= PARTITION_FROM_PAGES {
        SCAN_PARTITIONS * pool_users.div_ceil(SCAN_PARTITIONS).div_ceil(60).max(1)
    } else {
        pages
    }
}

pub use crate::report::status::Refresh;

/// Estimated quota-seconds of each refresh strategy, and the cheapest.
///
/// `targets`: providers to refresh; `pending`: how many of them were last seen pending;
/// `pool_users`: the pool's estimated size; `read`/`list`: the full UserRead/UserList quotas.
/// The pending scan assumes the pool's pending users are about the cohort's (its pages are
/// `ceil(pending / 60)`).
pub fn choose_refresh(
    targets: u64,
    pending: u64,
    pool_users: u64,
    read: f64,
    list: f64,
    all: bool,
) -> (Refresh, BTreeMap<&'static str, f64>) {
    let per_user = quota_seconds(targets, read);
    let scan = quota_seconds(scan_calls(pool_users), list);
    let pending_scan = quota_seconds(pending.div_ceil(60).max(1), list)
        + quota_seconds(targets.saturating_sub(pending), read);
    let costs = BTreeMap::from([
        ("per_user", per_user),
        ("scan", scan),
        ("pending_scan", pending_scan),
    ]);
    let choice = if all || (scan <= per_user && scan <= pending_scan) {
        Refresh::Scan
    } else if pending_scan < per_user {
        Refresh::PendingScan
    } else {
        Refresh::PerUser
    };
    (choice, costs)
}

/// How the providers a pending-only listing did not find are read: one `AdminGetUser` each, or
/// a full listing, whichever costs fewer quota-seconds for the number that is left. The state
/// last saw them pending; most may have signed in since, and reading each of them could cost
/// far more than the listing it was chosen over.
pub fn rest_by(left: u64, pool_users: u64, read: f64, list: f64) -> Refresh {
    if quota_seconds(scan_calls(pool_users), list) < quota_seconds(left, read) {
        Refresh::Scan
    } else {
        Refresh::PerUser
    }
}

/// The names a cohort's rows may be found by (lower-cased), kept as 64-bit hashes: a scan
/// keeps only the users a row may name, and a million rows' names take 16 MB, not 150. A hash
/// that collides only keeps a user too many.
#[derive(Debug, Default)]
pub struct Names(HashSet<u64>);

impl Names {
    fn hash(name: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        name.to_lowercase().hash(&mut h);
        h.finish()
    }

    pub fn insert(&mut self, name: &str) {
        self.0.insert(Names::hash(name));
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(&Names::hash(name))
    }
}

/// What `run` must read: how many rows, how many of them last seen pending, the names they may
/// be found by, and whether their users' attributes are compared (`--update attributes`).
#[derive(Debug, Clone, Copy)]
pub struct ToRead<'a> {
    pub rows: u64,
    pub pending: u64,
    pub names: &'a Names,
    pub attributes: bool,
}

/// Where `run`'s rows find their user.
pub enum Found {
    /// One AdminGetUser per row, as the row is processed.
    PerRow(PerRow),
    /// A ListUsers scan done up front.
    Scanned(Index),
    /// The pool's pending users, listed up front (one filtered ListUsers listing); a row not
    /// among them is read with AdminGetUser (it is new, or no longer pending).
    Pending(Index, PerRow),
}

/// Per-row lookups, and what a row that AdminGetUser does not find is checked against.
#[derive(Default)]
pub struct PerRow {
    /// AdminGetUser finds only the exact name: in a case-sensitive pool a provider may exist
    /// in another case, and in a free-form pool keyed by email under another username. Only a
    /// scan finds those, so the first row that misses reads the pool once for every row.
    pub check_misses: bool,
    index: tokio::sync::OnceCell<Result<Index, String>>,
}

impl PerRow {
    pub fn new(check_misses: bool) -> Self {
        PerRow {
            check_misses,
            index: tokio::sync::OnceCell::new(),
        }
    }

    /// The pool's users, read once on first use.
    pub async fn index<D: Directory>(
        &self,
        calls: &Calls<D>,
        pool_users: u64,
    ) -> Result<&Index, &str> {
        self.index
            .get_or_init(|| async {
                tracing::info!(
                    "a row is not in the pool under its exact name: reading the pool once to check \
                     for providers under another case or username"
                );
                all_users(calls, pool_users, true)
                    .await
                    .map(Index::new)
                    .map_err(|e| e.to_string())
            })
            .await
            .as_ref()
            .map_err(String::as_str)
    }
}

/// The pool's users, to find the user a row names whatever the case of its name, and for
/// rows keyed by email whatever its username.
#[derive(Debug, Default)]
pub struct Index {
    users: Vec<RemoteUser>,
    by_username: HashMap<String, usize>,
    by_email: HashMap<String, usize>,
}

impl Index {
    pub fn new(users: Vec<RemoteUser>) -> Self {
        let mut index = Index::default();
        for (i, u) in users.iter().enumerate() {
            index
                .by_username
                .entry(u.username.to_lowercase())
                .or_insert(i);
            if let Some(email) = &u.email {
                index.by_email.entry(email.to_lowercase()).or_insert(i);
            }
        }
        index.users = users;
        index
    }

    /// The user a row names: by the name it would be created with (in any case), then by the
    /// row's email (`email`: rows keyed by email), then by the username the state remembers.
    pub fn find(
        &self,
        name: &str,
        email: Option<&str>,
        remembered: Option<&str>,
    ) -> Option<RemoteUser> {
        self.by_username
            .get(&name.to_lowercase())
            .or_else(|| email.and_then(|e| self.by_email.get(&e.to_lowercase())))
            .or_else(|| remembered.and_then(|r| self.by_username.get(&r.to_lowercase())))
            .map(|&i| self.users[i].clone())
    }
}

/// The key a scanned user is matched to rows by.
pub fn scan_key(mode: UsernameMode, key_mode: KeyMode, user: &RemoteUser) -> Option<String> {
    match (mode, key_mode) {
        (UsernameMode::Email, _) => user.email.as_deref().map(str::to_lowercase),
        _ => Some(user.username.to_lowercase()),
    }
}

/// Every user of the pool. Large pools are read in parallel parts by the first hex digit of
/// `sub`, so the scan runs at the UserList quota rather than at one page per round trip.
///
/// `attributes`: keep every user's attributes (only `run --update` compares them); without,
/// all but the name are dropped.
pub async fn all_users<D: Directory>(
    calls: &Calls<D>,
    pool_users: u64,
    attributes: bool,
) -> Result<Vec<RemoteUser>, Error> {
    let mut users = Vec::with_capacity(pool_users as usize);
    each_user(calls, pool_users, attributes, |page| users.extend(page)).await?;
    Ok(users)
}

/// [`all_users`], handed to `each` a page at a time (a large pool is never held whole). A pool
/// too large for one listing is listed in 16 parts (`sub ^= "0"` ... `"f"`) at once; a listing
/// with a part missing would make its users look absent, so it is an error.
pub async fn each_user<D: Directory>(
    calls: &Calls<D>,
    pool_users: u64,
    attributes: bool,
    each: impl FnMut(Vec<RemoteUser>),
) -> Result<(), Error> {
    let each = std::cell::RefCell::new(each);
    let page = |users: Vec<RemoteUser>| {
        (each.borrow_mut())(users.into_iter().map(|u| slim(u, attributes)).collect())
    };
    if pool_users.div_ceil(60) < PARTITION_FROM_PAGES {
        return Ok(calls.users_each(None, page).await?);
    }
    let filters: Vec<String> = "0123456789abcdef"
        .chars()
        .map(|digit| format!("sub ^= \"{digit}\""))
        .collect();
    let mut first_error = None;
    let not_started = calls
        .exec
        .for_each_bounded(
            filters.iter(),
            filters.len(),
            |filter| calls.users_each(Some(filter), page),
            |part| match part {
                Ok(Ok(())) => {}
                Ok(Err(failed)) => {
                    first_error.get_or_insert(Error::from(failed));
                }
                Err(panicked) => {
                    first_error.get_or_insert(Error::Cognito(format!(
                        "a scan part stopped: {}",
                        panicked.message
                    )));
                }
            },
        )
        .await;
    if let Some(e) = first_error {
        return Err(e);
    }
    if !not_started.is_empty() {
        return Err(Error::Interrupted);
    }
    Ok(())
}

/// The pool's users that a row may name (by username or email, in any case), indexed.
pub async fn scan<D: Directory>(
    calls: &Calls<D>,
    pool_users: u64,
    names: &Names,
    attributes: bool,
) -> Result<Index, Error> {
    let users = all_users(calls, pool_users, attributes).await?;
    Ok(Index::new(keep_wanted(users, names)))
}

/// The users a row may name (by username or email, in any case).
fn keep_wanted(users: Vec<RemoteUser>, wanted: &Names) -> Vec<RemoteUser> {
    users
        .into_iter()
        .filter(|u| {
            wanted.contains(&u.username) || u.email.as_ref().is_some_and(|e| wanted.contains(e))
        })
        .collect()
}

/// The pool's users still in `FORCE_CHANGE_PASSWORD` (one filtered ListUsers listing);
/// `attributes` as for [`all_users`].
pub async fn pending_users<D: Directory>(
    calls: &Calls<D>,
    attributes: bool,
) -> Result<Vec<RemoteUser>, Error> {
    let mut users = Vec::new();
    pending_each(calls, attributes, |page| users.extend(page)).await?;
    Ok(users)
}

/// [`pending_users`], handed to `each` a page at a time.
pub async fn pending_each<D: Directory>(
    calls: &Calls<D>,
    attributes: bool,
    mut each: impl FnMut(Vec<RemoteUser>),
) -> Result<(), Error> {
    let filter = format!(
        "cognito:user_status = \"{}\"",
        UserStatus::ForceChangePassword.as_str()
    );
    let page =
        |users: Vec<RemoteUser>| each(users.into_iter().map(|u| slim(u, attributes)).collect());
    Ok(calls.users_each(Some(&filter), page).await?)
}

/// The attributes a report names a provider by, kept even when the rest are dropped.
const NAME_ATTRIBUTES: [&str; 3] = ["name", "family_name", "given_name"];

/// The user without its attributes (but for its name), unless they are wanted.
fn slim(mut u: RemoteUser, attributes: bool) -> RemoteUser {
    if !attributes {
        u.attributes
            .retain(|k, _| NAME_ATTRIBUTES.contains(&k.as_str()));
    }
    u
}

/// What a per-user read found: the user (or `None`: not in the pool), or why it could not be read.
pub type Read = Result<Option<RemoteUser>, String>;

/// Reads each `(key, username)` with AdminGetUser, `concurrency` at a time. Keys not read
/// because the run was stopped are absent from the answer.
pub async fn read_each<D: Directory>(
    calls: &Calls<D>,
    targets: Vec<(String, String)>,
    concurrency: usize,
) -> BTreeMap<String, Read> {
    let mut out = BTreeMap::new();
    let keys: Vec<String> = targets.iter().map(|(k, _)| k.clone()).collect();
    calls
        .exec
        .for_each_bounded(
            targets,
            concurrency,
            |(key, username)| async move {
                // `status` reads these: it compares no attribute.
                let got = calls
                    .get_user(&username)
                    .await
                    .map(|d| d.value.map(|u| slim(u, false)))
                    .map_err(|f| f.error.to_string());
                (key, got)
            },
            |done| match done {
                Ok((key, got)) => {
                    out.insert(key, got);
                }
                Err(panicked) => {
                    out.insert(
                        keys[panicked.index].clone(),
                        Err(format!(
                            "the read stopped unexpectedly: {}",
                            panicked.message
                        )),
                    );
                }
            },
        )
        .await;
    out
}

/// Group name → usernames in it (lower-cased), read once per run for the groups the cohort names.
pub type Memberships = BTreeMap<String, HashSet<String>>;

/// Reads the members of every group in `groups`, in the background; rows that need the answer
/// wait for it. A group that cannot be listed is left out: adding a user to a group they are
/// in is harmless, so without the list every existing user is simply added again.
pub fn spawn_memberships<D: Directory>(
    calls: Arc<Calls<D>>,
    groups: BTreeSet<String>,
) -> watch::Receiver<Option<Arc<Memberships>>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut out = Memberships::new();
        for group in groups {
            match calls.group_members(&group).await {
                Ok(names) => {
                    out.insert(group, names.into_iter().map(|n| n.to_lowercase()).collect());
                }
                Err(e) => {
                    tracing::warn!("could not list the members of group {group}: {}", e.error);
                }
            }
        }
        let _ = tx.send(Some(Arc::new(out)));
    });
    rx
}

/// Where the rows will find their users: a scan now, or a read per row as it goes.
///
/// `names`: every name a row may be found by (the name it would be created with, its email,
/// the username the state remembers for it).
pub async fn find<D: Directory>(
    calls: &Calls<D>,
    pool: &PoolInfo,
    key_mode: KeyMode,
    choice: Lookup,
    to_read: &ToRead<'_>,
) -> Result<Found, Error> {
    let ToRead {
        rows,
        pending,
        names,
        attributes,
    } = *to_read;
    let limiter = &calls.exec.limiter;
    let strategy = match choice {
        Lookup::Get => Refresh::PerUser,
        Lookup::Scan => Refresh::Scan,
        Lookup::Auto => {
            choose_refresh(
                rows,
                pending,
                pool.estimated_users,
                limiter.current_rate(Category::UserRead),
                limiter.current_rate(Category::UserList),
                false,
            )
            .0
        }
    };
    tracing::info!(
        "{rows} rows to read ({pending} last seen pending); looking users up with {}",
        match strategy {
            Refresh::Scan => "a ListUsers scan",
            Refresh::PendingScan => "a scan of the pending users, and AdminGetUser for the others",
            Refresh::PerUser => "AdminGetUser per row",
        }
    );
    let per_row = || {
        PerRow::new(
            pool.case_sensitive
                || (pool.username_mode == UsernameMode::FreeForm && key_mode == KeyMode::Email),
        )
    };
    Ok(match strategy {
        Refresh::Scan => {
            Found::Scanned(scan(calls, pool.estimated_users, names, attributes).await?)
        }
        Refresh::PendingScan => {
            let users = keep_wanted(pending_users(calls, attributes).await?, names);
            let left = rows.saturating_sub(users.len() as u64);
            match rest_by(
                left,
                pool.estimated_users,
                limiter.current_rate(Category::UserRead),
                limiter.current_rate(Category::UserList),
            ) {
                Refresh::Scan => {
                    tracing::info!(
                        "{left} rows were not among the pending users: a ListUsers scan reads \
                         them for fewer quota-seconds than one AdminGetUser each"
                    );
                    Found::Scanned(scan(calls, pool.estimated_users, names, attributes).await?)
                }
                _ => Found::Pending(Index::new(users), per_row()),
            }
        }
        Refresh::PerUser => Found::PerRow(per_row()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slim_user_keeps_only_its_name() {
        let u = RemoteUser {
            username: "u".into(),
            status: UserStatus::Confirmed,
            enabled: true,
            email: None,
            email_verified: false,
            phone: None,
            phone_verified: false,
            sub: None,
            last_modified: None,
            created: None,
            attributes: [
                ("name", "山田 太郎"),
                ("family_name", "山田"),
                ("given_name", "太郎"),
                ("custom:org", "Acme"),
                ("locale", "ja"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let kept: Vec<String> = slim(u.clone(), false).attributes.into_keys().collect();
        assert_eq!(kept, ["family_name", "given_name", "name"]);
        assert_eq!(slim(u, true).attributes.len(), 5);
    }

    #[test]
    fn what_a_pending_listing_left_is_read_the_cheaper_way() {
        // 95,000 of 100,000 signed in since: 95,000 reads at 120/s against 1,667 pages at 30/s.
        assert_eq!(rest_by(95_000, 100_000, 120.0, 30.0), Refresh::Scan);
        // A handful left: read each.
        assert_eq!(rest_by(5, 100_000, 120.0, 30.0), Refresh::PerUser);
        assert_eq!(rest_by(0, 10, 120.0, 30.0), Refresh::PerUser);
    }

    #[test]
    fn scans_cost_a_page_per_60_users_and_a_partial_page_per_part() {
        assert_eq!(scan_calls(0), 1);
        assert_eq!(scan_calls(60), 1);
        assert_eq!(scan_calls(61), 2);
        assert_eq!(scan_calls(31 * 60), 31);
        // 32 pages and up: 16 parts of 120 users, two pages each.
        assert_eq!(scan_calls(32 * 60), 32);
        assert_eq!(scan_calls(6000), 16 * 7);
        assert_eq!(scan_calls(20_000), 16 * 21);
    }

    #[test]
    fn refresh_strategy_follows_the_quota_seconds() {
        // 3,000 tracked users in a 3,000-user pool: a scan (50 pages) beats 3,000 reads.
        assert_eq!(
            choose_refresh(3000, 1000, 3000, 120.0, 30.0, false).0,
            Refresh::Scan
        );
        // 200 tracked, 150 of them pending, in a 20,000-user pool: pending scan (3 pages + 50 reads).
        assert_eq!(
            choose_refresh(200, 150, 20_000, 120.0, 30.0, false).0,
            Refresh::PendingScan
        );
        // 20 tracked, none pending, in a big pool: per user.
        assert_eq!(
            choose_refresh(20, 0, 20_000, 120.0, 30.0, false).0,
            Refresh::PerUser
        );
        // --all always scans.
        assert_eq!(
            choose_refresh(1, 0, 1_000_000, 120.0, 30.0, true).0,
            Refresh::Scan
        );
        let (_, costs) = choose_refresh(200, 150, 20_000, 120.0, 30.0, false);
        assert!((costs["per_user"] - 200.0 / 120.0).abs() < 1e-9);
        assert!((costs["scan"] - 336.0 / 30.0).abs() < 1e-9);
        assert!((costs["pending_scan"] - (3.0 / 30.0 + 50.0 / 120.0)).abs() < 1e-9);
    }

    #[test]
    fn a_new_cohort_is_read_per_row_or_by_scan_never_by_a_pending_scan() {
        // Nothing pending: the pending scan costs a page more than per-row reads.
        for (rows, pool) in [(200, 20_000), (5_000, 6_000), (1, 0)] {
            let (choice, costs) = choose_refresh(rows, 0, pool, 120.0, 30.0, false);
            assert_ne!(choice, Refresh::PendingScan, "{rows} in {pool}: {costs:?}");
        }
        assert_eq!(
            choose_refresh(200, 0, 20_000, 120.0, 30.0, false).0,
            Refresh::PerUser
        );
        assert_eq!(
            choose_refresh(5_000, 0, 6_000, 120.0, 30.0, false).0,
            Refresh::Scan
        );
        // An incremental re-run of a big cohort: 5,000 pending of the 5,100 to read.
        assert_eq!(
            choose_refresh(5_100, 5_000, 100_000, 120.0, 30.0, false).0,
            Refresh::PendingScan
        );
    }
}
