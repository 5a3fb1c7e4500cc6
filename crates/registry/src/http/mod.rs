//! One HTTP policy for every request dockless makes: to registries, to E2B's API, and for
//! `ADD <url>`.
//!
//! A CI job must never hang on a peer that accepts the connection and then says nothing, yet a
//! layer upload may rightly take an hour. So there is no whole-request deadline: a try fails
//! when it cannot connect within `connect_timeout`, or when no byte moves (sent or received)
//! for `idle_timeout`. Only after the last byte of an upload does the longer
//! `upload_answer_timeout` apply (registries verify a big blob before they answer). Failed tries
//! are retried with exponential backoff and jitter, honouring `Retry-After` ([`retry`]); a try
//! that timed out is retried once, so a silent peer fails the job within
//! [`HttpPolicy::longest_silence`].
//!
//! Proxies: every client built here ([`HttpPolicy::client_builder`]) takes `HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (or their lower-case forms) from the environment,
//! as reqwest does for any client that does not set its own.

pub mod retry;

use std::time::Duration;

pub use retry::{RetryDecision, RetryPolicy};

/// Sets [`HttpPolicy::idle_timeout`] (the `--http-timeout` flag wins over it).
pub(crate) const TIMEOUT_ENV: &str = "DOCKLESS_HTTP_TIMEOUT";
/// Sets [`HttpPolicy::connect_timeout`] (the `--http-connect-timeout` flag wins over it).
pub(crate) const CONNECT_TIMEOUT_ENV: &str = "DOCKLESS_HTTP_CONNECT_TIMEOUT";
/// What a timeout message tells the user to change.
pub const TIMEOUT_ADVICE: &str = "raise the limit with --http-timeout or DOCKLESS_HTTP_TIMEOUT";

/// Timeouts and retries of every HTTP request. `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpPolicy {
    /// A try fails when its TCP (and TLS) connection is not up within this.
    pub connect_timeout: Duration,
    /// A try fails when no byte moves for this long: the request is not answered, an upload
    /// takes nothing, or an answer's body stops.
    pub idle_timeout: Duration,
    /// After the last byte of a request body, how long the answer may take (a registry
    /// verifies a big blob before answering the final PUT). Never shorter than `idle_timeout`.
    pub upload_answer_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(20),
            upload_answer_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }
}

/// A limit given in a form that is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {problem}; expected a duration such as 30s, 2m, 1m30s or 500ms")]
pub struct LimitError {
    pub name: String,
    pub value: String,
    pub problem: String,
}

impl HttpPolicy {
    /// The defaults with the limits the flags give, else the environment's
    /// ([`TIMEOUT_ENV`], [`CONNECT_TIMEOUT_ENV`]).
    pub fn from_flags_and_env(
        idle: Option<Duration>,
        connect: Option<Duration>,
    ) -> Result<Self, LimitError> {
        let mut policy = Self::default();
        if let Some(idle) = idle.map_or_else(|| env_duration(TIMEOUT_ENV), |d| Ok(Some(d)))? {
            policy = policy.with_idle_timeout(idle);
        }
        if let Some(connect) =
            connect.map_or_else(|| env_duration(CONNECT_TIMEOUT_ENV), |d| Ok(Some(d)))?
        {
            policy.connect_timeout = connect;
        }
        Ok(policy)
    }

    /// This policy with another idle limit (the wait after an upload never goes below it).
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self.upload_answer_timeout = self.upload_answer_timeout.max(idle);
        self
    }

    #[cfg(test)]
    /// The longest one request can wait on a peer that accepts and never answers (or never
    /// accepts) before it fails: every try allowed after a timeout, each waiting out the
    /// longer of the two limits, plus the backoff in between.
    pub(crate) fn longest_silence(&self) -> Duration {
        let tries = self.retry.timeout_retries.min(self.retry.max_retries) + 1;
        let waits = self.retry.max_delay * (tries - 1);
        self.connect_timeout.max(self.idle_timeout) * tries + waits
    }

    /// A client builder with this policy's connect timeout, TCP keep-alive and dockless's
    /// user agent; proxies from the environment. The caller adds what its requests need.
    pub(crate) fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(user_agent())
    }

    /// A client for requests whose bodies are small (JSON, a download): reqwest's own read
    /// timeout, which runs from sending until the answer starts and then between reads, is
    /// then exactly the idle limit. Not for uploads: it would fail one that takes longer.
    pub fn small_request_client(&self) -> reqwest::ClientBuilder {
        self.client_builder().read_timeout(self.idle_timeout)
    }
}

/// `dockless/VERSION`, as every request says.
pub(crate) fn user_agent() -> String {
    format!("dockless/{}", env!("CARGO_PKG_VERSION"))
}

fn env_duration(name: &str) -> Result<Option<Duration>, LimitError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            parse_duration(&value)
                .map(Some)
                .map_err(|problem| LimitError {
                    name: name.to_owned(),
                    value,
                    problem,
                })
        }
        _ => Ok(None),
    }
}

/// `30s`, `2m`, `1m30s`, `500ms`, `1h`, or a bare number of seconds; more than zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return positive(seconds_to_duration(seconds)?);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("a number needs a unit (ms, s, m, h)")?;
        let (number, after) = rest.split_at(digits);
        if number.is_empty() {
            return Err(format!("{rest:?} does not start with a number"));
        }
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{number:?} is not a number"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?}")),
        };
        total += seconds_to_duration(number * scale)?;
        rest = next;
    }
    positive(total)
}

fn seconds_to_duration(seconds: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(seconds).map_err(|_| "out of range".to_owned())
}

fn positive(duration: Duration) -> Result<Duration, String> {
    if duration.is_zero() {
        Err("a limit of zero would fail every request".into())
    } else {
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_and_humans_write_them() {
        let ok = [
            ("30", 30_000),
            ("1.5", 1_500),
            ("30s", 30_000),
            ("500ms", 500),
            ("2m", 120_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            (" 5s ", 5_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in ["", "0", "0s", "-1", "5x", "s", "1m30", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    /// The promise: a registry that never answers fails the job within 60 s by
    /// default (one request; a push's requests wait on the first one's ping).
    #[test]
    fn a_silent_peer_fails_within_a_minute_by_default() {
        let policy = HttpPolicy::default();
        assert!(
            policy.longest_silence() <= Duration::from_secs(60),
            "{:?}",
            policy.longest_silence()
        );
        assert!(policy.connect_timeout <= policy.idle_timeout);
    }

    #[test]
    fn a_shorter_idle_limit_shortens_the_silence_but_not_below_the_wait_after_uploads() {
        let policy = HttpPolicy::default().with_idle_timeout(Duration::from_secs(2));
        assert_eq!(policy.idle_timeout, Duration::from_secs(2));
        assert_eq!(policy.upload_answer_timeout, Duration::from_secs(300));
        let long = HttpPolicy::default().with_idle_timeout(Duration::from_secs(900));
        assert_eq!(long.upload_answer_timeout, Duration::from_secs(900));
    }
}
