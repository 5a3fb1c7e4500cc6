//! The E2B API client: JSON over HTTP(S), exactly one credential header on every request, sent
//! only to the API's own origin (redirects are not followed).

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

use super::credentials::{CredentialKind, E2bCredential};
use super::refusal::{self, Flow};
pub use super::schema::*;
use dockless_registry::http::{HttpPolicy, RetryDecision, TIMEOUT_ADVICE};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "E2B API {operation} ({url}): {detail}; check E2B_API_URL / E2B_DOMAIN and your connection"
    )]
    Transport {
        operation: String,
        url: String,
        detail: String,
    },
    #[error("E2B refused {operation} (HTTP {status}): {message}{}", if advice.is_empty() { String::new() } else { format!("; {advice}") })]
    Refused {
        operation: String,
        status: u16,
        /// E2B's own reason.
        message: String,
        advice: String,
    },
    #[error("E2B API {operation}: unexpected answer: {detail}")]
    BadAnswer { operation: String, detail: String },
    /// The status and headers came, then the body stopped: a failed request, never an empty
    /// or partial answer read as a whole one.
    #[error(
        "E2B API {operation} ({url}): the answer (HTTP {status}) broke off after {received}: {detail}"
    )]
    BrokenAnswer {
        operation: String,
        url: String,
        status: u16,
        /// How much of the body came, e.g. `12 of 4096 bytes`.
        received: String,
        detail: String,
    },
}

pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    credential: E2bCredential,
    policy: HttpPolicy,
}

/// Templates asked for per page of `GET /v2/templates` (E2B's maximum).
const PAGE_LIMIT: u32 = 100;
/// Pages read before a listing is called broken (100,000 templates).
const MAX_PAGES: usize = 1000;

