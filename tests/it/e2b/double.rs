//! A faithful local E2B, built from PROTOCOL.md and openapi.yml: the API (templates, builds,
//! status) and the legacy registry gateway in front of the real `docker-registry`. Its "build"
//! pulls the pushed image for linux/amd64, checks every blob, and reports logs and status.
//!
//! Every request is recorded with the credentials it carried, so tests can prove what was sent
//! where; anything E2B would not tolerate (two credentials at once, a mount, a second PATCH
//! chunk) is also written down as a violation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::support::http::{Handler, HandlerResult, TestServer, response};

/// Log lines each successful build writes while provisioning.
pub const PROVISION_LINES: usize = 150;

pub const DEPRECATED: &str =
    "E2B_ACCESS_TOKEN is deprecated and no longer accepted. Use an API key (E2B_API_KEY) instead.";

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub server: &'static str,
    pub method: String,
    pub path: String,
    pub api_key: Option<String>,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct Build {
    pub template_id: String,
    pub status: &'static str,
    pub logs: Vec<Value>,
    pub reason: Option<Value>,
    pub start_body: Value,
}

#[derive(Default)]
pub struct State {
    api_keys: Vec<String>,
    access_tokens: Vec<String>,
    deprecated_tokens: Vec<String>,
    /// Refused by the gateway only.
    gateway_deprecated_tokens: Vec<String>,
    /// templateID → names.
    templates: HashMap<String, Vec<String>>,
    builds: HashMap<String, Build>,
    /// Gateway token → the template it grants (None: a token without scope grants nothing).
    gateway_tokens: HashMap<String, Option<String>>,
    /// `/artifacts-uploads/<n>` → (the registry's real upload URL, whether a PATCH came).
    uploads: HashMap<String, (String, bool)>,
    pub seen: Vec<Seen>,
    pub violations: Vec<String>,
    counter: u64,
    gateway_origin: String,
}

impl State {
    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{:04}{}", self.counter, fastrand::u32(1000..9999))
    }
}

pub struct E2bDouble {
    pub api: TestServer,
    pub gateway: TestServer,
    state: Arc<Mutex<State>>,
}

impl E2bDouble {
    /// The API and the gateway, the gateway storing into the registry at `backing` (no auth).
    pub async fn start(backing: &str) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let backing = format!("http://{backing}");
        let (s, h, b) = (state.clone(), http.clone(), backing.clone());
        let api_handler: Handler = Arc::new(move |request| {
            let (s, h, b) = (s.clone(), h.clone(), b.clone());
            Box::pin(async move { api(request, s, h, b).await })
        });
        let (s, h, b) = (state.clone(), http.clone(), backing.clone());
        let gateway_handler: Handler = Arc::new(move |request| {
            let (s, h, b) = (s.clone(), h.clone(), b.clone());
            Box::pin(async move { gateway(request, s, h, b).await })
        });
        let api = TestServer::start(api_handler).await;
        let gateway = TestServer::start(gateway_handler).await;
        state.lock().unwrap().gateway_origin = gateway.url();
        E2bDouble {
            api,
            gateway,
            state,
        }
    }

    pub fn allow_api_key(&self, key: &str) {
        self.state.lock().unwrap().api_keys.push(key.to_owned());
    }

    pub fn allow_access_token(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .access_tokens
            .push(token.to_owned());
    }

    /// E2B's per-user switch: this access token is refused everywhere with the deprecation text.
    pub fn deprecate_access_token(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .deprecated_tokens
            .push(token.to_owned());
    }

    /// The switch at the gateway alone (the API still takes the token).
    pub fn deprecate_access_token_at_gateway(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .gateway_deprecated_tokens
            .push(token.to_owned());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    pub fn build(&self, build_id: &str) -> Option<Build> {
        self.state.lock().unwrap().builds.get(build_id).cloned()
    }

    /// Environment that points dockless at this double.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("E2B_API_URL", self.api.url()),
            ("E2B_REGISTRY_URL", self.gateway.url()),
        ]
    }

    pub fn gateway_host(&self) -> String {
        self.gateway.addr.to_string()
    }
}

