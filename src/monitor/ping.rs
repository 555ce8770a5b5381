//! The heartbeat a dead-man's-switch service understands (`--ping-url`), in the protocol
//! healthchecks.io documents for jobs: `URL/start` when a scheduled command begins, `URL` when it
//! ends with exit 0, `URL/<exit code>` otherwise, with a one-line summary as the body. Must never
//! change how a command ends nor hold it up beyond [`BOUND`]: a ping that fails is a warning.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::Error;

/// The longest one ping may take, all its attempts included.
pub const BOUND: Duration = Duration::from_secs(8);
/// One attempt's limit: a monitor that accepts and never answers must not hold the run.
const ATTEMPT: Duration = Duration::from_secs(3);
const ATTEMPTS: u32 = 3;

/// Where a command's pings go.
pub struct Ping {
    url: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Ping {
    /// The check's URL for this run (`{run_id}` replaced), refused unless it is http or https.
    pub fn new(template: &str, run_id: &str) -> Result<Ping, Error> {
        let url = template
            .trim()
            .trim_end_matches('/')
            .replace("{run_id}", run_id);
        let parsed: hyper::Uri = url
            .parse()
            .map_err(|e| Error::Config(format!("ping_url {template:?}: {e}")))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(Error::Config(format!(
                "ping_url {template:?}: must be an http:// or https:// URL"
            )));
        }
        let https = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls_provider())
        {
            Ok(builder) => builder.https_or_http().enable_http1().build(),
            // A machine without the platform's certificates must not lose its run over a ping:
            // an http:// check still works, an https:// one fails its handshake, as a warning.
            Err(e) => {
                tracing::warn!(
                    "no TLS root certificates for the pings ({e}): https pings will fail"
                );
                let config = rustls::ClientConfig::builder_with_provider(rustls_provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Config(format!("ping_url: TLS: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_or_http()
                    .enable_http1()
                    .build()
            }
        };
        Ok(Ping {
            url,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// The command has begun.
    pub async fn start(&self) {
        self.send("/start", String::new()).await;
    }

    /// The command has ended with `exit_code`; `summary` is its one line (counts, never names).
    pub async fn finish(&self, exit_code: u8, summary: &str) {
        let suffix = if exit_code == 0 {
            String::new()
        } else {
            format!("/{exit_code}")
        };
        self.send(&suffix, summary.to_string()).await;
    }

    /// Tries a few times within [`BOUND`]; what fails is logged, never returned.
    async fn send(&self, suffix: &str, body: String) {
        let url = format!("{}{suffix}", self.url);
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            let left = BOUND.saturating_sub(started.elapsed()).min(ATTEMPT);
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.post(&url, body.clone())).await {
                Ok(Ok(status)) if status.is_success() => return,
                Ok(Ok(status)) => last = format!("answered {status}"),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer in {} s", left.as_secs()),
            }
            if attempt + 1 < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        tracing::warn!(
            "the ping to {} failed ({last}); the run goes on",
            redact(&url)
        );
    }

    async fn post(&self, url: &str, body: String) -> Result<hyper::StatusCode, String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", "text/plain; charset=utf-8")
            .header(
                "user-agent",
                concat!("cognito-onboard/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e}"))?;
        Ok(response.status())
    }
}

/// The TLS crypto the SDK uses too (aws-lc), so that one provider is built.
fn rustls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A ping URL as a log line shows it: a check's URL is its secret (anyone who has it can ping),
/// so only the host is named.
fn redact(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => format!(
            "{}://{}/…",
            u.scheme_str().unwrap_or("http"),
            u.authority().map(|a| a.as_str()).unwrap_or("?")
        ),
        Err(_) => "the ping URL".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_takes_the_run_id_and_must_be_http() {
        let p = Ping::new("https://hc.example.com/ping/abc-{run_id}/", "r1").unwrap();
        assert_eq!(p.url, "https://hc.example.com/ping/abc-r1");
        assert!(Ping::new("ftp://hc.example.com/x", "r1").is_err());
        assert!(Ping::new("hc.example.com/x", "r1").is_err());
    }

    #[test]
    fn a_logged_url_names_only_its_host() {
        assert_eq!(
            redact("https://hc-ping.com/5f1e7c1a-secret/start"),
            "https://hc-ping.com/…"
        );
    }
}
