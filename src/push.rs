//! From an image in the store (or an OCI layout on disk) to a push request for the registry.

use bytes::Bytes;

use crate::build::{BuiltImage, BuiltLayer, LayerObserver};
use crate::digest::Digest;
use crate::image::{Index, Manifest, media};
use crate::layer::{LiveBlob, LiveProgress};
use crate::layout::{Layout, LayoutError};
use crate::registry::{
    BlobOutcome, BlobSource, GrowingOutcome, PushBlob, PushProgress, PushProgressFn, PushReport,
    PushRequest, Reference, RegistryClient, RegistryError, push_image,
};
use crate::remote::{RemoteAccess, RemoteError};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Remote(Box<RemoteError>),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("layer {0} is neither in the local store nor in a base image's registry; build again")]
    MissingLayer(Digest),
    #[error("{dir}: {message}")]
    InvalidLayout { dir: String, message: String },
}

// Registry errors carry a lot of context; boxed, they keep every Result small.
impl From<RemoteError> for PushError {
    fn from(e: RemoteError) -> Self {
        PushError::Remote(Box::new(e))
    }
}

impl From<RegistryError> for PushError {
    fn from(e: RegistryError) -> Self {
        PushError::Registry(Box::new(e))
    }
}

/// The push request for a built image: blobs from the store, base layers that stayed in their
/// registry streamed (or mounted) from there.
pub fn request_for_image(
    store: &Store,
    image: &BuiltImage,
    remote: &RemoteAccess,
) -> Result<PushRequest, PushError> {
    let manifest = store.read_blob(&image.manifest.digest)?;
    let base_client = match &image.base {
        Some(base) => Some((remote.client(base)?, base.repository().to_owned())),
        None => None,
    };
    let mut blobs = vec![file_blob(store, &image.config.digest, image.config.size)];
    for layer in &image.layers {
        if store.has_blob(&layer.digest) {
            blobs.push(file_blob(store, &layer.digest, layer.size));
            continue;
        }
        let (client, repository) = match (&base_client, layer.from_base) {
            (Some((client, repository)), true) => (client.clone(), repository.clone()),
            _ => return Err(PushError::MissingLayer(layer.digest.clone())),
        };
        blobs.push(PushBlob {
            digest: layer.digest.to_string(),
            size: layer.size,
            source: BlobSource::Registry { client, repository },
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

/// Uploads layers while the build is still going: a new layer is streamed to the registry as
/// it is compressed (see [`RegistryClient::upload_growing`]), a layer from the layer cache is
/// sent (HEAD, mount, upload) as soon as the build reaches it. The manifest push afterwards
/// finds these blobs present and skips them, and uploads from the store whatever a stream
/// failed to deliver.
pub struct EarlyUploads {
    sender: tokio::sync::mpsc::UnboundedSender<Early>,
    task: tokio::task::JoinHandle<Result<EarlyReport, PushError>>,
    /// Streams of layers being written, to recognise their layers when they are done.
    streams: std::sync::Mutex<Vec<LiveBlob>>,
    stream_layers: bool,
}

/// One job for the early uploads.
enum Early {
    Blob(PushBlob),
    Stream(LiveBlob),
}

/// What the early uploads did.
#[derive(Debug, Clone, Copy, Default)]
pub struct EarlyReport {
    pub uploaded_blobs: usize,
    pub mounted_blobs: usize,
    pub skipped_blobs: usize,
    pub uploaded_bytes: u64,
}

impl EarlyReport {
    fn add(&mut self, size: u64, outcome: BlobOutcome) {
        match outcome {
            BlobOutcome::Uploaded => {
                self.uploaded_blobs += 1;
                self.uploaded_bytes += size;
            }
            BlobOutcome::Mounted => self.mounted_blobs += 1,
            BlobOutcome::Skipped => self.skipped_blobs += 1,
        }
    }
}

impl EarlyUploads {
    pub fn start(
        runtime: &tokio::runtime::Handle,
        client: std::sync::Arc<RegistryClient>,
        target: &Reference,
        progress: Option<PushProgressFn>,
    ) -> Self {
        // Chunked uploads were asked for (a proxy's body limit, say): one streamed PATCH of a
        // whole layer would break that, so layers wait until they are written.
        let stream_layers = client.settings().chunk_size.is_none();
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Early>();
        let repository = target.repository().to_owned();
        let task = runtime.spawn(async move {
            let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(
                client.settings().max_concurrent_uploads.max(1),
            ));
            let mut uploads = tokio::task::JoinSet::new();
            let mut streams = 0;
            while let Some(job) = receiver.recv().await {
                let (client, repository, progress) =
                    (client.clone(), repository.clone(), progress.clone());
                let stream = streams;
                streams += 1;
                let permit = limit.clone().acquire_owned().await;
                uploads.spawn(async move {
                    let _permit = permit;
                    match job {
                        Early::Blob(blob) => {
                            crate::registry::push_blob(&client, &repository, blob, &[], progress)
                                .await
                                .map(Some)
                        }
                        Early::Stream(live) => {
                            Ok(stream_layer(&client, &repository, live, stream, progress).await)
                        }
                    }
                });
            }
            let mut report = EarlyReport::default();
            while let Some(joined) = uploads.join_next().await {
                let done = joined.map_err(|e| PushError::InvalidLayout {
                    dir: "upload".into(),
                    message: format!("an upload task failed: {e}"),
                })??;
                if let Some((size, outcome)) = done {
                    report.add(size, outcome);
                }
            }
            Ok(report)
        });
        EarlyUploads {
            sender,
            task,
            streams: std::sync::Mutex::new(Vec::new()),
            stream_layers,
        }
    }

    /// The build's observer: streams new layers, queues cached ones as the build reaches them.
    fn observer<'a>(&'a self, store: &'a Store, target: &'a Reference) -> EarlyObserver<'a> {
        EarlyObserver {
            early: self,
            store,
            target,
            prefix: format!("{}/", target.registry()),
        }
    }

    /// Runs `build` with the observer. While layers stream, the build runs at a lower
    /// priority, so that compressing the next layers never starves the uploads of the ones
    /// written (see [`crate::parallel::run_yielding`]).
    pub fn build_beside<R: Send>(
        &self,
        store: &Store,
        target: &Reference,
        build: impl FnOnce(&EarlyObserver<'_>) -> R + Send,
    ) -> R {
        let observer = self.observer(store, target);
        if self.stream_layers {
            crate::parallel::run_yielding(|| build(&observer))
        } else {
            build(&observer)
        }
    }

    /// Waits for every queued upload.
    pub async fn finish(self) -> Result<EarlyReport, PushError> {
        drop(self.sender);
        self.task.await.map_err(|e| PushError::InvalidLayout {
            dir: "upload".into(),
            message: format!("the upload task failed: {e}"),
        })?
    }
}

/// Streams one layer as it is written; `None` when it went wrong (the final push sends it).
/// `stream` names it in the progress events until its digest is known.
async fn stream_layer(
    client: &RegistryClient,
    repository: &str,
    live: LiveBlob,
    stream: u64,
    progress: Option<PushProgressFn>,
) -> Option<(u64, BlobOutcome)> {
    let sent = progress.clone().map(|progress| {
        std::sync::Arc::new(move |sent| progress(PushProgress::Streaming { stream, sent }))
            as crate::registry::SentBytesFn
    });
    let ended = match client.upload_growing(repository, live, sent).await {
        Ok(GrowingOutcome::Uploaded { digest, size }) => {
            Some((digest, size, BlobOutcome::Uploaded))
        }
        Ok(GrowingOutcome::Present { digest, size }) => Some((digest, size, BlobOutcome::Skipped)),
        Ok(GrowingOutcome::NoLayer) => None,
        Err(error) => {
            tracing::debug!(%error, "streaming a layer as it was written failed; it goes up from the store");
            None
        }
    };
    if let Some(progress) = progress {
        let blob = ended
            .as_ref()
            .map(|(digest, size, _)| (digest.to_string(), *size));
        progress(PushProgress::StreamEnded { stream, blob });
        if let Some((digest, _, outcome)) = &ended {
            progress(PushProgress::Done {
                digest: digest.to_string(),
                outcome: *outcome,
            });
        }
    }
    ended.map(|(_, size, outcome)| (size, outcome))
}

/// [`EarlyUploads`] as the build sees it.
pub struct EarlyObserver<'a> {
    early: &'a EarlyUploads,
    store: &'a Store,
    target: &'a Reference,
    prefix: String,
}

impl LayerObserver for EarlyObserver<'_> {
    fn writing(&self, live: LiveBlob) {
        if !self.early.stream_layers {
            return;
        }
        self.early
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(live.clone());
        let _ = self.early.sender.send(Early::Stream(live));
    }

    fn written(&self, layer: &BuiltLayer) {
        // A streamed layer announced its digest before the build calls this.
        let streamed = self
            .early
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|live| matches!(live.progress(), LiveProgress::Done { digest, .. } if digest == layer.digest));
        if streamed {
            return;
        }
        let mut blob = file_blob(self.store, &layer.digest, layer.size);
        blob.mount_from =
            mount_candidates(self.store, &layer.digest, &self.prefix, self.target, None);
        let _ = self.early.sender.send(Early::Blob(blob));
    }
}

