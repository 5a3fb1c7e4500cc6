//! Uploading a layer while it is still being compressed.
//!
//! A new layer's digest is known only once its last byte is written, but the distribution API
//! does not need it before the end: the bytes go in one streamed `PATCH` as the writer produces
//! them, and the closing `PUT ?digest=` names the blob. Compression and upload then overlap
//! instead of following each other. This is an optimisation only: any failure here leaves the
//! blob to the normal push, which uploads it from the store.

use reqwest::{Method, StatusCode};

use super::blobs::octet_stream;
use super::client::RegistryClient;
use super::error::Result;
use super::transport::{ReplayableBody, SentBytesFn};
use dockless_oci::digest::Digest;
use dockless_oci::live::{LiveBlob, LiveProgress};

/// How a streamed upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowingOutcome {
    Uploaded {
        digest: Digest,
        size: u64,
    },
    /// The registry had the blob already: the stream was abandoned.
    Present {
        digest: Digest,
        size: u64,
    },
    /// The writer failed: there is no layer to upload.
    NoLayer,
}

impl RegistryClient {
    /// Streams `live` into `repository` as it is written; `Err` when the registry refused or
    /// the connection failed (the caller then leaves the blob to a normal upload). `progress`
    /// hears the bytes sent so far.
    pub async fn upload_growing(
        &self,
        repository: &str,
        live: LiveBlob,
        progress: Option<SentBytesFn>,
    ) -> Result<GrowingOutcome> {
        let session = self.start_upload(repository).await?;
        let body = ReplayableBody::growing(live.clone(), progress);
        let mut patch = Box::pin(self.session_request(
            Method::PATCH,
            session.location.clone(),
            octet_stream(),
            &body,
            repository,
            "of a layer being written",
        ));
        let mut watch = live.watch();
        // Wait for the writer's end while the PATCH carries the bytes.
        let patched = loop {
            if let Some(end) = finished(&live) {
                break end;
            }
            tokio::select! {
                answer = &mut patch => {
                    // The body ends only after the writer does (which this loop may not have
                    // seen yet); an answer before that is a refusal.
                    return match (finished(&live), answer) {
                        (Some(Some((digest, size))), Ok(response)) => {
                            self.close_growing(repository, &response, &session.location, digest, size).await
                        }
                        (Some(None), _) => {
                            self.cancel_upload(session.location.clone(), repository).await;
                            Ok(GrowingOutcome::NoLayer)
                        }
                        (_, Err(failure)) => Err(failure.error),
                        (None, Ok(response)) => {
                            Err(self.error_for(response, "PATCH a layer being written", repository).await)
                        }
                    };
                }
                changed = watch.changed() => {
                    if changed.is_err() && finished(&live).is_none() {
                        return Ok(GrowingOutcome::NoLayer);
                    }
                }
            }
        };
        let Some((digest, size)) = patched else {
            drop(patch);
            self.cancel_upload(session.location.clone(), repository)
                .await;
            return Ok(GrowingOutcome::NoLayer);
        };
        // Someone may have pushed the same bytes: then the rest need not be sent.
        let present = tokio::select! {
            present = self.blob_exists(repository, &digest) => present?,
            answer = &mut patch => {
                let response = answer.map_err(|failure| failure.error)?;
                return self.close_growing(repository, &response, &session.location, digest, size).await;
            }
        };
        if present {
            tracing::debug!(%digest, "a layer being streamed is in the registry already; stopping");
            drop(patch);
            self.cancel_upload(session.location.clone(), repository)
                .await;
            return Ok(GrowingOutcome::Present { digest, size });
        }
        let response = patch.await.map_err(|failure| failure.error)?;
        self.close_growing(repository, &response, &session.location, digest, size)
            .await
    }

    /// Ends an abandoned upload session (best effort: the registry expires it anyway).
    async fn cancel_upload(&self, location: reqwest::Url, repository: &str) {
        let outcome = self
            .send(super::client::RegistryRequest {
                method: Method::DELETE,
                url: location,
                headers: reqwest::header::HeaderMap::new(),
                body: None,
                scope: &super::client::Scope::push(repository),
                operation: "cancel an upload".into(),
                retry: false,
            })
            .await;
        if let Err(error) = outcome {
            tracing::debug!(%error, "could not cancel an abandoned upload");
        }
    }

    /// The closing `PUT ?digest=` after the PATCH carried every byte.
    async fn close_growing(
        &self,
        repository: &str,
        patched: &reqwest::Response,
        location: &reqwest::Url,
        digest: Digest,
        size: u64,
    ) -> Result<GrowingOutcome> {
        if !patched.status().is_success() {
            return Err(super::error::RegistryError::InvalidPush {
                reference: repository.to_string(),
                reason: format!("the streamed PATCH answered {}", patched.status()),
            });
        }
        let mut url = self.next_location(patched, location);
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let response = self
            .session_request(
                Method::PUT,
                url,
                octet_stream(),
                &ReplayableBody::empty(),
                repository,
                digest.as_str(),
            )
            .await
            .map_err(|failure| failure.error)?;
        if response.status() != StatusCode::CREATED {
            tracing::debug!(
                status = response.status().as_u16(),
                "blob PUT answered other than 201"
            );
        }
        tracing::debug!(%digest, size, "layer uploaded while it was written");
        Ok(GrowingOutcome::Uploaded { digest, size })
    }
}

/// `Some(Some(..))` when the writer is done, `Some(None)` when it failed, `None` while writing.
fn finished(live: &LiveBlob) -> Option<Option<(Digest, u64)>> {
    match live.progress() {
        LiveProgress::Writing(_) => None,
        LiveProgress::Done { size, digest } => Some(Some((digest, size))),
        LiveProgress::Failed => Some(None),
    }
}
