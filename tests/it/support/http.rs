//! A tiny in-process HTTP server (hyper) for test doubles: token server, fault proxy.
//! Bound to 127.0.0.1:0; stops when dropped. An answer marked [`BreakBodyAfter`] breaks off
//! mid-body, for clients that must report a body they could not read.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Returning `Err` makes hyper drop the connection without an answer (a fault to inject).
pub type HandlerResult = Result<Response<Full<Bytes>>, ServerError>;

/// Why a handler gave up on a connection.
#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

macro_rules! server_error_from {
    ($($source:ty),*) => {
        $(impl From<$source> for ServerError {
            fn from(error: $source) -> Self {
                ServerError(error.to_string())
            }
        })*
    };
}

server_error_from!(hyper::Error, hyper::http::Error, reqwest::Error, &str);
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync,
>;

pub struct TestServer {
    pub addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let answer = handler(request);
                        async move { Ok::<_, ServerError>(breaking_off(answer.await?).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, accept_loop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Marks an answer whose body breaks off after this many bytes: its `Content-Length`
/// promises the whole body, the first bytes go out, then the connection drops.
#[derive(Debug, Clone, Copy)]
pub struct BreakBodyAfter(pub usize);

/// `answer` as it goes out: whole, or broken off as its [`BreakBodyAfter`] mark says.
async fn breaking_off(answer: Response<Full<Bytes>>) -> Response<Either<Full<Bytes>, BrokenBody>> {
    let Some(BreakBodyAfter(keep)) = answer.extensions().get().copied() else {
        return answer.map(Either::Left);
    };
    let (mut parts, body) = answer.into_parts();
    let whole = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    parts
        .headers
        .insert(hyper::header::CONTENT_LENGTH, whole.len().into());
    let body = BrokenBody {
        first: Some(whole.slice(..keep.min(whole.len()))),
        // The break comes a moment after the first bytes, so they are flushed to the client
        // before the connection drops.
        pause: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
    };
    Response::from_parts(parts, Either::Right(body))
}

/// The first bytes of a body, a pause, then an error (hyper drops the connection).
pub struct BrokenBody {
    first: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl Body for BrokenBody {
    type Data = Bytes;
    type Error = ServerError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ServerError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match self.pause.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err(ServerError(
                "the body breaks off here, as the test asked".into(),
            )))),
        }
    }
}

pub fn response(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}
