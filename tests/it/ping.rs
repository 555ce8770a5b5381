//! `--ping-url`: the heartbeat in healthchecks.io's protocol for jobs, received by a local HTTP
//! listener that records what arrived, or that is down, or that accepts and never answers: the
//! run's exit code never changes and the run is held up only within the ping's bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cognito_onboard::error::exit;

use crate::support::*;

/// How the listener behaves.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// Answers 200 to every request.
    Answer,
    /// Reads the request and never answers (the connection stays open).
    Hang,
}

/// A local monitor: what arrived, as (method, path, body).
pub(crate) struct Monitor {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    pub(crate) fn start(mode: Mode) -> Monitor {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        if let Some(request) = read_request(&stream) {
                            s.lock().unwrap().push(request);
                        }
                        let mut stream = stream;
                        match mode {
                            Mode::Answer => {
                                let _ = stream.write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK",
                                );
                            }
                            Mode::Hang => held.push(stream),
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Monitor {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ping/check-{{run_id}}", self.port)
    }

    pub(crate) fn seen(&self) -> Vec<(String, String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<(String, String, String)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

/// A run and a status ping start and end; a run with an invalid row ends with `/3`; a run
/// refused because another holds the state pings nothing (the one that holds it does). The
/// body is the counts, never a provider.
#[test]
fn a_run_pings_its_start_and_its_end_with_the_exit_code() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let monitor = Monitor::start(Mode::Answer);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\np1@example.jp,B\n");
    let pw = env.path("pw.csv");
    let r = env
        .command(&pool, ["run", "--ping-url", &monitor.url()])
        .arg(&csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&pw)
        .expect(exit::OK);
    let run_id = r.report()["run_id"].as_str().unwrap().to_string();
    let seen = monitor.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.clone()),
        ("POST", format!("/ping/check-{run_id}/start"))
    );
    assert_eq!(seen[1].1, format!("/ping/check-{run_id}"));
    assert!(seen[1].2.contains("\"created\":2"), "{seen:?}");
    assert!(
        !seen.iter().any(|(_, _, body)| body.contains('@')),
        "{seen:?}"
    );

    let bad = env.write("bad.csv", "email,name\np2@example.jp,C\nnot-an-email,D\n");
    let pw = env.path("pw2.csv");
    let r = env
        .command(&pool, ["run", "--ping-url", &monitor.url()])
        .arg(&bad)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&pw)
        .expect(exit::ROWS_FAILED);
    let run_id = r.report()["run_id"].as_str().unwrap().to_string();
    let last = monitor.seen().last().cloned().unwrap();
    assert_eq!(last.1, format!("/ping/check-{run_id}/3"));

    let settings = env.write("settings.toml", format!("ping_url = {:?}\n", monitor.url()));
    env.command(&pool, ["--config", settings.to_str().unwrap(), "status"])
        .expect(exit::OK);
    let seen = monitor.seen();
    assert!(seen[seen.len() - 2].1.ends_with("/start"), "{seen:?}");
    assert!(!seen[seen.len() - 1].1.ends_with("/start"), "{seen:?}");

    // Another run holds the state: this one changes nothing and pings nothing.
    let before = monitor.seen().len();
    let held = cognito_onboard::state::State::open(
        &cognito_onboard::state::Location::File(env.path("state.db")),
        cognito_onboard::state::Access::Write,
    )
    .unwrap();
    env.command(&pool, ["status", "--ping-url", &monitor.url()])
        .expect(exit::LOCKED);
    drop(held);
    assert_eq!(monitor.seen().len(), before);
}

/// A monitor that is down, or that accepts and never answers, is a warning: the run ends as it
/// would have, within the ping's bound for each of its two pings.
#[test]
fn a_monitor_down_or_hanging_never_changes_the_run() {
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("p.csv", "email,name\np0@example.jp,A\n");
    // Down: a port nobody listens on.
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{down}/ping/secret-uuid");
    let started = Instant::now();
    let r = env
        .command(&pool, ["run", "--ping-url", &url])
        .arg(&csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(env.path("pw.csv"))
        .expect(exit::OK);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let stderr = r.stderr();
    assert!(
        stderr.contains(&format!("the ping to http://127.0.0.1:{down}/… failed")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret-uuid"),
        "the check's URL is its secret"
    );

    let hanging = Monitor::start(Mode::Hang);
    let started = Instant::now();
    let r = env
        .command(&pool, ["status", "--ping-url", &hanging.url()])
        .expect(exit::OK);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2 * 8 + 10), "{took:?}");
    assert!(
        took >= Duration::from_secs(3),
        "the pings waited for an answer: {took:?}"
    );
    assert!(r.stderr().contains("no answer in"), "{}", r.stderr());
    assert_eq!(
        hanging.seen().len(),
        6,
        "three attempts of each ping arrived"
    );
}
