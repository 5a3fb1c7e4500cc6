//! The build context: walking it, `.dockerignore`, and keeping every read inside it.
//!
//! May use: oci.

pub mod ignore;
pub mod item_meta;
pub mod pattern;
pub mod source;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dockless_oci::fs_error::{FsError, IoContext};
use ignore::{IgnoreError, IgnoreRules};

/// An opened build context: its canonical root and its ignore rules.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: IgnoreRules,
    /// Each directory's walk, by its absolute path, when walks are shared
    /// ([`Context::sharing_walks`]); `None`: every walk reads the disk.
    walks: Option<Mutex<HashMap<PathBuf, Vec<source::Walked>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("the build context {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "{} leads outside the build context (to {}); make the context's .dockerignore a file inside it",
        .path.display(), .target.display()
    )]
    IgnoreOutside { path: PathBuf, target: PathBuf },
    #[error("{}: {source}", path.display())]
    Ignore {
        path: PathBuf,
        #[source]
        source: IgnoreError,
    },
}

impl Context {
    pub fn open(dir: &Path) -> Result<Self, ContextError> {
        let root = fs::canonicalize(dir).with_path("open the build context", dir)?;
        if !root.is_dir() {
            return Err(ContextError::NotADirectory(dir.to_owned()));
        }
        let ignore_path = root.join(".dockerignore");
        // Part of the untrusted context, as a Dockerfile it names: a link out of it is refused
        // before a byte is read, so no error ever quotes a line of a file elsewhere.
        // The file read is the one checked: its canonical path.
        let mut read_path = ignore_path.clone();
        if let Ok(target) = fs::canonicalize(&ignore_path) {
            if !target.starts_with(&root) {
                return Err(ContextError::IgnoreOutside {
                    path: ignore_path,
                    target,
                });
            }
            read_path = target;
        }
        let ignore = match fs::read(&read_path) {
            Ok(bytes) => {
                IgnoreRules::parse(&String::from_utf8_lossy(&bytes)).map_err(|source| {
                    ContextError::Ignore {
                        path: ignore_path.clone(),
                        source,
                    }
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreRules::empty(),
            Err(e) => {
                return Err(FsError {
                    action: "read",
                    path: ignore_path,
                    source: e,
                }
                .into());
            }
        };
        Ok(Context {
            root,
            ignore,
            walks: None,
        })
    }

    /// The same context, keeping each directory's walk: a later walk of it (another
    /// platform's build of the same Dockerfile) reads nothing from the disk, and every build
    /// that shares the context sees its files as the first walk found them, as BuildKit sends
    /// a context once for all platforms. Not for a single build, where a directory is seldom
    /// walked twice and the kept lists would only take memory.
    pub fn sharing_walks(self) -> Self {
        Context {
            walks: Some(Mutex::new(HashMap::new())),
            ..self
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ignore(&self) -> &IgnoreRules {
        &self.ignore
    }
}
