//! What one layer does to the file system: every path it writes (with type, mode, owner and
//! link target), what its whiteouts remove, and the user databases it carries. Read once from
//! the layer's tar headers and cached in the store by the layer's digest, so a base is read
//! once per machine and a no-op build reads only the cached summaries.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Node, NodeKind, ScanError};
use dockless_oci::digest::Digest;
use dockless_oci::fs_error::IoContext;
use dockless_oci::image::media;
use dockless_oci::store::Store;

/// Where summaries live in the store. The name carries the format: a summary written by an
/// older dockless (directories only, no owners) is never read as one of these.
const CACHE_DIR: &str = dockless_oci::areas::LISTINGS;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct LayerSummary {
    /// Every path the layer writes, in archive order (a later entry replaces an earlier one).
    pub entries: Vec<(String, Node)>,
    /// Paths deleted by `.wh.<name>` entries.
    pub removed: Vec<String>,
    /// Directories made opaque by `.wh..wh..opq`.
    pub opaque: Vec<String>,
    pub passwd: Option<String>,
    pub group: Option<String>,
}

fn cache_file(store: &Store, digest: &Digest) -> PathBuf {
    store
        .root()
        .join(CACHE_DIR)
        .join(format!("{}.json", digest.hex()))
}

/// Whether the layer's summary is cached (then its blob is not needed to know its files).
pub fn is_cached(store: &Store, digest: &Digest) -> bool {
    cache_file(store, digest).is_file()
}

/// The cached summary of the layer `digest`, as stored (to share it through a cache).
pub fn cached_bytes(store: &Store, digest: &Digest) -> Option<Vec<u8>> {
    fs::read(cache_file(store, digest)).ok()
}

/// Caches `bytes`, a summary of the layer `digest` that another machine made (a shared cache),
/// if they read as one; whether they did. What they say about the layer cannot be checked
/// without the layer: a shared cache is trusted as far as what its layers hold.
pub fn adopt(store: &Store, digest: &Digest, bytes: &[u8]) -> bool {
    if serde_json::from_slice::<LayerSummary>(bytes).is_err() {
        return false;
    }
    write_cache(store, &cache_file(store, digest), bytes);
    true
}

/// Writes a summary into the cache, aside then renamed. The cache is an optimisation: failing
/// to write it must not fail the build.
fn write_cache(store: &Store, cache_file: &Path, bytes: &[u8]) {
    // Written in this process's temporary directory: a killed process leaves nothing here.
    if let Some(cache_dir) = cache_file.parent()
        && fs::create_dir_all(cache_dir).is_ok()
        && let Ok(temp) = store.temp_file()
        && fs::write(temp.path(), bytes).is_ok()
    {
        let _ = temp.persist(cache_file);
    }
}

/// The layer's summary: from the cache, or read from its blob in `store` and cached.
pub(super) fn summarise_cached(
    store: &Store,
    digest: &Digest,
    media_type: &str,
) -> Result<LayerSummary, ScanError> {
    let cache_file = cache_file(store, digest);
    if let Ok(bytes) = fs::read(&cache_file)
        && let Ok(summary) = serde_json::from_slice(&bytes)
    {
        dockless_oci::areas::mark_used(&cache_file);
        return Ok(summary);
    }
    let started = std::time::Instant::now();
    let summary = summarise(&store.blob_path(digest), digest, media_type)?;
    tracing::info!(layer = %digest, entries = summary.entries.len(), elapsed = ?started.elapsed(), "layer listing read");
    write_cache(
        store,
        &cache_file,
        &serde_json::to_vec(&summary).unwrap_or_default(),
    );
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

pub(super) fn read_summary(reader: impl Read) -> io::Result<LayerSummary> {
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
        let header = entry.header();
        let kind = header.entry_type();
        let node_kind = if kind.is_dir() {
            NodeKind::Dir
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default();
            NodeKind::Symlink(String::from_utf8_lossy(&target).into_owned())
        } else if kind.is_file() || kind.is_hard_link() || kind == tar::EntryType::Continuous {
            NodeKind::File
        } else {
            NodeKind::Other
        };
        let node = Node {
            kind: node_kind,
            mode: header.mode().unwrap_or(0o644) & 0o7777,
            uid: header.uid().unwrap_or(0),
            gid: header.gid().unwrap_or(0),
        };
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
        summary.entries.push((path, node));
    }
    Ok(summary)
}

/// `./a/b/` → `a/b`; `None` for the root itself or names that climb out.
fn normalise(name: &str) -> Option<String> {
    dockless_context::source::clean_relative(name).filter(|p| !p.is_empty())
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
            header.set_uid(7);
            if kind.is_symlink() {
                header
                    .set_link_name(std::str::from_utf8(data).unwrap())
                    .unwrap();
                header.set_size(0);
                builder.append_data(&mut header, name, &[][..]).unwrap();
            } else {
                builder.append_data(&mut header, name, *data).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn summary_records_entries_whiteouts_links_and_user_databases() {
        let bytes = tar_of(&[
            ("./etc/", tar::EntryType::Directory, b""),
            (
                "etc/passwd",
                tar::EntryType::Regular,
                b"user:x:1000:1000::/:/bin/sh\n",
            ),
            ("tmp/.wh.old", tar::EntryType::Regular, b""),
            ("var/.wh..wh..opq", tar::EntryType::Regular, b""),
            ("lib", tar::EntryType::Symlink, b"usr/lib"),
        ]);
        let s = read_summary(&bytes[..]).unwrap();
        let paths: Vec<&str> = s.entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["etc", "etc/passwd", "lib"]);
        assert_eq!(s.entries[0].1.kind, NodeKind::Dir);
        assert_eq!((s.entries[0].1.mode, s.entries[0].1.uid), (0o755, 7));
        assert_eq!(s.entries[2].1.kind, NodeKind::Symlink("usr/lib".into()));
        assert_eq!(s.removed, ["tmp/old"]);
        assert_eq!(s.opaque, ["var"]);
        assert!(s.passwd.unwrap().starts_with("user:"));
    }
}
