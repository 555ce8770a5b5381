//! For the benchmark only: a minimal in-memory stand-in for the handful of Cognito operations
//! the tool calls, on loopback, answering thousands of requests a second, so that the tool's
//! own cost at scale can be seen (moto answers about 120 a second). No quotas, no checks beyond
//! what the tool's paths need. Never used by a test: correctness is shown on moto.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub const POOL_ID: &str = "eu-west-1_standin";

#[derive(Clone)]
pub struct User {
    pub username: String,
    pub status: &'static str,
    pub attributes: BTreeMap<String, String>,
    pub created: f64,
    pub modified: f64,
}

#[derive(Default)]
pub struct Pool {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

/// The running stand-in: its pool (to seed and to change from the benchmark) and call counts.
pub struct StandIn {
    pub addr: SocketAddr,
    pub pool: Arc<Mutex<Pool>>,
    calls: Arc<Mutex<HashMap<String, u64>>>,
    _runtime: tokio::runtime::Runtime,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

static SUBS: AtomicU64 = AtomicU64::new(0);

impl User {
    pub fn new(username: &str, email: &str, status: &'static str) -> User {
        let sub = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            SUBS.fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9),
            SUBS.load(Ordering::Relaxed)
        );
        let attributes = [
            ("sub", sub.as_str()),
            ("email", email),
            ("email_verified", "true"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        User {
            username: username.to_string(),
            status,
            attributes,
            created: now(),
            modified: now(),
        }
    }

    fn attributes_json(&self) -> Value {
        self.attributes
            .iter()
            .map(|(n, v)| json!({"Name": n, "Value": v}))
            .collect()
    }

    fn listed(&self) -> Value {
        json!({
            "Username": self.username, "Attributes": self.attributes_json(),
            "UserStatus": self.status, "Enabled": true,
            "UserCreateDate": self.created, "UserLastModifiedDate": self.modified,
        })
    }
}

type Answer = Result<Value, (&'static str, String)>;

fn str_of<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field].as_str().unwrap_or_default()
}

/// One page of the users after `token` (a username) that `keep` keeps, 60 at most: found by a
/// range, so a scan of a big pool costs its size once, not once a page.
fn page<'a>(users: impl Iterator<Item = &'a User>, key: &str, token_field: &str) -> Value {
    let mut items: Vec<&User> = users.take(61).collect();
    let more = items.len() > 60;
    items.truncate(60);
    let mut out = json!({ key: items.iter().map(|u| u.listed()).collect::<Vec<_>>() });
    if more && let Some(last) = items.last() {
        out[token_field] = json!(last.username);
    }
    out
}

fn after<'a>(
    users: &'a BTreeMap<String, User>,
    token: Option<&str>,
) -> impl Iterator<Item = &'a User> {
    use std::ops::Bound;
    let start = match token {
        Some(t) => Bound::Excluded(t.to_string()),
        None => Bound::Unbounded,
    };
    users.range((start, Bound::Unbounded)).map(|(_, u)| u)
}

