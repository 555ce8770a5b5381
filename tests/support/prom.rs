//! The real consumers of the Prometheus text format, for tests of the files the product writes:
//! `promtool` (lint, rule checks and rule unit tests) and `node_exporter`'s textfile collector
//! on a free loopback port. Both are Debian's binaries in `.tools/bin` (`make prometheus`).
//! Nothing here may install anything, touch ports other than the one it picked, or leave a
//! process behind: every child is bounded in time and stopped by PID.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// promtool's own runs are fast; the bound is there so that a hang fails the test instead of
/// holding up the suite.
const PROMTOOL_LIMIT: Duration = Duration::from_secs(20);
const START_LIMIT: Duration = Duration::from_secs(15);
const HTTP_LIMIT: Duration = Duration::from_secs(10);

/// `promtool`: `.tools/bin/promtool`, or `PROMTOOL`.
pub fn promtool() -> PathBuf {
    tool("PROMTOOL", "promtool")
}

/// `node_exporter`: `.tools/bin/node_exporter`, or `NODE_EXPORTER`.
pub fn node_exporter_bin() -> PathBuf {
    tool("NODE_EXPORTER", "node_exporter")
}

fn tool(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| super::root().join(".tools/bin").join(name));
    assert!(
        path.exists(),
        "{} is missing: run `make prometheus` (make test does it for you), or set {var}",
        path.display()
    );
    path
}

/// Lints `text` as a scrape would deliver it. promtool 2.42 exits 3 with one line per problem
/// on stderr for lint problems (a counter without `_total`, no HELP, a non-base unit), and 1
/// with "error while linting: text format parsing error ..." when the text does not parse; both
/// are Err. It accepts duplicate series: only [`NodeExporter::scrape_errors`] catches those.
pub fn check_metrics(text: &str) -> Result<String, String> {
    let mut cmd = Command::new(promtool());
    cmd.args(["check", "metrics"]);
    let out = run_bounded(cmd, Some(text.as_bytes().to_vec()), PROMTOOL_LIMIT);
    // Exit 0 with output would be a promtool that warns without failing: treat it as a problem
    // rather than let it pass unseen.
    if out.code == Some(0) && out.text.trim().is_empty() {
        Ok(out.text)
    } else {
        Err(out.describe())
    }
}

/// `promtool check rules FILE`: the file parses and every expression is valid PromQL.
pub fn check_rules(path: &Path) -> Result<String, String> {
    let mut cmd = Command::new(promtool());
    cmd.args(["check", "rules"]).arg(path);
    run_bounded(cmd, None, PROMTOOL_LIMIT).into_result()
}

/// `promtool test rules FILE`: the unit tests in FILE, whose `rule_files` are relative to it.
pub fn test_rules(path: &Path) -> Result<String, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut cmd = Command::new(promtool());
    cmd.args(["test", "rules"])
        .arg(path.file_name().expect("a rule test file's name"))
        .current_dir(dir);
    run_bounded(cmd, None, PROMTOOL_LIMIT).into_result()
}

struct Finished {
    cmdline: String,
    /// None when killed (by us, at the bound, or by a signal).
    code: Option<i32>,
    timed_out: bool,
    text: String,
}

impl Finished {
    fn describe(&self) -> String {
        let how = if self.timed_out {
            "was killed after its time limit".to_string()
        } else {
            match self.code {
                Some(code) => format!("exited with code {code}"),
                None => "was killed by a signal".to_string(),
            }
        };
        format!("{} {how}\n{}", self.cmdline, self.text)
    }

    fn into_result(self) -> Result<String, String> {
        if self.code == Some(0) {
            Ok(self.text)
        } else {
            Err(self.describe())
        }
    }
}

