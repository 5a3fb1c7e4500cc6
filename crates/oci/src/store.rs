//! The local content-addressed store: an OCI image layout under the cache directory.
//!
//! Every blob dockless makes or fetches lands here once, named by its digest, written to a
//! temporary file first and renamed into place, so a crash never leaves a blob whose bytes do not
//! match its name. Layouts written with `--output` are hard-linked from here when they can be.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::{NamedTempFile, TempDir};

use crate::digest::{Digest, HashingWriter};
use crate::fs_error::{FsError, IoContext};
use crate::session::Session;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "blob {expected} in {} is damaged (its bytes hash to {actual}); delete that file and build again",
        path.display()
    )]
    Corrupt {
        expected: Digest,
        actual: Digest,
        path: PathBuf,
    },
    #[error("blob {digest} is not in the store at {}", root.display())]
    Missing { digest: Digest, root: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// This process's temporary directory under `tmp/` and its locks: removed on exit and
    /// on interruption, and swept by a later process if this one was killed outright.
    session: Arc<Session>,
}

pub(crate) const OCI_LAYOUT_FILE: &str = "oci-layout";
pub(crate) const OCI_LAYOUT_CONTENT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

impl Store {
    /// Where the store lives unless told: `DOCKLESS_CACHE_DIR`, else the platform cache directory.
    pub fn default_root() -> PathBuf {
        match std::env::var_os("DOCKLESS_CACHE_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => dirs::cache_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("dockless"),
        }
    }

    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        // Absolute, so that a path into the store means the same from a thread that changed
        // its working directory (the overlay's mount thread does) or from a child process.
        let root = root.into();
        let root = std::path::absolute(&root).with_path("resolve the cache directory", &root)?;
        let blobs = root.join(crate::areas::BLOBS);
        fs::create_dir_all(&blobs).with_path("create the cache directory", &blobs)?;
        private(&root)?;
        let session =
            Arc::new(Session::open(&root).with_path("open the store's temporary area in", &root)?);
        let layout = root.join(OCI_LAYOUT_FILE);
        if !layout.exists() {
            fs::write(&layout, OCI_LAYOUT_CONTENT).with_path("write", &layout)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            fs::write(&index, "{\"schemaVersion\":2,\"manifests\":[]}")
                .with_path("write", &index)?;
        }
        Ok(Store { root, session })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(crate::areas::BLOBS).join(digest.hex())
    }

    /// Whether the blob is in the store; asking means using it (see [`crate::areas::mark_used`]).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        let path = self.blob_path(digest);
        let present = path.is_file();
        if present {
            crate::areas::mark_used(&path);
        }
        present
    }

    /// This process's temporary directory in the store (removed when it ends, swept if it dies).
    pub fn session_dir(&self) -> &Path {
        self.session.dir()
    }

    /// This process's session (its locks on the store).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// A temporary file on the store's file system, so that committing it is a rename.
    pub fn temp_file(&self) -> Result<NamedTempFile, StoreError> {
        let dir = self.session.dir();
        Ok(NamedTempFile::new_in(dir).with_path("create a temporary file in", dir)?)
    }

    pub fn temp_dir(&self) -> Result<TempDir, StoreError> {
        let dir = self.session.dir();
        Ok(TempDir::new_in(dir).with_path("create a temporary directory in", dir)?)
    }

    /// Moves a fully written temporary file into place as the blob `digest`.
    pub fn commit(&self, file: NamedTempFile, digest: &Digest) -> Result<PathBuf, StoreError> {
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(path);
        }
        file.persist(&path)
            .map_err(|e| e.error)
            .with_path("store blob", &path)?;
        Ok(path)
    }

    /// Stores small bytes (configs, manifests) and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            let mut file = self.temp_file()?;
            io::Write::write_all(&mut file, bytes).with_path("write", file.path())?;
            self.commit(file, &digest)?;
        }
        Ok(digest)
    }

    /// Reads a small blob whole, checking that its bytes still match its name.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    digest: digest.clone(),
                    root: self.root.clone(),
                });
            }
            Err(e) => {
                return Err(FsError {
                    action: "read",
                    path,
                    source: e,
                }
                .into());
            }
        };
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::Corrupt {
                expected: digest.clone(),
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    /// Brings a blob from another layout into the store, verifying it on the way in.
    pub fn import(&self, source: &Path, digest: &Digest) -> Result<PathBuf, StoreError> {
        if self.has_blob(digest) {
            return Ok(self.blob_path(digest));
        }
        let mut input = File::open(source).with_path("open", source)?;
        let temp = self.temp_file()?;
        let mut writer = HashingWriter::new(temp);
        io::copy(&mut input, &mut writer).with_path("copy", source)?;
        let (temp, actual, _) = writer.finish();
        if &actual != digest {
            return Err(StoreError::Corrupt {
                expected: digest.clone(),
                actual,
                path: source.to_owned(),
            });
        }
        self.commit(temp, digest)
    }
}

