//! Finding the one credential to use for a registry.
//!
//! Sources, in order; the first that has credentials for the registry wins and is the only one
//! used: an explicit username + password, `REGISTRY_AUTH_FILE`, Docker's `config.json`
//! (`$DOCKER_CONFIG` or `~/.docker`), podman's `$XDG_RUNTIME_DIR/containers/auth.json`, then
//! anonymous. Within one file: a `credHelpers` entry for the host, then an `auths` entry that
//! holds a secret, then the default `credsStore` helper. A helper that is not installed or knows
//! nothing of the host is skipped with a warning (Docker Desktop configs copied into WSL name
//! `desktop`, which is often missing there).
//!
//! Secrets are held in [`SecretString`] from the moment they are read; error messages name files
//! and helpers, never values (serde's messages can quote input, so only positions are kept).

mod auth_file;
mod helper;

use std::fmt;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};

use super::reference::normalize_registry;
use auth_file::AuthFile;

/// What to authenticate with.
#[derive(Clone)]
pub enum Credential {
    Anonymous,
    Basic {
        username: String,
        password: SecretString,
    },
    /// An OAuth2 refresh token (`identitytoken` in Docker's config, `<token>` from a helper).
    IdentityToken {
        username: Option<String>,
        token: SecretString,
    },
    /// A ready bearer token (`registrytoken` in Docker's config), sent as is.
    RegistryToken(SecretString),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Anonymous => write!(f, "Anonymous"),
            Credential::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credential::IdentityToken { username, .. } => {
                write!(
                    f,
                    "IdentityToken {{ username: {username:?}, token: <redacted> }}"
                )
            }
            Credential::RegistryToken(_) => write!(f, "RegistryToken(<redacted>)"),
        }
    }
}

/// Where a credential came from, for `-v` logs and error messages (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Explicit,
    RegistryAuthFile(PathBuf),
    DockerConfig(PathBuf),
    CredentialHelper { helper: String, config: PathBuf },
    PodmanAuthFile(PathBuf),
    Anonymous,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Explicit => write!(f, "the username and password given"),
            CredentialSource::RegistryAuthFile(path) => {
                write!(f, "REGISTRY_AUTH_FILE {}", path.display())
            }
            CredentialSource::DockerConfig(path) => write!(f, "Docker config {}", path.display()),
            CredentialSource::CredentialHelper { helper, config } => write!(
                f,
                "credential helper docker-credential-{helper} (named in {})",
                config.display()
            ),
            CredentialSource::PodmanAuthFile(path) => {
                write!(f, "podman auth file {}", path.display())
            }
            CredentialSource::Anonymous => write!(f, "no credentials (anonymous)"),
        }
    }
}

/// A credential and its source.
#[derive(Debug, Clone)]
pub struct ResolvedCredential {
    pub credential: Credential,
    pub source: CredentialSource,
}

impl ResolvedCredential {
    pub fn anonymous() -> Self {
        Self {
            credential: Credential::Anonymous,
            source: CredentialSource::Anonymous,
        }
    }

    pub fn explicit(username: impl Into<String>, password: SecretString) -> Self {
        Self {
            credential: Credential::Basic {
                username: username.into(),
                password,
            },
            source: CredentialSource::Explicit,
        }
    }
}

/// Environment variables holding secrets dockless reads for itself; no process it starts gets them.
pub const SECRETS_NOT_FOR_HELPERS: &[&str] = &["E2B_API_KEY", "E2B_ACCESS_TOKEN"];

/// The environment credential lookup reads, captured once so tests can point it at temp dirs.
#[derive(Debug, Clone, Default)]
pub struct CredentialEnv {
    pub registry_auth_file: Option<PathBuf>,
    pub docker_config_dir: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `PATH` for credential helpers; `None` inherits the process's.
    pub helper_path: Option<std::ffi::OsString>,
    /// How long a credential helper may take before it is killed; `None`: the default HTTP
    /// idle limit.
    pub helper_timeout: Option<std::time::Duration>,
}

impl CredentialEnv {
    pub fn from_process() -> Self {
        let non_empty = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            registry_auth_file: non_empty("REGISTRY_AUTH_FILE"),
            docker_config_dir: non_empty("DOCKER_CONFIG"),
            home: dirs::home_dir(),
            xdg_runtime_dir: non_empty("XDG_RUNTIME_DIR"),
            helper_path: None,
            helper_timeout: None,
        }
    }

    fn docker_config_file(&self) -> Option<PathBuf> {
        match &self.docker_config_dir {
            Some(dir) => Some(dir.join("config.json")),
            None => self
                .home
                .as_ref()
                .map(|home| home.join(".docker").join("config.json")),
        }
    }

    fn podman_auth_file(&self) -> Option<PathBuf> {
        self.xdg_runtime_dir
            .as_ref()
            .map(|dir| dir.join("containers").join("auth.json"))
    }
}

/// Why credentials could not be read. Messages name the file or helper, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "credentials file {path} is not valid JSON ({category} error at line {line}, column \
         {column}); fix or move it"
    )]
    Parse {
        path: PathBuf,
        category: &'static str,
        line: usize,
        column: usize,
    },
    #[error(
        "the \"auth\" entry for {key:?} in {path} is not base64 of \"user:password\"; log in again"
    )]
    BadAuthField { path: PathBuf, key: String },
    #[error("credential helper docker-credential-{helper} failed for {server}: {message}")]
    Helper {
        helper: String,
        server: String,
        message: String,
    },
}

/// Finds the credential for `registry` (as in a reference: `docker.io`, `ghcr.io`,
/// `127.0.0.1:5000`) and `repository` (podman allows per-repository entries).
pub fn resolve_credential(
    registry: &str,
    repository: &str,
    explicit: Option<ResolvedCredential>,
    env: &CredentialEnv,
) -> Result<ResolvedCredential, CredentialError> {
    if let Some(explicit) = explicit {
        return Ok(explicit);
    }
    let registry = normalize_registry(registry);
    let files = [
        env.registry_auth_file
            .clone()
            .map(|p| (p.clone(), CredentialSource::RegistryAuthFile(p))),
        env.docker_config_file()
            .map(|p| (p.clone(), CredentialSource::DockerConfig(p))),
        env.podman_auth_file()
            .map(|p| (p.clone(), CredentialSource::PodmanAuthFile(p))),
    ];
    for (path, source) in files.into_iter().flatten() {
        let Some(file) = AuthFile::load(&path)? else {
            tracing::debug!(path = %path.display(), "no credentials file here");
            continue;
        };
        if let Some(found) = file.lookup(&registry, repository, &path, source, env)? {
            tracing::debug!(registry, source = %found.source, "using credentials");
            return Ok(found);
        }
    }
    tracing::debug!(registry, "no credentials found; going anonymous");
    Ok(ResolvedCredential::anonymous())
}

/// `user:password` as the value of a Basic `Authorization` header.
pub(crate) fn basic_header(username: &str, password: &SecretString) -> SecretString {
    let encoded = BASE64.encode(format!("{username}:{}", password.expose_secret()));
    format!("Basic {encoded}").into()
}

#[cfg(test)]
mod tests;
