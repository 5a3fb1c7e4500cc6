//! One HTTP exchange: replayable bodies and hand-followed redirects.
//!
//! reqwest's own redirect handling is off: blob GETs and PUTs are often redirected to object
//! storage, which rejects (or leaks) the registry's `Authorization`. We follow redirects here
//! and attach credentials only while the URL is on the origin they were issued for.
//!
//! Bodies are factories, not values: every try (a retry, a replay after re-authentication, a
//! 307) opens the source again, so a blob is streamed from its file each time and never held in
//! memory.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::endpoint::{resolve_location, same_origin};
use super::error::RegistryError;
use dockless_oci::digest::Digest;

const MAX_REDIRECTS: usize = 10;
const READ_BUFFER: usize = 256 * 1024;

/// Called with the bytes sent so far for one body (restarts from the body's offset on a retry).
pub type SentBytesFn = Arc<dyn Fn(u64) + Send + Sync>;

type BodyFuture = Pin<Box<dyn Future<Output = Result<reqwest::Body, RegistryError>> + Send>>;

/// How long a request may go without progress (from [`crate::http::HttpPolicy`]). reqwest's
/// own `read_timeout` runs from the moment a request is sent until its answer starts, so it
/// would fail any upload that takes longer than it; these are measured from the last byte
/// sent instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// No body bytes taken, or no answer to a request without a blob body, for this long: the
    /// try has stalled.
    pub stall: Duration,
    /// No answer this long after the last byte of a blob body (registries finalising a big
    /// blob take a while).
    pub response: Duration,
}

impl Timeouts {
    pub fn of(policy: &crate::http::HttpPolicy) -> Self {
        Self {
            stall: policy.idle_timeout,
            response: policy.upload_answer_timeout,
        }
    }

    /// The wait for an answer after a body of `length` bytes: a small one (none, a manifest,
    /// a token form) is answered at once by a live registry, so only the idle limit applies.
    fn answer_wait(&self, length: Option<u64>) -> Duration {
        match length {
            Some(length) if length <= SMALL_BODY => self.stall,
            _ => self.response.max(self.stall),
        }
    }
}

/// Bodies up to this size are not blobs being verified: their answer is due within the idle
/// limit.
const SMALL_BODY: u64 = 1024 * 1024;

/// When the body of one try last moved, and whether it is all sent.
pub(crate) struct Liveness {
    start: Instant,
    last_progress_ms: AtomicU64,
    finished: AtomicBool,
    finished_ms: AtomicU64,
    /// `None`: unknown; the body's stream says when it ends.
    length: Option<u64>,
    sent: AtomicU64,
}

