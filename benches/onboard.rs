//! `make bench`: the tool against moto through the project's fault proxy, which enforces
//! Cognito's quota table and adds a 30 ms round trip. Prints one table and writes
//! `bench/results.md`. Not a test: nothing here asserts on machine speed.
//!
//! BENCH_QUICK=1 runs small sizes (a smoke run of the harness itself).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "onboard/standin.rs"]
mod standin;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_cognitoidentityprovider as cip;
use support::proxy::{COGNITO_CATEGORIES, Proxy};
use support::*;

/// The share of each quota the tool uses by default.
const FRACTION: f64 = 0.8;
const RTT: Duration = Duration::from_millis(30);

struct Sizes {
    cohorts: Vec<usize>,
    repeats: usize,
    lookups: Vec<(usize, usize)>,
    check_rows: Vec<usize>,
    /// Workbooks are read whole (calamine), so they get their own, smaller sizes.
    check_workbook_rows: Vec<usize>,
    baseline_rows: usize,
    cli_rows: usize,
}

fn sizes() -> Sizes {
    if std::env::var_os("BENCH_QUICK").is_some() {
        Sizes {
            cohorts: vec![200, 500],
            repeats: 1,
            lookups: vec![(50, 2_000), (500, 700)],
            check_rows: vec![10_000, 100_000],
            check_workbook_rows: vec![1_000, 10_000],
            baseline_rows: 100,
            cli_rows: 20,
        }
    } else {
        Sizes {
            cohorts: vec![1_000, 5_000],
            repeats: 3,
            lookups: vec![(200, 20_000), (5_000, 6_000)],
            check_rows: vec![100_000, 1_000_000],
            check_workbook_rows: vec![10_000, 100_000],
            baseline_rows: 1_000,
            cli_rows: std::env::var("BENCH_CLI_ROWS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000),
        }
    }
}

/// What one process cost: wall time, CPU and peak memory, from wait4(2).
struct Measured {
    wall: Duration,
    cpu: Duration,
    max_rss_mb: f64,
    code: i32,
    stdout: String,
    /// The end of what it wrote on stderr, for a failure's message.
    stderr_tail: String,
}

// The child is reaped by wait4(2), which std's Child does not know about.
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command) -> Measured {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut out) = stdout {
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
        }
        s
    });
    // Read as it comes (a full pipe would stall the tool); only the end is kept.
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        if let Some(err) = stderr {
            for line in std::io::BufRead::lines(std::io::BufReader::new(err)).map_while(Result::ok)
            {
                tail.push_back(line);
                if tail.len() > 20 {
                    tail.pop_front();
                }
            }
        }
        Vec::from(tail).join("\n")
    });
    // The child's own peak memory. Not ru_maxrss: on Linux that also counts the parent's resident
    // size at fork, before exec, so it measures this harness, not the tool. VmHWM is a high-water
    // mark of the exec'd image; polled every 5 ms, the last reading misses at most the last 5 ms.
    let pid = child.id();
    let peak = std::thread::spawn(move || {
        let mut peak_kb = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            match status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                Some(v) => {
                    let kb = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak_kb = peak_kb.max(kb);
                }
                None => break,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak_kb
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, by its pid, with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let wall = started.elapsed();
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Measured {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_mb: peak.join().unwrap_or(0) as f64 / 1024.0,
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        stdout: reader.join().unwrap_or_default(),
        stderr_tail: errors.join().unwrap_or_default(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn quota_of(category: &str) -> f64 {
    COGNITO_CATEGORIES
        .iter()
        .find(|(c, _, _)| *c == category)
        .map(|(_, rate, _)| *rate)
        .unwrap_or(f64::INFINITY)
}

/// Calls that went through (not throttled) per category, from the proxy's own counters.
fn calls_by_category(proxy: &Proxy) -> BTreeMap<String, u64> {
    let stats = proxy.stats();
    COGNITO_CATEGORIES
        .iter()
        .map(|(c, _, _)| (c.to_string(), stats.received_in(c) - stats.throttled_in(c)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The quota's own speed limit: max over categories of calls / configured rate.
fn bound(calls: &BTreeMap<String, u64>) -> (f64, String) {
    calls
        .iter()
        .map(|(c, n)| (*n as f64 / (quota_of(c) * FRACTION), c.clone()))
        .fold((0.0, String::new()), |a, b| if b.0 > a.0 { b } else { a })
}

fn cohort_csv(path: &Path, n: usize, prefix: &str) {
    let mut s = String::with_capacity(n * 48);
    s.push_str("email,name,groups\n");
    for i in 0..n {
        let group = if i % 2 == 0 { "providers" } else { "" };
        let _ = writeln!(s, "{prefix}{i:06}@example.com,Provider {i},{group}");
    }
    std::fs::write(path, s).expect("write cohort");
}

fn settings(env: &TestEnv) -> String {
    env.write("bench.toml", "email_budget = 10000000\n")
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// A fresh moto, a free-form pool with one group, and the quota-enforcing proxy.
///
/// Free-form usernames: moto resolves email-as-username users by scanning the whole pool on
/// every call, which would make moto, not the quotas, the bottleneck at thousands of users.
fn fresh() -> (TestEnv, Pool, Proxy) {
    let mut env = TestEnv::new();
    let pool = env.pool(false, &["providers"]);
    let proxy = env.proxy(|c| c.cognito_default_quotas().latency(RTT));
    (env, pool, proxy)
}

struct Efficiency {
    label: String,
    rows: usize,
    wall: f64,
    bound: f64,
    busiest: String,
    failed: u64,
    calls: u64,
    cpu: f64,
}

fn run_tool(env: &TestEnv, pool: &Pool, args: &[&str]) -> (Measured, serde_json::Value) {
    let config = settings(env);
    let mut cmd = env.cmd(pool);
    cmd.args(["--config", &config]).args(args);
    let m = measure(cmd);
    let report = m
        .stdout
        .lines()
        .rev()
        .find(|l| l.ends_with(".json"))
        .map(|p| read_json(Path::new(p)))
        .unwrap_or(serde_json::Value::Null);
    (m, report)
}

/// One `status` refresh of every provider the tool onboarded.
struct StatusCost {
    providers: usize,
    refresh: String,
    quota_seconds: f64,
    calls: u64,
    wall: f64,
}

fn efficiency(n: usize, repeats: usize) -> (Vec<Efficiency>, Vec<Efficiency>, Option<StatusCost>) {
    let mut new_runs = Vec::new();
    let mut reruns = Vec::new();
    let mut status_cost = None;
    for _ in 0..repeats {
        let (env, pool, proxy) = fresh();
        let csv = env.path("cohort.csv");
        cohort_csv(&csv, n, "provider");
        let csv = csv.to_str().unwrap().to_string();
        for (label, out) in [("new", &mut new_runs), ("re-run", &mut reruns)] {
            proxy.reset_stats();
            let (m, report) = run_tool(&env, &pool, &["run", &csv]);
            let calls = calls_by_category(&proxy);
            let (b, busiest) = bound(&calls);
            out.push(Efficiency {
                label: format!("{n} {label}"),
                rows: n,
                wall: m.wall.as_secs_f64(),
                bound: b,
                busiest,
                failed: report["summary"]["failed"].as_u64().unwrap_or(u64::MAX),
                calls: calls.values().sum(),
                cpu: m.cpu.as_secs_f64(),
            });
            eprintln!(
                "  {n} {label}: exit {} wall {:.1}s bound {b:.1}s calls {calls:?}",
                m.code,
                m.wall.as_secs_f64()
            );
        }
        if status_cost.is_none() {
            proxy.reset_stats();
            let (m, report) = run_tool(&env, &pool, &["status"]);
            status_cost = Some(StatusCost {
                providers: report["rows"].as_array().map(Vec::len).unwrap_or(0),
                refresh: report["refresh"].as_str().unwrap_or("?").to_string(),
                quota_seconds: report["quota_seconds"].as_f64().unwrap_or(f64::NAN),
                calls: calls_by_category(&proxy).values().sum(),
                wall: m.wall.as_secs_f64(),
            });
        }
    }
    (new_runs, reruns, status_cost)
}

fn summarize(runs: &[Efficiency]) -> Efficiency {
    let first = &runs[0];
    Efficiency {
        label: first.label.clone(),
        rows: first.rows,
        wall: median(runs.iter().map(|r| r.wall).collect()),
        bound: median(runs.iter().map(|r| r.bound).collect()),
        busiest: first.busiest.clone(),
        failed: runs.iter().map(|r| r.failed).max().unwrap_or(0),
        calls: median(runs.iter().map(|r| r.calls as f64).collect()) as u64,
        cpu: median(runs.iter().map(|r| r.cpu).collect()),
    }
}

struct LookupRow {
    cohort: usize,
    pool: usize,
    chosen: String,
    get_qs: f64,
    scan_qs: f64,
}

fn lookups(cohort: usize, pool_size: usize) -> LookupRow {
    let (env, pool, proxy) = fresh();
    env.populate(&pool, "member", pool_size, 16);
    let csv = env.path("cohort.csv");
    // The cohort: existing members spread over the pool.
    let step = (pool_size / cohort).max(1);
    let mut s = String::from("email\n");
    for i in 0..cohort {
        let _ = writeln!(s, "member{:06}@example.com", (i * step) % pool_size);
    }
    std::fs::write(&csv, s).expect("cohort");
    let csv = csv.to_str().unwrap().to_string();
    let mut qs = BTreeMap::new();
    for strategy in ["get", "scan"] {
        proxy.reset_stats();
        let (m, _) = run_tool(
            &env,
            &pool,
            &["run", &csv, "--dry-run", "--lookup", strategy],
        );
        let calls = calls_by_category(&proxy);
        let spent: f64 = ["UserRead", "UserList"]
            .iter()
            .map(|c| *calls.get(*c).unwrap_or(&0) as f64 / quota_of(c))
            .sum();
        eprintln!(
            "  lookup {cohort} in {pool_size} by {strategy}: exit {} {spent:.2} qs",
            m.code
        );
        qs.insert(strategy, spent);
    }
    proxy.reset_stats();
    let mut cmd = env.cmd(&pool);
    cmd.args(["--config", &settings(&env), "run", &csv, "--dry-run"]);
    cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    let out = cmd.output().expect("auto run");
    let log = String::from_utf8_lossy(&out.stderr);
    let chosen = if log.contains("ListUsers scan") {
        "scan"
    } else {
        "get"
    };
    LookupRow {
        cohort,
        pool: pool_size,
        chosen: chosen.to_string(),
        get_qs: qs["get"],
        scan_qs: qs["scan"],
    }
}

struct MemoryRow {
    format: &'static str,
    rows: usize,
    wall: f64,
    rss_mb: f64,
}

/// A CSV of `rows` providers (made once, kept in bench/work).
fn csv_of(rows: usize, work: &Path) -> PathBuf {
    let path = work.join(format!("check-{rows}.csv"));
    if !path.exists() {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("csv"));
        use std::io::Write;
        writeln!(f, "email,name,family_name,given_name,locale,groups").unwrap();
        for i in 0..rows {
            writeln!(
                f,
                "provider{i:08}@example.com,山田 太郎 {i},山田,太郎,ja,providers"
            )
            .unwrap();
        }
    }
    path
}

/// The same providers in an .xlsx, written by the project's script (openpyxl from the venv).
fn workbook_of(rows: usize, work: &Path) -> PathBuf {
    let path = work.join(format!("check-{rows}.xlsx"));
    if !path.exists() {
        let status = Command::new(root().join(".venv/bin/python"))
            .arg(root().join("scripts/big_workbook.py"))
            .arg(rows.to_string())
            .arg(&path)
            .status()
            .expect("scripts/big_workbook.py");
        assert!(status.success(), "scripts/big_workbook.py {rows} failed");
    }
    path
}

/// `check` of `path` (which holds `rows` valid rows), three times: the medians.
fn memory(format: &'static str, rows: usize, path: &Path) -> MemoryRow {
    let mut walls = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..3 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cognito-onboard"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args(["--no-progress", "check"])
            .arg(path);
        let m = measure(cmd);
        assert_eq!(m.code, 0, "check failed on {}", path.display());
        walls.push(m.wall.as_secs_f64());
        rss.push(m.max_rss_mb);
    }
    MemoryRow {
        format,
        rows,
        wall: median(walls),
        rss_mb: median(rss),
    }
}

fn memory_rows(sizes: &Sizes, work: &Path) -> Vec<MemoryRow> {
    let csv = sizes
        .check_rows
        .iter()
        .map(|n| memory("CSV", *n, &csv_of(*n, work)));
    let xlsx = sizes
        .check_workbook_rows
        .iter()
        .map(|n| memory("xlsx", *n, &workbook_of(*n, work)));
    csv.chain(xlsx).collect()
}

const MEMORY_HEADER: &str = "| input | rows | wall (s) | peak RSS (MB) |\n|---|---|---|---|";

fn memory_line(m: &MemoryRow) -> String {
    format!(
        "| {} | {} | {:.2} | {:.1} |",
        m.format, m.rows, m.wall, m.rss_mb
    )
}

/// The tool against the in-memory stand-in, with every quota set far above what it can use:
/// what the tool itself costs at scale.
struct Scale {
    rows: Vec<String>,
}

fn standin_settings(work: &Path) -> PathBuf {
    let path = work.join("standin.toml");
    let write = |names: &[&str]| {
        let mut s = String::from("use_provisioned_limits = false\nrate_fraction = 1.0\n[quotas]\n");
        for name in names {
            let _ = writeln!(s, "{name} = 100000");
        }
        std::fs::write(&path, s).expect("settings");
    };
    let names: Vec<&str> = cognito_onboard::limiter::Category::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    write(&names);
    // An older build (the "before" table's) refuses a category it does not know, and says
    // which it does: the file keeps those.
    if BEFORE.lock().unwrap().is_some() {
        let probe = Command::new(tool_bin())
            .arg("--config")
            .arg(&path)
            .args(["check", "/dev/null"])
            .output()
            .expect("run the older build");
        let said = String::from_utf8_lossy(&probe.stderr);
        if let Some(known) = said.split("expected one of ").nth(1) {
            let known: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| known.contains(&format!("`{n}`")))
                .collect();
            write(&known);
        }
    }
    path
}

fn standin_cmd(standin: &standin::StandIn, work: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = tool_cmd(work, state, &standin_settings(work));
    cmd.args(["--endpoint-url", &standin.url(), "--no-progress"])
        .args(args);
    cmd
}

/// The build of the tool `BENCH_BEFORE_BIN` swaps in for the "before" table while it runs.
static BEFORE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// The tool's binary: this build, or `BENCH_BIN` (another build of the tool, an older commit's,
/// for a before-and-after table), or the "before" build while its table is measured.
fn tool_bin() -> PathBuf {
    if let Some(before) = BEFORE.lock().unwrap().clone() {
        return before;
    }
    std::env::var_os("BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cognito-onboard")))
}

/// The scale section at its first size, run with another build (`BENCH_BEFORE_BIN`): the
/// "before" of a before-and-after table, measured by the same harness on the same machine.
fn scale_before(sizes: &[usize], work: &Path) -> Option<(String, Scale)> {
    let bin = PathBuf::from(std::env::var_os("BENCH_BEFORE_BIN")?);
    let label = std::env::var("BENCH_BEFORE_LABEL").unwrap_or_else(|_| bin.display().to_string());
    *BEFORE.lock().unwrap() = Some(bin);
    // Without the DynamoDB step: moto takes most of an hour over an older build's reads.
    let before = scale_with(&sizes[..1], &[], work, false);
    *BEFORE.lock().unwrap() = None;
    Some((label, before))
}

/// The tool with `settings` and `state`, before its endpoints and arguments.
fn tool_cmd(work: &Path, state: &Path, settings: &Path) -> Command {
    let bin = tool_bin();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("COGNITO_USER_POOL_ID", standin::POOL_ID)
        .current_dir(work)
        .arg("--config")
        .arg(settings)
        .arg("--state")
        .arg(state);
    cmd
}

/// Quota-seconds of the stand-in's call counts at Cognito's default quotas.
fn quota_seconds(calls: &std::collections::HashMap<String, u64>) -> f64 {
    calls
        .iter()
        .map(|(op, n)| support::proxy::category_of(op).map_or(0.0, |c| *n as f64 / quota_of(c)))
        .sum()
}

fn total(calls: &std::collections::HashMap<String, u64>) -> u64 {
    calls.values().sum()
}

fn scale(new_rows: &[usize], dry_rows: &[usize], work: &Path) -> Scale {
    let dynamodb = std::env::var("BENCH_DYNAMODB").as_deref() != Ok("0");
    scale_with(new_rows, dry_rows, work, dynamodb)
}

/// [`scale`], with the DynamoDB step or without.
fn scale_with(new_rows: &[usize], dry_rows: &[usize], work: &Path, dynamodb: bool) -> Scale {
    let mut out = Vec::new();
    let dir = work.join("scale");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scale dir");
    let standin = standin::StandIn::start(&["providers"]);

    // Dry runs over big new cohorts against an empty pool: the tool's memory as rows stream.
    for n in dry_rows {
        let csv = dir.join(format!("dry-{n}.csv"));
        cohort_csv(&csv, *n, "dry");
        let cmd = || {
            standin_cmd(
                &standin,
                &dir,
                &dir.join("dry.db"),
                &["run", csv.to_str().unwrap(), "--dry-run"],
            )
        };
        let m = measure(cmd());
        if m.code != 0 {
            let out = cmd().output().expect("run again");
            panic!(
                "dry run of {n} rows failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.push(format!(
            "| dry run, {n} new rows, empty pool | {:.1} | {:.1} | {:.1} | | |",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.max_rss_mb
        ));
    }

    // New cohorts created for real: CPU per call, then `status` over what they left in the
    // state. Each size has a pool of its own; the first goes on to the re-runs below.
    let mut first = None;
    for (i, n) in new_rows.iter().enumerate() {
        let standin = standin::StandIn::start(&["providers"]);
        let csv = dir.join(format!("new-{n}.csv"));
        cohort_csv(&csv, *n, "p");
        let state = dir.join(format!("state-{n}.db"));
        let pw = dir.join(format!("passwords-{n}.csv"));
        let _ = std::fs::remove_file(&pw);
        let m = measure(standin_cmd(
            &standin,
            &dir,
            &state,
            &[
                "run",
                csv.to_str().unwrap(),
                "--delivery",
                "suppress",
                "--password-file",
                pw.to_str().unwrap(),
            ],
        ));
        assert_eq!(m.code, 0, "the run of {n} new rows failed");
        let calls = total(&standin.calls());
        out.push(format!(
            "| run, {n} new rows | {:.1} | {:.1} | {:.1} | {calls} | {:.3} |",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.max_rss_mb,
            m.cpu.as_secs_f64() * 1000.0 / calls as f64
        ));
        let size_mb = std::fs::metadata(&state).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
        let m = measure(standin_cmd(&standin, &dir, &state, &["status"]));
        assert_eq!(m.code, 0, "status failed");
        out.push(format!(
            "| status, {n} tracked providers (state file {size_mb:.1} MB) | {:.1} | {:.1} | {:.1} | | |",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.max_rss_mb
        ));
        if i == 0 {
            first = Some((standin, csv, state, *n));
        }
    }
    let (standin, csv, state, new_rows) = first.expect("a cohort size");

    // 95% of them sign in; one run sees it; then the hourly re-run over the unchanged CSV.
    {
        let mut pool = standin.pool.lock().unwrap();
        for (i, u) in pool.users.values_mut().enumerate() {
            if i % 20 != 0 {
                u.status = "CONFIRMED";
            }
        }
    }
    // The sequence of issue 24: the first `status` after the sign-ins (the state last saw
    // everyone pending), `status --all`, the first `run` after them, then the hourly re-run.
    // `optional`: a run with an option an older build (BENCH_BIN) may lack.
    let mut step = |label: String, args: &[&str], optional: bool| {
        standin.reset_calls();
        let m = measure(standin_cmd(&standin, &dir, &state, args));
        if m.code != 0 && optional {
            out.push(format!(
                "| {label} | (not supported by this build) | | | | |"
            ));
            return;
        }
        assert_eq!(m.code, 0, "{label} failed");
        let calls = standin.calls();
        out.push(format!(
            "| {label} | {:.1} | {:.1} | {:.1} | {} | quota-seconds {:.2} |",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.max_rss_mb,
            total(&calls),
            quota_seconds(&calls)
        ));
    };
    let csv = csv.to_str().unwrap();
    step(
        format!("status, the first after 95% of {new_rows} signed in"),
        &["status"],
        false,
    );
    step(
        format!("status --all, {new_rows} tracked"),
        &["status", "--all"],
        false,
    );
    step(
        format!("status FILE, the {new_rows}-row CSV"),
        &["status", csv],
        false,
    );
    step(
        format!("run, the first after that status, {new_rows} rows"),
        &["run", csv],
        false,
    );
    step(
        format!("re-run, {new_rows} unchanged rows, 95% confirmed"),
        &["run", csv],
        true,
    );
    step(
        format!("re-run, {new_rows} rows, 95% confirmed, --refresh full"),
        &["run", csv, "--refresh", "full"],
        true,
    );
    // The same state in a DynamoDB table (moto's, behind the validating proxy), and the same
    // re-run over it: `BENCH_DYNAMODB=0` leaves it out.
    if dynamodb {
        out.extend(dynamodb_rerun(&standin, &dir, &state, csv, new_rows));
    }
    let pending = new_rows.div_ceil(20) as f64;
    out.push(format!(
        "| (pending-only cost: one filtered listing of {pending} users) | | | | {} | quota-seconds {:.2} |",
        (pending / 60.0).ceil() + 4.0,
        (pending / 60.0).ceil() / quota_of("UserList")
    ));
    Scale { rows: out }
}

/// The re-run over an unchanged CSV with the state in DynamoDB (moto's server, behind the
/// validating proxy; the stand-in answers for Cognito): the SQLite state is imported into a new
/// table, then the run is measured as on SQLite.
fn dynamodb_rerun(
    standin: &standin::StandIn,
    dir: &Path,
    sqlite_state: &Path,
    csv: &str,
    rows: usize,
) -> Vec<String> {
    let moto = Moto::start();
    // Cognito's calls to the stand-in, the state's to moto, which answers a page of a large
    // partition in seconds (the tool's 10 s attempt timeout is for DynamoDB).
    let settings = dir.join("standin-moto.toml");
    let quotas = std::fs::read_to_string(standin_settings(dir)).expect("settings");
    std::fs::write(&settings, format!("attempt_timeout_secs = 300\n{quotas}")).expect("settings");
    let on_dynamodb = |args: &[&str]| {
        let mut cmd = tool_cmd(dir, Path::new("dynamodb://bench-state"), &settings);
        cmd.env("AWS_ENDPOINT_URL", standin.url())
            .env("AWS_ENDPOINT_URL_DYNAMODB", moto.url())
            .arg("--no-progress")
            .args(args);
        cmd
    };
    let init = measure(on_dynamodb(&["state", "init"]));
    assert_eq!(
        init.code, 0,
        "state init on moto failed: {}",
        init.stderr_tail
    );
    let started = Instant::now();
    let import = measure(on_dynamodb(&[
        "state",
        "import",
        sqlite_state.to_str().unwrap(),
    ]));
    assert_eq!(
        import.code, 0,
        "state import into moto failed: {}",
        import.stderr_tail
    );
    eprintln!(
        "  imported {rows} providers' state into moto's DynamoDB in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // One run: moto reads a partition item by item for every page (minutes at this size).
    standin.reset_calls();
    let m = measure(on_dynamodb(&["run", csv]));
    assert_eq!(
        m.code, 0,
        "the re-run on DynamoDB failed: {}",
        m.stderr_tail
    );
    let calls = standin.calls();
    vec![format!(
        "| re-run, {rows} unchanged rows, state in DynamoDB (moto) | {:.1} | {:.1} | {:.1} | {} | quota-seconds {:.2} |",
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        m.max_rss_mb,
        total(&calls),
        quota_seconds(&calls)
    )]
}

/// A shell loop of `aws cognito-idp admin-create-user` (and add-to-group), as people write it.
fn cli_baseline(rows: usize) -> f64 {
    let (env, pool, _proxy) = fresh();
    let csv = env.path("cohort.csv");
    cohort_csv(&csv, rows, "cli");
    let aws = root().join(".venv/bin/aws");
    let script = format!(
        r#"set -e
tail -n +2 "{csv}" | while IFS=, read -r email name group; do
  "{aws}" cognito-idp admin-create-user --user-pool-id "$POOL" --username "$email" \
    --user-attributes Name=email,Value="$email" Name=email_verified,Value=true \
    --temporary-password 'Baseline-Passw0rd!' --desired-delivery-mediums EMAIL >/dev/null
  if [ -n "$group" ]; then
    "{aws}" cognito-idp admin-add-user-to-group --user-pool-id "$POOL" --username "$email" --group-name "$group"
  fi
done"#,
        csv = csv.display(),
        aws = aws.display()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .env("POOL", &pool.id)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .env("AWS_ENDPOINT_URL", &env.endpoint)
        .env("HOME", env.dir.path());
    let m = measure(cmd);
    eprintln!(
        "  AWS CLI loop, {rows} rows: exit {} wall {:.1}s",
        m.code,
        m.wall.as_secs_f64()
    );
    let created = env.users(&pool).len();
    created as f64 / m.wall.as_secs_f64()
}

/// The usual script: a sequential SDK loop, default retries, no limiter.
fn sdk_baseline(rows: usize) -> f64 {
    let (env, pool, _proxy) = fresh();
    let client = sdk_client(&env.rt, &env.endpoint);
    let started = Instant::now();
    env.rt.block_on(async {
        for i in 0..rows {
            let email = format!("sdk{i:06}@example.com");
            let attr = |n: &str, v: &str| {
                cip::types::AttributeType::builder()
                    .name(n)
                    .value(v)
                    .build()
                    .expect("attr")
            };
            let created = client
                .admin_create_user()
                .user_pool_id(&pool.id)
                .username(&email)
                .user_attributes(attr("email", &email))
                .user_attributes(attr("email_verified", "true"))
                .temporary_password("Baseline-Passw0rd!")
                .desired_delivery_mediums(cip::types::DeliveryMediumType::Email)
                .send()
                .await;
            if created.is_ok() && i % 2 == 0 {
                let _ = client
                    .admin_add_user_to_group()
                    .user_pool_id(&pool.id)
                    .username(&email)
                    .group_name("providers")
                    .send()
                    .await;
            }
        }
    });
    let wall = started.elapsed().as_secs_f64();
    let created = env.users(&pool).len();
    eprintln!("  SDK loop, {rows} rows: {created} created in {wall:.1}s");
    created as f64 / wall
}

/// The SDK's own floor, in a process of its own (so that its CPU is measured as the tool's
/// is): the calls the tool makes for a new cohort (AdminCreateUser with SUPPRESS for every
/// row, AdminAddUserToGroup for every second, as `cohort_csv` writes them), with the client
/// built as the tool builds it (SDK retries, stalled-stream protection off; a 10 s attempt
/// timeout), on a current-thread runtime, `concurrency` rows in flight. No limiter, executor,
/// state, report or input: what is left is the SDK and the HTTP stack.
fn floor_child(endpoint: &str, rows: usize, concurrency: usize) {
    use aws_config::retry::RetryConfig;
    use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
    use aws_config::timeout::TimeoutConfig;
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            )
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(endpoint)
            .load()
            .await;
        let client = cip::Client::new(&config);
        let attr = |n: &str, v: &str| {
            cip::types::AttributeType::builder()
                .name(n)
                .value(v)
                .build()
                .expect("attr")
        };
        futures_util::stream::iter(0..rows)
            .for_each_concurrent(concurrency, |i| {
                let (client, attr) = (&client, &attr);
                async move {
                    let email = format!("floor{i:06}@example.com");
                    let created = client
                        .admin_create_user()
                        .user_pool_id(standin::POOL_ID)
                        .username(&email)
                        .user_attributes(attr("email", &email))
                        .user_attributes(attr("email_verified", "true"))
                        .user_attributes(attr("name", &format!("Provider {i}")))
                        .temporary_password("Floor-Passw0rd!")
                        .message_action(cip::types::MessageActionType::Suppress)
                        .send()
                        .await;
                    assert!(created.is_ok(), "create {i}: {created:?}");
                    if i % 2 == 0 {
                        client
                            .admin_add_user_to_group()
                            .user_pool_id(standin::POOL_ID)
                            .username(&email)
                            .group_name("providers")
                            .send()
                            .await
                            .expect("add to group");
                    }
                }
            })
            .await;
    });
}

/// The floor beside the tool for a new cohort of `rows` against a fresh stand-in each: wall,
/// CPU and calls, and the tool's CPU per call over the floor's.
fn floor(rows: usize, work: &Path) -> Vec<String> {
    let dir = work.join("floor");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("floor dir");
    let concurrency = 64;
    let floor_standin = standin::StandIn::start(&["providers"]);
    let mut cmd = Command::new(std::env::current_exe().expect("the bench's own path"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "BENCH_FLOOR_CHILD",
            format!("{}|{rows}|{concurrency}", floor_standin.url()),
        );
    let f = measure(cmd);
    assert_eq!(f.code, 0, "the floor's loop failed");
    let f_calls = total(&floor_standin.calls());
    let tool_standin = standin::StandIn::start(&["providers"]);
    let csv = dir.join(format!("floor-{rows}.csv"));
    cohort_csv(&csv, rows, "p");
    let pw = dir.join("passwords.csv");
    let t = measure(standin_cmd(
        &tool_standin,
        &dir,
        &dir.join("state.db"),
        &[
            "run",
            csv.to_str().unwrap(),
            "--delivery",
            "suppress",
            "--password-file",
            pw.to_str().unwrap(),
            "--concurrency",
            &concurrency.to_string(),
        ],
    ));
    assert_eq!(t.code, 0, "the tool's run failed");
    let t_calls = total(&tool_standin.calls());
    let per = |m: &Measured, calls: u64| m.cpu.as_secs_f64() * 1000.0 / calls.max(1) as f64;
    vec![
        format!(
            "| SDK floor: the same calls in a bare loop, {rows} rows, {concurrency} in flight | {:.1} | {:.1} | {:.1} | {f_calls} | {:.3} |",
            f.wall.as_secs_f64(),
            f.cpu.as_secs_f64(),
            f.max_rss_mb,
            per(&f, f_calls)
        ),
        format!(
            "| the tool: run, {rows} new rows, {concurrency} in flight (x{:.2} the floor's CPU per call) | {:.1} | {:.1} | {:.1} | {t_calls} | {:.3} |",
            per(&t, t_calls) / per(&f, f_calls),
            t.wall.as_secs_f64(),
            t.cpu.as_secs_f64(),
            t.max_rss_mb,
            per(&t, t_calls)
        ),
    ]
}

fn main() {
    if let Ok(spec) = std::env::var("BENCH_FLOOR_CHILD") {
        let mut parts = spec.split('|');
        let endpoint = parts.next().expect("endpoint").to_string();
        let rows = parts.next().and_then(|n| n.parse().ok()).expect("rows");
        let concurrency = parts
            .next()
            .and_then(|n| n.parse().ok())
            .expect("concurrency");
        floor_child(&endpoint, rows, concurrency);
        return;
    }
    // `cargo test --all-targets` runs harness-less benches too; only `cargo bench` passes --bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/onboard.rs: run it with `make bench` (cargo bench --bench onboard)");
        return;
    }
    let sizes = sizes();
    // BENCH_WORK=DIR: where the sections keep their files (two sections at once need two).
    let work = std::env::var_os("BENCH_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("bench/work"));
    std::fs::create_dir_all(&work).expect("bench/work");
    // BENCH_SCALE=100000,1000000: the scale section's cohort sizes.
    let chosen: Option<Vec<usize>> = std::env::var("BENCH_SCALE")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let (scale_new, scale_dry) = if let Some(sizes) = chosen.filter(|s| !s.is_empty()) {
        (sizes.clone(), sizes)
    } else if std::env::var_os("BENCH_QUICK").is_some() {
        (vec![10_000, 100_000], vec![10_000, 100_000])
    } else {
        (vec![100_000, 1_000_000], vec![100_000, 1_000_000])
    };
    if std::env::var("BENCH_ONLY").as_deref() == Ok("efficiency") {
        println!("| cohort | wall (s) | bound (s) | wall / bound | target 1.02 x bound + 1 s |");
        println!("|---|---|---|---|---|");
        for n in &sizes.cohorts {
            let (new_runs, _, _) = efficiency(*n, 1);
            let e = summarize(&new_runs);
            let target = 1.02 * e.bound + 1.0;
            println!(
                "| {} | {:.1} | {:.1} | {:.3} | {:.1} ({}) |",
                e.label,
                e.wall,
                e.bound,
                e.wall / e.bound.max(1e-9),
                target,
                if e.wall <= target { "met" } else { "missed" }
            );
        }
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("scale") {
        if let Some((label, before)) = scale_before(&scale_new, &work) {
            println!("before ({label}):\n{SCALE_HEADER}");
            for row in &before.rows {
                println!("{row}");
            }
            println!("\nafter (this build):");
        }
        let s = scale(&scale_new, &scale_dry, &work);
        println!("{SCALE_HEADER}");
        for row in &s.rows {
            println!("{row}");
        }
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("floor") {
        let rows = if std::env::var_os("BENCH_QUICK").is_some() {
            10_000
        } else {
            100_000
        };
        println!("{SCALE_HEADER}");
        for row in floor(rows, &work) {
            println!("{row}");
        }
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("memory") {
        println!("{MEMORY_HEADER}");
        for m in memory_rows(&sizes, &work) {
            println!("{}", memory_line(&m));
        }
        return;
    }
    let started = Instant::now();

    eprintln!("quota efficiency");
    let mut eff = Vec::new();
    let mut status_costs = Vec::new();
    let mut tool_users_per_second = None;
    for (i, n) in sizes.cohorts.iter().enumerate() {
        let repeats = if i == 0 { sizes.repeats } else { 1 };
        let (new_runs, reruns, status_cost) = efficiency(*n, repeats);
        status_costs.extend(status_cost);
        let new = summarize(&new_runs);
        if *n == sizes.baseline_rows || tool_users_per_second.is_none() {
            tool_users_per_second = Some(new.rows as f64 / new.wall);
        }
        eff.push(new);
        eff.push(summarize(&reruns));
    }

    eprintln!("lookup strategy");
    let lookup_rows: Vec<LookupRow> = sizes.lookups.iter().map(|(c, p)| lookups(*c, *p)).collect();

    eprintln!("memory");
    let memory_rows = memory_rows(&sizes, &work);

    eprintln!("baselines");
    let sdk = sdk_baseline(sizes.baseline_rows);
    let cli = cli_baseline(sizes.cli_rows);

    eprintln!("scale (in-memory stand-in)");
    let before = scale_before(&scale_new, &work);
    let mut scaled = scale(&scale_new, &scale_dry, &work);
    eprintln!("the SDK's floor (in-memory stand-in)");
    scaled.rows.extend(floor(scale_new[0], &work));

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# cognito-onboard benchmark\n\nmoto {} behind the project's proxy (Cognito's default quotas, {} ms added round trip); \
         the tool at its default rate fraction {FRACTION}; {} cores; {}.\n",
        moto_version(),
        RTT.as_millis(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        chrono_like_now()
    );
    let _ = writeln!(
        md,
        "## Quota efficiency (new cohorts: half the rows with one group)\n"
    );
    let _ = writeln!(
        md,
        "| cohort | wall (s) | bound max_k(C_k/r_k) (s) | busiest category | wall / bound | target 1.02 x bound + 1 s | rows failed | calls | CPU s per 1,000 calls |\n|---|---|---|---|---|---|---|---|---|"
    );
    for e in &eff {
        let target = 1.02 * e.bound + 1.0;
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {} | {:.3} | {:.1} ({}) | {} | {} | {:.3} |",
            e.label,
            e.wall,
            e.bound,
            e.busiest,
            e.wall / e.bound.max(1e-9),
            target,
            if e.wall <= target { "met" } else { "missed" },
            e.failed,
            e.calls,
            e.cpu / (e.calls.max(1) as f64 / 1000.0)
        );
    }
    let _ = writeln!(
        md,
        "\n## `status` refresh of every onboarded provider (pool of the same size)\n"
    );
    let _ = writeln!(
        md,
        "| providers | strategy | quota-seconds | calls | wall (s) |\n|---|---|---|---|---|"
    );
    for s in &status_costs {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {} | {:.1} |",
            s.providers, s.refresh, s.quota_seconds, s.calls, s.wall
        );
    }
    let _ = writeln!(
        md,
        "\n## Lookup strategy (quota-seconds spent reading the cohort's users)\n"
    );
    let _ = writeln!(
        md,
        "| cohort | pool | AdminGetUser per row | ListUsers scan | auto chose | chosen / other |\n|---|---|---|---|---|---|"
    );
    for l in &lookup_rows {
        let (chosen, other) = if l.chosen == "scan" {
            (l.scan_qs, l.get_qs)
        } else {
            (l.get_qs, l.scan_qs)
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {} | {:.2} |",
            l.cohort,
            l.pool,
            l.get_qs,
            l.scan_qs,
            l.chosen,
            chosen / other.max(1e-9)
        );
    }
    let _ = writeln!(
        md,
        "\n## Memory and speed of `check` (a CSV's rows stream; a workbook is read whole)\n"
    );
    let _ = writeln!(md, "{MEMORY_HEADER}");
    for m in &memory_rows {
        let _ = writeln!(md, "{}", memory_line(m));
    }
    let _ = writeln!(
        md,
        "\n## The tool itself at scale (an in-memory stand-in for Cognito, quotas far above use)\n"
    );
    let _ = writeln!(md, "{SCALE_HEADER}");
    for row in &scaled.rows {
        let _ = writeln!(md, "{row}");
    }
    if let Some((label, before)) = &before {
        let _ = writeln!(
            md,
            "\nBefore: the same section at its first size with {label} (`BENCH_BEFORE_BIN`):\n"
        );
        let _ = writeln!(md, "{SCALE_HEADER}");
        for row in &before.rows {
            let _ = writeln!(md, "{row}");
        }
    }
    let _ = writeln!(
        md,
        "\n## Baselines, same machine, same proxy ({} new rows, half with a group)\n",
        sizes.baseline_rows
    );
    let _ = writeln!(md, "| way | users per second |\n|---|---|");
    let _ = writeln!(
        md,
        "| shell loop of `aws cognito-idp admin-create-user` ({} rows) | {cli:.2} |",
        sizes.cli_rows
    );
    let _ = writeln!(md, "| sequential SDK loop, no limiter | {sdk:.2} |");
    let _ = writeln!(
        md,
        "| cognito-onboard | {:.2} |",
        tool_users_per_second.unwrap_or(0.0)
    );
    let _ = writeln!(
        md,
        "\nMedians of {} runs for the first cohort size and for `check`; one run otherwise. Calls and throttles are the \
         proxy's counts. Took {:.0} s. Reproduce: `make bench`.",
        sizes.repeats,
        started.elapsed().as_secs_f64()
    );
    println!("{md}");
    let out: PathBuf = root().join(if std::env::var_os("BENCH_QUICK").is_some() {
        "bench/work/results-quick.md"
    } else {
        "bench/results.md"
    });
    std::fs::write(&out, &md).expect("write results");
    eprintln!("written to {}", out.display());
}

const SCALE_HEADER: &str = "| what | wall (s) | CPU (s) | peak RSS (MB) | calls | CPU s per 1,000 calls |\n|---|---|---|---|---|---|";

fn moto_version() -> String {
    Command::new(root().join(".venv/bin/python"))
        .args(["-c", "import moto; print(moto.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn chrono_like_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
