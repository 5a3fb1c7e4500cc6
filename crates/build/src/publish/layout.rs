//! Pushing an OCI image layout as it lies on disk (`dockless push --from oci:DIR[:TAG]`).

use bytes::Bytes;

use dockless_oci::image::{Index, Manifest, media};
use dockless_oci::layout::Layout;
use dockless_registry::{
    BlobSource, PushBlob, PushProgressFn, PushReport, PushRequest, Reference, RegistryClient,
    RegistryError, push_image,
};

use super::PublishError;

/// Pushes what an OCI layout holds under `tag` (a manifest, or an index and its manifests).
pub(crate) async fn push_layout(
    client: &RegistryClient,
    layout: &Layout,
    tag: Option<&str>,
    target: &Reference,
    progress: Option<PushProgressFn>,
) -> Result<PushReport, PublishError> {
    let descriptor = layout.find(tag)?.clone();
    if media::is_manifest(&descriptor.media_type) {
        let bytes = layout.read_document(&descriptor)?;
        let request = layout_manifest_request(layout, bytes, &descriptor.media_type)?;
        return Ok(push_image(client, target, &request, progress).await?);
    }
    if !media::is_index(&descriptor.media_type) {
        return Err(invalid_layout(
            layout,
            format!(
                "its entry has media type {}, which cannot be pushed",
                descriptor.media_type
            ),
        ));
    }
    let index_bytes = layout.read_document(&descriptor)?;
    let index: Index = serde_json::from_slice(&index_bytes)
        .map_err(|e| invalid_layout(layout, format!("its index is not valid: {e}")))?;
    let (mut uploaded_blobs, mut skipped_blobs, mut mounted_blobs, mut uploaded_bytes) =
        (0, 0, 0, 0);
    for child in &index.manifests {
        if !media::is_manifest(&child.media_type) {
            return Err(invalid_layout(
                layout,
                format!("nested entry {} is not an image manifest", child.digest),
            ));
        }
        let bytes = layout.read_document(child)?;
        let request = layout_manifest_request(layout, bytes, &child.media_type)?;
        let by_digest = target
            .with_digest(child.digest.as_str())
            .map_err(RegistryError::from)?;
        let report = push_image(client, &by_digest, &request, progress.clone()).await?;
        uploaded_blobs += report.uploaded_blobs;
        skipped_blobs += report.skipped_blobs;
        mounted_blobs += report.mounted_blobs;
        uploaded_bytes += report.uploaded_bytes;
    }
    let manifest_digest = client
        .put_manifest(
            target.repository(),
            target.manifest_reference(),
            Bytes::from(index_bytes),
            &descriptor.media_type,
        )
        .await?;
    Ok(PushReport {
        manifest_digest,
        uploaded_blobs,
        skipped_blobs,
        mounted_blobs,
        uploaded_bytes,
    })
}

fn layout_manifest_request(
    layout: &Layout,
    bytes: Vec<u8>,
    media_type: &str,
) -> Result<PushRequest, PublishError> {
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid_layout(layout, format!("a manifest is not valid: {e}")))?;
    let blobs = std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .map(|d| PushBlob {
            digest: d.digest.clone(),
            size: d.size,
            source: BlobSource::File(layout.blob_path(&d.digest)),
            mount_from: Vec::new(),
        })
        .collect();
    Ok(PushRequest {
        manifest: Bytes::from(bytes),
        media_type: media_type.to_owned(),
        blobs,
        mount_from: Vec::new(),
    })
}

fn invalid_layout(layout: &Layout, message: String) -> PublishError {
    PublishError::InvalidLayout {
        dir: layout.dir().display().to_string(),
        message,
    }
}
