//! The base image named by FROM: `scratch`, a local OCI layout (`oci:DIR[:TAG]`), or an image
//! in a registry.

use std::path::{Path, PathBuf};

use super::filesystem::{KnownFilesystem, ScanError};
use dockless_oci::digest::Digest;
use dockless_oci::image::{Descriptor, ImageConfig, Index, Manifest, Platform, media};
use dockless_oci::layout::{Layout, LayoutError};
use dockless_oci::store::{Store, StoreError};
use dockless_registry::remote::{BlobFetcher, RemoteAccess, RemoteError};
use dockless_registry::{Reference, ReferenceError};

/// A resolved base image: its config and layers (in the store, or in `remote`'s repository).
#[derive(Debug, Clone)]
pub struct Base {
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    pub filesystem: KnownFilesystem,
    /// The registry repository the base came from; its layers stay there until needed.
    pub remote: Option<Reference>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("FROM {0}: {1}")]
    Reference(String, #[source] ReferenceError),
    #[error("FROM {image}: {source}")]
    Remote {
        image: String,
        #[source]
        source: Box<RemoteError>,
    },
    #[error("FROM {image}: {source}")]
    Layout {
        image: String,
        #[source]
        source: LayoutError,
    },
    #[error("FROM {image}: no image for platform {platform}; it has: {available}")]
    NoPlatform {
        image: String,
        platform: Platform,
        available: String,
    },
    #[error("FROM {image}: {message}")]
    Invalid { image: String, message: String },
    #[error("FROM {image}: {source}")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("FROM {image}: {source}")]
    Scan {
        image: String,
        #[source]
        source: ScanError,
    },
}

/// Resolves FROM. `platform` is what the build asked for (`--platform`), if anything.
pub fn resolve(
    image: &str,
    context_root: &Path,
    platform: Option<&Platform>,
    store: &Store,
    remote: &RemoteAccess,
) -> Result<Base, BaseError> {
    if image == "scratch" {
        let p = platform.cloned().unwrap_or_else(Platform::linux_amd64);
        return Ok(Base {
            config: ImageConfig::scratch(&p.os, &p.architecture, p.variant),
            layers: Vec::new(),
            filesystem: KnownFilesystem::scratch(),
            remote: None,
        });
    }
    let Some(location) = image.strip_prefix("oci:") else {
        let reference =
            Reference::parse(image).map_err(|e| BaseError::Reference(image.into(), e))?;
        return from_registry(image, reference, platform, store, remote);
    };
    let (dir, tag) = split_layout_reference(location);
    let dir = context_root.join(dir);
    from_layout(image, &dir, tag, platform, store)
}

/// `DIR:TAG` → (DIR, Some(TAG)); a colon inside the directory part is kept (`a:b/c`).
pub fn split_layout_reference(location: &str) -> (PathBuf, Option<&str>) {
    match location.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !tag.is_empty() => {
            (PathBuf::from(dir), Some(tag))
        }
        _ => (PathBuf::from(location), None),
    }
}

fn from_layout(
    image: &str,
    dir: &Path,
    tag: Option<&str>,
    platform: Option<&Platform>,
    store: &Store,
) -> Result<Base, BaseError> {
    let layout_err = |source| BaseError::Layout {
        image: image.into(),
        source,
    };
    let invalid = |message: String| BaseError::Invalid {
        image: image.into(),
        message,
    };
    let layout = Layout::open(dir).map_err(layout_err)?;
    let mut descriptor = layout.find(tag).map_err(layout_err)?.clone();
    if media::is_index(&descriptor.media_type) {
        let bytes = layout.read_document(&descriptor).map_err(layout_err)?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("its index is not valid JSON: {e}")))?;
        let wanted = platform.cloned().unwrap_or_else(Platform::linux_amd64);
        descriptor = index
            .select(&wanted)
            .ok_or_else(|| BaseError::NoPlatform {
                image: image.into(),
                platform: wanted.clone(),
                available: index.platforms().join(", "),
            })?
            .clone();
    }
    if !media::is_manifest(&descriptor.media_type) {
        return Err(invalid(format!(
            "it points to {}, not an image manifest",
            descriptor.media_type
        )));
    }
    let bytes = layout.read_document(&descriptor).map_err(layout_err)?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("its manifest is not valid: {e}")))?;
    let config_bytes = layout.read_document(&manifest.config).map_err(layout_err)?;
    let config = parse_config(image, &config_bytes, &manifest, platform)?;
    let store_err = |source| BaseError::Store {
        image: image.into(),
        source,
    };
    for layer in &manifest.layers {
        store
            .import(&layout.blob_path(&layer.digest), &layer.digest)
            .map_err(store_err)?;
    }
    let layers: Vec<_> = manifest
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.media_type.clone()))
        .collect();
    let filesystem = KnownFilesystem::scan(store, &layers).map_err(|source| BaseError::Scan {
        image: image.into(),
        source,
    })?;
    Ok(Base {
        config,
        layers: manifest.layers,
        filesystem,
        remote: None,
    })
}

