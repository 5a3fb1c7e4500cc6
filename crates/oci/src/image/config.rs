//! The image configuration document (OCI image config, which Docker's schema-2 config extends).
//!
//! Fields this crate does not know (from base images written by other tools) are kept as they
//! were, so that rebuilding on a base never drops what its authors put there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The part of the config that says how to run a container (Docker's field spelling, which the
/// OCI spec adopted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

/// Docker's default PATH, set when a base image has none (as Docker does).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ContainerConfig {
    /// The value of `key` in the environment, as the last `KEY=value` entry says.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().flatten().rev().find_map(|entry| {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            (k == key).then_some(v)
        })
    }

    /// Sets `key` in the environment, replacing it in place when present (Docker keeps its position).
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
}

impl ImageConfig {
    /// The config of an image built `FROM scratch`.
    /// The config `FROM scratch` starts from: BuildKit's empty image, whose working
    /// directory is `/` (its PATH is added at FROM, as for any base without one).
    pub fn scratch(os: &str, architecture: &str, variant: Option<String>) -> Self {
        let mut config = ImageConfig {
            architecture: architecture.into(),
            os: os.into(),
            variant,
            ..Default::default()
        };
        config.config.working_dir = Some("/".into());
        config
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Formats seconds since the Unix epoch as RFC 3339 in UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch_seconds: u64) -> String {
    let days = (epoch_seconds / 86_400) as i64;
    let secs = epoch_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_329_285), "2025-11-28T11:28:05Z");
    }

    #[test]
    fn unknown_fields_of_a_base_config_survive() {
        let text = r#"{"architecture":"amd64","os":"linux","docker_version":"24.0",
            "config":{"Env":["A=1"],"Hostname":"x"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config: ImageConfig = serde_json::from_str(text).unwrap();
        let back: Value = serde_json::from_slice(&config.to_bytes()).unwrap();
        assert_eq!(back["docker_version"], "24.0");
        assert_eq!(back["config"]["Hostname"], "x");
    }

    #[test]
    fn set_env_replaces_in_place() {
        let mut c = ContainerConfig {
            env: Some(vec!["A=1".into(), "B=2".into()]),
            ..Default::default()
        };
        c.set_env("A", "3");
        c.set_env("C", "x=y");
        assert_eq!(c.env.as_ref().unwrap(), &["A=3", "B=2", "C=x=y"]);
        assert_eq!(c.env_value("C"), Some("x=y"));
    }
}
