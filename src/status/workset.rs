//! `status`'s working set, on disk: the providers to refresh and what reading each found, in a
//! scratch SQLite file ([`crate::scratch`]), so that a state of a million providers is never
//! held in memory, and handed back sorted by key. Must not read
//! Cognito or the state, or decide anything about a provider.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::cognito::{RemoteUser, UserStatus};
use crate::error::Error;
use crate::lookup::Read;

/// One provider `status` refreshes: its key, the name to read it by, and the row's email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub key: String,
    pub username: String,
    pub email: Option<String>,
}

/// A target with what the state knew of it before the refresh, and what its read found (`None`:
/// not read, because the refresh was stopped).
#[derive(Debug)]
pub struct Joined {
    pub target: Target,
    pub invited: bool,
    pub found: Option<Read>,
}

/// The working set of one `status` run.
pub struct Workset {
    db: crate::scratch::Scratch,
}

impl Workset {
    /// An empty working set in a scratch file of its own in `dir` ([`crate::scratch`]).
    pub fn new(dir: Option<&std::path::Path>) -> Result<Workset, Error> {
        let db = crate::scratch::open(
            dir,
            "CREATE TABLE targets (
                 key TEXT PRIMARY KEY, lkey TEXT NOT NULL, username TEXT NOT NULL, email TEXT,
                 pending INTEGER NOT NULL DEFAULT 0, invited INTEGER NOT NULL DEFAULT 0
             ) WITHOUT ROWID;
             CREATE INDEX targets_lkey ON targets (lkey);
             CREATE TABLE reads (
                 lkey TEXT PRIMARY KEY, present INTEGER NOT NULL, error TEXT,
                 username TEXT, status TEXT, enabled INTEGER, email TEXT, email_verified INTEGER,
                 phone TEXT, phone_verified INTEGER, sub TEXT, last_modified INTEGER,
                 created INTEGER, attributes TEXT
             ) WITHOUT ROWID;",
        )?;
        Ok(Workset { db })
    }

    /// Runs `f` in one transaction (thousands of small writes, one commit).
    fn batch<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let tx = self.db.unchecked_transaction().map_err(self.db.err())?;
        let out = f(&tx).map_err(self.db.err())?;
        tx.commit().map_err(self.db.err())?;
        Ok(out)
    }

    /// Adds targets (a key already there keeps its first target, as a CSV's first row wins).
    /// `known`: whether the state last saw each pending, and whether the tool invited it.
    pub fn add(&self, targets: &[(Target, bool, bool)]) -> Result<(), Error> {
        self.batch(|c| {
            let mut insert = c.prepare_cached(
                "INSERT OR IGNORE INTO targets (key, lkey, username, email, pending, invited)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (t, pending, invited) in targets {
                insert.execute(params![
                    t.key,
                    t.key.to_lowercase(),
                    t.username,
                    t.email,
                    pending,
                    invited
                ])?;
            }
            Ok(())
        })
    }

    /// What the state knows of targets already added: the name it created them with, whether
    /// it last saw them pending, whether it invited them. Keys not among the targets are left.
    pub fn know(&self, known: &[(String, Option<String>, bool, bool)]) -> Result<(), Error> {
        self.batch(|c| {
            let mut update = c.prepare_cached(
                "UPDATE targets SET username = coalesce(?2, username), pending = ?3, invited = ?4
                 WHERE key = ?1",
            )?;
            for (key, username, pending, invited) in known {
                update.execute(params![key, username, pending, invited])?;
            }
            Ok(())
        })
    }

    /// How many targets there are, and how many the state last saw pending.
    pub fn counts(&self) -> Result<(u64, u64), Error> {
        self.db
            .query_row(
                "SELECT count(*), coalesce(sum(pending), 0) FROM targets",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.db.err())
    }

    /// Records what a listing or a read found, by the key it answers for (any case): a user, or
    /// none (`Ok(None)`: not in the pool), or why it could not be read. A later answer for the
    /// same key replaces an earlier one.
    pub fn found(&self, answers: Vec<(String, Read)>) -> Result<(), Error> {
        self.batch(|c| {
            let mut insert = c.prepare_cached(
                "INSERT OR REPLACE INTO reads (lkey, present, error, username, status, enabled,
                     email, email_verified, phone, phone_verified, sub, last_modified, created,
                     attributes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for (key, read) in answers {
                let (user, error) = match read {
                    Ok(user) => (user, None),
                    Err(e) => (None, Some(e)),
                };
                let u = user.as_ref();
                insert.execute(params![
                    key.to_lowercase(),
                    u.is_some(),
                    error,
                    u.map(|u| &u.username),
                    u.map(|u| u.status.as_str()),
                    u.map(|u| u.enabled),
                    u.and_then(|u| u.email.as_ref()),
                    u.map(|u| u.email_verified),
                    u.and_then(|u| u.phone.as_ref()),
                    u.map(|u| u.phone_verified),
                    u.and_then(|u| u.sub.as_ref()),
                    u.and_then(|u| u.last_modified)
                        .map(|t| t.timestamp_millis()),
                    u.and_then(|u| u.created).map(|t| t.timestamp_millis()),
                    u.map(|u| serde_json::to_string(&u.attributes).unwrap_or_default()),
                ])?;
            }
            Ok(())
        })
    }

    /// Makes every user a listing found that is not a target one (`status --all`): its key
    /// is the listing's, its name the pool's.
    pub fn adopt_listed(&self) -> Result<(), Error> {
        self.batch(|c| {
            c.execute(
                "INSERT OR IGNORE INTO targets (key, lkey, username, email)
                 SELECT r.lkey, r.lkey, r.username, r.email FROM reads r
                 WHERE r.present AND NOT EXISTS (SELECT 1 FROM targets t WHERE t.lkey = r.lkey)",
                [],
            )
        })
        .map(drop)
    }

    /// How many targets nothing has answered for yet.
    pub fn unanswered(&self) -> Result<u64, Error> {
        self.db
            .query_row(
                "SELECT count(*) FROM targets t
                 WHERE NOT EXISTS (SELECT 1 FROM reads r WHERE r.lkey = t.lkey)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.db.err())
    }

    /// The next `limit` targets after `after` (by key) that nothing has answered for yet, as
    /// (key, name to read it by).
    pub fn unanswered_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, Error> {
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT key, username FROM targets t
                 WHERE key > ?1 AND NOT EXISTS (SELECT 1 FROM reads r WHERE r.lkey = t.lkey)
                 ORDER BY key LIMIT ?2",
            )
            .map_err(self.db.err())?;
        let rows = stmt
            .query_map(params![after.unwrap_or(""), limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(self.db.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.db.err())
    }

    /// After a full listing: every target it did not find is not in the pool.
    pub fn unlisted_are_absent(&self) -> Result<(), Error> {
        self.batch(|c| {
            c.execute(
                "INSERT OR IGNORE INTO reads (lkey, present)
                 SELECT lkey, 0 FROM targets t
                 WHERE NOT EXISTS (SELECT 1 FROM reads r WHERE r.lkey = t.lkey)",
                [],
            )
        })
        .map(drop)
    }

    /// Whether a target with this key (any case) was found in the pool.
    pub fn present(&self, key: &str) -> Result<bool, Error> {
        self.db
            .query_row(
                "SELECT present FROM reads WHERE lkey = ?1",
                [key.to_lowercase()],
                |r| r.get::<_, bool>(0),
            )
            .optional()
            .map(|p| p.unwrap_or(false))
            .map_err(self.db.err())
    }

    /// The next `limit` targets after `after` in key order, each with what its read found.
    pub fn joined_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Joined>, Error> {
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT t.key, t.username, t.email, t.invited, r.lkey IS NOT NULL, r.present,
                     r.error, r.username, r.status, r.enabled, r.email, r.email_verified,
                     r.phone, r.phone_verified, r.sub, r.last_modified, r.created, r.attributes
                 FROM targets t LEFT JOIN reads r ON r.lkey = t.lkey
                 WHERE t.key > ?1 ORDER BY t.key LIMIT ?2",
            )
            .map_err(self.db.err())?;
        let rows = stmt
            .query_map(params![after.unwrap_or(""), limit as i64], joined)
            .map_err(self.db.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.db.err())
    }
}

