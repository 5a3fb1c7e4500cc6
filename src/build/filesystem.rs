//! What the build knows of the image's file system below the layer being written: which
//! directories exist, and the user and group databases for `--chown`.
//!
//! A layer must not carry entries for directories that already exist below it (an entry would
//! overwrite their mode and owner: `/tmp` would lose its sticky bit), but it should carry entries
//! for the directories it creates. Knowing which is which needs the base's file list, which is
//! read from the base layers' tar headers when the layers are on this machine, and cached per
//! layer digest. Without it (`complete == false`), no implied directory entries are written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fs_error::{FsError, IoContext};
use crate::image::media;
use crate::image::users::UserDatabase;
use crate::store::Store;

/// The file system as far as the build knows it.
#[derive(Debug, Clone, Default)]
pub struct KnownFilesystem {
    /// True when every path below is known (a scratch base, or base layers that were read).
    pub complete: bool,
    /// Directories that exist, `/`-separated without a leading `/`.
    pub dirs: BTreeSet<String>,
    pub users: UserDatabase,
}

/// What one layer does to the file system, as far as directories and the user databases go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LayerSummary {
    dirs: Vec<String>,
    /// Paths deleted by `.wh.<name>` entries.
    removed: Vec<String>,
    /// Directories made opaque by `.wh..wh..opq`.
    opaque: Vec<String>,
    /// Every path written, so that later whiteouts and replacements are exact.
    other: Vec<String>,
    passwd: Option<String>,
    group: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("base layer {digest} has media type {media_type}, which dockless cannot read")]
    UnknownMediaType { digest: Digest, media_type: String },
    #[error("base layer {digest} is not a readable tar archive: {source}")]
    Unreadable {
        digest: Digest,
        #[source]
        source: io::Error,
    },
}

impl KnownFilesystem {
    pub fn scratch() -> Self {
        KnownFilesystem {
            complete: true,
            ..Default::default()
        }
    }

    /// Reads the base layers (blobs in `store`), oldest first, caching each layer's summary.
    pub fn scan(store: &Store, layers: &[(Digest, String)]) -> Result<Self, ScanError> {
        let mut paths: BTreeMap<String, bool> = BTreeMap::new(); // path -> is_dir
        let mut users = UserDatabase::default();
        for (digest, media_type) in layers {
            let summary = summarise_cached(store, digest, media_type)?;
            for removed in &summary.removed {
                remove_tree(&mut paths, removed);
                if removed == "etc/passwd" || removed == "etc" {
                    users.passwd = None;
                }
                if removed == "etc/group" || removed == "etc" {
                    users.group = None;
                }
            }
            for dir in &summary.opaque {
                let prefix = format!("{dir}/");
                paths.retain(|p, _| !p.starts_with(&prefix));
            }
            for dir in &summary.dirs {
                paths.insert(dir.clone(), true);
            }
            for other in &summary.other {
                paths.insert(other.clone(), false);
            }
            if summary.passwd.is_some() {
                users.passwd = summary.passwd.clone();
            }
            if summary.group.is_some() {
                users.group = summary.group.clone();
            }
        }
        Ok(KnownFilesystem {
            complete: true,
            dirs: paths
                .into_iter()
                .filter(|(_, d)| *d)
                .map(|(p, _)| p)
                .collect(),
            users,
        })
    }

    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.contains(path)
    }
}

fn remove_tree(paths: &mut BTreeMap<String, bool>, removed: &str) {
    let prefix = format!("{removed}/");
    paths.retain(|p, _| p != removed && !p.starts_with(&prefix));
}

fn summarise_cached(
    store: &Store,
    digest: &Digest,
    media_type: &str,
) -> Result<LayerSummary, ScanError> {
    let cache_dir = store.root().join("layer-summaries");
    let cache_file = cache_dir.join(format!("{}.json", digest.hex()));
    if let Ok(bytes) = fs::read(&cache_file)
        && let Ok(summary) = serde_json::from_slice(&bytes)
    {
        return Ok(summary);
    }
    let summary = summarise(&store.blob_path(digest), digest, media_type)?;
    // The cache is an optimisation: failing to write it must not fail the build.
    if fs::create_dir_all(&cache_dir).is_ok()
        && let Ok(temp) = tempfile::NamedTempFile::new_in(&cache_dir)
        && fs::write(
            temp.path(),
            serde_json::to_vec(&summary).unwrap_or_default(),
        )
        .is_ok()
    {
        let _ = temp.persist(&cache_file);
    }
    Ok(summary)
}

fn summarise(path: &Path, digest: &Digest, media_type: &str) -> Result<LayerSummary, ScanError> {
    let file = BufReader::new(File::open(path).with_path("open", path)?);
    let reader: Box<dyn Read> = match media_type {
        media::OCI_LAYER_GZIP | media::DOCKER_LAYER_GZIP => {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        }
        media::OCI_LAYER_ZSTD | media::DOCKER_LAYER_ZSTD => Box::new(
            zstd::Decoder::with_buffer(file).map_err(|source| ScanError::Unreadable {
                digest: digest.clone(),
                source,
            })?,
        ),
        media::OCI_LAYER_TAR | media::DOCKER_LAYER_TAR => Box::new(file),
        other => {
            return Err(ScanError::UnknownMediaType {
                digest: digest.clone(),
                media_type: other.into(),
            });
        }
    };
    read_summary(reader).map_err(|source| ScanError::Unreadable {
        digest: digest.clone(),
        source,
    })
}

fn read_summary(reader: impl Read) -> io::Result<LayerSummary> {
    let mut archive = tar::Archive::new(reader);
    let mut summary = LayerSummary::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let Some(path) = normalise(&String::from_utf8_lossy(&raw)) else {
            continue;
        };
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n),
            None => (String::new(), path.as_str()),
        };
        if name == ".wh..wh..opq" {
            summary.opaque.push(dir);
            continue;
        }
        if let Some(deleted) = name.strip_prefix(".wh.") {
            summary.removed.push(if dir.is_empty() {
                deleted.into()
            } else {
                format!("{dir}/{deleted}")
            });
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            summary.dirs.push(path);
            continue;
        }
        if kind.is_file() && (path == "etc/passwd" || path == "etc/group") && entry.size() < 1 << 20
        {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            if path == "etc/passwd" {
                summary.passwd = Some(text);
            } else {
                summary.group = Some(text);
            }
        }
        summary.other.push(path);
    }
    Ok(summary)
}

/// `./a/b/` → `a/b`; `None` for the root itself or names that climb out.
fn normalise(name: &str) -> Option<String> {
    crate::context::source::clean_relative(name).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn summary_records_dirs_whiteouts_and_user_databases() {
        let bytes = tar_of(&[
            ("./etc/", tar::EntryType::Directory, b""),
            (
                "etc/passwd",
                tar::EntryType::Regular,
                b"user:x:1000:1000::/:/bin/sh\n",
            ),
            ("tmp/.wh.old", tar::EntryType::Regular, b""),
            ("var/.wh..wh..opq", tar::EntryType::Regular, b""),
        ]);
        let s = read_summary(&bytes[..]).unwrap();
        assert_eq!(s.dirs, ["etc"]);
        assert_eq!(s.removed, ["tmp/old"]);
        assert_eq!(s.opaque, ["var"]);
        assert!(s.passwd.unwrap().starts_with("user:"));
    }
}
