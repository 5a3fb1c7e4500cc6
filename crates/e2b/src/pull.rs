//! The credentials E2B pulls a private `fromImage` with (`fromImageRegistry`), in E2B's three
//! kinds, handed over only when the user asks (`--registry-auth`):
//!
//! - `registry`: the username and password dockless pushes with;
//! - `aws` (ECR): `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, and `AWS_REGION` /
//!   `AWS_DEFAULT_REGION` (else the region in an ECR host name);
//! - `gcp` (Artifact Registry, GCR): the service-account key file `GOOGLE_APPLICATION_CREDENTIALS`
//!   names.
//!
//! Each comes from one place, read once at the edge ([`PullEnv::from_process`]), and lives in
//! a redacting type until the request body is written.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::api::PullCredentials;
use dockless_registry::{Credential, ResolvedCredential};

/// Which kind to hand over; `Auto` picks it from the image's registry host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullKind {
    Auto,
    Registry,
    Aws,
    Gcp,
}

/// The standard AWS and Google variables, as read once. Debug shows no secret.
#[derive(Clone, Default)]
pub(crate) struct PullEnv {
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<SecretString>,
    pub aws_region: Option<String>,
    pub aws_default_region: Option<String>,
    pub google_application_credentials: Option<PathBuf>,
}

impl fmt::Debug for PullEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullEnv")
            .field("aws_access_key_id", &self.aws_access_key_id)
            .field(
                "aws_secret_access_key",
                &self.aws_secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("aws_region", &self.aws_region)
            .field("aws_default_region", &self.aws_default_region)
            .field(
                "google_application_credentials",
                &self.google_application_credentials,
            )
            .finish()
    }
}

impl PullEnv {
    pub fn from_process() -> Self {
        use super::env::text;
        PullEnv {
            aws_access_key_id: text("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key: text("AWS_SECRET_ACCESS_KEY").map(SecretString::from),
            aws_region: text("AWS_REGION"),
            aws_default_region: text("AWS_DEFAULT_REGION"),
            google_application_credentials: text("GOOGLE_APPLICATION_CREDENTIALS")
                .map(PathBuf::from),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(
        "--registry-auth registry: dockless has no username and password for {registry} to hand to E2B (it found {found_in}); log in to it (docker login / REGISTRY_AUTH_FILE) or use --username with --password-stdin"
    )]
    NothingToShare { registry: String, found_in: String },
    #[error(
        "--registry-auth aws: {missing} is not set; E2B pulls from ECR with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION (or AWS_DEFAULT_REGION)"
    )]
    AwsMissing { missing: &'static str },
    #[error(
        "--registry-auth gcp: GOOGLE_APPLICATION_CREDENTIALS is not set; point it at the service-account key file (JSON) E2B should pull with"
    )]
    GcpUnset,
    #[error("--registry-auth gcp: GOOGLE_APPLICATION_CREDENTIALS={}: {reason}", path.display())]
    GcpFile { path: PathBuf, reason: String },
}

/// The kind a registry host calls for: ECR → aws, Artifact Registry and GCR → gcp.
pub(crate) fn kind_for_host(host: &str) -> PullKind {
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ecr_region(&host).is_some() {
        PullKind::Aws
    } else if host.ends_with("-docker.pkg.dev") || host == "gcr.io" || host.ends_with(".gcr.io") {
        PullKind::Gcp
    } else {
        PullKind::Registry
    }
}

/// `<account>.dkr.ecr.<region>.amazonaws.com[.cn]` → the region.
fn ecr_region(host: &str) -> Option<&str> {
    let rest = host.split_once(".dkr.ecr.")?.1;
    let (region, domain) = rest.split_once('.')?;
    (domain == "amazonaws.com" || domain == "amazonaws.com.cn").then_some(region)
}

