//! `--cache-to`: the layers a build made or reused go to the cache repository under their keys,
//! in one manifest ([`super::format`]). Blobs the repository has are skipped, blobs elsewhere on
//! the same registry (the image just pushed, the cache read from) are mounted, and only the rest
//! is uploaded, from the store or streamed from where it lives.

use std::collections::HashSet;

use bytes::Bytes;

use super::{ExportEntry, format};
use dockless_oci::digest::Digest;
use dockless_oci::image::media;
use dockless_oci::store::{Store, StoreError};
use dockless_registry::remote::{RemoteAccess, RemoteError};
use dockless_registry::{BlobSource, PushBlob, PushRequest, Reference, RegistryError, push_image};

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub entries: usize,
    pub uploaded_blobs: usize,
    pub mounted_blobs: usize,
    pub skipped_blobs: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error("layer {0} is neither in the store nor in a registry it came from")]
    Missing(Digest),
}

// Registry errors carry a lot of context; boxed, they keep every Result small.
impl From<RegistryError> for ExportError {
    fn from(e: RegistryError) -> Self {
        ExportError::Registry(Box::new(e))
    }
}

/// Exports `entries` to `target` (a repository and tag; the tag is replaced), with `listings`
/// (a layer's digest and its listing's bytes) so that another machine knows those layers' trees
/// without downloading them. A layer listed under several keys goes up once.
pub fn export(
    store: &Store,
    remote: &RemoteAccess,
    entries: &[ExportEntry],
    listings: &[(Digest, Vec<u8>)],
    target: &Reference,
) -> Result<ExportReport, ExportError> {
    let client = remote.client(target)?;
    let config = store.put_bytes(format::EMPTY_CONFIG)?;
    let mut blobs = vec![PushBlob {
        digest: config.clone(),
        size: format::EMPTY_CONFIG.len() as u64,
        source: BlobSource::File(store.blob_path(&config)),
        mount_from: Vec::new(),
    }];
    let mut seen = HashSet::new();
    for export in entries {
        let layer = &export.entry.layer;
        if !seen.insert(layer.digest.clone()) {
            continue;
        }
        let source = if store.has_blob(&layer.digest) {
            BlobSource::File(store.blob_path(&layer.digest))
        } else {
            let Some(source) = &export.source else {
                return Err(ExportError::Missing(layer.digest.clone()));
            };
            BlobSource::Registry {
                client: remote.client(source.repository())?,
                repository: source.repository().repository().to_owned(),
            }
        };
        blobs.push(PushBlob {
            digest: layer.digest.clone(),
            size: layer.size,
            source,
            mount_from: store.mount_sources(&layer.digest, target.registry(), target.repository()),
        });
    }
    let mut listed = Vec::new();
    for (layer, bytes) in listings {
        let blob = store.put_bytes(bytes)?;
        if !seen.insert(blob.clone()) {
            continue;
        }
        blobs.push(PushBlob {
            digest: blob.clone(),
            size: bytes.len() as u64,
            source: BlobSource::File(store.blob_path(&blob)),
            mount_from: store.mount_sources(&blob, target.registry(), target.repository()),
        });
        listed.push(format::Listing {
            layer: layer.clone(),
            blob,
            size: bytes.len() as u64,
        });
    }
    let cache: Vec<_> = entries.iter().map(|e| e.entry.clone()).collect();
    let request = PushRequest {
        manifest: Bytes::from(format::manifest(&cache, &listed)),
        media_type: media::OCI_MANIFEST.into(),
        blobs,
        mount_from: Vec::new(),
    };
    let report = remote.block_on(push_image(&client, target, &request, None))?;
    for blob in &request.blobs {
        store.record_location(&blob.digest, target.registry(), target.repository());
    }
    Ok(ExportReport {
        entries: cache.iter().map(|e| &e.key).collect::<HashSet<_>>().len(),
        uploaded_blobs: report.uploaded_blobs,
        mounted_blobs: report.mounted_blobs,
        skipped_blobs: report.skipped_blobs,
    })
}
