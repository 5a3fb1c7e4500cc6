//! Bearer tokens from a registry's token service (the `realm` of its challenge).
//!
//! Username/password and anonymous: `GET realm?service=…&scope=…` (Basic auth when we have
//! credentials). Identity tokens: OAuth2 `POST grant_type=refresh_token`, falling back to GET
//! when the service answers 404 (it has no OAuth2 endpoint). The answer's `token` or
//! `access_token` is used, and cached per scope set until shortly before `expires_in` runs out.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::credentials::{Credential, ResolvedCredential, basic_header};
use super::error::RegistryError;
use super::error::credential_advice;
use super::transport::{Outgoing, ReplayableBody, SendFailure, Timeouts, send_following_redirects};
use crate::http::retry::{RetryDecision, RetryPolicy};

/// The token lifetime the distribution spec tells clients to assume when none is given.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
const CLIENT_ID: &str = "dockless";

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    pub header: SecretString,
    pub expires_at: Instant,
}

impl Token {
    pub(crate) fn is_fresh(&self) -> bool {
        Instant::now() < self.expires_at
    }
}

/// What a token request needs to know.
pub(crate) struct TokenRequest<'a> {
    pub registry: &'a str,
    pub realm: &'a str,
    pub service: Option<&'a str>,
    pub scopes: &'a [String],
    pub credential: &'a ResolvedCredential,
    pub retry: &'a RetryPolicy,
    pub timeouts: Timeouts,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Fetches a token for `scopes`.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    request: &TokenRequest<'_>,
) -> Result<Token, RegistryError> {
    let realm = Url::parse(request.realm).map_err(|_| RegistryError::BadTokenResponse {
        registry: request.registry.to_string(),
        realm: request.realm.to_string(),
        detail: "the realm in the registry's challenge is not a URL".into(),
    })?;
    let started = Instant::now();
    let response = match &request.credential.credential {
        Credential::IdentityToken { username, token } => {
            let response =
                send_with_retry(http, request, oauth_post(&realm, request, token)).await?;
            if response.status() == StatusCode::NOT_FOUND {
                tracing::debug!(realm = %realm, "token service has no OAuth2 endpoint; using GET");
                let user = username.as_deref().unwrap_or("<token>");
                let basic = basic_header(user, token);
                send_with_retry(http, request, get_request(&realm, request, Some(basic))).await?
            } else {
                response
            }
        }
        Credential::Basic { username, password } => {
            let basic = basic_header(username, password);
            send_with_retry(http, request, get_request(&realm, request, Some(basic))).await?
        }
        Credential::Anonymous | Credential::RegistryToken(_) => {
            send_with_retry(http, request, get_request(&realm, request, None)).await?
        }
    };
    read_token(response, request, started).await
}

/// A token request before it is sent: method, URL, headers, body, Basic credentials.
struct PreparedRequest {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<ReplayableBody>,
    basic: Option<SecretString>,
}

fn get_request(
    realm: &Url,
    request: &TokenRequest<'_>,
    basic: Option<SecretString>,
) -> PreparedRequest {
    let mut url = realm.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = request.service {
            query.append_pair("service", service);
        }
        for scope in request.scopes {
            query.append_pair("scope", scope);
        }
        if let Credential::Basic { username, .. } = &request.credential.credential {
            query.append_pair("account", username);
        }
    }
    PreparedRequest {
        method: Method::GET,
        url,
        headers: HeaderMap::new(),
        body: None,
        basic,
    }
}

