//! When to try a request again, and how long to wait first.
//!
//! Retried: 408, 429 and 503 (after `Retry-After` when given, in seconds or as an HTTP date),
//! 5xx other than 501/505, and transport failures (reset, EOF, refused). Waits grow
//! exponentially with jitter, so that many clients rate-limited at once do not return in
//! lockstep, and the number of tries is bounded. A try that timed out is retried fewer times
//! (`timeout_retries`): a peer that said nothing for a whole idle timeout rarely starts
//! talking, and a job must fail within a known time rather than wait out every retry.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How many times and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (0 = try once).
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a registry asking for more fails the request instead
    /// of stalling the push for an unbounded time.
    pub max_retry_after: Duration,
    /// Retries of a try that timed out (no connection, or no byte moving, in time).
    pub timeout_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            timeout_retries: 1,
        }
    }
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    GiveUp,
}

/// Statuses worth another try: the request may succeed unchanged.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    match status.as_u16() {
        408 | 429 => true,
        501 | 505 => false,
        500..=599 => true,
        _ => false,
    }
}

/// Transport failures worth another try: anything but a request we could not even build.
pub(crate) fn is_retryable_transport(error: &reqwest::Error) -> bool {
    !error.is_builder()
}

/// The wait a server asked for: `Retry-After` in seconds, or an HTTP date (RFC 9110 §10.2.3;
/// a date already past means "now").
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

impl RetryPolicy {
    /// The jittered exponential wait before retry number `retry` (0-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        let full = self
            .base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        // Between half and all of the full wait.
        full.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Decides after a response with `status` on try number `retry` (0-based).
    pub fn after_status(
        &self,
        retry: u32,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> RetryDecision {
        if retry >= self.max_retries || !is_retryable_status(status) {
            return RetryDecision::GiveUp;
        }
        match retry_after(headers) {
            Some(asked) if asked > self.max_retry_after => RetryDecision::GiveUp,
            Some(asked) => RetryDecision::RetryAfter(asked),
            None => RetryDecision::RetryAfter(self.backoff(retry)),
        }
    }

    /// Decides after a try that stalled or got no answer in time.
    pub(crate) fn after_timeout(&self, retry: u32) -> RetryDecision {
        if retry >= self.max_retries.min(self.timeout_retries) {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAfter(self.backoff(retry))
    }

    /// Decides after a transport failure on try number `retry` (0-based).
    pub fn after_transport_error(&self, retry: u32, error: &reqwest::Error) -> RetryDecision {
        if error.is_timeout() {
            return self.after_timeout(retry);
        }
        if retry >= self.max_retries || !is_retryable_transport(error) {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAfter(self.backoff(retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
            timeout_retries: 1,
        }
    }

    #[test]
    fn retryable_statuses() {
        for code in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200, 201, 400, 401, 403, 404, 413, 416, 501, 505] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(
            policy().after_status(0, StatusCode::TOO_MANY_REQUESTS, &headers),
            RetryDecision::RetryAfter(Duration::from_secs(2))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(
            policy().after_status(0, StatusCode::TOO_MANY_REQUESTS, &headers),
            RetryDecision::GiveUp
        );
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        // A date long past: retry now.
        assert_eq!(
            policy().after_status(0, StatusCode::SERVICE_UNAVAILABLE, &headers),
            RetryDecision::RetryAfter(Duration::ZERO)
        );
        let soon = std::time::SystemTime::now() + Duration::from_secs(20);
        let date = httpdate::fmt_http_date(soon);
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let RetryDecision::RetryAfter(wait) =
            policy().after_status(0, StatusCode::SERVICE_UNAVAILABLE, &headers)
        else {
            panic!("a date 20 s ahead is within the bound");
        };
        assert!(
            wait > Duration::from_secs(18) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert!(retry_after(&headers).is_none());
    }

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    /// The server's wait replaces the backoff, even when shorter (0: now) or padded.
    #[test]
    fn retry_after_in_seconds_replaces_the_backoff() {
        for (value, seconds) in [("0", 0), (" 7 ", 7), ("30", 30)] {
            assert_eq!(
                policy().after_status(1, StatusCode::SERVICE_UNAVAILABLE, &with_retry_after(value)),
                RetryDecision::RetryAfter(Duration::from_secs(seconds)),
                "{value:?}"
            );
        }
        // One second past the bound fails the request rather than stall it.
        assert_eq!(
            policy().after_status(0, StatusCode::TOO_MANY_REQUESTS, &with_retry_after("31")),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn retry_after_as_a_date_too_far_ahead_gives_up() {
        let later = std::time::SystemTime::now() + Duration::from_secs(600);
        let headers = with_retry_after(&httpdate::fmt_http_date(later));
        assert_eq!(
            policy().after_status(0, StatusCode::TOO_MANY_REQUESTS, &headers),
            RetryDecision::GiveUp
        );
    }

    /// `Retry-After` neither makes a refusal worth another try nor adds tries.
    #[test]
    fn retry_after_does_not_override_the_status_or_the_limit() {
        let headers = with_retry_after("1");
        for code in [400, 401, 404, 501] {
            assert_eq!(
                policy().after_status(0, StatusCode::from_u16(code).unwrap(), &headers),
                RetryDecision::GiveUp,
                "{code}"
            );
        }
        assert_eq!(
            policy().after_status(3, StatusCode::TOO_MANY_REQUESTS, &headers),
            RetryDecision::GiveUp
        );
    }

    /// Clients rate-limited together must not come back together: the waits for one retry
    /// spread over the lower and upper half of the allowed range. (Chance of a false failure:
    /// 0.8^500 per bound.)
    #[test]
    fn jitter_spreads_the_waits_over_the_range() {
        let p = policy();
        let full = Duration::from_millis(400); // retry 2: 100 ms × 2².
        let waits: Vec<Duration> = (0..500).map(|_| p.backoff(2)).collect();
        assert!(waits.iter().all(|w| *w >= full / 2 && *w <= full));
        assert!(waits.iter().any(|w| *w < full.mul_f64(0.6)), "{waits:?}");
        assert!(waits.iter().any(|w| *w > full.mul_f64(0.9)), "{waits:?}");
    }

    #[test]
    fn timeouts_are_retried_fewer_times() {
        assert!(matches!(
            policy().after_timeout(0),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(policy().after_timeout(1), RetryDecision::GiveUp);
    }

    #[test]
    fn tries_are_bounded() {
        let headers = HeaderMap::new();
        assert!(matches!(
            policy().after_status(2, StatusCode::BAD_GATEWAY, &headers),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(
            policy().after_status(3, StatusCode::BAD_GATEWAY, &headers),
            RetryDecision::GiveUp
        );
        assert_eq!(
            policy().after_status(0, StatusCode::NOT_FOUND, &headers),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let p = policy();
        for retry in 0..40 {
            let wait = p.backoff(retry);
            let full = Duration::from_millis(100)
                .saturating_mul(1 << retry.min(20))
                .min(p.max_delay);
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
        }
    }
}
