//! `dockless template build`: flags, e2b.toml and the environment in; one of the E2B
//! library's two flows (registry, gateway) run; its events and outcome shown.

use std::process::ExitCode;
use std::time::Duration;

use super::json::TemplateBuildResult;
use dockless_e2b::api::{ApiClient, BuildState};
use dockless_e2b::config::TemplateConfig;
use dockless_e2b::endpoints::Endpoints;
use dockless_e2b::env::E2bEnv;
use dockless_e2b::flows::{self, FlowInputs, FlowOutcome, RegistryStart};
use dockless_e2b::pull::PullKind;
use dockless_e2b::rules;
use dockless_e2b::template::{TemplateFlags, TemplateSettings};
use dockless_oci::store::Store;
use dockless_registry::http::HttpPolicy;

use super::args::{RegistryAuthArg, TemplateBuildArgs};
use super::auth::resolve_credential;
use super::output::Output;
use super::steps::ProgressMode;
use super::{FlagError, remote_access, runtime, settings, settings_error, target_reference, usage};

/// How often the build status is asked for (E2B's CLI asks about twice a second).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub fn build(args: &TemplateBuildArgs, quiet: bool, http: HttpPolicy) -> anyhow::Result<ExitCode> {
    let buildx = &args.inputs.buildx;
    buildx.refused.check().map_err(usage)?;
    if let Some(flag) = [
        (buildx.iidfile.is_some(), "--iidfile"),
        (buildx.metadata_file.is_some(), "--metadata-file"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag))
    {
        return Err(usage(FlagError(format!(
            "{flag} is not supported by `template build`: its result is an E2B template; --json prints the template, the image and its digest"
        ))));
    }
    let progress = ProgressMode::choose(buildx.progress, quiet).map_err(usage)?;
    let output = Output::new(quiet, args.json).with_progress(progress);
    let env = E2bEnv::from_process();
    // Validate everything before building or sending anything.
    let config = TemplateConfig::load(&args.context)?;
    let flags = TemplateFlags {
        name: args.name.clone(),
        cpu_count: args.cpu,
        memory_mb: args.memory_mb,
        start_cmd: args.start_cmd.clone(),
        ready_cmd: args.ready_cmd.clone(),
        dockerfile: args.dockerfile.clone(),
    };
    let template = TemplateSettings::merge(config, &flags, env.team_id.as_deref())?;
    if let Some(tag) = args.tags.iter().find(|t| !rules::tag_is_valid(t)) {
        anyhow::bail!(
            "--tag {tag:?}: E2B takes tags of lowercase letters, digits, '-', '_' and '.', e.g. v2 or 2026.08"
        );
    }
    let endpoints = Endpoints::from_env(&env)?;
    let asked = args
        .platform
        .as_deref()
        .map(settings::one_platform)
        .transpose()
        .map_err(settings_error)?;
    let platform = flows::template_platform(endpoints.api_is_e2b_cloud(), asked.as_ref())?;
    let target = args.image.as_deref().map(target_reference).transpose()?;
    if target.is_none() && !args.gateway && endpoints.is_e2b_cloud() {
        anyhow::bail!(gateway_is_gone(args, &endpoints));
    }
    if target.is_none() && args.registry.upload.username.is_some() {
        anyhow::bail!(
            "--username/--password-stdin are for --image's registry; the gateway flow authenticates with the E2B credential"
        );
    }
    let credential = resolve_credential(&args.credential, args.registry.upload.password_stdin)?;
    let api = ApiClient::new(endpoints.api.clone(), credential, http)?;
    let mut options = settings::template_options(
        &args.context,
        args.dockerfile.as_deref(),
        &args.inputs,
        platform,
    )
    .map_err(settings_error)?;
    options.target = args.target.clone();
    options.progress = progress.listener();
    let runtime = runtime()?;
    let store = Store::open(Store::default_root())?;
    let registry_settings = settings::registry_settings(&args.registry, http);
    let remote = remote_access(
        &runtime,
        registry_settings.clone(),
        &args.registry.upload,
        target.as_ref(),
    )?;
    let inputs = FlowInputs {
        settings: &template,
        options: &options,
        store: &store,
        remote: &remote,
        poll_interval: POLL_INTERVAL,
        dockerfile_to_record: args
            .dockerfile
            .as_ref()
            .and_then(|p| p.strip_prefix(&args.context).ok())
            .and_then(|p| p.to_str())
            .map(str::to_owned),
    };
    let reporter = output.reporter();
    let outcome = match &target {
        Some(target) => {
            flows::registry_flow(&api, &inputs, target, registry_start(args), &reporter)
        }
        None => flows::gateway_flow(&api, &endpoints, &inputs, &registry_settings, &reporter),
    };
    reporter.finish();
    print_outcome(&output, &outcome?)?;
    Ok(ExitCode::SUCCESS)
}

