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

use crate::cli::LogFormat;

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

/// Progress through the rows: a bar on a terminal, a log line every `every` otherwise.
pub struct Progress {
    span: Option<Span>,
    total: u64,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
    every: Duration,
}

impl Progress {
    pub fn start(what: &str, total: u64, bar: bool) -> Progress {
        let span = bar.then(|| {
            let span = tracing::info_span!("progress", indicatif.pb_show = tracing::field::Empty);
            span.pb_set_style(
                &indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} rows  {per_sec}  eta {eta}",
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
            total,
            done: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
            every: Duration::from_secs(10),
        }
    }

    /// One more row finished.
    pub fn inc(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.span {
            Some(span) => span.pb_inc(1),
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= self.every {
                    *last = Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(0.001);
                    tracing::info!(
                        "progress: {done}/{} rows, {:.1} rows/s",
                        self.total,
                        done as f64 / secs
                    );
                }
            }
        }
    }
}
