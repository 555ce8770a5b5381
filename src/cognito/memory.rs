//! An in-memory pool behind the [`Directory`] seam, for unit tests of the row logic only: users,
//! groups, messages sent, every call counted, and faults scripted per operation (before the
//! call, or after it was carried out: a lost answer). Not an emulator; the end-to-end tests run
//! against moto. Must not be used outside tests.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::{
    Delivery, Directory, Fault, FaultKind, NamePage, NewUser, Page, PasswordPolicy, PoolInfo,
    RemoteUser, UserPage, UserStatus, UsernameMode,
};
use crate::limiter::Category;
use crate::password::TempPassword;

/// What a scripted call does instead of answering normally.
#[derive(Debug, Clone)]
pub enum Script {
    /// Fails with this code, changing nothing.
    Refuse(&'static str),
    /// Is carried out, then fails with this code (CodeDeliveryFailureException: created, not
    /// told).
    DoThenFail(&'static str),
    /// Is carried out, and the answer is lost (a timeout).
    LoseAnswer,
    /// Times out before it reaches the pool.
    Timeout,
}

#[derive(Default)]
struct Inner {
    users: BTreeMap<String, RemoteUser>,
    groups: BTreeMap<String, BTreeSet<String>>,
    scripts: HashMap<&'static str, VecDeque<Script>>,
    calls: Vec<&'static str>,
    messages: u32,
    /// The SES account's suppression list, by address.
    suppressed: HashMap<String, super::Suppressed>,
}

/// An in-memory pool.
#[derive(Default)]
pub struct MemoryPool {
    inner: Mutex<Inner>,
}

fn service(code: &str) -> Fault {
    Fault {
        kind: FaultKind::Service { http_status: 400 },
        code: Some(code.to_string()),
        message: code.to_string(),
    }
}

fn timeout() -> Fault {
    Fault {
        kind: FaultKind::Timeout,
        code: None,
        message: "timed out".into(),
    }
}

/// A user as Cognito would show it, in `status`, last modified `modified`.
pub fn user(
    username: &str,
    email: &str,
    status: UserStatus,
    modified: DateTime<Utc>,
) -> RemoteUser {
    RemoteUser {
        username: username.to_string(),
        status,
        enabled: true,
        email: Some(email.to_string()),
        email_verified: true,
        phone: None,
        phone_verified: false,
        sub: Some(format!("sub-{username}")),
        last_modified: Some(modified),
        created: Some(modified),
        attributes: [("email", email), ("email_verified", "true")]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }
}

/// Sets one attribute, keeping the typed fields in step, as Cognito's answer would.
fn set_attribute(u: &mut RemoteUser, name: &str, value: Option<&str>) {
    match value {
        Some(v) => u.attributes.insert(name.to_string(), v.to_string()),
        None => u.attributes.remove(name),
    };
    let flag = value == Some("true");
    match name {
        "email" => u.email = value.map(str::to_string),
        "email_verified" => u.email_verified = flag,
        "phone_number" => u.phone = value.map(str::to_string),
        "phone_number_verified" => u.phone_verified = flag,
        _ => {}
    }
}

/// The pool the tests run against: free-form usernames, Cognito's default policy.
pub fn pool_info() -> PoolInfo {
    PoolInfo {
        id: "eu-west-1_memory".into(),
        name: "memory".into(),
        policy: PasswordPolicy::default(),
        temporary_password_validity_days: 7,
        username_mode: UsernameMode::FreeForm,
        schema: BTreeMap::new(),
        email_sending_account: "COGNITO_DEFAULT".into(),
        estimated_users: 0,
        case_sensitive: true,
        invitation: Default::default(),
        email_source_arn: None,
        email_from: None,
        recovery: Default::default(),
        arn: Some("arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_memory".into()),
    }
}

impl MemoryPool {
    pub fn with_users(users: impl IntoIterator<Item = RemoteUser>) -> Self {
        let pool = MemoryPool::default();
        pool.lock().users = users.into_iter().map(|u| (u.username.clone(), u)).collect();
        pool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next call of `op` (the method's name) behaves as `script` says.
    pub fn script(&self, op: &'static str, script: Script) {
        self.lock().scripts.entry(op).or_default().push_back(script);
    }

    /// How many calls of `op` reached the pool.
    pub fn calls(&self, op: &str) -> usize {
        self.lock().calls.iter().filter(|c| **c == op).count()
    }

    /// Puts `email` on the SES account's suppression list.
    pub fn suppress(&self, email: &str, suppressed: super::Suppressed) {
        self.lock().suppressed.insert(email.to_string(), suppressed);
    }

    /// Messages (invitations) the pool sent.
    pub fn messages(&self) -> u32 {
        self.lock().messages
    }

    pub fn get(&self, username: &str) -> Option<RemoteUser> {
        self.lock().users.get(username).cloned()
    }

    pub fn members(&self, group: &str) -> BTreeSet<String> {
        self.lock().groups.get(group).cloned().unwrap_or_default()
    }

    /// Counts the call and carries it out through `apply`, as its script says.
    fn run<T>(
        &self,
        op: &'static str,
        apply: impl FnOnce(&mut Inner) -> Result<T, Fault>,
    ) -> Result<T, Fault> {
        let mut inner = self.lock();
        inner.calls.push(op);
        let script = inner.scripts.get_mut(op).and_then(VecDeque::pop_front);
        match script {
            None => apply(&mut inner),
            Some(Script::Refuse(code)) => Err(service(code)),
            Some(Script::Timeout) => Err(timeout()),
            Some(Script::DoThenFail(code)) => apply(&mut inner).and(Err(service(code))),
            Some(Script::LoseAnswer) => apply(&mut inner).and(Err(timeout())),
        }
    }
}

/// The user Cognito would find by `username`, or its UserNotFoundException.
fn existing<'a>(i: &'a mut Inner, username: &str) -> Result<&'a mut RemoteUser, Fault> {
    i.users
        .get_mut(username)
        .ok_or_else(|| service("UserNotFoundException"))
}

/// A time strictly after `before`, so a write always moves `UserLastModifiedDate`.
fn after(before: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = Utc::now();
    match before {
        Some(b) if b >= now => b + Duration::milliseconds(1),
        _ => now,
    }
}

impl Directory for MemoryPool {
    fn pool_id(&self) -> &str {
        "eu-west-1_memory"
    }

    async fn describe_pool(&self) -> Result<PoolInfo, Fault> {
        self.run("describe_pool", |_| Ok(pool_info()))
    }

    async fn reset_password(&self, username: &str) -> Result<(), Fault> {
        self.run("reset_password", |i| {
            let u = existing(i, username)?;
            u.status = UserStatus::ResetRequired;
            u.last_modified = Some(after(u.last_modified));
            i.messages += 1;
            Ok(())
        })
    }

    /// `UserLastModifiedDate` stays: whether Cognito moves it here is not documented (moto does
    /// not), so no test may lean on it.
    async fn disable_user(&self, username: &str) -> Result<(), Fault> {
        self.run("disable_user", |i| {
            existing(i, username)?.enabled = false;
            Ok(())
        })
    }

    async fn enable_user(&self, username: &str) -> Result<(), Fault> {
        self.run("enable_user", |i| {
            existing(i, username)?.enabled = true;
            Ok(())
        })
    }

    /// Deletes the user and its group memberships, as Cognito does.
    async fn delete_user(&self, username: &str) -> Result<(), Fault> {
        self.run("delete_user", |i| {
            existing(i, username)?;
            i.users.remove(username);
            for members in i.groups.values_mut() {
                members.remove(username);
            }
            Ok(())
        })
    }

    async fn delivery_log(&self) -> Result<Option<super::DeliveryLog>, Fault> {
        self.run("delivery_log", |_| Ok(None))
    }

    async fn suppressed(
        &self,
        _region: &str,
        email: &str,
    ) -> Result<Option<super::Suppressed>, Fault> {
        self.run("suppressed", |i| Ok(i.suppressed.get(email).cloned()))
    }

    async fn send_quota(&self, _region: &str) -> Result<super::SendQuota, Fault> {
        self.run("send_quota", |_| {
            Ok(super::SendQuota {
                max_24_hour_send: 200.0,
                max_send_rate: 1.0,
                sent_last_24_hours: 0.0,
            })
        })
    }

    async fn provisioned_limit(&self, _category: Category) -> Result<f64, Fault> {
        self.run("provisioned_limit", |_| {
            Err(service("ResourceNotFoundException"))
        })
    }

    async fn list_groups(&self, _next: Option<String>) -> Result<NamePage, Fault> {
        self.run("list_groups", |i| {
            Ok(Page {
                items: i.groups.keys().cloned().collect(),
                next: None,
            })
        })
    }

    async fn list_users_in_group(
        &self,
        group: &str,
        _next: Option<String>,
    ) -> Result<NamePage, Fault> {
        self.run("list_users_in_group", |i| {
            Ok(Page {
                items: i.groups.get(group).into_iter().flatten().cloned().collect(),
                next: None,
            })
        })
    }

    async fn list_users(
        &self,
        filter: Option<&str>,
        _next: Option<String>,
    ) -> Result<UserPage, Fault> {
        // The one filter whose answer the code under test reads user by user; any other lists
        // everyone, as before.
        let email = filter
            .and_then(|f| f.strip_prefix("email = \""))
            .and_then(|v| v.strip_suffix('"'));
        self.run("list_users", |i| {
            Ok(Page {
                items: i
                    .users
                    .values()
                    .filter(|u| email.is_none_or(|e| u.email.as_deref() == Some(e)))
                    .cloned()
                    .collect(),
                next: None,
            })
        })
    }

    async fn get_user(&self, username: &str) -> Result<Option<RemoteUser>, Fault> {
        self.run("get_user", |i| Ok(i.users.get(username).cloned()))
    }

    async fn create_user(&self, new: &NewUser<'_>) -> Result<RemoteUser, Fault> {
        self.run("create_user", |i| {
            if i.users.contains_key(new.username) {
                return Err(service("UsernameExistsException"));
            }
            let email = new
                .attributes
                .iter()
                .find(|(n, _)| n == "email")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let mut u = user(
                new.username,
                &email,
                UserStatus::ForceChangePassword,
                Utc::now(),
            );
            for (n, v) in new.attributes {
                set_attribute(&mut u, n, Some(v));
            }
            i.users.insert(new.username.to_string(), u.clone());
            if new.delivery.sends_message() {
                i.messages += 1;
            }
            Ok(u)
        })
    }

    async fn resend_invitation(
        &self,
        username: &str,
        _password: &TempPassword,
        _delivery: Delivery,
    ) -> Result<(), Fault> {
        self.run("resend_invitation", |i| {
            let u = existing(i, username)?;
            if u.status != UserStatus::ForceChangePassword {
                return Err(service("UnsupportedUserStateException"));
            }
            u.last_modified = Some(after(u.last_modified));
            i.messages += 1;
            Ok(())
        })
    }

    async fn set_temporary_password(
        &self,
        username: &str,
        _password: &TempPassword,
    ) -> Result<(), Fault> {
        self.run("set_temporary_password", |i| {
            let u = existing(i, username)?;
            u.status = UserStatus::ForceChangePassword;
            u.last_modified = Some(after(u.last_modified));
            Ok(())
        })
    }

    async fn update_attributes(
        &self,
        username: &str,
        attributes: &[(String, String)],
    ) -> Result<(), Fault> {
        self.run("update_attributes", |i| {
            let u = existing(i, username)?;
            for (n, v) in attributes {
                set_attribute(u, n, Some(v));
            }
            u.last_modified = Some(after(u.last_modified));
            Ok(())
        })
    }

    async fn delete_attributes(&self, username: &str, names: &[String]) -> Result<(), Fault> {
        self.run("delete_attributes", |i| {
            let u = existing(i, username)?;
            for n in names {
                set_attribute(u, n, None);
            }
            u.last_modified = Some(after(u.last_modified));
            Ok(())
        })
    }

    async fn remove_from_group(&self, username: &str, group: &str) -> Result<(), Fault> {
        self.run("remove_from_group", |i| {
            if let Some(members) = i.groups.get_mut(group) {
                members.remove(username);
            }
            Ok(())
        })
    }

    async fn add_to_group(&self, username: &str, group: &str) -> Result<(), Fault> {
        self.run("add_to_group", |i| {
            i.groups
                .entry(group.to_string())
                .or_default()
                .insert(username.to_string());
            Ok(())
        })
    }
}
