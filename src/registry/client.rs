//! `RegistryClient`: one registry, one credential; pings, authenticates, retries, re-authenticates
//! once on a 401, and keeps credentials on the registry's own origin.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use secrecy::SecretString;

use super::challenge::{AuthScheme, Challenge, parse_challenges, preferred_challenge};
use super::credentials::{
    Credential, CredentialEnv, CredentialSource, ResolvedCredential, basic_header,
    resolve_credential,
};
use super::endpoint::{base_url, uses_plain_http};
use super::error::credential_advice;
use super::error::{RegistryError, Result, registry_error_code, registry_error_detail};
use super::reference::{Reference, api_host};
use super::retry::{RetryDecision, RetryPolicy};
use super::token::{Token, TokenRequest, fetch_token};
use super::transport::{
    Outgoing, ReplayableBody, SendFailure, Timeouts, next_chunk, send_following_redirects,
};

/// How the client talks to registries. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Hosts (`host` or `host:port`) reached over plain HTTP; loopback always is.
    pub insecure_hosts: Vec<String>,
    /// Upload blobs in PATCH chunks of this size (raised to the registry's
    /// `OCI-Chunk-Min-Length`); `None` uploads each blob in one PUT.
    pub chunk_size: Option<u64>,
    /// Blobs uploaded at the same time.
    pub max_concurrent_uploads: usize,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// A try fails when its upload takes no bytes, or its answer sends none, for this long (a
    /// whole upload may take much longer; only a stall fails it).
    pub stall_timeout: Duration,
    /// A try fails when no answer starts this long after the request was sent (registries
    /// verify a big blob before answering the final PUT).
    pub response_timeout: Duration,
    pub user_agent: String,
    /// Try cross-repository mounts before uploading. Off for registries whose tokens are bound
    /// to one repository (E2B's gateway), where a mount can only fail.
    pub cross_repository_mounts: bool,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            insecure_hosts: Vec::new(),
            chunk_size: None,
            max_concurrent_uploads: 4,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            response_timeout: Duration::from_secs(300),
            user_agent: format!("dockless/{}", env!("CARGO_PKG_VERSION")),
            cross_repository_mounts: true,
        }
    }
}

/// The access a request needs, as token scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    repository: String,
    scopes: Vec<String>,
}

impl Scope {
    pub fn pull(repository: &str) -> Self {
        Self {
            repository: repository.to_string(),
            scopes: vec![format!("repository:{repository}:pull")],
        }
    }

    pub fn push(repository: &str) -> Self {
        Self {
            repository: repository.to_string(),
            scopes: vec![format!("repository:{repository}:push,pull")],
        }
    }

    /// Push to `repository` and read `from`, as a cross-repository mount needs.
    pub fn push_and_mount(repository: &str, from: &str) -> Self {
        let mut scope = Self::push(repository);
        scope.scopes.push(format!("repository:{from}:pull"));
        scope
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    fn cache_key(&self) -> String {
        let mut sorted = self.scopes.clone();
        sorted.sort();
        sorted.join(" ")
    }
}

#[derive(Default)]
struct AuthState {
    pinged: bool,
    /// `None`: the registry asked for no authentication (so far).
    challenge: Option<Challenge>,
    /// Tokens by scope set, each with the number it was issued under.
    tokens: HashMap<String, (u64, Token)>,
    issued: u64,
}

/// The `Authorization` value for one try, and which cached token it was (if any).
struct Authorization {
    header: Option<SecretString>,
    token_number: Option<u64>,
}

/// One request through [`RegistryClient::send`].
pub(crate) struct RegistryRequest<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<&'a ReplayableBody>,
    pub scope: &'a Scope,
    /// For error messages: "HEAD blob sha256:…".
    pub operation: String,
    /// Retry transport failures and 408/429/5xx here. Off for requests inside an upload
    /// session, whose state after a failed body is unknown: the caller restarts the session.
    pub retry: bool,
}

