//! Test support shared by the integration tests and the benchmark: moto's server started on a
//! free loopback port and stopped by PID, a pool set up through the real SDK, and the binary run
//! with a clean environment. Every request that reaches moto goes through a proxy that checks
//! it against AWS's API models (`model.rs`, `proxy.rs`); nothing here may talk to moto's port
//! directly except through [`Moto::addr`], which is for proxies (they validate).
#![allow(dead_code)]

pub mod model;
pub mod prom;
pub mod proxy;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_cognitoidentityprovider as cip;
use cip::operation::create_user_pool::builders::CreateUserPoolFluentBuilder;
use cip::types::{
    AttributeType, AuthFlowType, ChallengeNameType, ExplicitAuthFlowsType, PasswordPolicyType,
    UserPoolPolicyType, UsernameAttributeType,
};

/// The project root (where `.venv` lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python (moto, PyYAML, openpyxl), or `MOTO_PYTHON`.
pub fn python() -> PathBuf {
    std::env::var_os("MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A moto server of our own, stopped (by PID) when dropped, behind a transparent proxy that
/// validates every request ([`Moto::url`]; [`Moto::front`] to reach it).
pub struct Moto {
    child: Child,
    /// moto's own port: for proxies only (see [`Moto::addr`]).
    pub port: u16,
    // Dropped after `Drop::drop` has stopped moto; its own drop panics over unexpected
    // violations.
    front: proxy::Proxy,
}

impl Moto {
    pub fn start() -> Moto {
        let py = python();
        assert!(
            py.exists(),
            "{} is missing: run `make venv` (make test does it for you)",
            py.display()
        );
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&py)
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    let front =
                        match proxy::Proxy::start_blocking(proxy::ProxyConfig::new(upstream)) {
                            Ok(front) => front,
                            Err(e) => {
                                let _ = child.kill();
                                let _ = child.wait();
                                panic!("start the validating proxy in front of moto: {e}");
                            }
                        };
                    return Moto { child, port, front };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto did not start");
    }

    /// The endpoint for clients: the validating proxy in front of moto.
    pub fn url(&self) -> String {
        self.front.url()
    }

    /// moto's own address, unvalidated: the upstream for a [`proxy::Proxy`] (which validates).
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The validating proxy behind [`Moto::url`], for `expect_invalid_requests` and
    /// `violations`.
    pub fn front(&self) -> &proxy::Proxy {
        &self.front
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pool policy of the data platform.
pub fn platform_policy() -> UserPoolPolicyType {
    UserPoolPolicyType::builder()
        .password_policy(
            PasswordPolicyType::builder()
                .minimum_length(8)
                .require_uppercase(true)
                .require_lowercase(true)
                .require_numbers(true)
                .require_symbols(true)
                .temporary_password_validity_days(7)
                .build(),
        )
        .build()
}

/// A pool plus an app client that allows admin password sign-in.
#[derive(Clone, Debug)]
pub struct Pool {
    pub id: String,
    pub client_id: String,
}

/// moto, an SDK client for it, a scratch directory, and the binary.
pub struct TestEnv {
    pub moto: Moto,
    pub rt: tokio::runtime::Runtime,
    pub client: cip::Client,
    pub dir: tempfile::TempDir,
    /// Where the binary sends requests (moto, or a proxy in front of it).
    pub endpoint: String,
}

pub fn sdk_client(rt: &tokio::runtime::Runtime, endpoint: &str) -> cip::Client {
    rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(endpoint)
            .credentials_provider(cip::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await;
        cip::Client::new(&config)
    })
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let moto = Moto::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let client = sdk_client(&rt, &moto.url());
        let endpoint = moto.url();
        TestEnv {
            moto,
            rt,
            client,
            dir: tempfile::tempdir().expect("tempdir"),
            endpoint,
        }
    }

    /// Puts a fault proxy between the binary and moto; the binary talks to it from now on.
    pub fn proxy(
        &mut self,
        configure: impl FnOnce(proxy::ProxyConfig) -> proxy::ProxyConfig,
    ) -> proxy::Proxy {
        let p = proxy::Proxy::start_blocking(configure(proxy::ProxyConfig::new(self.moto.addr())))
            .expect("start the fault proxy");
        self.endpoint = p.url();
        p
    }

    /// Moves every time the state database recorded back by `hours`, as if that much time had
    /// passed since.
    pub fn age_state(&self, hours: i64) {
        let conn = rusqlite::Connection::open(self.path("state.db")).expect("open state");
        let ms = hours * 3_600_000;
        conn.execute_batch(&format!(
            "UPDATE invitations SET intent_at = intent_at - {ms}, sent_at = sent_at - {ms};
             UPDATE users SET last_seen_at = last_seen_at - {ms}, confirmed_at = confirmed_at - {ms},
               confirmed_reported_at = confirmed_reported_at - {ms},
               last_read_at = last_read_at - {ms};
             UPDATE transitions SET observed_at = observed_at - {ms};
             UPDATE runs SET started_at = started_at - {ms}, finished_at = finished_at - {ms};"
        ))
        .expect("age the state");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write test file");
        p
    }

    /// A pool with the platform policy; `email_username`: email is the username attribute.
    pub fn pool(&self, email_username: bool, groups: &[&str]) -> Pool {
        self.pool_with(groups, |req| {
            if email_username {
                req.username_attributes(UsernameAttributeType::Email)
            } else {
                req
            }
        })
    }

    /// A pool with the platform policy, its CreateUserPool request set up further by
    /// `configure` (an invitation template, an email configuration, ...).
    pub fn pool_with(
        &self,
        groups: &[&str],
        configure: impl FnOnce(CreateUserPoolFluentBuilder) -> CreateUserPoolFluentBuilder,
    ) -> Pool {
        self.rt.block_on(async {
            let req = self
                .client
                .create_user_pool()
                .pool_name("providers")
                .policies(platform_policy());
            let pool = configure(req).send().await.expect("create pool");
            let id = pool
                .user_pool()
                .and_then(|p| p.id())
                .expect("pool id")
                .to_string();
            for g in groups {
                self.client
                    .create_group()
                    .user_pool_id(&id)
                    .group_name(*g)
                    .send()
                    .await
                    .expect("create group");
            }
            let app = self
                .client
                .create_user_pool_client()
                .user_pool_id(&id)
                .client_name("tests")
                .explicit_auth_flows(ExplicitAuthFlowsType::AllowAdminUserPasswordAuth)
                .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
                .send()
                .await
                .expect("create app client");
            let client_id = app
                .user_pool_client()
                .and_then(|c| c.client_id())
                .expect("client id")
                .to_string();
            Pool { id, client_id }
        })
    }

    /// The binary run against `pool` with `args`, to finish with `.run()` or `.expect(code)`
    /// (xsv's `Workdir::command`).
    pub fn command<I, S>(&self, pool: &Pool, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command_by_env(pool, ["--endpoint-url", &self.endpoint])
            .args(args)
    }

    /// The binary with a clean environment: dummy credentials, no AWS config files, our endpoint.
    pub fn cmd(&self, pool: &Pool) -> Command {
        let mut c = self.cmd_without_endpoint(pool);
        c.args(["--endpoint-url", &self.endpoint]);
        c
    }

    /// [`TestEnv::command`] without `--endpoint-url`: the test says where requests go with the
    /// SDK's variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, ...).
    pub fn command_by_env<I, S>(&self, pool: &Pool, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd_without_endpoint(pool);
        cmd.args(args);
        TestCommand { cmd }
    }

    fn cmd_without_endpoint(&self, pool: &Pool) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cognito-onboard"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("COGNITO_USER_POOL_ID", &pool.id)
            .env("COGNITO_ONBOARD_STATE", self.path("state.db"))
            .arg("--no-progress")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Onboards `csv` with `--delivery suppress` and returns the temporary passwords issued
    /// (username, password), so a test can sign providers in.
    pub fn onboard_suppressed(&self, pool: &Pool, csv: &Path) -> Vec<(String, String)> {
        let file = self.path("onboarded-passwords.csv");
        self.command(pool, ["run"])
            .arg(csv)
            .args(["--delivery", "suppress", "--password-file"])
            .arg(&file)
            .expect(cognito_onboard::error::exit::OK);
        passwords(&file)
    }

    /// Gives a user back the email moto's RESEND drops: moto re-creates the user on RESEND and
    /// loses its attributes, where the real Cognito keeps them (`shared/cognito-notes.md`).
    pub fn undo_moto_resend(&self, pool: &Pool, username: &str, email: &str) {
        self.set_attributes(
            pool,
            username,
            &[("email", email), ("email_verified", "true")],
        );
    }

    /// Writes `attributes` to a user directly in moto, as an administrator would.
    pub fn set_attributes(&self, pool: &Pool, username: &str, attributes: &[(&str, &str)]) {
        self.rt.block_on(async {
            let mut update = self
                .client
                .admin_update_user_attributes()
                .user_pool_id(&pool.id)
                .username(username);
            for (name, value) in attributes {
                update = update.user_attributes(
                    AttributeType::builder()
                        .name(*name)
                        .value(*value)
                        .build()
                        .expect("attribute"),
                );
            }
            update.send().await.expect("update the user's attributes");
        });
    }

    /// Creates `n` users directly in moto (no message, temporary password), `concurrency` at a
    /// time, named `{prefix}{i:06}@example.com`.
    pub fn populate(&self, pool: &Pool, prefix: &str, n: usize, concurrency: usize) {
        self.rt.block_on(async {
            let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let client = self.client.clone();
                let pool_id = pool.id.clone();
                let email = format!("{prefix}{i:06}@example.com");
                let permit = std::sync::Arc::clone(&semaphore)
                    .acquire_owned()
                    .await
                    .expect("permit");
                tasks.spawn(async move {
                    client
                        .admin_create_user()
                        .user_pool_id(pool_id)
                        .username(&email)
                        .temporary_password("Popul8-Passw0rd!")
                        .message_action(cip::types::MessageActionType::Suppress)
                        .user_attributes(
                            AttributeType::builder()
                                .name("email")
                                .value(&email)
                                .build()
                                .expect("attribute"),
                        )
                        .user_attributes(
                            AttributeType::builder()
                                .name("email_verified")
                                .value("true")
                                .build()
                                .expect("attribute"),
                        )
                        .send()
                        .await
                        .expect("populate");
                    drop(permit);
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("populate task");
            }
        })
    }

    pub fn users(&self, pool: &Pool) -> Vec<cip::types::UserType> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_users()
                    .user_pool_id(&pool.id)
                    .set_pagination_token(token)
                    .send()
                    .await
                    .expect("list users");
                out.extend(page.users().iter().cloned());
                match page.pagination_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => return out,
                }
            }
        })
    }

    pub fn get_user(
        &self,
        pool: &Pool,
        username: &str,
    ) -> Option<cip::operation::admin_get_user::AdminGetUserOutput> {
        self.rt.block_on(async {
            self.client
                .admin_get_user()
                .user_pool_id(&pool.id)
                .username(username)
                .send()
                .await
                .ok()
        })
    }

    pub fn group_members(&self, pool: &Pool, group: &str) -> Vec<String> {
        self.rt.block_on(async {
            let mut members = Vec::new();
            let mut token = None;
            loop {
                let out = self
                    .client
                    .list_users_in_group()
                    .user_pool_id(&pool.id)
                    .group_name(group)
                    .set_next_token(token)
                    .send()
                    .await
                    .expect("list users in group");
                members.extend(
                    out.users()
                        .iter()
                        .filter_map(|u| attr(u.attributes(), "email")),
                );
                match out.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => return members,
                }
            }
        })
    }

    /// Marks a user's email unverified, as an administrator or a changed address would.
    pub fn unverify_email(&self, pool: &Pool, username: &str) {
        self.set_attributes(pool, username, &[("email_verified", "false")]);
    }

    /// Signs in with a password: Ok(true) if Cognito asks for a new password (first sign-in),
    /// Ok(false) if it signs straight in, Err(code) if refused.
    pub fn sign_in(&self, pool: &Pool, username: &str, password: &str) -> Result<bool, String> {
        self.rt.block_on(async {
            let out = self
                .client
                .admin_initiate_auth()
                .user_pool_id(&pool.id)
                .client_id(&pool.client_id)
                .auth_flow(AuthFlowType::AdminUserPasswordAuth)
                .auth_parameters("USERNAME", username)
                .auth_parameters("PASSWORD", password)
                .send()
                .await
                .map_err(|e| {
                    use cip::error::ProvideErrorMetadata;
                    e.code().unwrap_or("no code").to_string()
                })?;
            Ok(out.challenge_name() == Some(&ChallengeNameType::NewPasswordRequired))
        })
    }

    /// The provider's first sign-in: temporary password, then a new one. The user is CONFIRMED after.
    pub fn complete_first_sign_in(&self, pool: &Pool, username: &str, temporary: &str, new: &str) {
        self.rt.block_on(async {
            let out = self
                .client
                .admin_initiate_auth()
                .user_pool_id(&pool.id)
                .client_id(&pool.client_id)
                .auth_flow(AuthFlowType::AdminUserPasswordAuth)
                .auth_parameters("USERNAME", username)
                .auth_parameters("PASSWORD", temporary)
                .send()
                .await
                .expect("sign in with the temporary password");
            assert_eq!(
                out.challenge_name(),
                Some(&ChallengeNameType::NewPasswordRequired)
            );
            self.client
                .admin_respond_to_auth_challenge()
                .user_pool_id(&pool.id)
                .client_id(&pool.client_id)
                .challenge_name(ChallengeNameType::NewPasswordRequired)
                .challenge_responses("USERNAME", username)
                .challenge_responses("NEW_PASSWORD", new)
                .set_session(out.session().map(str::to_string))
                .send()
                .await
                .expect("answer NEW_PASSWORD_REQUIRED");
        })
    }
}

