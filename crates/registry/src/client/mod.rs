//! `RegistryClient`: one registry, one credential; pings, authenticates, retries, re-authenticates
//! once on a 401, and keeps credentials on the registry's own origin.

mod auth;
mod errors;

use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode, Url};

use super::credentials::{CredentialEnv, CredentialSource, ResolvedCredential, resolve_credential};
use super::endpoint::base_url;
use super::error::{RegistryError, Result, credential_advice};
use super::reference::{Reference, api_host};
use super::transport::{Outgoing, ReplayableBody, SendFailure, Timeouts, send_following_redirects};
use crate::http::HttpPolicy;
use crate::http::retry::RetryDecision;
use auth::{AuthState, scope_covers};

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
    /// Timeouts and retries (a whole upload may take long; only a stall fails it).
    pub http: HttpPolicy,
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
            http: HttpPolicy::default(),
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
    pub(crate) fn push_and_mount(repository: &str, from: &str) -> Self {
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
        let http = settings
            .http
            .client_builder()
            .redirect(reqwest::redirect::Policy::none())
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

    #[cfg(test)]
    pub(crate) fn base_url(&self) -> &Url {
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
        Timeouts::of(&self.settings.http)
    }

    pub(crate) fn api_url(&self, path: &str) -> Result<Url> {
        self.base.join(&format!("v2/{path}")).map_err(|e| {
            RegistryError::ClientSetup(format!("cannot build a URL for {path:?}: {e}"))
        })
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
                    match self.settings.http.retry.after_status(
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
                        self.settings
                            .http
                            .retry
                            .after_transport_error(retry, &error)
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
                        self.settings.http.retry.after_timeout(retry)
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

    #[cfg(test)]
    /// True when this client reaches the registry over plain HTTP.
    pub(crate) fn is_plain_http(&self) -> bool {
        super::endpoint::uses_plain_http(api_host(&self.registry), &self.settings.insecure_hosts)
    }
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
