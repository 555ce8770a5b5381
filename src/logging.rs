//! Where people see what is happening: log lines on stderr (text or JSON), a progress bar on a
//! terminal, and periodic progress lines when stderr is not a terminal (cron, CI). Must not
//! write to stdout, which is for data.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Span;
use tracing_indicatif::IndicatifLayer;
use tracing_indicatif::filter::{IndicatifFilter, hide_indicatif_span_fields};
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Our crate's level for a verbosity; other crates stay at `warn` so the SDK never logs request
/// details (and so never a password) whatever `-v` says.
fn filter(verbosity: i8) -> EnvFilter {
    let ours = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let floor = if verbosity <= -2 { "error" } else { "warn" };
    EnvFilter::new(format!("{floor},cognito_onboard={ours}"))
}

/// How log lines on stderr look (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets up logging once for the process.
pub fn init(format: LogFormat, verbosity: i8, progress: bool) {
    let ansi = std::io::stderr().is_terminal();
    let result = match (format, progress) {
        (LogFormat::Json, _) => tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter(verbosity)),
            )
            .try_init(),
        (LogFormat::Text, true) => {
            let indicatif = IndicatifLayer::new()
                .with_span_field_formatter(hide_indicatif_span_fields(DefaultFields::new()));
            tracing_subscriber::registry()
                .with(
                    fmt::layer()
                        .with_target(false)
                        .with_ansi(ansi)
                        .with_writer(indicatif.get_stderr_writer())
                        .with_filter(filter(verbosity)),
                )
                .with(indicatif.with_filter(IndicatifFilter::new(false)))
                .try_init()
        }
        (LogFormat::Text, false) => tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr)
                    .with_filter(filter(verbosity)),
            )
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber, which is what we want.
    drop(result);
}

/// What holds calls back now: `(what, how many waiting)`, busiest first.
type Waits = Box<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// Progress through the rows: a bar on a terminal, a log line every `every` otherwise. Both say
/// rows done of total, the rate, the time left, and which quotas the waiting calls wait on.
pub struct Progress {
    span: Option<Span>,
    what: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
    every: Duration,
    waits: Option<Waits>,
}

/// How often the bar's note of waiting calls is refreshed.
const BAR_NOTE_EVERY: Duration = Duration::from_millis(500);

impl Progress {
    pub fn start(what: &str, total: u64, bar: bool) -> Progress {
        let span = bar.then(|| {
            let span = tracing::info_span!("progress", indicatif.pb_show = tracing::field::Empty);
            span.pb_set_style(
                &indicatif::ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {pos}/{len} rows  {per_sec}  eta {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            span.pb_set_length(total);
            span.pb_set_message(what);
            span.pb_start();
            span
        });
        Progress {
            span,
            what: what.to_string(),
            total,
            done: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
            every: Duration::from_secs(10),
            waits: None,
        }
    }

    /// Says, with the progress, which quotas the waiting calls wait on.
    pub fn with_waits(mut self, waits: Waits) -> Progress {
        self.waits = Some(waits);
        self
    }

    /// One more row finished.
    pub fn inc(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(span) = &self.span {
            span.pb_inc(1);
        }
        let every = if self.span.is_some() {
            BAR_NOTE_EVERY
        } else {
            self.every
        };
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < every {
            return;
        }
        *last = Instant::now();
        let waits = self.waits.as_ref().map(|w| w()).unwrap_or_default();
        match &self.span {
            Some(span) => span.pb_set_message(&format!("{}{}", self.what, waiting(&waits))),
            None => tracing::info!("{}", line(done, self.total, self.started.elapsed(), &waits)),
        }
    }
}

/// The periodic progress line off a terminal.
pub fn line(done: u64, total: u64, elapsed: Duration, waits: &[(&str, u64)]) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let eta = if rate > 0.0 && total > done {
        let left = Duration::from_secs(((total - done) as f64 / rate).ceil() as u64);
        format!(", eta {}", humantime::format_duration(left))
    } else {
        String::new()
    };
    format!(
        "progress: {done}/{total} rows, {rate:.1} rows/s{eta}{}",
        waiting(waits)
    )
}

/// "; waiting on quota: UserCreation 12, UserRead 3", or nothing when no call waits.
fn waiting(waits: &[(&str, u64)]) -> String {
    if waits.is_empty() {
        return String::new();
    }
    let list: Vec<String> = waits.iter().map(|(w, n)| format!("{w} {n}")).collect();
    format!("; waiting on quota: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_rate_time_left_and_what_calls_wait_on() {
        assert_eq!(
            line(
                100,
                1000,
                Duration::from_secs(10),
                &[("UserCreation", 12), ("UserRead", 3)]
            ),
            "progress: 100/1000 rows, 10.0 rows/s, eta 1m 30s; waiting on quota: UserCreation 12, UserRead 3"
        );
        assert_eq!(
            line(1000, 1000, Duration::from_secs(25), &[]),
            "progress: 1000/1000 rows, 40.0 rows/s"
        );
        assert_eq!(
            line(0, 10, Duration::from_secs(5), &[("message rate", 1)]),
            "progress: 0/10 rows, 0.0 rows/s; waiting on quota: message rate 1"
        );
    }
}
