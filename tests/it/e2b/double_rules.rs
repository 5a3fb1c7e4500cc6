//! E2B's request rules as the local E2B applies them, each written from E2B's own source
//! (e2b-dev/infra at 2026-08-22, commit 54693ff3; e2b-dev/E2B at 2026-08-21, commit b8029973):
//!
//! - names: `packages/shared/pkg/id/id.go` (`ParseName`, `ValidateNamespaceMatchesTeam`,
//!   `ValidateAndDeduplicateTags`), `maxLength: 128` from `spec/openapi.yml`;
//! - resources: `packages/api/internal/team/limits.go` and `internal/constants/templates.go`;
//! - start-build bodies: `spec/openapi.yml` (`TemplateBuildStartV2`, `FromImageRegistry`,
//!   `TemplateStep`) and the step types of the JS SDK (`template/types.ts`).
//!
//! Each rule answers `Err((status, message))` with E2B's status and words.

use serde_json::Value;

pub type Refusal = (u16, String);

/// The team the double's keys belong to.
pub const TEAM_SLUG: &str = "acme";
/// The team's limits (E2B's base tier).
pub const TEAM_MAX_VCPU: i64 = 8;
pub const TEAM_MAX_RAM_MB: i64 = 8192;
const MIN_TEMPLATE_CPU: i64 = 1;
const MAX_TEMPLATE_CPU: i64 = 32;
const MIN_TEMPLATE_MEMORY: i64 = 128;
pub const DEFAULT_TEMPLATE_CPU: i64 = 2;
pub const DEFAULT_TEMPLATE_MEMORY: i64 = 1024;
pub const DEFAULT_TAG: &str = "default";

fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn is_tag(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// id.go `cleanAndValidate`: trimmed, lower-cased, then matched.
fn clean(value: &str, what: &str, valid: fn(&str) -> bool) -> Result<String, String> {
    let cleaned = value.trim().to_lowercase();
    if valid(&cleaned) {
        Ok(cleaned)
    } else {
        Err(format!("invalid {what}: {value}"))
    }
}

/// A parsed name: the identifier (`namespace/alias` or `alias`) and its tag, if any.
pub struct ParsedName {
    pub namespace: Option<String>,
    pub alias: String,
    pub tag: Option<String>,
}

/// `POST /v3/templates`: `name` (or the deprecated `alias`) → identifier and tag, as
/// `requestTemplateBuild` checks it.
pub fn parse_request_name(body: &Value) -> Result<ParsedName, Refusal> {
    let input = match (body.get("name"), body.get("alias")) {
        (Some(Value::String(name)), _) => name,
        (None, Some(Value::String(alias))) => alias,
        (None, None) => return Err((400, "Name is required".into())),
        _ => return Err((400, "Invalid request body: name must be a string".into())),
    };
    if input.chars().count() > 128 {
        return Err((
            400,
            "Invalid request body: name: maximum string length is 128".into(),
        ));
    }
    let input = input.trim();
    let (identifier, tag) = match input.split_once(':') {
        Some((identifier, tag)) => (identifier, Some(tag)),
        None => (input, None),
    };
    let invalid = |e: String| (400, format!("Invalid name: {e}"));
    let tag = match tag {
        Some(tag) => {
            let tag = clean(tag, "tag", is_tag).map_err(invalid)?;
            (!tag.eq_ignore_ascii_case(DEFAULT_TAG)).then_some(tag)
        }
        None => None,
    };
    let (namespace, alias) = match identifier.split_once('/') {
        Some((namespace, alias)) => (
            Some(clean(namespace, "namespace", is_identifier).map_err(invalid)?),
            alias,
        ),
        None => (None, identifier),
    };
    let alias = clean(alias, "template ID", is_identifier).map_err(invalid)?;
    if let Some(namespace) = &namespace
        && namespace != TEAM_SLUG
    {
        return Err((
            400,
            format!("namespace '{namespace}' must match your team '{TEAM_SLUG}'"),
        ));
    }
    Ok(ParsedName {
        namespace,
        alias,
        tag,
    })
}

/// id.go `ValidateAndDeduplicateTags`, with the name's tag first; `default` when none.
pub fn request_tags(body: &Value, name_tag: Option<String>) -> Result<Vec<String>, Refusal> {
    let mut all: Vec<String> = name_tag.into_iter().collect();
    match body.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tags)) => {
            for tag in tags {
                let Some(tag) = tag.as_str() else {
                    return Err((400, "Invalid request body: tags must be strings".into()));
                };
                all.push(tag.to_owned());
            }
        }
        Some(_) => return Err((400, "Invalid request body: tags must be an array".into())),
    }
    let mut cleaned = Vec::new();
    for tag in &all {
        let valid = clean(tag, "tag", is_tag)
            .and_then(|t| {
                if looks_like_uuid(&t) {
                    Err("tag cannot be a UUID".into())
                } else {
                    Ok(t)
                }
            })
            .map_err(|e| (400, format!("Invalid tag: invalid tag '{tag}': {e}")))?;
        if !cleaned.contains(&valid) {
            cleaned.push(valid);
        }
    }
    if cleaned.is_empty() {
        cleaned.push(DEFAULT_TAG.to_owned());
    }
    Ok(cleaned)
}