fn answer(pool: &Mutex<Pool>, op: &str, body: &Value) -> Answer {
    let mut p = pool.lock().unwrap();
    let not_found = || ("UserNotFoundException", "User does not exist.".to_string());
    match op {
        "DescribeUserPool" => Ok(json!({"UserPool": {
            "Id": POOL_ID, "Name": "standin",
            "Policies": {"PasswordPolicy": {"MinimumLength": 8, "RequireUppercase": true,
                "RequireLowercase": true, "RequireNumbers": true, "RequireSymbols": false,
                "TemporaryPasswordValidityDays": 7}},
            "EstimatedNumberOfUsers": p.users.len(),
            "EmailConfiguration": {"EmailSendingAccount": "COGNITO_DEFAULT"},
            "UsernameConfiguration": {"CaseSensitive": false},
        }})),
        "ListGroups" => Ok(json!({"Groups": p.groups.keys()
            .map(|g| json!({"GroupName": g})).collect::<Vec<_>>()})),
        "ListUsers" => {
            let filter = str_of(body, "Filter");
            let matches = |u: &User| {
                if let Some(status) = filter.strip_prefix("cognito:user_status = ") {
                    status.trim_matches('"') == u.status
                } else if let Some(prefix) = filter.strip_prefix("sub ^= ") {
                    u.attributes["sub"].starts_with(prefix.trim_matches('"'))
                } else {
                    true
                }
            };
            let users = after(&p.users, body["PaginationToken"].as_str()).filter(|u| matches(u));
            Ok(page(users, "Users", "PaginationToken"))
        }
        "ListUsersInGroup" => {
            let empty = BTreeSet::new();
            let group = p.groups.get(str_of(body, "GroupName")).unwrap_or(&empty);
            let users =
                after(&p.users, body["NextToken"].as_str()).filter(|u| group.contains(&u.username));
            Ok(page(users, "Users", "NextToken"))
        }
        "AdminGetUser" => {
            let u = p
                .users
                .get(str_of(body, "Username"))
                .ok_or_else(not_found)?;
            Ok(json!({
                "Username": u.username, "UserAttributes": u.attributes_json(),
                "UserStatus": u.status, "Enabled": true,
                "UserCreateDate": u.created, "UserLastModifiedDate": u.modified,
            }))
        }
        "AdminCreateUser" => {
            let name = str_of(body, "Username").to_string();
            if body["MessageAction"] == "RESEND" {
                let u = p.users.get_mut(&name).ok_or_else(not_found)?;
                u.modified = now();
                return Ok(json!({"User": u.listed()}));
            }
            if p.users.contains_key(&name) {
                return Err((
                    "UsernameExistsException",
                    "User account already exists".into(),
                ));
            }
            let mut u = User::new(&name, "", "FORCE_CHANGE_PASSWORD");
            for a in body["UserAttributes"].as_array().into_iter().flatten() {
                u.attributes
                    .insert(str_of(a, "Name").into(), str_of(a, "Value").into());
            }
            let listed = u.listed();
            p.users.insert(name, u);
            Ok(json!({"User": listed}))
        }
        "AdminAddUserToGroup" => {
            let name = str_of(body, "Username").to_string();
            p.groups
                .entry(str_of(body, "GroupName").to_string())
                .or_default()
                .insert(name);
            Ok(json!({}))
        }
        "AdminSetUserPassword" | "AdminUpdateUserAttributes" => {
            let u = p
                .users
                .get_mut(str_of(body, "Username"))
                .ok_or_else(not_found)?;
            u.modified = now();
            Ok(json!({}))
        }
        other => Err((
            "InvalidParameterException",
            format!("{other} is not stood in for"),
        )),
    }
}

impl StandIn {
    /// Starts the stand-in on a free loopback port with the groups given.
    pub fn start(groups: &[&str]) -> StandIn {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let pool = Arc::new(Mutex::new(Pool::default()));
        for g in groups {
            pool.lock()
                .unwrap()
                .groups
                .insert(g.to_string(), BTreeSet::new());
        }
        let calls: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let std_listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (p, c) = (Arc::clone(&pool), Arc::clone(&calls));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (p, c) = (Arc::clone(&p), Arc::clone(&c));
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (p, c) = (Arc::clone(&p), Arc::clone(&c));
                        async move {
                            let target = req
                                .headers()
                                .get("x-amz-target")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .rsplit('.')
                                .next()
                                .unwrap_or_default()
                                .to_string();
                            let bytes = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body: Value = bytes
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or(Value::Null);
                            *c.lock().unwrap().entry(target.clone()).or_default() += 1;
                            let (status, out) = match answer(&p, &target, &body) {
                                Ok(v) => (200, v),
                                Err((code, message)) => {
                                    (400, json!({"__type": code, "message": message}))
                                }
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-amz-json-1.1")
                                    .body(Full::new(Bytes::from(out.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        StandIn {
            addr,
            pool,
            calls,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls received, by operation, since the last reset.
    pub fn calls(&self) -> HashMap<String, u64> {
        self.calls.lock().unwrap().clone()
    }

    pub fn reset_calls(&self) {
        self.calls.lock().unwrap().clear();
    }
}