/// The `fromImageRegistry` to send for `kind` (Auto resolved by `host`).
pub(crate) fn pull_credentials(
    kind: PullKind,
    host: &str,
    env: &PullEnv,
    pushing_with: &ResolvedCredential,
) -> Result<PullCredentials, PullError> {
    let kind = match kind {
        PullKind::Auto => kind_for_host(host),
        other => other,
    };
    match kind {
        PullKind::Auto | PullKind::Registry => match &pushing_with.credential {
            Credential::Basic { username, password } => Ok(PullCredentials::Registry {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => Err(PullError::NothingToShare {
                registry: host.to_owned(),
                found_in: pushing_with.source.to_string(),
            }),
        },
        PullKind::Aws => {
            let missing = |missing| PullError::AwsMissing { missing };
            let region = env
                .aws_region
                .clone()
                .or_else(|| env.aws_default_region.clone())
                .or_else(|| ecr_region(&host.to_ascii_lowercase()).map(str::to_owned))
                .ok_or(missing("AWS_REGION"))?;
            Ok(PullCredentials::Aws {
                access_key_id: env
                    .aws_access_key_id
                    .clone()
                    .ok_or(missing("AWS_ACCESS_KEY_ID"))?,
                secret_access_key: env
                    .aws_secret_access_key
                    .clone()
                    .ok_or(missing("AWS_SECRET_ACCESS_KEY"))?,
                region,
            })
        }
        PullKind::Gcp => {
            let path = env
                .google_application_credentials
                .clone()
                .ok_or(PullError::GcpUnset)?;
            let text = std::fs::read_to_string(&path).map_err(|e| PullError::GcpFile {
                path: path.clone(),
                reason: format!("cannot read it ({e})"),
            })?;
            let text = SecretString::from(text);
            // Checked here, never quoted: the file holds a private key.
            let account: Option<serde_json::Value> =
                serde_json::from_str(text.expose_secret()).ok();
            let is_key = account
                .as_ref()
                .is_some_and(|a| a["type"] == "service_account" && a["private_key"].is_string());
            if !is_key {
                return Err(PullError::GcpFile {
                    path,
                    reason: "not a service-account key (JSON with \"type\": \"service_account\" and a private key)".into(),
                });
            }
            Ok(PullCredentials::Gcp {
                service_account_json: text,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_pick_their_kind() {
        assert_eq!(
            kind_for_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            PullKind::Aws
        );
        assert_eq!(kind_for_host("europe-west1-docker.pkg.dev"), PullKind::Gcp);
        assert_eq!(kind_for_host("eu.gcr.io"), PullKind::Gcp);
        assert_eq!(kind_for_host("ghcr.io"), PullKind::Registry);
        assert_eq!(kind_for_host("ecr.example.com:5000"), PullKind::Registry);
        assert_eq!(
            ecr_region("1.dkr.ecr.us-east-2.amazonaws.com"),
            Some("us-east-2")
        );
    }

    #[test]
    fn aws_from_the_standard_variables_and_errors_name_what_is_missing() {
        let anonymous = ResolvedCredential::anonymous();
        let host = "1.dkr.ecr.eu-west-1.amazonaws.com";
        let mut env = PullEnv {
            aws_access_key_id: Some("AKIAEXAMPLE".into()),
            ..PullEnv::default()
        };
        let message = pull_credentials(PullKind::Auto, host, &env, &anonymous)
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("AWS_SECRET_ACCESS_KEY is not set"),
            "{message}"
        );
        env.aws_secret_access_key = Some("wJalrXUtnFEMI".to_string().into());
        let PullCredentials::Aws { region, .. } =
            pull_credentials(PullKind::Auto, host, &env, &anonymous).unwrap()
        else {
            panic!("aws")
        };
        assert_eq!(region, "eu-west-1");
        let shown = format!("{env:?}");
        assert!(!shown.contains("wJalr"), "{shown}");
        let message = pull_credentials(PullKind::Registry, host, &env, &anonymous)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("no username and password"), "{message}");
    }

    #[test]
    fn gcp_key_files_are_checked_but_never_quoted() {
        let anonymous = ResolvedCredential::anonymous();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        std::fs::write(
            &path,
            r#"{"type":"authorized_user","refresh_token":"1//secret-refresh"}"#,
        )
        .unwrap();
        let env = PullEnv {
            google_application_credentials: Some(path.clone()),
            ..PullEnv::default()
        };
        let message = pull_credentials(PullKind::Gcp, "gcr.io", &env, &anonymous)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("not a service-account key"), "{message}");
        assert!(!message.contains("secret-refresh"), "{message}");
        std::fs::write(&path, r#"{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----"}"#).unwrap();
        assert!(matches!(
            pull_credentials(PullKind::Auto, "europe-docker.pkg.dev", &env, &anonymous).unwrap(),
            PullCredentials::Gcp { .. }
        ));
    }
}
