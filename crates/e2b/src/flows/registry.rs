//! The registry flow (current E2B): ask E2B for a build, build while layers go up to the
//! user's registry, push, then `POST /v2/templates/{id}/builds/{bid}` with `fromImage` (and
//! the pull credentials only when the user asks to share them), and follow the build.

use crate::api::{ApiClient, BuildState, StartBuildV2};
use crate::pull::{self, PullEnv, PullKind};
use crate::status::BuildFailed;
use dockless_build::publish::{Destination, PublishError};
use dockless_registry::Reference;

use super::{
    FlowError, FlowEvents, FlowInputs, FlowOutcome, check_platform, follow_to_the_end,
    request_registry_build, start_commands,
};

/// How the build E2B runs from the pushed image is asked for and started.
pub struct RegistryStart {
    /// Tags of this build of the template.
    pub tags: Vec<String>,
    /// Hand E2B credentials of this kind to pull the image with (`None`: the image is public).
    pub pull: Option<PullKind>,
    /// Have E2B rebuild every step.
    pub force: bool,
    /// Follow the build to its end (else return once it has started).
    pub wait: bool,
}

/// The whole registry flow, to `target`. Nothing is built before E2B has accepted the build
/// (as E2B's SDK orders it: a refusal costs a request, not an upload); the template ID E2B
/// gives is written back to `e2b.toml` at once.
pub fn registry_flow(
    api: &ApiClient,
    inputs: &FlowInputs<'_>,
    target: &Reference,
    start: RegistryStart,
    events: &dyn FlowEvents,
) -> Result<FlowOutcome, FlowError> {
    let remote = inputs.remote;
    let client = remote.client(target)?;
    let pull = start
        .pull
        .map(|kind| {
            pull::pull_credentials(
                kind,
                target.registry(),
                &PullEnv::from_process(),
                client.credential(),
            )
        })
        .transpose()?;
    if let Some(pull) = &pull {
        tracing::info!(kind = pull.kind(), "handing E2B pull credentials");
    }
    let created = remote.block_on(request_registry_build(api, inputs.settings, &start.tags))?;
    inputs.write_back(&created.template_id, events)?;
    let destination = Destination::new(inputs.store, remote, client, target, events);
    let staged = destination.build(inputs.options).map_err(|e| match e {
        PublishError::Build(build) => FlowError::ImageBuild(build),
        other => push_error(target, other),
    })?;
    check_platform(&staged.image, &inputs.platform())?;
    let sandbox = inputs.sandbox_start(&staged.image)?;
    let (start_cmd, ready_cmd, from_image) = start_commands(inputs.settings, &sandbox);
    if from_image {
        events.start_from_image(
            start_cmd.as_deref().unwrap_or_default(),
            ready_cmd.as_deref().unwrap_or_default(),
        );
    }
    let pushed = destination
        .push(staged)
        .map_err(|e| push_error(target, e))?;
    let digest = pushed.report.manifest_digest;
    let credentials_handed = pull.is_some();
    remote.block_on(api.start_build_v2(
        &created.template_id,
        &created.build_id,
        &StartBuildV2 {
            from_image: pushed.pinned,
            registry: pull,
            steps: sandbox.steps(),
            start_cmd,
            ready_cmd,
            force: start.force,
        },
    ))?;
    if !start.wait {
        return Ok(FlowOutcome {
            template_id: created.template_id,
            build_id: created.build_id,
            image: target.to_string(),
            digest,
            status: BuildState::Building,
        });
    }
    remote
        .block_on(follow_to_the_end(
            api,
            created,
            target.to_string(),
            digest,
            inputs,
            events,
        ))
        .map_err(|e| match e {
            FlowError::Build(failed) if !credentials_handed => {
                FlowError::Build(with_pull_advice(failed, target))
            }
            other => other,
        })
}

/// E2B's build failed pulling the image, and no credentials were handed to it: after E2B's
/// reason, how to hand them.
fn with_pull_advice(failed: BuildFailed, target: &Reference) -> BuildFailed {
    match failed {
        BuildFailed::Failed {
            template_id,
            build_id,
            message,
            step,
        } if pull_was_refused(&message) => BuildFailed::Failed {
            template_id,
            build_id,
            message: format!(
                "{message} (E2B pulled {target} without credentials, since none were asked \
                 to be shared: for a private image, add --registry-auth registry (or aws, gcp, \
                 auto) or --share-registry-credentials)"
            ),
            step,
        },
        other => other,
    }
}

/// Whether E2B's reason reads as a registry refusing the pull for want of credentials.
fn pull_was_refused(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("pull")
        && [
            "unauthorized",
            "authentication required",
            "denied",
            "401",
            "403",
            "forbidden",
        ]
        .iter()
        .any(|word| message.contains(word))
}

fn push_error(target: &Reference, source: PublishError) -> FlowError {
    FlowError::Push {
        reference: target.to_string(),
        source: Box::new(source),
    }
}
