//! The one E2B credential: an API key or an access token, from one source, chosen once.
//!
//! Sources, first match wins: a credential given on stdin, `E2B_API_KEY`, `E2B_ACCESS_TOKEN`,
//! then `~/.e2b/config.json` (project or team API key first, then the saved access token). Once
//! a source is chosen no other is read: a stale access token in the config file can never
//! override or accompany an explicit key.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::env::E2bEnv;

/// The two kinds of E2B credential, which E2B's endpoints accept differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    ApiKey,
    AccessToken,
}

impl CredentialKind {
    /// The Basic username E2B's registry gateway expects with this kind.
    pub(crate) fn gateway_username(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "_e2b_api_key",
            CredentialKind::AccessToken => "_e2b_access_token",
        }
    }

    /// Which template flows E2B lets this kind drive.
    pub fn flows(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => {
                "the registry flow (--image REGISTRY/REPO:TAG) and build status"
            }
            CredentialKind::AccessToken => {
                "the gateway flow (legacy and self-hosted E2B; deprecated, E2B may refuse it) and build status"
            }
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialKind::ApiKey => "API key",
            CredentialKind::AccessToken => "access token",
        })
    }
}

/// Where the credential came from (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialOrigin {
    Stdin,
    EnvApiKey,
    EnvAccessToken,
    ConfigFile { path: PathBuf, field: &'static str },
}

impl fmt::Display for CredentialOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialOrigin::Stdin => f.write_str("standard input"),
            CredentialOrigin::EnvApiKey => f.write_str("environment variable E2B_API_KEY"),
            CredentialOrigin::EnvAccessToken => {
                f.write_str("environment variable E2B_ACCESS_TOKEN")
            }
            CredentialOrigin::ConfigFile { path, field } => {
                write!(f, "{} ({field})", path.display())
            }
        }
    }
}

/// The chosen credential. Debug and Display never show the secret.
#[derive(Clone)]
pub struct E2bCredential {
    pub kind: CredentialKind,
    pub origin: CredentialOrigin,
    secret: SecretString,
}

impl fmt::Debug for E2bCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "E2bCredential {{ kind: {:?}, origin: {:?}, secret: <redacted> }}",
            self.kind, self.origin
        )
    }
}

impl fmt::Display for E2bCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ending in {} from {}",
            self.kind,
            self.last_four(),
            self.origin
        )
    }
}

impl E2bCredential {
    pub fn new(kind: CredentialKind, origin: CredentialOrigin, secret: SecretString) -> Self {
        Self {
            kind,
            origin,
            secret,
        }
    }

    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// The last four characters, enough to tell keys apart (`…` first for short ones).
    pub fn last_four(&self) -> String {
        let chars: Vec<char> = self.secret.expose_secret().chars().collect();
        if chars.len() < 12 {
            return "…".into();
        }
        chars[chars.len() - 4..].iter().collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no E2B credential found{restriction}: set E2B_API_KEY (or E2B_ACCESS_TOKEN), or log in with \
         the E2B CLI (`e2b auth login` writes ~/.e2b/config.json), or pipe one in with --api-key-stdin; \
         get an API key at https://e2b.dev/dashboard?tab=keys"
    )]
    NotFound { restriction: String },
    #[error("{}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: not valid JSON ({category} error at line {line}, column {column}); fix it or log in again with the E2B CLI",
        path.display()
    )]
    Parse {
        path: PathBuf,
        category: &'static str,
        line: usize,
        column: usize,
    },
    #[error("{}: unknown \"version\": {version}; dockless reads versions 1 and 2 (and unversioned)", path.display())]
    Version { path: PathBuf, version: u64 },
    #[error(
        "standard input was empty: pipe the {kind} in, e.g. `printf %s \"$KEY\" | dockless … --api-key-stdin`"
    )]
    EmptyStdin { kind: CredentialKind },
}

