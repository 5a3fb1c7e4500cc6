//! Authentication: the ping that learns the challenge, the `Authorization` header for a
//! scope (Basic, a cached bearer token, or a fetched one), and forgetting a refused token.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;

use super::{RegistryClient, Scope};
use crate::challenge::{AuthScheme, Challenge, parse_challenges, preferred_challenge};
use crate::credentials::{Credential, basic_header};
use crate::error::{RegistryError, Result};
use crate::http::retry::RetryDecision;
use crate::token::{Token, TokenRequest, fetch_token};
use crate::transport::{Outgoing, SendFailure, send_following_redirects};

#[derive(Default)]
pub(super) struct AuthState {
    pinged: bool,
    /// The ping found the registry unreachable: every later request fails the same way at
    /// once, rather than each waiting out the timeouts again.
    unreachable: Option<RegistryError>,
    /// `None`: the registry asked for no authentication (so far).
    challenge: Option<Challenge>,
    /// Tokens by scope set, each with the number it was issued under.
    tokens: HashMap<String, (u64, Token)>,
    issued: u64,
}

/// The `Authorization` value for one try, and which cached token it was (if any).
pub(super) struct Authorization {
    pub(super) header: Option<SecretString>,
    pub(super) token_number: Option<u64>,
}

impl RegistryClient {
    /// Checks that the registry answers `GET /v2/` and learns how it wants to be authenticated.
    pub async fn ping(&self) -> Result<()> {
        let mut state = self.auth.lock().await;
        if let Some(unreachable) = &state.unreachable {
            return Err(unreachable.again());
        }
        if !state.pinged {
            match self.discover_challenge().await {
                Ok(challenge) => state.challenge = challenge,
                Err(error) => {
                    if matches!(error, RegistryError::Transport { .. }) {
                        state.unreachable = Some(error.again());
                    }
                    return Err(error);
                }
            }
            state.pinged = true;
        }
        Ok(())
    }

    async fn discover_challenge(&self) -> Result<Option<Challenge>> {
        let url = self.api_url("")?;
        let mut retry = 0;
        loop {
            let outgoing = Outgoing {
                method: Method::GET,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: None,
                authorization: None,
                timeouts: self.timeouts(),
            };
            let response = match send_following_redirects(&self.http, outgoing).await {
                Ok(response) => response,
                Err(SendFailure::Http(error)) => {
                    if let RetryDecision::RetryAfter(wait) = self
                        .settings
                        .http
                        .retry
                        .after_transport_error(retry, &error)
                    {
                        tokio::time::sleep(wait).await;
                        retry += 1;
                        continue;
                    }
                    return Err(self.transport_error("GET /v2/", &error));
                }
                Err(SendFailure::TimedOut(detail)) => {
                    if let RetryDecision::RetryAfter(wait) =
                        self.settings.http.retry.after_timeout(retry)
                    {
                        tokio::time::sleep(wait).await;
                        retry += 1;
                        continue;
                    }
                    let tries = retry + 1;
                    return Err(self.timeout_error("GET /v2/", format!("{detail} ({tries} tries)")));
                }
                Err(failure) => return Err(self.send_failure_error("GET /v2/", failure)),
            };
            let status = response.status();
            if status.is_success() {
                tracing::debug!(registry = %self.registry, "registry needs no authentication");
                return Ok(None);
            }
            if status == StatusCode::UNAUTHORIZED {
                let challenge =
                    challenge_of(&response).ok_or_else(|| RegistryError::UnsupportedChallenge {
                        registry: self.registry.clone(),
                        challenge: header_text(&response),
                    })?;
                tracing::debug!(registry = %self.registry, scheme = ?challenge.scheme, "registry asks for authentication");
                return Ok(Some(challenge));
            }
            if let RetryDecision::RetryAfter(wait) =
                self.settings
                    .http
                    .retry
                    .after_status(retry, status, response.headers())
            {
                tokio::time::sleep(wait).await;
                retry += 1;
                continue;
            }
            return Err(RegistryError::UnexpectedStatus {
                registry: self.registry.clone(),
                operation: "GET /v2/".into(),
                status: status.as_u16(),
                detail: String::new(),
                hint: "; is this address an OCI registry?",
            });
        }
    }