fn looks_like_uuid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// limits.go `LimitResources`: the CPU and memory a build gets, or E2B's refusal.
pub fn limit_resources(body: &Value) -> Result<(i64, i64), Refusal> {
    let number = |key: &str| match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or((
            400,
            format!("Invalid request body: {key} must be an integer"),
        )),
    };
    let mut cpu = DEFAULT_TEMPLATE_CPU;
    let mut memory = DEFAULT_TEMPLATE_MEMORY;
    if let Some(value) = number("cpuCount")? {
        cpu = value;
        if cpu < MIN_TEMPLATE_CPU {
            return Err((
                400,
                format!("CPU count must be at least {MIN_TEMPLATE_CPU}"),
            ));
        }
        if cpu > MAX_TEMPLATE_CPU {
            return Err((400, format!("CPU count must be at most {MAX_TEMPLATE_CPU}")));
        }
        if cpu != 1 && cpu % 2 != 0 {
            return Err((400, "CPU count must be 1 or an even number".into()));
        }
        if cpu > TEAM_MAX_VCPU {
            return Err((
                400,
                format!(
                    "CPU count can't be higher than {TEAM_MAX_VCPU} (if you need to increase this limit, please contact support)"
                ),
            ));
        }
    }
    if let Some(value) = number("memoryMB")? {
        memory = value;
        if memory < MIN_TEMPLATE_MEMORY {
            return Err((
                400,
                format!("Memory must be at least {MIN_TEMPLATE_MEMORY} MiB"),
            ));
        }
        if memory % 2 != 0 {
            return Err((400, "Memory must be divisible by 2".into()));
        }
        if memory > TEAM_MAX_RAM_MB {
            return Err((
                400,
                format!(
                    "Memory can't be higher than {TEAM_MAX_RAM_MB} MiB (if you need to increase this limit, please contact support)"
                ),
            ));
        }
    }
    Ok((cpu, memory))
}

/// How E2B is to pull the image: none, or one of the three `fromImageRegistry` kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum PullAuth {
    Anonymous,
    Basic { username: String, password: String },
    Aws { key_id: String, region: String },
    Gcp { client_email: String },
}

fn required_string(object: &Value, kind: &str, key: &str) -> Result<String, Refusal> {
    match object.get(key).and_then(Value::as_str) {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err((
            400,
            format!(
                "Invalid request body: fromImageRegistry: {kind} registry requires a non-empty \"{key}\""
            ),
        )),
    }
}

