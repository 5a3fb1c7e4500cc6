//! Pushing an image: every blob (concurrently, bounded) by HEAD-skip, mount or upload; then
//! the manifest, last, once every blob it names is known to be present.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;

use super::blobs::{MountOutcome, UploadSource};
use super::client::RegistryClient;
use super::error::{RegistryError, Result};
use super::manifests::manifest_references;
use super::reference::Reference;
use super::transport::SentBytesFn;
use dockless_oci::digest::Digest;

/// Where the bytes of one blob come from.
#[derive(Clone, Debug)]
pub enum BlobSource {
    /// A local file holding exactly the blob (e.g. in the local store).
    File(PathBuf),
    /// A repository on some registry (e.g. a base image's layer): mounted when it is the
    /// target registry, otherwise streamed through as stored, without decompressing.
    Registry {
        client: Arc<RegistryClient>,
        repository: String,
    },
}

/// One blob the manifest needs.
#[derive(Clone, Debug)]
pub struct PushBlob {
    pub digest: Digest,
    pub size: u64,
    pub source: BlobSource,
    /// Repositories of the target registry known to hold this blob (from earlier pushes):
    /// mounts are tried from these first, before the request-wide `mount_from`.
    pub mount_from: Vec<String>,
}

/// What to push.
#[derive(Clone, Debug)]
pub struct PushRequest {
    /// The exact manifest bytes (their sha256 is the image's digest).
    pub manifest: Bytes,
    /// The manifest's media type, sent as `Content-Type`.
    pub media_type: String,
    pub blobs: Vec<PushBlob>,
    /// Repositories on the target registry that may already hold these blobs (e.g. an
    /// earlier push): a mount from them is tried before uploading.
    pub mount_from: Vec<String>,
}

/// What happened to one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Already in the target repository.
    Skipped,
    Mounted,
    Uploaded,
}

/// Progress of one blob, for bars and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushProgress {
    /// Bytes of this blob sent so far in the current try (restarts on a retry).
    Sent {
        digest: Digest,
        sent: u64,
        total: u64,
    },
    Done {
        digest: Digest,
        outcome: BlobOutcome,
    },
    /// Compressed bytes of a layer still being written, streamed so far; `stream` tells the
    /// streams apart until their digests are known.
    Streaming { stream: u64, sent: u64 },
    /// The stream ended: as the blob `digest` of `size` bytes (whose `Done` follows), or, when
    /// `blob` is `None`, without delivering it (the push then uploads it from the store).
    StreamEnded {
        stream: u64,
        blob: Option<(Digest, u64)>,
    },
}

pub type PushProgressFn = Arc<dyn Fn(PushProgress) + Send + Sync>;

/// Counts of a finished push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushReport {
    pub manifest_digest: Digest,
    pub uploaded_blobs: usize,
    pub skipped_blobs: usize,
    pub mounted_blobs: usize,
    /// Bytes of the blobs uploaded (their sizes, counted once however many tries it took).
    pub uploaded_bytes: u64,
}

#[derive(Default)]
struct Counters {
    uploaded: AtomicUsize,
    skipped: AtomicUsize,
    mounted: AtomicUsize,
    bytes: AtomicU64,
}

