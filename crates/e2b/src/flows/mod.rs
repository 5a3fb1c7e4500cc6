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

mod gateway;
mod registry;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dockless_build::publish::{PublishError, PublishEvents};
use dockless_build::{BuildError, BuildOptions, BuiltImage, locate::LocateError};
use dockless_oci::digest::Digest;
use dockless_oci::fs_error::{FsError, IoContext};
use dockless_oci::image::{ImageConfig, Platform};
use dockless_oci::store::{Store, StoreError};
use dockless_registry::remote::{RemoteAccess, RemoteError};
use dockless_registry::{ReferenceError, RegistryError};

use super::api::{ApiClient, ApiError, BuildState, CreateTemplateV3, CreatedBuild, LogEntry};
use super::pull::PullError;
use super::sandbox::{READY_AFTER_START, SandboxStart};
use super::status::{BuildFailed, follow_build};
use super::template::TemplateSettings;
use super::writeback::{self, WritebackError};

pub use gateway::gateway_flow;
pub use registry::{RegistryStart, registry_flow};

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Build(#[from] BuildFailed),
    #[error("pushing to {reference}: {source}")]
    Push {
        reference: String,
        source: Box<PublishError>,
    },
    #[error("pushing to E2B's registry gateway {reference}: {source}{}", if advice.is_empty() { String::new() } else { format!("; {advice}") })]
    GatewayPush {
        reference: String,
        source: Box<PublishError>,
        advice: String,
    },
    /// The local build failed.
    #[error(transparent)]
    ImageBuild(Box<BuildError>),
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the built image's config is not an image config: {0}")]
    ImageConfig(serde_json::Error),
    #[error(transparent)]
    Writeback(#[from] WritebackError),
    #[error(transparent)]
    Pull(#[from] PullError),
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
        "the image was built for {found}, but E2B runs {wanted} here; use a base image that has a {wanted} variant (nothing was uploaded)"
    )]
    Platform { found: String, wanted: String },
    #[error(
        "--platform {asked}: E2B's cloud runs linux/amd64 only; --platform is for a self-hosted E2B (E2B_DOMAIN or E2B_API_URL naming it) whose nodes run {asked} (nothing was built or sent)"
    )]
    CloudPlatform { asked: Platform },
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

impl From<BuildError> for FlowError {
    fn from(e: BuildError) -> Self {
        FlowError::ImageBuild(Box::new(e))
    }
}

/// What a flow needs besides the API client.
pub struct FlowInputs<'a> {
    pub settings: &'a TemplateSettings,
    pub options: &'a BuildOptions,
    pub store: &'a Store,
    pub remote: &'a RemoteAccess,
    pub poll_interval: Duration,
    /// The Dockerfile the command line named, relative to the context: recorded in a new
    /// `e2b.toml` with the template ID.
    pub dockerfile_to_record: Option<String>,
}

/// What a flow tells its caller on the way, besides the publication's events.
pub trait FlowEvents: PublishEvents {
    /// The template ID E2B gave was written to this `e2b.toml`.
    fn wrote_template_id(&self, _e2b_toml: &Path, _template_id: &str) {}
    /// The sandbox's start and ready commands were taken from the image's CMD/ENTRYPOINT.
    fn start_from_image(&self, _start_cmd: &str, _ready_cmd: &str) {}
    /// A log entry of E2B's build.
    fn log(&self, _entry: &LogEntry) {}
}

impl FlowInputs<'_> {
    /// The platform E2B runs the template on: the build's (see [`template_platform`]).
    pub fn platform(&self) -> Platform {
        self.options
            .platform
            .clone()
            .unwrap_or_else(Platform::linux_amd64)
    }

    /// Records the template ID in e2b.toml as soon as E2B gives it, so that a build failing
    /// later still rebuilds the same template next time.
    fn write_back(&self, template_id: &str, events: &dyn FlowEvents) -> Result<(), FlowError> {
        if self.settings.template_id.as_deref() == Some(template_id) {
            return Ok(());
        }
        let context = &self.options.context;
        let written = writeback::write_template_id(
            context,
            template_id,
            self.settings.name.as_deref(),
            self.dockerfile_to_record.as_deref(),
        )?;
        if written {
            events.wrote_template_id(&context.join(super::config::FILE_NAME), template_id);
        }
        Ok(())
    }

    /// The Dockerfile the build reads, and its text.
    fn dockerfile(&self) -> Result<(PathBuf, String), FlowError> {
        let path = dockless_build::locate_dockerfile(
            &self.options.context,
            self.options.dockerfile.as_deref(),
            self.options.context_dockerfile.as_deref(),
        )?;
        let text = std::fs::read_to_string(&path).with_path("read", &path)?;
        Ok((path, text))
    }

    /// The image's user, directory and command, as E2B's SDK reads them from the Dockerfile:
    /// the values from the built image's config, counted only when the built stage (the
    /// `--target`, else the last) sets them itself.
    fn sandbox_start(&self, image: &BuiltImage) -> Result<SandboxStart, FlowError> {
        let config: ImageConfig =
            serde_json::from_slice(&self.store.read_blob(&image.config.digest)?)
                .map_err(FlowError::ImageConfig)?;
        Ok(SandboxStart::new(&config.config, image.stage_sets))
    }
}