impl ApiClient {
    /// A client for the API at `base`: `policy`'s connect and idle timeouts (the answers are
    /// small JSON documents, so no byte for the idle limit means a stuck request) and retries.
    pub fn new(base: Url, credential: E2bCredential, policy: HttpPolicy) -> Result<Self, ApiError> {
        let http = policy
            .small_request_client()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Transport {
                operation: "setup".into(),
                url: base.to_string(),
                detail: e.to_string(),
            })?;
        Ok(ApiClient {
            http,
            base,
            credential,
            policy,
        })
    }

    /// Tries for a request that may be sent again (reads, and starting a build E2B's load
    /// balancer may have dropped).
    fn retried(&self) -> u32 {
        self.policy.retry.max_retries + 1
    }

    pub fn credential(&self) -> &E2bCredential {
        &self.credential
    }

    pub(crate) async fn create_template_v3(
        &self,
        request: &CreateTemplateV3,
    ) -> Result<CreatedBuild, ApiError> {
        let body = serde_json::to_value(request).unwrap_or_default();
        let answer = self
            .send(
                Method::POST,
                "v3/templates",
                Some(body),
                "create template (POST /v3/templates)",
                Flow::Registry,
                1,
            )
            .await?;
        parse(&answer, "create template")
    }

    pub(crate) async fn start_build_v2(
        &self,
        template_id: &str,
        build_id: &str,
        request: &StartBuildV2,
    ) -> Result<(), ApiError> {
        let path = format!("v2/templates/{template_id}/builds/{build_id}");
        self.send(
            Method::POST,
            &path,
            Some(request.body()),
            &format!("start build (POST /{path})"),
            Flow::Registry,
            1,
        )
        .await
        .map(drop)
    }

    /// `POST /templates` (new) or `POST /templates/{templateID}` (rebuild).
    pub(crate) async fn create_template_legacy(
        &self,
        template_id: Option<&str>,
        request: &CreateTemplateLegacy,
    ) -> Result<CreatedBuild, ApiError> {
        let path = match template_id {
            Some(id) => format!("templates/{id}"),
            None => "templates".to_owned(),
        };
        let body = serde_json::to_value(request).unwrap_or_default();
        let answer = self
            .send(
                Method::POST,
                &path,
                Some(body),
                &format!("request build (POST /{path})"),
                Flow::Gateway,
                1,
            )
            .await?;
        parse(&answer, "request build")
    }

    /// `POST /templates/{templateID}/builds/{buildID}`, tried again as the HTTP policy allows
    /// (E2B's load balancer drops long-lived connections, as its CLI learnt).
    pub(crate) async fn start_build_legacy(
        &self,
        template_id: &str,
        build_id: &str,
    ) -> Result<(), ApiError> {
        let path = format!("templates/{template_id}/builds/{build_id}");
        self.send(
            Method::POST,
            &path,
            None,
            &format!("start build (POST /{path})"),
            Flow::Gateway,
            self.retried(),
        )
        .await
        .map(drop)
    }

    /// `GET /v2/templates`: the team's templates, every page (E2B answers at most `limit`, 100,
    /// at a time and names the next page in `X-Next-Token`). `GET /templates`, which answered
    /// all at once, is deprecated.
    pub async fn list_templates(&self) -> Result<Vec<TemplateSummary>, ApiError> {
        let mut templates = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (page, token) = self.templates_page(next.as_deref(), PAGE_LIMIT).await?;
            templates.extend(page);
            match token {
                Some(token) if next.as_deref() != Some(token.as_str()) => next = Some(token),
                _ => return Ok(templates),
            }
        }
        Err(ApiError::BadAnswer {
            operation: "list templates".to_owned(),
            detail: format!("E2B still named a next page after {MAX_PAGES} pages"),
        })
    }

    /// Whether E2B accepts the credential: one template asked for (`GET /v2/templates`,
    /// which takes either kind of credential). A refusal is E2B's, with what to do.
    pub async fn check_credential(&self) -> Result<(), ApiError> {
        self.templates_page(None, 1).await.map(drop)
    }

    /// One page of `GET /v2/templates` from `next`, and the token of the page after it.
    async fn templates_page(
        &self,
        next: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<TemplateSummary>, Option<String>), ApiError> {
        let mut path = format!("v2/templates?limit={limit}");
        if let Some(token) = next {
            path.push_str("&nextToken=");
            path.extend(url::form_urlencoded::byte_serialize(token.as_bytes()));
        }
        let (body, headers) = self
            .send_reading_headers(
                Method::GET,
                &path,
                None,
                "list templates (GET /v2/templates)",
                Flow::Either,
                self.retried(),
            )
            .await?;
        let token = headers
            .get("x-next-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok((parse(&body, "list templates")?, token))
    }

    /// `DELETE /templates/{templateID}` (E2B also takes a name there).
    pub async fn delete_template(&self, name_or_id: &str) -> Result<(), ApiError> {
        let path = format!("templates/{name_or_id}");
        self.send(
            Method::DELETE,
            &path,
            None,
            &format!("delete template (DELETE /{path})"),
            Flow::Either,
            1,
        )
        .await
        .map(drop)
    }

    pub async fn build_status(
        &self,
        template_id: &str,
        build_id: &str,
        logs_offset: usize,
    ) -> Result<BuildInfo, ApiError> {
        self.build_status_at(template_id, build_id, logs_offset, None)
            .await
    }

    /// Build status with log entries at `level` or above only (`debug`, `info`, `warn`, `error`).
    pub(crate) async fn build_status_at(
        &self,
        template_id: &str,
        build_id: &str,
        logs_offset: usize,
        level: Option<&str>,
    ) -> Result<BuildInfo, ApiError> {
        let mut path =
            format!("templates/{template_id}/builds/{build_id}/status?logsOffset={logs_offset}");
        if let Some(level) = level {
            path.push_str(&format!("&level={level}"));
        }
        let answer = self
            .send(
                Method::GET,
                &path,
                None,
                "build status",
                Flow::Either,
                self.retried(),
            )
            .await?;
        parse(&answer, "build status")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        operation: &str,
        flow: Flow,
        attempts: u32,
    ) -> Result<Vec<u8>, ApiError> {
        self.send_reading_headers(method, path, body, operation, flow, attempts)
            .await
            .map(|(body, _)| body)
    }

    /// [`Self::send`], with the answer's headers.
    async fn send_reading_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        operation: &str,
        flow: Flow,
        attempts: u32,
    ) -> Result<(Vec<u8>, reqwest::header::HeaderMap), ApiError> {
        let url = self.base.join(path).map_err(|e| ApiError::BadAnswer {
            operation: operation.to_owned(),
            detail: format!("cannot build a URL for {path}: {e}"),
        })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.request(&method, &url, body.as_ref(), operation)?;
            tracing::debug!(%method, path = url.path(), attempt, "E2B API request");
            let retry = attempt - 1;
            let last = attempt >= attempts;
            let (decision, reason) = match self.exchange(request).await {
                Ok(answer) => {
                    let status = answer.status;
                    tracing::debug!(
                        status = status.as_u16(),
                        path = url.path(),
                        "E2B API answer"
                    );
                    if status.is_success() {
                        return Ok((answer.body, answer.headers));
                    }
                    let decision = self
                        .policy
                        .retry
                        .after_status(retry, status, &answer.headers);
                    if last || decision == RetryDecision::GiveUp {
                        return Err(self.refused(operation, status, &answer.body, flow));
                    }
                    (decision, format!("HTTP {status}"))
                }
                Err(failure) => {
                    let decision = self
                        .policy
                        .retry
                        .after_transport_error(retry, failure.error());
                    if last || decision == RetryDecision::GiveUp {
                        return Err(self.failed_try(operation, &url, &failure, attempt));
                    }
                    (decision, self.reason(&failure))
                }
            };
            tracing::warn!(operation, attempt, %reason, "E2B API request failed; trying again");
            if let RetryDecision::RetryAfter(wait) = decision {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// One try's request: `body` as JSON, and exactly one credential header.
    fn request(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        operation: &str,
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let request = self.http.request(method.clone(), url.clone());
        let secret = self.credential.secret().expose_secret();
        let (name, value) = match self.credential.kind {
            CredentialKind::ApiKey => (X_API_KEY, HeaderValue::from_str(secret)),
            CredentialKind::AccessToken => (
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {secret}")),
            ),
        };
        let mut value = value.map_err(|_| self.bad_secret(operation))?;
        value.set_sensitive(true);
        let request = request.header(name, value);
        Ok(match body {
            Some(body) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
            None if method == Method::POST => request.header(reqwest::header::CONTENT_LENGTH, 0),
            None => request,
        })
    }

    /// Sends once and reads the whole answer. A body that breaks off is a failed try that
    /// says how much came, not a shorter answer.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Answer, TryFailure> {
        let mut response = request.send().await.map_err(TryFailure::Unanswered)?;
        let status = response.status();
        let headers = response.headers().clone();
        let expected = response.content_length();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(error) => {
                    return Err(TryFailure::BrokenBody {
                        status,
                        received: body.len(),
                        expected,
                        error,
                    });
                }
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn scrubbed(&self, error: &reqwest::Error) -> String {
        refusal::scrub(
            &dockless_registry::with_causes(error.to_string(), error),
            &self.credential,
        )
    }

    /// Why a try failed, for the line saying it is tried again.
    fn reason(&self, failure: &TryFailure) -> String {
        match failure {
            TryFailure::Unanswered(error) => self.scrubbed(error),
            TryFailure::BrokenBody {
                status,
                received,
                expected,
                error,
            } => format!(
                "the answer (HTTP {status}) broke off after {}: {}",
                amount(*received, *expected),
                self.scrubbed(error)
            ),
        }
    }

    /// The error of a failed last try.
    fn failed_try(&self, operation: &str, url: &Url, failure: &TryFailure, tries: u32) -> ApiError {
        let operation = operation.to_owned();
        let url = redact_query(url);
        match failure {
            TryFailure::Unanswered(error) => {
                let detail = if error.is_timeout() {
                    let limit = if error.is_connect() {
                        format!("no connection within {:?}", self.policy.connect_timeout)
                    } else {
                        format!("no answer within {:?}", self.policy.idle_timeout)
                    };
                    format!("{limit} ({tries} tries); {TIMEOUT_ADVICE}")
                } else {
                    self.scrubbed(error)
                };
                ApiError::Transport {
                    operation,
                    url,
                    detail,
                }
            }
            TryFailure::BrokenBody {
                status,
                received,
                expected,
                error,
            } => ApiError::BrokenAnswer {
                operation,
                url,
                status: status.as_u16(),
                received: amount(*received, *expected),
                detail: if error.is_timeout() {
                    format!(
                        "no byte for {:?} ({tries} tries); {TIMEOUT_ADVICE}",
                        self.policy.idle_timeout
                    )
                } else {
                    format!("{} ({tries} tries)", self.scrubbed(error))
                },
            },
        }
    }

    fn bad_secret(&self, operation: &str) -> ApiError {
        ApiError::Refused {
            operation: operation.to_owned(),
            status: 0,
            message: format!(
                "the {} from {} holds characters that cannot be sent in a header",
                self.credential.kind, self.credential.origin
            ),
            advice: "copy it again from https://e2b.dev/dashboard?tab=keys".into(),
        }
    }

    fn refused(&self, operation: &str, status: StatusCode, body: &[u8], flow: Flow) -> ApiError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| {
                String::from_utf8_lossy(body)
                    .trim()
                    .chars()
                    .take(300)
                    .collect()
            });
        let message = refusal::scrub(&message, &self.credential);
        let message = if message.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        } else {
            message
        };
        ApiError::Refused {
            operation: operation.to_owned(),
            status: status.as_u16(),
            advice: refusal::advice(status.as_u16(), &message, &self.credential, flow),
            message,
        }
    }
}

/// The header E2B reads an API key from.
const X_API_KEY: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("x-api-key");

/// A whole answer: status, headers (for `Retry-After`) and body.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// Why one try got no whole answer.
enum TryFailure {
    /// Not connected, not sent, or no status line came.
    Unanswered(reqwest::Error),
    /// The status and headers came; the body stopped after `received` bytes.
    BrokenBody {
        status: StatusCode,
        received: usize,
        /// The body's `Content-Length`, when the answer gave one.
        expected: Option<u64>,
        error: reqwest::Error,
    },
}

impl TryFailure {
    fn error(&self) -> &reqwest::Error {
        match self {
            TryFailure::Unanswered(error) | TryFailure::BrokenBody { error, .. } => error,
        }
    }
}

/// `12 of 4096 bytes`, or `12 bytes` when the length was not announced.
fn amount(received: usize, expected: Option<u64>) -> String {
    match expected {
        Some(expected) => format!("{received} of {expected} bytes"),
        None => format!("{received} bytes"),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8], operation: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadAnswer {
        operation: operation.to_owned(),
        detail: format!("not the JSON E2B sends ({e})"),
    })
}

fn redact_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}
