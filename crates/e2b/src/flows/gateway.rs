//! The gateway flow (legacy, self-hosted E2B): build, ask E2B for a build, push into E2B's
//! registry gateway at `<gateway>/e2b/custom-envs/<templateID>:<buildID>`, start, follow.

use dockless_build::publish::{Destination, PublishError, Staged};
use dockless_registry::{
    Reference, RegistryClient, RegistryError, RegistrySettings, ResolvedCredential,
};

use super::{FlowError, FlowEvents, FlowInputs, FlowOutcome, check_platform, follow_to_the_end};
use crate::api::{ApiClient, CreateTemplateLegacy};
use crate::endpoints::Endpoints;
use crate::refusal::{self, Flow};

/// Build, then request, push through E2B's gateway, start the build and follow it. The
/// template ID E2B gives is written back to `e2b.toml` even when a later step fails.
pub fn gateway_flow(
    api: &ApiClient,
    endpoints: &Endpoints,
    inputs: &FlowInputs<'_>,
    registry_settings: &RegistrySettings,
    events: &dyn FlowEvents,
) -> Result<FlowOutcome, FlowError> {
    let image = dockless_build::build(inputs.options, inputs.store, inputs.remote)?;
    check_platform(&image, &inputs.platform())?;
    events.built(&image);
    let (_, dockerfile_text) = inputs.dockerfile()?;
    let settings = inputs.settings;
    let created = inputs.remote.block_on(api.create_template_legacy(
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
    ))?;
    tracing::info!(template = %created.template_id, build = %created.build_id, "E2B opened a build");
    let written = inputs.write_back(&created.template_id, events);
    let outcome = push_and_follow(
        api,
        endpoints,
        inputs,
        registry_settings,
        events,
        image,
        created,
    );
    written?;
    outcome
}

fn push_and_follow(
    api: &ApiClient,
    endpoints: &Endpoints,
    inputs: &FlowInputs<'_>,
    registry_settings: &RegistrySettings,
    events: &dyn FlowEvents,
    image: dockless_build::BuiltImage,
    created: crate::api::CreatedBuild,
) -> Result<FlowOutcome, FlowError> {
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
    let destination = Destination::new(
        inputs.store,
        inputs.remote,
        std::sync::Arc::new(client),
        &reference,
        events,
    );
    let staged = Staged::new(image, inputs.options.cache_to.clone());
    let pushed = destination.push(staged).map_err(|source| {
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
    inputs
        .remote
        .block_on(api.start_build_legacy(&created.template_id, &created.build_id))?;
    inputs.remote.block_on(follow_to_the_end(
        api,
        created,
        reference.to_string(),
        pushed.report.manifest_digest,
        inputs,
        events,
    ))
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

fn is_auth_refusal(error: &PublishError) -> bool {
    matches!(
        error,
        PublishError::Registry(e) if matches!(
            **e,
            RegistryError::TokenDenied { .. } | RegistryError::Unauthorized { .. } | RegistryError::Denied { .. }
        )
    )
}
