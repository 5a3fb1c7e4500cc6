//! Pushing a multi-platform build: each platform's layers go up while it is built, as one
//! image's do ([`early`]), then each platform's image by digest, the way a single image goes
//! up ([`final_push`]: blobs the registry has are skipped, a base's layers on the same registry
//! mounted, the others streamed from their registry, never downloaded into the store), then
//! the index under the target's tag.

use bytes::Bytes;

use dockless_oci::image::Platform;
use dockless_oci::store::Store;
use dockless_registry::remote::RemoteAccess;
use dockless_registry::{PushReport, PushRequest, Reference, RegistryError, push_image};

use super::early::{EarlyReport, EarlyUploads};
use super::{PublishError, PublishEvents, final_push};
use crate::BuildOptions;
use crate::multi::{self, BuiltIndex};

/// Builds every platform of `platforms` ([`multi::build_platforms`]) while their layers go up
/// to `target`; returns the index and what went up on the way (for [`push_index`] to the
/// same target). When the uploads failed, the build's layers still go to `--cache-to` before
/// the error is returned: the next build need not make them again.
pub fn build_index_beside(
    options: &BuildOptions,
    platforms: &[Platform],
    store: &Store,
    remote: &RemoteAccess,
    target: &Reference,
    events: &dyn PublishEvents,
) -> Result<(BuiltIndex, EarlyReport), PublishError> {
    let early = EarlyUploads::start(
        remote.runtime(),
        remote.client(target)?,
        target,
        events.progress(),
    );
    let built = early.build_beside(store, target, |observer| {
        multi::build_platforms(options, platforms, store, remote, Some(observer))
    });
    let early = remote.block_on(early.finish());
    // A failed build says why first.
    let built = built?;
    let early = early.inspect_err(|_| {
        super::export_caches(store, remote, &built.images, &options.cache_to, events);
    })?;
    Ok((built, early))
}

/// Pushes `built` to `target`: every platform's image (its blobs, then its manifest by
/// digest), then the index, tagged as the target says. `early` is what went up to this target
/// while the images were built ([`build_index_beside`]; the default for another target). The
/// report counts the blobs of every image and names the index.
pub fn push_index(
    store: &Store,
    remote: &RemoteAccess,
    built: &BuiltIndex,
    target: &Reference,
    events: &dyn PublishEvents,
    early: EarlyReport,
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
    Ok(early.count_in(report))
}
