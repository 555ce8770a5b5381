//! A user's item on a shared table: each write queued in the user's lane as a settle, the
//! status seen and its transition (the transition first), what `run --update` wrote, the
//! groups done (read, then written only if no other machine changed them in between), and the
//! marks of `status` and `--on-confirmed`. Must not decide anything from the item, and must
//! never write a password.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue as Av;
use chrono::{DateTime, Utc};

use super::Dynamo;
use super::client::{conditional_failed, read_item, sdk_error};
use super::items::{
    Item, get_list, get_s, id_sk, item_of, list, ms, n, new_id, pool_pk, s, user_sk,
};
use crate::cognito::UserStatus;
use crate::error::Error;
use crate::state::{DELETED, Observation, Offboard, Offboarded, Subject, Updated};

/// How often a read-then-write of a user's groups is tried when another machine changed them
/// in between.
const GUARDED_ATTEMPTS: usize = 5;

impl Dynamo {
    /// Updates the user's item (created if missing) with `expression`.
    fn update_user(&self, who: Subject<'_>, expression: String, values: Vec<(&'static str, Av)>) {
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, sk) = (pool_pk(who.pool), user_sk(who.key));
        self.settle(who.key, async move {
            let mut u = c
                .update_item()
                .table_name(t)
                .key("pk", s(&pk))
                .key("sk", s(&sk))
                .update_expression(expression);
            for (k, v) in values {
                u = u.expression_attribute_values(k, v);
            }
            c.call(u)
                .await
                .map(drop)
                .map_err(|e| sdk_error("cannot record a user", &e))
        });
    }

    pub fn updated(&self, who: Subject<'_>, update: Updated<'_>) -> Result<(), Error> {
        if !self.writable {
            return Ok(());
        }
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, sk) = (pool_pk(who.pool), user_sk(who.key));
        let (written, email, removed) = (
            update.written.to_vec(),
            update.email.map(str::to_string),
            update.removed_groups.to_vec(),
        );
        let (pending_since, at) = (update.pending_since, update.at);
        self.settle(who.key, async move {
            for _ in 0..GUARDED_ATTEMPTS {
                let current = read_item(&c, &t, &pk, &sk).await?;
                let groups: Vec<String> = current
                    .as_ref()
                    .map(|i| get_list(i, "groups_done"))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|g| !removed.contains(g))
                    .collect();
                let mut expression =
                    String::from("SET groups_done = :g, last_written = :w, last_written_at = :t");
                let mut u = c
                    .update_item()
                    .table_name(&t)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .expression_attribute_values(":g", list(&groups))
                    .expression_attribute_values(":w", list(&written))
                    .expression_attribute_values(":t", n(ms(at)));
                if let Some(p) = pending_since {
                    expression.push_str(", pending_since = if_not_exists(pending_since, :p)");
                    u = u.expression_attribute_values(":p", n(ms(p)));
                }
                if let Some(email) = &email {
                    expression.push_str(", email = :e");
                    u = u.expression_attribute_values(":e", s(email));
                }
                match c
                    .call(guard_groups(
                        u.update_expression(expression),
                        current.as_ref(),
                    ))
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e) if conditional_failed(&e) => continue,
                    Err(e) => return Err(sdk_error("cannot record an update", &e)),
                }
            }
            Err("the user's groups kept changing under this write".into())
        });
        Ok(())
    }

    pub fn read_confirmed(&self, who: Subject<'_>, at: DateTime<Utc>) -> Result<(), Error> {
        self.update_user(who, "SET last_read_at = :t".into(), vec![(":t", n(ms(at)))]);
        Ok(())
    }

    pub fn in_step(&self, who: Subject<'_>, digest: &str) -> Result<(), Error> {
        self.update_user(who, "SET row_digest = :d".into(), vec![(":d", s(digest))]);
        Ok(())
    }

    pub fn observe(&self, who: Subject<'_>, seen: Observation<'_>) -> Result<(), Error> {
        self.record_status(who, &seen, false);
        Ok(())
    }

    /// Records a status seen, and a transition when it differs from the last one; `invited`:
    /// also marks the user as invited by this tool and clears its open intent.
    pub(super) fn record_status(&self, who: Subject<'_>, seen: &Observation<'_>, invited: bool) {
        let seen = Seen::of(seen, invited);
        if !self.writable {
            return;
        }
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, sk, key) = (pool_pk(who.pool), user_sk(who.key), who.key.to_string());
        self.settle(who.key, async move {
            // The transition goes on record before the status it leads to: a write lost in
            // between leaves the old status, and the next observation records the change again
            // (never a change with no transition, nor a confirmation with no time).
            let before = read_item(&c, &t, &pk, &sk).await?;
            let last = before.as_ref().and_then(|i| get_s(i, "last_status"));
            let changed = last.as_deref() != Some(seen.status.as_str());
            if changed {
                let transition = seen.transition(&pk, &key, last.as_deref());
                c.call(c.put_item().table_name(&t).set_item(Some(transition)))
                    .await
                    .map_err(|e| sdk_error("cannot record a transition", &e))?;
            }
            let (expression, values) = seen.update(changed);
            let mut u = c
                .update_item()
                .table_name(&t)
                .key("pk", s(&pk))
                .key("sk", s(&sk));
            for (k, v) in values {
                u = u.expression_attribute_values(k, v);
            }
            c.call(u.update_expression(expression))
                .await
                .map(drop)
                .map_err(|e| sdk_error("cannot record a status", &e))
        });
    }

    pub fn mark_invited(&self, who: Subject<'_>, username: &str, email: &str) -> Result<(), Error> {
        self.update_user(
            who,
            "SET invited = :i, username = :u, email = :e".into(),
            vec![
                (":i", Av::Bool(true)),
                (":u", s(username)),
                (":e", s(email)),
            ],
        );
        Ok(())
    }

    pub fn groups_done(&self, who: Subject<'_>, groups: &[String]) -> Result<(), Error> {
        if groups.is_empty() || !self.writable {
            return Ok(());
        }
        let (c, t) = (self.client.clone(), self.table.clone());
        let (pk, sk, groups) = (pool_pk(who.pool), user_sk(who.key), groups.to_vec());
        self.settle(who.key, async move {
            // Read, then write only if no one changed the groups in between.
            for _ in 0..GUARDED_ATTEMPTS {
                let current = read_item(&c, &t, &pk, &sk).await?;
                let before = current.as_ref().map(|i| get_list(i, "groups_done"));
                let mut all = before.clone().unwrap_or_default();
                for g in &groups {
                    if !all.contains(g) {
                        all.push(g.clone());
                    }
                }
                let u = c
                    .update_item()
                    .table_name(&t)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .update_expression("SET groups_done = :g")
                    .expression_attribute_values(":g", list(&all));
                match c.call(guard_groups(u, current.as_ref())).await {
                    Ok(_) => return Ok(()),
                    Err(e) if conditional_failed(&e) => continue,
                    Err(e) => return Err(sdk_error("cannot record groups", &e)),
                }
            }
            Err("the user's groups kept changing under this write".into())
        });
        Ok(())
    }

    pub fn confirmations_reported(
        &self,
        pool_id: &str,
        keys: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        for key in keys {
            self.update_user(
                Subject::new(pool_id, key),
                "SET confirmed_reported_at = :t".into(),
                vec![(":t", n(ms(at)))],
            );
        }
        self.flush()
    }

    pub fn set_cohort(&self, pool_id: &str, keys: &[String], cohort: &str) -> Result<(), Error> {
        if !self.writable {
            return Ok(());
        }
        for key in keys {
            let (c, t) = (self.client.clone(), self.table.clone());
            let (pk, sk, cohort) = (pool_pk(pool_id), user_sk(key), cohort.to_string());
            self.settle(key, async move {
                // Only a user the state holds: a provider not created yet gets its list when
                // it is.
                let u = c
                    .update_item()
                    .table_name(t)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .update_expression("SET cohort = :c")
                    .condition_expression("attribute_exists(sk)")
                    .expression_attribute_values(":c", s(&cohort));
                match c.call(u).await {
                    Ok(_) => Ok(()),
                    Err(e) if conditional_failed(&e) => Ok(()),
                    Err(e) => Err(sdk_error("cannot record a cohort", &e)),
                }
            });
        }
        Ok(())
    }

    pub fn reminded(&self, who: Subject<'_>, invited_at: DateTime<Utc>) -> Result<(), Error> {
        self.update_user(
            who,
            "SET reminded_for = :t".into(),
            vec![(":t", n(ms(invited_at)))],
        );
        self.flush()
    }

    pub fn offboarded(&self, who: Subject<'_>, done: Offboarded<'_>) -> Result<(), Error> {
        let (expression, values) = match done.action {
            Offboard::Disable => (
                "SET disabled_at = :t, disabled_run = :r, last_enabled = :e",
                vec![
                    (":t", n(ms(done.at))),
                    (":r", s(done.run_id)),
                    (":e", Av::Bool(false)),
                ],
            ),
            Offboard::Enable => (
                "SET last_enabled = :e REMOVE disabled_at, disabled_run",
                vec![(":e", Av::Bool(true))],
            ),
            Offboard::Delete => (
                "SET disabled_at = :t, disabled_run = :r, last_status = :s",
                vec![
                    (":t", n(ms(done.at))),
                    (":r", s(done.run_id)),
                    (":s", s(DELETED)),
                ],
            ),
        };
        self.update_user(who, expression.into(), values);
        self.flush()
    }

    pub fn handed_over(&self, who: Subject<'_>, at: DateTime<Utc>) -> Result<(), Error> {
        self.update_user(
            who,
            "SET handed_over_at = :t".into(),
            vec![(":t", n(ms(at)))],
        );
        self.flush()
    }
}