impl Liveness {
    fn new(length: Option<u64>) -> Arc<Self> {
        let liveness = Arc::new(Self {
            start: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            finished_ms: AtomicU64::new(0),
            length,
            sent: AtomicU64::new(0),
        });
        if length == Some(0) {
            liveness.finish();
        }
        liveness
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records `bytes` more sent.
    pub fn sent(&self, bytes: u64) {
        self.last_progress_ms
            .store(self.now_ms(), Ordering::Relaxed);
        let total = self.sent.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if self.length.is_some_and(|length| total >= length) {
            self.finish();
        }
    }

    fn finish(&self) {
        if !self.finished.swap(true, Ordering::Relaxed) {
            self.finished_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Resolves when the try has stalled; never otherwise.
    async fn watch(&self, timeouts: Timeouts) -> String {
        let answer_wait = timeouts.answer_wait(self.length);
        let tick = (timeouts.stall.min(answer_wait) / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let now = self.now_ms();
            if self.finished.load(Ordering::Relaxed) {
                let waited = now.saturating_sub(self.finished_ms.load(Ordering::Relaxed));
                if u128::from(waited) > answer_wait.as_millis() {
                    return format!("no answer within {answer_wait:?} of sending the request");
                }
            } else {
                let idle = now.saturating_sub(self.last_progress_ms.load(Ordering::Relaxed));
                if u128::from(idle) > timeouts.stall.as_millis() {
                    return format!("the upload made no progress for {:?}", timeouts.stall);
                }
            }
        }
    }
}

/// A request body that can be produced again for every try.
#[derive(Clone)]
pub(crate) struct ReplayableBody {
    make: Arc<dyn Fn(Arc<Liveness>) -> BodyFuture + Send + Sync>,
    /// Sent as `Content-Length`; `None` for a body whose end is not known yet (a layer still
    /// being compressed), which goes out chunked.
    pub length: Option<u64>,
}

impl ReplayableBody {
    pub fn empty() -> Self {
        Self::bytes(Bytes::new())
    }

    pub fn bytes(bytes: Bytes) -> Self {
        let length = bytes.len() as u64;
        Self {
            make: Arc::new(move |liveness: Arc<Liveness>| {
                let bytes = bytes.clone();
                // Handed over whole: hyper sends it without asking for more.
                liveness.sent(bytes.len() as u64);
                Box::pin(async move { Ok(reqwest::Body::from(bytes)) })
            }),
            length: Some(length),
        }
    }

    /// `length` bytes of `path` from `offset`, streamed. `progress` hears `offset + sent`.
    pub(crate) fn file_range(
        path: PathBuf,
        digest: Digest,
        offset: u64,
        length: u64,
        progress: Option<SentBytesFn>,
    ) -> Self {
        Self {
            make: Arc::new(move |liveness: Arc<Liveness>| {
                let (path, digest, progress) = (path.clone(), digest.clone(), progress.clone());
                Box::pin(async move {
                    let read_error = |source| RegistryError::ReadBlob {
                        path: path.clone(),
                        digest: digest.clone(),
                        source,
                    };
                    let mut file = tokio::fs::File::open(&path).await.map_err(read_error)?;
                    file.seek(std::io::SeekFrom::Start(offset))
                        .await
                        .map_err(read_error)?;
                    let stream = ReaderStream::with_capacity(file.take(length), READ_BUFFER);
                    Ok(counted(stream, offset, progress, liveness))
                })
            }),
            length: Some(length),
        }
    }

    /// A body made by an async function each try (e.g. a GET from another registry).
    pub(crate) fn from_fn<F, Fut>(length: u64, make: F) -> Self
    where
        F: Fn(Arc<Liveness>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<reqwest::Body, RegistryError>> + Send + 'static,
    {
        Self {
            make: Arc::new(move |liveness| Box::pin(make(liveness))),
            length: Some(length),
        }
    }

    /// A layer's compressed bytes while they are still being written: each try reads the file
    /// from the start, waiting for the writer, and ends when the writer is done. `progress`
    /// hears the bytes sent so far.
    pub fn growing(live: dockless_oci::live::LiveBlob, progress: Option<SentBytesFn>) -> Self {
        Self {
            make: Arc::new(move |liveness: Arc<Liveness>| {
                let (live, progress) = (live.clone(), progress.clone());
                Box::pin(async move { Ok(growing_body(live, liveness, progress)) })
            }),
            length: None,
        }
    }

    async fn make(&self, liveness: Arc<Liveness>) -> Result<reqwest::Body, RegistryError> {
        (self.make)(liveness).await
    }
}

/// Reads `live` from the start as the writer publishes bytes; fails if the writer gives up.
fn growing_body(
    live: dockless_oci::live::LiveBlob,
    liveness: Arc<Liveness>,
    progress: Option<SentBytesFn>,
) -> reqwest::Body {
    use dockless_oci::live::LiveProgress;
    let watch = live.watch();
    let stream = futures_util::stream::unfold(
        (live, watch, 0u64, false),
        |(live, mut watch, offset, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let available = match live.progress() {
                    LiveProgress::Writing(written) => written,
                    LiveProgress::Done { size, .. } if offset >= size => return None,
                    LiveProgress::Done { size, .. } => size,
                    LiveProgress::Failed => {
                        let error = std::io::Error::other("the layer was not finished");
                        return Some((Err(error), (live, watch, offset, true)));
                    }
                };
                if offset < available {
                    let want = usize::try_from(available - offset)
                        .unwrap_or(READ_BUFFER)
                        .min(READ_BUFFER);
                    let reader = live.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0; want];
                        let n = reader.read_at(&mut buf, offset)?;
                        buf.truncate(n);
                        Ok::<_, std::io::Error>(buf)
                    })
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|read| read);
                    return match read {
                        Ok(buf) if buf.is_empty() => {
                            let error =
                                std::io::Error::other("the layer file is shorter than written");
                            Some((Err(error), (live, watch, offset, true)))
                        }
                        Ok(buf) => {
                            let next = offset + buf.len() as u64;
                            Some((Ok(Bytes::from(buf)), (live, watch, next, false)))
                        }
                        Err(error) => Some((Err(error), (live, watch, offset, true))),
                    };
                }
                if watch.changed().await.is_err()
                    && !matches!(live.progress(), LiveProgress::Done { .. })
                {
                    let error = std::io::Error::other("the layer writer stopped");
                    return Some((Err(error), (live, watch, offset, true)));
                }
            }
        },
    );
    let ends = Arc::clone(&liveness);
    // At the end of a body of unknown length: from here on only the answer is awaited.
    let end = futures_util::stream::once(async move { ends.finish() })
        .filter_map(|()| async { None::<std::io::Result<Bytes>> });
    let stream = stream.chain(end);
    counted(stream, 0, progress, liveness)
}

