//! Every Cognito operation the job makes, each bound here once to its [`Op`], so that the
//! executor paces a call and classifies its failure under the same name; pagination; the check
//! that settles an ambiguous write; and the quota probe, which asks Cognito for a category's
//! rate before the first call in it. Must not decide what to do with an answer.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::cognito::{Delivery, Directory, Fault, NewUser, Page, PoolInfo, RemoteUser};
use crate::executor::{Done, Executor, Failed};
use crate::limiter::{Category, Op};
use crate::password::TempPassword;
use crate::plan::{self, InviteKind};

/// Attempts for the first call of a command: it doubles as the connectivity check, so a wrong
/// endpoint or a network outage is reported in seconds rather than after the full retry schedule.
pub const PROBE_ATTEMPTS: u32 = 3;

/// The pool's directory, with the executor every call goes through.
pub struct Calls<D> {
    pub dir: D,
    pub exec: Arc<Executor>,
    probe: tokio::sync::Mutex<Probe>,
    /// Categories whose probe is over: their calls go straight on, without the probe's lock.
    settled: std::sync::Mutex<BTreeSet<Category>>,
}

/// Which categories still need their quota asked (GetProvisionedLimit, paced at one a second by
/// its own cap in the limiter).
#[derive(Debug, Default)]
pub struct Probe {
    /// Asking stops at the first refusal (an emulator, an old Region, a policy without it).
    refused: bool,
    done: BTreeSet<Category>,
}

impl Probe {
    /// Ask for each category's rate, except those in `keep` (set in the settings file).
    pub fn ask(keep: impl IntoIterator<Item = Category>) -> Self {
        Probe {
            refused: false,
            done: keep.into_iter().collect(),
        }
    }

    /// Never ask: the documented (or configured) quotas stand.
    pub fn never() -> Self {
        Probe {
            refused: true,
            done: BTreeSet::new(),
        }
    }
}

/// Whether GetProvisionedLimit refused one category only (not the API as a whole).
fn category_refused(f: &Failed) -> bool {
    matches!(
        f.error.code.as_deref(),
        Some("InvalidParameterException" | "ResourceNotFoundException")
    )
}

impl<D: Directory> Calls<D> {
    pub fn new(dir: D, exec: Arc<Executor>, probe: Probe) -> Self {
        Calls {
            dir,
            exec,
            probe: tokio::sync::Mutex::new(probe),
            settled: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    /// Before the first call in `op`'s category, asks Cognito for the rate it enforces there on
    /// this account (GetProvisionedLimit, through the executor like any call) and paces the
    /// category at the run's share of it. Calls that arrive meanwhile wait for the answer.
    async fn quota_for(&self, op: Op) {
        let category = op.category();
        if !category.is_cognito() || self.is_settled(category) {
            return;
        }
        let mut probe = self.probe.lock().await;
        if probe.refused || !probe.done.insert(category) {
            self.settle(category);
            return;
        }
        match self
            .exec
            .call_with_attempts(Op::GetProvisionedLimit, 1, || {
                self.dir.provisioned_limit(category)
            })
            .await
        {
            Ok(done) => {
                self.exec.limiter.set_quota(category, done.value);
                tracing::debug!(
                    category = category.name(),
                    quota = done.value,
                    rate = self.exec.limiter.current_rate(category),
                    "provisioned limit"
                );
            }
            // A refusal about this category keeps its documented quota and asks on for the
            // others; anything else (no such API here, no permission, an emulator's HTML
            // answer) stops the asking.
            Err(f) if category_refused(&f) => {
                tracing::debug!(
                    category = category.name(),
                    "GetProvisionedLimit refused for this category ({}); using its documented quota",
                    f.error
                );
            }
            Err(f) => {
                probe.refused = true;
                tracing::debug!(
                    "GetProvisionedLimit not answered ({}); using the documented quotas",
                    f.error
                );
            }
        }
        self.settle(category);
    }

    fn is_settled(&self, category: Category) -> bool {
        self.settled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&category)
    }

    fn settle(&self, category: Category) {
        self.settled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(category);
    }

    async fn call<T, F, Fut>(&self, op: Op, f: F) -> Result<Done<T>, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        self.quota_for(op).await;
        self.exec.call(op, f).await
    }

