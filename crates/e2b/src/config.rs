//! `e2b.toml`: the template's settings, as the E2B CLI writes them.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use dockless_oci::fs_error::FsError;

pub(crate) const FILE_NAME: &str = "e2b.toml";

/// The keys of `e2b.toml`. Legacy `id` and `name` mean `template_id` and `template_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    #[serde(alias = "id")]
    pub template_id: Option<String>,
    pub dockerfile: Option<String>,
    #[serde(alias = "name")]
    pub template_name: Option<String>,
    pub start_cmd: Option<String>,
    pub ready_cmd: Option<String>,
    pub cpu_count: Option<u32>,
    pub memory_mb: Option<u32>,
    pub team_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl TemplateConfig {
    /// Reads `e2b.toml` from a context directory; `None` when there is none.
    pub fn load(context: &Path) -> Result<Option<Self>, ConfigError> {
        let path = context.join(FILE_NAME);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(FsError {
                    action: "read",
                    path,
                    source: e,
                }
                .into());
            }
        };
        Self::parse(&text, &path).map(Some)
    }

    /// Parses the text of an `e2b.toml` found at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            message: format!(
                "{}{} (keys: template_id, dockerfile, template_name, start_cmd, ready_cmd, cpu_count, memory_mb, team_id)",
                position(text, e.span()),
                e.message().trim_end()
            ),
            path: path.to_owned(),
        })
    }
}

/// `line L, column C: ` of a byte span's start, so the error stays one line naming the place.
fn position(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(mut start) = span.map(|span| span.start.min(text.len())) else {
        return String::new();
    };
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_current_and_legacy_keys() {
        let c: TemplateConfig = toml::from_str(
            "# comment\nid = \"abc\"\nname = \"t\"\ndockerfile = \"e2b.Dockerfile\"\nmemory_mb = 512\n",
        )
        .unwrap();
        assert_eq!(c.template_id.as_deref(), Some("abc"));
        assert_eq!(c.template_name.as_deref(), Some("t"));
        assert_eq!(c.memory_mb, Some(512));
        assert!(toml::from_str::<TemplateConfig>("bogus = 1").is_err());
    }

    #[test]
    fn errors_are_one_line_naming_the_place() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "# ok\nmemory_mb = \"lots\"\n").unwrap();
        let message = TemplateConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("e2b.toml: line 2, column 13: "),
            "{message}"
        );
        assert!(message.contains("expected u32"), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
    }
}