/// `doctor --format json`'s providers, in order: (id, verdict, remedy).
pub fn doctor_verdicts(r: &Run) -> Vec<(String, String, String)> {
    let shown: serde_json::Value = serde_json::from_str(&r.stdout()).expect("JSON on stdout");
    shown
        .as_array()
        .expect("a list of providers")
        .iter()
        .map(|p| {
            let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (text("id"), text("verdict"), text("remedy"))
        })
        .collect()
}

pub fn attr(attrs: &[AttributeType], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.value())
        .map(str::to_string)
}

/// The binary with `args` and nothing but `PATH` in its environment: for what needs no pool,
/// such as `--help`.
pub fn binary<I, S>(args: I) -> TestCommand
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cognito-onboard"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(args)
        .stdin(Stdio::null());
    TestCommand { cmd }
}

/// A command line of the binary, built by `TestEnv::command` or `binary`.
pub struct TestCommand {
    cmd: Command,
}

impl TestCommand {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Runs in `dir` (another "machine": no file shared with the test's directory).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Runs to completion (with a time limit), whatever the exit code.
    pub fn run(self) -> Run {
        run(self.cmd)
    }

    /// Runs to completion and panics, showing the command, its status, stdout and stderr,
    /// unless it exits with `code` (one of `cognito_onboard::error::exit`).
    pub fn expect(self, code: u8) -> Run {
        let r = self.run();
        r.expect_code(code);
        r
    }

    /// Starts the binary in the background; its output is read as it comes.
    pub fn spawn(self) -> Running {
        spawn(self.cmd)
    }
}

/// The binary running in the background (`TestCommand::spawn`).
pub struct Running {
    child: Child,
    cmdline: String,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub fn finished(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_some()
    }