/// What the registry flow asks E2B for besides the image.
fn registry_start(args: &TemplateBuildArgs) -> RegistryStart {
    let pull = match (args.share_registry_credentials, args.registry_auth) {
        (true, _) | (_, Some(RegistryAuthArg::Registry)) => Some(PullKind::Registry),
        (_, Some(RegistryAuthArg::Auto)) => Some(PullKind::Auto),
        (_, Some(RegistryAuthArg::Aws)) => Some(PullKind::Aws),
        (_, Some(RegistryAuthArg::Gcp)) => Some(PullKind::Gcp),
        (false, None) => None,
    };
    RegistryStart {
        tags: args.tags.clone(),
        pull,
        force: args.skip_cache,
        wait: !args.no_wait,
    }
}

/// Problem 1 of E2B today: without --image on E2B's cloud, one message and the way out.
fn gateway_is_gone(args: &TemplateBuildArgs, endpoints: &Endpoints) -> String {
    let registry_flow = format!(
        "push to a registry you control and let E2B build from there, with an API key in \
         E2B_API_KEY: `dockless template build {} --image ghcr.io/OWNER/NAME:TAG` (add \
         --share-registry-credentials when the image is private)",
        args.context.display()
    );
    if !endpoints.api_is_e2b_cloud() {
        // E2B_API_URL names a self-hosted API, but the gateway is still E2B's: as in E2B's
        // CLI, only E2B_DOMAIN and E2B_REGISTRY_URL move it.
        return format!(
            "the registry gateway would be {gateway}, E2B's cloud, which no longer runs the \
             registry gateway (removed in August 2026), while E2B_API_URL names a self-hosted \
             API ({api}): E2B_API_URL moves only the API. Name your E2B's gateway with \
             E2B_DOMAIN (the gateway is then docker.<domain>) or E2B_REGISTRY_URL, or pass \
             --gateway; or {registry_flow}",
            gateway = endpoints.gateway,
            api = endpoints.api.host_str().unwrap_or_default(),
        );
    }
    format!(
        "E2B's cloud ({}) no longer runs the registry gateway (docker.e2b.app) that `template build` \
         without --image pushes to: E2B removed it in August 2026. Instead, {registry_flow}. For a \
         self-hosted E2B, set E2B_DOMAIN (the API is then api.<domain> and the gateway \
         docker.<domain>) or E2B_REGISTRY_URL (E2B_API_URL moves only the API), or pass --gateway",
        endpoints.api.host_str().unwrap_or("e2b.app"),
    )
}

fn print_outcome(output: &Output, outcome: &FlowOutcome) -> std::io::Result<()> {
    output.result(
        || TemplateBuildResult::of(outcome),
        |out| {
            if outcome.status == BuildState::Ready {
                return writeln!(
                    out,
                    "Template {} built (build {}, {}): {}@{}",
                    outcome.template_id,
                    outcome.build_id,
                    outcome.status,
                    outcome.image,
                    outcome.digest
                );
            }
            // --no-wait: E2B has the image and is building; nothing is built yet.
            writeln!(
                out,
                "Template {} build {} started ({}): {}@{}; follow it with \
                 `dockless template status {} --template {} --follow`",
                outcome.template_id,
                outcome.build_id,
                outcome.status,
                outcome.image,
                outcome.digest,
                outcome.build_id,
                outcome.template_id
            )
        },
    )
}
