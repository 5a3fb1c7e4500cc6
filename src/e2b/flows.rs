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
    Credential, PushProgressFn, Reference, ReferenceError, RegistryClient, RegistryError,
    RegistrySettings, ResolvedCredential,
};
use crate::remote::{RemoteAccess, RemoteError};
use crate::store::Store;

use super::api::{
    ApiClient, ApiError, BuildState, CreateTemplateLegacy, CreateTemplateV3, CreatedBuild,
    LogEntry, RegistryPullCredentials, StartBuildV2,
};
use super::endpoints::Endpoints;
use super::refusal::{self, Flow};
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
        "--share-registry-credentials: dockless has no username and password for {registry} to hand to E2B (it found {found_in}); log in to it (docker login / REGISTRY_AUTH_FILE) or use --username with --password-stdin"
    )]
    NothingToShare { registry: String, found_in: String },
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

/// The registry flow: push to `target`, create (or reuse) the template, build it `fromImage`.
pub async fn registry_flow(
    api: &ApiClient,
    inputs: FlowInputs<'_>,
    target: &Reference,
    share_credentials: bool,
    on_log: &mut dyn FnMut(&LogEntry),
) -> Result<FlowOutcome, FlowError> {
    check_platform(inputs.image)?;
    // E2B resolves a name that matches an existing template to that template (later builds).
    let name = inputs
        .settings
        .name
        .clone()
        .or_else(|| inputs.settings.template_id.clone())
        .ok_or(FlowError::NoName)?;
    let client = inputs.remote.client(target)?;
    let pull_credentials = if share_credentials {
        Some(shareable(client.credential(), target.registry())?)
    } else {
        None
    };
    let digest = push_image(&inputs, &client, target)
        .await
        .map_err(|source| FlowError::Push {
            reference: target.to_string(),
            source: Box::new(source),
        })?;
    let created = api
        .create_template_v3(&CreateTemplateV3 {
            name,
            cpu_count: inputs.settings.cpu_count,
            memory_mb: inputs.settings.memory_mb,
        })
        .await?;
    tracing::info!(template = %created.template_id, build = %created.build_id, "E2B opened a build");
    let pinned = format!("{}/{}@{digest}", target.registry(), target.repository());
    api.start_build_v2(
        &created.template_id,
        &created.build_id,
        &StartBuildV2 {
            from_image: pinned,
            registry: pull_credentials,
            start_cmd: inputs.settings.start_cmd.clone(),
            ready_cmd: inputs.settings.ready_cmd.clone(),
        },
    )
    .await?;
    follow_to_the_end(api, created, target.to_string(), digest, &inputs, on_log).await
}

/// The gateway flow: request a build, push into E2B's gateway, start the build.
pub async fn gateway_flow(
    api: &ApiClient,
    endpoints: &Endpoints,
    inputs: FlowInputs<'_>,
    dockerfile_text: String,
    registry_settings: &RegistrySettings,
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

fn shareable(
    credential: &ResolvedCredential,
    registry: &str,
) -> Result<RegistryPullCredentials, FlowError> {
    match &credential.credential {
        Credential::Basic { username, password } => Ok(RegistryPullCredentials {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => Err(FlowError::NothingToShare {
            registry: registry.to_owned(),
            found_in: credential.source.to_string(),
        }),
    }
}
