//! A faithful local E2B, built from PROTOCOL.md and openapi.yml: the API (templates, builds,
//! status) and the legacy registry gateway in front of the real `docker-registry`. Its "build"
//! pulls the pushed image for linux/amd64, checks every blob, and reports logs and status.
//!
//! Every request is recorded with the credentials it carried, so tests can prove what was sent
//! where; anything E2B would not tolerate (two credentials at once, a mount, a second PATCH
//! chunk) is also written down as a violation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::support::http::{BreakBodyAfter, Handler, HandlerResult, TestServer, response};

#[path = "double_rules.rs"]
pub mod rules;
use rules::{PullAuth, SandboxRuntime, TEAM_SLUG};

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
    pub tags: Vec<String>,
    pub cpu_count: i64,
    pub memory_mb: i64,
    /// The sandbox's user and directory once the steps are applied (set when started).
    pub runtime: Option<SandboxRuntime>,
}

/// A template of the double's one team.
#[derive(Debug, Clone, Default)]
pub struct Template {
    /// Bare aliases; the names are `acme/<alias>`.
    pub aliases: Vec<String>,
    pub builds: Vec<String>,
}

#[derive(Default)]
pub struct State {
    api_keys: Vec<String>,
    access_tokens: Vec<String>,
    deprecated_tokens: Vec<String>,
    /// Refused by the gateway only.
    gateway_deprecated_tokens: Vec<String>,
    templates: HashMap<String, Template>,
    builds: HashMap<String, Build>,
    /// Gateway token → the template it grants (None: a token without scope grants nothing).
    gateway_tokens: HashMap<String, Option<String>>,
    /// `/artifacts-uploads/<n>` → (the registry's real upload URL, whether a PATCH came).
    uploads: HashMap<String, (String, bool)>,
    pub seen: Vec<Seen>,
    pub violations: Vec<String>,
    counter: u64,
    gateway_origin: String,
    /// E2B's cloud, where the flag `disable-e2b-access-token-auth` is on for everyone.
    cloud: bool,
    /// The team's concurrent build limit (`BuildConcurrency`), when a test sets one.
    build_concurrency: Option<usize>,
    /// What the API's next requests meet, one fault each, in order.
    api_faults: VecDeque<ApiFault>,
    /// At most this many templates per page of `GET /v2/templates`, whatever `limit` asks
    /// (as a server may answer fewer), so that a test sees pages without 101 templates.
    page_size: Option<usize>,
}

/// A fault of E2B's API (behind its load balancer) for the next request.
#[derive(Debug, Clone)]
pub enum ApiFault {
    /// Busy: `status` (429, 503) with `Retry-After: retry_after`; the request is not handled.
    Busy { status: u16, retry_after: String },
    /// The request is handled, and its answer breaks off after `keep` bytes of the body.
    BrokenBody { keep: usize },
}

impl State {
    /// An ID as E2B makes them: 20 characters of `[a-z0-9]` (id.Generate).
    fn template_id(&mut self) -> String {
        self.counter += 1;
        let random: String = (0..16)
            .map(|_| fastrand::choice(b"abcdefghijklmnopqrstuvwxyz0123456789").unwrap())
            .map(|b| *b as char)
            .collect();
        format!("{random}{:04}", self.counter)
    }

