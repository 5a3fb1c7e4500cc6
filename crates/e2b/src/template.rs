//! A template's settings: `e2b.toml` with the command-line flags on top, validated before
//! anything is built or sent.

use std::path::PathBuf;

use super::config::TemplateConfig;
use super::rules;

/// What the user passed on the command line (each beats `e2b.toml`).
#[derive(Debug, Clone, Default)]
pub struct TemplateFlags {
    pub name: Option<String>,
    pub cpu_count: Option<u32>,
    pub memory_mb: Option<u32>,
    pub start_cmd: Option<String>,
    pub ready_cmd: Option<String>,
    pub dockerfile: Option<PathBuf>,
}

/// The merged, validated settings of one template build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateSettings {
    /// Set once the template exists (after its first build).
    pub template_id: Option<String>,
    pub name: Option<String>,
    pub cpu_count: Option<u32>,
    pub memory_mb: Option<u32>,
    pub start_cmd: Option<String>,
    pub ready_cmd: Option<String>,
    pub team_id: Option<String>,
    /// The Dockerfile as the user named it (flag, else `e2b.toml`); `None` finds it.
    pub dockerfile: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("{source_name} {value}: {rule}")]
pub struct TemplateError {
    /// `--memory-mb` or `e2b.toml memory_mb =`.
    pub source_name: String,
    /// The value as given (names quoted).
    pub value: String,
    pub rule: &'static str,
}

impl TemplateSettings {
    pub fn merge(
        config: Option<TemplateConfig>,
        flags: &TemplateFlags,
        env_team_id: Option<&str>,
    ) -> Result<Self, TemplateError> {
        let config = config.unwrap_or_default();
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let settings = TemplateSettings {
            template_id: non_empty(config.template_id),
            name: non_empty(flags.name.clone().or(config.template_name)),
            cpu_count: flags.cpu_count.or(config.cpu_count),
            memory_mb: flags.memory_mb.or(config.memory_mb),
            start_cmd: non_empty(flags.start_cmd.clone().or(config.start_cmd)),
            ready_cmd: non_empty(flags.ready_cmd.clone().or(config.ready_cmd)),
            team_id: non_empty(config.team_id.or(env_team_id.map(str::to_owned))),
            dockerfile: flags
                .dockerfile
                .clone()
                .or(config.dockerfile.map(PathBuf::from)),
        };
        let from = |flag: bool, flag_name: &str, key: &str| {
            if flag {
                flag_name.to_owned()
            } else {
                format!("e2b.toml {key} =")
            }
        };
        if let Some(name) = &settings.name
            && !rules::name_is_valid(name)
        {
            return Err(TemplateError {
                source_name: from(flags.name.is_some(), "--name", "template_name"),
                value: format!("{name:?}"),
                rule: rules::NAME_RULE,
            });
        }
        if let Some(cpu) = settings.cpu_count
            && !rules::cpu_is_valid(cpu)
        {
            return Err(TemplateError {
                source_name: from(flags.cpu_count.is_some(), "--cpu", "cpu_count"),
                value: cpu.to_string(),
                rule: rules::CPU_RULE,
            });
        }
        if let Some(memory) = settings.memory_mb
            && !rules::memory_is_valid(memory)
        {
            return Err(TemplateError {
                source_name: from(flags.memory_mb.is_some(), "--memory-mb", "memory_mb"),
                value: memory.to_string(),
                rule: rules::MEMORY_RULE,
            });
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file() {
        let config = TemplateConfig {
            template_id: Some("t1".into()),
            template_name: Some("file-name".into()),
            memory_mb: Some(512),
            cpu_count: Some(2),
            dockerfile: Some("e2b.Dockerfile".into()),
            ..TemplateConfig::default()
        };
        let flags = TemplateFlags {
            name: Some("flag-name".into()),
            memory_mb: Some(1024),
            ..TemplateFlags::default()
        };
        let s = TemplateSettings::merge(Some(config), &flags, Some("team")).unwrap();
        assert_eq!(s.name.as_deref(), Some("flag-name"));
        assert_eq!((s.cpu_count, s.memory_mb), (Some(2), Some(1024)));
        assert_eq!(s.template_id.as_deref(), Some("t1"));
        assert_eq!(s.team_id.as_deref(), Some("team"));
        assert_eq!(s.dockerfile, Some(PathBuf::from("e2b.Dockerfile")));
    }

    #[test]
    fn invalid_resources_name_their_source() {
        let odd = TemplateFlags {
            memory_mb: Some(513),
            ..TemplateFlags::default()
        };
        let message = TemplateSettings::merge(None, &odd, None)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("--memory-mb 513: ") && message.contains("an even number of MiB"),
            "{message}"
        );
        let config = TemplateConfig {
            memory_mb: Some(64),
            ..TemplateConfig::default()
        };
        let message = TemplateSettings::merge(Some(config), &TemplateFlags::default(), None)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("e2b.toml memory_mb = 64: "),
            "{message}"
        );
        let none = TemplateFlags {
            cpu_count: Some(0),
            ..TemplateFlags::default()
        };
        assert!(
            TemplateSettings::merge(None, &none, None)
                .unwrap_err()
                .to_string()
                .starts_with("--cpu 0")
        );
        let odd_cpu = TemplateFlags {
            cpu_count: Some(3),
            ..TemplateFlags::default()
        };
        let message = TemplateSettings::merge(None, &odd_cpu, None)
            .unwrap_err()
            .to_string();
        assert_eq!(message, format!("--cpu 3: {}", rules::CPU_RULE));
        let config = TemplateConfig {
            template_name: Some("My Sandbox".into()),
            ..TemplateConfig::default()
        };
        let message = TemplateSettings::merge(Some(config), &TemplateFlags::default(), None)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "e2b.toml template_name = \"My Sandbox\": E2B takes a name of lowercase"
            ),
            "{message}"
        );
    }
}
