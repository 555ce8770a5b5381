//! Closing the loop: the operator's `--on-confirmed` command, run once for each confirmed
//! provider the tool invited and has not handed over yet, and `--on-expiring`'s, run once per
//! invitation for each pending provider whose temporary password expires soon, each with a JSON
//! object on stdin (never a password) and a time limit. A provider is marked handed over only when the command exits 0, so a failed or
//! timed-out command is retried on the next run, and never run twice after success. The command
//! inherits the tool's environment less its AWS credentials ([`WITHHELD`]), unless the operator
//! names them on purpose. Must not decide who is confirmed (`standing` and `onboard` do).

use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::state::{State, Subject};

/// The command, its time limit, and the withheld variables it is given on purpose.
#[derive(Debug, Clone)]
pub struct OnConfirmed {
    pub command: String,
    pub timeout: Duration,
    /// Names from [`WITHHELD`] that the command gets after all (`--on-confirmed-env`).
    pub pass_env: Vec<String>,
}

/// The variables that carry AWS credentials, or lead to them (a container's or a web
/// identity's), which the command does not inherit unless named: the command is the operator's,
/// but the tool's credentials can write to the user pool, and a command that needs AWS should be
/// given its own on purpose.
pub const WITHHELD: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
];

/// What the command receives on stdin.
#[derive(Debug, Clone, Serialize)]
pub struct Confirmed {
    /// The state's key for the provider.
    #[serde(skip)]
    pub key: String,
    pub pool: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub invited_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

pub use crate::report::model::{HandOver, Pending};

/// `--on-expiring DURATION COMMAND`: the reminder, and how soon before the expiry it is due.
#[derive(Debug, Clone)]
pub struct OnExpiring {
    pub within: chrono::Duration,
    pub hook: OnConfirmed,
}

/// What the reminder command receives on stdin: who, and when the invitation expires.
#[derive(Debug, Clone, Serialize)]
pub struct Expiring {
    #[serde(skip)]
    pub key: String,
    pub pool: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// When the invitation (the one this reminder is for) went out.
    pub invited_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The reminders due among `pending`: a provider the tool invited, whose temporary password
/// has not expired and expires within `within` of `now`, and who has had no reminder for this
/// invitation (a re-issue is a new invitation, and gets one of its own).
pub fn expiring_due(
    pool_id: &str,
    pending: &[Pending],
    known: &std::collections::HashMap<String, crate::state::Known>,
    within: chrono::Duration,
    now: DateTime<Utc>,
) -> Vec<Expiring> {
    pending
        .iter()
        .filter_map(|p| expiring(pool_id, p, known.get(&p.0)?, within, now))
        .collect()
}

/// [`expiring_due`] for one pending provider, with what the state knows of it.
pub fn expiring(
    pool_id: &str,
    (key, username, email, name, expires_at): &Pending,
    k: &crate::state::Known,
    within: chrono::Duration,
    now: DateTime<Utc>,
) -> Option<Expiring> {
    if *expires_at <= now || *expires_at - now > within {
        return None;
    }
    let invited_at = k.last_invited_at?;
    // Not one who cannot sign in anyway (disabled, by this tool or anyone).
    let usable = k.disabled_run.is_none() && k.last_enabled != Some(false);
    (k.invited && usable && k.reminded_for != Some(invited_at)).then(|| Expiring {
        key: key.clone(),
        pool: pool_id.to_string(),
        username: username.clone().or_else(|| k.username.clone()),
        email: email.clone().or_else(|| k.email.clone()),
        name: name.clone(),
        invited_at,
        expires_at: *expires_at,
    })
}

/// Runs the reminder for each provider, one after another, and records each success against
/// its invitation.
pub async fn remind(
    on: &OnExpiring,
    state: &State,
    due: Vec<Expiring>,
) -> Result<Vec<HandOver>, Error> {
    let mut out = Vec::with_capacity(due.len());
    for p in due {
        let mut h = run_once(&on.hook, &p.key, &p).await;
        if h.exit_code == Some(0) {
            state.reminded(Subject::new(&p.pool, &p.key), p.invited_at)?;
            h.handed_over = true;
        } else {
            tracing::warn!(
                "--on-expiring for {} {}; the next run tries again",
                p.key,
                failure(&h)
            );
        }
        out.push(h);
    }
    Ok(out)
}

/// What went wrong with a hook's run, in words.
fn failure(h: &HandOver) -> String {
    match (&h.error, h.timed_out, h.exit_code) {
        (Some(e), _, _) => format!("could not run: {e}"),
        (None, true, _) => "ran out of time and was stopped".to_string(),
        (None, false, Some(code)) => format!("exited with {code}"),
        (None, false, None) => "was killed by a signal".to_string(),
    }
}

/// The providers to hand over among `seen` (key, username, email of providers seen
/// `CONFIRMED`): those the tool invited and has not handed over yet.
pub fn due<'a>(
    pool_id: &str,
    seen: impl Iterator<Item = (&'a str, Option<&'a str>, Option<&'a str>)>,
    known: &std::collections::HashMap<String, crate::state::Known>,
) -> Vec<Confirmed> {
    seen.filter_map(|(key, username, email)| {
        confirmed(pool_id, (key, username, email), known.get(key)?)
    })
    .collect()
}

/// [`due`] for one confirmed provider, with what the state knows of it.
pub fn confirmed(
    pool_id: &str,
    (key, username, email): (&str, Option<&str>, Option<&str>),
    k: &crate::state::Known,
) -> Option<Confirmed> {
    (k.invited && k.handed_over_at.is_none()).then(|| Confirmed {
        key: key.to_string(),
        pool: pool_id.to_string(),
        username: username.map(str::to_string).or_else(|| k.username.clone()),
        email: email.map(str::to_string).or_else(|| k.email.clone()),
        groups: k.groups_done.clone(),
        invited_at: k.first_invited_at,
        confirmed_at: k.confirmed_at,
    })
}

/// Runs the command for each provider, one after another, and records each success.
pub async fn hand_over(
    on: &OnConfirmed,
    state: &State,
    pool_id: &str,
    providers: Vec<Confirmed>,
) -> Result<Vec<HandOver>, Error> {
    let mut out = Vec::with_capacity(providers.len());
    for p in providers {
        let mut h = run_once(on, &p.key, &p).await;
        if h.exit_code == Some(0) {
            state.handed_over(Subject::new(pool_id, &p.key), Utc::now())?;
            h.handed_over = true;
        } else {
            tracing::warn!(
                "--on-confirmed for {} {}; the next run tries again",
                p.key,
                failure(&h)
            );
        }
        out.push(h);
    }
    Ok(out)
}

async fn run_once(on: &OnConfirmed, key: &str, p: &impl Serialize) -> HandOver {
    let mut h = HandOver {
        key: key.to_string(),
        exit_code: None,
        timed_out: false,
        handed_over: false,
        error: None,
    };
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&on.command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    for name in WITHHELD {
        if !on.pass_env.iter().any(|p| p == name) {
            command.env_remove(name);
        }
    }
    // Its own process group, so that a time limit stops whatever the shell started too.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            h.error = Some(e.to_string());
            return h;
        }
    };
    let input = serde_json::to_vec(p).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is still judged by its exit status.
        let _ = stdin.write_all(&input).await;
        let _ = stdin.write_all(b"\n").await;
    }
    match tokio::time::timeout(on.timeout, child.wait()).await {
        Ok(Ok(status)) => h.exit_code = status.code(),
        Ok(Err(e)) => h.error = Some(e.to_string()),
        Err(_) => {
            h.timed_out = true;
            #[cfg(unix)]
            if let Some(pid) = child.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status()
                    .await;
            }
            let _ = child.kill().await;
        }
    }
    h
}