    pub fn pool_id(&self) -> &str {
        self.dir.pool_id()
    }

    /// DescribeUserPool, with few attempts: it is the first call of every command.
    pub async fn describe_pool(&self) -> Result<Done<PoolInfo>, Failed> {
        let attempts = PROBE_ATTEMPTS.min(self.exec.retry.max_attempts);
        self.quota_for(Op::DescribeUserPool).await;
        self.exec
            .call_with_attempts(Op::DescribeUserPool, attempts, || self.dir.describe_pool())
            .await
    }

    /// Every group of the pool (ListGroups, all pages).
    pub async fn groups(&self) -> Result<Vec<String>, Failed> {
        let mut out = Vec::new();
        self.pages(
            Op::ListGroups,
            |next| self.dir.list_groups(next),
            |g| out.extend(g),
        )
        .await?;
        Ok(out)
    }

    /// The usernames in a group (ListUsersInGroup, all pages).
    pub async fn group_members(&self, group: &str) -> Result<Vec<String>, Failed> {
        let mut out = Vec::new();
        self.pages(
            Op::ListUsersInGroup,
            |next| self.dir.list_users_in_group(group, next),
            |names| out.extend(names),
        )
        .await?;
        Ok(out)
    }

    /// Every user matching `filter` (ListUsers, all pages).
    pub async fn users(&self, filter: Option<&str>) -> Result<Vec<RemoteUser>, Failed> {
        let mut out = Vec::new();
        self.users_each(filter, |users| out.extend(users)).await?;
        Ok(out)
    }

    /// Every user matching `filter` (ListUsers, all pages), handed to `each` a page at a time,
    /// so that a large pool's listing is never held whole.
    pub async fn users_each(
        &self,
        filter: Option<&str>,
        each: impl FnMut(Vec<RemoteUser>),
    ) -> Result<(), Failed> {
        self.pages(
            Op::ListUsers,
            |next| self.dir.list_users(filter, next),
            each,
        )
        .await
    }

    /// Follows the pagination token until the listing ends, handing each page's items on.
    async fn pages<T, F, Fut>(
        &self,
        op: Op,
        mut page: F,
        mut each: impl FnMut(Vec<T>),
    ) -> Result<(), Failed>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<Page<T>, Fault>>,
    {
        let mut next: Option<String> = None;
        loop {
            let token = next.take();
            let done = self.call(op, || page(token.clone())).await?;
            each(done.value.items);
            match done.value.next {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => return Ok(()),
            }
        }
    }

    /// AdminGetUser; `None` when the user does not exist.
    pub async fn get_user(&self, username: &str) -> Result<Done<Option<RemoteUser>>, Failed> {
        self.call(Op::AdminGetUser, || self.dir.get_user(username))
            .await
    }

    /// AdminCreateUser. A lost answer is settled by reading the user: created at or after
    /// `intent_at`, it is ours and the invitation went out; absent, the create is tried again.
    pub async fn create_user(
        &self,
        user: &NewUser<'_>,
        intent_at: DateTime<Utc>,
    ) -> Result<Done<RemoteUser>, Failed> {
        self.quota_for(Op::AdminCreateUser).await;
        if user.delivery.sends_message() {
            self.exec.pace_message().await;
        }
        self.exec
            .call_verified(
                Op::AdminCreateUser,
                || self.dir.create_user(user),
                || async move {
                    let found = self.get_user(user.username).await?.value;
                    Ok(found.filter(|u| {
                        plan::intent_went_through(InviteKind::Create, intent_at, Some(u))
                    }))
                },
            )
            .await
    }

