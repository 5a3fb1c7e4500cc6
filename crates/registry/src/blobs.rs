//! Blobs: existence checks, cross-repository mounts, uploads (one PUT or PATCH chunks) and
//! downloads verified against their digest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::io::AsyncWriteExt;

use super::client::{RegistryClient, RegistryRequest, Scope};
use super::endpoint::resolve_location;
use super::error::{RegistryError, Result};
use super::transport::{ReplayableBody, SentBytesFn, counted, next_chunk};
use crate::http::retry::is_retryable_status;
use dockless_oci::digest::{Digest, HashingWriter};

const OCTET_STREAM: &str = "application/octet-stream";
const CHUNK_MIN_LENGTH: &str = "oci-chunk-min-length";
/// Whole upload sessions are restarted at most this many times after a failure inside them.
const SESSION_RESTARTS: u32 = 3;

/// What a mount request achieved.
#[derive(Debug)]
pub enum MountOutcome {
    Mounted,
    /// The registry did not mount but opened an upload session (202): upload into it.
    Session(UploadSession),
    /// Refused (401, 403, 404, 400…): upload normally.
    NotMounted {
        status: u16,
    },
}

/// An open upload, as the registry's `Location` describes it.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub location: Url,
    /// `OCI-Chunk-Min-Length` from the registry, when it sent one.
    pub min_chunk: Option<u64>,
}

/// Where the bytes of a blob to upload come from.
#[derive(Clone)]
pub enum UploadSource {
    /// A local file holding exactly the blob.
    File(PathBuf),
    /// A repository on another (or the same) registry: streamed through without decompressing.
    Registry {
        client: Arc<RegistryClient>,
        repository: String,
    },
}

impl std::fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadSource::File(path) => write!(f, "File({})", path.display()),
            UploadSource::Registry { client, repository } => {
                write!(f, "Registry({}/{repository})", client.registry())
            }
        }
    }
}

impl UploadSource {
    fn describe(&self) -> String {
        match self {
            UploadSource::File(path) => path.display().to_string(),
            UploadSource::Registry { client, repository } => {
                format!("{}/{repository}", client.registry())
            }
        }
    }
}

/// A failure inside an upload session, and whether a fresh session may succeed.
pub(super) struct SessionFailure {
    pub(super) error: RegistryError,
    restart_after: Option<Option<Duration>>,
}

impl From<RegistryError> for SessionFailure {
    fn from(error: RegistryError) -> Self {
        let restart_after = match &error {
            RegistryError::Transport { .. } => Some(None),
            _ => None,
        };
        Self {
            error,
            restart_after,
        }
    }
}

