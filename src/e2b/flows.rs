//! The two ways of getting a built image into an E2B template.
//!
//! - Registry flow (current E2B): push to the user's registry, `POST /v3/templates`, then
//!   `POST /v2/templates/{id}/builds/{bid}` with `fromImage` (and the pull credentials only when
//!   the user asks to share them).
//! - Gateway flow (legacy, self-hosted): `POST /templates[/{id}]`, push to
//!   `<gateway>/e2b/custom-envs/<templateID>:<buildID>` through E2B's registry gateway, then
//!   `POST /templates/{id}/builds/{bid}`.
//!
//! Both then follow the build until E2B says `ready` or `error`.

use std::time::Duration;

use crate::build::BuiltImage;
use crate::image::Platform;
use crate::push::{self, EarlyReport, PushError};
use crate::registry::{
    PushProgressFn, Reference, ReferenceError, RegistryClient, RegistryError, RegistrySettings,
    ResolvedCredential,
};
use crate::remote::{RemoteAccess, RemoteError};
use crate::store::Store;

use super::api::{
    ApiClient, ApiError, BuildState, CreateTemplateLegacy, CreateTemplateV3, CreatedBuild,
    LogEntry, PullCredentials, StartBuildV2,
};
use super::endpoints::Endpoints;
use super::refusal::{self, Flow};
use super::sandbox::{READY_AFTER_START, SandboxStart};
use super::status::{BuildFailed, follow_build};
use super::template::TemplateSettings;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Build(#[from] BuildFailed),
    #[error("pushing to {reference}: {source}")]
    Push {
        reference: String,
        source: Box<PushError>,
    },
    #[error("pushing to E2B's registry gateway {reference}: {source}{}", if advice.is_empty() { String::new() } else { format!("; {advice}") })]
    GatewayPush {
        reference: String,
        source: Box<PushError>,
        advice: String,
    },
    #[error(transparent)]
    Remote(Box<RemoteError>),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(
        "E2B answered with build image {reference:?}, which is not an image reference: {source}"
    )]
    Reference {
        reference: String,
        source: ReferenceError,
    },
    #[error(
        "the image was built for {found}, but E2B runs linux/amd64 only; use a base image that has a linux/amd64 variant (nothing was uploaded)"
    )]
    Platform { found: Platform },
    #[error(
        "the registry flow needs a template name for a new template: set template_name in e2b.toml or pass --name"
    )]
    NoName,
    #[error(
        "E2B has no name for template {template_id} (from e2b.toml), and E2B builds a template by name, never by ID: pass --name NAME (or set template_name in e2b.toml) to name it"
    )]
    Unnamed { template_id: String },
    #[error(
        "E2B does not list template {template_id} (from e2b.toml) for this API key's team: it may have been deleted or belong to another team; pass --name NAME to build it under a name, or remove template_id from e2b.toml"
    )]
    UnknownTemplate { template_id: String },
}

impl From<RemoteError> for FlowError {
    fn from(e: RemoteError) -> Self {
        FlowError::Remote(Box::new(e))
    }
}

impl From<RegistryError> for FlowError {
    fn from(e: RegistryError) -> Self {
        FlowError::Registry(Box::new(e))
    }
}

/// What a flow needs besides the API client.
pub struct FlowInputs<'a> {
    pub settings: &'a TemplateSettings,
    pub store: &'a Store,
    pub image: &'a BuiltImage,
    pub remote: &'a RemoteAccess,
    pub progress: Option<PushProgressFn>,
    pub poll_interval: Duration,
    /// What uploads during the build already sent (to the registry flow's target).
    pub early: EarlyReport,
}

/// What a finished flow reports.
#[derive(Debug, Clone)]
pub struct FlowOutcome {
    pub template_id: String,
    pub build_id: String,
    /// Where the image was pushed.
    pub image: String,
    pub digest: String,
    pub status: BuildState,
}

/// E2B pulls `linux/amd64` only: refuse anything else before a byte is uploaded.
pub fn check_platform(image: &BuiltImage) -> Result<(), FlowError> {
    if image.platform.os == "linux" && image.platform.architecture == "amd64" {
        Ok(())
    } else {
        Err(FlowError::Platform {
            found: image.platform.clone(),
        })
    }
}