fn oauth_post(realm: &Url, request: &TokenRequest<'_>, token: &SecretString) -> PreparedRequest {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "refresh_token");
    form.append_pair("refresh_token", token.expose_secret());
    form.append_pair("client_id", CLIENT_ID);
    if let Some(service) = request.service {
        form.append_pair("service", service);
    }
    if !request.scopes.is_empty() {
        form.append_pair("scope", &request.scopes.join(" "));
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    PreparedRequest {
        method: Method::POST,
        url: realm.clone(),
        headers,
        body: Some(ReplayableBody::bytes(form.finish().into_bytes().into())),
        basic: None,
    }
}

async fn send_with_retry(
    http: &reqwest::Client,
    request: &TokenRequest<'_>,
    prepared: PreparedRequest,
) -> Result<Response, RegistryError> {
    let transport_error = |detail: String| RegistryError::Transport {
        registry: request.registry.to_string(),
        operation: format!(
            "token request to {}",
            prepared.url.origin().ascii_serialization()
        ),
        detail,
        hint: "",
    };
    let mut retry = 0;
    loop {
        let outgoing = Outgoing {
            method: prepared.method.clone(),
            url: prepared.url.clone(),
            headers: prepared.headers.clone(),
            body: prepared.body.as_ref(),
            // The realm is where the registry told us to authenticate: credentials go there
            // (and to nowhere it redirects).
            authorization: prepared.basic.as_ref().map(|b| (b, &prepared.url)),
            timeouts: request.timeouts,
        };
        let decision = match send_following_redirects(http, outgoing).await {
            Ok(response) => {
                let decision =
                    request
                        .retry
                        .after_status(retry, response.status(), response.headers());
                if decision == RetryDecision::GiveUp {
                    return Ok(response);
                }
                decision
            }
            Err(SendFailure::Http(error)) => {
                match request.retry.after_transport_error(retry, &error) {
                    RetryDecision::GiveUp => return Err(transport_error(error.to_string())),
                    decision => decision,
                }
            }
            Err(SendFailure::TimedOut(detail)) => match request.retry.after_timeout(retry) {
                RetryDecision::GiveUp => return Err(transport_error(detail)),
                decision => decision,
            },
            Err(SendFailure::Body(error)) => return Err(error),
            Err(SendFailure::BadLocation(location)) => {
                return Err(transport_error(format!(
                    "redirected to unusable {location:?}"
                )));
            }
            Err(SendFailure::TooManyRedirects) => {
                return Err(transport_error("too many redirects".into()));
            }
        };
        if let RetryDecision::RetryAfter(wait) = decision {
            tracing::debug!(retry, ?wait, "token request failed; retrying");
            tokio::time::sleep(wait).await;
        }
        retry += 1;
    }
}

async fn read_token(
    response: Response,
    request: &TokenRequest<'_>,
    started: Instant,
) -> Result<Token, RegistryError> {
    let status = response.status();
    let read_error = |detail: String| RegistryError::Transport {
        registry: request.registry.to_string(),
        operation: "reading the token answer".into(),
        detail,
        hint: "",
    };
    let body = tokio::time::timeout(request.timeouts.stall, response.bytes())
        .await
        .map_err(|_| read_error("it stalled".into()))?
        .map_err(|e| read_error(e.to_string()))?;
    if !status.is_success() {
        return Err(RegistryError::TokenDenied {
            registry: request.registry.to_string(),
            realm: request.realm.to_string(),
            status: status.as_u16(),
            detail: scrub(&token_error_detail(&body), request.credential),
            advice: credential_advice(request.registry, &request.credential.source),
        });
    }
    let bad = |detail: &str| RegistryError::BadTokenResponse {
        registry: request.registry.to_string(),
        realm: request.realm.to_string(),
        detail: detail.to_string(),
    };
    let answer: TokenAnswer =
        serde_json::from_slice(&body).map_err(|_| bad("the answer is not JSON"))?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| bad("it has neither \"token\" nor \"access_token\""))?;
    // A day at most: a bogus huge `expires_in` must not overflow the clock arithmetic.
    let lifetime = answer
        .expires_in
        .filter(|s| *s > 0)
        .map_or(DEFAULT_LIFETIME, Duration::from_secs)
        .min(MAX_LIFETIME);
    // Stop using a token a little before it expires, so that a request is not sent with a token
    // that dies in flight; short-lived tokens keep most of their life.
    let margin = (lifetime / 10).min(Duration::from_secs(30));
    Ok(Token {
        header: format!("Bearer {token}").into(),
        expires_at: started + lifetime - margin,
    })
}

/// The useful part of a token service's error answer.
fn token_error_detail(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => ["details", "error_description", "error", "message"]
            .iter()
            .find_map(|key| value.get(key).and_then(|v| v.as_str()).map(str::to_string))
            .unwrap_or_else(|| {
                super::error::registry_error_detail(body)
                    .trim_start_matches(": ")
                    .to_string()
            }),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    let short: String = text.chars().take(200).collect();
    if short.is_empty() {
        String::new()
    } else {
        format!(": {short}")
    }
}

/// Removes our own secret from text a server sent back, in case it echoes it.
fn scrub(text: &str, credential: &ResolvedCredential) -> String {
    let secret = match &credential.credential {
        Credential::Basic { password, .. } => password.expose_secret(),
        Credential::IdentityToken { token, .. } => token.expose_secret(),
        Credential::RegistryToken(token) => token.expose_secret(),
        Credential::Anonymous => return text.to_string(),
    };
    if secret.len() < 3 {
        return text.to_string();
    }
    text.replace(secret, "<redacted>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::CredentialSource;

    #[test]
    fn error_details_are_short_and_scrubbed() {
        assert_eq!(
            token_error_detail(br#"{"details":"incorrect username or password"}"#),
            ": incorrect username or password"
        );
        assert_eq!(token_error_detail(b""), "");
        let credential = ResolvedCredential {
            credential: Credential::Basic {
                username: "u".into(),
                password: "hunter22".to_string().into(),
            },
            source: CredentialSource::Explicit,
        };
        assert_eq!(
            scrub("bad password hunter22", &credential),
            "bad password <redacted>"
        );
    }

    #[test]
    fn get_requests_carry_service_scopes_and_keep_the_realm_query() {
        let realm = Url::parse("https://auth.example/token?x=1").unwrap();
        let credential = ResolvedCredential::anonymous();
        let scopes = vec![
            "repository:a:push,pull".to_string(),
            "repository:b:pull".to_string(),
        ];
        let request = TokenRequest {
            registry: "r",
            realm: realm.as_str(),
            service: Some("svc"),
            scopes: &scopes,
            credential: &credential,
            retry: &RetryPolicy::default(),
            timeouts: Timeouts {
                stall: std::time::Duration::from_secs(1),
                response: std::time::Duration::from_secs(1),
            },
        };
        let prepared = get_request(&realm, &request, None);
        assert_eq!(
            prepared.url.as_str(),
            "https://auth.example/token?x=1&service=svc&scope=repository%3Aa%3Apush%2Cpull&scope=repository%3Ab%3Apull"
        );
    }
}