/// `FromImageRegistry`: a oneOf with discriminator `type` (aws | gcp | registry), each kind's
/// fields required; the GCP service account must be a JSON key (the orchestrator reads it).
pub fn pull_auth(body: &Value) -> Result<PullAuth, Refusal> {
    let Some(registry) = body.get("fromImageRegistry").filter(|v| !v.is_null()) else {
        return Ok(PullAuth::Anonymous);
    };
    match registry.get("type").and_then(Value::as_str) {
        Some("registry") => Ok(PullAuth::Basic {
            username: required_string(registry, "registry", "username")?,
            password: required_string(registry, "registry", "password")?,
        }),
        Some("aws") => {
            required_string(registry, "aws", "awsSecretAccessKey")?;
            Ok(PullAuth::Aws {
                key_id: required_string(registry, "aws", "awsAccessKeyId")?,
                region: required_string(registry, "aws", "awsRegion")?,
            })
        }
        Some("gcp") => {
            let json = required_string(registry, "gcp", "serviceAccountJson")?;
            let account: Value = serde_json::from_str(&json).map_err(|_| {
                (
                    400,
                    "Invalid request body: fromImageRegistry: serviceAccountJson is not JSON"
                        .to_owned(),
                )
            })?;
            let client_email = account["client_email"].as_str().unwrap_or_default();
            if account["type"] != "service_account" || client_email.is_empty() {
                return Err((
                    400,
                    "Invalid request body: fromImageRegistry: serviceAccountJson is not a service account key".into(),
                ));
            }
            Ok(PullAuth::Gcp {
                client_email: client_email.to_owned(),
            })
        }
        other => Err((
            400,
            format!(
                "Invalid request body: fromImageRegistry: unknown type {other:?}, expected aws, gcp or registry"
            ),
        )),
    }
}

/// What a sandbox of the template runs as, after E2B's defaults and the build's steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRuntime {
    pub user: String,
    pub workdir: String,
}

/// `steps`: `TemplateStep` objects of the SDK's five types, `args` strings; USER and WORKDIR
/// with exactly one. E2B keeps nothing of the image's USER/WORKDIR: a sandbox runs as `user` in
/// `/home/user` unless a step says otherwise.
pub fn steps(body: &Value) -> Result<SandboxRuntime, Refusal> {
    let mut runtime = SandboxRuntime {
        user: "user".into(),
        workdir: "/home/user".into(),
    };
    let steps = match body.get("steps") {
        None | Some(Value::Null) => return Ok(runtime),
        Some(Value::Array(steps)) => steps,
        Some(_) => return Err((400, "Invalid request body: steps must be an array".into())),
    };
    for (index, step) in steps.iter().enumerate() {
        let bad = |what: &str| (400, format!("Invalid request body: steps[{index}]: {what}"));
        let kind = step
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("type is required"))?;
        let args: Vec<String> = match step.get("args") {
            None => Vec::new(),
            Some(Value::Array(args)) => args
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("args must be strings"))?,
            Some(_) => return Err(bad("args must be an array of strings")),
        };
        if step.get("force").is_some_and(|f| !f.is_boolean()) {
            return Err(bad("force must be a boolean"));
        }
        if step.get("filesHash").is_some_and(|f| !f.is_string()) {
            return Err(bad("filesHash must be a string"));
        }
        match kind {
            "USER" | "WORKDIR" => {
                let [value] = args.as_slice() else {
                    return Err(bad(&format!("{kind} takes exactly one argument")));
                };
                if value.trim().is_empty() {
                    return Err(bad(&format!("{kind} argument is empty")));
                }
                if kind == "USER" {
                    runtime.user = value.clone();
                } else {
                    runtime.workdir = value.clone();
                }
            }
            "RUN" | "COPY" | "ENV" => {}
            other => {
                return Err(bad(&format!(
                    "unknown step type {other:?}; E2B knows RUN, COPY, ENV, WORKDIR, USER"
                )));
            }
        }
    }
    Ok(runtime)
}
