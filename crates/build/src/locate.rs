//! Finding the Dockerfile: `-f`, else the name the context's settings give (`e2b.toml`'s
//! `dockerfile`, read by the caller), else `e2b.Dockerfile`, else `Dockerfile`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("the Dockerfile {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("the Dockerfile {} is a directory, not a file", .0.display())]
    Directory(PathBuf),
    #[error(
        "no Dockerfile in {}: looked for e2b.toml's `dockerfile`, e2b.Dockerfile and Dockerfile; name one with -f",
        .0.display()
    )]
    NotFound(PathBuf),
    #[error(
        "the Dockerfile {} leads outside the build context (to {}); keep it in the context or name it with -f",
        .path.display(), .target.display()
    )]
    Outside { path: PathBuf, target: PathBuf },
}

/// `explicit` is the user's own choice (`-f`), taken as given; `named_by_context` is a name
/// relative to the context that the context itself gives (`e2b.toml`), kept inside it.
pub fn locate_dockerfile(
    context: &Path,
    explicit: Option<&Path>,
    named_by_context: Option<&str>,
) -> Result<PathBuf, LocateError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else if path.is_dir() {
            Err(LocateError::Directory(path.to_owned()))
        } else {
            Err(LocateError::Missing(path.to_owned()))
        };
    }
    if let Some(name) = named_by_context {
        let path = context.join(name);
        return if path.is_file() {
            inside_context(context, path)
        } else {
            Err(LocateError::Missing(path))
        };
    }
    let found = ["e2b.Dockerfile", "Dockerfile"]
        .iter()
        .map(|name| context.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| LocateError::NotFound(context.to_owned()))?;
    inside_context(context, found)
}

/// A Dockerfile the context names (not one the user names with -f) is part of the untrusted
/// context: it may not lead, by `..` or by symlink, to a file elsewhere on the machine, whose
/// lines would then be echoed in parse errors.
fn inside_context(context: &Path, path: PathBuf) -> Result<PathBuf, LocateError> {
    let target = std::fs::canonicalize(&path).map_err(|_| LocateError::Missing(path.clone()))?;
    let root = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_owned());
    if target.starts_with(&root) {
        Ok(path)
    } else {
        Err(LocateError::Outside { path, target })
    }
}