/// What a finished flow reports.
#[derive(Debug, Clone)]
pub struct FlowOutcome {
    pub template_id: String,
    pub build_id: String,
    /// Where the image was pushed.
    pub image: String,
    pub digest: Digest,
    pub status: BuildState,
}

/// The image must be what E2B runs (`wanted`: linux/amd64 on E2B's cloud, `--platform` on a
/// self-hosted E2B): anything else is refused before a manifest is pushed.
pub fn check_platform(image: &BuiltImage, wanted: &Platform) -> Result<(), FlowError> {
    let (have, want) = (image.platform.normalized(), wanted.normalized());
    if have.os == want.os && have.architecture == want.architecture {
        Ok(())
    } else {
        Err(FlowError::Platform {
            found: image.platform.to_string(),
            wanted: wanted.to_string(),
        })
    }
}

/// The platform to build a template for, decided before anything is built or sent: E2B's
/// cloud runs linux/amd64 only (its API on `e2b.app`); a self-hosted E2B (`E2B_DOMAIN`,
/// `E2B_API_URL`) may run arm64 nodes (e2b-dev/infra builds for `TARGET_ARCH`, and its
/// orchestrator refuses an image of another architecture), so `--platform` says which.
pub fn template_platform(
    api_is_e2b_cloud: bool,
    asked: Option<&Platform>,
) -> Result<Platform, FlowError> {
    let amd64 = Platform::linux_amd64();
    match asked {
        None => Ok(amd64),
        Some(asked) if api_is_e2b_cloud && asked.normalized() != amd64 => {
            Err(FlowError::CloudPlatform {
                asked: asked.clone(),
            })
        }
        Some(asked) => Ok(asked.clone()),
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
pub(crate) async fn request_registry_build(
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

/// The start and ready commands: e2b.toml or flags first, else the image's CMD/ENTRYPOINT with
/// the SDK's 20 s ready wait. The flag says whether the image's command was taken.
pub(crate) fn start_commands(
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

/// Both flows end alike: follow the started build to its end, streaming its logs.
async fn follow_to_the_end(
    api: &ApiClient,
    created: CreatedBuild,
    image: String,
    digest: Digest,
    inputs: &FlowInputs<'_>,
    events: &dyn FlowEvents,
) -> Result<FlowOutcome, FlowError> {
    let status = follow_build(
        api,
        &created.template_id,
        &created.build_id,
        inputs.poll_interval,
        &mut |entry| events.log(entry),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Platform {
        text.parse().unwrap()
    }

    #[test]
    fn the_cloud_takes_amd64_and_a_self_hosted_e2b_what_it_is_told() {
        assert_eq!(template_platform(true, None).unwrap(), p("linux/amd64"));
        assert_eq!(
            template_platform(true, Some(&p("linux/amd64"))).unwrap(),
            p("linux/amd64")
        );
        let refused = template_platform(true, Some(&p("linux/arm64"))).unwrap_err();
        assert!(matches!(refused, FlowError::CloudPlatform { .. }));
        assert!(
            refused
                .to_string()
                .contains("E2B's cloud runs linux/amd64 only")
        );
        assert_eq!(
            template_platform(false, Some(&p("linux/arm64"))).unwrap(),
            p("linux/arm64")
        );
        assert_eq!(template_platform(false, None).unwrap(), p("linux/amd64"));
    }

    #[test]
    fn the_image_must_be_the_platform_e2b_runs() {
        let image = |platform: &str| BuiltImage {
            manifest: dockless_oci::image::Descriptor::new("m", Digest::of(b"m"), 1),
            config: dockless_oci::image::Descriptor::new("c", Digest::of(b"c"), 1),
            layers: Vec::new(),
            platform: p(platform),
            cache_entries: Vec::new(),
            stage_sets: Default::default(),
        };
        assert!(check_platform(&image("linux/arm64/v8"), &p("linux/arm64")).is_ok());
        let refused = check_platform(&image("linux/amd64"), &p("linux/arm64")).unwrap_err();
        assert!(
            refused.to_string().contains("E2B runs linux/arm64 here"),
            "{refused}"
        );
        assert!(check_platform(&image("linux/arm64"), &p("linux/amd64")).is_err());
    }
}