/// Repositories of the target registry from which `digest` may be mounted.
fn mount_candidates(
    store: &Store,
    digest: &Digest,
    prefix: &str,
    target: &Reference,
    base_repository: Option<&str>,
) -> Vec<String> {
    store
        .locations(digest)
        .iter()
        .filter_map(|location| location.strip_prefix(prefix).map(str::to_owned))
        .chain(base_repository.map(str::to_owned))
        .filter(|repo| repo != target.repository())
        .collect()
}

/// Builds and pushes a built image: blobs the registry has are skipped, blobs pushed before to
/// another repository of the same registry (or in the base's repository there) are mounted,
/// the rest uploaded; afterwards every blob's new location is remembered.
pub async fn push_built_image(
    store: &Store,
    image: &BuiltImage,
    mut request: PushRequest,
    client: &RegistryClient,
    target: &Reference,
    progress: Option<PushProgressFn>,
    early: EarlyReport,
) -> Result<PushReport, PushError> {
    let prefix = format!("{}/", target.registry());
    let base_repository = image
        .base
        .as_ref()
        .filter(|base| base.registry() == target.registry())
        .map(|base| base.repository().to_owned());
    for blob in &mut request.blobs {
        let Ok(digest) = blob.digest.parse::<Digest>() else {
            continue;
        };
        let from_base = image
            .layers
            .iter()
            .any(|l| l.from_base && l.digest == digest);
        let base = base_repository.as_deref().filter(|_| from_base);
        blob.mount_from = mount_candidates(store, &digest, &prefix, target, base);
    }
    let mut report = push_image(client, target, &request, progress).await?;
    for digest in image.blobs() {
        store.record_location(&digest, target.registry(), target.repository());
    }
    // Blobs the early uploads sent were found present (skipped) by the final pass.
    report.skipped_blobs = report
        .skipped_blobs
        .saturating_sub(early.uploaded_blobs + early.mounted_blobs);
    report.uploaded_blobs += early.uploaded_blobs;
    report.mounted_blobs += early.mounted_blobs;
    report.uploaded_bytes += early.uploaded_bytes;
    Ok(report)
}