/// Pushes `request` to `target` (its tag, or its digest, names the manifest).
pub async fn push_image(
    client: &RegistryClient,
    target: &Reference,
    request: &PushRequest,
    progress: Option<PushProgressFn>,
) -> Result<PushReport> {
    let invalid = |reason: String| RegistryError::InvalidPush {
        reference: target.to_string(),
        reason,
    };
    let manifest_digest = Digest::of(&request.manifest);
    if let Some(pinned) = target.digest()
        && pinned != manifest_digest.as_str()
    {
        return Err(invalid(format!(
            "the reference pins {pinned} but the manifest's digest is {manifest_digest}"
        )));
    }
    let named = manifest_references(&request.manifest).map_err(|e| invalid(e.to_string()))?;
    let repository = target.repository();
    let counters = Counters::default();
    let concurrency = client.settings().max_concurrent_uploads.max(1);
    let mut tasks = futures_util::stream::iter(unique_blobs(&request.blobs))
        .map(|blob| {
            push_blob(
                client,
                repository,
                blob,
                &request.mount_from,
                progress.clone(),
            )
        })
        .buffer_unordered(concurrency);
    while let Some(done) = tasks.next().await {
        let (size, outcome) = done?;
        let counter = match outcome {
            BlobOutcome::Skipped => &counters.skipped,
            BlobOutcome::Mounted => &counters.mounted,
            BlobOutcome::Uploaded => {
                counters.bytes.fetch_add(size, Ordering::Relaxed);
                &counters.uploaded
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    drop(tasks);
    // Whatever the manifest names but we were not given must already be there.
    let given: HashSet<&Digest> = request.blobs.iter().map(|b| &b.digest).collect();
    for digest in named.blobs.iter().filter(|d| !given.contains(d)) {
        if !client.blob_exists(repository, digest).await? {
            return Err(invalid(format!(
                "the manifest names blob {digest}, which was neither given nor found in {}",
                target.repository()
            )));
        }
    }
    for digest in &named.manifests {
        if !client.manifest_exists(repository, digest.as_str()).await? {
            return Err(invalid(format!(
                "the index names manifest {digest}, which is not in {}; push it first",
                target.repository()
            )));
        }
    }
    // A reference that already names exactly this manifest needs no PUT (which costs the
    // registry link writes and syncs); anything unsure is pushed.
    let current = client
        .manifest_digest(repository, target.manifest_reference())
        .await
        .ok()
        .flatten()
        .flatten();
    let pushed = if current.as_ref() == Some(&manifest_digest) {
        tracing::debug!(reference = %target, digest = %manifest_digest, "manifest already there");
        manifest_digest
    } else {
        let pushed = client
            .put_manifest(
                repository,
                target.manifest_reference(),
                request.manifest.clone(),
                &request.media_type,
            )
            .await?;
        tracing::debug!(reference = %target, digest = %pushed, "manifest pushed");
        pushed
    };
    Ok(PushReport {
        manifest_digest: pushed,
        uploaded_blobs: counters.uploaded.into_inner(),
        skipped_blobs: counters.skipped.into_inner(),
        mounted_blobs: counters.mounted.into_inner(),
        uploaded_bytes: counters.bytes.into_inner(),
    })
}

/// The blobs once each (a layer may appear twice in a manifest). Owned, so that the upload
/// futures borrow nothing per item and stay `Send`.
fn unique_blobs(blobs: &[PushBlob]) -> Vec<PushBlob> {
    let mut seen = HashSet::new();
    blobs
        .iter()
        .filter(|b| seen.insert(&b.digest))
        .cloned()
        .collect()
}

/// Pushes one blob the way [`push_image`] does (HEAD, then mount, then upload), for callers
/// that start uploads before the manifest exists (while later layers are still compressing).
/// Returns the blob's size and what happened to it.
pub async fn push_blob(
    client: &RegistryClient,
    repository: &str,
    blob: PushBlob,
    mount_from: &[String],
    progress: Option<PushProgressFn>,
) -> Result<(u64, BlobOutcome)> {
    let digest = &blob.digest;
    let report = |outcome| {
        if let Some(progress) = &progress {
            progress(PushProgress::Done {
                digest: digest.clone(),
                outcome,
            });
        }
        Ok((blob.size, outcome))
    };
    if client.blob_exists(repository, digest).await? {
        tracing::debug!(%digest, "blob already present");
        return report(BlobOutcome::Skipped);
    }
    let mut candidates: Vec<&str> = Vec::new();
    if let BlobSource::Registry {
        client: source,
        repository: from,
    } = &blob.source
        && source.registry() == client.registry()
    {
        candidates.push(from);
    }
    candidates.extend(blob.mount_from.iter().map(String::as_str));
    candidates.extend(mount_from.iter().map(String::as_str));
    candidates.retain(|from| *from != repository);
    if !client.settings().cross_repository_mounts {
        candidates.clear();
    }
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|from| seen.insert(*from));
    let mut session = None;
    for from in candidates {
        match client.mount_blob(repository, digest, from).await? {
            MountOutcome::Mounted => {
                tracing::debug!(%digest, from, "blob mounted");
                return report(BlobOutcome::Mounted);
            }
            MountOutcome::Session(opened) => {
                session = Some(opened);
                break;
            }
            MountOutcome::NotMounted { .. } => {}
        }
    }
    let source = match &blob.source {
        BlobSource::File(path) => UploadSource::File(path.clone()),
        BlobSource::Registry { client, repository } => UploadSource::Registry {
            client: client.clone(),
            repository: repository.clone(),
        },
    };
    let sent: Option<SentBytesFn> = progress.clone().map(|progress| {
        let (digest, total) = (digest.clone(), blob.size);
        Arc::new(move |sent| {
            progress(PushProgress::Sent {
                digest: digest.clone(),
                sent,
                total,
            })
        }) as SentBytesFn
    });
    client
        .upload_blob(repository, digest, blob.size, &source, session, sent)
        .await?;
    tracing::debug!(%digest, size = blob.size, "blob uploaded");
    report(BlobOutcome::Uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI spawns pushes on tokio's pool: the future must be `Send`.
    #[allow(dead_code)]
    fn push_future_is_send(client: &RegistryClient, target: &Reference, request: &PushRequest) {
        fn assert_send<T: Send>(_: T) {}
        assert_send(push_image(client, target, request, None));
    }

    #[test]
    fn duplicate_layers_are_pushed_once() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let blob = |digest: &Digest| PushBlob {
            digest: digest.clone(),
            size: 1,
            source: BlobSource::File("x".into()),
            mount_from: Vec::new(),
        };
        let blobs = vec![blob(&a), blob(&b), blob(&a)];
        let unique: Vec<Digest> = unique_blobs(&blobs).into_iter().map(|b| b.digest).collect();
        assert_eq!(unique, [a, b]);
    }
}
