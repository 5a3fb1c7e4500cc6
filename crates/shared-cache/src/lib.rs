//! The layer cache and the RUN cache, shared between machines through any OCI registry:
//! `--cache-from REF` reads the entries another build exported, `--cache-to REF` exports this
//! build's (see [`export`]).
//!
//! An entry maps a key to a layer. Keys depend on contents only, never on the machine:
//! - a layer of files (COPY, ADD, a WORKDIR that creates directories): [`files_key`], the
//!   layer's diff_id (its tar, hashed and not compressed: every path, mode, owner, link target
//!   and byte, with the build's SOURCE_DATE_EPOCH) and the compression that makes the blob.
//!   File modification times and inode numbers of the context never enter it.
//! - a RUN: the RUN cache key (the sandbox crate's `RunKey`): the diff_ids of every layer below
//!   (the base by its layers' digests), the command, its environment and build arguments,
//!   user, working directory, platform, network, mounts and the compression.
//!
//! The cache is untrusted input. Every blob that is downloaded is checked against its digest,
//! and a layer's uncompressed bytes against the diff_id its entry claims; an entry that lists
//! its layer wrongly, whose blob is missing or of another size, or whose diff_id is a lie is
//! ignored with a warning, and the build makes that layer itself. A cache that cannot be read
//! is a warning and a normal build. What cannot be checked without downloading a layer is that
//! a RUN entry's layer is what the command would have made: anyone who can push to the cache
//! repository can change future builds, as with BuildKit's registry cache.
//!
//! May use: oci, layer, registry.

mod export;
pub mod format;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use dockless_layer::{LayerSettings, WrittenLayer};
use dockless_oci::digest::Digest;
use dockless_oci::store::Store;
use dockless_registry::Reference;
use dockless_registry::remote::{LayerSource, RemoteAccess};

pub use export::{ExportError, ExportReport, export};

/// Bumped whenever the layer a files key names may change for the same diff_id.
const FILES_VERSION: &str = "dockless-shared-files-v1";

/// The key of a layer of files: its diff_id and the compression that makes its blob.
///
/// Shared between machines, so written by hand, never from a type's `Debug`: the lower-case
/// hex SHA-256 of `dockless-shared-files-v1\n<compression>\n<diff_id>\n`, where
/// `<compression>` is [`Compression::key_text`](dockless_oci::image::Compression::key_text) (`gzip:1`)
/// and `<diff_id>` is `sha256:<hex>`; neither can hold a newline, so the lines cannot run
/// into each other.
pub fn files_key(diff_id: &Digest, settings: LayerSettings) -> String {
    let compression = settings.compression.key_text();
    let mut hasher = Sha256::new();
    hasher.update(format!("{FILES_VERSION}\n{compression}\n{diff_id}\n").as_bytes());
    hex::encode(hasher.finalize())
}

/// What made a cached layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// COPY, ADD or WORKDIR: keyed by [`files_key`].
    Files,
    /// RUN: keyed by the RUN cache key.
    Run,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Files => "files",
            EntryKind::Run => "run",
        }
    }
}

/// One key and the layer it gives.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub key: String,
    pub kind: EntryKind,
    pub layer: WrittenLayer,
    pub media_type: String,
}

/// A layer this build made or reused, to export: where its blob is when the store lacks it.
#[derive(Debug, Clone)]
pub struct ExportEntry {
    pub entry: CacheEntry,
    pub source: Option<LayerSource>,
}

/// A layer found in a shared cache.
#[derive(Debug, Clone)]
pub struct SharedHit {
    pub layer: WrittenLayer,
    /// The cache repository that holds its blob.
    pub source: LayerSource,
}

/// The entries of the `--cache-from` references, as read at the start of a build.
pub struct SharedCache<'a> {
    remote: Option<&'a RemoteAccess>,
    /// By key: the entry and the repository holding its blob (the first reference wins).
    entries: HashMap<String, (CacheEntry, Reference)>,
    /// By the layer they list: listings of layers, and the repository holding them.
    listings: HashMap<Digest, (format::Listing, Reference)>,
    /// Entries found wrong during this build: never used again.
    rejected: Mutex<HashSet<String>>,
    /// Blobs already found present, by repository and digest.
    present: Mutex<HashSet<(String, Digest)>>,
    /// Layers (digest, diff_id) already found to unpack to their diff_id.
    verified: Mutex<HashSet<(Digest, Digest)>>,
}

