//! Finding the Dockerfile: `-f`, else `e2b.toml`'s `dockerfile`, else `e2b.Dockerfile`, else `Dockerfile`.

use std::path::{Path, PathBuf};

use crate::e2b::config::{ConfigError, TemplateConfig};

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("the Dockerfile {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error(
        "no Dockerfile in {}: looked for e2b.toml's `dockerfile`, e2b.Dockerfile and Dockerfile; name one with -f",
        .0.display()
    )]
    NotFound(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

pub fn locate_dockerfile(context: &Path, explicit: Option<&Path>) -> Result<PathBuf, LocateError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(LocateError::Missing(path.to_owned()))
        };
    }
    if let Some(config) = TemplateConfig::load(context)?
        && let Some(name) = config.dockerfile
    {
        let path = context.join(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(LocateError::Missing(path))
        };
    }
    ["e2b.Dockerfile", "Dockerfile"]
        .iter()
        .map(|name| context.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| LocateError::NotFound(context.to_owned()))
}