/// The name the registry flow sends: the one given, else the one E2B has for the template
/// known by ID (`GET /templates`). Never the ID itself: E2B refuses an alias equal to a
/// template ID ("Alias '<id>' is already used").
pub async fn template_name(
    api: &ApiClient,
    settings: &TemplateSettings,
) -> Result<String, FlowError> {
    if let Some(name) = &settings.name {
        return Ok(name.clone());
    }
    let Some(template_id) = &settings.template_id else {
        return Err(FlowError::NoName);
    };
    let templates = api.list_templates().await?;
    let template = templates
        .iter()
        .find(|t| &t.template_id == template_id)
        .ok_or_else(|| FlowError::UnknownTemplate {
            template_id: template_id.clone(),
        })?;
    template
        .name()
        .map(str::to_owned)
        .ok_or_else(|| FlowError::Unnamed {
            template_id: template_id.clone(),
        })
}

/// The registry flow's first step, before anything is built or pushed (as E2B's SDK orders
/// it): ask E2B for a build, so a refusal (quota, name, key) costs a request, not an upload.
pub async fn request_registry_build(
    api: &ApiClient,
    settings: &TemplateSettings,
    tags: &[String],
) -> Result<CreatedBuild, FlowError> {
    let name = template_name(api, settings).await?;
    let created = api
        .create_template_v3(&CreateTemplateV3 {
            name,
            tags: tags.to_vec(),
            cpu_count: settings.cpu_count,
            memory_mb: settings.memory_mb,
        })
        .await?;
    tracing::info!(template = %created.template_id, build = %created.build_id, "E2B opened a build");
    Ok(created)
}

/// How the build E2B runs from the pushed image is started.
pub struct RegistryStart {
    pub pull: Option<PullCredentials>,
    /// The image's user, directory and command, for E2B to keep (see [`super::sandbox`]).
    pub sandbox: SandboxStart,
    pub force: bool,
    /// Follow the build to its end (else return once it has started).
    pub wait: bool,
}

/// The start and ready commands: e2b.toml or flags first, else the image's CMD/ENTRYPOINT with
/// the SDK's 20 s ready wait. The flag says whether the image's command was taken.
pub fn start_commands(
    settings: &TemplateSettings,
    sandbox: &SandboxStart,
) -> (Option<String>, Option<String>, bool) {
    match (&settings.start_cmd, &sandbox.image_command) {
        (Some(start), _) => (Some(start.clone()), settings.ready_cmd.clone(), false),
        (None, Some(image)) => (
            Some(image.clone()),
            Some(
                settings
                    .ready_cmd
                    .clone()
                    .unwrap_or_else(|| READY_AFTER_START.to_owned()),
            ),
            true,
        ),
        (None, None) => (None, settings.ready_cmd.clone(), false),
    }
}

/// The registry flow after [`request_registry_build`] and the local build: push to `target`,
/// start E2B's build `fromImage` the pushed digest, follow it.
pub async fn finish_registry_flow(
    api: &ApiClient,
    created: CreatedBuild,
    inputs: FlowInputs<'_>,
    target: &Reference,
    start: RegistryStart,
    on_log: &mut dyn FnMut(&LogEntry),
) -> Result<FlowOutcome, FlowError> {
    check_platform(inputs.image)?;
    let client = inputs.remote.client(target)?;
    let digest = push_image(&inputs, &client, target)
        .await
        .map_err(|source| FlowError::Push {
            reference: target.to_string(),
            source: Box::new(source),
        })?;
    let pinned = format!("{}/{}@{digest}", target.registry(), target.repository());
    let (start_cmd, ready_cmd, _) = start_commands(inputs.settings, &start.sandbox);
    api.start_build_v2(
        &created.template_id,
        &created.build_id,
        &StartBuildV2 {
            from_image: pinned,
            registry: start.pull,
            steps: start.sandbox.steps(),
            start_cmd,
            ready_cmd,
            force: start.force,
        },
    )
    .await?;
    if !start.wait {
        return Ok(FlowOutcome {
            template_id: created.template_id,
            build_id: created.build_id,
            image: target.to_string(),
            digest,
            status: BuildState::Building,
        });
    }
    follow_to_the_end(api, created, target.to_string(), digest, &inputs, on_log).await
}