/// A status seen, owned, to be written from the user's lane.
struct Seen {
    /// The status, `DELETED` for a user not in the pool.
    status: String,
    username: Option<String>,
    email: Option<String>,
    enabled: Option<bool>,
    run_id: String,
    at: DateTime<Utc>,
    /// Also marks the user invited by this tool and clears its open intent.
    invited: bool,
}

impl Seen {
    fn of(seen: &Observation<'_>, invited: bool) -> Seen {
        Seen {
            status: seen.status.map_or(DELETED, UserStatus::as_str).to_string(),
            username: seen.username.map(str::to_string),
            email: seen.email.map(str::to_string),
            enabled: seen.enabled,
            run_id: seen.run_id.to_string(),
            at: seen.at,
            invited,
        }
    }

    /// The transition from `last` (none for a user seen the first time) to this status, as an
    /// item of the pool's partition.
    fn transition(&self, pk: &str, key: &str, last: Option<&str>) -> Item {
        let mut item = item_of([
            ("pk", s(pk)),
            ("sk", s(&id_sk('T', new_id(self.at)))),
            ("key", s(key)),
            ("to_status", s(&self.status)),
            ("observed_at", n(ms(self.at))),
            ("run_id", s(&self.run_id)),
        ]);
        if let Some(last) = last {
            item.insert("from_status".into(), s(last));
        }
        item
    }

