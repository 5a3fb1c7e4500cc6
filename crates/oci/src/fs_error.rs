//! File-system errors that name the path and what was being done to it.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("could not {action} {}: {source}", path.display())]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Attaches the action and path to an `io::Result`.
pub trait IoContext<T> {
    fn with_path(self, action: &'static str, path: &Path) -> Result<T, FsError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn with_path(self, action: &'static str, path: &Path) -> Result<T, FsError> {
        self.map_err(|source| FsError {
            action,
            path: path.to_owned(),
            source,
        })
    }
}