    /// AdminCreateUser with RESEND. A lost answer is settled by reading the user: if it was
    /// modified after `before` (its `UserLastModifiedDate` when it was read for this row), the
    /// invitation went out; otherwise it is sent again.
    pub async fn resend_invitation(
        &self,
        username: &str,
        password: &TempPassword,
        delivery: Delivery,
        before: Option<DateTime<Utc>>,
    ) -> Result<Done<()>, Failed> {
        self.quota_for(Op::AdminCreateUserResend).await;
        self.exec.pace_message().await;
        self.exec
            .call_verified(
                Op::AdminCreateUserResend,
                || self.dir.resend_invitation(username, password, delivery),
                || self.modified_since(username, before),
            )
            .await
    }

    /// AdminSetUserPassword with Permanent=false (sends nothing; repeating it with the same
    /// password is harmless).
    pub async fn set_temporary_password(
        &self,
        username: &str,
        password: &TempPassword,
    ) -> Result<Done<()>, Failed> {
        self.call(Op::AdminSetUserPassword, || {
            self.dir.set_temporary_password(username, password)
        })
        .await
    }

    /// `Some(())` if the user was modified after `before`: a write to it went through.
    async fn modified_since(
        &self,
        username: &str,
        before: Option<DateTime<Utc>>,
    ) -> Result<Option<()>, Failed> {
        let now = self.get_user(username).await?.value;
        let moved = match (now.and_then(|u| u.last_modified), before) {
            (Some(now), Some(before)) => now > before,
            _ => false,
        };
        Ok(moved.then_some(()))
    }

    /// GetLogDeliveryConfiguration, tried once: the help desk says so when it cannot be read.
    pub async fn delivery_log(&self) -> Result<Done<Option<crate::cognito::DeliveryLog>>, Failed> {
        self.exec
            .call_with_attempts(Op::GetLogDeliveryConfiguration, 1, || {
                self.dir.delivery_log()
            })
            .await
    }

    /// SES v2 GetSuppressedDestination for `email` in `region`: `None` when the address is not
    /// on the account's suppression list. Throttles and passing faults are retried like any
    /// read; a refusal (no permission) is never fatal, the caller goes on without the answer.
    pub async fn suppressed(
        &self,
        region: &str,
        email: &str,
    ) -> Result<Done<Option<crate::cognito::Suppressed>>, Failed> {
        self.exec
            .call(Op::GetSuppressedDestination, || {
                self.dir.suppressed(region, email)
            })
            .await
    }

    /// SES GetSendQuota in `region`, tried once: a refusal means "use the settings".
    pub async fn send_quota(
        &self,
        region: &str,
    ) -> Result<Done<crate::cognito::SendQuota>, Failed> {
        self.exec
            .call_with_attempts(Op::GetSendQuota, 1, || self.dir.send_quota(region))
            .await
    }

    /// AdminResetUserPassword. A lost answer is settled by reading the user: `RESET_REQUIRED`
    /// means the code went out; otherwise it is asked again.
    pub async fn reset_password(&self, username: &str) -> Result<Done<()>, Failed> {
        self.quota_for(Op::AdminResetUserPassword).await;
        self.exec.pace_message().await;
        self.exec
            .call_verified(
                Op::AdminResetUserPassword,
                || self.dir.reset_password(username),
                || async move {
                    let now = self.get_user(username).await?.value;
                    Ok(now
                        .filter(|u| u.status == crate::cognito::UserStatus::ResetRequired)
                        .map(|_| ()))
                },
            )
            .await
    }

    /// AdminDisableUser, for offboarding. A lost answer is settled by reading the user: disabled,
    /// it went through; still enabled, it is tried again.
    pub async fn disable_user(&self, username: &str) -> Result<Done<()>, Failed> {
        self.quota_for(Op::AdminDisableUser).await;
        self.exec
            .call_verified(
                Op::AdminDisableUser,
                || self.dir.disable_user(username),
                || self.enabled_is(username, false),
            )
            .await
    }

    /// AdminEnableUser. A lost answer is settled by reading the user: enabled, it went through;
    /// still disabled, it is tried again.
    pub async fn enable_user(&self, username: &str) -> Result<Done<()>, Failed> {
        self.quota_for(Op::AdminEnableUser).await;
        self.exec
            .call_verified(
                Op::AdminEnableUser,
                || self.dir.enable_user(username),
                || self.enabled_is(username, true),
            )
            .await
    }

