//! Errors of the registry client. Each names the registry, the repository or digest at fault
//! and, where there is one, what to do about it. None carries a secret.

use std::path::PathBuf;

use super::credentials::{CredentialError, CredentialSource};
use super::reference::ReferenceError;
use dockless_oci::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    #[error(transparent)]
    Credentials(#[from] CredentialError),

    #[error(
        "cannot reach registry {registry} ({operation}): {detail}; check the address and network{hint}"
    )]
    Transport {
        registry: String,
        operation: String,
        detail: String,
        hint: &'static str,
    },

    #[error(
        "registry {registry} refused access to {repository} (HTTP 401 after authenticating): {advice}"
    )]
    Unauthorized {
        registry: String,
        repository: String,
        advice: String,
    },

    #[error("registry {registry} denied {operation} on {repository} (HTTP 403{detail}): {advice}")]
    Denied {
        registry: String,
        repository: String,
        operation: String,
        detail: String,
        advice: String,
    },

    #[error(
        "token service {realm} for registry {registry} answered HTTP {status}{detail}; {advice}"
    )]
    TokenDenied {
        registry: String,
        realm: String,
        status: u16,
        detail: String,
        advice: String,
    },

    #[error(
        "token service {realm} for registry {registry} answered with no usable token: {detail}"
    )]
    BadTokenResponse {
        registry: String,
        realm: String,
        detail: String,
    },

    #[error(
        "registry {registry} asks for authentication in a way dockless does not support: {challenge:?}"
    )]
    UnsupportedChallenge { registry: String, challenge: String },

    #[error(
        "repository {repository} does not exist on {registry}{detail}; check the name, or create it first where the registry requires that (e.g. ECR)"
    )]
    RepositoryNotFound {
        registry: String,
        repository: String,
        detail: String,
    },

    #[error("{what} {reference} not found in {registry}/{repository}")]
    NotFound {
        registry: String,
        repository: String,
        what: &'static str,
        reference: String,
    },

    #[error(
        "{what} from {registry}/{repository} does not match its digest: expected {expected}, got \
         {actual}; the registry or a proxy altered the content"
    )]
    DigestMismatch {
        registry: String,
        repository: String,
        what: String,
        /// Text, not [`Digest`]: one side may be what a registry answered, unchecked.
        expected: String,
        actual: String,
    },

    #[error(
        "blob {digest} has {actual} bytes but {expected} were announced (source: {source_desc})"
    )]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
        source_desc: String,
    },

    #[error("registry {registry} answered {operation} with HTTP {status}{detail}{hint}")]
    UnexpectedStatus {
        registry: String,
        operation: String,
        status: u16,
        detail: String,
        hint: &'static str,
    },

    #[error("registry {registry} sent an unusable Location {location:?} for {operation}")]
    BadLocation {
        registry: String,
        operation: String,
        location: String,
    },

    #[error("registry {registry} redirected {operation} more than {limit} times")]
    TooManyRedirects {
        registry: String,
        operation: String,
        limit: usize,
    },

    #[error("cannot read {path} to upload blob {digest}: {source}")]
    ReadBlob {
        path: PathBuf,
        digest: Digest,
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot set up the HTTP client: {0}")]
    ClientSetup(String),

    #[error("invalid push request for {reference}: {reason}")]
    InvalidPush { reference: String, reason: String },
}

impl RegistryError {
    /// The same failure for another caller, when it is one that holds only text (an
    /// unreachable registry); any other error comes back as its message alone.
    pub(crate) fn again(&self) -> Self {
        match self {
            RegistryError::Transport {
                registry,
                operation,
                detail,
                hint,
            } => RegistryError::Transport {
                registry: registry.clone(),
                operation: operation.clone(),
                detail: detail.clone(),
                hint,
            },
            other => RegistryError::ClientSetup(other.to_string()),
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Pulls the `errors[].code` / `message` out of a registry's JSON error body, shortened, for the
/// `detail` of an error message. Registry error bodies carry no secrets.
pub(crate) fn registry_error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_slice::<Body>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    let short: String = text.chars().take(300).collect();
    if short.is_empty() {
        String::new()
    } else {
        format!(": {short}")
    }
}

/// The first `errors[].code` of a registry error body, for decisions (e.g. `NAME_UNKNOWN`).
pub(crate) fn registry_error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get("errors")?
        .get(0)?
        .get("code")?
        .as_str()
        .map(str::to_string)
}

/// What to tell the user after an authentication failure.
pub fn credential_advice(registry: &str, source: &CredentialSource) -> String {
    match source {
        CredentialSource::Anonymous => format!(
            "no credentials were found for {registry}: give a username and password, or log in \
             with docker or podman"
        ),
        source => format!("check the credentials for {registry} (found in {source})"),
    }
}

/// `top` (an error's own message, perhaps redacted) followed by the error's causes, as HTTP
/// clients nest them ("error sending request: connection reset").
pub fn with_causes(top: String, error: &dyn std::error::Error) -> String {
    let mut text = top;
    let mut source = error.source();
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
    fn error_bodies_become_short_details() {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#;
        assert_eq!(
            registry_error_detail(body),
            ": NAME_UNKNOWN: repository name not known to registry"
        );
        assert_eq!(registry_error_code(body).as_deref(), Some("NAME_UNKNOWN"));
        assert_eq!(registry_error_detail(b""), "");
        assert_eq!(registry_error_detail(b"plain text\n"), ": plain text");
        assert_eq!(registry_error_code(b"not json"), None);
    }

    #[test]
    fn unauthorized_says_where_the_credentials_came_from() {
        let err = RegistryError::Unauthorized {
            registry: "127.0.0.1:5000".into(),
            repository: "app".into(),
            advice: credential_advice(
                "127.0.0.1:5000",
                &crate::credentials::CredentialSource::Explicit,
            ),
        };
        let text = err.to_string();
        assert!(
            text.contains("check the credentials for 127.0.0.1:5000"),
            "{text}"
        );
        assert!(text.contains("the username and password given"), "{text}");
    }

    #[test]
    fn advice_names_the_source_or_says_none_was_found() {
        let anonymous = credential_advice("r.io", &CredentialSource::Anonymous);
        assert!(
            anonymous.contains("no credentials were found for r.io"),
            "{anonymous}"
        );
        let explicit = credential_advice("r.io", &CredentialSource::Explicit);
        assert!(
            explicit.contains("check the credentials for r.io"),
            "{explicit}"
        );
    }
}
