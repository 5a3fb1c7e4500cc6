//! Docker / podman auth files: `auths`, `credHelpers` and `credsStore`, and how their keys match a registry.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::helper::run_helper;
use super::{Credential, CredentialEnv, CredentialError, CredentialSource, ResolvedCredential};
use crate::reference::normalize_registry;

#[derive(Deserialize, Default)]
pub(super) struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry. No `Debug`: it holds secrets as plain strings until wrapped.
#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

impl AuthFile {
    pub(super) fn load(path: &Path) -> Result<Option<Self>, CredentialError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(Some(Self::default()));
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CredentialError::Parse {
                path: path.to_path_buf(),
                category: match e.classify() {
                    serde_json::error::Category::Io => "read",
                    serde_json::error::Category::Syntax => "syntax",
                    serde_json::error::Category::Data => "data",
                    serde_json::error::Category::Eof => "unexpected end",
                },
                line: e.line(),
                column: e.column(),
            })
    }

    pub(super) fn lookup(
        &self,
        registry: &str,
        repository: &str,
        path: &Path,
        source: CredentialSource,
        env: &CredentialEnv,
    ) -> Result<Option<ResolvedCredential>, CredentialError> {
        if let Some(helper) = best_match(self.cred_helpers.keys(), registry, repository)
            .and_then(|key| self.cred_helpers.get(key))
            && let Some(found) = run_helper(helper, registry, path, env)?
        {
            return Ok(Some(found));
        }
        if let Some(key) = best_match(
            self.auths
                .iter()
                .filter(|(_, entry)| entry.has_secret())
                .map(|(key, _)| key),
            registry,
            repository,
        ) && let Some(entry) = self.auths.get(key)
            && let Some(credential) = entry.credential(key, path)?
        {
            return Ok(Some(ResolvedCredential { credential, source }));
        }
        if let Some(store) = &self.creds_store
            && !store.is_empty()
            && let Some(found) = run_helper(store, registry, path, env)?
        {
            return Ok(Some(found));
        }
        Ok(None)
    }
}

impl AuthEntry {
    fn has_secret(&self) -> bool {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        set(&self.auth)
            || set(&self.password)
            || set(&self.identitytoken)
            || set(&self.registrytoken)
    }

    fn credential(&self, key: &str, path: &Path) -> Result<Option<Credential>, CredentialError> {
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        if let Some(token) = non_empty(&self.registrytoken) {
            return Ok(Some(Credential::RegistryToken(token.into())));
        }
        let (mut username, mut password) = (non_empty(&self.username), non_empty(&self.password));
        if let Some(auth) = non_empty(&self.auth) {
            let bad = || CredentialError::BadAuthField {
                path: path.to_path_buf(),
                key: key.to_string(),
            };
            let decoded = BASE64.decode(auth.trim()).map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
            username = Some(user.to_string());
            password = Some(pass.to_string());
        }
        if let Some(token) = non_empty(&self.identitytoken) {
            return Ok(Some(Credential::IdentityToken {
                username,
                token: token.into(),
            }));
        }
        Ok(match (username, password) {
            (Some(username), Some(password)) => Some(Credential::Basic {
                username,
                password: password.into(),
            }),
            _ => None,
        })
    }
}

/// Normalises a config key the way Docker and containers/image do: no scheme, no trailing
/// `/v1/` or `/v2/`, Docker Hub's many names as `docker.io`.
pub(super) fn normalize_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let trimmed = without_scheme.trim_end_matches('/');
    let trimmed = trimmed
        .strip_suffix("/v1")
        .or_else(|| trimmed.strip_suffix("/v2"))
        .unwrap_or(trimmed);
    match trimmed.split_once('/') {
        Some((host, path)) => format!("{}/{path}", normalize_registry(host)),
        None => normalize_registry(trimmed),
    }
}

/// The most specific key matching the registry (`host`) or one of the repository's namespaces
/// (`host/org`, `host/org/repo`, as podman allows).
fn best_match<'a>(
    keys: impl Iterator<Item = &'a String>,
    registry: &str,
    repository: &str,
) -> Option<&'a String> {
    let full = format!("{registry}/{repository}");
    keys.filter_map(|key| {
        let normalized = normalize_key(key);
        let matches = normalized == registry
            || (full.starts_with(&normalized)
                && full.as_bytes().get(normalized.len()) == Some(&b'/'))
            || normalized == full;
        matches.then_some((normalized.len(), key))
    })
    .max_by_key(|(len, _)| *len)
    .map(|(_, key)| key)
}
