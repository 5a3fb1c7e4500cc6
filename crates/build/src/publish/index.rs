//! Pushing a multi-platform build: each platform's image by digest, the way a single image
//! goes up ([`final_push`]: blobs the registry has are skipped, a base's layers on the same
//! registry mounted, the others streamed from their registry, never downloaded into the
//! store), then the index under the target's tag.

use bytes::Bytes;

use dockless_oci::store::Store;
use dockless_registry::remote::RemoteAccess;
use dockless_registry::{PushReport, PushRequest, Reference, RegistryError, push_image};

use super::early::EarlyReport;
use super::{PublishError, PublishEvents, final_push};
use crate::multi::BuiltIndex;

/// Pushes `built` to `target`: every platform's image (its blobs, then its manifest by
/// digest), then the index, tagged as the target says. The report counts the blobs of every
/// image and names the index.
pub fn push_index(
    store: &Store,
    remote: &RemoteAccess,
    built: &BuiltIndex,
    target: &Reference,
    events: &dyn PublishEvents,
) -> Result<PushReport, PublishError> {
    let client = remote.client(target)?;
    let mut report = PushReport {
        manifest_digest: built.index.digest.clone(),
        uploaded_blobs: 0,
        skipped_blobs: 0,
        mounted_blobs: 0,
        uploaded_bytes: 0,
    };
    for image in &built.images {
        let request = final_push::request_for_image(store, image, remote)?;
        let blobs: Vec<_> = request
            .blobs
            .iter()
            .map(|b| (b.digest.clone(), b.size))
            .collect();
        events.pushing(&blobs);
        let by_digest = target
            .with_digest(image.manifest.digest.as_str())
            .map_err(RegistryError::from)?;
        let pushed = remote.block_on(final_push::push_built_image(
            store,
            image,
            request,
            &client,
            &by_digest,
            events.progress(),
            EarlyReport::default(),
        ))?;
        report.uploaded_blobs += pushed.uploaded_blobs;
        report.skipped_blobs += pushed.skipped_blobs;
        report.mounted_blobs += pushed.mounted_blobs;
        report.uploaded_bytes += pushed.uploaded_bytes;
    }
    // Every manifest the index names is there now: push_image checks it before the PUT.
    let request = PushRequest {
        manifest: Bytes::from(store.read_blob(&built.index.digest)?),
        media_type: built.index.media_type.clone(),
        blobs: Vec::new(),
        mount_from: Vec::new(),
    };
    let pushed = remote.block_on(push_image(&client, target, &request, events.progress()))?;
    report.manifest_digest = pushed.manifest_digest;
    Ok(report)
}