/// The gateway flow: request a build, push into E2B's gateway, start the build.
pub async fn gateway_flow(
    api: &ApiClient,
    endpoints: &Endpoints,
    inputs: FlowInputs<'_>,
    dockerfile_text: String,
    registry_settings: &RegistrySettings,
    on_created: &mut dyn FnMut(&CreatedBuild),
    on_log: &mut dyn FnMut(&LogEntry),
) -> Result<FlowOutcome, FlowError> {
    check_platform(inputs.image)?;
    let settings = inputs.settings;
    let created = api
        .create_template_legacy(
            settings.template_id.as_deref(),
            &CreateTemplateLegacy {
                alias: settings.name.clone(),
                dockerfile: dockerfile_text,
                start_cmd: settings.start_cmd.clone(),
                ready_cmd: settings.ready_cmd.clone(),
                cpu_count: settings.cpu_count,
                memory_mb: settings.memory_mb,
                team_id: settings.team_id.clone(),
            },
        )
        .await?;
    tracing::info!(template = %created.template_id, build = %created.build_id, "E2B opened a build");
    on_created(&created);
    let reference_text = endpoints.gateway_image(&created.template_id, &created.build_id);
    let reference = Reference::parse(&reference_text).map_err(|source| FlowError::Reference {
        reference: reference_text.clone(),
        source,
    })?;
    let credential = api.credential();
    let client = RegistryClient::new(
        reference.registry(),
        ResolvedCredential::explicit(
            credential.kind.gateway_username(),
            credential.secret().clone(),
        ),
        gateway_settings(registry_settings, endpoints),
    )?;
    let digest = push_image(&inputs, &client, &reference)
        .await
        .map_err(|source| {
            let advice = if is_auth_refusal(&source) {
                let text = source.to_string();
                refusal::advice(401, &text, credential, Flow::Gateway)
            } else {
                String::new()
            };
            FlowError::GatewayPush {
                reference: reference.to_string(),
                source: Box::new(source),
                advice,
            }
        })?;
    api.start_build_legacy(&created.template_id, &created.build_id)
        .await?;
    follow_to_the_end(api, created, reference.to_string(), digest, &inputs, on_log).await
}

/// Both flows end alike: follow the started build to its end, streaming its logs.
async fn follow_to_the_end(
    api: &ApiClient,
    created: CreatedBuild,
    image: String,
    digest: String,
    inputs: &FlowInputs<'_>,
    on_log: &mut dyn FnMut(&LogEntry),
) -> Result<FlowOutcome, FlowError> {
    let status = follow_build(
        api,
        &created.template_id,
        &created.build_id,
        inputs.poll_interval,
        on_log,
    )
    .await?;
    Ok(FlowOutcome {
        template_id: created.template_id,
        build_id: created.build_id,
        image,
        digest,
        status,
    })
}

/// The gateway's rules: its tokens are bound to one repository (no mounts), and the storage
/// behind it takes a blob in one request only.
fn gateway_settings(base: &RegistrySettings, endpoints: &Endpoints) -> RegistrySettings {
    let mut settings = base.clone();
    settings.cross_repository_mounts = false;
    settings.chunk_size = None;
    if endpoints.gateway_plain_http {
        settings.insecure_hosts.push(endpoints.gateway.clone());
    }
    settings
}

fn is_auth_refusal(error: &PushError) -> bool {
    matches!(
        error,
        PushError::Registry(e) if matches!(
            **e,
            RegistryError::TokenDenied { .. } | RegistryError::Unauthorized { .. } | RegistryError::Denied { .. }
        )
    )
}

/// Pushes the built image to `target` through `client`; returns the manifest digest.
async fn push_image(
    inputs: &FlowInputs<'_>,
    client: &RegistryClient,
    target: &Reference,
) -> Result<String, PushError> {
    let request = push::request_for_image(inputs.store, inputs.image, inputs.remote)?;
    let report = push::push_built_image(
        inputs.store,
        inputs.image,
        request,
        client,
        target,
        inputs.progress.clone(),
        inputs.early,
    )
    .await?;
    Ok(report.manifest_digest)
}
