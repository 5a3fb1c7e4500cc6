//! The base image named by FROM: `scratch`, or a local OCI layout (`oci:DIR[:TAG]`).

use std::path::{Path, PathBuf};

use super::filesystem::{KnownFilesystem, ScanError};
use crate::image::{Descriptor, ImageConfig, Index, Manifest, Platform, media};
use crate::layout::{Layout, LayoutError};
use crate::store::{Store, StoreError};

/// A resolved base image: its config and layers, all blobs in the store.
#[derive(Debug, Clone)]
pub struct Base {
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    pub filesystem: KnownFilesystem,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error(
        "FROM {0}: pulling base images from a registry is not supported yet; use FROM scratch or FROM oci:DIR[:TAG] (an OCI layout on disk, e.g. from `skopeo copy docker://IMAGE oci:DIR:TAG`)"
    )]
    RegistryNotSupported(String),
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
) -> Result<Base, BaseError> {
    if image == "scratch" {
        let p = platform.cloned().unwrap_or_else(Platform::linux_amd64);
        return Ok(Base {
            config: ImageConfig::scratch(&p.os, &p.architecture, p.variant),
            layers: Vec::new(),
            filesystem: KnownFilesystem::scratch(),
        });
    }
    let Some(location) = image.strip_prefix("oci:") else {
        return Err(BaseError::RegistryNotSupported(image.into()));
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
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| invalid(format!("its config is not valid: {e}")))?;
    if let Some(wanted) = platform {
        let have = Platform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
        };
        if !wanted.accepts(&have) {
            return Err(BaseError::NoPlatform {
                image: image.into(),
                platform: wanted.clone(),
                available: have.to_string(),
            });
        }
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(invalid(format!(
            "its config lists {} layers but its manifest {}",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
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
    })
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