impl<'a> SharedCache<'a> {
    /// No shared cache: every lookup misses.
    pub fn none() -> Self {
        SharedCache {
            remote: None,
            entries: HashMap::new(),
            listings: HashMap::new(),
            rejected: Mutex::new(HashSet::new()),
            present: Mutex::new(HashSet::new()),
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Reads every reference's entries. A reference that cannot be read (missing, denied,
    /// not a cache) is a warning, and the build goes on without it.
    pub fn load(remote: &'a RemoteAccess, references: &[Reference]) -> Self {
        let mut cache = SharedCache {
            remote: Some(remote),
            ..SharedCache::none()
        };
        for reference in references {
            match read_entries(remote, reference) {
                Ok(parsed) => {
                    tracing::info!(cache = %reference, entries = parsed.entries.len(), listings = parsed.listings.len(), "shared cache read");
                    for entry in parsed.entries {
                        cache
                            .entries
                            .entry(entry.key.clone())
                            .or_insert_with(|| (entry, reference.clone()));
                    }
                    for listing in parsed.listings {
                        cache
                            .listings
                            .entry(listing.layer.clone())
                            .or_insert_with(|| (listing, reference.clone()));
                    }
                }
                Err(why) => tracing::warn!("--cache-from {reference}: {why}; building without it"),
            }
        }
        cache
    }

    /// Whether any entry was read (no lookup work is worth doing otherwise).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The listing another machine made of the layer `layer`, if the cache has one: fetched
    /// into `store` (its digest checked), then read.
    pub fn listing(&self, store: &Store, layer: &Digest) -> Option<Vec<u8>> {
        let (listing, repository) = self.listings.get(layer)?;
        let remote = self.remote?;
        let fetched = remote
            .fetch_blob(store, repository, &listing.blob)
            .map_err(|e| e.to_string())
            .and_then(|()| store.read_blob(&listing.blob).map_err(|e| e.to_string()));
        match fetched {
            Ok(bytes) => Some(bytes),
            Err(why) => {
                tracing::warn!(
                    "shared cache {repository}: the listing of layer {layer} could not be read ({why}); the layer is read instead"
                );
                None
            }
        }
    }

    /// The layer `key` gives, if an entry has it and its blob is in the cache repository with
    /// the size the entry says (a wrong entry is warned about and ignored from then on).
    pub fn find(&self, key: &str) -> Option<SharedHit> {
        let (entry, repository) = self.entries.get(key)?;
        if self.is_rejected(key) {
            return None;
        }
        let remote = self.remote?;
        let digest = &entry.layer.digest;
        let id = (repository.to_string(), digest.clone());
        if !self.lock_present().contains(&id) {
            let size = remote
                .client(repository)
                .map_err(|e| e.to_string())
                .and_then(|client| {
                    remote
                        .block_on(client.blob_size(repository.repository(), digest))
                        .map_err(|e| e.to_string())
                });
            match size {
                Ok(Some(size)) if size == entry.layer.size => {
                    self.lock_present().insert(id);
                }
                Ok(Some(size)) => {
                    self.reject(
                        key,
                        &format!(
                            "its blob {digest} has {size} bytes, the entry says {}",
                            entry.layer.size
                        ),
                    );
                    return None;
                }
                Ok(None) => {
                    self.reject(key, &format!("its blob {digest} is not in {repository}"));
                    return None;
                }
                Err(why) => {
                    self.reject(
                        key,
                        &format!("its blob {digest} could not be checked: {why}"),
                    );
                    return None;
                }
            }
        }
        tracing::debug!(key, %digest, kind = entry.kind.as_str(), "shared cache hit");
        Some(SharedHit {
            layer: entry.layer.clone(),
            source: LayerSource::SharedCache {
                repository: repository.clone(),
                key: key.to_owned(),
            },
        })
    }

    /// Whether the blob `digest` was found to unpack to `diff_id` during this build.
    pub fn is_verified(&self, digest: &Digest, diff_id: &Digest) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(digest.clone(), diff_id.clone()))
    }

    /// Remembers that the blob `digest` unpacks to `diff_id`.
    pub fn verified(&self, digest: &Digest, diff_id: &Digest) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((digest.clone(), diff_id.clone()));
    }

    /// Stops using the entry `key`, saying why.
    pub fn reject(&self, key: &str, why: &str) {
        let first = self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned());
        if first {
            let reference = self
                .entries
                .get(key)
                .map(|(_, r)| r.to_string())
                .unwrap_or_default();
            tracing::warn!(
                "shared cache {reference}: ignoring the entry {}…: {why}; this layer is made here instead",
                &key[..key.len().min(12)]
            );
        }
    }

    fn is_rejected(&self, key: &str) -> bool {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn lock_present(&self) -> std::sync::MutexGuard<'_, HashSet<(String, Digest)>> {
        self.present.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a cache reference could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Remote(#[from] dockless_registry::remote::RemoteError),
    #[error(transparent)]
    Registry(Box<dockless_registry::RegistryError>),
    #[error(transparent)]
    Format(#[from] format::FormatError),
}

impl From<dockless_registry::RegistryError> for ReadError {
    fn from(e: dockless_registry::RegistryError) -> Self {
        ReadError::Registry(Box::new(e))
    }
}

/// The entries the cache manifest at `reference` lists.
fn read_entries(remote: &RemoteAccess, reference: &Reference) -> Result<format::Parsed, ReadError> {
    let client = remote.client(reference)?;
    let fetched = remote
        .block_on(client.get_manifest(reference.repository(), reference.manifest_reference()))?;
    let parsed = format::parse(&fetched.bytes)?;
    for warning in &parsed.warnings {
        tracing::warn!("--cache-from {reference}: {warning}; that entry is ignored");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockless_oci::image::Compression;

    #[test]
    fn files_keys_follow_the_diff_id_and_the_compression_only() {
        let gzip = LayerSettings {
            compression: Compression::Gzip { level: 1 },
            epoch: 0,
        };
        let a = Digest::of(b"a");
        let key = files_key(&a, gzip);
        // Pinned: other machines look this key up. Also what the documented text gives
        // when hashed by a separate script.
        assert_eq!(
            key,
            "f7d789341da50bff790421d81424e585cfe3f743d20221471f0b0a994f1ecff5"
        );
        assert_eq!(files_key(&a, gzip), key);
        assert_ne!(files_key(&Digest::of(b"b"), gzip), key);
        let zstd = LayerSettings {
            compression: Compression::Zstd { level: 3 },
            ..gzip
        };
        assert_ne!(files_key(&a, zstd), key);
        // The epoch is inside the diff_id (every entry's mtime), not beside it.
        assert_eq!(files_key(&a, LayerSettings { epoch: 9, ..gzip }), key);
    }
}