    /// AdminDeleteUser. A lost answer is settled by reading the user: gone, the delete went
    /// through (a repeat would be refused as UserNotFoundException); still there, it is tried
    /// again.
    pub async fn delete_user(&self, username: &str) -> Result<Done<()>, Failed> {
        self.quota_for(Op::AdminDeleteUser).await;
        self.exec
            .call_verified(
                Op::AdminDeleteUser,
                || self.dir.delete_user(username),
                || async move {
                    let now = self.get_user(username).await?.value;
                    Ok(now.is_none().then_some(()))
                },
            )
            .await
    }

    /// `Some(())` if the user exists and its `Enabled` is `enabled`: a disable or enable went
    /// through.
    async fn enabled_is(&self, username: &str, enabled: bool) -> Result<Option<()>, Failed> {
        let now = self.get_user(username).await?.value;
        Ok(now.filter(|u| u.enabled == enabled).map(|_| ()))
    }

    /// AdminUpdateUserAttributes with these values (writing a value again is harmless).
    pub async fn update_attributes(
        &self,
        username: &str,
        attributes: &[(String, String)],
    ) -> Result<Done<()>, Failed> {
        self.call(Op::AdminUpdateUserAttributes, || {
            self.dir.update_attributes(username, attributes)
        })
        .await
    }

    /// AdminDeleteUserAttributes (deleting again is harmless).
    pub async fn delete_attributes(
        &self,
        username: &str,
        names: &[String],
    ) -> Result<Done<()>, Failed> {
        self.call(Op::AdminDeleteUserAttributes, || {
            self.dir.delete_attributes(username, names)
        })
        .await
    }

    /// AdminRemoveUserFromGroup (removing a non-member again is harmless).
    pub async fn remove_from_group(&self, username: &str, group: &str) -> Result<Done<()>, Failed> {
        self.call(Op::AdminRemoveUserFromGroup, || {
            self.dir.remove_from_group(username, group)
        })
        .await
    }