    pub fn kill(&mut self) {
        self.child.kill().expect("kill cognito-onboard");
    }

    /// Waits for it to exit (killing it after ten minutes).
    pub fn wait(mut self) -> Run {
        let deadline = Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().expect("wait after kill");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            output: Output {
                status,
                stdout: self.stdout.join().unwrap_or_default(),
                stderr: self.stderr.join().unwrap_or_default(),
            },
            cmdline: self.cmdline,
        }
    }
}

/// A finished run of the binary.
pub struct Run {
    pub output: Output,
    pub cmdline: String,
}

impl Run {
    /// The exit code, to compare with `cognito_onboard::error::exit`; `None` if killed by a
    /// signal.
    pub fn code(&self) -> Option<u8> {
        self.output
            .status
            .code()
            .map(|c| u8::try_from(c).expect("exit codes are 0..=255"))
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// Panics, showing the command, its status, stdout and stderr, unless the exit code is `want`.
    /// `want` is one of `cognito_onboard::error::exit`.
    pub fn expect_code(&self, want: u8) -> &Self {
        assert_eq!(
            self.code(),
            Some(want),
            "command: {}\nstatus: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmdline,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// The JSON report whose path the run printed on stdout.
    pub fn report(&self) -> serde_json::Value {
        let path = self
            .stdout()
            .lines()
            .rev()
            .find(|l| l.ends_with(".json"))
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "no report path on stdout\n{}\n{}",
                    self.stdout(),
                    self.stderr()
                )
            });
        read_json(&path)
    }
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read report"))
        .expect("report is JSON")
}

/// Runs a command to completion with a time limit.
pub fn run(cmd: Command) -> Run {
    spawn(cmd).wait()
}

/// Starts a command with its stdout and stderr read by threads of their own, so that it never
/// blocks on a full pipe.
pub fn spawn(mut cmd: Command) -> Running {
    let cmdline = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cognito-onboard");
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    Running {
        child,
        cmdline,
        stdout: std::thread::spawn(move || read_all(stdout)),
        stderr: std::thread::spawn(move || read_all(stderr)),
    }
}

fn read_all<R: std::io::Read>(r: Option<R>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let mut reader = BufReader::new(r);
        loop {
            let chunk = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(c) => c.to_vec(),
            };
            reader.consume(chunk.len());
            buf.extend(chunk);
        }
    }
    buf
}

/// Rows of a report with a given outcome.
pub fn rows_with(report: &serde_json::Value, outcome: &str) -> Vec<serde_json::Value> {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["outcome"] == outcome)
        .cloned()
        .collect()
}

/// username,temporary_password lines of a suppress-mode password file.
pub fn passwords(path: &Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(path).expect("password file");
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            (rec[0].to_string(), rec[1].to_string())
        })
        .collect()
}