fn json_response(status: u16, value: Value) -> HandlerResult {
    let mut answer = response(status, value.to_string());
    answer
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(answer)
}

fn api_error(status: u16, message: &str) -> HandlerResult {
    json_response(status, json!({"code": status, "message": message}))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    ApiKey,
    AccessToken,
}

async fn api(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
    backing: String,
) -> HandlerResult {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (api_key, authorization) = (header("x-api-key"), header("authorization"));
    let body = request.into_body().collect().await?.to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    s.seen.push(Seen {
        server: "api",
        method: method.clone(),
        path: path.clone(),
        api_key: api_key.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    if api_key.is_some() && authorization.is_some() {
        s.violations
            .push(format!("{method} {path} carried two credentials"));
        return api_error(400, "only one of X-API-Key and Authorization may be sent");
    }
    let kind = match (
        &api_key,
        authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer ")),
    ) {
        (Some(key), _) if s.api_keys.contains(key) => Kind::ApiKey,
        (Some(_), _) => {
            return api_error(
                401,
                "Invalid API key, please visit https://e2b.dev/docs/api-key",
            );
        }
        (None, Some(token)) if s.deprecated_tokens.iter().any(|t| t == token) => {
            return api_error(401, DEPRECATED);
        }
        (None, Some(token)) if s.access_tokens.iter().any(|t| t == token) => Kind::AccessToken,
        (None, Some(_)) => return api_error(401, "Invalid access token"),
        (None, None) => return api_error(401, "authorization header is missing"),
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let needs = |wanted: Kind| -> Option<HandlerResult> {
        (kind != wanted).then(|| match wanted {
            // openapi.yml: these endpoints list ApiKeyAuth only, or AccessTokenAuth only.
            Kind::ApiKey => api_error(401, "this endpoint accepts an API key (X-API-Key) only"),
            Kind::AccessToken => api_error(
                401,
                "this deprecated endpoint accepts an access token (Authorization: Bearer) only",
            ),
        })
    };
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["v3", "templates"]) => {
            if let Some(refused) = needs(Kind::ApiKey) {
                return refused;
            }
            let Some(name) = body["name"].as_str().map(str::to_owned) else {
                return api_error(400, "name is required");
            };
            if let Some(refused) = check_resources(&body) {
                return refused;
            }
            let existing = s
                .templates
                .iter()
                .find(|(id, names)| *id == &name || names.contains(&name))
                .map(|(id, _)| id.clone());
            let template_id = match existing {
                Some(id) => id,
                None => {
                    let id = s.next_id("tpl");
                    s.templates.insert(id.clone(), vec![name.clone()]);
                    id
                }
            };
            let build_id = new_build(&mut s, &template_id);
            json_response(
                202,
                json!({"templateID": template_id, "buildID": build_id, "public": false,
                       "names": [name], "tags": [], "aliases": []}),
            )
        }
        ("POST", ["templates"]) | ("POST", ["templates", _]) => {
            if let Some(refused) = needs(Kind::AccessToken) {
                return refused;
            }
            if body["dockerfile"].as_str().is_none() {
                return api_error(400, "dockerfile is required");
            }
            if let Some(refused) = check_resources(&body) {
                return refused;
            }
            let template_id = match parts.get(1) {
                Some(id) if s.templates.contains_key(*id) => id.to_string(),
                Some(id) => return api_error(404, &format!("template '{id}' not found")),
                None => {
                    let id = s.next_id("tpl");
                    let alias = body["alias"].as_str().unwrap_or_default().to_owned();
                    s.templates.insert(id.clone(), vec![alias]);
                    id
                }
            };
            let build_id = new_build(&mut s, &template_id);
            json_response(
                202,
                json!({"templateID": template_id, "buildID": build_id,
                       "cpuCount": body["cpuCount"].as_u64().unwrap_or(2),
                       "memoryMB": body["memoryMB"].as_u64().unwrap_or(512), "diskSizeMB": 5120,
                       "public": false, "aliases": [], "createdAt": "2026-11-28T00:00:00Z",
                       "updatedAt": "2026-11-28T00:00:00Z", "createdBy": null, "lastSpawnedAt": null,
                       "spawnCount": 0, "buildCount": 1, "envdVersion": "0.2.0"}),
            )
        }
        ("POST", [version @ ("v2" | "templates"), ..]) => {
            let legacy = *version == "templates";
            let (template_id, build_id) = match (legacy, parts.as_slice()) {
                (true, ["templates", t, "builds", b]) => (t.to_string(), b.to_string()),
                (false, ["v2", "templates", t, "builds", b]) => (t.to_string(), b.to_string()),
                _ => return api_error(404, "not found"),
            };
            if let Some(refused) = needs(if legacy {
                Kind::AccessToken
            } else {
                Kind::ApiKey
            }) {
                return refused;
            }
            let Some(build) = s
                .builds
                .get_mut(&build_id)
                .filter(|b| b.template_id == template_id)
            else {
                return api_error(404, "build not found");
            };
            if build.status != "waiting" {
                return api_error(400, "build is not in waiting state");
            }
            let source = if legacy {
                PullSource {
                    registry: backing.clone(),
                    repository: format!("e2b/custom-envs/{template_id}"),
                    reference: build_id.clone(),
                    basic: None,
                }
            } else {
                let Some(image) = body["fromImage"].as_str() else {
                    return api_error(400, "fromImage is required");
                };
                let basic = match body.get("fromImageRegistry") {
                    Some(r) if r["type"] == "registry" => Some((
                        r["username"].as_str().unwrap_or_default().to_owned(),
                        r["password"].as_str().unwrap_or_default().to_owned(),
                    )),
                    _ => None,
                };
                match PullSource::parse(image, basic) {
                    Some(source) => source,
                    None => return api_error(400, &format!("fromImage {image:?} is not valid")),
                }
            };
            build.status = "building";
            build.start_body = body.clone();
            drop(s);
            tokio::spawn(run_build(state.clone(), http, build_id, source));
            Ok(response(202, ""))
        }
        ("GET", ["templates", t, "builds", b, "status"]) => {
            let offset: usize = query
                .split('&')
                .find_map(|p| p.strip_prefix("logsOffset="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let Some(build) = s.builds.get(*b).filter(|build| build.template_id == *t) else {
                return api_error(404, "build not found");
            };
            let entries: Vec<Value> = build.logs.iter().skip(offset).take(100).cloned().collect();
            let logs: Vec<Value> = entries.iter().map(|e| e["message"].clone()).collect();
            let mut answer = json!({"templateID": t, "buildID": b, "status": build.status,
                                    "logs": logs, "logEntries": entries});
            if let Some(reason) = &build.reason {
                answer["reason"] = reason.clone();
            }
            json_response(200, answer)
        }
        _ => api_error(404, &format!("no route {method} {path}")),
    }
}

fn check_resources(body: &Value) -> Option<HandlerResult> {
    if let Some(cpu) = body["cpuCount"].as_u64()
        && cpu < 1
    {
        return Some(api_error(400, "cpuCount must be at least 1"));
    }
    if let Some(memory) = body["memoryMB"].as_u64()
        && (memory < 128 || memory % 2 != 0)
    {
        return Some(api_error(
            400,
            "memoryMB must be an even number, at least 128",
        ));
    }
    None
}

fn new_build(s: &mut State, template_id: &str) -> String {
    let build_id = s.next_id("bld");
    s.builds.insert(
        build_id.clone(),
        Build {
            template_id: template_id.to_owned(),
            status: "waiting",
            logs: Vec::new(),
            reason: None,
            start_body: Value::Null,
        },
    );
    build_id
}

/// Where E2B pulls the image from.
struct PullSource {
    registry: String,
    repository: String,
    reference: String,
    basic: Option<(String, String)>,
}

impl PullSource {
    /// `HOST:PORT/REPO(:TAG|@DIGEST)` on loopback (the tests' registries).
    fn parse(image: &str, basic: Option<(String, String)>) -> Option<Self> {
        let (host, rest) = image.split_once('/')?;
        let (repository, reference) = match rest.split_once('@') {
            Some((repo, digest)) => (repo, digest),
            None => rest.rsplit_once(':')?,
        };
        Some(PullSource {
            registry: format!("http://{host}"),
            repository: repository.to_owned(),
            reference: reference.to_owned(),
            basic,
        })
    }
}

fn log(state: &Arc<Mutex<State>>, build_id: &str, level: &str, step: &str, message: String) {
    let mut s = state.lock().unwrap();
    if let Some(build) = s.builds.get_mut(build_id) {
        build.logs.push(
            json!({"timestamp": "2026-11-28T00:00:00Z", "message": message,
                               "level": level, "step": step}),
        );
    }
}

/// E2B's build: pull for linux/amd64, verify every blob, then "provision".
async fn run_build(
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
    build_id: String,
    source: PullSource,
) {
    log(
        &state,
        &build_id,
        "info",
        "base",
        format!(
            "Pulling {}/{}:{}",
            source.registry, source.repository, source.reference
        ),
    );
    let outcome = pull_and_verify(&state, &http, &build_id, &source).await;
    // Some logs arrive after the status changes: clients must drain them.
    let mut s = state.lock().unwrap();
    let Some(build) = s.builds.get_mut(&build_id) else {
        return;
    };
    match outcome {
        Ok(()) => {
            build.status = "ready";
            build.logs.push(
                json!({"timestamp": "2026-11-28T00:00:01Z", "message": "Template is ready",
                                   "level": "info", "step": "finalize"}),
            );
        }
        Err(message) => {
            build.status = "error";
            build.logs.push(
                json!({"timestamp": "2026-11-28T00:00:01Z", "message": message,
                                   "level": "error", "step": "base"}),
            );
            build.reason = Some(json!({"message": message, "step": "base"}));
        }
    }
}

async fn pull_and_verify(
    state: &Arc<Mutex<State>>,
    http: &reqwest::Client,
    build_id: &str,
    source: &PullSource,
) -> Result<(), String> {
    let get = |path: String, accept: bool| {
        let mut request = http.get(format!(
            "{}/v2/{}/{path}",
            source.registry, source.repository
        ));
        if accept {
            request = request.header(
                "accept",
                "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json",
            );
        }
        if let Some((user, password)) = &source.basic {
            request = request.basic_auth(user, Some(password));
        }
        async move {
            let answer = request.send().await.map_err(|e| format!("pulling: {e}"))?;
            let status = answer.status();
            let bytes = answer.bytes().await.map_err(|e| format!("pulling: {e}"))?;
            if !status.is_success() {
                return Err(format!(
                    "failed to pull image: {path}: HTTP {}: unauthorized or missing",
                    status.as_u16()
                ));
            }
            Ok::<Bytes, String>(bytes)
        }
    };
    let mut manifest: Value =
        serde_json::from_slice(&get(format!("manifests/{}", source.reference), true).await?)
            .map_err(|e| format!("manifest is not JSON: {e}"))?;
    if let Some(entries) = manifest["manifests"].as_array() {
        let entry = entries
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64")
            .ok_or("the image has no linux/amd64 variant")?;
        let digest = entry["digest"].as_str().unwrap_or_default().to_owned();
        manifest = serde_json::from_slice(&get(format!("manifests/{digest}"), true).await?)
            .map_err(|e| format!("manifest is not JSON: {e}"))?;
    }
    let config_descriptor = manifest["config"].clone();
    let config = fetch_verified(&get, &config_descriptor).await?;
    let config: Value =
        serde_json::from_slice(&config).map_err(|e| format!("config is not JSON: {e}"))?;
    if config["architecture"] != "amd64" || config["os"] != "linux" {
        return Err(format!(
            "image platform {}/{} does not match linux/amd64",
            config["os"].as_str().unwrap_or("?"),
            config["architecture"].as_str().unwrap_or("?")
        ));
    }
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if layers.len() != diff_ids.len() {
        return Err("the config's diff_ids do not match the layers".into());
    }
    for layer in &layers {
        fetch_verified(&get, layer).await?;
        log(
            state,
            build_id,
            "info",
            "base",
            format!("Layer {} verified", layer["digest"].as_str().unwrap_or("?")),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More lines than one status answer carries (100): clients must page through them.
    for line in 1..=PROVISION_LINES {
        let message = format!("Provisioning step {line}/{PROVISION_LINES}");
        log(state, build_id, "debug", "provision", message);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

async fn fetch_verified<F, Fut>(get: &F, descriptor: &Value) -> Result<Bytes, String>
where
    F: Fn(String, bool) -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, String>>,
{
    let digest = descriptor["digest"]
        .as_str()
        .ok_or("a descriptor without digest")?;
    let bytes = get(format!("blobs/{digest}"), false).await?;
    let actual = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    if actual != digest || descriptor["size"].as_u64() != Some(bytes.len() as u64) {
        return Err(format!(
            "blob {digest} is corrupt: got {actual}, {} bytes",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The legacy gateway `docker.<domain>` (PROTOCOL.md §4) in front of the backing registry.
async fn gateway(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
    backing: String,
) -> HandlerResult {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let has_length = request.headers().contains_key("content-length");
    let content_type = request.headers().get("content-type").cloned();
    {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            server: "gateway",
            method: method.clone(),
            path: format!(
                "{path}{}",
                query
                    .as_deref()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default()
            ),
            api_key: None,
            authorization: authorization.clone(),
            body: Value::Null,
        });
    }
    if path == "/v2/token" {
        if method != "GET" {
            return Ok(response(404, "404 page not found"));
        }
        return token(
            &state,
            authorization.as_deref(),
            query.as_deref().unwrap_or_default(),
        );
    }
    // The storage behind the gateway: upload sessions, reached without authorization.
    if let Some(id) = path.strip_prefix("/artifacts-uploads/") {
        let body = request.into_body().collect().await?.to_bytes();
        let (real, patched) = {
            let s = state.lock().unwrap();
            match s.uploads.get(id) {
                Some(session) => session.clone(),
                None => return Ok(response(404, "unknown upload")),
            }
        };
        if method == "PATCH" && patched {
            state
                .lock()
                .unwrap()
                .violations
                .push("a second PATCH chunk".into());
            return Ok(response(
                400,
                "GAR does not accept a blob in several chunks",
            ));
        }
        let mut url = real.clone();
        if let Some(q) = &query {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(q);
        }
        let mut forward = http.request(method.parse().unwrap(), url).body(body);
        if let Some(ct) = content_type {
            forward = forward.header("content-type", ct);
        }
        let answer = forward.send().await?;
        let status = answer.status().as_u16();
        let location = header_of(&answer, "location");
        let digest = header_of(&answer, "docker-content-digest");
        let range = header_of(&answer, "range");
        if method == "PATCH" {
            let mut s = state.lock().unwrap();
            let real = location.map(|l| absolute(&backing, &l)).unwrap_or(real);
            s.uploads.insert(id.to_owned(), (real, true));
        }
        let bytes = answer.bytes().await?;
        let mut reply = Response::builder().status(status);
        if method == "PATCH" {
            reply = reply.header("location", format!("/artifacts-uploads/{id}"));
        }
        if let Some(d) = digest {
            reply = reply.header("docker-content-digest", d);
        }
        if let Some(r) = range {
            reply = reply.header("range", r);
        }
        return Ok(reply.body(Full::new(bytes))?);
    }
    let origin = state.lock().unwrap().gateway_origin.clone();
    let Some(token) = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
    else {
        let mut answer = response(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        let headers = answer.headers_mut();
        // No service, no scope: the client must build the scope itself.
        headers.insert(
            "www-authenticate",
            format!("Bearer realm=\"{origin}/v2/token\"")
                .parse()
                .unwrap(),
        );
        headers.insert(
            "docker-distribution-api-version",
            "registry/2.0".parse().unwrap(),
        );
        return Ok(answer);
    };
    let granted = state.lock().unwrap().gateway_tokens.get(token).cloned();
    let Some(granted) = granted else {
        return Ok(response(401, "unknown token"));
    };
    if path == "/v2/" {
        return Ok(response(200, "{}"));
    }
    let template = path
        .strip_prefix("/v2/e2b/custom-envs/")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned);
    if template.is_none() || template != granted {
        return Ok(response(403, "forbidden"));
    }
    if method == "POST" && path.ends_with("/blobs/uploads/") {
        if !has_length {
            return Ok(response(411, "Length Required"));
        }
        if query.as_deref().is_some_and(|q| q.contains("mount=")) {
            state
                .lock()
                .unwrap()
                .violations
                .push("a cross-repository mount at the gateway".into());
        }
    }
    let body = request.into_body().collect().await?.to_bytes();
    let url = format!(
        "{backing}{path}{}",
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let mut forward = http.request(method.parse().unwrap(), url).body(body);
    if let Some(ct) = content_type {
        forward = forward.header("content-type", ct);
    }
    let answer = forward.send().await?;
    let status = answer.status().as_u16();
    let mut reply = Response::builder().status(status);
    for name in [
        "content-type",
        "docker-content-digest",
        "range",
        "oci-chunk-min-length",
    ] {
        if let Some(value) = header_of(&answer, name) {
            reply = reply.header(name, value);
        }
    }
    if let Some(location) = header_of(&answer, "location") {
        if location.contains("/blobs/uploads/") {
            // GAR: a relative Location on another path, resolved against the gateway.
            let mut s = state.lock().unwrap();
            let id = s.next_id("up");
            s.uploads
                .insert(id.clone(), (absolute(&backing, &location), false));
            reply = reply.header("location", format!("/artifacts-uploads/{id}"));
        } else {
            reply = reply.header("location", location.replace(&backing, &origin));
        }
    }
    if method == "HEAD" {
        if let Some(length) = header_of(&answer, "content-length") {
            reply = reply.header("content-length", length);
        }
        return Ok(reply.body(Full::new(Bytes::new()))?);
    }
    let bytes = answer.bytes().await?;
    Ok(reply.body(Full::new(bytes))?)
}

fn header_of(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn absolute(backing: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{backing}{location}")
    }
}

/// `GET /v2/token?scope=…` with Basic `_e2b_access_token:<token>`.
fn token(state: &Arc<Mutex<State>>, authorization: Option<&str>, query: &str) -> HandlerResult {
    let Some(encoded) = authorization.and_then(|a| a.strip_prefix("Basic ")) else {
        return Ok(response(401, "basic auth required"));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let (user, password) = decoded.split_once(':').unwrap_or(("", ""));
    if user != "_e2b_access_token" {
        return json_response(400, json!({"error": "invalid username"}));
    }
    let password = password.trim().trim_matches('"');
    let mut s = state.lock().unwrap();
    if s.deprecated_tokens
        .iter()
        .chain(&s.gateway_deprecated_tokens)
        .any(|t| t == password)
    {
        return json_response(403, json!({"error": DEPRECATED}));
    }
    if !s.access_tokens.iter().any(|t| t == password) {
        return json_response(403, json!({"error": "invalid access token"}));
    }
    let scope = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned());
    let granted = match scope {
        None => None,
        Some(scope) => {
            let Some((template, action)) = scope
                .strip_prefix("repository:e2b/custom-envs/")
                .and_then(|rest| rest.split_once(':'))
                .filter(|(t, a)| {
                    !t.is_empty() && !a.is_empty() && !a.contains(':') && !t.contains(':')
                })
            else {
                return json_response(400, json!({"error": format!("invalid scope {scope}")}));
            };
            if action.contains("delete") {
                return json_response(403, json!({"error": "delete is not allowed"}));
            }
            let waiting = s
                .builds
                .values()
                .any(|b| b.template_id == template && b.status == "waiting");
            if !waiting {
                return json_response(403, json!({"error": "no waiting build for this template"}));
            }
            Some(template.to_owned())
        }
    };
    let token: String = (0..128).map(|_| fastrand::alphanumeric()).collect();
    s.gateway_tokens.insert(token.clone(), granted);
    json_response(200, json!({"token": token, "expires_in": 7200}))
}