/// A client for one registry with one credential.
pub struct RegistryClient {
    http: reqwest::Client,
    registry: String,
    base: Url,
    credential: ResolvedCredential,
    settings: RegistrySettings,
    auth: tokio::sync::Mutex<AuthState>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.registry)
            .field("base", &self.base.as_str())
            .field("credential_source", &self.credential.source)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for `registry` as written in references (`docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`).
    pub fn new(
        registry: &str,
        credential: ResolvedCredential,
        settings: RegistrySettings,
    ) -> Result<Self> {
        let host = api_host(registry);
        let base = base_url(host, &settings.insecure_hosts).map_err(|e| {
            RegistryError::ClientSetup(format!("registry address {host:?} is not usable: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(settings.user_agent.clone())
            .build()
            .map_err(|e| RegistryError::ClientSetup(e.to_string()))?;
        tracing::debug!(
            registry,
            url = %base,
            credentials = %credential.source,
            "registry client"
        );
        Ok(Self {
            http,
            registry: registry.to_string(),
            base,
            credential,
            settings,
            auth: tokio::sync::Mutex::new(AuthState::default()),
        })
    }

    /// A client for the registry of `reference`, with the credential found for it: `explicit`
    /// when given, else the first of the files in `env` (see [`resolve_credential`]).
    pub fn for_reference(
        reference: &Reference,
        explicit: Option<ResolvedCredential>,
        env: &CredentialEnv,
        settings: RegistrySettings,
    ) -> Result<Self> {
        let credential =
            resolve_credential(reference.registry(), reference.repository(), explicit, env)?;
        Self::new(reference.registry(), credential, settings)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// The credential in use (E2B's registry flow hands it on when the user asks).
    pub fn credential(&self) -> &ResolvedCredential {
        &self.credential
    }

    /// Where the credential in use came from (for `-v` logs; never the secret).
    pub fn credential_source(&self) -> &CredentialSource {
        &self.credential.source
    }

    /// `BASE/v2/<path>`.
    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            stall: self.settings.stall_timeout,
            response: self.settings.response_timeout,
        }
    }

    pub(crate) fn api_url(&self, path: &str) -> Result<Url> {
        self.base.join(&format!("v2/{path}")).map_err(|e| {
            RegistryError::ClientSetup(format!("cannot build a URL for {path:?}: {e}"))
        })
    }

    /// Checks that the registry answers `GET /v2/` and learns how it wants to be authenticated.
    pub async fn ping(&self) -> Result<()> {
        let mut state = self.auth.lock().await;
        if !state.pinged {
            state.challenge = self.discover_challenge().await?;
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
                    if let RetryDecision::RetryAfter(wait) =
                        self.settings.retry.after_transport_error(retry, &error)
                    {
                        tokio::time::sleep(wait).await;
                        retry += 1;
                        continue;
                    }
                    return Err(self.transport_error("GET /v2/", &error));
                }
                Err(SendFailure::TimedOut(detail)) => {
                    if let RetryDecision::RetryAfter(wait) =
                        self.settings.retry.after_timeout(retry)
                    {
                        tokio::time::sleep(wait).await;
                        retry += 1;
                        continue;
                    }
                    return Err(self.timeout_error("GET /v2/", detail));
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

    /// Sends with authentication, retries and one re-authentication on a 401.
    pub(crate) async fn send(&self, request: RegistryRequest<'_>) -> Result<Response> {
        self.ping().await?;
        let mut reauthenticated = false;
        let mut retry = 0;
        // Grows when a 401's challenge names scopes we did not ask for.
        let mut scope = request.scope.clone();
        loop {
            let authorization = self.authorization(&scope).await?;
            let outgoing = Outgoing {
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                body: request.body,
                authorization: authorization.header.as_ref().map(|a| (a, &self.base)),
                timeouts: self.timeouts(),
            };
            let decision = match send_following_redirects(&self.http, outgoing).await {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    if reauthenticated {
                        return Err(RegistryError::Unauthorized {
                            registry: self.registry.clone(),
                            repository: request.scope.repository.clone(),
                            advice: credential_advice(&self.registry, &self.credential.source),
                        });
                    }
                    tracing::debug!(operation = %request.operation, "401: authenticating again");
                    let asked = self
                        .forget_token(&scope, authorization.token_number, &response)
                        .await;
                    for extra in asked {
                        if !scope_covers(&scope.scopes, &extra) {
                            scope.scopes.push(extra);
                        }
                    }
                    reauthenticated = true;
                    continue;
                }
                Ok(response) => {
                    if !request.retry {
                        return Ok(response);
                    }
                    match self.settings.retry.after_status(
                        retry,
                        response.status(),
                        response.headers(),
                    ) {
                        RetryDecision::GiveUp => return Ok(response),
                        decision => {
                            tracing::debug!(
                                operation = %request.operation,
                                status = response.status().as_u16(),
                                retry,
                                "retrying"
                            );
                            decision
                        }
                    }
                }
                Err(SendFailure::Http(error)) => {
                    let decision = if request.retry {
                        self.settings.retry.after_transport_error(retry, &error)
                    } else {
                        RetryDecision::GiveUp
                    };
                    if decision == RetryDecision::GiveUp {
                        return Err(self.transport_error(&request.operation, &error));
                    }
                    tracing::debug!(operation = %request.operation, %error, retry, "retrying");
                    decision
                }
                Err(SendFailure::TimedOut(detail)) => {
                    let decision = if request.retry {
                        self.settings.retry.after_timeout(retry)
                    } else {
                        RetryDecision::GiveUp
                    };
                    if decision == RetryDecision::GiveUp {
                        return Err(self.timeout_error(&request.operation, detail));
                    }
                    tracing::debug!(operation = %request.operation, %detail, retry, "retrying");
                    decision
                }
                Err(failure) => return Err(self.send_failure_error(&request.operation, failure)),
            };
            if let RetryDecision::RetryAfter(wait) = decision {
                tokio::time::sleep(wait).await;
            }
            retry += 1;
        }
    }

    /// The `Authorization` value for `scope`, fetching a token when needed.
    async fn authorization(&self, scope: &Scope) -> Result<Authorization> {
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
                        retry: &self.settings.retry,
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
    async fn forget_token(
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

    /// Reads an unsuccessful response into the error that explains it.
    pub(crate) async fn error_for(
        &self,
        response: Response,
        operation: &str,
        repository: &str,
    ) -> RegistryError {
        let status = response.status();
        let body = read_error_body(response, self.settings.stall_timeout).await;
        let detail = registry_error_detail(&body);
        let code = registry_error_code(&body);
        match status.as_u16() {
            403 => RegistryError::Denied {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                operation: operation.to_string(),
                detail,
                advice: credential_advice(&self.registry, &self.credential.source),
            },
            404 if code.as_deref() == Some("NAME_UNKNOWN") => RegistryError::RepositoryNotFound {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                detail,
            },
            code => RegistryError::UnexpectedStatus {
                registry: self.registry.clone(),
                operation: format!("{operation} in {repository}"),
                status: code,
                detail,
                hint: match code {
                    413 => {
                        "; the body is too large for the registry or a proxy in front of it: set a chunk size"
                    }
                    416 => {
                        "; the registry rejected a chunk: set another chunk size, or none for one PUT"
                    }
                    411 => "; the registry wants a Content-Length",
                    _ => "",
                },
            },
        }
    }

    pub(crate) fn transport_error(&self, operation: &str, error: &reqwest::Error) -> RegistryError {
        let hint = if error.is_connect() && self.base.scheme() == "https" {
            "; if it serves plain HTTP, name it as an insecure registry"
        } else if error.is_timeout() {
            "; a timeout: try again, or raise the timeouts"
        } else {
            ""
        };
        // reqwest's message names the URL, which for object storage may carry a signature.
        let detail = match error.url() {
            Some(url) => error
                .to_string()
                .replace(url.as_str(), &super::transport::redact_query(url)),
            None => error.to_string(),
        };
        RegistryError::Transport {
            registry: self.registry.clone(),
            operation: operation.to_string(),
            detail: error_chain(error, detail),
            hint,
        }
    }

    pub(crate) fn timeout_error(&self, operation: &str, detail: String) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.clone(),
            operation: operation.to_string(),
            detail,
            hint: "; try again, or raise the timeouts",
        }
    }

    fn send_failure_error(&self, operation: &str, failure: SendFailure) -> RegistryError {
        match failure {
            SendFailure::TimedOut(detail) => self.timeout_error(operation, detail),
            SendFailure::Http(error) => self.transport_error(operation, &error),
            SendFailure::Body(error) => error,
            SendFailure::BadLocation(location) => RegistryError::BadLocation {
                registry: self.registry.clone(),
                operation: operation.to_string(),
                location,
            },
            SendFailure::TooManyRedirects => RegistryError::TooManyRedirects {
                registry: self.registry.clone(),
                operation: operation.to_string(),
                limit: 10,
            },
        }
    }

    /// True when this client reaches the registry over plain HTTP.
    pub fn is_plain_http(&self) -> bool {
        uses_plain_http(api_host(&self.registry), &self.settings.insecure_hosts)
    }
}

/// Whether `scopes` already grant what `asked` names (`type:name:actions`, actions in any
/// order): distribution's 401s repeat our scope as `pull,push`.
fn scope_covers(scopes: &[String], asked: &str) -> bool {
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

/// Reads at most 64 KiB of an error body (some proxies answer with whole HTML pages).
async fn read_error_body(mut response: Response, stall: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = next_chunk(&mut response, stall).await {
        body.extend_from_slice(&chunk);
        if body.len() > 64 * 1024 {
            body.truncate(64 * 1024);
            break;
        }
    }
    body
}

/// reqwest's top-level message plus its causes ("error sending request: connection reset").
fn error_chain(error: &reqwest::Error, top: String) -> String {
    let mut text = top;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_built_when_the_challenge_has_none() {
        assert_eq!(
            Scope::push("e2b/custom-envs/t1").scopes(),
            ["repository:e2b/custom-envs/t1:push,pull"]
        );
        assert_eq!(
            Scope::push_and_mount("a", "b").scopes(),
            ["repository:a:push,pull", "repository:b:pull"]
        );
        assert_eq!(Scope::pull("a").scopes(), ["repository:a:pull"]);
        assert_eq!(
            Scope::push_and_mount("a", "b").cache_key(),
            "repository:a:push,pull repository:b:pull"
        );
    }

    #[test]
    fn challenge_scopes_already_granted_are_not_asked_again() {
        let ours = Scope::push("team/app").scopes;
        assert!(scope_covers(&ours, "repository:team/app:pull,push"));
        assert!(scope_covers(&ours, "repository:team/app:pull"));
        assert!(!scope_covers(&ours, "repository:team/app:delete"));
        assert!(!scope_covers(&ours, "repository:other:pull"));
        assert!(!scope_covers(&ours, "registry:catalog:*"));
        assert!(!scope_covers(&ours, "odd"));
    }

    #[test]
    fn docker_hub_is_reached_through_its_api_host() {
        let client = RegistryClient::new(
            "docker.io",
            ResolvedCredential::anonymous(),
            RegistrySettings::default(),
        )
        .unwrap();
        assert_eq!(client.base_url().as_str(), "https://registry-1.docker.io/");
        assert!(!client.is_plain_http());
        let local = RegistryClient::new(
            "127.0.0.1:5000",
            ResolvedCredential::anonymous(),
            RegistrySettings::default(),
        )
        .unwrap();
        assert_eq!(local.base_url().as_str(), "http://127.0.0.1:5000/");
    }
}
