//! The build context: walking it, `.dockerignore`, and keeping every read inside it. A stage's
//! or an image's tree (`COPY --from`) is read with the same code as a tree: no
//! `.dockerignore`, and links resolved inside its root as if it were `/`.
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
    links: Links,
    /// Each directory's walk, by its absolute path, when walks are shared
    /// ([`Context::sharing_walks`]); `None`: every walk reads the disk.
    walks: Option<Mutex<HashMap<PathBuf, Vec<source::Walked>>>>,
}

/// How a symlink met on the way to a source is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// A build context on the host: a link whose target leaves the context is refused, and an
    /// absolute target is a host path (allowed only when it points back inside).
    Context,
    /// An image's file system: the root is `/`, so an absolute target starts at the root and
    /// `..` stops there, as inside a container.
    InsideRoot,
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
            links: Links::Context,
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

    /// Opens the file system of a stage or an image (or files staged by the build) as a tree:
    /// read as BuildKit's copy from a state reads it (fsutil's copy with continuity's
    /// `RootPath`), its links resolved inside `dir` as if it were `/`, with no `.dockerignore`
    /// (a file of that name there is a file like any other).
    ///
    /// `dir` is taken as it is, not made canonical: it may lie beneath another thread's root
    /// in `/proc` (an overlay mount only that thread sees), which `realpath` would leave.
    pub fn tree(dir: &Path) -> Result<Self, ContextError> {
        let meta = fs::metadata(dir).with_path("open the file system of", dir)?;
        if !meta.is_dir() || !dir.is_absolute() {
            return Err(ContextError::NotADirectory(dir.to_owned()));
        }
        Ok(Context {
            root: dir.to_owned(),
            ignore: IgnoreRules::empty(),
            links: Links::InsideRoot,
            walks: None,
        })
    }

    pub fn links(&self) -> Links {
        self.links
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ignore(&self) -> &IgnoreRules {
        &self.ignore
    }
}