    /// AdminAddUserToGroup (adding a member again is harmless).
    pub async fn add_to_group(&self, username: &str, group: &str) -> Result<Done<()>, Failed> {
        self.call(Op::AdminAddUserToGroup, || {
            self.dir.add_to_group(username, group)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cognito::memory::{self, MemoryPool, Script};
    use crate::cognito::{Directory, ErrorClass, UserStatus};
    use crate::executor::{Cancel, RetryPolicy};
    use crate::limiter::{Limiter, Quotas};

    fn calls(probe: Probe) -> Calls<MemoryPool> {
        let exec = Arc::new(Executor::new(
            Arc::new(Limiter::new(&Quotas::default(), 1.0)),
            RetryPolicy::default(),
            Arc::new(Cancel::default()),
        ));
        Calls::new(MemoryPool::default(), exec, probe)
    }

    #[tokio::test]
    async fn a_refusal_for_one_category_keeps_asking_for_the_others() {
        // The in-memory pool refuses every category with ResourceNotFoundException.
        let c = calls(Probe::ask([]));
        c.get_user("a").await.unwrap();
        c.get_user("b").await.unwrap();
        c.users(None).await.unwrap();
        assert_eq!(
            c.dir.calls("provisioned_limit"),
            2,
            "once per category, not per call"
        );
        assert_eq!(c.exec.limiter.current_rate(Category::UserRead), 120.0);
    }

    fn calls_with(users: &[&str]) -> Calls<MemoryPool> {
        let c = calls(Probe::never());
        let pool = MemoryPool::with_users(users.iter().map(|u| {
            memory::user(
                u,
                &format!("{u}@example.jp"),
                UserStatus::Confirmed,
                Utc::now(),
            )
        }));
        Calls::new(pool, c.exec, Probe::never())
    }

    #[tokio::test]
    async fn a_user_disabled_then_enabled_is_back_as_it_was() {
        let c = calls_with(&["a"]);
        let done = c.disable_user("a").await.unwrap();
        assert_eq!((done.attempts, done.recovered), (1, false));
        assert!(!c.dir.get("a").unwrap().enabled);
        assert!(!c.get_user("a").await.unwrap().value.unwrap().enabled);
        let done = c.enable_user("a").await.unwrap();
        assert_eq!((done.attempts, done.recovered), (1, false));
        assert!(c.dir.get("a").unwrap().enabled);
        assert_eq!(
            (c.dir.calls("disable_user"), c.dir.calls("enable_user")),
            (1, 1)
        );
    }

    #[tokio::test]
    async fn a_lost_answer_to_a_disable_that_went_through_is_read_back_not_repeated() {
        let c = calls_with(&["a"]);
        c.dir.script("disable_user", Script::LoseAnswer);
        let done = c.disable_user("a").await.unwrap();
        assert!(done.recovered, "settled by reading the user");
        assert_eq!(done.attempts, 1);
        assert_eq!(c.dir.calls("disable_user"), 1, "no second disable");
        assert_eq!(c.dir.calls("get_user"), 1);
        assert!(!c.dir.get("a").unwrap().enabled);
    }

    #[tokio::test]
    async fn a_lost_answer_to_an_enable_that_went_through_is_read_back_not_repeated() {
        let c = calls_with(&["a"]);
        c.disable_user("a").await.unwrap();
        // A server error after the write: ambiguous for a write, as a timeout is.
        c.dir
            .script("enable_user", Script::DoThenFail("InternalErrorException"));
        let done = c.enable_user("a").await.unwrap();
        assert!(done.recovered);
        assert_eq!(c.dir.calls("enable_user"), 1);
        assert!(c.dir.get("a").unwrap().enabled);
    }

    #[tokio::test]
    async fn a_disable_lost_before_it_reached_the_pool_is_made_again_after_the_read() {
        let c = calls_with(&["a"]);
        c.dir.script("disable_user", Script::Timeout);
        let done = c.disable_user("a").await.unwrap();
        assert!(!done.recovered, "the second attempt answered");
        assert_eq!(done.attempts, 2);
        assert_eq!(c.dir.calls("disable_user"), 2);
        assert_eq!(c.dir.calls("get_user"), 1, "read once, still enabled");
        assert!(!c.dir.get("a").unwrap().enabled);
    }

    #[tokio::test]
    async fn a_lost_answer_to_a_delete_that_went_through_is_done_once_the_user_is_gone() {
        let c = calls_with(&["a", "b"]);
        c.dir.add_to_group("a", "providers").await.unwrap();
        c.dir.script("delete_user", Script::LoseAnswer);
        let done = c.delete_user("a").await.unwrap();
        assert!(done.recovered, "settled by reading the user");
        assert_eq!(done.attempts, 1);
        assert_eq!(
            c.dir.calls("delete_user"),
            1,
            "not repeated into UserNotFoundException"
        );
        assert!(c.dir.get("a").is_none());
        assert!(c.dir.members("providers").is_empty());
        assert!(c.dir.get("b").is_some(), "only that user");
    }

    #[tokio::test]
    async fn offboarding_an_unknown_user_fails_as_not_found_at_once() {
        let c = calls_with(&[]);
        for (name, failed) in [
            ("disable_user", c.disable_user("ghost").await.unwrap_err()),
            ("enable_user", c.enable_user("ghost").await.unwrap_err()),
            ("delete_user", c.delete_user("ghost").await.unwrap_err()),
        ] {
            assert_eq!(failed.error.class, ErrorClass::NotFound, "{name}");
            assert_eq!(failed.attempts, 1, "{name}");
            assert!(!failed.maybe_done, "{name}");
            assert_eq!(c.dir.calls(name), 1, "{name}");
        }
    }

    #[tokio::test]
    async fn categories_set_in_the_settings_file_are_never_asked() {
        let c = calls(Probe::ask([Category::UserRead]));
        c.get_user("a").await.unwrap();
        assert_eq!(c.dir.calls("provisioned_limit"), 0);
        let never = calls(Probe::never());
        never.get_user("a").await.unwrap();
        assert_eq!(never.dir.calls("provisioned_limit"), 0);
    }
}
