//! The environment E2B's tools read, captured once at the edge so library code and its tests
//! never read or change the process environment.

use std::path::PathBuf;

use secrecy::SecretString;

/// `E2B_*` variables and the home directory, as read once.
#[derive(Debug, Clone, Default)]
pub struct E2bEnv {
    pub api_key: Option<SecretString>,
    pub access_token: Option<SecretString>,
    /// Where `~/.e2b/config.json` lives.
    pub home: Option<PathBuf>,
    pub domain: Option<String>,
    pub api_url: Option<String>,
    pub debug: bool,
    pub registry_url: Option<String>,
    pub image_uri_mask: Option<String>,
    pub team_id: Option<String>,
}

/// A variable of dockless's environment, trimmed; unset and blank are the same.
pub(crate) fn text(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl E2bEnv {
    pub fn from_process() -> Self {
        E2bEnv {
            api_key: text("E2B_API_KEY").map(SecretString::from),
            access_token: text("E2B_ACCESS_TOKEN").map(SecretString::from),
            home: dirs::home_dir(),
            domain: text("E2B_DOMAIN"),
            api_url: text("E2B_API_URL"),
            debug: text("E2B_DEBUG").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            registry_url: text("E2B_REGISTRY_URL"),
            image_uri_mask: text("E2B_IMAGE_URI_MASK"),
            team_id: text("E2B_TEAM_ID"),
        }
    }

    /// `~/.e2b/config.json`.
    pub(crate) fn config_file(&self) -> Option<PathBuf> {
        self.home
            .as_ref()
            .map(|home| home.join(".e2b").join("config.json"))
    }
}