/// Wraps a byte stream into a body that reports progress as it is read.
pub fn counted<S, E>(
    stream: S,
    start: u64,
    progress: Option<SentBytesFn>,
    liveness: Arc<Liveness>,
) -> reqwest::Body
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let mut sent = start;
    reqwest::Body::wrap_stream(stream.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            liveness.sent(bytes.len() as u64);
            sent += bytes.len() as u64;
            if let Some(progress) = &progress {
                progress(sent);
            }
        }
        chunk
    }))
}

/// A request ready to send, possibly several times.
pub(crate) struct Outgoing<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<&'a ReplayableBody>,
    /// The `Authorization` value, and the origin it may be sent to.
    pub authorization: Option<(&'a SecretString, &'a Url)>,
    pub timeouts: Timeouts,
}

/// Why one exchange failed before a response came back.
pub(crate) enum SendFailure {
    Http(reqwest::Error),
    Body(RegistryError),
    BadLocation(String),
    TooManyRedirects,
    /// No progress, or no answer, within [`Timeouts`].
    TimedOut(String),
}

/// Sends once, following redirects by hand; returns the first non-redirect response.
pub(crate) async fn send_following_redirects(
    http: &reqwest::Client,
    request: Outgoing<'_>,
) -> Result<Response, SendFailure> {
    let Outgoing {
        mut method,
        mut url,
        headers,
        mut body,
        authorization,
        timeouts,
    } = request;
    for _ in 0..=MAX_REDIRECTS {
        let mut builder = http
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some((secret, origin)) = authorization
            && same_origin(&url, origin)
        {
            let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
                SendFailure::Body(RegistryError::ClientSetup(
                    "a credential contains characters that cannot go in an HTTP header".into(),
                ))
            })?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        let liveness = Liveness::new(body.map_or(Some(0), |b| b.length));
        if let Some(body) = body {
            if let Some(length) = body.length {
                builder = builder.header(CONTENT_LENGTH, length);
            }
            builder = builder.body(
                body.make(liveness.clone())
                    .await
                    .map_err(SendFailure::Body)?,
            );
        } else if method == Method::POST || method == Method::PUT || method == Method::PATCH {
            // GAR answers 411 to a bodiless POST without an explicit length.
            builder = builder.header(CONTENT_LENGTH, 0);
        }
        let response = tokio::select! {
            response = builder.send() => response.map_err(SendFailure::Http)?,
            stalled = liveness.watch(timeouts) => return Err(SendFailure::TimedOut(stalled)),
        };
        let status = response.status();
        if !is_redirect(status) {
            return Ok(response);
        }
        let Some(location) = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(response);
        };
        let next = resolve_location(&url, location)
            .ok_or_else(|| SendFailure::BadLocation(location.to_string()))?;
        tracing::debug!(
            from = %redact_query(&url),
            to = %redact_query(&next),
            status = status.as_u16(),
            "following redirect"
        );
        let keeps_method = status == StatusCode::TEMPORARY_REDIRECT
            || status == StatusCode::PERMANENT_REDIRECT
            || method == Method::GET
            || method == Method::HEAD;
        if !keeps_method {
            method = Method::GET;
            body = None;
        }
        url = next;
    }
    Err(SendFailure::TooManyRedirects)
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// A URL for logs: object-storage redirects carry signatures in the query.
pub fn redact_query(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.query().is_some() {
        shown.set_query(Some("…"));
    }
    shown.to_string()
}

/// Why the next piece of an answer's body did not come.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyReadError {
    #[error("{0}")]
    Failed(reqwest::Error),
    #[error("the answer stalled for {0:?}")]
    Stalled(Duration),
}

/// The next chunk of a response body, failing when none arrives within `stall`.
pub(crate) async fn next_chunk(
    response: &mut Response,
    stall: Duration,
) -> Result<Option<Bytes>, BodyReadError> {
    match tokio::time::timeout(stall, response.chunk()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(error)) => Err(BodyReadError::Failed(error)),
        Err(_) => Err(BodyReadError::Stalled(stall)),
    }
}
