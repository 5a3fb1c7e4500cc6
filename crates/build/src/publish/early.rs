//! Uploads during the build: a new layer streams to the registry as it is compressed, a layer
//! from the layer cache goes up as soon as the build reaches it.

use crate::{BuiltLayer, LayerObserver};
use dockless_oci::live::{LiveBlob, LiveProgress};
use dockless_oci::store::Store;
use dockless_registry::{
    BlobOutcome, GrowingOutcome, PushBlob, PushProgress, PushProgressFn, PushReport, Reference,
    RegistryClient,
};

use super::PublishError;
use super::{file_blob, mount_candidates};

/// Uploads layers while the build is still going: a new layer is streamed to the registry as
/// it is compressed (see [`RegistryClient::upload_growing`]), a layer from the layer cache is
/// sent (HEAD, mount, upload) as soon as the build reaches it. The manifest push afterwards
/// finds these blobs present and skips them, and uploads from the store whatever a stream
/// failed to deliver.
pub(crate) struct EarlyUploads {
    sender: tokio::sync::mpsc::UnboundedSender<Early>,
    task: tokio::task::JoinHandle<Result<EarlyReport, PublishError>>,
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
    /// `report` of the final pass, with what went up early counted as it went (the final
    /// pass found those blobs present and counted them skipped).
    pub(crate) fn count_in(self, mut report: PushReport) -> PushReport {
        report.skipped_blobs = report
            .skipped_blobs
            .saturating_sub(self.uploaded_blobs + self.mounted_blobs);
        report.uploaded_blobs += self.uploaded_blobs;
        report.mounted_blobs += self.mounted_blobs;
        report.uploaded_bytes += self.uploaded_bytes;
        report
    }

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
                            dockless_registry::push_blob(&client, &repository, blob, &[], progress)
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
                let done = joined.map_err(|e| PublishError::UploadTask(e.to_string()))??;
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
        }
    }

    /// Runs `build` with the observer. While layers stream, the build runs at a lower
    /// priority, so that compressing the next layers never starves the uploads of the ones
    /// written (see [`dockless_oci::parallel::run_yielding`]).
    pub(crate) fn build_beside<R: Send>(
        &self,
        store: &Store,
        target: &Reference,
        build: impl FnOnce(&EarlyObserver<'_>) -> R + Send,
    ) -> R {
        let observer = self.observer(store, target);
        if self.stream_layers {
            dockless_oci::parallel::run_yielding(|| build(&observer))
        } else {
            build(&observer)
        }
    }

    /// Waits for every queued upload.
    pub async fn finish(self) -> Result<EarlyReport, PublishError> {
        drop(self.sender);
        self.task
            .await
            .map_err(|e| PublishError::UploadTask(e.to_string()))?
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
            as dockless_registry::SentBytesFn
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
            .map(|(digest, size, _)| (digest.clone(), *size));
        progress(PushProgress::StreamEnded { stream, blob });
        if let Some((digest, _, outcome)) = &ended {
            progress(PushProgress::Done {
                digest: digest.clone(),
                outcome: *outcome,
            });
        }
    }
    ended.map(|(_, size, outcome)| (size, outcome))
}

/// [`EarlyUploads`] as the build sees it.
pub(crate) struct EarlyObserver<'a> {
    early: &'a EarlyUploads,
    store: &'a Store,
    target: &'a Reference,
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
        // A layer that stayed in a registry (a shared cache's) goes in the final pass, by a
        // mount where it can.
        if streamed || !self.store.has_blob(&layer.digest) {
            return;
        }
        let mut blob = file_blob(self.store, &layer.digest, layer.size);
        blob.mount_from = mount_candidates(self.store, &layer.digest, self.target, None);
        let _ = self.early.sender.send(Early::Blob(blob));
    }
}