    /// The `Authorization` value for `scope`, fetching a token when needed.
    pub(super) async fn authorization(&self, scope: &Scope) -> Result<Authorization> {
        let header = |header: Option<SecretString>| Authorization {
            header,
            token_number: None,
        };
        let mut state = self.auth.lock().await;
        let Some(challenge) = state.challenge.clone() else {
            return Ok(header(None));
        };
        match (&challenge.scheme, &self.credential.credential) {
            (_, Credential::RegistryToken(token)) => {
                use secrecy::ExposeSecret;
                Ok(header(Some(
                    format!("Bearer {}", token.expose_secret()).into(),
                )))
            }
            (AuthScheme::Basic, Credential::Basic { username, password }) => {
                Ok(header(Some(basic_header(username, password))))
            }
            (AuthScheme::Basic, Credential::IdentityToken { username, token }) => Ok(header(Some(
                basic_header(username.as_deref().unwrap_or("<token>"), token),
            ))),
            (AuthScheme::Basic, Credential::Anonymous) => Ok(header(None)),
            (AuthScheme::Bearer, _) => {
                let key = scope.cache_key();
                if let Some((number, token)) = state.tokens.get(&key).filter(|(_, t)| t.is_fresh())
                {
                    return Ok(Authorization {
                        header: Some(token.header.clone()),
                        token_number: Some(*number),
                    });
                }
                let realm = challenge.realm().unwrap_or_default();
                let token = fetch_token(
                    &self.http,
                    &TokenRequest {
                        registry: &self.registry,
                        realm,
                        service: challenge.service(),
                        scopes: &scope.scopes,
                        credential: &self.credential,
                        retry: &self.settings.http.retry,
                        timeouts: self.timeouts(),
                    },
                )
                .await?;
                tracing::debug!(registry = %self.registry, scope = %key, "got a token");
                state.issued += 1;
                let number = state.issued;
                let header = token.header.clone();
                state.tokens.insert(key, (number, token));
                Ok(Authorization {
                    header: Some(header),
                    token_number: Some(number),
                })
            }
            (AuthScheme::Other(name), _) => Err(RegistryError::UnsupportedChallenge {
                registry: self.registry.clone(),
                challenge: name.clone(),
            }),
        }
    }

    /// After a 401: drop the token that was refused (unless a concurrent request already
    /// replaced it) and take the challenge the registry sent now (it may differ from the
    /// ping's, e.g. when `/v2/` was open but the repository is not).
    /// Returns the scopes the new challenge asks for, to add to the next token request.
    pub(super) async fn forget_token(
        &self,
        scope: &Scope,
        refused: Option<u64>,
        response: &Response,
    ) -> Vec<String> {
        let mut state = self.auth.lock().await;
        let key = scope.cache_key();
        if state.tokens.get(&key).map(|(number, _)| *number) == refused {
            state.tokens.remove(&key);
        }
        let Some(challenge) = challenge_of(response) else {
            return Vec::new();
        };
        let asked = challenge.scopes();
        state.challenge = Some(challenge);
        asked
    }
}

/// Whether `scopes` already grant what `asked` names (`type:name:actions`, actions in any
/// order): distribution's 401s repeat our scope as `pull,push`.
pub(super) fn scope_covers(scopes: &[String], asked: &str) -> bool {
    let split = |scope: &str| {
        scope
            .rsplit_once(':')
            .map(|(resource, actions)| (resource.to_string(), actions.to_string()))
    };
    let Some((resource, actions)) = split(asked) else {
        return scopes.iter().any(|s| s == asked);
    };
    scopes
        .iter()
        .filter_map(|s| split(s))
        .any(|(ours, granted)| {
            ours == resource
                && actions
                    .split(',')
                    .all(|action| granted.split(',').any(|g| g == action || g == "*"))
        })
}

fn challenge_of(response: &Response) -> Option<Challenge> {
    let challenges: Vec<Challenge> = response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect();
    preferred_challenge(&challenges).cloned()
}

fn header_text(response: &Response) -> String {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(no WWW-Authenticate header)")
        .to_string()
}
