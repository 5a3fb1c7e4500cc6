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
}

pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    credential: E2bCredential,
    policy: HttpPolicy,
}

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

    pub async fn create_template_v3(
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

    pub async fn start_build_v2(
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
    pub async fn create_template_legacy(
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

    /// `POST /templates/{templateID}/builds/{buildID}`, tried up to three times (E2B's load
    /// balancer drops long-lived connections, as its CLI learnt).
    pub async fn start_build_legacy(
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

    /// `GET /templates`: the team's templates.
    pub async fn list_templates(&self) -> Result<Vec<TemplateSummary>, ApiError> {
        let answer = self
            .send(
                Method::GET,
                "templates",
                None,
                "list templates (GET /templates)",
                Flow::Either,
                self.retried(),
            )
            .await?;
        parse(&answer, "list templates")
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
    pub async fn build_status_at(
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
        let url = self.base.join(path).map_err(|e| ApiError::BadAnswer {
            operation: operation.to_owned(),
            detail: format!("cannot build a URL for {path}: {e}"),
        })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.request(method.clone(), url.clone());
            request = match self.credential.kind {
                CredentialKind::ApiKey => {
                    let mut value = HeaderValue::from_str(self.credential.secret().expose_secret())
                        .map_err(|_| self.bad_secret(operation))?;
                    value.set_sensitive(true);
                    request.header("X-API-Key", value)
                }
                CredentialKind::AccessToken => {
                    let mut value = HeaderValue::from_str(&format!(
                        "Bearer {}",
                        self.credential.secret().expose_secret()
                    ))
                    .map_err(|_| self.bad_secret(operation))?;
                    value.set_sensitive(true);
                    request.header(AUTHORIZATION, value)
                }
            };
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            } else if method == Method::POST {
                request = request.header(reqwest::header::CONTENT_LENGTH, 0);
            }
            tracing::debug!(%method, path = url.path(), attempt, "E2B API request");
            let retry = attempt - 1;
            let last = attempt >= attempts;
            let (decision, reason) = match self.exchange(request).await {
                Ok((status, bytes)) => {
                    tracing::debug!(
                        status = status.as_u16(),
                        path = url.path(),
                        "E2B API answer"
                    );
                    if status.is_success() {
                        return Ok(bytes.body);
                    }
                    let decision = self
                        .policy
                        .retry
                        .after_status(retry, status, &bytes.headers);
                    if last || decision == RetryDecision::GiveUp {
                        return Err(self.refused(operation, status, &bytes.body, flow));
                    }
                    (decision, format!("HTTP {status}"))
                }
                Err(error) => {
                    let decision = self.policy.retry.after_transport_error(retry, &error);
                    if last || decision == RetryDecision::GiveUp {
                        return Err(self.transport_error(operation, &url, &error, attempt));
                    }
                    (decision, self.scrubbed(&error))
                }
            };
            tracing::warn!(operation, attempt, %reason, "E2B API request failed; trying again");
            if let RetryDecision::RetryAfter(wait) = decision {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Sends once and reads the whole answer (a body that breaks off is a failed try, not an
    /// empty answer).
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Answer), reqwest::Error> {
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok((status, Answer { headers, body }))
    }

    fn scrubbed(&self, error: &reqwest::Error) -> String {
        refusal::scrub(
            &dockless_registry::with_causes(error.to_string(), error),
            &self.credential,
        )
    }

    fn transport_error(
        &self,
        operation: &str,
        url: &Url,
        error: &reqwest::Error,
        tries: u32,
    ) -> ApiError {
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
            operation: operation.to_owned(),
            url: redact_query(url),
            detail,
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

/// An answer's headers (for `Retry-After`) and body.
struct Answer {
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
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