fn file_blob(store: &Store, digest: &Digest, size: u64) -> PushBlob {
    PushBlob {
        digest: digest.to_string(),
        size,
        source: BlobSource::File(store.blob_path(digest)),
        mount_from: Vec::new(),
    }
}

/// Brings a registry base's layers into the store (verified), for `--output`.
pub fn fetch_base_layers(
    store: &Store,
    image: &BuiltImage,
    remote: &RemoteAccess,
) -> Result<(), PushError> {
    if let Some(base) = &image.base {
        for layer in image.layers.iter().filter(|l| l.from_base) {
            remote.fetch_blob(store, base, &layer.digest)?;
        }
    }
    Ok(())
}

/// Pushes what an OCI layout holds under `tag` (a manifest, or an index and its manifests).
pub async fn push_layout(
    client: &RegistryClient,
    layout: &Layout,
    tag: Option<&str>,
    target: &Reference,
    progress: Option<PushProgressFn>,
) -> Result<PushReport, PushError> {
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
    let mut total = PushReport {
        manifest_digest: String::new(),
        uploaded_blobs: 0,
        skipped_blobs: 0,
        mounted_blobs: 0,
        uploaded_bytes: 0,
    };
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
        total.uploaded_blobs += report.uploaded_blobs;
        total.skipped_blobs += report.skipped_blobs;
        total.mounted_blobs += report.mounted_blobs;
        total.uploaded_bytes += report.uploaded_bytes;
    }
    total.manifest_digest = client
        .put_manifest(
            target.repository(),
            target.manifest_reference(),
            Bytes::from(index_bytes),
            &descriptor.media_type,
        )
        .await?;
    Ok(total)
}

fn layout_manifest_request(
    layout: &Layout,
    bytes: Vec<u8>,
    media_type: &str,
) -> Result<PushRequest, PushError> {
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid_layout(layout, format!("a manifest is not valid: {e}")))?;
    let blobs = std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .map(|d| PushBlob {
            digest: d.digest.to_string(),
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

fn invalid_layout(layout: &Layout, message: String) -> PushError {
    PushError::InvalidLayout {
        dir: layout.dir().display().to_string(),
        message,
    }
}