fn at(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

/// A row of [`Workset::joined_after`]'s query.
fn joined(r: &rusqlite::Row<'_>) -> rusqlite::Result<Joined> {
    let target = Target {
        key: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
    };
    let answered: bool = r.get(4)?;
    let found = match (answered, r.get::<_, Option<bool>>(5)?, r.get(6)?) {
        (false, _, _) => None,
        (true, _, Some(error)) => Some(Err(error)),
        (true, Some(true), None) => {
            let attributes: Option<String> = r.get(17)?;
            Some(Ok(Some(RemoteUser {
                username: r.get(7)?,
                status: UserStatus::parse(&r.get::<_, String>(8)?),
                enabled: r.get(9)?,
                email: r.get(10)?,
                email_verified: r.get(11)?,
                phone: r.get(12)?,
                phone_verified: r.get(13)?,
                sub: r.get(14)?,
                last_modified: at(r.get(15)?),
                created: at(r.get(16)?),
                attributes: attributes
                    .and_then(|a| serde_json::from_str::<BTreeMap<String, String>>(&a).ok())
                    .unwrap_or_default(),
            })))
        }
        (true, _, None) => Some(Ok(None)),
    };
    Ok(Joined {
        target,
        invited: r.get(3)?,
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, status: UserStatus) -> RemoteUser {
        RemoteUser {
            username: name.into(),
            status,
            enabled: true,
            email: Some(format!("{name}@example.jp")),
            email_verified: true,
            phone: None,
            phone_verified: false,
            sub: Some(format!("sub-{name}")),
            last_modified: DateTime::from_timestamp_millis(1_700_000_000_123),
            created: DateTime::from_timestamp_millis(1_600_000_000_000),
            attributes: [("name".to_string(), "Ｙａｍａｄａ".to_string())].into(),
        }
    }

    fn target(key: &str) -> Target {
        Target {
            key: key.into(),
            username: key.into(),
            email: Some(key.into()),
        }
    }

    #[test]
    fn targets_come_back_sorted_with_what_was_found_whatever_the_case_of_their_key() {
        let w = Workset::new(None).unwrap();
        w.add(&[
            (target("c"), false, true),
            (target("A"), true, true),
            (target("b"), false, false),
        ])
        .unwrap();
        w.know(&[("b".into(), Some("bee".into()), true, true)])
            .unwrap();
        assert_eq!(w.counts().unwrap(), (3, 2));
        w.found(vec![(
            "a".into(),
            Ok(Some(user("a", UserStatus::Confirmed))),
        )])
        .unwrap();
        w.found(vec![("C".into(), Err("throttled".into()))])
            .unwrap();
        assert_eq!(w.unanswered().unwrap(), 1);
        assert_eq!(
            w.unanswered_after(None, 10).unwrap(),
            [("b".to_string(), "bee".to_string())]
        );
        let all = w.joined_after(None, 10).unwrap();
        let keys: Vec<&str> = all.iter().map(|j| j.target.key.as_str()).collect();
        assert_eq!(keys, ["A", "b", "c"]);
        assert_eq!(
            all[0].found,
            Some(Ok(Some(user("a", UserStatus::Confirmed))))
        );
        assert_eq!(all[1].found, None, "b was never read");
        assert!(all[1].invited);
        assert_eq!(all[2].found, Some(Err("throttled".into())));
        w.unlisted_are_absent().unwrap();
        assert_eq!(
            w.joined_after(Some("A"), 1).unwrap()[0].found,
            Some(Ok(None))
        );
        assert!(w.present("a").unwrap() && !w.present("b").unwrap());
    }

    #[test]
    fn all_adopts_the_users_no_target_names_and_a_later_answer_replaces_an_earlier() {
        let w = Workset::new(None).unwrap();
        w.add(&[(target("x@example.jp"), true, true)]).unwrap();
        w.found(vec![
            (
                "x@example.jp".into(),
                Ok(Some(user("x", UserStatus::ForceChangePassword))),
            ),
            (
                "y@example.jp".into(),
                Ok(Some(user("y", UserStatus::Confirmed))),
            ),
        ])
        .unwrap();
        w.adopt_listed().unwrap();
        w.found(vec![(
            "x@example.jp".into(),
            Ok(Some(user("x", UserStatus::Confirmed))),
        )])
        .unwrap();
        let all = w.joined_after(None, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].target.username, "y");
        assert!(!all[1].invited);
        let Some(Ok(Some(x))) = &all[0].found else {
            panic!("{:?}", all[0].found)
        };
        assert_eq!(x.status, UserStatus::Confirmed);
    }
}