    /// A build ID as E2B makes them: a UUID.
    fn build_id(&mut self) -> String {
        self.counter += 1;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            fastrand::u32(..),
            fastrand::u16(..),
            fastrand::u16(..0x1000),
            fastrand::u16(..0x1000),
            self.counter
        )
    }

    /// The template this team's name or ID points at.
    fn resolve(&self, identifier: &str) -> Option<String> {
        let alias = identifier
            .strip_prefix(&format!("{TEAM_SLUG}/"))
            .unwrap_or(identifier);
        if self.templates.contains_key(alias) {
            return Some(alias.to_owned());
        }
        self.templates
            .iter()
            .find(|(_, t)| t.aliases.iter().any(|a| a == alias))
            .map(|(id, _)| id.clone())
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
            Box::pin(async move { api_or_fault(request, s, h, b).await })
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

    /// E2B's cloud: `disable-e2b-access-token-auth` is on, every access token gets a 401.
    pub fn act_as_cloud(&self) {
        self.state.lock().unwrap().cloud = true;
    }

    /// A template of the team named `alias`, with one build in `waiting` (as a CI job that
    /// started it elsewhere would leave it). Returns its ID.
    pub fn add_template(&self, alias: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.template_id();
        s.templates.insert(
            id.clone(),
            Template {
                aliases: vec![alias.to_owned()],
                builds: Vec::new(),
            },
        );
        new_build(&mut s, &id, vec!["default".to_owned()], (2, 1024));
        id
    }

    /// `GET /v2/templates` answers at most `size` templates per page.
    pub fn cap_page_size(&self, size: usize) {
        self.state.lock().unwrap().page_size = Some(size);
    }

    /// The API's next request meets `fault` (after those already queued).
    pub fn queue_api_fault(&self, fault: ApiFault) {
        self.state.lock().unwrap().api_faults.push_back(fault);
    }

    /// The team may have at most `limit` builds of other templates in progress (429 beyond).
    pub fn limit_concurrent_builds(&self, limit: usize) {
        self.state.lock().unwrap().build_concurrency = Some(limit);
    }

    pub fn template(&self, template_id: &str) -> Option<Template> {
        self.state
            .lock()
            .unwrap()
            .templates
            .get(template_id)
            .cloned()
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

/// The API's answer, or the next queued fault instead of it or in it.
async fn api_or_fault(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
    backing: String,
) -> HandlerResult {
    let fault = state.lock().unwrap().api_faults.pop_front();
    match fault {
        None => api(request, state, http, backing).await,
        Some(ApiFault::Busy {
            status,
            retry_after,
        }) => {
            let header = |name: &str| {
                let value = request.headers().get(name)?.to_str().ok()?;
                Some(value.to_owned())
            };
            let seen = Seen {
                server: "api",
                method: request.method().to_string(),
                path: request.uri().path().to_owned(),
                api_key: header("x-api-key"),
                authorization: header("authorization"),
                body: Value::Null,
            };
            state.lock().unwrap().seen.push(seen);
            let mut answer = api_error(status, "the service is busy; try again later")?;
            answer.headers_mut().insert(
                "retry-after",
                retry_after.parse().map_err(|_| "Retry-After")?,
            );
            Ok(answer)
        }
        Some(ApiFault::BrokenBody { keep }) => {
            let mut answer = api(request, state, http, backing).await?;
            answer.extensions_mut().insert(BreakBodyAfter(keep));
            Ok(answer)
        }
    }
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
        (None, Some(token)) if s.cloud || s.deprecated_tokens.iter().any(|t| t == token) => {
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
            match request_build_v3(&mut s, &body) {
                Ok(answer) => json_response(202, answer),
                Err((status, message)) => api_error(status, &message),
            }
        }
        ("GET", ["templates"]) => json_response(200, list_templates(&s)),
        ("GET", ["v2", "templates"]) => list_templates_page(&s, &query),
        ("DELETE", ["templates", identifier]) => {
            let Some(template_id) = s.resolve(identifier) else {
                return api_error(404, &format!("template '{identifier}' not found"));
            };
            s.templates.remove(&template_id);
            Ok(response(204, ""))
        }
        ("POST", ["templates"]) | ("POST", ["templates", _]) => {
            if let Some(refused) = needs(Kind::AccessToken) {
                return refused;
            }
            if body["dockerfile"].as_str().is_none() {
                return api_error(400, "dockerfile is required");
            }
            let (cpu, memory) = match rules::limit_resources(&body) {
                Ok(resources) => resources,
                Err((status, message)) => return api_error(status, &message),
            };
            let template_id = match parts.get(1) {
                Some(id) if s.templates.contains_key(*id) => id.to_string(),
                Some(id) => return api_error(404, &format!("template '{id}' not found")),
                None => {
                    let id = s.template_id();
                    let aliases = body["alias"].as_str().map(str::to_owned).into_iter();
                    s.templates.insert(
                        id.clone(),
                        Template {
                            aliases: aliases.collect(),
                            builds: Vec::new(),
                        },
                    );
                    id
                }
            };
            let build_id = new_build(
                &mut s,
                &template_id,
                vec![rules::DEFAULT_TAG.into()],
                (cpu, memory),
            );
            json_response(
                202,
                json!({"templateID": template_id, "buildID": build_id,
                       "cpuCount": cpu, "memoryMB": memory, "diskSizeMB": 5120,
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
                return api_error(
                    404,
                    &format!(
                        "Error when getting template: build {build_id} of {template_id} not found"
                    ),
                );
            };
            if build.status != "waiting" {
                return api_error(400, "build is not in waiting state");
            }
            let (source, runtime) = if legacy {
                let source = PullSource {
                    registry: backing.clone(),
                    repository: format!("e2b/custom-envs/{template_id}"),
                    reference: build_id.clone(),
                    auth: PullAuth::Anonymous,
                };
                (
                    source,
                    SandboxRuntime {
                        user: "user".into(),
                        workdir: "/home/user".into(),
                    },
                )
            } else {
                match start_body_v2(&body) {
                    Ok(started) => started,
                    Err((status, message)) => return api_error(status, &message),
                }
            };
            build.status = "building";
            build.start_body = body.clone();
            build.runtime = Some(runtime);
            drop(s);
            tokio::spawn(run_build(state.clone(), http, build_id, source));
            Ok(response(202, ""))
        }
        ("GET", ["templates", t, "builds", b, "status"]) => {
            let param = |name: &str| {
                url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            let offset: usize = param("logsOffset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let limit: usize = match param("limit").map(|v| v.parse::<usize>()) {
                None => 100,
                Some(Ok(limit)) if limit <= 100 => limit,
                Some(_) => return api_error(400, "limit must be between 0 and 100"),
            };
            let Some(build) = s.builds.get(*b).filter(|build| build.template_id == *t) else {
                return api_error(404, "build not found");
            };
            let rank = |level: &str| {
                ["debug", "info", "warn", "error"]
                    .iter()
                    .position(|l| *l == level)
            };
            let floor = param("level").and_then(|l| rank(&l)).unwrap_or(0);
            let entries: Vec<Value> = build
                .logs
                .iter()
                .filter(|e| rank(e["level"].as_str().unwrap_or("info")).unwrap_or(1) >= floor)
                .skip(offset)
                .take(limit)
                .cloned()
                .collect();
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

/// `POST /v3/templates` in E2B's order (`requestTemplateBuild`, then `RegisterBuild`).
fn request_build_v3(s: &mut State, body: &Value) -> Result<Value, rules::Refusal> {
    let name = rules::parse_request_name(body)?;
    let tags = rules::request_tags(body, name.tag.clone())?;
    let identifier = match &name.namespace {
        Some(namespace) => format!("{namespace}/{}", name.alias),
        None => name.alias.clone(),
    };
    let existing = s.resolve(&identifier);
    if let Some(limit) = s.build_concurrency {
        let others = s
            .builds
            .values()
            .filter(|b| Some(&b.template_id) != existing.as_ref())
            .filter(|b| matches!(b.status, "waiting" | "building"))
            .count();
        if others >= limit {
            return Err((
                429,
                format!(
                    "you have reached the maximum number of concurrent template builds ({limit}). Please wait for existing builds to complete or contact support if you need more concurrent builds."
                ),
            ));
        }
    }
    let resources = rules::limit_resources(body)?;
    // register_build.go: an alias equal to ANY template ID is refused, even its own.
    if s.templates.contains_key(&name.alias) {
        return Err((409, format!("Alias '{}' is already used", name.alias)));
    }
    let template_id = match existing {
        Some(id) => id,
        None => {
            let id = s.template_id();
            s.templates.insert(id.clone(), Template::default());
            id
        }
    };
    let template = s.templates.get_mut(&template_id).expect("just resolved");
    if !template.aliases.contains(&name.alias) {
        template.aliases = vec![name.alias.clone()];
    }
    let build_id = new_build(s, &template_id, tags.clone(), resources);
    Ok(
        json!({"templateID": template_id, "buildID": build_id, "public": false,
              "names": [format!("{TEAM_SLUG}/{}", name.alias)], "tags": tags,
              "aliases": [name.alias]}),
    )
}

/// `POST /v2/templates/{id}/builds/{bid}`: where to pull from and what the steps leave.
fn start_body_v2(body: &Value) -> Result<(PullSource, SandboxRuntime), rules::Refusal> {
    if !body.is_object() {
        return Err((400, "Invalid request body: expected a JSON object".into()));
    }
    if body.get("force").is_some_and(|f| !f.is_boolean()) {
        return Err((400, "Invalid request body: force must be a boolean".into()));
    }
    let auth = rules::pull_auth(body)?;
    let runtime = rules::steps(body)?;
    let Some(image) = body["fromImage"].as_str() else {
        return Err((
            400,
            "fromImage is required (the double builds from images only)".into(),
        ));
    };
    let source = PullSource::parse(image, auth)
        .ok_or_else(|| (400, format!("fromImage {image:?} is not valid")))?;
    Ok((source, runtime))
}

/// `GET /templates`: the team's templates, in the `Template` schema.
fn list_templates(s: &State) -> Value {
    let mut ids: Vec<&String> = s.templates.keys().collect();
    ids.sort();
    let list: Vec<Value> = ids
        .into_iter()
        .map(|id| {
            let template = &s.templates[id];
            let builds: Vec<&Build> = template.builds.iter().filter_map(|b| s.builds.get(b)).collect();
            let ready = template
                .builds
                .iter()
                .rev()
                .find(|b| s.builds.get(*b).is_some_and(|b| b.status == "ready"));
            let last = builds.last();
            json!({
                "templateID": id,
                "buildID": ready.cloned().unwrap_or_default(),
                "cpuCount": last.map_or(rules::DEFAULT_TEMPLATE_CPU, |b| b.cpu_count),
                "memoryMB": last.map_or(rules::DEFAULT_TEMPLATE_MEMORY, |b| b.memory_mb),
                "diskSizeMB": 5120,
                "public": false,
                "aliases": template.aliases,
                "names": template.aliases.iter().map(|a| format!("{TEAM_SLUG}/{a}")).collect::<Vec<_>>(),
                "createdAt": "2026-11-28T00:00:00Z",
                "updatedAt": "2026-11-28T00:00:00Z",
                "createdBy": null,
                "lastSpawnedAt": null,
                "spawnCount": 0,
                "buildCount": builds.len(),
                "envdVersion": "0.2.0",
                "buildStatus": last.map_or("waiting", |b| b.status),
            })
        })
        .collect();
    Value::Array(list)
}

/// `GET /v2/templates?limit=&nextToken=`: a page of the `Template` list (`limit` 1–100,
/// default 100) and, when more follow, their cursor in `X-Next-Token`.
fn list_templates_page(s: &State, query: &str) -> HandlerResult {
    let mut limit = 100usize;
    let mut start = 0usize;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => return api_error(400, "limit must be between 1 and 100"),
            },
            "nextToken" => match value.strip_prefix("page-").and_then(|n| n.parse().ok()) {
                Some(n) => start = n,
                None => return api_error(400, "invalid nextToken"),
            },
            _ => {}
        }
    }
    let Value::Array(all) = list_templates(s) else {
        unreachable!("a list")
    };
    let size = s.page_size.map_or(limit, |cap| cap.min(limit));
    let end = (start + size).min(all.len());
    let page: Vec<Value> = all.get(start..end).unwrap_or_default().to_vec();
    let mut answer = json_response(200, Value::Array(page))?;
    if end < all.len() {
        answer
            .headers_mut()
            .insert("x-next-token", format!("page-{end}").parse().unwrap());
    }
    Ok(answer)
}

fn new_build(s: &mut State, template_id: &str, tags: Vec<String>, resources: (i64, i64)) -> String {
    let build_id = s.build_id();
    s.builds.insert(
        build_id.clone(),
        Build {
            template_id: template_id.to_owned(),
            status: "waiting",
            logs: Vec::new(),
            reason: None,
            start_body: Value::Null,
            tags,
            cpu_count: resources.0,
            memory_mb: resources.1,
            runtime: None,
        },
    );
    if let Some(template) = s.templates.get_mut(template_id) {
        template.builds.push(build_id.clone());
    }
    build_id
}

/// Where E2B pulls the image from.
struct PullSource {
    registry: String,
    repository: String,
    reference: String,
    auth: PullAuth,
}

impl PullSource {
    /// `HOST:PORT/REPO(:TAG|@DIGEST)` on loopback (the tests' registries).
    fn parse(image: &str, auth: PullAuth) -> Option<Self> {
        let (host, rest) = image.split_once('/')?;
        let (repository, reference) = match rest.split_once('@') {
            Some((repo, digest)) => (repo, digest),
            None => rest.rsplit_once(':')?,
        };
        Some(PullSource {
            registry: format!("http://{host}"),
            repository: repository.to_owned(),
            reference: reference.to_owned(),
            auth,
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
        // The tests' registries take Basic auth or none; ECR and GAR keys are checked for shape.
        if let PullAuth::Basic { username, password } = &source.auth {
            request = request.basic_auth(username, Some(password));
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
            let id = s.template_id();
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
