//! The bodies E2B's template API takes and gives (`openapi.yml` beside PROTOCOL.md has the
//! schemas): what dockless sends, and the parts of the answers it reads.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `POST /v3/templates`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CreateTemplateV3 {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(rename = "cpuCount", skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    #[serde(rename = "memoryMB", skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
}

/// `POST /templates` and `POST /templates/{templateID}` (legacy).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CreateTemplateLegacy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub dockerfile: String,
    #[serde(rename = "startCmd", skip_serializing_if = "Option::is_none")]
    pub start_cmd: Option<String>,
    #[serde(rename = "readyCmd", skip_serializing_if = "Option::is_none")]
    pub ready_cmd: Option<String>,
    #[serde(rename = "cpuCount", skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    #[serde(rename = "memoryMB", skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(rename = "teamID", skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
}

/// A template and the build E2B opened for it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CreatedBuild {
    #[serde(rename = "templateID")]
    pub template_id: String,
    #[serde(rename = "buildID")]
    pub build_id: String,
}

/// Pull credentials handed to E2B for the user's registry: the three kinds of
/// `fromImageRegistry`. No Debug: they hold secrets.
pub(crate) enum PullCredentials {
    /// `{type: "registry", username, password}`.
    Registry {
        username: String,
        password: SecretString,
    },
    /// `{type: "aws", awsAccessKeyId, awsSecretAccessKey, awsRegion}` (ECR).
    Aws {
        access_key_id: String,
        secret_access_key: SecretString,
        region: String,
    },
    /// `{type: "gcp", serviceAccountJson}` (Artifact Registry, GCR).
    Gcp { service_account_json: SecretString },
}

impl PullCredentials {
    pub fn kind(&self) -> &'static str {
        match self {
            PullCredentials::Registry { .. } => "registry",
            PullCredentials::Aws { .. } => "aws",
            PullCredentials::Gcp { .. } => "gcp",
        }
    }

    fn body(&self) -> Value {
        match self {
            PullCredentials::Registry { username, password } => json!({
                "type": "registry",
                "username": username,
                "password": password.expose_secret(),
            }),
            PullCredentials::Aws {
                access_key_id,
                secret_access_key,
                region,
            } => json!({
                "type": "aws",
                "awsAccessKeyId": access_key_id,
                "awsSecretAccessKey": secret_access_key.expose_secret(),
                "awsRegion": region,
            }),
            PullCredentials::Gcp {
                service_account_json,
            } => json!({
                "type": "gcp",
                "serviceAccountJson": service_account_json.expose_secret(),
            }),
        }
    }
}

/// One `TemplateStep` (E2B knows RUN, COPY, ENV, WORKDIR, USER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    #[serde(rename = "type")]
    pub kind: String,
    pub args: Vec<String>,
}

impl Step {
    pub fn user(user: &str) -> Self {
        Step {
            kind: "USER".into(),
            args: vec![user.to_owned()],
        }
    }

    pub fn workdir(dir: &str) -> Self {
        Step {
            kind: "WORKDIR".into(),
            args: vec![dir.to_owned()],
        }
    }
}

/// `POST /v2/templates/{templateID}/builds/{buildID}`.
#[derive(Default)]
pub(crate) struct StartBuildV2 {
    pub from_image: String,
    pub registry: Option<PullCredentials>,
    pub steps: Vec<Step>,
    pub start_cmd: Option<String>,
    pub ready_cmd: Option<String>,
    /// Rebuild every step, ignoring E2B's cache.
    pub force: bool,
}

impl StartBuildV2 {
    pub(super) fn body(&self) -> Value {
        let mut body = json!({ "fromImage": self.from_image });
        if let Some(registry) = &self.registry {
            body["fromImageRegistry"] = registry.body();
        }
        if !self.steps.is_empty() {
            body["steps"] = serde_json::to_value(&self.steps).unwrap_or_default();
        }
        if let Some(cmd) = &self.start_cmd {
            body["startCmd"] = Value::from(cmd.as_str());
        }
        if let Some(cmd) = &self.ready_cmd {
            body["readyCmd"] = Value::from(cmd.as_str());
        }
        if self.force {
            body["force"] = Value::Bool(true);
        }
        body
    }
}

/// One entry of `GET /templates` (the `Template` schema, the parts dockless shows).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TemplateSummary {
    #[serde(rename = "templateID")]
    pub template_id: String,
    /// The last successful build (empty when none).
    #[serde(rename = "buildID", default)]
    pub build_id: String,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(rename = "buildStatus", default)]
    pub build_status: Option<String>,
    #[serde(rename = "cpuCount", default)]
    pub cpu_count: Option<u32>,
    #[serde(rename = "memoryMB", default)]
    pub memory_mb: Option<u32>,
    #[serde(rename = "updatedAt", default)]
    pub updated_at: Option<String>,
}

impl TemplateSummary {
    /// A name to send back to E2B: the namespaced name, else the bare alias.
    pub fn name(&self) -> Option<&str> {
        self.names
            .iter()
            .chain(&self.aliases)
            .map(String::as_str)
            .find(|n| !n.trim().is_empty())
    }
}

/// `GET /templates/{templateID}/builds/{buildID}/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct BuildInfo {
    pub status: BuildState,
    #[serde(default, rename = "logEntries")]
    pub log_entries: Vec<LogEntry>,
    #[serde(default)]
    pub logs: Vec<String>,
    #[serde(default)]
    pub reason: Option<BuildReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    Building,
    Waiting,
    Ready,
    Error,
}

impl std::fmt::Display for BuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuildState::Building => "building",
            BuildState::Waiting => "waiting",
            BuildState::Ready => "ready",
            BuildState::Error => "error",
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    #[serde(default)]
    pub timestamp: String,
    pub message: String,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub step: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BuildReason {
    pub message: String,
    #[serde(default)]
    pub step: Option<String>,
}
