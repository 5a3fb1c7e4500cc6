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

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::reference::{DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, normalize_registry};

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

#[derive(Deserialize, Default)]
struct AuthFile {
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
    fn load(path: &Path) -> Result<Option<Self>, CredentialError> {
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

    fn lookup(
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
fn normalize_key(key: &str) -> String {
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

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server on stdin, as Docker does.
fn run_helper(
    helper: &str,
    registry: &str,
    config: &Path,
    env: &CredentialEnv,
) -> Result<Option<ResolvedCredential>, CredentialError> {
    let server = if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY
    } else {
        registry
    };
    let fail = |message: String| CredentialError::Helper {
        helper: helper.to_string(),
        server: server.to_string(),
        message,
    };
    if !helper
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(fail(format!(
            "the helper name {helper:?} in {} is not a plain name",
            config.display()
        )));
    }
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = &env.helper_path {
        command.env("PATH", path);
    }
    // A helper needs its own settings (cloud credentials, HOME, PATH) but never the secrets
    // dockless holds for other services.
    for name in SECRETS_NOT_FOR_HELPERS {
        command.env_remove(name);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "{program} (named in {}) is not installed; trying the next credential source",
                config.display()
            );
            return Ok(None);
        }
        Err(e) => return Err(fail(format!("cannot start {program}: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = stdin.write_all(server.as_bytes())
    {
        // A helper may answer without reading its input; its answer decides, not this.
        tracing::debug!("{program} did not read the server name: {e}");
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("{program} did not finish: {e}")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.to_ascii_lowercase().contains("credentials not found") {
            tracing::debug!("{program} has no credentials for {server}");
            return Ok(None);
        }
        let said: String = said.trim().chars().take(200).collect();
        return Err(fail(format!("it exited with {}: {said}", output.status)));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|_| {
        fail(format!(
            "{program} printed something that is not its JSON answer"
        ))
    })?;
    let source = CredentialSource::CredentialHelper {
        helper: helper.to_string(),
        config: config.to_path_buf(),
    };
    if answer.secret.is_empty() {
        return Ok(None);
    }
    let credential = if answer.username == "<token>" {
        Credential::IdentityToken {
            username: None,
            token: answer.secret.into(),
        }
    } else {
        Credential::Basic {
            username: answer.username,
            password: answer.secret.into(),
        }
    };
    Ok(Some(ResolvedCredential { credential, source }))
}

/// `user:password` as the value of a Basic `Authorization` header.
pub(crate) fn basic_header(username: &str, password: &SecretString) -> SecretString {
    let encoded = BASE64.encode(format!("{username}:{}", password.expose_secret()));
    format!("Basic {encoded}").into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn env_in(dir: &Path) -> CredentialEnv {
        CredentialEnv {
            registry_auth_file: None,
            docker_config_dir: None,
            home: Some(dir.join("home")),
            xdg_runtime_dir: Some(dir.join("run")),
            helper_path: Some(dir.join("bin").into_os_string()),
        }
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn basic_of(found: &ResolvedCredential) -> (String, String) {
        match &found.credential {
            Credential::Basic { username, password } => {
                (username.clone(), password.expose_secret().to_string())
            }
            other => panic!("expected Basic, got {other:?}"),
        }
    }

    fn auth(user_pass: &str) -> String {
        BASE64.encode(user_pass)
    }

    #[test]
    fn explicit_wins_over_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        write(
            &dir.path().join("home/.docker/config.json"),
            &format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, auth("file:pw")),
        );
        let explicit = ResolvedCredential::explicit("me", "secret".to_string().into());
        let found = resolve_credential("r.io", "app", Some(explicit), &env).unwrap();
        assert_eq!(found.source, CredentialSource::Explicit);
        assert_eq!(basic_of(&found), ("me".into(), "secret".into()));
    }

    #[test]
    fn docker_config_auth_base64_and_docker_hub_key() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        let path = dir.path().join("home/.docker/config.json");
        write(
            &path,
            &format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#,
                auth("hub:pw:with:colons")
            ),
        );
        let hub = resolve_credential("docker.io", "library/alpine", None, &env).unwrap();
        assert_eq!(basic_of(&hub), ("hub".into(), "pw:with:colons".into()));
        assert_eq!(hub.source, CredentialSource::DockerConfig(path.clone()));
        let local = resolve_credential("127.0.0.1:5000", "app", None, &env).unwrap();
        assert_eq!(basic_of(&local), ("u".into(), "p".into()));
        let none = resolve_credential("other.io", "app", None, &env).unwrap();
        assert_eq!(none.source, CredentialSource::Anonymous);
    }

    #[test]
    fn docker_config_env_var_beats_home_and_auth_file_beats_both() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_in(dir.path());
        write(
            &dir.path().join("home/.docker/config.json"),
            &format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, auth("home:1")),
        );
        let custom = dir.path().join("custom");
        write(
            &custom.join("config.json"),
            &format!(
                r#"{{"auths":{{"https://r.io":{{"auth":"{}"}}}}}}"#,
                auth("custom:2")
            ),
        );
        env.docker_config_dir = Some(custom);
        let found = resolve_credential("r.io", "app", None, &env).unwrap();
        assert_eq!(basic_of(&found).0, "custom");
        let auth_file = dir.path().join("auth.json");
        write(
            &auth_file,
            &format!(
                r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
                auth("authfile:3")
            ),
        );
        env.registry_auth_file = Some(auth_file.clone());
        let found = resolve_credential("r.io", "app", None, &env).unwrap();
        assert_eq!(basic_of(&found).0, "authfile");
        assert_eq!(found.source, CredentialSource::RegistryAuthFile(auth_file));
    }

    #[test]
    fn podman_file_and_repository_scoped_keys() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        let path = dir.path().join("run/containers/auth.json");
        write(
            &path,
            &format!(
                r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/team":{{"auth":"{}"}}}}}}"#,
                auth("general:1"),
                auth("team:2")
            ),
        );
        let team = resolve_credential("quay.io", "team/app", None, &env).unwrap();
        assert_eq!(basic_of(&team).0, "team");
        assert_eq!(team.source, CredentialSource::PodmanAuthFile(path));
        let other = resolve_credential("quay.io", "teammate/app", None, &env).unwrap();
        assert_eq!(basic_of(&other).0, "general");
    }

    #[test]
    fn identity_tokens_and_empty_entries() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        write(
            &dir.path().join("home/.docker/config.json"),
            &format!(
                r#"{{"auths":{{"acr.io":{{"auth":"{}","identitytoken":"refresh"}},"empty.io":{{}}}}}}"#,
                auth("00000000-0000-0000-0000-000000000000:")
            ),
        );
        let found = resolve_credential("acr.io", "app", None, &env).unwrap();
        match found.credential {
            Credential::IdentityToken { username, token } => {
                assert_eq!(
                    username.as_deref(),
                    Some("00000000-0000-0000-0000-000000000000")
                );
                assert_eq!(token.expose_secret(), "refresh");
            }
            other => panic!("expected an identity token, got {other:?}"),
        }
        let empty = resolve_credential("empty.io", "app", None, &env).unwrap();
        assert_eq!(empty.source, CredentialSource::Anonymous);
    }

    #[cfg(unix)]
    fn install_helper(dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("bin").join(format!("docker-credential-{name}"));
        write(&path, script);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn cred_helpers_get_the_server_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        // The helper echoes the server it was asked about into the username, so the test sees
        // what Docker would have passed.
        install_helper(
            dir.path(),
            "test",
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"s3cret\"}' \"$server\" \"$server\"\n",
        );
        install_helper(
            dir.path(),
            "token",
            "#!/bin/sh\nprintf '{\"Username\":\"<token>\",\"Secret\":\"refresh\"}'\n",
        );
        install_helper(
            dir.path(),
            "none",
            "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n",
        );
        let config = dir.path().join("home/.docker/config.json");
        write(
            &config,
            r#"{"credHelpers":{"docker.io":"test","tok.io":"token","gone.io":"none","missing.io":"not-installed"},"credsStore":"test"}"#,
        );
        let hub = resolve_credential("docker.io", "library/x", None, &env).unwrap();
        assert_eq!(
            basic_of(&hub),
            ("https://index.docker.io/v1/".into(), "s3cret".into())
        );
        assert_eq!(
            hub.source,
            CredentialSource::CredentialHelper {
                helper: "test".into(),
                config: config.clone()
            }
        );
        let tok = resolve_credential("tok.io", "x", None, &env).unwrap();
        assert!(matches!(tok.credential, Credential::IdentityToken { .. }));
        // A helper without credentials, or not installed, falls through to credsStore.
        let gone = resolve_credential("gone.io", "x", None, &env).unwrap();
        assert_eq!(basic_of(&gone).0, "gone.io");
        let missing = resolve_credential("missing.io", "x", None, &env).unwrap();
        assert_eq!(basic_of(&missing).0, "missing.io");
    }

    #[cfg(unix)]
    #[test]
    fn failing_helper_is_an_error_naming_the_helper() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        install_helper(
            dir.path(),
            "broken",
            "#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n",
        );
        write(
            &dir.path().join("home/.docker/config.json"),
            r#"{"credsStore":"broken"}"#,
        );
        let err = resolve_credential("r.io", "x", None, &env).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("docker-credential-broken"), "{text}");
        assert!(text.contains("keychain locked"), "{text}");
    }

    #[test]
    fn bad_files_name_the_file_but_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        let path = dir.path().join("home/.docker/config.json");
        write(
            &path,
            r#"{"auths":{"r.io":{"auth":"c3VwZXJzZWNyZXQ="}}, "credsStore": 5"#,
        );
        let err = resolve_credential("r.io", "x", None, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains("c3VwZXJzZWNyZXQ"), "{err}");
        write(
            &path,
            r#"{"auths":{"r.io":{"auth":"not base64 supersecret"}}}"#,
        );
        let err = resolve_credential("r.io", "x", None, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"r.io\""), "{err}");
        assert!(!err.contains("supersecret"), "{err}");
        write(
            &path,
            r#"{"auths":{"r.io":{"auth":"supersecret-as-a-number"}}, "auths2": [1,"#,
        );
        let err = resolve_credential("r.io", "x", None, &env)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("supersecret"), "{err}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let cred = Credential::Basic {
            username: "u".into(),
            password: "hunter2".to_string().into(),
        };
        let shown = format!("{cred:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let resolved = ResolvedCredential {
            credential: Credential::RegistryToken("tok".to_string().into()),
            source: CredentialSource::Explicit,
        };
        assert!(!format!("{resolved:?}").contains("tok\""));
    }

    #[test]
    fn keys_normalise_like_docker() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://r.io:5000/v2/"), "r.io:5000");
        assert_eq!(normalize_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_key("quay.io/org"), "quay.io/org");
    }
}
