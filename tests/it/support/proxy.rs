//! A fault-injecting HTTP proxy in front of a test registry. Rules pick requests by method and
//! path and answer them with a fault (a status, a dropped connection, a redirect) instead of
//! forwarding; everything else is forwarded, with the registry's `Location`s rewritten to
//! point back at the proxy. Every request is recorded, including whether it carried
//! `Authorization`.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::http::{Handler, HandlerResult, TestServer, response};

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this status (with `Retry-After` and `WWW-Authenticate` when given).
    Status {
        status: u16,
        retry_after: Option<u64>,
        www_authenticate: Option<String>,
    },
    /// Read the start of the request body, then close the connection without an answer.
    DropMidBody,
    /// 307 to the same path and query on this base URL (`http://host:port`).
    RedirectTo(String),
    /// Take the request and never answer (until the client gives up).
    Hang,
    /// Answer this status with `Retry-After` as an HTTP date this many seconds ahead.
    RetryAtDate { status: u16, seconds: u64 },
}

impl Fault {
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status,
            retry_after: None,
            www_authenticate: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    /// Matched against the path and query.
    pub path_contains: String,
    pub fault: Fault,
    /// How many matching requests get the fault.
    pub times: usize,
}

impl Rule {
    pub fn new(method: &'static str, path_contains: &str, fault: Fault, times: usize) -> Self {
        Self {
            method,
            path_contains: path_contains.to_string(),
            fault,
            times,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub had_authorization: bool,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
    /// The request's `Content-Length` header (`None`: sent chunked, or no body).
    pub content_length: Option<u64>,
    /// Bytes of body forwarded (`None` when a fault answered instead).
    pub body_len: Option<usize>,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
    self_origin: String,
    /// Added to forwarded requests that carry none (a "presigned" storage double).
    inject_authorization: Option<String>,
}

pub struct FaultProxy {
    server: TestServer,
    state: Arc<Mutex<ProxyState>>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let upstream_origin = format!("http://{upstream}");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy client");
        let handler_state = state.clone();
        let handler: Handler = Arc::new(move |request| {
            let (state, http, upstream) =
                (handler_state.clone(), http.clone(), upstream_origin.clone());
            Box::pin(async move { handle(request, state, http, upstream).await })
        });
        let server = TestServer::start(handler).await;
        state.lock().unwrap().self_origin = server.url();
        Self { server, state }
    }

    pub fn host(&self) -> String {
        self.server.addr.to_string()
    }

    pub fn origin(&self) -> String {
        self.server.url()
    }

    pub fn add(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push(rule);
    }

    /// Drops every rule: from now on everything is forwarded.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    pub fn inject_authorization(&self, value: String) {
        self.state.lock().unwrap().inject_authorization = Some(value);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests that got a fault.
    pub fn faults_injected(&self) -> usize {
        self.seen().iter().filter(|s| s.fault.is_some()).count()
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<Mutex<ProxyState>>,
    http: reqwest::Client,
    upstream: String,
) -> HandlerResult {
    let method = request.method().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let had_authorization = request.headers().contains_key("authorization");
    let content_length = request
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (fault, self_origin, injected, index) = {
        let mut state = state.lock().unwrap();
        let fault = state
            .rules
            .iter_mut()
            .find(|r| {
                r.times > 0 && r.method == method && path_and_query.contains(&r.path_contains)
            })
            .map(|rule| {
                rule.times -= 1;
                rule.fault.clone()
            });
        state.seen.push(Seen {
            method: method.clone(),
            path_and_query: path_and_query.clone(),
            had_authorization,
            fault: fault.clone(),
            content_length,
            body_len: None,
        });
        (
            fault,
            state.self_origin.clone(),
            state.inject_authorization.clone(),
            state.seen.len() - 1,
        )
    };
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            www_authenticate,
        }) => {
            let mut answer = response(
                status,
                r#"{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}"#,
            );
            if let Some(seconds) = retry_after {
                answer.headers_mut().insert("retry-after", seconds.into());
            }
            if let Some(challenge) = www_authenticate {
                answer
                    .headers_mut()
                    .insert("www-authenticate", challenge.parse().expect("header value"));
            }
            return Ok(answer);
        }
        Some(Fault::RetryAtDate { status, seconds }) => {
            let at = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
            let mut answer = response(status, "busy");
            let date = httpdate::fmt_http_date(at);
            answer
                .headers_mut()
                .insert("retry-after", date.parse().expect("header value"));
            return Ok(answer);
        }
        Some(Fault::DropMidBody) => {
            let mut body = request.into_body();
            let _ = body.frame().await;
            return Err("injected: connection dropped mid-body".into());
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            return Err("injected: hung".into());
        }
        Some(Fault::RedirectTo(base)) => {
            let mut answer = response(307, "");
            answer.headers_mut().insert(
                "location",
                format!("{base}{path_and_query}")
                    .parse()
                    .expect("header value"),
            );
            return Ok(answer);
        }
        None => {}
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    state.lock().unwrap().seen[index].body_len = Some(body.len());
    let mut forward = http.request(parts.method.clone(), format!("{upstream}{path_and_query}"));
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            forward = forward.header(name, value);
        }
    }
    if !had_authorization && let Some(value) = injected {
        forward = forward.header("authorization", value);
    }
    let answer = forward.body(body).send().await?;
    let mut reply = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            continue;
        }
        if name.as_str() == "location" {
            let rewritten = value
                .to_str()
                .unwrap_or_default()
                .replace(&upstream, &self_origin);
            reply = reply.header(name, rewritten);
        } else {
            reply = reply.header(name, value);
        }
    }
    let bytes: Bytes = answer.bytes().await?;
    Ok(reply.body(Full::new(bytes))?)
}
