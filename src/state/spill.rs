//! A pool's users as a shared table holds them, copied a page at a time into a scratch SQLite
//! file ([`crate::scratch`]) and handed back in key order or by key,
//! so that a pass over a large table never holds it whole: the table keeps a user's
//! invitations apart from its item, so what is known of one user is only whole once every page
//! is read. Must not read the table itself or decide anything about a user.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::Known;
use crate::error::Error;

/// The copy.
pub struct Spill {
    db: crate::scratch::Scratch,
}

fn encode(k: &Known) -> String {
    serde_json::to_string(k).unwrap_or_default()
}

fn decode(text: &str) -> serde_json::Result<Known> {
    serde_json::from_str(text)
}

impl Spill {
    /// An empty copy in a scratch file of its own in `dir` ([`crate::scratch`]).
    pub fn new(dir: Option<&std::path::Path>) -> Result<Spill, Error> {
        let db = crate::scratch::open(
            dir,
            "CREATE TABLE known (key TEXT PRIMARY KEY, known TEXT NOT NULL) WITHOUT ROWID;",
        )?;
        Ok(Spill { db })
    }

    /// Changes what is known of each of `keys` by `f` (a user not copied yet starts empty), in
    /// one transaction.
    pub fn change<T>(
        &self,
        each: impl IntoIterator<Item = (String, T)>,
        mut f: impl FnMut(&mut Known, T),
    ) -> Result<(), Error> {
        let tx = self.db.unchecked_transaction().map_err(self.db.err())?;
        {
            let mut read = tx
                .prepare_cached("SELECT known FROM known WHERE key = ?1")
                .map_err(self.db.err())?;
            let mut write = tx
                .prepare_cached("INSERT OR REPLACE INTO known (key, known) VALUES (?1, ?2)")
                .map_err(self.db.err())?;
            for (key, change) in each {
                let before: Option<String> = read
                    .query_row([&key], |r| r.get(0))
                    .optional()
                    .map_err(self.db.err())?;
                let mut known = match before {
                    Some(text) => decode(&text).map_err(self.db.err())?,
                    None => Known::default(),
                };
                f(&mut known, change);
                write
                    .execute(params![key, encode(&known)])
                    .map_err(self.db.err())?;
            }
        }
        tx.commit().map_err(self.db.err())
    }

    /// The next `limit` users after `after`, in key order (byte order, as `str` sorts).
    pub fn after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Known)>, Error> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT key, known FROM known WHERE key > ?1 ORDER BY key LIMIT ?2")
            .map_err(self.db.err())?;
        let rows = stmt
            .query_map(params![after.unwrap_or(""), limit as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.db.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (key, text) = row.map_err(self.db.err())?;
            out.push((key, decode(&text).map_err(self.db.err())?));
        }
        Ok(out)
    }

    /// What is known of these keys (those never copied are left out).
    pub fn of(&self, keys: &[String]) -> Result<HashMap<String, Known>, Error> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT known FROM known WHERE key = ?1")
            .map_err(self.db.err())?;
        let mut out = HashMap::new();
        for key in keys {
            let text: Option<String> = stmt
                .query_row([key], |r| r.get(0))
                .optional()
                .map_err(self.db.err())?;
            if let Some(text) = text {
                out.insert(key.clone(), decode(&text).map_err(self.db.err())?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cognito::UserStatus;

    #[test]
    fn a_copy_changed_a_page_at_a_time_comes_back_whole_in_key_order_and_by_key() {
        let spill = Spill::new(None).unwrap();
        spill
            .change(
                [
                    ("b".to_string(), UserStatus::Confirmed),
                    ("a".to_string(), UserStatus::ForceChangePassword),
                ],
                |k, status| k.last_status = Some(status),
            )
            .unwrap();
        // A later page adds to what an earlier one copied, and may name a user first.
        spill
            .change([("b".to_string(), 2), ("c".to_string(), 1)], |k, n| {
                k.reissues += n;
                k.invited = true;
            })
            .unwrap();
        let all = spill.after(None, 10).unwrap();
        let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(all[1].1.last_status, Some(UserStatus::Confirmed));
        assert_eq!(all[1].1.reissues, 2);
        assert!(!all[0].1.invited && all[2].1.invited);
        assert_eq!(spill.after(Some("a"), 1).unwrap()[0].0, "b");
        let some = spill.of(&["c".to_string(), "z".to_string()]).unwrap();
        assert_eq!(some.len(), 1);
        assert_eq!(some["c"].reissues, 1);
    }
}