/// Finds the one credential. `stdin` is a credential already read from standard input;
/// `only` restricts the search to one kind (`--credential`).
pub fn resolve(
    env: &E2bEnv,
    stdin: Option<(CredentialKind, SecretString)>,
    only: Option<CredentialKind>,
) -> Result<E2bCredential, CredentialError> {
    let wanted = |kind| only.is_none_or(|only| only == kind);
    if let Some((kind, secret)) = stdin {
        if secret.expose_secret().trim().is_empty() {
            return Err(CredentialError::EmptyStdin { kind });
        }
        let secret = SecretString::from(secret.expose_secret().trim().to_owned());
        return Ok(E2bCredential::new(kind, CredentialOrigin::Stdin, secret));
    }
    if wanted(CredentialKind::ApiKey)
        && let Some(key) = &env.api_key
    {
        return Ok(found(
            CredentialKind::ApiKey,
            CredentialOrigin::EnvApiKey,
            key,
        ));
    }
    if wanted(CredentialKind::AccessToken)
        && let Some(token) = &env.access_token
    {
        return Ok(found(
            CredentialKind::AccessToken,
            CredentialOrigin::EnvAccessToken,
            token,
        ));
    }
    if let Some(path) = env.config_file()
        && let Some(credential) = from_config_file(&path, &wanted)?
    {
        return Ok(credential);
    }
    Err(CredentialError::NotFound {
        restriction: match only {
            Some(kind) => format!(" (looking for an {kind} only)"),
            None => String::new(),
        },
    })
}

fn found(kind: CredentialKind, origin: CredentialOrigin, secret: &SecretString) -> E2bCredential {
    tracing::debug!(%kind, %origin, "E2B credential chosen");
    E2bCredential::new(kind, origin, secret.clone())
}

/// `~/.e2b/config.json` in its three shapes. No Debug: it holds secrets until wrapped.
#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default, rename = "projectApiKey")]
    project_api_key: Option<String>,
    #[serde(default, rename = "teamApiKey")]
    team_api_key: Option<String>,
    /// Unversioned.
    #[serde(default, rename = "accessToken")]
    access_token: Option<String>,
    /// Versions 1 and 2.
    #[serde(default)]
    tokens: Option<Tokens>,
}

#[derive(Deserialize, Default)]
struct Tokens {
    #[serde(default)]
    access_token: Option<String>,
}