impl Store {
    /// Remembers that `digest` is in `repository` on `registry` (after a push), so that a later
    /// push to another repository of that registry can mount it instead of uploading it.
    pub fn record_location(&self, digest: &Digest, registry: &str, repository: &str) {
        let dir = self.root.join(crate::areas::LOCATIONS);
        let line = format!("{registry}/{repository}");
        if self.locations(digest).contains(&line) {
            return;
        }
        // Best effort: the record is an optimisation, and losing it only costs an upload.
        let _ = fs::create_dir_all(&dir).and_then(|_| {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(digest.hex()))?;
            io::Write::write_all(&mut file, format!("{line}\n").as_bytes())
        });
    }

    /// Repositories (`registry/repository`) where `digest` was pushed before.
    pub fn locations(&self, digest: &Digest) -> Vec<String> {
        fs::read_to_string(self.root.join(crate::areas::LOCATIONS).join(digest.hex()))
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Repositories of `registry`, other than `repository`, where `digest` was pushed before:
    /// where a push to `repository` may mount it from.
    pub fn mount_sources(&self, digest: &Digest, registry: &str, repository: &str) -> Vec<String> {
        let prefix = format!("{registry}/");
        self.locations(digest)
            .iter()
            .filter_map(|location| location.strip_prefix(&prefix))
            .filter(|other| *other != repository)
            .map(str::to_owned)
            .collect()
    }
}

/// Places `source` at `target`: a hard link when both are on one file system, else a copy.
pub(crate) fn link_or_copy(source: &Path, target: &Path) -> Result<(), FsError> {
    if fs::hard_link(source, target).is_ok() {
        return Ok(());
    }
    fs::copy(source, target).with_path("copy", source)?;
    Ok(())
}

/// The store is a trust boundary: the trees it unpacks hold whatever an image or a RUN put
/// there (setuid files, a cache a RUN filled), so no other local user may reach into it. Made
/// 0700, and an older store made 0755 is closed on first use.
fn private(root: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::metadata(root).with_path("open the cache directory", root)?;
    // SAFETY: geteuid cannot fail.
    let mine = meta.uid() == unsafe { libc::geteuid() };
    if mine && meta.mode() & 0o077 != 0 {
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .with_path("make the cache directory private", root)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = store.put_bytes(b"config").unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), b"config");
        fs::write(store.blob_path(&digest), b"tampered").unwrap();
        let err = store.read_blob(&digest).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        let missing = Digest::of(b"nothing");
        assert!(matches!(
            store.read_blob(&missing),
            Err(StoreError::Missing { .. })
        ));
    }

    #[test]
    fn the_store_is_private_even_when_it_was_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(&root).unwrap();
        let mode = fs::metadata(&root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn import_verifies_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let source = dir.path().join("blob");
        fs::write(&source, b"abc").unwrap();
        assert!(store.import(&source, &Digest::of(b"abd")).is_err());
        let path = store.import(&source, &Digest::of(b"abc")).unwrap();
        assert_eq!(fs::read(path).unwrap(), b"abc");
    }
}
