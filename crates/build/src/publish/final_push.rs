//! The final pass: every blob of a built image (skipped, mounted or uploaded), then its
//! manifest.

use bytes::Bytes;

use crate::BuiltImage;
use dockless_oci::store::Store;
use dockless_registry::remote::{LayerSource, RemoteAccess};
use dockless_registry::{
    BlobSource, PushBlob, PushProgressFn, PushReport, PushRequest, Reference, RegistryClient,
    push_image,
};

use super::PublishError;
use super::early::EarlyReport;
use super::{file_blob, mount_candidates};

/// The push request for a built image: blobs from the store, base layers that stayed in their
/// registry streamed (or mounted) from there.
pub(crate) fn request_for_image(
    store: &Store,
    image: &BuiltImage,
    remote: &RemoteAccess,
) -> Result<PushRequest, PublishError> {
    let manifest = store.read_blob(&image.manifest.digest)?;
    let mut blobs = vec![file_blob(store, &image.config.digest, image.config.size)];
    for layer in &image.layers {
        if store.has_blob(&layer.digest) {
            blobs.push(file_blob(store, &layer.digest, layer.size));
            continue;
        }
        let Some(source) = &layer.source else {
            return Err(PublishError::MissingLayer(layer.digest.clone()));
        };
        blobs.push(PushBlob {
            digest: layer.digest.clone(),
            size: layer.size,
            source: BlobSource::Registry {
                client: remote.client(source.repository())?,
                repository: source.repository().repository().to_owned(),
            },
            mount_from: Vec::new(),
        });
    }
    Ok(PushRequest {
        manifest: Bytes::from(manifest),
        media_type: image.manifest.media_type.clone(),
        blobs,
        mount_from: Vec::new(),
    })
}

/// Builds and pushes a built image: blobs the registry has are skipped, blobs pushed before to
/// another repository of the same registry (or in the base's repository there) are mounted,
/// the rest uploaded; afterwards every blob's new location is remembered.
pub(crate) async fn push_built_image(
    store: &Store,
    image: &BuiltImage,
    mut request: PushRequest,
    client: &RegistryClient,
    target: &Reference,
    progress: Option<PushProgressFn>,
    early: EarlyReport,
) -> Result<PushReport, PublishError> {
    for blob in &mut request.blobs {
        // The repository a layer came from (a base's, a shared cache's), on the target registry.
        let home = image
            .layers
            .iter()
            .find(|l| l.digest == blob.digest)
            .and_then(|l| l.source.as_ref())
            .map(LayerSource::repository)
            .filter(|home| home.registry() == target.registry())
            .map(Reference::repository);
        blob.mount_from = mount_candidates(store, &blob.digest, target, home);
    }
    let report = push_image(client, target, &request, progress).await?;
    for digest in image.blobs() {
        store.record_location(&digest, target.registry(), target.repository());
    }
    Ok(early.count_in(report))
}