    /// The user item's update for this status: its expression and values. `changed`: the
    /// status differs from the last one (a confirmation then gets its time, and is reported
    /// anew).
    fn update(&self, changed: bool) -> (String, Vec<(&'static str, Av)>) {
        let mut set = vec!["last_status = :s", "last_seen_at = :t"];
        let mut values = vec![(":s", s(&self.status)), (":t", n(ms(self.at)))];
        if let Some(v) = &self.username {
            set.push("username = :u");
            values.push((":u", s(v)));
        }
        if let Some(v) = &self.email {
            set.push("email = :e");
            values.push((":e", s(v)));
        }
        if self.invited {
            set.push("invited = :i");
            values.push((":i", Av::Bool(true)));
        }
        let mut remove = Vec::new();
        match self.enabled {
            Some(v) => {
                set.push("last_enabled = :en");
                values.push((":en", Av::Bool(v)));
            }
            None => remove.push("last_enabled"),
        }
        if self.invited {
            remove.push("inviting");
        }
        if changed && self.status == UserStatus::Confirmed.as_str() {
            set.push("confirmed_at = :t");
            remove.push("confirmed_reported_at");
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        (expression, values)
    }
}

/// Makes `u` apply only if the user's groups are still as `before` had them.
fn guard_groups(u: UpdateItemFluentBuilder, before: Option<&Item>) -> UpdateItemFluentBuilder {
    match before.and_then(|i| i.get("groups_done")) {
        Some(old) => u
            .condition_expression("groups_done = :old_groups")
            .expression_attribute_values(":old_groups", old.clone()),
        None => u.condition_expression("attribute_not_exists(groups_done)"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::items::get_n;
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn seen(status: Option<&UserStatus>, enabled: Option<bool>, invited: bool) -> Seen {
        let observation = Observation {
            username: Some("u"),
            email: None,
            status,
            enabled,
            run_id: "r1",
            at: at(),
        };
        Seen::of(&observation, invited)
    }

    fn names(values: &[(&'static str, Av)]) -> Vec<&'static str> {
        values.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn a_status_sets_what_was_seen_and_removes_what_no_longer_holds() {
        let (expression, values) =
            seen(Some(&UserStatus::ForceChangePassword), Some(true), false).update(true);
        assert_eq!(
            expression,
            "SET last_status = :s, last_seen_at = :t, username = :u, last_enabled = :en"
        );
        assert_eq!(names(&values), [":s", ":t", ":u", ":en"]);
        assert_eq!(values[0].1, s("FORCE_CHANGE_PASSWORD"));
        // A user gone from the pool: DELETED, and its enabled flag no longer known.
        let (expression, values) = seen(None, None, false).update(true);
        assert_eq!(
            expression,
            "SET last_status = :s, last_seen_at = :t, username = :u REMOVE last_enabled"
        );
        assert_eq!(values[0].1, s(DELETED));
    }

    #[test]
    fn an_invitation_marks_the_user_and_clears_its_open_intent() {
        let (expression, values) =
            seen(Some(&UserStatus::ForceChangePassword), Some(true), true).update(false);
        assert_eq!(
            expression,
            "SET last_status = :s, last_seen_at = :t, username = :u, invited = :i, \
             last_enabled = :en REMOVE inviting"
        );
        assert_eq!(names(&values), [":s", ":t", ":u", ":i", ":en"]);
    }

    #[test]
    fn a_new_confirmation_gets_its_time_and_is_reported_anew() {
        let confirmed = seen(Some(&UserStatus::Confirmed), Some(true), false);
        let (expression, _) = confirmed.update(true);
        assert!(
            expression
                .ends_with("last_enabled = :en, confirmed_at = :t REMOVE confirmed_reported_at"),
            "{expression}"
        );
        let (again, _) = confirmed.update(false);
        assert!(!again.contains("confirmed_at"), "seen before: {again}");
    }

    #[test]
    fn a_transition_says_from_what_to_what_and_sorts_by_time() {
        let confirmed = seen(Some(&UserStatus::Confirmed), Some(true), false);
        let item = confirmed.transition("P#p", "a@x", Some("FORCE_CHANGE_PASSWORD"));
        assert_eq!(
            get_s(&item, "from_status").as_deref(),
            Some("FORCE_CHANGE_PASSWORD")
        );
        assert_eq!(get_s(&item, "to_status").as_deref(), Some("CONFIRMED"));
        assert_eq!(get_s(&item, "key").as_deref(), Some("a@x"));
        assert_eq!(get_s(&item, "run_id").as_deref(), Some("r1"));
        assert_eq!(get_n(&item, "observed_at"), Some(ms(at())));
        let sk = get_s(&item, "sk").unwrap();
        assert!(sk.starts_with("T#"), "{sk}");
        let id: i64 = sk[2..].parse().unwrap();
        assert_eq!(id / 1_000_000, ms(at()), "its id is its time");
        let first = confirmed.transition("P#p", "a@x", None);
        assert!(
            !first.contains_key("from_status"),
            "first seen: from nothing"
        );
    }
}