/// Runs `cmd` to completion, killing it at `limit`; stdout then stderr in `text`. Feeding stdin
/// and draining both pipes happen on threads, so that a child blocked on a full pipe cannot
/// hang the test.
fn run_bounded(mut cmd: Command, stdin: Option<Vec<u8>>, limit: Duration) -> Finished {
    let cmdline = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmdline}: {e}"));
    let feeder = child.stdin.take().zip(stdin).map(|(mut pipe, bytes)| {
        // A child that exits without reading all of stdin breaks the pipe: its exit code says
        // what went wrong, not our write error.
        std::thread::spawn(move || drop(pipe.write_all(&bytes)))
    });
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for promtool") {
            break status;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let mut text = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(&stderr.join().unwrap_or_default()));
    Finished {
        cmdline,
        code: status.code(),
        timed_out,
        text,
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// node_exporter with only its textfile collector, on a free loopback port, stopped (by PID)
/// when dropped. It reads the directory's `*.prom` files afresh on every scrape.
pub struct NodeExporter {
    child: Child,
    pub port: u16,
    log: PathBuf,
    // Dropped after `Drop::drop` has stopped the process that writes the log in it.
    _dir: tempfile::TempDir,
}

impl NodeExporter {
    pub fn start(textfile_dir: &Path) -> NodeExporter {
        let bin = node_exporter_bin();
        let dir = tempfile::tempdir().expect("a directory for node_exporter's log");
        let log = dir.path().join("node_exporter.log");
        let mut tries = Vec::new();
        // The port is free when picked but may be taken before node_exporter binds it; it then
        // exits at once, and another port is tried.
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("node_exporter's log");
            let err = out.try_clone().expect("node_exporter's log");
            let mut child = Command::new(&bin)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!(
                    "--collector.textfile.directory={}",
                    textfile_dir.display()
                ))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return NodeExporter {
                        child,
                        port,
                        log,
                        _dir: dir,
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let logged = std::fs::read_to_string(&log).unwrap_or_default();
                    tries.push(format!("port {port}: {why}\n{logged}"));
                }
            }
        }
        panic!("node_exporter did not start:\n{}", tries.join("\n"));
    }

    /// The body of `GET /metrics`; panics unless it answers 200.
    pub fn scrape(&self) -> String {
        match http_get(self.port, "/metrics") {
            Ok((200, body)) => body,
            Ok((code, body)) => panic!("node_exporter answered {code} to /metrics:\n{body}"),
            Err(e) => panic!(
                "scrape node_exporter on port {}: {e}\n{}",
                self.port,
                self.log()
            ),
        }
    }

    /// `node_textfile_scrape_error` from a fresh scrape: 1 when the collector could not read or
    /// parse one of the files (it then serves the others and drops that one whole).
    pub fn textfile_scrape_error(&self) -> f64 {
        let scrape = self.scrape();
        match samples(&scrape, "node_textfile_scrape_error").as_slice() {
            [(_, value)] => *value,
            other => panic!("expected one node_textfile_scrape_error sample, got {other:?}"),
        }
    }

    /// None when a fresh scrape took every file whole; otherwise what went wrong. Besides the
    /// scrape error flag it takes the log's errors, because a file that parses but repeats a
    /// series passes the flag (0) and loses the repeat with nothing but a log line to show for it.
    /// The log is the process's whole life: an error from an earlier scrape stays.
    pub fn scrape_errors(&self) -> Option<String> {
        let flag = self.textfile_scrape_error();
        let log = self.log();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("level=error")).collect();
        if flag == 0.0 && errors.is_empty() {
            None
        } else {
            Some(format!(
                "node_textfile_scrape_error {flag}\n{}",
                errors.join("\n")
            ))
        }
    }

    /// What node_exporter has logged so far (logfmt, stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Until `GET /metrics` answers 200, or the process exits, or [`START_LIMIT`].
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_LIMIT;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for node_exporter") {
            return Err(format!("exited ({status}) before answering"));
        }
        match http_get(port, "/metrics") {
            // Another process that took the port between our pick and node_exporter's bind
            // could answer too: only our collector's own series says it is ours.
            Ok((200, body)) if body.contains("node_textfile_scrape_error") => return Ok(()),
            Ok((code, body)) => last = format!("HTTP {code}: {body}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("not ready after {START_LIMIT:?}: {last}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A plain HTTP/1.1 GET on 127.0.0.1: (status, body). Go's server answers an HTTP/1.1 request
/// without a Content-Length in chunks even when the connection closes after, so both framings
/// are read.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_LIMIT)?;
    stream.set_read_timeout(Some(HTTP_LIMIT))?;
    stream.set_write_timeout(Some(HTTP_LIMIT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("malformed chunked body"))?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(&rest[..eol]).ok()?;
        let size_hex = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// The samples of metric `name` in exposition text: (labels, value), in the order they appear.
/// Only exact names match, so a histogram's `_bucket` series are asked for by that name. Label
/// values are unescaped (`\"`, `\\`, `\n`), and may hold commas, braces and spaces.
pub fn samples(scrape: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    scrape
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let end = line
                .find(|c: char| c == '{' || c.is_whitespace())
                .unwrap_or(line.len());
            if &line[..end] != name {
                return None;
            }
            Some(
                parse_sample(&line[end..])
                    .unwrap_or_else(|why| panic!("malformed sample line ({why}): {line}")),
            )
        })
        .collect()
}

/// Labels and value after the metric name: `{a="x",b="y"} 1 [timestamp]` or ` 1 [timestamp]`.
fn parse_sample(rest: &str) -> Result<(BTreeMap<String, String>, f64), String> {
    let rest = rest.trim_start();
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices().peekable();
    let mut after_labels = 0;
    if rest.starts_with('{') {
        chars.next();
        loop {
            while chars
                .next_if(|(_, c)| c.is_whitespace() || *c == ',')
                .is_some()
            {}
            match chars.peek() {
                Some((i, '}')) => {
                    after_labels = i + 1;
                    break;
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
                key.push(c);
            }
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            if chars.next().map(|(_, c)| c) != Some('=') {
                return Err(format!("no '=' after label {key:?}"));
            }
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key:?}'s value is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("escape at the end".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key:?}'s value is unterminated")),
                }
            }
            labels.insert(key, value);
        }
    }
    let value = rest[after_labels..]
        .split_whitespace()
        .next()
        .ok_or("no value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok((labels, value))
}