fn from_config_file(
    path: &Path,
    wanted: &dyn Fn(CredentialKind) -> bool,
) -> Result<Option<E2bCredential>, CredentialError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    // serde's messages can quote the input; keep only where the problem is.
    let config: ConfigFile = serde_json::from_str(&text).map_err(|e| CredentialError::Parse {
        path: path.to_owned(),
        category: match e.classify() {
            serde_json::error::Category::Io => "read",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "type",
            serde_json::error::Category::Eof => "unexpected end",
        },
        line: e.line(),
        column: e.column(),
    })?;
    if let Some(version) = config.version.filter(|v| *v > 2) {
        return Err(CredentialError::Version {
            path: path.to_owned(),
            version,
        });
    }
    let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let saved_token = match config.version {
        None => non_empty(config.access_token),
        Some(_) => non_empty(config.tokens.and_then(|t| t.access_token)),
    };
    let candidates = [
        (
            CredentialKind::ApiKey,
            "projectApiKey",
            non_empty(config.project_api_key).filter(|_| config.version == Some(2)),
        ),
        (
            CredentialKind::ApiKey,
            "teamApiKey",
            non_empty(config.team_api_key),
        ),
        (
            CredentialKind::AccessToken,
            if config.version.is_some() {
                "tokens.access_token"
            } else {
                "accessToken"
            },
            saved_token,
        ),
    ];
    for (kind, field, value) in candidates {
        if let Some(value) = value
            && wanted(kind)
        {
            let origin = CredentialOrigin::ConfigFile {
                path: path.to_owned(),
                field,
            };
            return Ok(Some(found(
                kind,
                origin,
                &SecretString::from(value.trim().to_owned()),
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_config(config: Option<&str>) -> (tempfile::TempDir, E2bEnv) {
        let home = tempfile::tempdir().unwrap();
        if let Some(config) = config {
            std::fs::create_dir_all(home.path().join(".e2b")).unwrap();
            std::fs::write(home.path().join(".e2b/config.json"), config).unwrap();
        }
        let env = E2bEnv {
            home: Some(home.path().to_owned()),
            ..E2bEnv::default()
        };
        (home, env)
    }

    fn secret(c: &E2bCredential) -> &str {
        c.secret().expose_secret()
    }

    const UNVERSIONED: &str = r#"{"email":"a@b.c","accessToken":"sk_e2b_saved_token_0001","teamName":"t","teamId":"team","teamApiKey":"e2b_team_key_00000002"}"#;
    const V1: &str = r#"{"version":1,"identity":{"email":"a@b.c"},"oauth":{"token_endpoint":"x","revoke_endpoint":"y","client_id":"z"},"tokens":{"access_token":"sk_e2b_v1_token_0003","refresh_token":"r"},"last_refresh":1,"teamName":"t","teamId":"team","teamApiKey":"e2b_v1_team_key_0004"}"#;
    const V2_TOKEN_ONLY: &str = r#"{"version":2,"identity":{"email":"a@b.c"},"tokens":{"access_token":"sk_e2b_v2_token_0005","refresh_token":"r"},"projectName":"p","projectId":"pid"}"#;
    const V2: &str = r#"{"version":2,"tokens":{"access_token":"sk_e2b_v2_token_0005"},"teamApiKey":"e2b_v2_team_key_0006","projectApiKey":"e2b_v2_project_key_0007"}"#;

    #[test]
    fn environment_beats_the_config_file_and_the_key_beats_the_token() {
        let (_home, mut env) = env_with_config(Some(UNVERSIONED));
        env.api_key = Some("e2b_env_key_000000008".to_string().into());
        env.access_token = Some("sk_e2b_env_token_0009".to_string().into());
        let c = resolve(&env, None, None).unwrap();
        assert_eq!(c.kind, CredentialKind::ApiKey);
        assert_eq!(c.origin, CredentialOrigin::EnvApiKey);
        assert_eq!(secret(&c), "e2b_env_key_000000008");
        let c = resolve(&env, None, Some(CredentialKind::AccessToken)).unwrap();
        assert_eq!(c.origin, CredentialOrigin::EnvAccessToken);
        let stdin = Some((
            CredentialKind::AccessToken,
            "sk_e2b_stdin_tok_0010\n".to_string().into(),
        ));
        let c = resolve(&env, stdin, None).unwrap();
        assert_eq!(
            (c.kind, secret(&c)),
            (CredentialKind::AccessToken, "sk_e2b_stdin_tok_0010")
        );
    }

    #[test]
    fn config_file_in_all_three_shapes_key_first() {
        let cases = [
            (UNVERSIONED, None, "e2b_team_key_00000002", "teamApiKey"),
            (
                UNVERSIONED,
                Some(CredentialKind::AccessToken),
                "sk_e2b_saved_token_0001",
                "accessToken",
            ),
            (V1, None, "e2b_v1_team_key_0004", "teamApiKey"),
            (
                V1,
                Some(CredentialKind::AccessToken),
                "sk_e2b_v1_token_0003",
                "tokens.access_token",
            ),
            (V2, None, "e2b_v2_project_key_0007", "projectApiKey"),
            (
                V2_TOKEN_ONLY,
                None,
                "sk_e2b_v2_token_0005",
                "tokens.access_token",
            ),
        ];
        for (config, only, expected, field) in cases {
            let (_home, env) = env_with_config(Some(config));
            let c = resolve(&env, None, only).unwrap();
            assert_eq!(secret(&c), expected);
            assert!(
                matches!(c.origin, CredentialOrigin::ConfigFile { field: f, .. } if f == field)
            );
        }
        let (_home, env) = env_with_config(Some(V2_TOKEN_ONLY));
        assert!(matches!(
            resolve(&env, None, Some(CredentialKind::ApiKey)),
            Err(CredentialError::NotFound { .. })
        ));
    }

    #[test]
    fn nothing_found_names_every_source() {
        let (_home, env) = env_with_config(None);
        let message = resolve(&env, None, None).unwrap_err().to_string();
        for part in [
            "E2B_API_KEY",
            "E2B_ACCESS_TOKEN",
            "~/.e2b/config.json",
            "https://e2b.dev/dashboard",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }

    #[test]
    fn a_broken_config_file_is_named_without_its_contents() {
        let (_home, env) = env_with_config(Some(r#"{"teamApiKey": "e2b_secret_value_x" "#));
        let message = resolve(&env, None, None).unwrap_err().to_string();
        assert!(message.contains("config.json: not valid JSON"), "{message}");
        assert!(!message.contains("e2b_secret_value_x"), "{message}");
    }

    #[test]
    fn debug_and_display_redact() {
        let c = E2bCredential::new(
            CredentialKind::ApiKey,
            CredentialOrigin::EnvApiKey,
            "e2b_0123456789abcdef".to_string().into(),
        );
        let shown = format!("{c} {c:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("cdef"), "{shown}");
        assert_eq!(c.last_four(), "cdef");
    }
}