/// A base from a registry: its manifest and config are fetched; its layers are not (they are
/// mounted or streamed when pushing, and fetched for `--output`, RUN, or once to know its
/// files: see [`load_filesystem`]).
fn from_registry(
    image: &str,
    reference: Reference,
    platform: Option<&Platform>,
    store: &Store,
    remote: &RemoteAccess,
) -> Result<Base, BaseError> {
    let remote_err = |source: RemoteError| BaseError::Remote {
        image: image.into(),
        source: Box::new(source),
    };
    let invalid = |message: String| BaseError::Invalid {
        image: image.into(),
        message,
    };
    let client = remote.client(&reference).map_err(remote_err)?;
    let repository = reference.repository().to_owned();
    let mut fetched = remote
        .block_on(client.get_manifest(&repository, reference.manifest_reference()))
        .map_err(|e| remote_err(e.into()))?;
    if media::is_index(&fetched.media_type) {
        let index: Index = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| invalid(format!("its index is not valid JSON: {e}")))?;
        let wanted = platform.cloned().unwrap_or_else(Platform::linux_amd64);
        let chosen = index.select(&wanted).ok_or_else(|| BaseError::NoPlatform {
            image: image.into(),
            platform: wanted.clone(),
            available: index.platforms().join(", "),
        })?;
        fetched = remote
            .block_on(client.get_manifest(&repository, chosen.digest.as_str()))
            .map_err(|e| remote_err(e.into()))?;
    }
    if !media::is_manifest(&fetched.media_type) {
        return Err(invalid(format!(
            "the registry answered with {}, not an image manifest",
            fetched.media_type
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| invalid(format!("its manifest is not valid: {e}")))?;
    if manifest.config.size > dockless_oci::layout::MAX_DOCUMENT {
        return Err(invalid(format!(
            "its config is {} bytes, over the 4 MiB limit",
            manifest.config.size
        )));
    }
    remote
        .fetch_blob(store, &reference, &manifest.config.digest)
        .map_err(remote_err)?;
    let config_bytes =
        store
            .read_blob(&manifest.config.digest)
            .map_err(|source| BaseError::Store {
                image: image.into(),
                source,
            })?;
    let config = parse_config(image, &config_bytes, &manifest, platform)?;
    Ok(Base {
        config,
        layers: manifest.layers,
        filesystem: KnownFilesystem::default(),
        remote: Some(reference),
    })
}

/// The base's config, checked against the platform asked for and against its manifest.
fn parse_config(
    image: &str,
    bytes: &[u8],
    manifest: &Manifest,
    platform: Option<&Platform>,
) -> Result<ImageConfig, BaseError> {
    let invalid = |message: String| BaseError::Invalid {
        image: image.into(),
        message,
    };
    let config: ImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("its config is not valid: {e}")))?;
    check_platform(image, &config, platform)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(invalid(format!(
            "its config lists {} layers but its manifest {}",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    Ok(config)
}

fn check_platform(
    image: &str,
    config: &ImageConfig,
    platform: Option<&Platform>,
) -> Result<(), BaseError> {
    let Some(wanted) = platform else {
        return Ok(());
    };
    let have = Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    };
    if wanted.accepts(&have) {
        Ok(())
    } else {
        Err(BaseError::NoPlatform {
            image: image.into(),
            platform: wanted.clone(),
            available: have.to_string(),
        })
    }
}

/// The file system after `layers` (oldest first; the base's layers come from `remote`'s
/// repository when `remote` is set). Each layer's listing is read from the store's cache, or
/// once from the layer itself, fetched into the store if it is not there yet: a base is read
/// once per machine, and a build whose listings are cached touches no layer.
pub(crate) fn load_filesystem(
    store: &Store,
    remote: &RemoteAccess,
    reference: Option<&Reference>,
    layers: &[(Digest, String)],
) -> Result<KnownFilesystem, BaseError> {
    let unlisted = layers
        .iter()
        .any(|(digest, _)| !crate::filesystem::listing_is_cached(store, digest));
    let fetcher =
        match reference {
            Some(reference) if unlisted => Some(remote.blob_fetcher(reference).map_err(
                |source| BaseError::Remote {
                    image: reference.to_string(),
                    source: Box::new(source),
                },
            )?),
            _ => None,
        };
    load_filesystem_by(store, fetcher.as_ref(), reference, layers)
}

/// [`load_filesystem`], the base's blobs fetched by `fetcher` (from `reference`): owned, so
/// that a thread of its own may read the listing while the build goes on.
pub(crate) fn load_filesystem_by(
    store: &Store,
    fetcher: Option<&BlobFetcher>,
    reference: Option<&Reference>,
    layers: &[(Digest, String)],
) -> Result<KnownFilesystem, BaseError> {
    let image = reference.map_or_else(|| "the stage's layers".to_owned(), |r| r.to_string());
    let started = std::time::Instant::now();
    for (digest, media_type) in layers {
        if let Some(fetcher) = fetcher
            && !crate::filesystem::listing_is_cached(store, digest)
        {
            fetch_and_list(store, fetcher, digest, media_type).map_err(|source| {
                BaseError::Remote {
                    image: image.clone(),
                    source: Box::new(source),
                }
            })?;
        }
    }
    let known =
        KnownFilesystem::scan(store, layers).map_err(|source| BaseError::Scan { image, source })?;
    tracing::info!(layers = layers.len(), paths = known.nodes.len(), elapsed = ?started.elapsed(), "file system known");
    Ok(known)
}

/// Downloaded chunks the listing may fall behind by before the download waits for it.
const CHUNKS_AHEAD: usize = 256;

/// Downloads a layer the store lacks, reading its listing on another thread from the bytes as
/// they arrive; the listing is kept once the download matched its digest. A listing that could
/// not be read so is read from the stored blob afterwards, as for a blob already here.
fn fetch_and_list(
    store: &Store,
    fetcher: &BlobFetcher,
    digest: &Digest,
    media_type: &str,
) -> Result<(), RemoteError> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let (sender, chunks) = std::sync::mpsc::sync_channel::<bytes::Bytes>(CHUNKS_AHEAD);
    let mut sent: u64 = 0;
    let (fetched, listed) = std::thread::scope(|scope| {
        let lister =
            scope.spawn(move || crate::filesystem::summarise_download(digest, media_type, chunks));
        // A lister that stopped early (the archive's end, or bytes it cannot read) takes no
        // more chunks; the download goes on for the store.
        let sent = &mut sent;
        let mut send = move |chunk: &bytes::Bytes| {
            *sent += chunk.len() as u64;
            let _ = sender.send(chunk.clone());
        };
        let fetched = fetcher.fetch_with(store, digest, &mut send);
        drop(send);
        (fetched, lister.join())
    });
    fetched?;
    // Only a listing of every byte of the stored blob (not, say, of nothing, when another
    // process stored the blob first) describes it.
    let stored = std::fs::metadata(store.blob_path(digest)).map(|m| m.len());
    if let (Ok(Some(summary)), Ok(size)) = (listed, stored)
        && size == sent
    {
        crate::filesystem::cache_summary(store, digest, &summary);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_references_split_at_the_tag() {
        assert_eq!(
            split_layout_reference("base:v1"),
            (PathBuf::from("base"), Some("v1"))
        );
        assert_eq!(
            split_layout_reference("base"),
            (PathBuf::from("base"), None)
        );
        assert_eq!(
            split_layout_reference("a:b/c"),
            (PathBuf::from("a:b/c"), None)
        );
    }
}