impl RegistryClient {
    /// `HEAD /v2/<repo>/blobs/<digest>`: whether the repository already has the blob (asked
    /// with push access, as the push that follows needs it).
    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let scope = Scope::push(repository);
        Ok(self.head_blob(repository, digest, &scope).await?.is_some())
    }

    /// `HEAD /v2/<repo>/blobs/<digest>` with only read access asked for: the blob's size, or
    /// `None` when the repository does not have it (or, found, sends no `Content-Length`:
    /// a caller checking a size cannot trust such an answer either).
    pub async fn blob_size(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        let scope = Scope::pull(repository);
        Ok(self
            .head_blob(repository, digest, &scope)
            .await?
            .and_then(|headers| headers.get(reqwest::header::CONTENT_LENGTH).cloned())
            .and_then(|v| v.to_str().ok().and_then(|v| v.parse().ok())))
    }

    /// The answer's headers when the repository has the blob, `None` when it does not.
    async fn head_blob(
        &self,
        repository: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Option<HeaderMap>> {
        let operation = format!("HEAD blob {digest}");
        let response = self
            .send(RegistryRequest {
                method: Method::HEAD,
                url: self.api_url(&format!("{repository}/blobs/{digest}"))?,
                headers: HeaderMap::new(),
                body: None,
                scope,
                operation: operation.clone(),
                retry: true,
            })
            .await?;
        match response.status() {
            status if status.is_success() => Ok(Some(response.headers().clone())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.error_for(response, &operation, repository).await),
        }
    }

    /// Asks the registry to link `digest` from `from` into `repository` without an upload.
    pub(crate) async fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome> {
        let mut url = self.api_url(&format!("{repository}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let operation = format!("mount blob {digest} from {from}");
        let response = self
            .send(RegistryRequest {
                method: Method::POST,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: None,
                scope: &Scope::push_and_mount(repository, from),
                operation: operation.clone(),
                retry: true,
            })
            .await;
        let response = match response {
            Ok(response) => response,
            // Harbor answers 401 for a source it does not know: a mount is only an optimisation.
            Err(RegistryError::Unauthorized { .. } | RegistryError::Denied { .. }) => {
                return Ok(MountOutcome::NotMounted { status: 401 });
            }
            Err(error) => return Err(error),
        };
        match response.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => match self.session_from(&response, &url, &operation) {
                Ok(session) => Ok(MountOutcome::Session(session)),
                Err(error) => {
                    tracing::debug!(%error, "mount answered 202 without a usable Location");
                    Ok(MountOutcome::NotMounted { status: 202 })
                }
            },
            status => {
                tracing::debug!(
                    status = status.as_u16(),
                    %digest,
                    from,
                    "mount refused; uploading"
                );
                Ok(MountOutcome::NotMounted {
                    status: status.as_u16(),
                })
            }
        }
    }

    /// Opens an upload session: `POST /v2/<repo>/blobs/uploads/` with `Content-Length: 0`.
    pub(crate) async fn start_upload(&self, repository: &str) -> Result<UploadSession> {
        let url = self.api_url(&format!("{repository}/blobs/uploads/"))?;
        let operation = "start blob upload".to_string();
        let response = self
            .send(RegistryRequest {
                method: Method::POST,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: None,
                scope: &Scope::push(repository),
                operation: operation.clone(),
                retry: true,
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED && !response.status().is_success() {
            return Err(self.error_for(response, &operation, repository).await);
        }
        self.session_from(&response, &url, &operation)
    }

    fn session_from(
        &self,
        response: &Response,
        url: &Url,
        operation: &str,
    ) -> Result<UploadSession> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let location =
            resolve_location(url, location).ok_or_else(|| RegistryError::BadLocation {
                registry: self.registry().to_string(),
                operation: operation.to_string(),
                location: location.to_string(),
            })?;
        let min_chunk = response
            .headers()
            .get(CHUNK_MIN_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(UploadSession {
            location,
            min_chunk,
        })
    }

    /// Uploads a blob, restarting the whole session when one fails midway. `session` is a
    /// session already opened (by a 202 mount answer) to use first.
    pub(crate) async fn upload_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        source: &UploadSource,
        session: Option<UploadSession>,
        progress: Option<SentBytesFn>,
    ) -> Result<()> {
        if let UploadSource::File(path) = source {
            check_file_size(path, digest, size).await?;
        }
        let mut session = session;
        let mut restarts = 0;
        loop {
            let current = match session.take() {
                Some(session) => session,
                None => self.start_upload(repository).await?,
            };
            let attempt = self
                .upload_in_session(repository, digest, size, source, current, progress.clone())
                .await;
            let failure = match attempt {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            match failure.restart_after {
                Some(wait) if restarts < SESSION_RESTARTS => {
                    let wait = wait.unwrap_or_else(|| self.settings().http.retry.backoff(restarts));
                    tracing::debug!(
                        %digest,
                        error = %failure.error,
                        ?wait,
                        "upload failed; starting a new upload session"
                    );
                    tokio::time::sleep(wait).await;
                    restarts += 1;
                }
                _ => return Err(failure.error),
            }
        }
    }

    async fn upload_in_session(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        source: &UploadSource,
        session: UploadSession,
        progress: Option<SentBytesFn>,
    ) -> std::result::Result<(), SessionFailure> {
        let chunk = self
            .settings()
            .chunk_size
            .map(|chunk| chunk.max(session.min_chunk.unwrap_or(0)).max(1));
        let mut location = session.location;
        let final_body = match (chunk, source) {
            (Some(chunk), UploadSource::File(path)) if size > 0 => {
                let mut offset = 0;
                while offset < size {
                    let length = chunk.min(size - offset);
                    let body = ReplayableBody::file_range(
                        path.clone(),
                        digest.clone(),
                        offset,
                        length,
                        progress.clone(),
                    );
                    let mut headers = octet_stream();
                    headers.insert(
                        CONTENT_RANGE,
                        header_value(&format!("{}-{}", offset, offset + length - 1)),
                    );
                    let response = self
                        .session_request(
                            Method::PATCH,
                            location.clone(),
                            headers,
                            &body,
                            repository,
                            digest.as_str(),
                        )
                        .await?;
                    // ECR answers 201, others 202; the Range header may be stale, so our own
                    // offset is the truth.
                    location = self.next_location(&response, &location);
                    offset += length;
                }
                ReplayableBody::empty()
            }
            (_, UploadSource::File(path)) => {
                ReplayableBody::file_range(path.clone(), digest.clone(), 0, size, progress)
            }
            (
                _,
                UploadSource::Registry {
                    client,
                    repository: from,
                },
            ) => remote_body(client.clone(), from.clone(), digest.clone(), size, progress),
        };
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let response = self
            .session_request(
                Method::PUT,
                url,
                octet_stream(),
                &final_body,
                repository,
                digest.as_str(),
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            tracing::debug!(
                status = response.status().as_u16(),
                "blob PUT answered other than 201"
            );
        }
        Ok(())
    }

    /// A PATCH or PUT inside a session: no request-level retries (the session's state after a
    /// broken body is unknown), but any failure that a fresh session may fix is marked so.
    /// `blob` names the blob in messages: its digest, or what it is while that is unknown.
    pub(super) async fn session_request(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: &ReplayableBody,
        repository: &str,
        blob: &str,
    ) -> std::result::Result<Response, SessionFailure> {
        let operation = format!("{method} blob {blob}");
        let response = self
            .send(RegistryRequest {
                method,
                url,
                headers,
                body: Some(body),
                scope: &Scope::push(repository),
                operation: operation.clone(),
                retry: false,
            })
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let wait = crate::http::retry::retry_after(response.headers());
        // 404 (session gone), 400 (a broken earlier body corrupted the session), 416 (range
        // confusion) and retryable statuses are all worth a fresh session.
        let restartable = is_retryable_status(status) || matches!(status.as_u16(), 400 | 404 | 416);
        let error = self.error_for(response, &operation, repository).await;
        Err(SessionFailure {
            error,
            restart_after: restartable.then_some(wait),
        })
    }

    pub(super) fn next_location(&self, response: &Response, current: &Url) -> Url {
        response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|location| resolve_location(current, location))
            .unwrap_or_else(|| current.clone())
    }

    /// `GET /v2/<repo>/blobs/<digest>`, following redirects (without our credentials when they
    /// leave the registry). The caller reads the body.
    pub(crate) async fn open_blob(&self, repository: &str, digest: &Digest) -> Result<Response> {
        let operation = format!("GET blob {digest}");
        let response = self
            .send(RegistryRequest {
                method: Method::GET,
                url: self.api_url(&format!("{repository}/blobs/{digest}"))?,
                headers: HeaderMap::new(),
                body: None,
                scope: &Scope::pull(repository),
                operation: operation.clone(),
                retry: true,
            })
            .await?;
        if response.status().is_success() {
            return Ok(response);
        }
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: self.registry().to_string(),
                repository: repository.to_string(),
                what: "blob",
                reference: digest.to_string(),
            });
        }
        Err(self.error_for(response, &operation, repository).await)
    }

    /// Downloads a blob into `path`, verifying its sha256 while streaming; returns its size. On
    /// a digest mismatch the file is removed.
    pub async fn get_blob_to_file(
        &self,
        repository: &str,
        digest: &Digest,
        path: &Path,
    ) -> Result<u64> {
        self.get_blob_to_file_with(repository, digest, path, &mut |_| {})
            .await
    }

    /// [`Self::get_blob_to_file`], handing each chunk to `on_chunk` as it arrives (shared, not
    /// copied), before the digest is checked at the end: what it was given may be trusted only
    /// once this returns `Ok`.
    pub async fn get_blob_to_file_with(
        &self,
        repository: &str,
        digest: &Digest,
        path: &Path,
        on_chunk: &mut (dyn FnMut(&bytes::Bytes) + Send),
    ) -> Result<u64> {
        let mut response = self.open_blob(repository, digest).await?;
        let write_error = |source| RegistryError::WriteFile {
            path: path.to_path_buf(),
            source,
        };
        // Written a mebibyte at a time: tokio writes a file on its blocking pool, one hand-over
        // per write, and the body comes in chunks of a few KiB.
        let mut file = tokio::io::BufWriter::with_capacity(
            1 << 20,
            tokio::fs::File::create(path).await.map_err(write_error)?,
        );
        let mut hasher = HashingWriter::new(std::io::sink());
        let stall = self.settings().http.idle_timeout;
        loop {
            let chunk = next_chunk(&mut response, stall)
                .await
                .map_err(|error| self.body_read_error(&format!("GET blob {digest}"), error))?;
            let Some(chunk) = chunk else { break };
            on_chunk(&chunk);
            std::io::Write::write_all(&mut hasher, &chunk).map_err(write_error)?;
            file.write_all(&chunk).await.map_err(write_error)?;
        }
        file.flush().await.map_err(write_error)?;
        let (_, actual, size) = hasher.finish();
        if actual != *digest {
            let _ = tokio::fs::remove_file(path).await;
            return Err(RegistryError::DigestMismatch {
                registry: self.registry().to_string(),
                repository: repository.to_string(),
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(size)
    }
}

/// A body that GETs the blob from `client` anew on every try and streams it through.
fn remote_body(
    client: Arc<RegistryClient>,
    repository: String,
    digest: Digest,
    size: u64,
    progress: Option<SentBytesFn>,
) -> ReplayableBody {
    ReplayableBody::from_fn(size, move |liveness| {
        let (client, repository, digest, progress) = (
            client.clone(),
            repository.clone(),
            digest.clone(),
            progress.clone(),
        );
        async move {
            let response = client.open_blob(&repository, &digest).await?;
            Ok(counted(response.bytes_stream(), 0, progress, liveness))
        }
    })
}

async fn check_file_size(path: &Path, digest: &Digest, size: u64) -> Result<()> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|source| RegistryError::ReadBlob {
            path: path.to_path_buf(),
            digest: digest.clone(),
            source,
        })?;
    if metadata.len() != size {
        return Err(RegistryError::SizeMismatch {
            digest: digest.clone(),
            expected: size,
            actual: metadata.len(),
            source_desc: UploadSource::File(path.to_path_buf()).describe(),
        });
    }
    Ok(())
}

pub(super) fn octet_stream() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    headers
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}
